"""Global image descriptors for keyframe retrieval (no ROS)."""

from .vlad import VLAD, select_columns, train_codebook

__all__ = ["VLAD", "select_columns", "train_codebook"]
