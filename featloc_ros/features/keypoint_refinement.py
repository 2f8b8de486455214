"""Sub-pixel keypoint refinement on an image response with exact geometric equivariance.

A learned detector's score map places its peaks a few tenths of a pixel differently in two views of the same
structure (models/README.md, "Keypoint refinement"). The Laplacian of Gaussian of the image is a fixed, isotropic
filter: its extrema move with the image under translation and rotation, and a gain or offset of the intensities
does not move them. ``refine_keypoints`` moves each keypoint to the strongest |LoG| pixel within ``radius`` of its
rounded position, then to the vertex of the parabola through that pixel and its neighbours (x and y separately,
as SIFT refines its extrema).
"""

from __future__ import annotations

import cv2
import numpy as np


def log_response(gray: np.ndarray, sigma: float) -> np.ndarray:
    """|Laplacian of Gaussian| of a (H, W) grey image at scale ``sigma`` px, scale-normalised (times sigma^2):
    (H, W) float32."""
    if sigma <= 0:
        raise ValueError(f"keypoint refinement: sigma must be > 0, got {sigma}")
    g = gray.astype(np.float32)
    return np.abs(cv2.Laplacian(cv2.GaussianBlur(g, (0, 0), sigma), cv2.CV_32F)) * np.float32(sigma * sigma)


def parabola_vertex(left: np.ndarray, centre: np.ndarray, right: np.ndarray) -> np.ndarray:
    """Offset in [-0.5, 0.5] of the maximum of the parabola through (-1, left), (0, centre), (1, right); 0 where
    the three values do not make a maximum."""
    curvature = left - 2 * centre + right
    safe = np.where(curvature < 0, curvature, -1.0)
    return np.where(curvature < 0, np.clip(0.5 * (left - right) / safe, -0.5, 0.5), 0.0)


def refine_keypoints(response: np.ndarray, keypoints: np.ndarray, radius: int = 1) -> np.ndarray:
    """Keypoints (N, 2) (x, y) pixels -> (N, 2): each moved to the maximum of ``response`` (H, W) within
    ``radius`` px (a square window) of its rounded position, at sub-pixel precision. Keypoints whose window
    leaves the image keep their position."""
    kpts = np.asarray(keypoints, dtype=np.float64).reshape(-1, 2)
    if len(kpts) == 0:
        return kpts.copy()
    h, w = response.shape
    pad = radius + 1
    r = np.pad(response.astype(np.float64), pad, mode="edge")
    xi, yi = np.round(kpts[:, 0]).astype(int), np.round(kpts[:, 1]).astype(int)
    inside = (xi >= 0) & (xi < w) & (yi >= 0) & (yi < h)
    xi, yi = np.clip(xi, 0, w - 1), np.clip(yi, 0, h - 1)
    steps = np.arange(-radius, radius + 1)
    dy, dx = [a.ravel() for a in np.meshgrid(steps, steps, indexing="ij")]
    window = r[yi[:, None] + pad + dy[None], xi[:, None] + pad + dx[None]]  # (N, (2r+1)^2)
    best = window.argmax(1)
    cx, cy = xi + dx[best] + pad, yi + dy[best] + pad  # in the padded array
    c = r[cy, cx]
    x = cx - pad + parabola_vertex(r[cy, cx - 1], c, r[cy, cx + 1])
    y = cy - pad + parabola_vertex(r[cy - 1, cx], c, r[cy + 1, cx])
    out = kpts.copy()
    out[inside] = np.stack([x, y], 1)[inside]
    return out


NO_REFINEMENT = {"log_sigma": 0.0, "radius": 1, "offset": (0.0, 0.0)}


def refinement_settings(conf: dict | None, source: str = "keypoint refinement") -> dict:
    """Checked settings {"log_sigma": float >= 0 (0: off), "radius": int >= 0, "offset": (dx, dy)} from a
    mapping with any of those keys (the rest default to no refinement); ``source`` names it in errors."""
    conf = dict(conf or {})
    unknown = set(conf) - set(NO_REFINEMENT)
    if unknown:
        raise ValueError(f"{source}: unknown keypoint refinement settings {sorted(unknown)}")
    out = {**NO_REFINEMENT, **{k: v for k, v in conf.items() if k in NO_REFINEMENT}}
    try:
        sigma, radius = float(out["log_sigma"]), int(out["radius"])
        offset = tuple(float(v) for v in out["offset"])
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{source}: bad keypoint refinement settings {conf}: {exc}") from exc
    if not np.isfinite(sigma) or sigma < 0 or radius < 0 or len(offset) != 2 or not np.all(np.isfinite(offset)):
        raise ValueError(f"{source}: keypoint refinement needs log_sigma >= 0, radius >= 0 and a finite (dx, dy) "
                         f"offset, got {conf}")
    return {"log_sigma": sigma, "radius": radius, "offset": offset}


def apply_refinement(gray: np.ndarray, keypoints: np.ndarray, settings: dict) -> np.ndarray:
    """``refine_keypoints`` on the |LoG| of ``gray`` with checked ``settings``, plus their offset; the
    keypoints unchanged when log_sigma is 0. (N, 2) -> (N, 2) float32."""
    if settings["log_sigma"] <= 0:
        return np.asarray(keypoints, np.float32)
    refined = refine_keypoints(log_response(gray, settings["log_sigma"]), keypoints, settings["radius"])
    return (refined + np.asarray(settings["offset"])).astype(np.float32)
