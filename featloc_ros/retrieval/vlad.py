"""VLAD global descriptors (Jegou et al. 2010) aggregated from any local descriptors.

The codebook is trained on the map's own descriptors at map-building time and stored in the map,
so retrieval works with whatever local features the map was built with.
"""

from __future__ import annotations

import cv2
import numpy as np


VLAD_DIM = 16384  # global descriptor length the default codebook size aims at (64 KB per keyframe)


def default_num_clusters(descriptor_dim: int, target_dim: int = VLAD_DIM) -> int:
    """Codebook size giving global descriptors of ``target_dim`` floats: 256 clusters for 64-d descriptors (the
    FeatLoc retrieval columns), 128 for 128-d (SIFT). Finer codebooks retrieve day keyframes for night queries far
    more often (benchmarks/results/retrieval.md)."""
    return max(16, int(target_dim) // max(1, int(descriptor_dim)))


def train_codebook(descriptors: np.ndarray, num_clusters: int = 128, max_samples: int = 50000,
                   seed: int = 0, iterations: int = 10) -> np.ndarray:
    """k-means codebook (num_clusters, D) float32 from (N, D) descriptors (subsampled, seeded; OpenCV's k-means
    with k-means++ seeding; at most one cluster per 10 descriptors)."""
    if num_clusters < 1:
        raise ValueError(f"VLAD codebook: num_clusters must be >= 1, got {num_clusters}")
    rng = np.random.default_rng(seed)
    desc = np.asarray(descriptors, dtype=np.float32)
    if desc.ndim != 2 or desc.shape[0] == 0:
        raise ValueError(f"VLAD codebook: need (N, D) descriptors with N > 0, got shape {desc.shape}")
    if desc.shape[0] > max_samples:
        desc = desc[rng.choice(desc.shape[0], max_samples, replace=False)]
    k = int(min(num_clusters, max(1, desc.shape[0] // 10)))
    cv2.setRNGSeed(int(seed))
    criteria = (cv2.TERM_CRITERIA_MAX_ITER + cv2.TERM_CRITERIA_EPS, int(iterations), 1e-4)
    _compactness, _labels, centroids = cv2.kmeans(np.ascontiguousarray(desc), k, None, criteria, 1,
                                                  cv2.KMEANS_PP_CENTERS)
    return centroids.astype(np.float32)


def select_columns(descriptors: np.ndarray, columns: tuple[int, int] | list[int] | None) -> np.ndarray:
    """(N, D) -> the retrieval columns [start, stop) (all of them when ``columns`` is None)."""
    return descriptors if columns is None else descriptors[:, int(columns[0]):int(columns[1])]


class VLAD:
    """describe((N, D) local descriptors) -> (K*d,) float32 unit vector.

    Intra-normalisation + power (signed square root) normalisation + global L2 normalisation.
    ``columns`` (start, stop): aggregate only these descriptor columns (d = stop - start; the extractor's
    ``retrieval_columns``, recorded in the map manifest), e.g. the invariant part of a composite descriptor.
    """

    def __init__(self, codebook: np.ndarray, columns: tuple[int, int] | list[int] | None = None):
        self.codebook = np.asarray(codebook, dtype=np.float32)
        self.columns = None if columns is None else (int(columns[0]), int(columns[1]))
        if self.columns is not None and self.columns[1] - self.columns[0] != self.codebook.shape[1]:
            raise ValueError(f"VLAD: columns {self.columns} do not fit the codebook width {self.codebook.shape[1]}")

    def view(self, descriptors: np.ndarray) -> np.ndarray:
        """The columns of (N, D) descriptors that are aggregated."""
        return select_columns(descriptors, self.columns)

    @property
    def dim(self) -> int:
        return int(self.codebook.size)

    def describe(self, descriptors: np.ndarray) -> np.ndarray:
        """(N, D) local descriptors (all columns; ``columns`` selects) -> (K*d,) unit vector."""
        k, d = self.codebook.shape
        out = np.zeros((k, d), np.float32)
        if descriptors.shape[0] > 0:
            desc = np.asarray(self.view(descriptors), dtype=np.float32)
            assign = np.argmax(desc @ self.codebook.T - 0.5 * (self.codebook ** 2).sum(1), axis=1)
            np.add.at(out, assign, desc - self.codebook[assign])
        out /= np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)
        out = np.sign(out) * np.sqrt(np.abs(out))
        v = out.reshape(-1)
        return v / max(float(np.linalg.norm(v)), 1e-12)

    def rank(self, query: np.ndarray, database: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Indices of database rows sorted by decreasing cosine similarity, and the similarities."""
        sims = database @ query
        order = np.argsort(-sims, kind="stable")
        return order, sims[order]
