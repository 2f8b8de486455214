"""Local feature interface: image in, keypoints/scores/descriptors out."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..configuration import Configurable


@dataclass
class Features:
    """Local features of one image.

    keypoints:   (N, 2) float32 pixel coordinates (x, y) in the full-resolution input image
    scores:      (N,) float32 detection scores (higher is better)
    descriptors: (N, D) float32 (L2-normalised for all extractors shipped here)
    image_size:  (width, height) of the input image
    """

    keypoints: np.ndarray
    scores: np.ndarray
    descriptors: np.ndarray
    image_size: tuple[int, int]

    def __len__(self) -> int:
        return int(self.keypoints.shape[0])

    def subset(self, idx: np.ndarray) -> "Features":
        return Features(self.keypoints[idx], self.scores[idx], self.descriptors[idx], self.image_size)


class Extractor(Configurable):
    """Base class: subclasses set ``default_conf`` and implement ``_extract(gray or rgb) -> Features``.

    ``conf`` overrides ``default_conf`` key by key; unknown keys are rejected.
    """

    def __call__(self, image: np.ndarray) -> Features:
        if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim not in (2, 3):
            raise ValueError("extractor input must be an (H, W) or (H, W, 3) uint8 array")
        return self._extract(image)

    def _extract(self, image: np.ndarray) -> Features:
        raise NotImplementedError

    @property
    def descriptor_dim(self) -> int:
        raise NotImplementedError

    @property
    def retrieval_columns(self) -> tuple[int, int] | None:
        """The descriptor columns [start, stop) that keyframe retrieval aggregates (None: all of them)."""
        return None
