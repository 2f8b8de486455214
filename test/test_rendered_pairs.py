"""Non-planar matcher training pairs: projection with depth and occlusion, the renderer with given textures,
rendered samples and their ground-truth labels (no shared data needed: procedural textures)."""

import numpy as np
import pytest
import torch

from featloc_ros.training.rendered_pairs import RenderedPairs, project


def _pose(t=(0.0, 0.0, 0.0)) -> np.ndarray:
    T = np.eye(4)
    T[:3, 3] = t
    return T


def test_projection_follows_depth_and_poses_and_detects_occlusion():
    K = np.array([[50.0, 0, 32], [0, 50.0, 32], [0, 0, 1]])
    wall = np.full((64, 64), 4.0, np.float32)  # a fronto-parallel wall 4 m away
    pts = np.array([[32.0, 32.0], [10.0, 20.0], [60.0, 5.0]], np.float32)
    # destination camera 0.4 m to the right (x): the wall moves left by f * 0.4 / 4 = 5 px
    p, vis = project(pts, wall, _pose(), _pose((0.4, 0, 0)), K, wall)
    np.testing.assert_allclose(p, pts - [5.0, 0.0], atol=1e-4)
    assert vis.tolist() == [True, True, True]
    # an occluder 1 m in front of the destination camera covers the projection of the first point
    occluded = wall.copy()
    occluded[24:36, 22:34] = 1.0
    _, vis = project(pts, wall, _pose(), _pose((0.4, 0, 0)), K, occluded)
    assert vis.tolist() == [False, True, True]
    # leaving the image (a point near the left border, camera moved further right) and behind the camera
    _, vis = project(np.array([[2.0, 30.0]], np.float32), wall, _pose(), _pose((0.8, 0, 0)), K, wall)
    assert not vis[0]
    _, vis = project(pts, wall, _pose(), _pose((0, 0, 5.0)), K, wall)
    assert not vis.any()


@pytest.fixture(scope="module")
def rendered():
    return RenderedPairs({"scenes": 1, "images_per_scene": 8, "texture_ppm": 40.0}, [], size=64, seed=3)


def test_rendered_pairs_are_deterministic_covisible_and_consistent(rendered):
    a, b = rendered[5], rendered[5]
    for k in ("A", "B", "depth_A", "T_B"):
        np.testing.assert_array_equal(a[k], b[k])
    assert a["A"].shape == (64, 64) and a["A"].dtype == np.uint8 and a["depth_A"].dtype == np.float32
    checked = 0
    for i in range(6):
        s = rendered[i]
        g = np.stack(np.meshgrid(np.arange(4, 60, 4), np.arange(4, 60, 4)), -1).reshape(-1, 2).astype(np.float32)
        p, vis = project(g, s["depth_A"], s["T_A"], s["T_B"], s["K"], s["depth_B"])
        g8 = np.stack(np.meshgrid(*[(np.arange(8) + 0.5) * 8] * 2), -1).reshape(-1, 2)
        _, in_view = project(g8, s["depth_A"], s["T_A"], s["T_B"], s["K"], None)  # no occlusion test
        assert in_view.mean() >= 0.3 and vis.mean() > 0.1  # min_covisible of the sampling
        back, vis_back = project(p[vis], s["depth_B"], s["T_B"], s["T_A"], s["K"], s["depth_A"])
        # visible points map back (up to the nearest-pixel depth lookup) and are visible from A again
        assert np.median(np.linalg.norm(back - g[vis], axis=1)) < 1.0 and vis_back.mean() > 0.8
        if not s["night"]:  # same lighting: the same surface point has nearly the same intensity
            q = np.rint(p[vis]).astype(int)
            diff = np.abs(s["A"][g[vis, 1].astype(int), g[vis, 0].astype(int)].astype(float)
                          - s["B"][q[:, 1], q[:, 0]].astype(float))
            assert np.median(diff) < 25
            checked += 1
    assert checked > 0


def test_scene_textured_with_given_images():
    from featloc_ros.demo.scene import DemoScene, camera_path, demo_intrinsics

    rng = np.random.default_rng(0)
    photo = (rng.uniform(0, 255, (200, 200, 3))).astype(np.uint8)
    scene = DemoScene(texture_ppm=40.0, texture_images=[photo])
    img, depth = scene.render(camera_path("mapping", 4)[0], demo_intrinsics(64, 48), 64, 48)
    assert img.shape == (48, 64, 3) and np.isfinite(depth).all()
    with pytest.raises(ValueError, match="empty"):
        DemoScene(texture_images=[])
    with pytest.raises(ValueError, match="corners"):
        DemoScene(texture_ppm=40.0, texture_images=[np.full((200, 200, 3), 128, np.uint8)])


def test_matcher_batches_mix_rendered_pairs_with_exact_labels(tmp_path):
    from featloc_ros.nn.featloc_net import FeatLocNet
    from featloc_ros.training.matcher_data import IGNORE, MatcherPairs

    torch.manual_seed(0)
    torch.save(FeatLocNet().state_dict(), tmp_path / "feat.pt")
    conf = {"features": str(tmp_path / "feat.pt"), "max_keypoints": 48, "detection_threshold": 0.0,
            "pairs": {"corpus": None, "procedural_ratio": 1.0, "crop_size": 64},
            "rendered_fraction": 0.5, "rendered_pool": 4,
            "rendered": {"scenes": 1, "images_per_scene": 8, "texture_ppm": 40.0}}
    data = MatcherPairs(conf, seed=1)
    indices = list(range(8))
    kinds = [data.is_rendered(i) for i in indices]
    assert any(kinds) and not all(kinds)
    b = data.batch(indices)
    assert b["rendered"].tolist() == kinds and b["gt0"].shape == (8, 48)
    for i in np.flatnonzero(kinds):
        s = data._rendered_pair(i)
        m = b["gt0"][i] >= 0
        assert m.sum() > 0
        p, vis = project(b["keypoints0"][i][m].numpy(), s["depth_A"], s["T_A"], s["T_B"], s["K"], s["depth_B"])
        err = np.linalg.norm(p - b["keypoints1"][i][b["gt0"][i][m]].numpy(), axis=1)
        assert vis.all() and (err < 3.0).all()  # every labelled match is visible and within the match radius
        assert ((b["gt0"][i] == IGNORE) | (b["gt0"][i] >= -1)).all()
    with pytest.raises(ValueError, match="unknown configuration keys"):
        RenderedPairs({"baseline": 1.0}, [], 64)
