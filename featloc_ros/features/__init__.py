"""Registry of named local-feature configurations (like hloc's ``extract_features.confs``).

``create_extractor("rootsift")`` or ``create_extractor({"name": "sift", "max_keypoints": 2048})``.
Later extractors register here and become usable by map building, the localizer and benchmarks.
"""

from __future__ import annotations

from ..configuration import instantiate
from .base import Extractor, Features
from .featloc import FeatLoc
from .sift import SIFT

EXTRACTORS: dict[str, type[Extractor]] = {"sift": SIFT, "featloc": FeatLoc}

confs: dict[str, dict] = {
    "rootsift": {"name": "sift", "rootsift": True, "max_keypoints": 4096, "resize_max": 1024},
    "sift": {"name": "sift", "rootsift": False, "max_keypoints": 4096, "resize_max": 1024},
    "rootsift_fast": {"name": "sift", "rootsift": True, "max_keypoints": 2048, "resize_max": 640},
    # FeatLoc (learned; models/featloc_v4.pt). "featloc" descriptors need the "featloc_isnn" matcher
    # (invariance-selected distance); the others are unit vectors for the mutual-NN matchers.
    "featloc": {"name": "featloc", "descriptor": "selected", "max_keypoints": 2048, "resize_max": 1024},
    "featloc_onnx": {"name": "featloc", "descriptor": "selected", "max_keypoints": 2048, "resize_max": 1024,
                     "backend": "onnxruntime"},
    # FeatLoc v4 + the learned keypoint refiner (models/featloc_v10.pt): sub-pixel keypoints moved by a small MLP;
    # lower localization errors at night, the same descriptors (maps must be built with the same entry)
    "featloc_refined": {"name": "featloc", "descriptor": "selected", "max_keypoints": 2048, "resize_max": 1024,
                        "weights": "featloc_v10.pt"},
    "featloc_refined_onnx": {"name": "featloc", "descriptor": "selected", "max_keypoints": 2048, "resize_max": 1024,
                             "weights": "featloc_v10.pt", "backend": "onnxruntime"},
    # 4 network passes (image turned by 0/90/180/270 deg): invariant to quarter turns; PyTorch backend only
    "featloc_rot4": {"name": "featloc", "descriptor": "selected", "max_keypoints": 2048, "resize_max": 1024,
                     "model": {"rotation_pooling": True}},
    "featloc_concat": {"name": "featloc", "descriptor": "concat", "max_keypoints": 2048, "resize_max": 1024},
    **{f"featloc_{kind}": {"name": "featloc", "descriptor": kind, "max_keypoints": 2048, "resize_max": 1024}
       for kind in ("rv_iv", "ri_iv", "rv_ii", "ri_ii")},
}


def create_extractor(conf: str | dict) -> Extractor:
    return instantiate(conf, confs, EXTRACTORS, "feature extractor")


__all__ = ["Extractor", "Features", "confs", "create_extractor", "EXTRACTORS"]
