"""Read camera streams, intrinsics and poses from rosbag2 (sqlite3 or mcap) with ``rosbags``.

No ROS install is needed. Supported messages: sensor_msgs/Image, sensor_msgs/CompressedImage,
sensor_msgs/CameraInfo, tf2_msgs/TFMessage (``/tf``, ``/tf_static``), geometry_msgs/PoseStamped,
geometry_msgs/PoseWithCovarianceStamped, nav_msgs/Odometry.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from ..geometry.camera import Camera
from ..geometry.image_codec import decode_compressed_image, decode_raw_image
from ..geometry.message_fields import pose_to_matrix, stamp_to_ns, transform_to_matrix
from .transform_buffer import TransformBuffer, TransformLookupError

IMAGE_TYPES = ("sensor_msgs/msg/Image", "sensor_msgs/msg/CompressedImage")
POSE_TYPES = ("geometry_msgs/msg/PoseStamped", "geometry_msgs/msg/PoseWithCovarianceStamped", "nav_msgs/msg/Odometry")
POSE_TOPIC_FRAME = "__featloc_pose_topic_body__"


class BagError(ValueError):
    """A bag that cannot be used as asked; the message names the bag and the problem."""


@dataclass
class ImageRecord:
    """One image message: its stamp, frame, the camera model valid for it, its pose (or None) and
    a decoder that returns the (H, W, 3) uint8 RGB image."""

    index: int
    stamp_ns: int
    frame_id: str
    camera: Camera | None
    T_map_cam: np.ndarray | None
    decode: Callable[[], np.ndarray]


def open_reader(path: str | Path):
    from rosbags.highlevel import AnyReader
    from rosbags.typesys import Stores, get_typestore

    path = Path(path)
    if not path.exists():
        raise BagError(f"{path}: bag does not exist")
    try:
        reader = AnyReader([path], default_typestore=get_typestore(Stores.ROS2_HUMBLE))
        reader.open()
    except Exception as e:  # rosbags raises several unrelated error types for broken bags
        raise BagError(f"{path}: cannot open bag ({type(e).__name__}: {e})") from e
    return reader


class BagCameraStream:
    """A camera stream in a bag, with intrinsics and (optionally) camera poses in ``map_frame``.

    pose_source: "tf" (look up map_frame <- camera frame in /tf + /tf_static), "topic" (a
    PoseStamped / PoseWithCovarianceStamped / Odometry topic giving the pose of ``pose_body_frame``
    — by default the camera frame itself — composed with TF from that body to the camera), or
    "none". The camera frame is ``camera_frame`` or else the image header's frame_id.
    """

    def __init__(self, bag: str | Path, image_topic: str, camera_info_topic: str | None = None,
                 pose_source: str = "tf", pose_topic: str | None = None, map_frame: str = "map",
                 camera_frame: str | None = None, pose_body_frame: str | None = None,
                 camera: Camera | None = None, tf_tolerance_s: float = 0.05):
        if pose_source not in ("tf", "topic", "none"):
            raise BagError(f"{bag}: pose_source must be 'tf', 'topic' or 'none', got {pose_source!r}")
        if pose_source == "topic" and not pose_topic:
            raise BagError(f"{bag}: pose_source 'topic' needs pose_topic")
        self.bag = Path(bag)
        self.image_topic, self.camera_info_topic = image_topic, camera_info_topic
        self.pose_source, self.pose_topic, self.map_frame = pose_source, pose_topic, map_frame.lstrip("/")
        self.camera_frame, self.pose_body_frame, self.fixed_camera = camera_frame, pose_body_frame, camera
        self.tf = TransformBuffer(tf_tolerance_s)
        self.camera_infos: list[tuple[int, Camera]] = []
        self._reader = open_reader(self.bag)
        try:
            self._index_metadata()
        except Exception:
            self._reader.close()
            raise

    def close(self) -> None:
        self._reader.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _connections(self, topic: str, types: tuple[str, ...], what: str):
        conns = [c for c in self._reader.connections if c.topic == topic]
        if not conns:
            available = sorted({f"{c.topic} [{c.msgtype}]" for c in self._reader.connections})
            raise BagError(f"{self.bag}: {what} topic {topic!r} is not in the bag; available: {', '.join(available)}")
        bad = [c.msgtype for c in conns if c.msgtype not in types]
        if bad:
            raise BagError(f"{self.bag}: topic {topic!r} has type {bad[0]}, expected one of {', '.join(types)}")
        return conns

    def _messages(self, conns):
        try:
            for conn, _t, raw in self._reader.messages(connections=conns):
                yield conn, self._reader.deserialize(raw, conn.msgtype)
        except BagError:
            raise
        except Exception as e:
            raise BagError(f"{self.bag}: cannot read messages on {conns[0].topic!r} ({type(e).__name__}: {e})") from e

    def _index_metadata(self) -> None:
        self.image_conns = self._connections(self.image_topic, IMAGE_TYPES, "image")
        self.num_images = sum(c.msgcount for c in self.image_conns)
        if self.camera_info_topic:
            for _c, msg in self._messages(self._connections(self.camera_info_topic, ("sensor_msgs/msg/CameraInfo",),
                                                            "camera info")):
                try:
                    cam = Camera.from_camera_info(msg.width, msg.height, msg.distortion_model, msg.d, msg.k)
                except ValueError as e:
                    raise BagError(f"{self.bag}: invalid CameraInfo on {self.camera_info_topic!r} "
                                   f"at t={stamp_to_ns(msg.header.stamp) * 1e-9:.3f}s: {e}") from e
                self.camera_infos.append((stamp_to_ns(msg.header.stamp), cam))
            self.camera_infos.sort(key=lambda x: x[0])
        elif self.fixed_camera is None:
            raise BagError(f"{self.bag}: no camera_info_topic and no camera model given")
        tf_conns = [c for c in self._reader.connections
                    if c.topic in ("/tf", "/tf_static") and c.msgtype == "tf2_msgs/msg/TFMessage"]
        if self.pose_source == "tf" and not tf_conns:
            raise BagError(f"{self.bag}: pose_source 'tf' but the bag has no /tf or /tf_static (use --pose-source none or topic)")
        for conn, msg in (self._messages(tf_conns) if tf_conns else ()):
            static = conn.topic == "/tf_static"
            for tr in msg.transforms:
                self.tf.add(tr.header.frame_id, tr.child_frame_id, stamp_to_ns(tr.header.stamp), transform_to_matrix(tr.transform),
                            static=static)
        if self.pose_source == "topic":
            for _c, msg in self._messages(self._connections(self.pose_topic, POSE_TYPES, "pose")):
                pose = msg.pose.pose if hasattr(msg.pose, "pose") else msg.pose
                frame = msg.header.frame_id.lstrip("/") or self.map_frame
                if frame != self.map_frame:
                    raise BagError(f"{self.bag}: pose topic {self.pose_topic!r} is in frame {frame!r}, expected {self.map_frame!r}")
                if self.pose_body_frame is None and getattr(msg, "child_frame_id", ""):
                    self.pose_body_frame = msg.child_frame_id  # Odometry: pose of child_frame_id
                self.tf.add(self.map_frame, POSE_TOPIC_FRAME, stamp_to_ns(msg.header.stamp), pose_to_matrix(pose))

    def camera_at(self, stamp_ns: int) -> Camera:
        if self.fixed_camera is not None:
            return self.fixed_camera
        if not self.camera_infos:
            raise BagError(f"{self.bag}: no CameraInfo messages on {self.camera_info_topic!r}")
        stamps = [s for s, _ in self.camera_infos]
        i = int(np.searchsorted(stamps, stamp_ns, side="right")) - 1
        return self.camera_infos[max(i, 0)][1]

    def pose_at(self, stamp_ns: int, camera_frame: str) -> np.ndarray | None:
        """T_map_cam at the stamp, or None when no pose source / the lookup fails."""
        try:
            if self.pose_source == "tf":
                return self.tf.lookup(self.map_frame, camera_frame, stamp_ns)
            if self.pose_source == "topic":
                T = self.tf.lookup(self.map_frame, POSE_TOPIC_FRAME, stamp_ns)
                body = self.pose_body_frame
                if body and body.lstrip("/") != camera_frame.lstrip("/"):
                    T = T @ self.tf.lookup(body, camera_frame, stamp_ns)
                return T
        except TransformLookupError:
            return None
        return None

    def records(self) -> Iterator[ImageRecord]:
        """Image records in bag order; images are decoded only when ``record.decode()`` is called."""
        for index, (conn, msg) in enumerate(self._messages(self.image_conns)):
            stamp = stamp_to_ns(msg.header.stamp)
            frame = (self.camera_frame or msg.header.frame_id).lstrip("/")
            camera = self.camera_at(stamp)
            if conn.msgtype.endswith("CompressedImage"):
                decode = (lambda m=msg: decode_compressed_image(m.format, m.data))
            else:
                decode = (lambda m=msg: decode_raw_image(m.encoding, m.width, m.height, m.step, m.data, m.is_bigendian))
            yield ImageRecord(index, stamp, frame, camera, self.pose_at(stamp, frame) if frame else None, decode)


def read_pose_topic(bag: str | Path, topic: str) -> dict[int, np.ndarray]:
    """{stamp_ns: 4x4 pose} from a PoseStamped / PoseWithCovarianceStamped / Odometry topic."""
    reader = open_reader(bag)
    try:
        conns = [c for c in reader.connections if c.topic == topic]
        if not conns:
            raise BagError(f"{bag}: pose topic {topic!r} is not in the bag")
        out = {}
        for conn, _t, raw in reader.messages(connections=conns):
            msg = reader.deserialize(raw, conn.msgtype)
            pose = msg.pose.pose if hasattr(msg.pose, "pose") else msg.pose
            out[stamp_to_ns(msg.header.stamp)] = pose_to_matrix(pose)
        return out
    finally:
        reader.close()
