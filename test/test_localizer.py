import cv2
import numpy as np
import pytest

from featloc_ros.geometry import Camera
from featloc_ros.geometry.transforms import pose_errors
from featloc_ros.localization import InvalidInputError, Localizer


@pytest.fixture(scope="module")
def localizer(demo_small):
    return Localizer.from_map_dir(demo_small["map_dir"])


def test_localizes_demo_queries(localizer, demo_small):
    errors = []
    for image, cam, T_gt in demo_small["queries"]:
        r = localizer.localize(image, cam, timestamp=0.0)
        if r.ok:
            errors.append(pose_errors(r.T_map_cam, T_gt))
            assert r.covariance.shape == (6, 6) and np.all(np.linalg.eigvalsh(r.covariance) > 0)
            assert set(r.timings) >= {"extract", "retrieve", "match", "pnp", "total"}
            assert r.num_inliers >= localizer.conf["min_inliers"] and r.keyframes
    assert len(errors) >= 5, f"only {len(errors)} of 6 queries localized"
    pos, rot = np.array(errors).T
    assert np.median(pos) < 0.05 and np.median(rot) < 1.0


def test_covariance_is_consistent_with_errors(localizer, demo_small):
    """Normalised errors: the position error should rarely exceed ~6 predicted standard deviations."""
    worst = []
    for image, cam, T_gt in demo_small["queries"]:
        r = localizer.localize(image, cam, timestamp=0.0)
        if r.ok:
            d = r.T_map_cam[:3, 3] - T_gt[:3, 3]
            worst.append(float(np.sqrt(d @ np.linalg.solve(r.covariance[:3, :3], d))))
    assert worst and np.median(worst) < 6.0, worst


def test_tracking_adds_nearby_keyframes(demo_small):
    loc = Localizer(demo_small["map"], {"num_retrieved": 1, "num_tracking_candidates": 3})
    image, cam, T_gt = demo_small["queries"][2]
    assert loc.localize(image, cam, timestamp=10.0).ok
    feats = loc.extractor(image)
    nearest = int(np.argmin(np.linalg.norm(loc.map.T_map_cam[:, :3, 3] - T_gt[:3, 3], axis=1)))
    tracked = loc.candidates(feats, now=11.0)
    assert len(tracked) >= 3 and nearest in tracked
    assert len(loc.candidates(feats, now=100.0)) == 1  # tracking timed out: retrieval only


def test_retrieval_fallback_matches_the_next_keyframes(demo_small, monkeypatch):
    """When the first retrieved keyframes do not see the query, the next ones are matched too."""
    image, cam, T_gt = demo_small["queries"][2]
    P = demo_small["map"].T_map_cam
    away = np.argsort(-(np.linalg.norm(P[:, :3, 3] - T_gt[:3, 3], axis=1) + 2.0 * (1.0 - P[:, :3, 2] @ T_gt[:3, 2])))
    order = [int(k) for k in away]  # retrieval that ranks the keyframes facing away from the query first ...
    order = order[:2] + order[-3:] + order[2:-3]  # ... and the three closest just after them
    for fallback, expect_ok in ((0, False), (3, True)):
        loc = Localizer(demo_small["map"], {"num_retrieved": 2, "num_retrieved_fallback": fallback})
        monkeypatch.setattr(loc, "retrieval_order", lambda feats: order)
        r = loc.localize(image, cam, timestamp=0.0)
        assert r.ok == expect_ok, r.reason
        if expect_ok:
            assert r.keyframes == order[:5]
            assert pose_errors(r.T_map_cam, T_gt)[0] < 0.05
        else:
            assert r.keyframes == order[:2]


def test_unrelated_images_are_lost_not_wrong(localizer, demo_small):
    from skimage import data

    cam = demo_small["camera"]
    rng = np.random.default_rng(0)
    noise = rng.integers(0, 255, (cam.height, cam.width, 3), dtype=np.uint8)
    other = cv2.resize(data.coffee(), (cam.width, cam.height))
    black = np.zeros((cam.height, cam.width, 3), np.uint8)
    for img in (noise, other, black):
        r = localizer.localize(img, cam, timestamp=0.0)
        assert r.status == "lost" and r.reason and r.T_map_cam is None or not r.ok


def test_invalid_input(localizer, demo_small):
    image, cam, _ = demo_small["queries"][0]
    other = Camera("PINHOLE", 640, 480, (300, 300, 320, 240))
    with pytest.raises(InvalidInputError, match="320x240 but the camera model is 640x480"):
        localizer.localize(image, other)
    with pytest.raises(InvalidInputError, match="uint8"):
        localizer.localize(image.astype(np.float32), cam)


def test_unknown_conf_key(demo_small):
    with pytest.raises(ValueError, match="unknown configuration keys"):
        Localizer(demo_small["map"], {"min_inlier": 3})


def test_matcher_that_does_not_fit_the_map_descriptors_is_refused(demo_small):
    with pytest.raises(ValueError, match="featloc_isnn needs 320-d descriptors, the map has 128-d"):
        Localizer(demo_small["map"], {"matcher": "featloc_isnn"})


def test_learned_features_localize_rolled_queries(demo_small, tmp_path):
    """A map built with the shipped FeatLoc weights (invariance-selected descriptors, ratio-tested matcher):
    retrieval aggregates the rotation-invariant descriptor (recorded in the manifest), so queries whose camera
    is rolled by 90 and 180 degrees about its optical axis are localized, as the upright ones are."""
    from featloc_ros.evaluation.localization import Frame
    from featloc_ros.evaluation.query_changes import rolled_frame
    from featloc_ros.features.featloc import resolve_model_file
    from featloc_ros.mapping.builder import KeyframeInput, build_map
    from featloc_ros.mapping.map_format import load_map

    try:
        resolve_model_file(None)
    except FileNotFoundError as e:
        pytest.skip(str(e).splitlines()[0])
    from featloc_ros.demo.scene import camera_path

    scene, K, cam = demo_small["scene"], demo_small["K"], demo_small["camera"]
    kfs = [KeyframeInput(f"kf{i:03d}.jpg", scene.render(T, K, cam.width, cam.height)[0], cam, T, i)
           for i, T in enumerate(camera_path("mapping", 24))]
    features = {"name": "featloc", "descriptor": "selected", "max_keypoints": 1024, "resize_max": 0}
    build_map(kfs, tmp_path / "learned", features=features, matcher="featloc_isnn_ratio", progress=False)
    vmap = load_map(tmp_path / "learned")
    assert vmap.manifest["retrieval"]["columns"] == [192, 256]  # l_ri_ii of the selected descriptor
    loc = Localizer(vmap)
    localized = {0: 0, 90: 0, 180: 0}
    for i, (image, camera, T) in enumerate(demo_small["queries"]):
        for angle in localized:
            f = Frame(f"q{i}", image, camera, T)
            if angle:
                f = rolled_frame(f, angle)
            loc.reset()
            r = loc.localize(f.image, f.camera, timestamp=0.0)
            if r.ok:
                pos, rot = pose_errors(r.T_map_cam, f.T_world_cam)
                localized[angle] += int(pos < 0.1 and rot < 2.0)
    assert localized[0] >= 4 and localized[90] >= 4 and localized[180] >= 4, localized


def test_matching_against_points_once_each(demo_small, monkeypatch):
    """match_against="points" (descriptor-only matchers): the query meets each 3D point of the candidates once, with
    its observation in the first candidate that sees it; the poses agree with matching every keyframe (default)."""
    vmap = demo_small["map"]
    by_points = Localizer(vmap, {"match_against": "points"})
    by_keyframes = Localizer(vmap)
    assert by_points.match_points and not by_keyframes.match_points
    cands = [5, 3, 4, 9]
    rows = by_points._point_rows(cands, [])
    pts = vmap.point_index[rows]
    seen = np.concatenate([vmap.point_index[vmap.keyframe_slice(k)] for k in cands])
    assert len(np.unique(pts)) == len(pts) and set(pts.tolist()) == set(seen.tolist()) and len(pts) < len(seen)
    row_kf = np.searchsorted(vmap.offsets, rows, side="right") - 1
    for p, k in zip(pts.tolist(), row_kf.tolist()):  # the first candidate (retrieval order) that sees the point
        assert k == next(c for c in cands if p in set(vmap.point_index[vmap.keyframe_slice(c)].tolist()))
    later = vmap.point_index[by_points._point_rows([9, 10], matched_before=[5, 3, 4])]
    assert not set(later.tolist()) & set(vmap.point_index[by_points._point_rows([5, 3, 4], [])].tolist())
    both = 0
    for image, cam, T_gt in demo_small["queries"]:
        a = by_points.localize(image, cam, timestamp=0.0)
        b = by_keyframes.localize(image, cam, timestamp=0.0)
        if a.ok and b.ok:
            both += 1
            assert np.linalg.norm(a.T_map_cam[:3, 3] - b.T_map_cam[:3, 3]) < 0.02
            assert pose_errors(a.T_map_cam, T_gt)[0] < 0.05
    assert both >= 5
    # a matcher that reads the keypoint layout of each image cannot take points from several keyframes
    from featloc_ros.matching.nearest_neighbor import NearestNeighbor

    monkeypatch.setattr(NearestNeighbor, "descriptor_only", False)
    with pytest.raises(ValueError, match="descriptor-only"):
        Localizer(vmap, {"match_against": "points"})
    with pytest.raises(ValueError, match="match_against"):
        Localizer(vmap, {"match_against": "everything"})
