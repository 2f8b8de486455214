import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from featloc_ros.geometry import Camera, InvalidCameraError, invert_transform, make_transform
from featloc_ros.geometry.transforms import interpolate_transform, pose_errors, quaternion_from_matrix, transform_from_pose
from featloc_ros.mapping.transform_buffer import TransformBuffer, TransformLookupError

K = [500.0, 0, 320, 0, 510.0, 240, 0, 0, 1]


def test_camera_from_camera_info_models():
    assert Camera.from_camera_info(640, 480, "plumb_bob", [0] * 5, K).model == "PINHOLE"
    c = Camera.from_camera_info(640, 480, "plumb_bob", [0.1, -0.05, 0.001, 0.002, 0.0], K)
    assert c.model == "OPENCV" and c.params == (500, 510, 320, 240, 0.1, -0.05, 0.001, 0.002)
    c = Camera.from_camera_info(640, 480, "plumb_bob", [0.1, -0.05, 0.001, 0.002, 0.01], K)
    assert c.model == "FULL_OPENCV" and c.params[8] == 0.01
    assert Camera.from_camera_info(640, 480, "equidistant", [0.1, 0.01, 0, 0], K).model == "OPENCV_FISHEYE"


@pytest.mark.parametrize("k,d,model,msg", [
    ([0.0, 0, 320, 0, 0.0, 240, 0, 0, 1], [0] * 5, "plumb_bob", "focal length"),
    ([np.nan, 0, 320, 0, 500, 240, 0, 0, 1], [0] * 5, "plumb_bob", "non-finite"),
    (K, [np.nan] * 5, "plumb_bob", "non-finite"),
    (K, [0.1] * 5, "weird_model", "unsupported distortion"),
    (K[:8], [0] * 5, "plumb_bob", "9 values"),
])
def test_camera_rejects_bad_intrinsics(k, d, model, msg):
    with pytest.raises(InvalidCameraError, match=msg):
        Camera.from_camera_info(640, 480, model, d, k)


def test_camera_rejects_bad_size():
    with pytest.raises(InvalidCameraError, match="size"):
        Camera("PINHOLE", 0, 480, (500, 500, 320, 240))


def test_project_matches_pinhole_formula():
    cam = Camera("PINHOLE", 640, 480, (500, 510, 320, 240))
    X = np.array([[0.1, -0.2, 2.0], [1.0, 0.5, 4.0]])
    uv = cam.project(X)
    np.testing.assert_allclose(uv[:, 0], 500 * X[:, 0] / X[:, 2] + 320)
    np.testing.assert_allclose(uv[:, 1], 510 * X[:, 1] / X[:, 2] + 240)


def test_transforms_roundtrip():
    rng = np.random.default_rng(0)
    R = Rotation.random(random_state=1).as_matrix()
    T = make_transform(R, rng.normal(size=3))
    np.testing.assert_allclose(invert_transform(T) @ T, np.eye(4), atol=1e-12)
    q = quaternion_from_matrix(R)
    np.testing.assert_allclose(transform_from_pose(T[:3, 3], q), T, atol=1e-12)
    dt, dr = pose_errors(T, T)
    assert dt == 0 and dr < 1e-6


def test_transform_buffer_chain_and_interpolation():
    buf = TransformBuffer(extrapolation_tolerance_s=0.01)
    mount = make_transform(Rotation.from_euler("xyz", [-90, 0, -90], degrees=True).as_matrix(), [0.2, 0, 1.0])
    buf.add("base_link", "camera", 0, mount, static=True)
    T0 = make_transform(np.eye(3), [0, 0, 0])
    T1 = make_transform(Rotation.from_euler("z", 90, degrees=True).as_matrix(), [2, 0, 0])
    buf.add("map", "base_link", 1_000_000_000, T0)
    buf.add("map", "base_link", 2_000_000_000, T1)
    # exact stamps: chain composition
    np.testing.assert_allclose(buf.lookup("map", "camera", 2_000_000_000), T1 @ mount, atol=1e-12)
    # interpolation halfway: 45 degrees, x = 1
    T = buf.lookup("map", "base_link", 1_500_000_000)
    np.testing.assert_allclose(T[:3, 3], [1, 0, 0], atol=1e-12)
    np.testing.assert_allclose(T, interpolate_transform(T0, T1, 0.5), atol=1e-12)
    # inverse direction
    np.testing.assert_allclose(buf.lookup("camera", "map", 2_000_000_000), invert_transform(T1 @ mount), atol=1e-12)
    with pytest.raises(TransformLookupError, match="extrapolation"):
        buf.lookup("map", "camera", 3_000_000_000)
    with pytest.raises(TransformLookupError, match="does not exist"):
        buf.lookup("map", "nowhere", 1_000_000_000)
    buf.add("odom", "other", 0, np.eye(4), static=True)
    with pytest.raises(TransformLookupError, match="not connected"):
        buf.lookup("map", "other", 1_000_000_000)
