"""Tests of the synthetic demo room renderer and the demo bag writer."""

import numpy as np
import pytest

from featloc_ros.demo.make_bags import (
    T_BASE_CAM,
    TOPIC_CAMERA_INFO,
    TOPIC_IMAGE,
    TOPIC_IMAGE_COMPRESSED,
    TOPIC_POSE_GT,
    TOPIC_TF,
    TOPIC_TF_STATIC,
    base_pose_from_camera,
    demo_typestore,
    write_demo_bag,
)
from featloc_ros.demo.scene import DemoScene, camera_path, demo_intrinsics, look_pose
from featloc_ros.geometry.transforms import matrix_from_quaternion, quaternion_from_matrix

W, H = 320, 240


@pytest.fixture(scope="module")
def scene():
    return DemoScene()


@pytest.fixture(scope="module")
def K():
    return demo_intrinsics(W, H)


def _backproject(T, K, depth):
    h, w = depth.shape
    v, u = np.mgrid[0:h, 0:w].astype(np.float64)
    x = (u - K[0, 2]) / K[0, 0] * depth
    y = (v - K[1, 2]) / K[1, 1] * depth
    pc = np.stack([x, y, depth.astype(np.float64)], axis=-1).reshape(-1, 3)
    return pc @ T[:3, :3].T + T[:3, 3]


def _project(T, K, P):
    pc = (P - T[:3, 3]) @ T[:3, :3]
    z = pc[:, 2]
    zs = np.where(z > 1e-6, z, 1.0)
    u = K[0, 0] * pc[:, 0] / zs + K[0, 2]
    v = K[1, 1] * pc[:, 1] / zs + K[1, 2]
    return u, v, z


def _bilinear(img, u, v):
    h, w = img.shape[:2]
    x0 = np.clip(np.floor(u).astype(int), 0, w - 2)
    y0 = np.clip(np.floor(v).astype(int), 0, h - 2)
    ax = (u - x0)[:, None]
    ay = (v - y0)[:, None]
    f = img.astype(np.float64)
    top = f[y0, x0] * (1 - ax) + f[y0, x0 + 1] * ax
    bot = f[y0 + 1, x0] * (1 - ax) + f[y0 + 1, x0 + 1] * ax
    return top * (1 - ay) + bot * ay


def test_intrinsics():
    K = demo_intrinsics(640, 480)
    hfov = 2 * np.degrees(np.arctan(320 / K[0, 0]))
    assert hfov == pytest.approx(70.0)
    assert K[0, 0] == K[1, 1] and K[0, 2] == 320 and K[1, 2] == 240


def test_render_shapes_and_determinism(scene, K):
    T = camera_path("mapping", 10)[3]
    rgb, depth = scene.render(T, K, W, H)
    assert rgb.shape == (H, W, 3) and rgb.dtype == np.uint8
    assert depth.shape == (H, W) and depth.dtype == np.float32
    assert np.all(np.isfinite(depth)) and depth.min() > 0.1
    rgb2, depth2 = scene.render(T, K, W, H)
    assert np.array_equal(rgb, rgb2) and np.array_equal(depth, depth2)
    n1, _ = scene.render(T, K, W, H, lighting="night", seed=5)
    n2, _ = scene.render(T, K, W, H, lighting="night", seed=5)
    n3, _ = scene.render(T, K, W, H, lighting="night", seed=6)
    assert np.array_equal(n1, n2)
    assert not np.array_equal(n1, n3)
    # a second scene instance gives the same textures
    rgb3, _ = DemoScene().render(T, K, W, H)
    assert np.array_equal(rgb, rgb3)
    # textured, not flat
    assert rgb.std() > 20


def test_depth_matches_known_geometry(scene, K):
    cu, cv = int(K[0, 2]), int(K[1, 2])
    # facing the east wall (x = 4) from x = 0: depth 4 m at the principal point,
    # and z-depth is constant over a fronto-parallel wall
    T = look_pose((0.0, -0.5, 1.5), yaw=0.0)
    _, depth = scene.render(T, K, W, H)
    assert abs(depth[cv, cu] - 4.0) < 0.01
    assert np.all(np.abs(depth[cv - 20:cv + 20, cu - 40:cu + 40] - 4.0) < 0.01)
    # facing the south wall (y = -3) from y = 0.5
    T = look_pose((-1.0, 0.5, 1.2), yaw=-np.pi / 2)
    _, depth = scene.render(T, K, W, H)
    assert abs(depth[cv, cu] - 3.5) < 0.01
    # straight down onto the floor from 1.3 m
    T = look_pose((0.0, 0.0, 1.3), yaw=0.3, pitch=-np.pi / 2 + 1e-9)
    _, depth = scene.render(T, K, W, H)
    assert abs(depth[cv, cu] - 1.3) < 0.01
    # facing the south-east pillar (x in [2.35, 2.85], y in [-2.05, -1.55]) from x = 0.6
    T = look_pose((0.6, -1.8, 1.0), yaw=0.0)
    _, depth = scene.render(T, K, W, H)
    assert abs(depth[cv, cu] - 1.75) < 0.01


def test_backprojected_points_lie_on_surfaces(scene, K):
    for T in camera_path("query", 6)[::2]:
        _, depth = scene.render(T, K, W, H)
        P = _backproject(T, K, depth)[::37]
        dist = np.array([abs(scene.clearance(p)) for p in P])
        assert np.percentile(dist, 99) < 0.005


def test_reprojection_colour_consistency(scene, K):
    Ta = look_pose((0.0, 0.0, 1.5), yaw=0.2, pitch=-0.1)
    Tb = look_pose((0.35, 0.4, 1.4), yaw=0.45, pitch=-0.05, roll=0.03)
    rgb_a, depth_a = scene.render(Ta, K, W, H)
    rgb_b, depth_b = scene.render(Tb, K, W, H)
    P = _backproject(Ta, K, depth_a)
    u, v, z = _project(Tb, K, P)
    ok = (z > 0.1) & (u > 1) & (u < W - 2) & (v > 1) & (v < H - 2)
    ui, vi = np.round(u).astype(int), np.round(v).astype(int)
    ui, vi = np.clip(ui, 0, W - 1), np.clip(vi, 0, H - 1)
    ok &= np.abs(depth_b[vi, ui] - z) < 0.01 * z  # visible in b (not occluded)
    assert ok.mean() > 0.5
    col_a = rgb_a.reshape(-1, 3)[ok].astype(np.float64)
    col_b = _bilinear(rgb_b, u[ok], v[ok])
    err = np.abs(col_a - col_b).mean(axis=1)
    # a wrong correspondence (shifted by 7 px) must be much worse
    col_wrong = _bilinear(rgb_b, np.clip(u[ok] + 7, 0, W - 1), v[ok])
    err_wrong = np.abs(col_a - col_wrong).mean(axis=1)
    assert np.median(err) < 4.0
    assert np.mean(err) < 8.0
    assert np.median(err_wrong) > 4 * np.median(err)


def test_night_is_darker_than_day(scene, K):
    for T in camera_path("query", 4):
        day, _ = scene.render(T, K, W, H, lighting="day")
        night, _ = scene.render(T, K, W, H, lighting="night", seed=1)
        assert night.mean() < 0.45 * day.mean()
        assert night.mean() > 5.0  # dark, not black
    with pytest.raises(ValueError):
        scene.render(T, K, W, H, lighting="dusk")


@pytest.mark.parametrize("kind", ["mapping", "query"])
def test_camera_paths_in_free_space(scene, kind):
    poses = camera_path(kind, 40)
    assert len(poses) == 40
    for T in poses:
        assert T.shape == (4, 4)
        R = T[:3, :3]
        assert np.allclose(R.T @ R, np.eye(3), atol=1e-12) and np.linalg.det(R) > 0
        assert scene.clearance(T[:3, 3]) >= 0.7
        assert 1.0 < T[2, 3] < 2.0


def test_query_path_differs_but_overlaps_mapping(scene):
    mapping = camera_path("mapping", 60)
    query = camera_path("query", 30)
    dense = np.array([T[:3, 3] for T in camera_path("mapping", 720)])
    mpos = np.array([T[:3, 3] for T in mapping])
    mdir = np.array([T[:3, 2] for T in mapping])
    for T in query:
        lateral = np.min(np.linalg.norm(dense[:, :2] - T[:2, 3], axis=1))
        assert 0.25 <= lateral <= 0.6
        # some mapping view is nearby and looks in a similar direction
        near = np.linalg.norm(mpos - T[:3, 3], axis=1) < 1.0
        ang = np.degrees(np.arccos(np.clip(mdir @ T[:3, 2], -1, 1)))
        assert np.any(near & (ang < 25))
    # and the query path really is another path (not a subset of mapping poses)
    qpos = np.array([T[:3, 3] for T in query])
    assert np.mean(np.abs(qpos[:, 2] - mpos[:, 2].mean())) > 0.05


def test_quaternion_roundtrip():
    rng = np.random.default_rng(0)
    for _ in range(50):
        q = rng.normal(size=4)
        q /= np.linalg.norm(q)
        R = matrix_from_quaternion(q)
        q2 = quaternion_from_matrix(R)
        assert np.allclose(matrix_from_quaternion(q2), R, atol=1e-12)
        assert np.allclose(np.abs(q2 @ q), 1.0, atol=1e-12)


def _T_from_msg(translation, rotation):
    T = np.eye(4)
    T[:3, :3] = matrix_from_quaternion([rotation.x, rotation.y, rotation.z, rotation.w])
    T[:3, 3] = [translation.x, translation.y, translation.z]
    return T


def _stamp_ns(header):
    return header.stamp.sec * 1_000_000_000 + header.stamp.nanosec


@pytest.mark.parametrize("storage,compressed", [("sqlite3", False), ("mcap", True)])
def test_written_bag_is_readable_and_consistent(tmp_path, scene, K, storage, compressed):
    from rosbags.highlevel import AnyReader

    poses = camera_path("query", 3)
    bag = tmp_path / "bag"
    write_demo_bag(bag, poses, scene, K, W, H, "night", seed=3, rate_hz=5.0,
                   start_time_s=1700000000.0, storage=storage, compressed=compressed)
    img_topic = TOPIC_IMAGE_COMPRESSED if compressed else TOPIC_IMAGE
    with AnyReader([bag], default_typestore=demo_typestore()) as reader:
        counts = {c.topic: c.msgcount for c in reader.connections}
        assert counts == {TOPIC_TF_STATIC: 1, TOPIC_TF: 3, img_topic: 3,
                          TOPIC_CAMERA_INFO: 3, TOPIC_POSE_GT: 3}
        msgs = {}
        order = []
        for conn, t, raw in reader.messages():
            msg = reader.deserialize(raw, conn.msgtype)
            msgs.setdefault(conn.topic, []).append((t, msg))
            order.append(conn.topic)
    assert order[0] == TOPIC_TF_STATIC
    # /tf comes just before each image
    for i, topic in enumerate(order):
        if topic == img_topic:
            assert order[i - 1] == TOPIC_TF

    (_, static), = msgs[TOPIC_TF_STATIC]
    (tr_static,) = static.transforms
    assert tr_static.header.frame_id == "base_link"
    assert tr_static.child_frame_id == "camera_optical_frame"
    T_base_cam = _T_from_msg(tr_static.transform.translation, tr_static.transform.rotation)
    assert np.allclose(T_base_cam, T_BASE_CAM, atol=1e-12)

    for i in range(3):
        stamp = 1700000000 * 1_000_000_000 + i * 200_000_000
        (tf_msg,) = [m for _, m in msgs[TOPIC_TF]][i].transforms
        assert tf_msg.header.frame_id == "map" and tf_msg.child_frame_id == "base_link"
        T_map_base = _T_from_msg(tf_msg.transform.translation, tf_msg.transform.rotation)
        gt = msgs[TOPIC_POSE_GT][i][1]
        assert gt.header.frame_id == "map"
        T_gt = _T_from_msg(gt.pose.position, gt.pose.orientation)
        assert np.max(np.abs(T_map_base @ T_base_cam - T_gt)) < 1e-9
        assert np.max(np.abs(T_gt - poses[i])) < 1e-9
        assert np.max(np.abs(base_pose_from_camera(poses[i]) - T_map_base)) < 1e-9

        t_img, img = msgs[img_topic][i]
        info = msgs[TOPIC_CAMERA_INFO][i][1]
        assert t_img == stamp
        for m in (tf_msg, gt, img, info):
            assert _stamp_ns(m.header) == stamp
        assert img.header.frame_id == "camera_optical_frame"
        assert info.header.frame_id == "camera_optical_frame"
        assert info.distortion_model == "plumb_bob"
        assert (info.width, info.height) == (W, H)
        assert np.allclose(np.asarray(info.k).reshape(3, 3), K)
        assert np.allclose(np.asarray(info.r).reshape(3, 3), np.eye(3))
        assert np.allclose(np.asarray(info.p).reshape(3, 4)[:, :3], K)
        assert np.all(np.asarray(info.d) == 0)

        expected, _ = scene.render(poses[i], K, W, H, lighting="night", seed=3 * 100003 + i)
        if compressed:
            import cv2

            assert img.format == "jpeg"
            dec = cv2.imdecode(np.asarray(img.data, np.uint8), cv2.IMREAD_COLOR)[:, :, ::-1]
            assert dec.shape == (H, W, 3)
            assert np.abs(dec.astype(int) - expected).mean() < 6
        else:
            assert img.encoding == "rgb8" and img.step == W * 3
            assert (img.width, img.height) == (W, H)
            assert np.array_equal(np.asarray(img.data).reshape(H, W, 3), expected)
