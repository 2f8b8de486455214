"""Global image descriptors for keyframe retrieval (no ROS)."""

from .vlad import VLAD, default_num_clusters, select_columns, train_codebook

__all__ = ["VLAD", "default_num_clusters", "select_columns", "train_codebook"]
