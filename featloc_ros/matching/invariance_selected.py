"""Mutual nearest-neighbour matching on the invariance-selected distance of FeatLoc "selected" descriptors.

Each descriptor row is ``[l_1 .. l_S, m_1 .. m_S]`` (featloc_ros.features.featloc, ``FeatLoc.layout``): S unit
local descriptors of ``local_dim`` (one per invariance kind) followed by S meta descriptors of ``meta_dim``.
The distance of keypoints p, q is

    d(p, q) = sum_s w_s(p, q) ||l_s(p) - l_s(q)||,   w(p, q) = softmax_s(m_s(p) . m_s(q))

in [0, 2]. Matches: mutual nearest neighbours of d, optional ratio test d1 <= ratio * d2 and distance
threshold; scores 1 - d / 2. Computed in row blocks to bound memory (S x block x N1 floats).
"""

from __future__ import annotations

import numpy as np

from ..features.base import Features
from .base import Matcher, Matches


def split_selected(desc: np.ndarray, num_kinds: int, local_dim: int, meta_dim: int) -> tuple[np.ndarray, np.ndarray]:
    """(N, S*(D+Dm)) -> local (S, N, D), meta (S, N, Dm)."""
    desc = np.asarray(desc, dtype=np.float32)
    expected = num_kinds * (local_dim + meta_dim)
    if desc.ndim != 2 or desc.shape[1] != expected:
        raise ValueError(f"invariance-selected descriptors must have {num_kinds}*({local_dim}+{meta_dim})="
                         f"{expected} columns, got shape {desc.shape} (use FeatLoc with descriptor='selected')")
    n = desc.shape[0]
    local = desc[:, : num_kinds * local_dim].reshape(n, num_kinds, local_dim).transpose(1, 0, 2)
    meta = desc[:, num_kinds * local_dim:].reshape(n, num_kinds, meta_dim).transpose(1, 0, 2)
    return np.ascontiguousarray(local), np.ascontiguousarray(meta)


def meta_norm_bound(meta0: np.ndarray, meta1: np.ndarray) -> float:
    """max |m0| * max |m1| over the last axis (a bound of every |m0 . m1|: the torch distance skips the max shift
    of the softmax when it is small)."""
    if meta0.size == 0 or meta1.size == 0:
        return 0.0
    return float(np.sqrt(np.square(meta0).sum(-1).max() * np.square(meta1).sum(-1).max()))


def selected_distance_matrix(local0: np.ndarray, local1: np.ndarray, meta0: np.ndarray, meta1: np.ndarray,
                             meta_bound: float | None = None) -> np.ndarray:
    """(S,N0,D), (S,N1,D), (S,N0,Dm), (S,N1,Dm) -> (N0, N1) float32 invariance-selected distances.
    Uses PyTorch (multi-threaded exp/sqrt) when it is installed, else numpy; both compute in place.
    ``meta_bound``: max |m0| * max |m1| (``meta_norm_bound``), when the caller computes it once for several
    row blocks."""
    try:
        import torch
    except ImportError:  # e.g. an ONNX Runtime-only deployment
        torch = None
    if torch is not None:
        from ..nn.featloc_net import selected_distance_inference

        with torch.inference_mode():
            tensors = [torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))
                       for a in (local0, local1, meta0, meta1)]
            return selected_distance_inference(*tensors, meta_bound=meta_bound).numpy()
    dist = np.matmul(local0, local1.transpose(0, 2, 1))  # cosine
    dist *= -2.0
    dist += 2.0
    np.maximum(dist, 0.0, out=dist)
    np.sqrt(dist, out=dist)  # (S, N0, N1) L2 distances of unit vectors
    w = np.matmul(meta0, meta1.transpose(0, 2, 1))
    w -= w.max(axis=0, keepdims=True)
    np.exp(w, out=w)  # unnormalised softmax weights over S
    total = w.sum(axis=0)
    w *= dist
    out = w.sum(axis=0)
    out /= total
    return out


def invariance_selected_match(desc0: np.ndarray, desc1: np.ndarray, num_kinds: int = 4, local_dim: int = 64,
                              meta_dim: int = 16, ratio: float = 0.0, mutual: bool = True,
                              max_distance: float = 0.0, block: int = 256) -> Matches:
    """Match two sets of "selected" descriptors. ratio<=0 or >=1 disables the ratio test,
    max_distance<=0 the distance threshold."""
    l0, m0 = split_selected(desc0, num_kinds, local_dim, meta_dim)
    l1, m1 = split_selected(desc1, num_kinds, local_dim, meta_dim)
    n0, n1 = l0.shape[1], l1.shape[1]
    nn01 = np.zeros(n0, np.int64)
    best = np.zeros(n0, np.float32)
    second = np.full(n0, np.inf, np.float32)
    col_best = np.full(n1, np.inf, np.float32)
    nn10 = np.zeros(n1, np.int64)
    bound = meta_norm_bound(m0, m1)
    ratio_test = 0 < ratio < 1 and n1 >= 2
    for start in range(0, n0, block):
        stop = min(start + block, n0)
        d = selected_distance_matrix(l0[:, start:stop], l1, m0[:, start:stop], m1, bound)  # (b, N1)
        rows = np.arange(stop - start)
        j = np.argmin(d, axis=1)
        nn01[start:stop] = j
        best[start:stop] = d[rows, j]
        if ratio_test:
            second[start:stop] = np.partition(d, 1, axis=1)[:, 1]
        i = np.argmin(d, axis=0)
        better = d[i, np.arange(n1)] < col_best
        col_best[better] = d[i, np.arange(n1)][better]
        nn10[better] = i[better] + start
    keep = np.ones(n0, bool)
    if ratio_test:
        keep &= best <= ratio * second
    if max_distance > 0:
        keep &= best <= max_distance
    idx0 = np.arange(n0)
    if mutual:
        keep &= nn10[nn01] == idx0
    scores = (1.0 - best[keep] / 2.0).astype(np.float32)
    return Matches(np.stack([idx0[keep], nn01[keep]], axis=1).astype(np.int64), scores)


class InvarianceSelectedNN(Matcher):
    descriptor_only = True
    default_conf = {"ratio_threshold": 0.0, "mutual_check": True, "distance_threshold": 0.0,
                    "num_kinds": 4, "local_dim": 64, "meta_dim": 16, "block_size": 256}

    @property
    def descriptor_dim(self) -> int:
        c = self.conf
        return c["num_kinds"] * (c["local_dim"] + c["meta_dim"])  # FeatLoc "selected" descriptors

    def _match(self, feats0: Features, feats1: Features) -> Matches:
        c = self.conf
        return invariance_selected_match(feats0.descriptors, feats1.descriptors, c["num_kinds"], c["local_dim"],
                                         c["meta_dim"], c["ratio_threshold"], c["mutual_check"],
                                         c["distance_threshold"], c["block_size"])
