"""Matcher interface: two sets of local features in, index pairs out."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..configuration import Configurable
from ..features.base import Features


@dataclass
class Matches:
    """indices: (M, 2) int64 rows (i in image 0, j in image 1); scores: (M,) float32 confidence."""

    indices: np.ndarray
    scores: np.ndarray

    def __len__(self) -> int:
        return int(self.indices.shape[0])

    @staticmethod
    def empty() -> "Matches":
        return Matches(np.zeros((0, 2), np.int64), np.zeros(0, np.float32))


class Matcher(Configurable):
    """Base class: subclasses set ``default_conf`` and implement ``_match(feats0, feats1) -> Matches``.
    ``descriptor_only``: the matches depend on the descriptors alone (not on the keypoint layout of each image), so
    a set may gather observations from several images (the localizer matches a query against map points)."""

    descriptor_only = False

    def __call__(self, feats0: Features, feats1: Features) -> Matches:
        if len(feats0) == 0 or len(feats1) == 0:
            return Matches.empty()
        return self._match(feats0, feats1)

    def _match(self, feats0: Features, feats1: Features) -> Matches:
        raise NotImplementedError

    @property
    def descriptor_dim(self) -> int | None:
        """The descriptor width this matcher needs (None: any)."""
        return None
