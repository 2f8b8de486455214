import shutil

import numpy as np
import pytest

from featloc_ros.mapping.bag_reader import BagCameraStream, BagError, read_pose_topic
from featloc_ros.mapping.cli import main as build_map_cli

from conftest import shared_dataset

FOX_IMAGE = "/camera/image_raw/compressed"
FOX_INFO = "/camera/camera_info"


def test_foreign_fox_bag_tf_poses_and_images():
    bag = shared_dataset("rosbag2_fox") / "fox_db3"
    gt = read_pose_topic(bag, "/camera/pose_gt")
    with BagCameraStream(bag, FOX_IMAGE, FOX_INFO, pose_source="tf") as s:
        assert s.num_images == 50
        recs = list(s.records())
        assert len(recs) == 50 and recs[0].frame_id == "camera_optical"
        cam = recs[0].camera
        assert cam.model == "OPENCV" and (cam.width, cam.height) == (1080, 1920)
        for r in recs[::7]:
            np.testing.assert_allclose(r.T_map_cam, gt[r.stamp_ns], atol=1e-9)
        img = recs[3].decode()
        assert img.shape == (1920, 1080, 3) and img.dtype == np.uint8 and img.std() > 10
    with BagCameraStream(bag, FOX_IMAGE, FOX_INFO, pose_source="topic", pose_topic="/camera/pose_gt") as s:
        r = next(iter(s.records()))
        np.testing.assert_allclose(r.T_map_cam, gt[r.stamp_ns], atol=1e-9)


def test_missing_topic_and_wrong_type_named():
    bag = shared_dataset("rosbag2_fox") / "fox_db3"
    with pytest.raises(BagError, match=r"image topic '/camera/image_raw' is not in the bag; available: .*compressed"):
        BagCameraStream(bag, "/camera/image_raw", FOX_INFO)
    with pytest.raises(BagError, match=r"topic '/tf' has type tf2_msgs/msg/TFMessage, expected one of"):
        BagCameraStream(bag, "/tf", FOX_INFO)
    with pytest.raises(BagError, match="camera info topic '/nope'"):
        BagCameraStream(bag, FOX_IMAGE, "/nope")


def test_missing_and_corrupt_bag(tmp_path):
    with pytest.raises(BagError, match="does not exist"):
        BagCameraStream(tmp_path / "none", "/a", "/b")
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "metadata.yaml").write_text("rosbag2_bagfile_information: [broken")
    with pytest.raises(BagError, match=r"junk: cannot open bag"):
        BagCameraStream(tmp_path / "junk", "/a", "/b")


def test_truncated_database_rejected(tmp_path):
    src = shared_dataset("rosbag2_fox") / "fox_db3"
    dst = tmp_path / "fox_trunc"
    shutil.copytree(src, dst)
    db = dst / "fox_db3.db3"
    db.chmod(0o644)
    db.write_bytes(db.read_bytes()[:4096])
    with pytest.raises(BagError, match=r"fox_trunc"):
        with BagCameraStream(dst, FOX_IMAGE, FOX_INFO) as s:
            list(s.records())


@pytest.mark.parametrize("storage,compressed", [("mcap", False), ("sqlite3", True)])
def test_demo_bag_tf_chain(tmp_path, storage, compressed):
    """map -> base_link (/tf) -> camera_optical_frame (/tf_static) equals the camera ground truth."""
    from featloc_ros.demo.make_bags import write_demo_bag
    from featloc_ros.demo.scene import DemoScene, camera_path, demo_intrinsics

    poses = camera_path("query", 4)
    bag = write_demo_bag(tmp_path / "bag", poses, DemoScene(), demo_intrinsics(160, 120), 160, 120, "day", 0,
                         storage=storage, compressed=compressed)
    topic = "/camera/image_raw/compressed" if compressed else "/camera/image_raw"
    with BagCameraStream(bag, topic, "/camera/camera_info") as s:
        recs = list(s.records())
        assert len(recs) == 4
        for r, T in zip(recs, poses):
            np.testing.assert_allclose(r.T_map_cam, T, atol=1e-6)
            assert r.decode().shape == (120, 160, 3)


def test_cli_errors_are_clear(tmp_path, capsys):
    bag = shared_dataset("rosbag2_fox") / "fox_db3"
    rc = build_map_cli(["--bag", str(bag), "--image-topic", "/nope", "--camera-info-topic", FOX_INFO,
                        "--out", str(tmp_path / "m"), "--quiet"])
    assert rc == 2 and "'/nope' is not in the bag" in capsys.readouterr().err
    rc = build_map_cli(["--bag", str(tmp_path / "missing"), "--image-topic", "/a", "--out", str(tmp_path / "m")])
    assert rc == 2 and "does not exist" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:  # refused before any work
        build_map_cli(["--bag", str(bag), "--image-topic", FOX_IMAGE, "--vlad-clusters", "0", "--out", str(tmp_path / "m")])
    assert e.value.code == 2 and "--vlad-clusters: must be >= 1" in capsys.readouterr().err


def test_cli_builds_map_from_foreign_bag(tmp_path):
    bag = shared_dataset("rosbag2_fox") / "fox_db3"
    out = tmp_path / "foxmap"
    rc = build_map_cli(["--bag", str(bag), "--image-topic", FOX_IMAGE, "--camera-info-topic", FOX_INFO,
                        "--features", "rootsift_fast", "--max-keyframes", "12", "--vlad-clusters", "16", "--out", str(out),
                        "--quiet"])
    assert rc == 0
    from featloc_ros.mapping.map_format import load_map

    vmap = load_map(out)
    assert vmap.num_keyframes == 12 and vmap.num_points > 1000
    assert vmap.manifest["source"]["image_topic"] == FOX_IMAGE
    assert vmap.codebook.shape[0] == 16 and vmap.manifest["retrieval"]["num_clusters"] == 16
