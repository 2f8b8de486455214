"""Photometric changes: illumination (gamma, contrast, colour cast, local shadows) and "night"
(strong darkening, sensor noise, blur). Deterministic given the generator."""

from __future__ import annotations

import cv2
import numpy as np


def _shadows(rng: np.random.Generator, h: int, w: int, count: int = 3) -> np.ndarray:
    """A multiplicative shadow mask in [0.35, 1] made of soft random ellipses."""
    mask = np.ones((h, w), np.float32)
    for _ in range(count):
        center = (int(rng.uniform(0, w)), int(rng.uniform(0, h)))
        axes = (int(rng.uniform(0.1, 0.4) * w), int(rng.uniform(0.1, 0.4) * h))
        layer = np.zeros((h, w), np.float32)
        cv2.ellipse(layer, center, axes, float(rng.uniform(0, 180)), 0, 360, 1.0, -1)
        k = int(0.05 * max(h, w)) * 2 + 1
        layer = cv2.GaussianBlur(layer, (k, k), 0)
        mask *= 1.0 - rng.uniform(0.3, 0.65) * layer
    return mask


def illumination(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Gamma, contrast, colour cast and local shadows."""
    x = image.astype(np.float32) / 255.0
    x = x ** rng.uniform(0.5, 2.0)
    x = (x - x.mean()) * rng.uniform(0.6, 1.4) + x.mean()
    x = x * rng.uniform(0.75, 1.25, 3).astype(np.float32)
    x = x * _shadows(rng, *image.shape[:2])[..., None]
    return (np.clip(x, 0, 1) * 255 + 0.5).astype(np.uint8)


def night(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Strong darkening (with gamma), a warm cast, Gaussian blur and shot + read noise."""
    x = image.astype(np.float32) / 255.0
    x = (x ** rng.uniform(1.2, 1.8)) * rng.uniform(0.12, 0.25)
    x = x * np.array([1.1, 0.95, 0.75], np.float32)
    x = cv2.GaussianBlur(x, (0, 0), rng.uniform(0.8, 1.5))
    photons = 255.0 * x
    noisy = photons + rng.normal(0, 1, x.shape) * np.sqrt(np.maximum(photons, 0) * 0.5) + rng.normal(0, 2.5, x.shape)
    return np.clip(noisy + 0.5, 0, 255).astype(np.uint8)


PHOTOMETRIC_CHANGES = {"none": lambda image, rng: image, "illumination": illumination, "night": night}


def apply_photometric(image: np.ndarray, kind: str, rng: np.random.Generator) -> np.ndarray:
    if kind not in PHOTOMETRIC_CHANGES:
        raise KeyError(f"unknown photometric change {kind!r}; known: {sorted(PHOTOMETRIC_CHANGES)}")
    return PHOTOMETRIC_CHANGES[kind](image, rng)
