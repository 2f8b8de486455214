"""Mutual nearest-neighbour matching with Lowe's ratio test on L2-normalised descriptors."""

from __future__ import annotations

import numpy as np

from ..features.base import Features
from .base import Matcher, Matches


def nearest_neighbor_match(desc0: np.ndarray, desc1: np.ndarray, ratio: float = 0.8, mutual: bool = True,
                           max_distance: float = 0.0) -> Matches:
    """Match (N0, D) against (N1, D) unit descriptors. ratio<=0 or >=1 disables the ratio test,
    max_distance<=0 disables the distance threshold. Scores are 1 - distance^2 / 2 (cosine)."""
    desc0 = np.asarray(desc0, dtype=np.float32)
    desc1 = np.asarray(desc1, dtype=np.float32)
    sim = desc0 @ desc1.T  # (N0, N1) cosine similarity
    idx0 = np.arange(desc0.shape[0])
    nn01 = np.argmax(sim, axis=1)
    best = sim[idx0, nn01]
    dist2 = np.maximum(2.0 - 2.0 * best, 0.0)  # squared L2 distance of unit vectors
    keep = np.ones(desc0.shape[0], bool)
    if 0 < ratio < 1 and desc1.shape[0] >= 2:
        sim[idx0, nn01] = -np.inf
        second = np.maximum(2.0 - 2.0 * sim.max(axis=1), 0.0)
        keep &= dist2 <= (ratio ** 2) * second
    if max_distance > 0:
        keep &= dist2 <= max_distance ** 2
    if mutual:
        nn10 = np.argmax(desc1 @ desc0.T, axis=1)  # a second product beats a strided column argmax
        keep &= nn10[nn01] == idx0
    i0 = idx0[keep]
    i1 = nn01[keep]
    scores = (1.0 - dist2[keep] / 2.0).astype(np.float32)
    return Matches(np.stack([i0, i1], axis=1).astype(np.int64), scores)


class NearestNeighbor(Matcher):
    descriptor_only = True
    default_conf = {"ratio_threshold": 0.8, "mutual_check": True, "distance_threshold": 0.0}

    def _match(self, feats0: Features, feats1: Features) -> Matches:
        c = self.conf
        return nearest_neighbor_match(feats0.descriptors, feats1.descriptors, c["ratio_threshold"],
                                      c["mutual_check"], c["distance_threshold"])
