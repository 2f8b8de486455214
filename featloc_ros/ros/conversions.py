"""Pure conversions between ROS 2 messages and the numpy types of the featloc_ros core.

Readers (``*_to_*`` / ``*_from_msg``) duck-type their input, so they also work on messages
deserialized by ``rosbags``; builders import the ROS message packages lazily, so this module can
be imported (and its readers used) without a ROS installation.

Conventions (same as the core): ``T_map_cam`` is a 4x4 camera-to-map transform of the ROS optical
camera frame; covariances are 6x6 over (x, y, z, rx, ry, rz) - the geometry_msgs/PoseWithCovariance
layout - and are stored in messages row-major as 36 floats.
"""

from __future__ import annotations

import numpy as np

from ..geometry.camera import Camera, InvalidCameraError
from ..geometry.image_codec import ImageDecodeError, decode_compressed_image, decode_raw_image
from ..geometry.transforms import make_transform, quaternion_from_matrix
from ..geometry.message_fields import NS_PER_S, pose_to_matrix, stamp_to_ns, transform_to_matrix  # noqa: F401 (re-exported)

__all__ = [
    "NS_PER_S",
    "stamp_to_ns",
    "stamp_to_sec",
    "ns_to_stamp",
    "make_header",
    "pose_to_matrix",
    "matrix_to_pose",
    "transform_to_matrix",
    "matrix_to_transform",
    "covariance_to_msg",
    "covariance_from_msg",
    "pose_with_covariance_stamped",
    "pose_with_covariance_from_msg",
    "pose_stamped",
    "transform_stamped",
    "camera_from_camera_info",
    "image_msg_to_rgb",
    "image_msg_size",
    "rgb_to_image_msg",
    "point_cloud2_xyzrgb",
    "point_cloud2_to_xyzrgb",
    "keyframe_markers",
    "ARROW_IN_CAMERA",
    "ImageDecodeError",
    "InvalidCameraError",
]




# ---------------------------------------------------------------------------- time
def stamp_to_sec(stamp) -> float:
    return stamp_to_ns(stamp) / 1e9


def ns_to_stamp(ns: int):
    """Integer nanoseconds -> builtin_interfaces/msg/Time (negative stamps are rejected by ROS)."""
    from builtin_interfaces.msg import Time

    ns = int(ns)
    if ns < 0:
        raise ValueError(f"negative time stamp {ns} ns")
    sec, nanosec = divmod(ns, NS_PER_S)
    return Time(sec=sec, nanosec=nanosec)


# ---------------------------------------------------------------------------- poses
def _check_transform(T) -> np.ndarray:
    T = np.asarray(T, dtype=np.float64)
    if T.shape != (4, 4) or not np.all(np.isfinite(T)):
        raise ValueError(f"expected a finite 4x4 transform, got shape {T.shape}")
    return T


def matrix_to_pose(T):
    """4x4 transform -> geometry_msgs/msg/Pose (quaternion normalised, w >= 0)."""
    from geometry_msgs.msg import Point, Pose, Quaternion

    T = _check_transform(T)
    x, y, z, w = (float(v) for v in quaternion_from_matrix(T[:3, :3]))
    return Pose(position=Point(x=float(T[0, 3]), y=float(T[1, 3]), z=float(T[2, 3])),
                orientation=Quaternion(x=x, y=y, z=z, w=w))


def matrix_to_transform(T):
    """4x4 transform -> geometry_msgs/msg/Transform."""
    from geometry_msgs.msg import Quaternion, Transform, Vector3

    T = _check_transform(T)
    x, y, z, w = (float(v) for v in quaternion_from_matrix(T[:3, :3]))
    return Transform(translation=Vector3(x=float(T[0, 3]), y=float(T[1, 3]), z=float(T[2, 3])),
                     rotation=Quaternion(x=x, y=y, z=z, w=w))


def covariance_to_msg(cov) -> list[float]:
    """6x6 covariance (x, y, z, rx, ry, rz) -> 36 floats, row-major (PoseWithCovariance.covariance).

    ``None`` gives all zeros ("unknown" by ROS convention is -1 in [0], but a zero matrix is what
    most consumers expect when nothing is known; callers decide).
    """
    if cov is None:
        return [0.0] * 36
    c = np.asarray(cov, dtype=np.float64)
    if c.shape != (6, 6):
        raise ValueError(f"covariance must be 6x6, got shape {c.shape}")
    return [float(v) for v in c.reshape(36)]


def covariance_from_msg(values) -> np.ndarray:
    c = np.asarray(values, dtype=np.float64).reshape(-1)
    if c.size != 36:
        raise ValueError(f"covariance must have 36 values, got {c.size}")
    return c.reshape(6, 6).copy()


def make_header(stamp_ns: int, frame_id: str):
    from std_msgs.msg import Header

    return Header(stamp=ns_to_stamp(stamp_ns), frame_id=str(frame_id))


def pose_with_covariance_stamped(T, cov, stamp_ns: int, frame_id: str):
    """geometry_msgs/msg/PoseWithCovarianceStamped of a camera pose in ``frame_id``."""
    from geometry_msgs.msg import PoseWithCovariance, PoseWithCovarianceStamped

    return PoseWithCovarianceStamped(
        header=make_header(stamp_ns, frame_id),
        pose=PoseWithCovariance(pose=matrix_to_pose(T), covariance=covariance_to_msg(cov)))


def pose_with_covariance_from_msg(msg) -> tuple[int, np.ndarray, np.ndarray]:
    """PoseWithCovarianceStamped -> (stamp_ns, T 4x4, covariance 6x6)."""
    return (stamp_to_ns(msg.header.stamp), pose_to_matrix(msg.pose.pose),
            covariance_from_msg(msg.pose.covariance))


def pose_stamped(T, stamp_ns: int, frame_id: str):
    from geometry_msgs.msg import PoseStamped

    return PoseStamped(header=make_header(stamp_ns, frame_id), pose=matrix_to_pose(T))


def transform_stamped(T, stamp_ns: int, parent_frame: str, child_frame: str):
    """geometry_msgs/msg/TransformStamped parent -> child (``T`` = pose of child in parent)."""
    from geometry_msgs.msg import TransformStamped

    return TransformStamped(header=make_header(stamp_ns, parent_frame), child_frame_id=str(child_frame),
                            transform=matrix_to_transform(T))


# ---------------------------------------------------------------------------- camera
def camera_from_camera_info(msg) -> Camera:
    """sensor_msgs/CameraInfo -> Camera (K and D of the raw image; raises InvalidCameraError).

    Binning and ROI are not supported (the image would not match K): they raise
    InvalidCameraError instead of silently giving a wrong model.
    """
    bx, by = int(getattr(msg, "binning_x", 0)), int(getattr(msg, "binning_y", 0))
    if bx > 1 or by > 1:
        raise InvalidCameraError(f"CameraInfo binning {bx}x{by} is not supported")
    roi = getattr(msg, "roi", None)
    if roi is not None and int(roi.width) > 0 and int(roi.height) > 0 and \
            (int(roi.width), int(roi.height)) != (int(msg.width), int(msg.height)):
        raise InvalidCameraError(f"CameraInfo ROI {roi.width}x{roi.height} is not supported")
    return Camera.from_camera_info(int(msg.width), int(msg.height), str(msg.distortion_model),
                                   np.asarray(msg.d, dtype=np.float64), np.asarray(msg.k, dtype=np.float64))


# ---------------------------------------------------------------------------- images
def _is_compressed(msg) -> bool:
    return hasattr(msg, "format") and not hasattr(msg, "encoding")


def image_msg_size(msg) -> tuple[int, int] | None:
    """(width, height) of a raw Image message; None for a CompressedImage (known after decoding)."""
    if _is_compressed(msg):
        return None
    return int(msg.width), int(msg.height)


def image_msg_to_rgb(msg) -> np.ndarray:
    """sensor_msgs/Image or sensor_msgs/CompressedImage -> (H, W, 3) uint8 RGB (raises ImageDecodeError)."""
    if _is_compressed(msg):
        return decode_compressed_image(str(msg.format), msg.data)
    if not hasattr(msg, "encoding"):
        raise ImageDecodeError(f"not an image message: {type(msg).__name__}")
    return decode_raw_image(str(msg.encoding), int(msg.width), int(msg.height), int(msg.step), msg.data,
                            int(msg.is_bigendian))


def rgb_to_image_msg(rgb: np.ndarray, stamp_ns: int, frame_id: str, encoding: str = "rgb8"):
    """(H, W, 3) RGB or (H, W) gray uint8 -> sensor_msgs/msg/Image (rgb8, bgr8 or mono8)."""
    from sensor_msgs.msg import Image

    rgb = np.asarray(rgb)
    if rgb.dtype != np.uint8:
        raise ValueError("rgb_to_image_msg needs a uint8 image")
    if encoding == "rgb8":
        data = rgb
    elif encoding == "bgr8":
        data = rgb[:, :, ::-1]
    elif encoding == "mono8":
        data = rgb if rgb.ndim == 2 else np.rint(rgb.astype(np.float32) @ [0.299, 0.587, 0.114]).astype(np.uint8)
    else:
        raise ValueError(f"rgb_to_image_msg: unsupported encoding {encoding!r}")
    data = np.ascontiguousarray(data, dtype=np.uint8)
    h, w = data.shape[:2]
    channels = 1 if data.ndim == 2 else data.shape[2]
    return Image(header=make_header(stamp_ns, frame_id), height=h, width=w, encoding=encoding, is_bigendian=0,
                 step=w * channels, data=data.tobytes())


# ---------------------------------------------------------------------------- map visualisation
def point_cloud2_xyzrgb(xyz, colors, frame_id: str, stamp_ns: int = 0):
    """(N, 3) points + (N, 3) uint8 RGB -> sensor_msgs/msg/PointCloud2.

    Fields: x, y, z float32 at offsets 0/4/8 and ``rgb`` at 12: the colour packed as 0x00RRGGBB
    into 4 bytes declared FLOAT32 (the PCL / RViz convention). point_step 16, little endian, dense.
    """
    from sensor_msgs.msg import PointCloud2, PointField

    xyz = np.asarray(xyz, dtype=np.float64).reshape(-1, 3)
    colors = np.asarray(colors, dtype=np.uint8).reshape(-1, 3)
    if colors.shape[0] != xyz.shape[0]:
        raise ValueError(f"{xyz.shape[0]} points but {colors.shape[0]} colours")
    n = xyz.shape[0]
    rec = np.zeros(n, dtype=np.dtype({"names": ["x", "y", "z", "rgb"],
                                      "formats": ["<f4", "<f4", "<f4", "<u4"],
                                      "offsets": [0, 4, 8, 12], "itemsize": 16}))
    rec["x"], rec["y"], rec["z"] = xyz[:, 0], xyz[:, 1], xyz[:, 2]
    c = colors.astype(np.uint32)
    rec["rgb"] = (c[:, 0] << 16) | (c[:, 1] << 8) | c[:, 2]
    fields = [PointField(name=name, offset=off, datatype=PointField.FLOAT32, count=1)
              for name, off in (("x", 0), ("y", 4), ("z", 8), ("rgb", 12))]
    return PointCloud2(header=make_header(stamp_ns, frame_id), height=1, width=n, fields=fields, is_bigendian=False,
                       point_step=16, row_step=16 * n, data=rec.tobytes(), is_dense=True)


def point_cloud2_to_xyzrgb(msg) -> tuple[np.ndarray, np.ndarray]:
    """Inverse of point_cloud2_xyzrgb for clouds with float32 x, y, z and packed rgb fields."""
    offsets = {f.name: int(f.offset) for f in msg.fields}
    for name in ("x", "y", "z", "rgb"):
        if name not in offsets:
            raise ValueError(f"PointCloud2 has no field {name!r}")
    n = int(msg.width) * int(msg.height)
    endian = ">" if msg.is_bigendian else "<"
    dt = np.dtype({"names": ["x", "y", "z", "rgb"], "formats": [endian + "f4"] * 3 + [endian + "u4"],
                   "offsets": [offsets["x"], offsets["y"], offsets["z"], offsets["rgb"]],
                   "itemsize": int(msg.point_step)})
    rec = np.frombuffer(memoryview(msg.data), dtype=dt, count=n)
    xyz = np.stack([rec["x"], rec["y"], rec["z"]], axis=1).astype(np.float64)
    rgb = rec["rgb"]
    colors = np.stack([(rgb >> 16) & 255, (rgb >> 8) & 255, rgb & 255], axis=1).astype(np.uint8)
    return xyz, colors


# An RViz ARROW points along the x axis of its pose; this rotation makes it point along the camera's
# optical axis (z) with the arrow's z axis = camera "up" (-y).
ARROW_IN_CAMERA = make_transform(np.array([[0.0, -1.0, 0.0],
                                           [0.0, 0.0, -1.0],
                                           [1.0, 0.0, 0.0]]), np.zeros(3))


def keyframe_markers(poses, frame_id: str, stamp_ns: int = 0, ns: str = "featloc_keyframes",
                     length: float = 0.3, color=(0.1, 0.6, 1.0, 0.9)):
    """Keyframe poses (K, 4, 4) -> visualization_msgs/msg/MarkerArray of arrows along the optical axes.

    The first marker is a DELETEALL so re-publishing (or a new map) replaces stale arrows in RViz.
    """
    from std_msgs.msg import ColorRGBA
    from geometry_msgs.msg import Vector3
    from visualization_msgs.msg import Marker, MarkerArray

    header = make_header(stamp_ns, frame_id)
    markers = [Marker(header=header, ns=ns, id=0, action=Marker.DELETEALL)]
    shaft = float(length)
    for k, T in enumerate(np.asarray(poses, dtype=np.float64).reshape(-1, 4, 4)):
        markers.append(Marker(
            header=header, ns=ns, id=k + 1, type=Marker.ARROW, action=Marker.ADD,
            pose=matrix_to_pose(T @ ARROW_IN_CAMERA),
            scale=Vector3(x=shaft, y=0.1 * shaft, z=0.2 * shaft),
            color=ColorRGBA(r=float(color[0]), g=float(color[1]), b=float(color[2]), a=float(color[3])),
            frame_locked=False))
    return MarkerArray(markers=markers)
