"""Rigid transforms as 4x4 numpy matrices and quaternions in ROS order (x, y, z, w).

Naming: ``T_a_b`` maps points from frame ``b`` into frame ``a`` (the pose of ``b`` in ``a``).
"""

from __future__ import annotations

import numpy as np
from scipy.spatial.transform import Rotation, Slerp


def make_transform(R: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Build a 4x4 transform from a 3x3 rotation and a translation (3,)."""
    T = np.eye(4)
    T[:3, :3] = R
    T[:3, 3] = np.asarray(t, dtype=np.float64).reshape(3)
    return T


def invert_transform(T: np.ndarray) -> np.ndarray:
    """Inverse of a rigid 4x4 transform."""
    R = T[:3, :3]
    return make_transform(R.T, -R.T @ T[:3, 3])


def matrix_from_quaternion(q_xyzw) -> np.ndarray:
    """3x3 rotation from a quaternion (x, y, z, w); raises ValueError if it is not finite or zero."""
    q = np.asarray(q_xyzw, dtype=np.float64)
    n = np.linalg.norm(q)
    if not np.all(np.isfinite(q)) or n < 1e-9:
        raise ValueError(f"invalid quaternion {q.tolist()}")
    return Rotation.from_quat(q / n).as_matrix()


def quaternion_from_matrix(R: np.ndarray) -> np.ndarray:
    """Quaternion (x, y, z, w) with w >= 0 from a 3x3 rotation."""
    q = Rotation.from_matrix(R).as_quat()
    return q if q[3] >= 0 else -q


def transform_from_pose(position, quaternion_xyzw) -> np.ndarray:
    """4x4 transform from a position (3,) and a quaternion (x, y, z, w)."""
    return make_transform(matrix_from_quaternion(quaternion_xyzw), position)


def interpolate_transform(T0: np.ndarray, T1: np.ndarray, alpha: float) -> np.ndarray:
    """Interpolate between two transforms: linear in translation, slerp in rotation."""
    rots = Rotation.from_matrix(np.stack([T0[:3, :3], T1[:3, :3]]))
    R = Slerp([0.0, 1.0], rots)([alpha]).as_matrix()[0]
    t = (1.0 - alpha) * T0[:3, 3] + alpha * T1[:3, 3]
    return make_transform(R, t)


def rotation_angle_deg(R: np.ndarray) -> float:
    """Angle of a rotation matrix in degrees (e.g. of R_est^T R_gt)."""
    c = (np.trace(R) - 1.0) / 2.0
    return float(np.degrees(np.arccos(np.clip(c, -1.0, 1.0))))


def pose_errors(T_est: np.ndarray, T_gt: np.ndarray) -> tuple[float, float]:
    """Position error (in map units) and rotation error (degrees) between two camera poses."""
    dt = float(np.linalg.norm(T_est[:3, 3] - T_gt[:3, 3]))
    dr = rotation_angle_deg(T_est[:3, :3].T @ T_gt[:3, :3])
    return dt, dr
