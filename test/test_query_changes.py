"""Harder query sets: the rolled view and its pose agree with a real render of the rolled camera."""

import numpy as np
import pytest

from featloc_ros.evaluation.localization import Frame
from featloc_ros.evaluation.query_changes import night_frame, roll_angles, rolled_frame, rolled_night_frames
from featloc_ros.geometry import Camera


def test_roll_180_of_a_centred_pinhole_is_a_half_turn_of_the_image():
    rng = np.random.default_rng(0)
    img = rng.integers(0, 255, (31, 41, 3), dtype=np.uint8)
    cam = Camera("PINHOLE", 41, 31, (50.0, 50.0, 20.0, 15.0))
    out = rolled_frame(Frame("a", img, cam, np.eye(4)), 180.0)
    np.testing.assert_array_equal(out.image[1:-1, 1:-1], np.rot90(img, 2)[1:-1, 1:-1])
    np.testing.assert_allclose(out.T_world_cam[:3, :3], np.diag([-1.0, -1.0, 1.0]), atol=1e-12)


@pytest.mark.parametrize("angle", [37.0, 90.0, 250.0])
def test_rolled_view_matches_a_render_of_the_rolled_camera(angle):
    from featloc_ros.demo.scene import DemoScene, camera_path, demo_intrinsics
    from featloc_ros.evaluation.query_changes import roll_camera_pose

    w, h = 160, 120
    K = demo_intrinsics(w, h)
    cam = Camera("PINHOLE", w, h, (K[0, 0], K[1, 1], K[0, 2], K[1, 2]))
    scene = DemoScene()
    T = camera_path("query", 4)[1]
    rolled = rolled_frame(Frame("q", scene.render(T, K, w, h)[0], cam, T), angle)
    truth = scene.render(roll_camera_pose(T, angle), K, w, h)[0]
    np.testing.assert_allclose(rolled.T_world_cam, roll_camera_pose(T, angle))
    # compare inside the disc that stays inside the original image for any roll
    ys, xs = np.mgrid[0:h, 0:w]
    inside = (xs - K[0, 2]) ** 2 + (ys - K[1, 2]) ** 2 < (0.45 * h) ** 2
    diff = np.abs(rolled.image.astype(float) - truth.astype(float))[inside]
    assert np.median(diff) < 6.0, np.median(diff)  # interpolation only; a wrong roll direction gives ~40
    wrong = rolled_frame(Frame("q", scene.render(T, K, w, h)[0], cam, T), -angle).image
    assert np.median(np.abs(wrong.astype(float) - truth.astype(float))[inside]) > 3 * np.median(diff)


def test_rolled_frame_undistorts_through_the_camera_model():
    cam = Camera("OPENCV", 64, 48, (60.0, 61.0, 31.0, 24.0, 0.1, -0.05, 0.001, 0.002))
    img = np.full((48, 64, 3), 100, np.uint8)
    out = rolled_frame(Frame("d", img, cam, np.eye(4)), 0.0)
    assert out.camera.model == "PINHOLE" and out.camera.params[:2] == (60.0, 61.0)
    assert out.image[24, 32].tolist() == [100, 100, 100]


def test_night_and_angles_are_deterministic():
    img = np.full((20, 20, 3), 180, np.uint8)
    f = Frame("n", img, Camera("PINHOLE", 20, 20, (20.0, 20.0, 10.0, 10.0)), np.eye(4))
    a, b = night_frame(f, 3), night_frame(f, 3)
    np.testing.assert_array_equal(a.image, b.image)
    assert a.image.mean() < 0.4 * img.mean()
    assert roll_angles(5, 1) == roll_angles(5, 1)
    assert all(30 <= x <= 330 for x in roll_angles(50))
    assert len(rolled_night_frames([f, f])) == 2
