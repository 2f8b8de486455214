"""Registry of named local-feature configurations (like hloc's ``extract_features.confs``).

``create_extractor("rootsift")`` or ``create_extractor({"name": "sift", "max_keypoints": 2048})``.
Later extractors register here and become usable by map building, the localizer and benchmarks.
"""

from __future__ import annotations

from .base import Extractor, Features
from .sift import SIFT

EXTRACTORS: dict[str, type[Extractor]] = {"sift": SIFT}

confs: dict[str, dict] = {
    "rootsift": {"name": "sift", "rootsift": True, "max_keypoints": 4096, "resize_max": 1024},
    "sift": {"name": "sift", "rootsift": False, "max_keypoints": 4096, "resize_max": 1024},
    "rootsift_fast": {"name": "sift", "rootsift": True, "max_keypoints": 2048, "resize_max": 640},
}


def resolve_conf(conf: str | dict, registry: dict[str, dict], kind: str) -> dict:
    """Turn a registry name or a dict into a full configuration dict with a ``name`` key."""
    if isinstance(conf, str):
        if conf not in registry:
            raise KeyError(f"unknown {kind} configuration {conf!r}; known: {sorted(registry)}")
        return dict(registry[conf])
    if not isinstance(conf, dict) or "name" not in conf:
        raise ValueError(f"{kind} configuration must be a registry name or a dict with a 'name'")
    return dict(conf)


def create_extractor(conf: str | dict) -> Extractor:
    conf = resolve_conf(conf, confs, "feature")
    name = conf.pop("name")
    if name not in EXTRACTORS:
        raise KeyError(f"unknown extractor {name!r}; known: {sorted(EXTRACTORS)}")
    return EXTRACTORS[name](conf)


__all__ = ["Extractor", "Features", "confs", "create_extractor", "resolve_conf", "EXTRACTORS"]
