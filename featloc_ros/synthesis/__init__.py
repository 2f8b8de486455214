"""Synthetic image pairs: random homographies and photometric changes (used by benchmarks with
fixed seeds, and by training)."""

from .homographies import sample_homography, warp_image
from .photometric import PHOTOMETRIC_CHANGES, apply_photometric

__all__ = ["PHOTOMETRIC_CHANGES", "apply_photometric", "sample_homography", "warp_image"]
