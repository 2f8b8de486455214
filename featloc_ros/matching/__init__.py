"""Registry of named matcher configurations (like hloc's ``match_features.confs``)."""

from __future__ import annotations

from ..configuration import instantiate
from .base import Matcher, Matches
from .invariance_selected import InvarianceSelectedNN, invariance_selected_match
from .nearest_neighbor import NearestNeighbor, nearest_neighbor_match
from .sparse_attention import SparseAttentionMatcher

MATCHERS: dict[str, type[Matcher]] = {"nearest_neighbor": NearestNeighbor,
                                      "invariance_selected_nn": InvarianceSelectedNN,
                                      "sparse_attention": SparseAttentionMatcher}

confs: dict[str, dict] = {
    "mnn_ratio": {"name": "nearest_neighbor", "ratio_threshold": 0.8, "mutual_check": True},
    "mnn": {"name": "nearest_neighbor", "ratio_threshold": 0.0, "mutual_check": True},
    # for FeatLoc "selected" descriptors (features conf "featloc"): invariance-selected distance
    "featloc_isnn": {"name": "invariance_selected_nn", "ratio_threshold": 0.0, "mutual_check": True},
    # with Lowe's ratio test (0.8, as mnn_ratio): for maps and localization (many keyframes, wrong matches add up)
    "featloc_isnn_ratio": {"name": "invariance_selected_nn", "ratio_threshold": 0.8, "mutual_check": True},
    # learned sparse-attention matcher for FeatLoc "selected" descriptors (models/featloc_matcher_v1.pt)
    "featloc_sparse": {"name": "sparse_attention", "backend": "torch"},
    "featloc_sparse_onnx": {"name": "sparse_attention", "backend": "onnxruntime"},
    "featloc_sparse_as_dense": {"name": "sparse_attention", "model": {"attention": "dense"}},  # ablation
    # v1 fine-tuned with non-planar rendered pairs (models/featloc_matcher_v2.pt; matcher_v2.yaml)
    "featloc_sparse_v2": {"name": "sparse_attention", "weights": "featloc_matcher_v2.pt"},
    "featloc_sparse_v2_onnx": {"name": "sparse_attention", "weights": "featloc_matcher_v2.pt",
                               "backend": "onnxruntime"},
    # v2 fine-tuned with deep supervision (models/featloc_matcher_v3.pt; matcher_v3.yaml): every layer, and with
    # the early exit (PyTorch): stops after 2 or 3 of its 4 layers when the assignment is confident
    "featloc_sparse_v3": {"name": "sparse_attention", "weights": "featloc_matcher_v3.pt"},
    "featloc_sparse_v3_onnx": {"name": "sparse_attention", "weights": "featloc_matcher_v3.pt",
                               "backend": "onnxruntime"},
    "featloc_sparse_v3_exit": {"name": "sparse_attention", "weights": "featloc_matcher_v3.pt",
                               "model": {"early_exit": True}},
    # small and fast: 3 layers, k = 8 (models/featloc_matcher_small_v1.pt; matcher_small_v1.yaml)
    "featloc_sparse_small": {"name": "sparse_attention", "weights": "featloc_matcher_small_v1.pt"},
    "featloc_sparse_small_onnx": {"name": "sparse_attention", "weights": "featloc_matcher_small_v1.pt",
                                  "backend": "onnxruntime"},
    # small_v1 fine-tuned with the similarity prior, the near-miss loss and recall weighted up
    # (models/featloc_matcher_small_v6.pt; matcher_small_v6.yaml)
    "featloc_sparse_small_v6": {"name": "sparse_attention", "weights": "featloc_matcher_small_v6.pt"},
    "featloc_sparse_small_v6_onnx": {"name": "sparse_attention", "weights": "featloc_matcher_small_v6.pt",
                                     "backend": "onnxruntime"},
    # the average of small_v6 and two fine-tunes like it (other true-pair weight, other seed)
    # (models/featloc_matcher_small_v11.pt; matcher_small_v11.yaml): the recommended matcher
    "featloc_sparse_small_v11": {"name": "sparse_attention", "weights": "featloc_matcher_small_v11.pt"},
    "featloc_sparse_small_v11_onnx": {"name": "sparse_attention", "weights": "featloc_matcher_small_v11.pt",
                                      "backend": "onnxruntime"},
}


def create_matcher(conf: str | dict) -> Matcher:
    return instantiate(conf, confs, MATCHERS, "matcher")


__all__ = ["Matcher", "Matches", "confs", "create_matcher", "invariance_selected_match", "nearest_neighbor_match",
           "MATCHERS"]
