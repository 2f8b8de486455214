"""Peers' local features inside our map builder and localizer, for the localization benchmark.

The peers run in their own venv, so their features are extracted in one batch per dataset and
served to featloc through a registered extractor, ``{"name": "precomputed", "source": KEY}``,
that looks images up by content hash. Matching is our mutual nearest neighbour (the peers'
LightGlue matchers cannot run in-process).
"""

from __future__ import annotations

import hashlib

import numpy as np

from featloc_ros.features import EXTRACTORS, Extractor, Features
from featloc_ros.evaluation.homography import resize_max

_TABLES: dict[str, dict[str, Features]] = {}


def _key(image: np.ndarray) -> str:
    return hashlib.sha1(np.ascontiguousarray(image).tobytes()).hexdigest()


class PrecomputedExtractor(Extractor):
    default_conf = {"source": ""}

    def _extract(self, image: np.ndarray) -> Features:
        table = _TABLES.get(self.conf["source"])
        if table is None:
            raise KeyError(f"no precomputed features for source {self.conf['source']!r}")
        return table[_key(image)]


EXTRACTORS.setdefault("precomputed", PrecomputedExtractor)


def precompute(method: str, images: list[np.ndarray], max_keypoints: int, max_side: int = 1024) -> dict:
    """Extract peer features for ``images`` (resized to ``max_side`` for the peer, keypoints mapped
    back to full resolution) and register them; returns the feature configuration to use."""
    from peers.client import run_peer_extract

    source = f"{method}_{max_keypoints}"
    table = _TABLES.setdefault(source, {})
    todo = [im for im in images if _key(im) not in table]
    resized = [resize_max(im, max_side) for im in todo]
    outs = run_peer_extract(method, [r for r, _ in resized], max_keypoints) if todo else []
    for im, (_, S), o in zip(todo, resized, outs):
        k = np.c_[o["keypoints0"].astype(np.float64), np.ones(len(o["keypoints0"]))] @ np.linalg.inv(S).T
        d = o["descriptors0"].astype(np.float32)
        table[_key(im)] = Features(k[:, :2].astype(np.float32), np.ones(len(k), np.float32), d,
                                   (im.shape[1], im.shape[0]))
    return {"name": "precomputed", "source": source}


__all__ = ["PrecomputedExtractor", "precompute"]
