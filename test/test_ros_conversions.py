"""featloc_ros.ros.conversions: message <-> numpy round trips (no ROS graph, no processes)."""

import math

import cv2
import numpy as np
import pytest

try:  # ImportError too: rclpy is often present but unloadable when ROS 2 is not sourced
    import rclpy  # noqa: F401
    import sensor_msgs.msg  # noqa: F401
    import visualization_msgs.msg  # noqa: F401
except ImportError as _e:
    pytest.skip(f"rclpy / ROS 2 messages cannot be imported ({_e}): the ROS conversion tests need them "
                "(make setup, or source a ROS 2 installation)", allow_module_level=True)

from scipy.spatial.transform import Rotation  # noqa: E402

from featloc_ros.geometry.camera import InvalidCameraError  # noqa: E402
from featloc_ros.geometry.image_codec import ImageDecodeError  # noqa: E402
from featloc_ros.geometry.transforms import make_transform  # noqa: E402
from featloc_ros.ros import conversions as conv  # noqa: E402


def random_transforms(n, seed=0):
    rng = np.random.default_rng(seed)
    return [make_transform(Rotation.random(random_state=int(rng.integers(1 << 30))).as_matrix(),
                           rng.normal(size=3) * 5) for _ in range(n)]


def camera_info(width=320, height=240, fx=200.0, fy=201.0, cx=160.0, cy=120.0, d=(0.0,) * 5,
                model="plumb_bob", stamp_ns=0):
    from sensor_msgs.msg import CameraInfo

    return CameraInfo(header=conv.make_header(stamp_ns, "cam"), width=width, height=height, distortion_model=model,
                      d=list(d), k=[fx, 0.0, cx, 0.0, fy, cy, 0.0, 0.0, 1.0])


def test_stamp_round_trip():
    for ns in (0, 1, 999_999_999, 1_000_000_000, 1_700_000_000_123_456_789):
        stamp = conv.ns_to_stamp(ns)
        assert conv.stamp_to_ns(stamp) == ns
        assert 0 <= stamp.nanosec < 1_000_000_000
    assert conv.stamp_to_sec(conv.ns_to_stamp(1_500_000_000)) == pytest.approx(1.5)
    with pytest.raises(ValueError):
        conv.ns_to_stamp(-1)


def test_pose_and_transform_round_trip():
    for T in random_transforms(20):
        pose = conv.matrix_to_pose(T)
        assert pose.orientation.w >= 0
        q = [pose.orientation.x, pose.orientation.y, pose.orientation.z, pose.orientation.w]
        assert np.linalg.norm(q) == pytest.approx(1.0)
        np.testing.assert_allclose(conv.pose_to_matrix(pose), T, atol=1e-12)
        np.testing.assert_allclose(conv.transform_to_matrix(conv.matrix_to_transform(T)), T, atol=1e-12)
    with pytest.raises(ValueError):
        conv.matrix_to_pose(np.full((4, 4), np.nan))
    bad = conv.matrix_to_pose(np.eye(4))
    bad.orientation.w = 0.0
    with pytest.raises(ValueError):
        conv.pose_to_matrix(bad)


def test_covariance_layout_is_row_major():
    cov = np.arange(36, dtype=float).reshape(6, 6)  # cov[i, j] = 6 i + j
    flat = conv.covariance_to_msg(cov)
    assert len(flat) == 36
    assert flat[6 * 1 + 4] == cov[1, 4]  # row 1 (y), column 4 (ry)
    assert flat[6 * 5 + 0] == cov[5, 0]
    np.testing.assert_array_equal(conv.covariance_from_msg(flat), cov)
    assert conv.covariance_to_msg(None) == [0.0] * 36
    with pytest.raises(ValueError):
        conv.covariance_to_msg(np.eye(3))
    with pytest.raises(ValueError):
        conv.covariance_from_msg(np.zeros(35))


def test_pose_with_covariance_stamped_round_trip():
    T = random_transforms(1, seed=3)[0]
    A = np.random.default_rng(1).normal(size=(6, 6))
    cov = A @ A.T
    msg = conv.pose_with_covariance_stamped(T, cov, 1_700_000_000_250_000_000, "map")
    assert msg.header.frame_id == "map"
    assert msg.pose.covariance[6 * 2 + 3] == cov[2, 3]  # message layout, not just our own reader
    stamp_ns, T2, cov2 = conv.pose_with_covariance_from_msg(msg)
    assert stamp_ns == 1_700_000_000_250_000_000
    np.testing.assert_allclose(T2, T, atol=1e-12)
    np.testing.assert_array_equal(cov2, cov)
    ts = conv.transform_stamped(T, 5, "map", "featloc_camera")
    assert (ts.header.frame_id, ts.child_frame_id) == ("map", "featloc_camera")
    np.testing.assert_allclose(conv.transform_to_matrix(ts.transform), T, atol=1e-12)


def test_camera_from_camera_info():
    cam = conv.camera_from_camera_info(camera_info())
    assert (cam.model, cam.width, cam.height) == ("PINHOLE", 320, 240)
    assert cam.params == (200.0, 201.0, 160.0, 120.0)
    cam = conv.camera_from_camera_info(camera_info(d=(0.1, -0.05, 0.001, 0.002, 0.0)))
    assert cam.model == "OPENCV" and cam.params[4:] == (0.1, -0.05, 0.001, 0.002)
    with pytest.raises(InvalidCameraError, match="focal"):
        conv.camera_from_camera_info(camera_info(fx=0.0))
    with pytest.raises(InvalidCameraError, match="non-finite"):
        conv.camera_from_camera_info(camera_info(fy=math.nan))
    with pytest.raises(InvalidCameraError, match="distortion model"):
        conv.camera_from_camera_info(camera_info(d=(0.1, 0, 0, 0), model="weird_model"))
    info = camera_info()
    info.binning_x = 2
    with pytest.raises(InvalidCameraError, match="binning"):
        conv.camera_from_camera_info(info)


@pytest.fixture(scope="module")
def rgb():
    rng = np.random.default_rng(0)
    img = cv2.resize(rng.integers(0, 256, size=(12, 16, 3), dtype=np.uint8), (64, 48),
                     interpolation=cv2.INTER_LINEAR)
    return img


@pytest.mark.parametrize("encoding", ["rgb8", "bgr8"])
def test_raw_colour_images_decode_to_rgb(rgb, encoding):
    msg = conv.rgb_to_image_msg(rgb, 7, "cam", encoding)
    assert msg.encoding == encoding and msg.step == 64 * 3
    assert conv.image_msg_size(msg) == (64, 48)
    np.testing.assert_array_equal(conv.image_msg_to_rgb(msg), rgb)


def test_mono8_and_padded_rows(rgb):
    gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    msg = conv.rgb_to_image_msg(gray, 0, "cam", "mono8")
    out = conv.image_msg_to_rgb(msg)
    assert out.shape == (48, 64, 3)
    for c in range(3):
        np.testing.assert_array_equal(out[:, :, c], gray)
    # rows padded to a larger step (as some drivers do)
    padded = np.zeros((48, 80), np.uint8)
    padded[:, :64] = gray
    msg.step, msg.data = 80, padded.tobytes()
    np.testing.assert_array_equal(conv.image_msg_to_rgb(msg)[:, :, 0], gray)


def test_compressed_images(rgb):
    from sensor_msgs.msg import CompressedImage

    ok, png = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    assert ok
    msg = CompressedImage(format="png", data=png.tobytes())
    assert conv.image_msg_size(msg) is None
    np.testing.assert_array_equal(conv.image_msg_to_rgb(msg), rgb)  # lossless
    ok, jpg = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 95])
    out = conv.image_msg_to_rgb(CompressedImage(format="rgb8; jpeg compressed bgr8", data=jpg.tobytes()))
    np.testing.assert_array_equal(out, cv2.cvtColor(cv2.imdecode(jpg, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB))
    assert np.abs(out.astype(int) - rgb).mean() < 15  # RGB order, not BGR
    with pytest.raises(ImageDecodeError, match="could not decode"):
        conv.image_msg_to_rgb(CompressedImage(format="jpeg", data=b"not a jpeg at all"))
    with pytest.raises(ImageDecodeError, match="no data"):
        conv.image_msg_to_rgb(CompressedImage(format="jpeg", data=b""))


def test_bad_raw_images_raise(rgb):
    msg = conv.rgb_to_image_msg(rgb, 0, "cam", "rgb8")
    msg.encoding = "yuv422_yuy2"
    with pytest.raises(ImageDecodeError, match="unsupported image encoding 'yuv422_yuy2'"):
        conv.image_msg_to_rgb(msg)
    msg = conv.rgb_to_image_msg(rgb, 0, "cam", "rgb8")
    msg.data = bytes(100)
    with pytest.raises(ImageDecodeError, match="bytes"):
        conv.image_msg_to_rgb(msg)
    msg = conv.rgb_to_image_msg(rgb, 0, "cam", "rgb8")
    msg.step = 10
    with pytest.raises(ImageDecodeError, match="step"):
        conv.image_msg_to_rgb(msg)


def test_rosbags_messages_are_accepted(rgb):
    """Readers duck-type: messages deserialized by rosbags (no rclpy) work too."""
    from rosbags.typesys import Stores, get_typestore

    ts = get_typestore(Stores.LATEST)
    t = ts.types
    header = t["std_msgs/msg/Header"](stamp=t["builtin_interfaces/msg/Time"](sec=3, nanosec=5), frame_id="c")
    msg = t["sensor_msgs/msg/Image"](header=header, height=48, width=64, encoding="rgb8", is_bigendian=0,
                                     step=64 * 3, data=rgb.reshape(-1))
    msg = ts.deserialize_cdr(ts.serialize_cdr(msg, "sensor_msgs/msg/Image"), "sensor_msgs/msg/Image")
    np.testing.assert_array_equal(conv.image_msg_to_rgb(msg), rgb)
    assert conv.stamp_to_ns(msg.header.stamp) == 3_000_000_005


def test_point_cloud_round_trip():
    rng = np.random.default_rng(2)
    xyz = rng.normal(size=(50, 3))
    colors = rng.integers(0, 256, size=(50, 3)).astype(np.uint8)
    msg = conv.point_cloud2_xyzrgb(xyz, colors, "map")
    assert [f.name for f in msg.fields] == ["x", "y", "z", "rgb"]
    assert (msg.point_step, msg.row_step, msg.width, msg.height) == (16, 800, 50, 1)
    assert len(msg.data) == 800
    xyz2, colors2 = conv.point_cloud2_to_xyzrgb(msg)
    np.testing.assert_allclose(xyz2, xyz.astype(np.float32), atol=0)
    np.testing.assert_array_equal(colors2, colors)
    empty = conv.point_cloud2_xyzrgb(np.zeros((0, 3)), np.zeros((0, 3), np.uint8), "map")
    assert empty.width == 0 and len(empty.data) == 0
    with pytest.raises(ValueError):
        conv.point_cloud2_xyzrgb(xyz, colors[:3], "map")


def test_keyframe_markers_point_along_the_optical_axis():
    from visualization_msgs.msg import Marker

    assert np.linalg.det(conv.ARROW_IN_CAMERA[:3, :3]) == pytest.approx(1.0)
    poses = random_transforms(3, seed=5)
    arr = conv.keyframe_markers(poses, "map")
    assert arr.markers[0].action == Marker.DELETEALL
    assert len(arr.markers) == 4
    for T, m in zip(poses, arr.markers[1:]):
        assert m.type == Marker.ARROW and m.header.frame_id == "map"
        M = conv.pose_to_matrix(m.pose)
        np.testing.assert_allclose(M[:3, 0], T[:3, 2], atol=1e-9)  # arrow x = camera optical axis
        np.testing.assert_allclose(M[:3, 3], T[:3, 3], atol=1e-12)
    assert len({m.id for m in arr.markers[1:]}) == 3
