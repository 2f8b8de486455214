"""Neural networks of featloc_ros (pure PyTorch; imported only by the learned extractors and training)."""

from .featloc_net import (KINDS, FeatLocNet, concat_descriptors, export_onnx, invariance_weights,
                          selected_distance_matrix, selected_distance_pairs, selected_similarity)

__all__ = ["KINDS", "FeatLocNet", "concat_descriptors", "export_onnx", "invariance_weights",
           "selected_distance_matrix", "selected_distance_pairs", "selected_similarity"]
