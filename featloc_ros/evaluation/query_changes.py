"""Harder query sets with exact ground truth: roll the camera about its optical axis, darken to "night".

A roll by angle a is a pure rotation of the camera about its optical axis, so the rolled view is computed exactly
from the original image: each pixel of the new (undistorted, pinhole) image is a ray of the rolled camera, taken
back into the original camera and projected through its model (distortion included), then sampled bilinearly.
The new pose is T_world_cam' = T_world_cam @ [R_z(a)^T 0; 0 1] (points: X_cam' = R_z(a) X_cam). Corners without
image content are black. The night change is featloc_ros.synthesis.photometric.night (darkening, warm cast,
blur, shot and read noise) with a seeded generator.
"""

from __future__ import annotations

from dataclasses import replace

import cv2
import numpy as np

from ..geometry.camera import Camera
from ..synthesis import apply_photometric
from .localization import Frame


def roll_matrix(angle_deg: float) -> np.ndarray:
    """R_z(a) (3x3): rotation about the optical (z) axis; positive a turns the image content clockwise on
    screen (x right, y down)."""
    a = np.radians(angle_deg)
    return np.array([[np.cos(a), -np.sin(a), 0.0], [np.sin(a), np.cos(a), 0.0], [0.0, 0.0, 1.0]])


def roll_camera_pose(T_world_cam: np.ndarray, angle_deg: float) -> np.ndarray:
    """Pose of the camera rolled by ``angle_deg`` about its optical axis (X_cam' = R_z X_cam)."""
    T = np.eye(4)
    T[:3, :3] = roll_matrix(angle_deg).T
    return T_world_cam @ T


def rolled_frame(frame: Frame, angle_deg: float) -> Frame:
    """The view of ``frame``'s camera rolled by ``angle_deg``, as an undistorted PINHOLE image of the same size
    and focal lengths (exact ground truth pose)."""
    cam = frame.camera
    K = cam.K
    pinhole = Camera("PINHOLE", cam.width, cam.height, (K[0, 0], K[1, 1], K[0, 2], K[1, 2]))
    xs, ys = np.meshgrid(np.arange(cam.width, dtype=np.float64), np.arange(cam.height, dtype=np.float64))
    rays_new = np.stack([(xs - K[0, 2]) / K[0, 0], (ys - K[1, 2]) / K[1, 1], np.ones_like(xs)], -1).reshape(-1, 3)
    rays_old = rays_new @ roll_matrix(angle_deg)  # X_cam = R^T X_cam' (row vectors: X' @ R)
    uv = cam.project(rays_old).reshape(cam.height, cam.width, 2).astype(np.float32)
    image = cv2.remap(frame.image, uv[..., 0], uv[..., 1], cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
    return replace(frame, name=f"{frame.name}_roll{angle_deg:g}", image=image, camera=pinhole,
                   T_world_cam=roll_camera_pose(frame.T_world_cam, angle_deg))


def night_frame(frame: Frame, seed: int) -> Frame:
    """``frame`` with the synthetic night change (same camera and pose)."""
    image = apply_photometric(frame.image, "night", np.random.default_rng(seed))
    return replace(frame, name=f"{frame.name}_night", image=image)


def roll_angles(n: int, seed: int = 0, low: float = 30.0, high: float = 330.0) -> list[float]:
    """``n`` deterministic roll angles in [low, high] degrees (whole degrees)."""
    return [float(a) for a in np.round(np.random.default_rng(seed).uniform(low, high, n))]


def rolled_night_frames(frames: list[Frame], seed: int = 0) -> list[Frame]:
    """Each frame rolled by a deterministic angle in [30, 330] degrees, then darkened to night."""
    return [night_frame(rolled_frame(f, a), seed + i) for i, (f, a) in enumerate(zip(frames, roll_angles(len(frames), seed)))]


__all__ = ["roll_matrix", "roll_camera_pose", "rolled_frame", "night_frame", "roll_angles", "rolled_night_frames"]
