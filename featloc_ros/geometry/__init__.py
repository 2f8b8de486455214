"""Camera models and rigid transforms (no ROS)."""

from .camera import Camera, InvalidCameraError
from .transforms import (
    invert_transform,
    make_transform,
    matrix_from_quaternion,
    quaternion_from_matrix,
    rotation_angle_deg,
)

__all__ = [
    "Camera",
    "InvalidCameraError",
    "invert_transform",
    "make_transform",
    "matrix_from_quaternion",
    "quaternion_from_matrix",
    "rotation_angle_deg",
]
