"""Random homographies that keep most of the image in view."""

from __future__ import annotations

import cv2
import numpy as np


def _about_center(w: int, h: int, A: np.ndarray) -> np.ndarray:
    c = np.array([[1, 0, (w - 1) / 2], [0, 1, (h - 1) / 2], [0, 0, 1.0]])
    return c @ A @ np.linalg.inv(c)


def sample_homography(rng: np.random.Generator, width: int, height: int, max_rotation_deg: float = 30.0,
                      scale_range: tuple[float, float] = (0.8, 1.25), max_perspective: float = 0.0006,
                      max_translation: float = 0.08) -> np.ndarray:
    """H (3x3) mapping pixels of the source image to the warped image: rotation about the centre,
    isotropic scale, small perspective and translation (fractions of the image size)."""
    th = np.radians(rng.uniform(-max_rotation_deg, max_rotation_deg))
    s = np.exp(rng.uniform(np.log(scale_range[0]), np.log(scale_range[1])))
    A = np.array([[s * np.cos(th), -s * np.sin(th), 0], [s * np.sin(th), s * np.cos(th), 0], [0, 0, 1.0]])
    P = np.eye(3)
    P[2, :2] = rng.uniform(-max_perspective, max_perspective, 2)
    T = np.eye(3)
    T[:2, 2] = rng.uniform(-max_translation, max_translation, 2) * [width, height]
    return T @ _about_center(width, height, P @ A)


def warp_image(image: np.ndarray, H: np.ndarray, size: tuple[int, int] | None = None) -> np.ndarray:
    """Warp an image with H (source -> target pixels); ``size`` = (width, height) of the target."""
    h, w = image.shape[:2]
    return cv2.warpPerspective(image, H, size or (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
