"""Pose covariance from reprojection residuals (Gauss-Newton approximation).

Parameterisation follows geometry_msgs/PoseWithCovariance: (x, y, z, rx, ry, rz), position of the
camera in the map frame and a small rotation about the map frame's axes, applied on the left:
``R_map_cam <- exp([δθ]x) R_map_cam``. The residual variance is estimated from the inliers
themselves (a posteriori variance factor), so a poor fit yields a large covariance.
"""

from __future__ import annotations

import numpy as np
from scipy.spatial.transform import Rotation

from ..geometry.camera import Camera


def _residuals(camera: Camera, T_map_cam: np.ndarray, pts2d: np.ndarray, pts3d: np.ndarray) -> np.ndarray:
    R, p = T_map_cam[:3, :3], T_map_cam[:3, 3]
    Xc = (pts3d - p) @ R  # R^T (X - p) for each row
    return (camera.project(Xc) - pts2d).reshape(-1)


def pose_covariance(camera: Camera, T_map_cam: np.ndarray, pts2d: np.ndarray, pts3d: np.ndarray,
                    min_sigma_px: float = 0.25) -> tuple[np.ndarray, float]:
    """6x6 covariance (x, y, z, rx, ry, rz) and the residual sigma in pixels.

    ``min_sigma_px`` floors the estimated pixel noise so a perfect synthetic fit does not claim
    an impossibly small uncertainty.
    """
    n = pts2d.shape[0]
    r0 = _residuals(camera, T_map_cam, pts2d, pts3d)
    J = np.zeros((2 * n, 6))
    scale = max(float(np.median(np.linalg.norm(pts3d - T_map_cam[:3, 3], axis=1))), 1e-6)
    for i in range(6):
        h = 1e-6 * scale if i < 3 else 1e-6
        for sign in (1.0, -1.0):
            T = T_map_cam.copy()
            if i < 3:
                T[i, 3] += sign * h
            else:
                w = np.zeros(3)
                w[i - 3] = sign * h
                T[:3, :3] = Rotation.from_rotvec(w).as_matrix() @ T_map_cam[:3, :3]
            J[:, i] += sign * _residuals(camera, T, pts2d, pts3d) / (2 * h)
    dof = max(2 * n - 6, 1)
    sigma = max(float(np.sqrt(np.sum(r0 ** 2) / dof)), min_sigma_px)
    JtJ = J.T @ J
    try:
        cov = sigma ** 2 * np.linalg.inv(JtJ)
    except np.linalg.LinAlgError:
        cov = np.full((6, 6), np.inf)
    return 0.5 * (cov + cov.T), sigma
