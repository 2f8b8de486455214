"""Global image descriptors for keyframe retrieval (no ROS)."""

from .vlad import VLAD, train_codebook

__all__ = ["VLAD", "train_codebook"]
