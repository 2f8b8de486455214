"""Map building without poses (pose_source none): pycolmap incremental SfM recovers the camera
path up to a similarity transform."""

import numpy as np
import pycolmap

from featloc_ros.localization import Localizer
from featloc_ros.mapping.bag_reader import read_pose_topic
from featloc_ros.mapping.from_bag import build_map_from_bag


def test_incremental_sfm_from_bag_matches_ground_truth_up_to_similarity(tmp_path):
    from featloc_ros.demo.make_bags import write_demo_bag
    from featloc_ros.demo.scene import DemoScene, camera_path, demo_intrinsics

    poses = camera_path("mapping", 24)[:14]  # an arc of the loop
    bag = write_demo_bag(tmp_path / "bag", poses, DemoScene(), demo_intrinsics(320, 240), 320, 240, "day", 0)
    vmap = build_map_from_bag(bag, tmp_path / "map", "/camera/image_raw", "/camera/camera_info", pose_source="none",
                              features="rootsift_fast", max_interval_s=0.0, progress=False)
    assert "arbitrary" in vmap.manifest["scale"]
    assert vmap.num_keyframes >= 12 and vmap.num_points > 500
    gt = read_pose_topic(bag, "/camera/pose_gt")
    est_c = vmap.T_map_cam[:, :3, 3]
    gt_c = np.stack([gt[int(s)][:3, 3] for s in vmap.keyframe_stamps_ns])
    sim = pycolmap.estimate_sim3d(est_c, gt_c)
    aligned = (sim.scale * (sim.rotation.matrix() @ est_c.T)).T + sim.translation
    assert np.median(np.linalg.norm(aligned - gt_c, axis=1)) < 0.03  # metres, path spans ~2 m
    # the map is usable for localization in its own frame
    loc = Localizer(vmap)
    from featloc_ros.geometry import Camera

    K = demo_intrinsics(320, 240)
    cam = Camera("PINHOLE", 320, 240, (K[0, 0], K[1, 1], K[0, 2], K[1, 2]))
    img = DemoScene().render(poses[5], K, 320, 240)[0]
    r = loc.localize(img, cam, timestamp=0.0)
    assert r.ok
    c = (sim.scale * (sim.rotation.matrix() @ r.T_map_cam[:3, 3])) + sim.translation
    assert np.linalg.norm(c - poses[5][:3, 3]) < 0.05
