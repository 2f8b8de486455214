"""featloc_localizer: ROS 2 node that localizes a camera in a prebuilt featloc map.

Subscribes an image topic (sensor_msgs/Image or sensor_msgs/CompressedImage) and its CameraInfo,
and publishes for every localized frame:

    ~/pose          geometry_msgs/PoseWithCovarianceStamped  camera optical-frame pose in map_frame
    ~/path          nav_msgs/Path                             the localized poses (bounded)
    /tf             map_frame -> tf_child_frame               (only with publish_tf)
    /diagnostics    diagnostic_msgs/DiagnosticArray           1 Hz status + counters
    ~/map_points    sensor_msgs/PointCloud2                   map points (once, transient local)
    ~/map_keyframes visualization_msgs/MarkerArray            keyframe poses (once, transient local)

Threading: the subscription callbacks only pair an image with the CameraInfo of the closest stamp
and put the pair into a one-slot mailbox ("latest frame wins": an unprocessed frame that is
replaced counts as dropped). A worker thread decodes, localizes and publishes, so inference never
blocks the executor.

    ros2 run featloc_ros featloc_localizer --ros-args -p map_path:=/path/to/map
    python -m featloc_ros.ros.localizer_node --ros-args --params-file config/localizer.yaml
"""

from __future__ import annotations

import collections
import math
import sys
import threading
import time
import traceback
from dataclasses import dataclass

import numpy as np

import rclpy
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy

from ..geometry.camera import InvalidCameraError
from ..geometry.image_codec import ImageDecodeError
from ..localization.localizer import InvalidInputError, Localizer
from ..mapping.map_format import MapFormatError
from ..matching import confs as matcher_confs
from . import conversions as conv

NODE_NAME = "featloc_localizer"
DIAGNOSTIC_NAME = f"{NODE_NAME}: localization"
EXIT_CONFIG_ERROR = 2

LOCALIZER_PARAMS = ("num_retrieved", "num_retrieved_fallback", "min_inliers", "min_inlier_ratio", "ransac_max_error_px",
                    "max_position_std", "max_rotation_std_deg")
_LOCALIZER_DESCRIPTIONS = {
    "num_retrieved": "Keyframes retrieved by global-descriptor (VLAD) similarity per query image.",
    "num_retrieved_fallback": "When no pose is accepted, match this many further retrieved keyframes and try again "
                              "(0: off).",
    "min_inliers": "Minimum PnP-RANSAC inliers to accept a pose.",
    "min_inlier_ratio": "Minimum inliers / 2D-3D matches to accept a pose.",
    "ransac_max_error_px": "PnP-RANSAC inlier threshold in pixels.",
    "max_position_std": "> 0: reject poses whose position standard deviation (map units) exceeds this. 0 disables.",
    "max_rotation_std_deg": "> 0: reject poses whose rotation standard deviation (degrees) exceeds this. 0 disables.",
}
# Stages reported as last_<stage>_ms in the diagnostics.
_STAGES = ("decode", "extract", "retrieve", "match", "pnp", "covariance")


class ConfigError(RuntimeError):
    """Invalid parameters or an unloadable map: the node cannot start (exit code 2)."""


# ----------------------------------------------------------------------------- threading helpers
@dataclass
class Frame:
    image: object  # sensor_msgs Image / CompressedImage
    info: object  # sensor_msgs CameraInfo
    stamp_ns: int  # image header stamp
    received: float  # time.monotonic() when the image callback ran


class LatestFrameMailbox:
    """One-slot mailbox between the subscription callbacks and the worker thread.

    ``put`` never blocks: if the slot still holds an unprocessed item it is replaced and
    ``dropped`` increments (latest frame wins).
    """

    def __init__(self):
        self._cond = threading.Condition()
        self._item = None
        self._busy = False
        self._closed = False
        self.dropped = 0

    def put(self, item) -> bool:
        """Store ``item``; True if it replaced an unprocessed one."""
        with self._cond:
            replaced = self._item is not None
            if replaced:
                self.dropped += 1
            self._item = item
            self._cond.notify()
            return replaced

    def get(self, timeout: float | None = None):
        """Take the item (marks the mailbox busy until ``task_done``); None when closed or timed out."""
        with self._cond:
            self._busy = False
            end = None if timeout is None else time.monotonic() + timeout
            while self._item is None and not self._closed:
                remaining = None if end is None else end - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return None
                self._cond.wait(remaining)
            if self._closed:
                return None
            item, self._item = self._item, None
            self._busy = True
            return item

    def task_done(self) -> None:
        with self._cond:
            self._busy = False

    def pending(self) -> int:
        """Frames not finished yet: waiting in the slot + being processed."""
        with self._cond:
            return int(self._item is not None) + int(self._busy)

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._item = None
            self._cond.notify_all()


class CameraInfoSync:
    """Pairs each image with the CameraInfo whose stamp is closest, within ``slop_ns``.

    CameraInfo messages are kept in a short history. An image whose stamp is newer than every
    CameraInfo received so far waits (at most ``max_pending`` images) for the next CameraInfo,
    since the camera driver may publish the image first. ``slop_ns < 0``: ignore stamps and use
    the latest CameraInfo. Images that can never be paired are counted in ``unpaired``.
    Not thread safe: call from the (single-threaded) executor only.
    """

    def __init__(self, slop_ns: int, history: int = 30, max_pending: int = 4):
        self.slop_ns = int(slop_ns)
        self.infos: collections.deque = collections.deque(maxlen=max(1, history))  # (stamp_ns, msg)
        self.pending: collections.deque = collections.deque()  # (stamp_ns, image, received)
        self.max_pending = max(1, max_pending)
        self.unpaired = 0

    def _closest(self, stamp_ns: int):
        best, best_dt = None, None
        for s, info in self.infos:
            dt = abs(s - stamp_ns)
            if best_dt is None or dt < best_dt:
                best, best_dt = info, dt
        if best is None or (self.slop_ns >= 0 and best_dt > self.slop_ns):
            return None, best_dt
        return best, best_dt

    def _newest_stamp(self):
        return max((s for s, _ in self.infos), default=None)

    def _resolve(self, stamp_ns, image, received, out: list) -> None:
        info, _ = self._closest(stamp_ns)
        if info is None:
            self.unpaired += 1
        else:
            out.append(Frame(image, info, stamp_ns, received))

    def add_image(self, stamp_ns: int, image, received: float) -> list[Frame]:
        out: list[Frame] = []
        if self.slop_ns < 0:
            if self.infos:
                out.append(Frame(image, self.infos[-1][1], stamp_ns, received))
            else:
                self._add_pending(stamp_ns, image, received, out)
            return out
        info, dt = self._closest(stamp_ns)
        newest = self._newest_stamp()
        if info is not None and (dt == 0 or newest >= stamp_ns):
            out.append(Frame(image, info, stamp_ns, received))
        elif newest is not None and newest >= stamp_ns:
            self.unpaired += 1  # later CameraInfo messages can only be further away
        else:
            self._add_pending(stamp_ns, image, received, out)
        return out

    def _add_pending(self, stamp_ns, image, received, out: list) -> None:
        self.pending.append((stamp_ns, image, received))
        while len(self.pending) > self.max_pending:
            s, img, rec = self.pending.popleft()
            if self.slop_ns < 0:
                self.unpaired += 1
            else:
                self._resolve(s, img, rec, out)

    def add_info(self, stamp_ns: int, info) -> list[Frame]:
        self.infos.append((int(stamp_ns), info))
        out: list[Frame] = []
        keep = collections.deque()
        for s, img, rec in self.pending:
            if self.slop_ns < 0:
                out.append(Frame(img, info, s, rec))
            elif s <= stamp_ns:
                self._resolve(s, img, rec, out)
            else:
                keep.append((s, img, rec))
        self.pending = keep
        return out


class _Throttle:
    """Allow a log line when its key is new or was last logged more than ``period`` seconds ago."""

    def __init__(self, period: float = 5.0, max_keys: int = 200):
        self.period, self.max_keys = period, max_keys
        self._last: dict[str, float] = {}
        self._lock = threading.Lock()

    def __call__(self, key: str) -> bool:
        now = time.monotonic()
        with self._lock:
            last = self._last.get(key)
            if last is not None and now - last < self.period:
                return False
            if len(self._last) >= self.max_keys:
                self._last.clear()
            self._last[key] = now
            return True


# ----------------------------------------------------------------------------- node
def _qos(reliable: bool, depth: int, transient_local: bool = False) -> QoSProfile:
    return QoSProfile(
        history=HistoryPolicy.KEEP_LAST, depth=int(depth),
        reliability=ReliabilityPolicy.RELIABLE if reliable else ReliabilityPolicy.BEST_EFFORT,
        durability=DurabilityPolicy.TRANSIENT_LOCAL if transient_local else DurabilityPolicy.VOLATILE)


class LocalizerNode(Node):
    def __init__(self, **node_kwargs):
        super().__init__(NODE_NAME, **node_kwargs)
        self._throttle = _Throttle(5.0)
        self._lock = threading.Lock()  # guards self._stats and self._last
        self._stats = collections.Counter()
        self._last: dict = {}  # last processed frame: level, message, values
        self._last_image_wall: float | None = None
        self._read_parameters()
        self._load_map()

        from diagnostic_msgs.msg import DiagnosticArray
        from geometry_msgs.msg import PoseWithCovarianceStamped
        from nav_msgs.msg import Path
        from sensor_msgs.msg import CameraInfo, CompressedImage, Image, PointCloud2
        from visualization_msgs.msg import MarkerArray

        p = self.params
        self._pose_pub = self.create_publisher(PoseWithCovarianceStamped, "~/pose", 10)
        self._path_pub = self.create_publisher(Path, "~/path", 1) if p["path_max_length"] > 0 else None
        self._path = collections.deque(maxlen=max(1, p["path_max_length"]))
        self._path_last_stamp = None
        self._diag_pub = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        latched = _qos(True, 1, transient_local=True)
        self._points_pub = self.create_publisher(PointCloud2, "~/map_points", latched)
        self._keyframes_pub = self.create_publisher(MarkerArray, "~/map_keyframes", latched)
        self._setup_tf()
        self._publish_map()

        self._unpaired_logged = 0
        self._sync = CameraInfoSync(int(round(p["sync_slop_s"] * 1e9)) if p["sync_slop_s"] >= 0 else -1)
        self._mailbox = LatestFrameMailbox()
        self._stop = threading.Event()
        self._worker = threading.Thread(target=self._work, name="featloc_localizer_worker", daemon=True)
        self._worker.start()

        image_qos = _qos(p["image_qos"] == "reliable", p["qos_depth"])
        image_type = CompressedImage if p["image_transport"] == "compressed" else Image
        events = self._event_callbacks()
        self._image_sub = self.create_subscription(image_type, p["image_topic"], self._on_image, image_qos,
                                                   **events)
        self._info_sub = self.create_subscription(CameraInfo, p["camera_info_topic"], self._on_camera_info,
                                                  image_qos, **events)
        self._diag_timer = self._create_wall_timer(1.0, self._publish_diagnostics)
        self._publish_diagnostics()  # at once: tells tools the node is up
        self.get_logger().info(
            f"localizing {p['image_transport']} images from {self._image_sub.topic_name} + "
            f"{self._info_sub.topic_name} ({p['image_qos']}, depth {p['qos_depth']}) in map {p['map_path']} "
            f"({self.vmap.num_keyframes} keyframes, {self.vmap.num_points} points); publishing "
            f"{self._pose_pub.topic_name} in frame '{p['map_frame']}'")

    # ------------------------------------------------------------------ setup
    def _declare(self, name: str, default, description: str, constraints: str = ""):
        from rcl_interfaces.msg import ParameterDescriptor

        is_float = isinstance(default, float)
        desc = ParameterDescriptor(name=name, description=description, additional_constraints=constraints,
                                   read_only=True, dynamic_typing=is_float)
        value = self.declare_parameter(name, default, desc).value
        if is_float:  # accept integers for double parameters (e.g. "-p x:=8" or "x: 8" in YAML)
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ConfigError(f"parameter '{name}' must be a number, got {value!r}")
            value = float(value)
            if not math.isfinite(value):
                raise ConfigError(f"parameter '{name}' must be finite, got {value}")
        return value

    def _read_parameters(self) -> None:
        d = self._declare
        p = {
            "map_path": d("map_path", "", "Map directory built by featloc_build_map (required)."),
            "image_topic": d("image_topic", "/camera/image_raw",
                             "Image topic. With image_transport 'compressed' this exact topic carries "
                             "sensor_msgs/CompressedImage (e.g. /camera/image_raw/compressed)."),
            "image_transport": d("image_transport", "raw",
                                 "'raw': sensor_msgs/Image; 'compressed': sensor_msgs/CompressedImage (jpeg/png).",
                                 "raw | compressed"),
            "camera_info_topic": d("camera_info_topic", "/camera/camera_info", "sensor_msgs/CameraInfo topic."),
            "image_qos": d("image_qos", "reliable",
                           "Reliability of the image and CameraInfo subscriptions. A reliable subscription does "
                           "not match a best-effort publisher (use best_effort for such drivers). Note: "
                           "best-effort rgb8 VGA images between processes lose most frames with Fast DDS "
                           "(fragmented samples), so keep reliable unless the publisher is best-effort.",
                           "reliable | best_effort"),
            "qos_depth": d("qos_depth", 5, "History depth of the image and CameraInfo subscriptions.", ">= 1"),
            "sync_slop_s": d("sync_slop_s", 0.05,
                             "An image is paired with the CameraInfo of the closest stamp within this many "
                             "seconds (CameraInfo is kept in a short history). Negative: ignore stamps and use "
                             "the latest CameraInfo."),
            "map_frame": d("map_frame", "map", "frame_id of the published poses, path and map visualisation."),
            "publish_tf": d("publish_tf", False, "Broadcast map_frame -> tf_child_frame (the camera pose) on /tf."),
            "tf_child_frame": d("tf_child_frame", "featloc_camera",
                                "Child frame of the broadcast transform (the localized camera optical frame). "
                                "Must not be a frame that already has a parent in the TF tree."),
            "path_max_length": d("path_max_length", 1000, "Maximum number of poses in ~/path (0: no path).",
                                 ">= 0"),
        }
        for key in LOCALIZER_PARAMS:
            default = Localizer.default_conf[key]
            p["localizer." + key] = d("localizer." + key, default,
                                      _LOCALIZER_DESCRIPTIONS[key] + f" Default {default}.")
        p["localizer.matcher"] = d("localizer.matcher", "",
                                   "Registry matcher for query-to-keyframe matching; empty: the map's matcher. "
                                   "E.g. featloc_isnn_ratio for a map built with featloc_isnn.")
        p["localizer.match_against"] = d("localizer.match_against", "keyframes",
                                         "2D-3D matching: 'keyframes' (each candidate's observations in turn; any "
                                         "matcher) or 'points' (the candidate keyframes' 3D points once each; "
                                         "descriptor-only matchers; about half the matching time, less accurate).")
        if not p["map_path"]:
            raise ConfigError("parameter 'map_path' is required (the map directory written by featloc_build_map), "
                              "e.g. --ros-args -p map_path:=/path/to/map")
        if p["image_transport"] not in ("raw", "compressed"):
            raise ConfigError(f"parameter 'image_transport' must be 'raw' or 'compressed', "
                              f"got {p['image_transport']!r}")
        if p["image_qos"] not in ("reliable", "best_effort"):
            raise ConfigError(f"parameter 'image_qos' must be 'reliable' or 'best_effort', got {p['image_qos']!r}")
        if p["qos_depth"] < 1:
            raise ConfigError(f"parameter 'qos_depth' must be >= 1, got {p['qos_depth']}")
        if p["path_max_length"] < 0:
            raise ConfigError(f"parameter 'path_max_length' must be >= 0, got {p['path_max_length']}")
        if not p["map_frame"] or not p["tf_child_frame"] or p["map_frame"] == p["tf_child_frame"]:
            raise ConfigError("parameters 'map_frame' and 'tf_child_frame' must be non-empty and different")
        for key, low in (("num_retrieved", 1), ("num_retrieved_fallback", 0), ("min_inliers", 6)):  # covariance: >= 6
            if p["localizer." + key] < low:
                raise ConfigError(f"parameter 'localizer.{key}' must be >= {low}, got {p['localizer.' + key]}")
        for key in ("min_inlier_ratio", "ransac_max_error_px", "max_position_std", "max_rotation_std_deg"):
            if p["localizer." + key] < 0:
                raise ConfigError(f"parameter 'localizer.{key}' must be >= 0, got {p['localizer.' + key]}")
        if p["localizer.matcher"] and p["localizer.matcher"] not in matcher_confs:
            raise ConfigError(f"parameter 'localizer.matcher' must be empty (the map's matcher) or one of "
                              f"{sorted(matcher_confs)}, got {p['localizer.matcher']!r}")
        if p["localizer.match_against"] not in ("keyframes", "points"):
            raise ConfigError(f"parameter 'localizer.match_against' must be 'keyframes' or 'points', "
                              f"got {p['localizer.match_against']!r}")
        if p["localizer.ransac_max_error_px"] <= 0:
            raise ConfigError("parameter 'localizer.ransac_max_error_px' must be > 0")
        self.params = p

    def _load_map(self) -> None:
        p = self.params
        t0 = time.perf_counter()
        conf = {key: p["localizer." + key] for key in LOCALIZER_PARAMS}
        if p["localizer.matcher"]:
            conf["matcher"] = p["localizer.matcher"]
        conf["match_against"] = p["localizer.match_against"]
        try:
            self.localizer = Localizer.from_map_dir(p["map_path"], conf)
        except MapFormatError as e:
            raise ConfigError(f"cannot load map: {e}") from e
        except (KeyError, ValueError, OSError) as e:
            raise ConfigError(f"cannot use map {p['map_path']}: {type(e).__name__}: {e}") from e
        self.vmap = self.localizer.map
        map_frame = self.vmap.manifest.get("map_frame")
        if map_frame and map_frame != p["map_frame"]:
            self.get_logger().warn(f"the map was built in frame '{map_frame}' but poses are published in "
                                   f"map_frame '{p['map_frame']}'")
        try:
            import pycolmap  # noqa: F401  (imported here so the first frame does not pay for it)
        except ImportError as e:
            raise ConfigError(f"pycolmap is required for localization: {e}") from e
        self.get_logger().info(f"loaded map {p['map_path']} in {time.perf_counter() - t0:.2f} s")

    def _event_callbacks(self) -> dict:
        try:
            from rclpy.event_handler import SubscriptionEventCallbacks
        except ImportError:  # Humble
            try:
                from rclpy.qos_event import SubscriptionEventCallbacks
            except ImportError:
                return {}

        def incompatible(event):
            self.get_logger().warn(
                f"a publisher with incompatible QoS (policy {getattr(event, 'last_policy_kind', '?')}) was found: "
                f"set image_qos:=best_effort if the camera publishes best-effort")
        return {"event_callbacks": SubscriptionEventCallbacks(incompatible_qos=incompatible)}

    def _create_wall_timer(self, period: float, callback):
        """Timer on the steady clock, so diagnostics keep coming with use_sim_time and no /clock."""
        try:
            from rclpy.clock import Clock, ClockType

            return self.create_timer(period, callback, clock=Clock(clock_type=ClockType.STEADY_TIME))
        except TypeError:  # rclpy without the clock argument
            return self.create_timer(period, callback)

    def _setup_tf(self) -> None:
        self._tf_send = None
        if not self.params["publish_tf"]:
            return
        try:
            from tf2_ros import TransformBroadcaster

            broadcaster = TransformBroadcaster(self)
            self._tf_send = broadcaster.sendTransform
            return
        except ImportError:
            pass
        try:
            from tf2_msgs.msg import TFMessage

            pub = self.create_publisher(TFMessage, "/tf", 100)
            self._tf_send = lambda t: pub.publish(TFMessage(transforms=[t]))
            self.get_logger().info("tf2_ros is not available: publishing tf2_msgs/TFMessage on /tf directly")
        except ImportError:
            self.get_logger().warn("publish_tf is set but neither tf2_ros nor tf2_msgs can be imported: "
                                   "not broadcasting the camera pose on /tf")

    def _publish_map(self) -> None:
        m, frame = self.vmap, self.params["map_frame"]
        self._points_pub.publish(conv.point_cloud2_xyzrgb(m.points_xyz, m.points_colors, frame, 0))
        self._keyframes_pub.publish(conv.keyframe_markers(m.T_map_cam, frame, 0))

    # ------------------------------------------------------------------ callbacks (executor thread)
    def _on_image(self, msg) -> None:
        now = time.monotonic()
        with self._lock:
            self._stats["frames_received"] += 1
            self._last_image_wall = now
        try:
            self._dispatch(self._sync.add_image(conv.stamp_to_ns(msg.header.stamp), msg, now))
        except Exception as e:  # never let a message kill the node
            with self._lock:
                self._stats["frames_failed"] += 1
            self._log("error", "image_callback", f"dropping an image: {type(e).__name__}: {e}")

    def _on_camera_info(self, msg) -> None:
        with self._lock:
            self._stats["camera_infos_received"] += 1
        try:
            self._dispatch(self._sync.add_info(conv.stamp_to_ns(msg.header.stamp), msg))
        except Exception as e:
            self._log("error", "info_callback", f"dropping a CameraInfo: {type(e).__name__}: {e}")

    def _dispatch(self, frames: list[Frame]) -> None:
        if self._sync.unpaired != self._unpaired_logged:
            self._unpaired_logged = self._sync.unpaired
            self._log("warn", "unpaired", f"{self._sync.unpaired} image(s) so far without a CameraInfo on "
                                          f"{self._info_sub.topic_name} within sync_slop_s {self.params['sync_slop_s']}"
                                          " s of their stamp: dropped (check the topic or raise sync_slop_s)")
        for frame in frames:
            if self._mailbox.put(frame):
                self._log("info", "dropped", "localization is slower than the image rate: dropping frames "
                                             "(latest frame wins; see frames_dropped in /diagnostics)")

    # ------------------------------------------------------------------ worker thread
    def _work(self) -> None:
        while not self._stop.is_set():
            frame = self._mailbox.get()
            if frame is None:
                continue
            try:
                self._process(frame)
            except Exception as e:  # publishing after shutdown, bugs: log and keep going
                if self._stop.is_set() or not self.context.ok():
                    break
                self._log("error", "worker", f"unexpected error: {type(e).__name__}: {e}\n{traceback.format_exc()}")
                self._record("failed", 2, f"internal error: {type(e).__name__}: {e}", frame, {})
            finally:
                self._mailbox.task_done()

    def _process(self, frame: Frame) -> None:
        t0 = time.perf_counter()
        values: dict = {}
        try:
            try:
                rgb = conv.image_msg_to_rgb(frame.image)
            except ImageDecodeError as e:
                raise InvalidInputError(f"bad image: {e}") from e
            values["decode"] = time.perf_counter() - t0
            try:
                camera = conv.camera_from_camera_info(frame.info)
            except InvalidCameraError as e:
                raise InvalidInputError(f"bad CameraInfo: {e}") from e
            h, w = rgb.shape[:2]
            if (w, h) != (camera.width, camera.height):
                raise InvalidInputError(f"image size {w}x{h} does not match CameraInfo size "
                                        f"{camera.width}x{camera.height}")
            self._check_time_jump(frame.stamp_ns)
            result = self.localizer.localize(rgb, camera, timestamp=frame.stamp_ns * 1e-9)
        except InvalidInputError as e:
            self._log("error", "invalid:" + str(e)[:60], f"invalid input at stamp {frame.stamp_ns * 1e-9:.3f}: {e}")
            self._record("invalid", 2, str(e), frame, values)
            return
        values.update(result.timings)
        values["num_inliers"], values["num_matches"] = result.num_inliers, result.num_matches
        values["num_keypoints"] = result.num_keypoints
        values["reprojection_sigma_px"] = result.reprojection_sigma_px
        if result.ok:
            self._publish_pose(frame.stamp_ns, result.T_map_cam, result.covariance)
            cov = result.covariance
            values["position_std"] = float(np.sqrt(np.max(np.diag(cov)[:3])))
            values["rotation_std_deg"] = float(np.degrees(np.sqrt(np.max(np.diag(cov)[3:]))))
            self._record("localized", 0, f"localized with {result.num_inliers} inliers", frame, values)
        else:
            self._log("info", "lost", f"lost at stamp {frame.stamp_ns * 1e-9:.3f}: {result.reason}")
            self._record("lost", 1, result.reason, frame, values)

    def _check_time_jump(self, stamp_ns: int) -> None:
        last = self._path_last_stamp
        if last is not None and stamp_ns < last - 1_000_000_000:
            self.get_logger().info("image stamps jumped back in time (bag restarted?): clearing the path "
                                   "and the tracking state")
            self.localizer.reset()
            self._path.clear()
        self._path_last_stamp = stamp_ns

    def _publish_pose(self, stamp_ns: int, T, cov) -> None:
        frame_id = self.params["map_frame"]
        self._pose_pub.publish(conv.pose_with_covariance_stamped(T, cov, stamp_ns, frame_id))
        if self._path_pub is not None:
            from nav_msgs.msg import Path

            self._path.append(conv.pose_stamped(T, stamp_ns, frame_id))
            self._path_pub.publish(Path(header=self._path[-1].header, poses=list(self._path)))
        if self._tf_send is not None:
            self._tf_send(conv.transform_stamped(T, stamp_ns, frame_id, self.params["tf_child_frame"]))

    def _record(self, outcome: str, level: int, message: str, frame: Frame, values: dict) -> None:
        latency = time.monotonic() - frame.received
        with self._lock:
            self._stats["frames_processed"] += 1
            self._stats["frames_" + outcome] += 1
            self._last = {"level": level, "message": message, "outcome": outcome,
                          "stamp": frame.stamp_ns * 1e-9, "latency": latency, "values": values,
                          "wall": time.monotonic()}

    def _log(self, level: str, key: str, message: str) -> None:
        """Throttled logging per ``key``; never raises (it runs in exception handlers).

        One call site per severity: rclpy ties a call site to the severity of its first call.
        """
        if not self._throttle(key):
            return
        try:
            logger = self.get_logger()
            if level == "error":
                logger.error(message)
            elif level == "warn":
                logger.warning(message)
            else:
                logger.info(message)
        except Exception:
            print(f"[{level.upper()}] [{NODE_NAME}]: {message}", file=sys.stderr, flush=True)

    # ------------------------------------------------------------------ diagnostics
    def diagnostics_status(self):
        from diagnostic_msgs.msg import DiagnosticStatus, KeyValue

        with self._lock:
            stats = dict(self._stats)
            last = dict(self._last)
            last_image = self._last_image_wall
        stats["frames_dropped"] = self._mailbox.dropped
        stats["frames_unpaired"] = self._sync.unpaired
        stats["frames_pending"] = self._mailbox.pending() + len(self._sync.pending)
        p = self.params
        if last:
            level, message = last["level"], last["message"]
        elif not stats.get("frames_received"):
            level, message = 1, f"waiting for images on {self._image_sub.topic_name}"
        elif not stats.get("camera_infos_received"):
            level, message = 1, f"no CameraInfo received on {self._info_sub.topic_name}"
        elif stats["frames_unpaired"]:
            level, message = 1, (f"{stats['frames_unpaired']} images had no CameraInfo within sync_slop_s "
                                 f"{p['sync_slop_s']} s of their stamp")
        else:
            level, message = 0, "waiting for the first localization result"
        now = time.monotonic()
        if last and last_image is not None and stats["frames_pending"] == 0 and now - last["wall"] > 2.0 \
                and last_image > last["wall"] + 0.5:
            level = max(level, 1)
            message = (f"images arrive but none was processed for {now - last['wall']:.0f} s "
                       f"({stats['frames_unpaired']} without a CameraInfo within sync_slop_s so far); last: {message}")
        elif last_image is not None and now - last_image > 5.0 and level == 0:
            message += f" (no image for {now - last_image:.0f} s)"
        values = last.get("values", {})

        def fmt(v):
            if isinstance(v, float):
                return f"{v:.6g}"
            return str(v)

        kv = [(k, stats.get(k, 0)) for k in (
            "frames_received", "frames_processed", "frames_dropped", "frames_localized", "frames_lost",
            "frames_invalid", "frames_failed", "frames_unpaired", "frames_pending", "camera_infos_received")]
        kv += [("last_status", last.get("outcome", "none")),
               ("last_reason", last.get("message", "") if last.get("level", 0) else ""),
               ("last_stamp", f"{last['stamp']:.6f}" if "stamp" in last else "nan"),
               ("last_num_inliers", values.get("num_inliers", 0)),
               ("last_num_matches", values.get("num_matches", 0)),
               ("last_num_keypoints", values.get("num_keypoints", 0)),
               ("last_position_std", values.get("position_std", float("nan"))),
               ("last_rotation_std_deg", values.get("rotation_std_deg", float("nan"))),
               ("last_latency_ms", 1e3 * last.get("latency", float("nan")))]
        kv += [(f"last_{s}_ms", 1e3 * values.get(s, float("nan"))) for s in _STAGES]
        kv += [("last_localize_ms", 1e3 * values.get("total", float("nan"))),
               ("map_keyframes", self.vmap.num_keyframes), ("map_points", self.vmap.num_points),
               ("map_path", p["map_path"]), ("image_topic", self._image_sub.topic_name),
               ("image_transport", p["image_transport"])]
        levels = {0: DiagnosticStatus.OK, 1: DiagnosticStatus.WARN, 2: DiagnosticStatus.ERROR}
        return DiagnosticStatus(level=levels[level], name=DIAGNOSTIC_NAME, message=message,
                                hardware_id=str(p["map_path"]),
                                values=[KeyValue(key=k, value=fmt(v)) for k, v in kv])

    def _publish_diagnostics(self) -> None:
        from diagnostic_msgs.msg import DiagnosticArray

        try:
            status = self.diagnostics_status()
            msg = DiagnosticArray(status=[status])
            msg.header.stamp = self.get_clock().now().to_msg()
            self._diag_pub.publish(msg)
        except Exception as e:
            self._log("error", "diagnostics", f"cannot publish diagnostics: {type(e).__name__}: {e}")

    # ------------------------------------------------------------------ shutdown
    def stop(self, timeout: float = 5.0) -> None:
        """Stop the worker thread (waits up to ``timeout`` s for a frame being localized)."""
        self._stop.set()
        self._mailbox.close()
        if self._worker.is_alive():
            self._worker.join(timeout)


def _neutralize_glog_sigterm() -> None:
    """Import pycolmap before rclpy.init and undo its SIGTERM handler.

    pycolmap (glog's failure signal handler) dumps a stack trace and aborts on SIGTERM; rclpy chains
    to the previously installed handler, so SIGTERM must be back at its default before rclpy.init
    installs its own (which then shuts the node down cleanly).
    """
    import signal

    try:
        import pycolmap  # noqa: F401
    except ImportError:
        return  # reported when the map is loaded
    # Python caches handlers and still reports SIG_DFL: reset at the C level unconditionally.
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def main(args: list[str] | None = None) -> int:
    from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor

    _neutralize_glog_sigterm()
    rclpy.init(args=args)
    logger = rclpy.logging.get_logger(NODE_NAME)
    node = None
    code = 0
    try:
        node = LocalizerNode()
        executor = SingleThreadedExecutor()
        executor.add_node(node)
        while True:
            try:
                executor.spin()
                break
            except (KeyboardInterrupt, ExternalShutdownException):
                raise
            except Exception:  # a bug in a callback must not take the node down
                if not rclpy.ok():
                    break
                logger.error(f"unexpected error in a callback (continuing):\n{traceback.format_exc()}")
    except ConfigError as e:
        logger.fatal(str(e))
        code = EXIT_CONFIG_ERROR
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except Exception as e:
        if type(e).__name__ in ("InvalidParameterTypeException", "InvalidParameterValueException"):
            logger.fatal(f"invalid parameter: {e}")
            code = EXIT_CONFIG_ERROR
        elif rclpy.ok():
            raise
    finally:
        if node is not None:
            node.stop()
            node.destroy_node()
        rclpy.try_shutdown()
    return code


if __name__ == "__main__":
    sys.exit(main())
