"""Write rosbag2 recordings of the synthetic demo room (no ROS installation needed).

Each bag contains::

    /tf_static            tf2_msgs/msg/TFMessage         base_link -> camera_optical_frame, once
    /tf                   tf2_msgs/msg/TFMessage         map -> base_link, just before each image
    /camera/image_raw     sensor_msgs/msg/Image          rgb8
      (or /camera/image_raw/compressed, sensor_msgs/msg/CompressedImage, format "jpeg")
    /camera/camera_info   sensor_msgs/msg/CameraInfo     plumb_bob, zero distortion
    /camera/pose_gt       geometry_msgs/msg/PoseStamped  camera optical-frame pose in map

All per-frame messages carry the same header stamp.  map -> base_link ->
camera_optical_frame composes exactly (to float rounding) to the pose_gt.

CLI::

    python -m featloc_ros.demo.make_bags --out DIR [--frames-mapping 60 --frames-query 30]

writes DIR/mapping_day, DIR/query_day and DIR/query_night.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path

import cv2
import numpy as np
from rosbags.interfaces import (
    Qos,
    QosDurability,
    QosHistory,
    QosLiveliness,
    QosReliability,
    QosTime,
)
from rosbags.rosbag2 import StoragePlugin, Writer
from rosbags.typesys import Stores, get_typestore

from featloc_ros.demo.scene import DemoScene, camera_path, demo_intrinsics
from featloc_ros.geometry.transforms import invert_transform, quaternion_from_matrix

__all__ = [
    "MAP_FRAME",
    "BASE_FRAME",
    "CAMERA_FRAME",
    "T_BASE_CAM",
    "TOPIC_IMAGE",
    "TOPIC_IMAGE_COMPRESSED",
    "TOPIC_CAMERA_INFO",
    "TOPIC_TF",
    "TOPIC_TF_STATIC",
    "TOPIC_POSE_GT",
    "demo_typestore",
    "base_pose_from_camera",
    "write_demo_bag",
    "write_demo_bags",
    "main",
]

MAP_FRAME = "map"
BASE_FRAME = "base_link"
CAMERA_FRAME = "camera_optical_frame"

TOPIC_IMAGE = "/camera/image_raw"
TOPIC_IMAGE_COMPRESSED = "/camera/image_raw/compressed"
TOPIC_CAMERA_INFO = "/camera/camera_info"
TOPIC_TF = "/tf"
TOPIC_TF_STATIC = "/tf_static"
TOPIC_POSE_GT = "/camera/pose_gt"

# Camera mount: 0.2 m forward, 1.0 m up in base_link (x fwd, y left, z up);
# optical axes: x right = -y_base, y down = -z_base, z forward = +x_base.
T_BASE_CAM = np.eye(4)
T_BASE_CAM[:3, :3] = np.array([[0.0, 0.0, 1.0],
                               [-1.0, 0.0, 0.0],
                               [0.0, -1.0, 0.0]])
T_BASE_CAM[:3, 3] = [0.2, 0.0, 1.0]

# /tf_static is latched (transient local) like tf2_ros.StaticTransformBroadcaster.
_LATCHED_QOS = Qos(
    QosHistory.KEEP_LAST, 1, QosReliability.RELIABLE, QosDurability.TRANSIENT_LOCAL,
    QosTime(0, 0), QosTime(0, 0), QosLiveliness.AUTOMATIC, QosTime(0, 0), False,
)
_DEFAULT_QOS = Qos(
    QosHistory.KEEP_LAST, 10, QosReliability.RELIABLE, QosDurability.VOLATILE,
    QosTime(0, 0), QosTime(0, 0), QosLiveliness.AUTOMATIC, QosTime(0, 0), False,
)


def demo_typestore():
    """Typestore with the standard ROS 2 message definitions."""
    for name in ("ROS2_KILTED", "ROS2_JAZZY", "ROS2_HUMBLE"):
        if hasattr(Stores, name):
            return get_typestore(getattr(Stores, name))
    return get_typestore(Stores.LATEST)


def base_pose_from_camera(T_map_cam: np.ndarray) -> np.ndarray:
    """map -> base_link such that map -> base_link -> camera_optical_frame == T_map_cam."""
    return np.asarray(T_map_cam, np.float64) @ invert_transform(T_BASE_CAM)


# ---------------------------------------------------------------- messages
class _Msgs:
    def __init__(self, typestore):
        self.ts = typestore
        t = typestore.types
        self.Time = t["builtin_interfaces/msg/Time"]
        self.Header = t["std_msgs/msg/Header"]
        self.Image = t["sensor_msgs/msg/Image"]
        self.CompressedImage = t["sensor_msgs/msg/CompressedImage"]
        self.CameraInfo = t["sensor_msgs/msg/CameraInfo"]
        self.RegionOfInterest = t["sensor_msgs/msg/RegionOfInterest"]
        self.TFMessage = t["tf2_msgs/msg/TFMessage"]
        self.TransformStamped = t["geometry_msgs/msg/TransformStamped"]
        self.Transform = t["geometry_msgs/msg/Transform"]
        self.Vector3 = t["geometry_msgs/msg/Vector3"]
        self.Quaternion = t["geometry_msgs/msg/Quaternion"]
        self.PoseStamped = t["geometry_msgs/msg/PoseStamped"]
        self.Pose = t["geometry_msgs/msg/Pose"]
        self.Point = t["geometry_msgs/msg/Point"]

    def header(self, stamp_ns: int, frame_id: str):
        return self.Header(stamp=self.Time(sec=stamp_ns // 1_000_000_000,
                                           nanosec=stamp_ns % 1_000_000_000),
                           frame_id=frame_id)

    def quat(self, R):
        x, y, z, w = quaternion_from_matrix(R)
        return self.Quaternion(x=float(x), y=float(y), z=float(z), w=float(w))

    def transform(self, stamp_ns: int, parent: str, child: str, T: np.ndarray):
        tr = self.Transform(
            translation=self.Vector3(x=float(T[0, 3]), y=float(T[1, 3]), z=float(T[2, 3])),
            rotation=self.quat(T[:3, :3]))
        return self.TransformStamped(header=self.header(stamp_ns, parent), child_frame_id=child,
                                     transform=tr)

    def tf(self, transforms):
        return self.TFMessage(transforms=list(transforms))

    def pose(self, stamp_ns: int, frame: str, T: np.ndarray):
        return self.PoseStamped(
            header=self.header(stamp_ns, frame),
            pose=self.Pose(position=self.Point(x=float(T[0, 3]), y=float(T[1, 3]),
                                               z=float(T[2, 3])),
                           orientation=self.quat(T[:3, :3])))

    def camera_info(self, stamp_ns: int, K: np.ndarray, width: int, height: int):
        K = np.asarray(K, np.float64)
        P = np.zeros((3, 4))
        P[:3, :3] = K
        return self.CameraInfo(
            header=self.header(stamp_ns, CAMERA_FRAME), height=height, width=width,
            distortion_model="plumb_bob", d=np.zeros(5, np.float64),
            k=K.reshape(-1).copy(), r=np.eye(3).reshape(-1), p=P.reshape(-1),
            binning_x=0, binning_y=0,
            roi=self.RegionOfInterest(x_offset=0, y_offset=0, height=0, width=0,
                                      do_rectify=False))

    def image(self, stamp_ns: int, rgb: np.ndarray):
        h, w = rgb.shape[:2]
        return self.Image(header=self.header(stamp_ns, CAMERA_FRAME), height=h, width=w,
                          encoding="rgb8", is_bigendian=0, step=w * 3,
                          data=np.ascontiguousarray(rgb, np.uint8).reshape(-1))

    def compressed(self, stamp_ns: int, rgb: np.ndarray, quality: int = 90):
        ok, buf = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR),
                               [cv2.IMWRITE_JPEG_QUALITY, quality])
        if not ok:
            raise RuntimeError("JPEG encoding failed")
        return self.CompressedImage(header=self.header(stamp_ns, CAMERA_FRAME), format="jpeg",
                                    data=np.asarray(buf, np.uint8).reshape(-1))


# ---------------------------------------------------------------- writing
def write_demo_bag(path, poses, scene: DemoScene, K: np.ndarray, width: int, height: int,
                   lighting: str, seed: int, rate_hz: float = 5.0,
                   start_time_s: float = 1700000000.0, storage: str = "sqlite3",
                   compressed: bool = False) -> Path:
    """Render ``poses`` (camera-to-map, optical frame) and write a rosbag2 at ``path``.

    ``path`` must not exist yet (rosbag2 writer requirement).  Frame i is
    stamped ``start_time_s + i / rate_hz`` and rendered with noise seed
    ``seed * 100003 + i``.  Returns the bag directory.
    """
    path = Path(path)
    plugins = {"sqlite3": StoragePlugin.SQLITE3, "mcap": StoragePlugin.MCAP}
    if storage not in plugins:
        raise ValueError(f"storage must be one of {sorted(plugins)}, got {storage!r}")
    ts = demo_typestore()
    m = _Msgs(ts)
    start_ns = int(round(start_time_s * 1e9))
    period_ns = int(round(1e9 / rate_hz))
    img_type = "sensor_msgs/msg/CompressedImage" if compressed else "sensor_msgs/msg/Image"
    img_topic = TOPIC_IMAGE_COMPRESSED if compressed else TOPIC_IMAGE

    with Writer(path, version=9, storage_plugin=plugins[storage]) as writer:
        c_static = writer.add_connection(TOPIC_TF_STATIC, "tf2_msgs/msg/TFMessage", typestore=ts,
                                         offered_qos_profiles=[_LATCHED_QOS])
        c_tf = writer.add_connection(TOPIC_TF, "tf2_msgs/msg/TFMessage", typestore=ts,
                                     offered_qos_profiles=[_DEFAULT_QOS])
        c_img = writer.add_connection(img_topic, img_type, typestore=ts,
                                      offered_qos_profiles=[_DEFAULT_QOS])
        c_info = writer.add_connection(TOPIC_CAMERA_INFO, "sensor_msgs/msg/CameraInfo",
                                       typestore=ts, offered_qos_profiles=[_DEFAULT_QOS])
        c_gt = writer.add_connection(TOPIC_POSE_GT, "geometry_msgs/msg/PoseStamped",
                                     typestore=ts, offered_qos_profiles=[_DEFAULT_QOS])

        def put(conn, t_ns, msg, msgtype):
            writer.write(conn, t_ns, ts.serialize_cdr(msg, msgtype))

        # static mount once, logged before everything else
        put(c_static, start_ns - 2000,
            m.tf([m.transform(start_ns, BASE_FRAME, CAMERA_FRAME, T_BASE_CAM)]),
            "tf2_msgs/msg/TFMessage")
        for i, T in enumerate(poses):
            T = np.asarray(T, np.float64)
            stamp = start_ns + i * period_ns
            rgb, _ = scene.render(T, K, width, height, lighting=lighting, seed=seed * 100003 + i)
            T_map_base = base_pose_from_camera(T)
            put(c_tf, stamp - 1000,  # published just before the image
                m.tf([m.transform(stamp, MAP_FRAME, BASE_FRAME, T_map_base)]),
                "tf2_msgs/msg/TFMessage")
            if compressed:
                put(c_img, stamp, m.compressed(stamp, rgb), img_type)
            else:
                put(c_img, stamp, m.image(stamp, rgb), img_type)
            put(c_info, stamp, m.camera_info(stamp, K, width, height),
                "sensor_msgs/msg/CameraInfo")
            put(c_gt, stamp, m.pose(stamp, MAP_FRAME, T), "geometry_msgs/msg/PoseStamped")
    return path


def _clear_bag_dir(path: Path) -> None:
    if not path.exists():
        return
    if path.is_dir() and ((path / "metadata.yaml").exists() or not any(path.iterdir())):
        shutil.rmtree(path)
    else:
        raise FileExistsError(f"{path} exists and does not look like a rosbag2 directory")


def write_demo_bags(out_dir, frames_mapping: int = 60, frames_query: int = 30,
                    width: int = 640, height: int = 480, storage: str = "sqlite3",
                    compressed: bool = False, rate_hz: float = 5.0,
                    verbose: bool = True) -> dict[str, Path]:
    """Write mapping_day, query_day and query_night under ``out_dir`` (replacing old ones)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    scene = DemoScene()
    K = demo_intrinsics(width, height)
    specs = [
        ("mapping_day", camera_path("mapping", frames_mapping), "day", 0, 1700000000.0),
        ("query_day", camera_path("query", frames_query), "day", 1, 1700001000.0),
        ("query_night", camera_path("query", frames_query), "night", 2, 1700002000.0),
    ]
    result = {}
    for name, poses, lighting, seed, t0 in specs:
        path = out / name
        _clear_bag_dir(path)
        tic = time.perf_counter()
        write_demo_bag(path, poses, scene, K, width, height, lighting, seed, rate_hz=rate_hz,
                       start_time_s=t0, storage=storage, compressed=compressed)
        if verbose:
            print(f"wrote {path}: {len(poses)} frames {width}x{height}, lighting={lighting}, "
                  f"storage={storage}{', jpeg' if compressed else ''} "
                  f"({time.perf_counter() - tic:.1f} s)", flush=True)
        result[name] = path
    return result


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", required=True, help="output directory for the three bags")
    ap.add_argument("--frames-mapping", type=int, default=60)
    ap.add_argument("--frames-query", type=int, default=30)
    ap.add_argument("--width", type=int, default=640)
    ap.add_argument("--height", type=int, default=480)
    ap.add_argument("--rate", type=float, default=5.0, help="frame rate in Hz")
    ap.add_argument("--storage", choices=("sqlite3", "mcap"), default="sqlite3")
    ap.add_argument("--compressed", action="store_true",
                    help="write JPEG sensor_msgs/CompressedImage instead of raw rgb8")
    args = ap.parse_args(argv)
    write_demo_bags(args.out, args.frames_mapping, args.frames_query, args.width, args.height,
                    storage=args.storage, compressed=args.compressed, rate_hz=args.rate)
    return 0


if __name__ == "__main__":
    sys.exit(main())
