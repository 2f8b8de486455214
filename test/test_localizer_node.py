"""featloc_localizer as a real ROS 2 process: bag replay, bad input, bad maps, launch file.

A tiny map (12 keyframes, 320x240) and short query bags are built from the synthetic demo room
once per session; every test uses a private ROS_DOMAIN_ID with localhost-only discovery.
"""

import importlib.util
import json
import math
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

try:  # ImportError too: rclpy is often present but unloadable when ROS 2 is not sourced
    import rclpy  # noqa: F401
    import diagnostic_msgs.msg  # noqa: F401
    import geometry_msgs.msg  # noqa: F401
    import nav_msgs.msg  # noqa: F401
    import sensor_msgs.msg  # noqa: F401
    import visualization_msgs.msg  # noqa: F401
except ImportError as _e:
    pytest.skip(f"rclpy / ROS 2 messages cannot be imported ({_e}): the localizer node tests need them "
                "(make setup, or source a ROS 2 installation)", allow_module_level=True)

from featloc_ros.geometry.transforms import pose_errors  # noqa: E402
from featloc_ros.ros import conversions as conv  # noqa: E402
from featloc_ros.ros.localizer_node import CameraInfoSync, LatestFrameMailbox  # noqa: E402
from featloc_ros.ros.replay import (NodeProcess, Recorder, isolated_context, random_domain_id,  # noqa: E402
                                    replay_bag_through_node, ros_env)

REPO = Path(__file__).resolve().parents[1]
WIDTH, HEIGHT = 320, 240
OK, WARN, ERROR = 0, 1, 2


# ----------------------------------------------------------------------------- pure helpers
def test_mailbox_latest_frame_wins():
    box = LatestFrameMailbox()
    assert not box.put("a")
    assert box.put("b") and box.put("c")  # a and b were never taken: dropped
    assert box.dropped == 2 and box.pending() == 1
    assert box.get(timeout=0.1) == "c"
    assert box.pending() == 1  # being processed
    box.task_done()
    assert box.pending() == 0
    assert box.get(timeout=0.05) is None
    box.close()
    assert box.get() is None


def test_camera_info_sync_pairs_closest_stamp_within_slop():
    s = CameraInfoSync(slop_ns=50_000_000)
    assert s.add_image(1_000_000_000, "img1", 0.0) == []  # image before its CameraInfo: pending
    frames = s.add_info(1_000_000_000, "info1")
    assert [(f.image, f.info) for f in frames] == [("img1", "info1")]
    s.add_info(1_200_000_000, "info2")
    frames = s.add_image(1_200_000_000, "img2", 0.0)  # same stamp: paired at once
    assert [(f.image, f.info) for f in frames] == [("img2", "info2")]
    assert s.add_image(1_310_000_000, "img2b", 0.0) == []  # newer than every CameraInfo: wait for a closer one
    frames = s.add_info(1_400_000_000, "info3")  # 90 ms (and 110 ms to info2): both beyond the slop
    assert frames == [] and s.unpaired == 1
    frames = s.add_image(1_390_000_000, "img2c", 0.0)  # 10 ms before info3: paired at once
    assert [(f.image, f.info) for f in frames] == [("img2c", "info3")] and s.unpaired == 1
    assert s.add_image(1_100_000_000, "img3", 0.0) == []  # 100 ms from every CameraInfo
    assert s.unpaired == 2
    assert s.add_image(1_500_000_000, "img4", 0.0) == []
    assert s.add_info(1_600_000_000, "info4") == [] and s.unpaired == 3  # 100 ms > slop
    assert s.add_image(1_650_000_000, "img5", 0.0) == []
    frames = s.add_info(1_700_000_000, "info5")  # 50 ms from both: the closest (first found) within slop
    assert len(frames) == 1 and frames[0].image == "img5"
    latest = CameraInfoSync(slop_ns=-1)
    latest.add_info(5, "i")
    assert latest.add_image(10**12, "x", 0.0)[0].info == "i"


# ----------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="session")
def tiny_world(tmp_path_factory):
    """12 mapping keyframes on half of the demo loop, 11 query frames between them (5 cm lower)."""
    try:
        from featloc_ros.demo.make_bags import write_demo_bag
        from featloc_ros.demo.scene import DemoScene, camera_path, demo_intrinsics
    except ImportError as e:
        pytest.skip(f"featloc_ros.demo is not available ({e})")
    from featloc_ros.geometry.camera import Camera
    from featloc_ros.mapping.builder import KeyframeInput, build_map

    root = tmp_path_factory.mktemp("featloc_node")
    scene = DemoScene()
    K = demo_intrinsics(WIDTH, HEIGHT)
    camera = Camera("PINHOLE", WIDTH, HEIGHT, (K[0, 0], K[1, 1], K[0, 2], K[1, 2]))
    loop = camera_path("mapping", 48)
    keyframes = [KeyframeInput(f"kf{i:03d}.jpg", scene.render(T, K, WIDTH, HEIGHT)[0], camera, T, i)
                 for i, T in enumerate(loop[0:24:2])]
    vmap = build_map(keyframes, root / "map", features="rootsift_fast", progress=False)
    queries = []
    for T in loop[1:23:2]:
        T = T.copy()
        T[2, 3] -= 0.05
        queries.append(T)
    bag_raw = write_demo_bag(root / "query_raw", queries, scene, K, WIDTH, HEIGHT, "day", 1, rate_hz=5.0)
    bag_jpeg = write_demo_bag(root / "query_jpeg", queries[:6], scene, K, WIDTH, HEIGHT, "day", 1, rate_hz=5.0,
                              compressed=True)
    probe_T = queries[4]
    return {"root": root, "map": root / "map", "num_points": vmap.num_points, "num_keyframes": vmap.num_keyframes,
            "bag_raw": bag_raw, "bag_jpeg": bag_jpeg, "K": K,
            "probe": (scene.render(probe_T, K, WIDTH, HEIGHT)[0], probe_T)}


def ground_truth(bag) -> dict[int, np.ndarray]:
    """/camera/pose_gt of a bag: {stamp_ns: T_map_cam}."""
    from rosbags.highlevel import AnyReader

    gt = {}
    with AnyReader([Path(bag)]) as reader:
        conns = [c for c in reader.connections if c.topic == "/camera/pose_gt"]
        for conn, _t, raw in reader.messages(connections=conns):
            msg = reader.deserialize(raw, conn.msgtype)
            gt[conv.stamp_to_ns(msg.header.stamp)] = conv.pose_to_matrix(msg.pose)
    return gt


def check_replay(result, bag, min_fraction=0.8):
    log = result["node_log"]
    assert result["node_returncode"] == 0, log
    assert "Traceback" not in log, log
    diag = result["last_diagnostics"]
    n_images = result["images_in_bag"]
    assert int(diag["frames_received"]) == n_images, (diag, result["player_output"])
    processed, dropped = int(diag["frames_processed"]), int(diag["frames_dropped"])
    assert processed + dropped == n_images, diag
    assert int(diag["frames_localized"]) == len(result["poses"]), diag
    assert len(result["poses"]) >= math.ceil(min_fraction * processed), (diag, log)
    assert result["diagnostics_level"] == OK, (result["diagnostics_message"], diag)
    gt = ground_truth(bag)
    stamps = [s for s, _, _ in result["poses"]]
    assert stamps == sorted(stamps) and len(set(stamps)) == len(stamps)
    for stamp, T, cov in result["poses"]:
        assert stamp in gt, f"pose stamped {stamp} matches no image stamp"
        dt, dr = pose_errors(T, gt[stamp])
        assert dt < 0.05 and dr < 1.0, (stamp, dt, dr)
        assert np.all(np.isfinite(cov)) and np.allclose(cov, cov.T, atol=1e-12)
        assert np.all(np.linalg.eigvalsh(cov) > 0)
        assert math.sqrt(cov[:3, :3].diagonal().max()) < 0.5
    return diag


# ----------------------------------------------------------------------------- (a) bag replay
def test_replay_raw_bag_localizes_query_frames(tiny_world):
    t0 = time.monotonic()
    result = replay_bag_through_node(tiny_world["map"], tiny_world["bag_raw"], "/camera/image_raw",
                                     "/camera/camera_info", timeout_s=60)
    diag = check_replay(result, tiny_world["bag_raw"])
    assert int(diag["map_points"]) == tiny_world["num_points"]
    assert int(diag["map_keyframes"]) == tiny_world["num_keyframes"]
    assert float(diag["last_latency_ms"]) > 0 and float(diag["last_extract_ms"]) > 0
    print(f"raw replay: {len(result['poses'])}/{result['images_in_bag']} poses, dropped {diag['frames_dropped']}, "
          f"last latency {diag['last_latency_ms']} ms, {time.monotonic() - t0:.1f} s")


def test_replay_compressed_bag(tiny_world):
    """JPEG transport at 3x speed (15 Hz): frames may be dropped (latest wins), the processed ones localize."""
    result = replay_bag_through_node(tiny_world["map"], tiny_world["bag_jpeg"], "/camera/image_raw/compressed",
                                     "/camera/camera_info", image_transport="compressed",
                                     params={"localizer.ransac_max_error_px": 8, "path_max_length": 3,
                                             "localizer.matcher": "mnn_ratio"},  # explicit = the map's matcher
                                     rate=3.0, timeout_s=60)
    diag = check_replay(result, tiny_world["bag_jpeg"])
    assert int(diag["frames_processed"]) >= 1
    print(f"compressed replay at 3x: {len(result['poses'])}/{result['images_in_bag']} poses, "
          f"dropped {diag['frames_dropped']}")


# ----------------------------------------------------------------------------- (b) bad input
def _wait_diag(rec, predicate, timeout=10.0):
    ok = rec.wait_for(lambda r: bool(r.diagnostics) and predicate(r.diagnostics[-1]), timeout)
    last = rec.last_diagnostics()
    assert ok, f"diagnostics never satisfied the condition; last: {last}"
    return last


def test_bad_input_is_reported_and_survived(tiny_world):
    from sensor_msgs.msg import CameraInfo, Image
    from nav_msgs.msg import Path as PathMsg
    from rclpy.qos import DurabilityPolicy, QoSProfile
    from sensor_msgs.msg import PointCloud2
    from visualization_msgs.msg import MarkerArray

    try:
        from tf2_msgs.msg import TFMessage
    except ImportError:  # the node then cannot broadcast TF either (it warns): skip that check
        TFMessage = None

    domain = random_domain_id()
    params = {"map_path": str(tiny_world["map"]), "image_topic": "/test_cam/image",
              "camera_info_topic": "/test_cam/info", "publish_tf": True, "tf_child_frame": "loc_cam",
              "qos_depth": 20}
    K = tiny_world["K"]
    rgb, T_probe = tiny_world["probe"]

    def info(stamp_ns, width=WIDTH, height=HEIGHT, fx=K[0, 0]):
        return CameraInfo(header=conv.make_header(stamp_ns, "cam"), width=width, height=height,
                          distortion_model="plumb_bob", d=[0.0] * 5,
                          k=[fx, 0.0, K[0, 2], 0.0, K[1, 1], K[1, 2], 0.0, 0.0, 1.0])

    with isolated_context(domain) as ctx:
        rec = Recorder(ctx)
        got = {"tf": [], "points": [], "markers": [], "path": []}
        latched = QoSProfile(depth=1, durability=DurabilityPolicy.TRANSIENT_LOCAL)
        if TFMessage is not None:
            rec.node.create_subscription(TFMessage, "/tf", lambda m: got["tf"].extend(m.transforms), 10)
        rec.node.create_subscription(PointCloud2, "/featloc_localizer/map_points", got["points"].append, latched)
        rec.node.create_subscription(MarkerArray, "/featloc_localizer/map_keyframes", got["markers"].append, latched)
        rec.node.create_subscription(PathMsg, "/featloc_localizer/path", got["path"].append, 10)
        img_pub = rec.node.create_publisher(Image, "/test_cam/image", 20)
        info_pub = rec.node.create_publisher(CameraInfo, "/test_cam/info", 20)
        node = NodeProcess(params, ros_env(domain))
        try:
            first = _wait_diag(rec, lambda d: True, timeout=30)
            assert first["level"] == WARN and "waiting for images" in first["message"], first
            deadline = time.monotonic() + 10
            while img_pub.get_subscription_count() < 1 or info_pub.get_subscription_count() < 1:
                assert time.monotonic() < deadline and node.alive(), node.log()
                time.sleep(0.05)
            time.sleep(0.3)
            stamp = 1_700_000_100_000_000_000
            cases = [
                ("unsupported encoding", lambda s: conv.rgb_to_image_msg(rgb, s, "cam", "rgb8"), info,
                 "unsupported image encoding 'yuv422_yuy2'"),
                ("size mismatch", lambda s: conv.rgb_to_image_msg(rgb[::2, ::2].copy(), s, "cam"), info,
                 "image size 160x120 does not match CameraInfo size 320x240"),
                ("zero focal length", lambda s: conv.rgb_to_image_msg(rgb, s, "cam"),
                 lambda s: info(s, fx=0.0), "focal length must be positive"),
                ("NaN focal length", lambda s: conv.rgb_to_image_msg(rgb, s, "cam"),
                 lambda s: info(s, fx=float("nan")), "non-finite intrinsics"),
            ]
            for n, (what, make_image, make_info, reason) in enumerate(cases, start=1):
                stamp += 200_000_000
                image = make_image(stamp)
                if what == "unsupported encoding":
                    image.encoding = "yuv422_yuy2"
                img_pub.publish(image)
                info_pub.publish(make_info(stamp))
                d = _wait_diag(rec, lambda d, n=n: int(d["values"]["frames_invalid"]) >= n)
                assert d["level"] == ERROR, (what, d)
                assert reason in d["message"], (what, d["message"])
                assert int(d["values"]["frames_invalid"]) == n, (what, d)
                assert node.alive(), node.log()
            assert rec.poses == [], "no pose may be published for invalid input"

            # a good frame afterwards: localized, pose + path + TF published, status back to OK
            stamp += 200_000_000
            img_pub.publish(conv.rgb_to_image_msg(rgb, stamp, "cam", "bgr8"))
            info_pub.publish(info(stamp))
            d = _wait_diag(rec, lambda d: int(d["values"]["frames_processed"]) >= 5)
            assert d["level"] == OK, d
            assert int(d["values"]["frames_localized"]) == 1 and int(d["values"]["frames_invalid"]) == 4, d
            assert rec.wait_for(lambda r: len(r.poses) == 1, 5)
            pose_stamp, T, _cov = rec.poses[0]
            assert pose_stamp == stamp
            dt, dr = pose_errors(T, T_probe)
            assert dt < 0.05 and dr < 1.0
            assert rec.wait_for(lambda r: (got["tf"] or TFMessage is None) and got["points"] and got["markers"]
                                and got["path"], 5), got
            if TFMessage is not None:
                tf = got["tf"][-1]
                assert (tf.header.frame_id, tf.child_frame_id) == ("map", "loc_cam")
                assert conv.stamp_to_ns(tf.header.stamp) == stamp
                np.testing.assert_allclose(conv.transform_to_matrix(tf.transform), T, atol=1e-9)
            assert got["points"][0].width == tiny_world["num_points"] and got["points"][0].header.frame_id == "map"
            assert len(got["markers"][0].markers) == tiny_world["num_keyframes"] + 1
            assert len(got["path"][-1].poses) == 1

            # a burst faster than localization: the mailbox keeps only the latest frame
            burst = []
            for _ in range(8):
                stamp += 10_000_000
                burst.append(stamp)
                img_pub.publish(conv.rgb_to_image_msg(rgb, stamp, "cam"))
                info_pub.publish(info(stamp))
            d = _wait_diag(rec, lambda d: d["values"]["frames_pending"] == "0"
                           and d["values"]["last_stamp"] == f"{burst[-1] * 1e-9:.6f}")
            v = {k: int(v) for k, v in d["values"].items() if k.startswith("frames_")}
            assert v["frames_received"] == 13 and v["frames_processed"] + v["frames_dropped"] == 13, v
            assert v["frames_dropped"] >= 1, v
            assert rec.wait_for(lambda r: r.poses[-1][0] == burst[-1], 5)
            print(f"burst of 8 frames: {v['frames_dropped']} dropped, {v['frames_processed'] - 5} processed")
            assert node.alive()
        finally:
            rc = node.stop()
            log = node.log()
            node.close()
            rec.close()
    assert rc == 0, log
    assert "Traceback" not in log, log
    assert "invalid input" in log  # logged (throttled), not silently swallowed


# ----------------------------------------------------------------------------- (c) bad maps
def _run_node(params: dict, timeout=60) -> subprocess.CompletedProcess:
    from featloc_ros.ros.replay import node_command

    return subprocess.run(node_command(params), env=ros_env(random_domain_id()), capture_output=True,
                          text=True, timeout=timeout, stdin=subprocess.DEVNULL)


def test_corrupt_map_exits_with_clear_error(tmp_path):
    bad = tmp_path / "old_map"
    bad.mkdir()
    (bad / "manifest.json").write_text(json.dumps({"format": "featloc_map", "format_version": 999}))
    proc = _run_node({"map_path": str(bad)})
    out = proc.stdout + proc.stderr
    assert proc.returncode == 2, out
    assert "format_version" in out and str(bad / "manifest.json") in out, out
    assert "Traceback" not in out, out

    proc = _run_node({"map_path": str(bad), "localizer.matcher": "no_such_matcher"})
    out = proc.stdout + proc.stderr
    assert proc.returncode == 2 and "localizer.matcher" in out and "featloc_isnn_ratio" in out, out

    proc = _run_node({"map_path": str(bad), "localizer.match_against": "everything"})
    out = proc.stdout + proc.stderr
    assert proc.returncode == 2 and "localizer.match_against" in out and "'keyframes'" in out, out

    proc = _run_node({"image_topic": "/x"})  # no map_path at all
    out = proc.stdout + proc.stderr
    assert proc.returncode == 2 and "map_path" in out and "required" in out, out
    assert "Traceback" not in out, out


# ----------------------------------------------------------------------------- (d) launch file
LAUNCH_FILE = REPO / "launch" / "localize.launch.py"


def test_launch_file_compiles():
    compile(LAUNCH_FILE.read_text(), str(LAUNCH_FILE), "exec")


def test_launch_description_builds():
    if importlib.util.find_spec("launch_ros") is None:
        pytest.skip("launch_ros is not importable (no ROS 2 launch installation): only the compile check ran")
    import launch

    if not hasattr(launch, "LaunchDescription"):
        pytest.skip("'launch' resolves to a namespace package (the source tree's launch/ directory), "
                    "not ROS 2 launch")
    spec = importlib.util.spec_from_file_location("featloc_localize_launch", LAUNCH_FILE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    ld = module.generate_launch_description()
    assert isinstance(ld, launch.LaunchDescription)
    names = {a.name for a in ld.entities if isinstance(a, launch.actions.DeclareLaunchArgument)}
    assert {"map", "params_file", "image_topic", "camera_info_topic", "use_sim_time"} <= names


# ----------------------------------------------------------------------------- bag player
def test_bag_player_counts_and_skips_unimportable_types(tmp_path):
    from rosbags.rosbag2 import Writer
    from rosbags.typesys import Stores, get_typestore, get_types_from_msg

    from featloc_ros.ros.bag_player import import_message_class

    assert import_message_class("sensor_msgs/msg/Image").__name__ == "Image"
    assert import_message_class("geometry_msgs/PoseStamped").__name__ == "PoseStamped"
    with pytest.raises(ImportError):
        import_message_class("featloc_no_such_msgs/msg/Thing")

    ts = get_typestore(Stores.LATEST)
    ts.register(get_types_from_msg("int32 value", "featloc_no_such_msgs/msg/Thing"))
    bag = tmp_path / "mixed"
    with Writer(bag, version=9) as writer:
        thing = writer.add_connection("/thing", "featloc_no_such_msgs/msg/Thing", typestore=ts)
        text = writer.add_connection("/text", "std_msgs/msg/String", typestore=ts)
        for i in range(5):
            t = 1_000_000_000 + i * 20_000_000
            writer.write(thing, t, ts.serialize_cdr(ts.types["featloc_no_such_msgs/msg/Thing"](value=i),
                                                    "featloc_no_such_msgs/msg/Thing"))
            writer.write(text, t, ts.serialize_cdr(ts.types["std_msgs/msg/String"](data=f"m{i}"),
                                                   "std_msgs/msg/String"))
    cmd = [sys.executable, "-m", "featloc_ros.ros.bag_player", "--bag", str(bag), "--rate", "2", "--start-delay-s",
           "0", "--end-delay-s", "0"]
    proc = subprocess.run(cmd, env=ros_env(random_domain_id()), capture_output=True, text=True, timeout=60)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    assert "skipping /thing" in out and "featloc_no_such_msgs/msg/Thing" in out, out
    assert "published 5 messages on 1 topics" in out, out

    proc = subprocess.run(cmd + ["--wait-subscribers", "1", "--wait-timeout", "0.5"], env=ros_env(random_domain_id()),
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "timed out" in proc.stderr, proc.stdout + proc.stderr
