"""Replay a rosbag2 through a real featloc_localizer process and collect what it publishes.

``replay_bag_through_node`` starts the localizer node and the bag player as child processes (same
Python interpreter, PYTHONPATH propagated, ``ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST`` and a
private ``ROS_DOMAIN_ID``) and records ``/featloc_localizer/pose`` and ``/diagnostics`` in this
process with an isolated rclpy context. Used by the tests and benchmarks; needs rclpy.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from .conversions import pose_with_covariance_from_msg

NODE_NAME = "featloc_localizer"
POSE_TOPIC = f"/{NODE_NAME}/pose"
DIAGNOSTIC_NAME = f"{NODE_NAME}: localization"
_PACKAGE_ROOT = str(Path(__file__).resolve().parents[2])  # the directory holding featloc_ros/


def random_domain_id() -> int:
    """A ROS_DOMAIN_ID in 100..200 (away from the default 0 and common small ids)."""
    return random.SystemRandom().randint(100, 200)


def ros_env(domain_id: int, base: dict | None = None) -> dict:
    """Environment for child processes: localhost-only discovery, the domain id, our PYTHONPATH."""
    env = dict(os.environ if base is None else base)
    env["ROS_DOMAIN_ID"] = str(int(domain_id))
    env["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
    env.pop("ROS_LOCALHOST_ONLY", None)  # deprecated; conflicts with the discovery range on some distros
    paths = [_PACKAGE_ROOT] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p and p != _PACKAGE_ROOT]
    env["PYTHONPATH"] = os.pathsep.join(paths)
    env["PYTHONUNBUFFERED"] = "1"
    env.setdefault("RCUTILS_COLORIZED_OUTPUT", "0")
    return env


def format_param(value) -> str:
    """Python value -> the YAML text of ``-p name:=value``."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        text = repr(value)
        return text if any(c in text for c in ".eEn") else text + ".0"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(format_param(v) for v in value) + "]"
    return json.dumps(str(value))  # a quoted YAML string: "1.0" stays a string, paths stay intact


def node_command(params: dict) -> list[str]:
    cmd = [sys.executable, "-m", "featloc_ros.ros.localizer_node", "--ros-args"]
    for key, value in params.items():
        cmd += ["-p", f"{key}:={format_param(value)}"]
    return cmd


@contextlib.contextmanager
def isolated_context(domain_id: int):
    """An rclpy Context of its own on ``domain_id`` with localhost-only discovery.

    The discovery range is read from the environment during init, so it is set for the duration
    of ``rclpy.init`` only and restored afterwards.
    """
    import rclpy

    ctx = rclpy.Context()
    saved = {k: os.environ.get(k) for k in ("ROS_AUTOMATIC_DISCOVERY_RANGE", "ROS_DOMAIN_ID")}
    os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
    os.environ["ROS_DOMAIN_ID"] = str(int(domain_id))
    try:
        rclpy.init(context=ctx, domain_id=int(domain_id), signal_handler_options=_no_signal_handlers())
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    try:
        yield ctx
    finally:
        ctx.try_shutdown()


def _no_signal_handlers():
    try:
        from rclpy.signals import SignalHandlerOptions

        return SignalHandlerOptions.NO
    except ImportError:
        return None


class Recorder:
    """Records localizer poses and diagnostics in a background executor thread."""

    def __init__(self, context, pose_topic: str = POSE_TOPIC, diagnostic_name: str = DIAGNOSTIC_NAME):
        from diagnostic_msgs.msg import DiagnosticArray
        from geometry_msgs.msg import PoseWithCovarianceStamped
        from rclpy.executors import SingleThreadedExecutor
        from rclpy.node import Node
        from rclpy.qos import QoSProfile

        self.node = Node(f"featloc_recorder_{os.getpid()}", context=context)
        self.poses: list[tuple[int, np.ndarray, np.ndarray]] = []
        self.diagnostics: list[dict] = []  # {"level", "message", "values", "time"}
        self._cond = threading.Condition()
        self._diag_name = diagnostic_name
        self.node.create_subscription(PoseWithCovarianceStamped, pose_topic, self._on_pose, QoSProfile(depth=1000))
        self.node.create_subscription(DiagnosticArray, "/diagnostics", self._on_diag, QoSProfile(depth=100))
        self._executor = SingleThreadedExecutor(context=context)
        self._executor.add_node(self.node)
        self._thread = threading.Thread(target=self._spin, daemon=True, name="featloc_recorder")
        self._running = True
        self._thread.start()

    def _spin(self):
        while self._running:
            try:
                self._executor.spin_once(timeout_sec=0.1)
            except Exception:
                if not self._running:
                    break
                raise

    def _on_pose(self, msg):
        with self._cond:
            self.poses.append(pose_with_covariance_from_msg(msg))
            self._cond.notify_all()

    def _on_diag(self, msg):
        for status in msg.status:
            if status.name != self._diag_name:
                continue
            level = status.level[0] if isinstance(status.level, (bytes, bytearray)) else int(status.level)
            with self._cond:
                self.diagnostics.append({"level": int(level), "message": status.message,
                                         "values": {kv.key: kv.value for kv in status.values},
                                         "time": time.monotonic()})
                self._cond.notify_all()

    def wait_for(self, predicate, timeout: float) -> bool:
        """Wait until ``predicate(self)`` is true (checked on every new message and every 0.1 s)."""
        end = time.monotonic() + timeout
        with self._cond:
            while not predicate(self):
                remaining = end - time.monotonic()
                if remaining <= 0:
                    return False
                self._cond.wait(min(remaining, 0.1))
            return True

    def last_diagnostics(self) -> dict | None:
        with self._cond:
            return self.diagnostics[-1] if self.diagnostics else None

    def close(self):
        self._running = False
        self._thread.join(timeout=2.0)
        self._executor.shutdown(timeout_sec=1.0)
        self.node.destroy_node()


class NodeProcess:
    """The localizer node as a child process with its output in a temporary file."""

    def __init__(self, params: dict, env: dict):
        self._log = tempfile.TemporaryFile(mode="w+b")
        self.proc = subprocess.Popen(node_command(params), env=env, stdout=self._log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self, timeout: float = 10.0) -> int:
        """SIGINT, then SIGKILL after ``timeout`` s. Returns the exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode

    def log(self) -> str:
        self._log.flush()
        self._log.seek(0)
        return self._log.read().decode("utf-8", "replace")

    def close(self):
        self.stop()
        self._log.close()


def count_bag_messages(bag_dir, topic: str) -> int:
    from rosbags.highlevel import AnyReader

    with AnyReader([Path(bag_dir)]) as reader:
        return sum(int(c.msgcount) for c in reader.connections if c.topic == topic)


def replay_bag_through_node(map_dir, bag_dir, image_topic: str, camera_info_topic: str,
                            image_transport: str = "raw", params: dict | None = None, rate: float = 1.0,
                            timeout_s: float = 120.0, domain_id: int | None = None,
                            startup_timeout_s: float = 30.0, drain_timeout_s: float = 30.0,
                            player_args: list[str] | None = None) -> dict:
    """Play ``bag_dir`` into a featloc_localizer process and return what it published.

    Returns {"poses": [(stamp_ns, T_map_cam (4, 4), covariance (6, 6))], "last_diagnostics": {key: value},
    "diagnostics_level": int, "diagnostics_message": str, "node_returncode": int, "node_log": str,
    "player_returncode": int, "player_output": str, "images_in_bag": int, "domain_id": int}.
    Raises RuntimeError if the node dies before it is up or the player does not finish in ``timeout_s``.
    """
    domain_id = random_domain_id() if domain_id is None else int(domain_id)
    env = ros_env(domain_id)
    node_params = {"map_path": str(Path(map_dir).resolve()), "image_topic": image_topic,
                   "camera_info_topic": camera_info_topic, "image_transport": image_transport}
    node_params.update(params or {})
    expected = count_bag_messages(bag_dir, image_topic)
    result: dict = {"domain_id": domain_id, "images_in_bag": expected}
    with isolated_context(domain_id) as ctx:
        recorder = Recorder(ctx)
        node = NodeProcess(node_params, env)
        player = None
        try:
            # 1. the node is up (map loaded, subscriptions created) once it publishes diagnostics
            up = recorder.wait_for(lambda r: bool(r.diagnostics) or not node.alive(), startup_timeout_s)
            if not node.alive() or not up:
                rc = node.stop()
                raise RuntimeError(f"featloc_localizer did not come up (exit code {rc}):\n{node.log()}")
            # 2. play the bag once the node's subscriptions are matched
            player_cmd = [sys.executable, "-m", "featloc_ros.ros.bag_player", "--bag", str(bag_dir),
                          "--rate", str(rate), "--wait-subscribers", "1", "--wait-timeout", "20",
                          "--start-delay-s", "0.5", "--image-qos", str(node_params.get("image_qos", "reliable"))]
            player = subprocess.Popen(player_cmd + list(player_args or []), env=env, stdout=subprocess.PIPE,
                                      stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, text=True)
            try:
                out, _ = player.communicate(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                player.kill()
                out, _ = player.communicate()
                raise RuntimeError(f"bag player did not finish within {timeout_s} s:\n{out}")
            result["player_returncode"], result["player_output"] = player.returncode, out
            t_done = time.monotonic()

            # 3. drain: a diagnostics message sent after the player finished shows nothing pending and
            #    either every image received or no new image for two messages in a row
            def drained(r):
                d = [x for x in r.diagnostics if x["time"] > t_done + 0.05]
                if not d or int(d[-1]["values"].get("frames_pending", "1")) != 0:
                    return False
                received = int(d[-1]["values"].get("frames_received", "0"))
                return received >= expected or (len(d) >= 2 and d[-2]["values"].get("frames_received") ==
                                                d[-1]["values"].get("frames_received")
                                                and int(d[-2]["values"].get("frames_pending", "1")) == 0)
            recorder.wait_for(lambda r: drained(r) or not node.alive(), drain_timeout_s)
            time.sleep(0.2)  # the last pose is published before the counters; give it time to arrive
        finally:
            result["node_returncode"] = node.stop()
            result["node_log"] = node.log()
            node.close()
            if player is not None and player.poll() is None:
                player.kill()
                player.wait()
            last = recorder.last_diagnostics()
            with recorder._cond:
                result["poses"] = list(recorder.poses)
            recorder.close()
    result["last_diagnostics"] = dict(last["values"]) if last else {}
    result["diagnostics_level"] = last["level"] if last else None
    result["diagnostics_message"] = last["message"] if last else None
    return result
