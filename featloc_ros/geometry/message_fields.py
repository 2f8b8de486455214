"""Read stamps and poses from message-like objects (anything with the ROS field names).

Works on rclpy messages and on messages decoded by ``rosbags`` alike; imports nothing from ROS.
"""

from __future__ import annotations

import numpy as np

from .transforms import transform_from_pose

NS_PER_S = 1_000_000_000


def stamp_to_ns(stamp) -> int:
    """builtin_interfaces/Time (anything with ``sec`` and ``nanosec``) -> integer nanoseconds."""
    return int(stamp.sec) * NS_PER_S + int(stamp.nanosec)


def pose_to_matrix(pose) -> np.ndarray:
    """geometry_msgs/Pose -> 4x4 transform (raises ValueError on a zero / non-finite quaternion)."""
    p, q = pose.position, pose.orientation
    return transform_from_pose([p.x, p.y, p.z], [q.x, q.y, q.z, q.w])


def transform_to_matrix(transform) -> np.ndarray:
    """geometry_msgs/Transform -> 4x4 transform."""
    t, q = transform.translation, transform.rotation
    return transform_from_pose([t.x, t.y, t.z], [q.x, q.y, q.z, q.w])
