import json
import shutil

import numpy as np
import pytest

from featloc_ros.mapping.map_format import FORMAT_VERSION, MapFormatError, _sha256, load_map


@pytest.fixture
def map_copy(demo_small, tmp_path):
    dst = tmp_path / "map"
    shutil.copytree(demo_small["map_dir"], dst)
    return dst


def _rewrite(map_dir, name, **changes):
    """Rewrite one npz with some fields changed and fix its checksum (a well-formed but wrong file)."""
    with np.load(map_dir / name, allow_pickle=False) as d:
        arrays = {k: d[k] for k in d.files}
    arrays.update(changes)
    np.savez(map_dir / name, **arrays)
    m = json.loads((map_dir / "manifest.json").read_text())
    m["files"][name] = _sha256(map_dir / name)
    (map_dir / "manifest.json").write_text(json.dumps(m))


def test_roundtrip_and_manifest(demo_small):
    vmap = load_map(demo_small["map_dir"])
    ref = demo_small["map"]
    assert vmap.num_keyframes == ref.num_keyframes >= 10
    assert vmap.num_points == ref.num_points > 500
    np.testing.assert_allclose(vmap.T_map_cam, ref.T_map_cam)
    np.testing.assert_array_equal(vmap.point_index, ref.point_index)
    m = vmap.manifest
    assert m["format_version"] == FORMAT_VERSION and m["features"]["name"] == "sift"
    assert m["map_frame"] == "map" and "created_utc" in m and set(m["files"]) >= {"keyframes.npz", "points3d.npz"}
    assert (demo_small["map_dir"] / "sfm" / "points3D.bin").is_file()


def test_poses_held_fixed_and_points_on_scene(demo_small):
    """Triangulation keeps the input poses, and the 3D points lie where the rendered depth says."""
    vmap, scene, K = demo_small["map"], demo_small["scene"], demo_small["K"]
    from featloc_ros.demo.scene import camera_path

    np.testing.assert_allclose(vmap.T_map_cam, np.stack(camera_path("mapping", 32))[:vmap.num_keyframes], atol=1e-9)
    T = vmap.T_map_cam[0]
    _, depth = scene.render(T, K, 320, 240)
    sl = vmap.keyframe_slice(0)
    kp, X = vmap.keypoints[sl], vmap.points_xyz[vmap.point_index[sl]]
    z_map = ((X - T[:3, 3]) @ T[:3, :3])[:, 2]
    z_render = depth[np.round(kp[:, 1]).astype(int), np.round(kp[:, 0]).astype(int)]
    rel = np.abs(z_map - z_render) / z_render
    assert np.median(rel) < 0.01


def test_wrong_version(map_copy):
    m = json.loads((map_copy / "manifest.json").read_text())
    m["format_version"] = 99
    (map_copy / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(MapFormatError, match=r"manifest.json: field 'format_version' is 99"):
        load_map(map_copy)


def test_not_a_map(tmp_path):
    with pytest.raises(MapFormatError, match="does not exist"):
        load_map(tmp_path / "missing")
    with pytest.raises(MapFormatError, match="missing manifest"):
        load_map(tmp_path)
    (tmp_path / "manifest.json").write_text("{not json")
    with pytest.raises(MapFormatError, match="invalid JSON"):
        load_map(tmp_path)


def test_corrupt_file_detected_by_checksum(map_copy):
    p = map_copy / "points3d.npz"
    data = bytearray(p.read_bytes())
    data[len(data) // 2] ^= 0xFF
    p.write_bytes(bytes(data))
    with pytest.raises(MapFormatError, match=r"points3d.npz: checksum"):
        load_map(map_copy)


def test_truncated_file(map_copy):
    p = map_copy / "observations.npz"
    p.write_bytes(p.read_bytes()[:100])
    with pytest.raises(MapFormatError, match=r"observations.npz: cannot read arrays"):
        load_map(map_copy, verify_checksums=False)


def test_missing_file(map_copy):
    (map_copy / "retrieval.npz").unlink()
    with pytest.raises(MapFormatError, match=r"retrieval.npz: missing map file"):
        load_map(map_copy)


def test_wrong_shape_and_dtype_named(map_copy):
    with np.load(map_copy / "keyframes.npz") as d:
        T = d["T_map_cam"]
    _rewrite(map_copy, "keyframes.npz", T_map_cam=T[:, :3, :])
    with pytest.raises(MapFormatError, match=r"keyframes.npz: field 'T_map_cam' has shape"):
        load_map(map_copy)


def test_inconsistent_indices(map_copy):
    with np.load(map_copy / "observations.npz") as d:
        idx = d["point_index"].copy()
    idx[0] = 10 ** 9
    _rewrite(map_copy, "observations.npz", point_index=idx)
    with pytest.raises(MapFormatError, match=r"observations.npz: field 'point_index' out of range"):
        load_map(map_copy)


def test_nan_rejected(map_copy):
    with np.load(map_copy / "points3d.npz") as d:
        xyz = d["xyz"].copy()
    xyz[3, 1] = np.nan
    _rewrite(map_copy, "points3d.npz", xyz=xyz)
    with pytest.raises(MapFormatError, match=r"points3d.npz: field 'xyz' contains NaN"):
        load_map(map_copy)


def test_pickled_arrays_are_refused(map_copy):
    with np.load(map_copy / "retrieval.npz") as d:
        cb = d["codebook"]
    _rewrite(map_copy, "retrieval.npz", codebook=np.array([cb, "x"], dtype=object))
    with pytest.raises(MapFormatError, match=r"retrieval.npz: cannot read arrays"):
        load_map(map_copy)


def test_bad_retrieval_columns_named(map_copy):
    m = json.loads((map_copy / "manifest.json").read_text())
    m["retrieval"]["columns"] = [0, 10 ** 6]
    (map_copy / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(MapFormatError, match=r"manifest.json: retrieval.columns \[0, 1000000\]"):
        load_map(map_copy)


def test_vlad_aggregates_only_the_retrieval_columns():
    from featloc_ros.retrieval import VLAD

    rng = np.random.default_rng(0)
    desc = rng.normal(size=(200, 12)).astype(np.float32)
    codebook = rng.normal(size=(4, 5)).astype(np.float32)
    sub = VLAD(codebook, (3, 8))
    np.testing.assert_allclose(sub.describe(desc), VLAD(codebook).describe(desc[:, 3:8]))
    assert sub.describe(desc).shape == (20,)
    with pytest.raises(ValueError, match="codebook width"):
        VLAD(codebook, (0, 12))
