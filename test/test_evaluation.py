"""Benchmark protocol code: metrics must be right, synthetic pairs deterministic."""

import cv2
import numpy as np
import pytest

from featloc_ros.evaluation.homography import (
    HomographyPair, auc, corner_error, estimate_homography, evaluate_pair, paired_auc_difference, project,
    rotation_about_center, summarize_pairs, synthetic_pairs)
from featloc_ros.evaluation.relative_pose import PosePair, evaluate_pose_pair
from featloc_ros.geometry.transforms import make_transform
from featloc_ros.synthesis import apply_photometric, sample_homography, warp_image


def _photo():
    from skimage import data

    return data.astronaut()


def test_auc_values():
    assert auc([0.0, 0.0], 3) == pytest.approx(1.0)
    assert auc([5.0, 7.0], 3) == 0.0
    assert auc([0.5, 1.5, 10.0], 3) == pytest.approx((0.5 / 6 + 0.5 + 1.0) / 3)
    assert auc([1.0, float("inf")], 3) == pytest.approx((0.25 + 1.0) / 3)


def _warped_pair(seed: int, n: int):
    """A photo and its warp by a random homography (rotation up to 30 deg), n random points of the photo and their
    exact projections; and the generator, for more draws."""
    rng = np.random.default_rng(seed)
    img = _photo()
    H = sample_homography(rng, 512, 512, max_rotation_deg=30)
    k0 = rng.uniform(50, 450, (n, 2))
    return HomographyPair("p", img, warp_image(img, H), H), k0, project(H, k0), rng


def test_perfect_and_wrong_matches():
    pair, k0, k1, rng = _warped_pair(0, 200)
    H = pair.H_0to1
    m = np.stack([np.arange(200), np.arange(200)], 1)
    e = evaluate_pair(pair, k0, k1, m)
    assert e["mma"][1] == 1.0 and e["corner_error"] < 1e-3 and e["num_correct_3px"] == 200
    shuffled = np.stack([np.arange(200), rng.permutation(200)], 1)
    e = evaluate_pair(pair, k0, k1, shuffled)
    assert e["mma"][3] < 0.05 and e["corner_error"] > 5
    s = summarize_pairs([evaluate_pair(pair, k0, k1, m), evaluate_pair(pair, k0, k1, np.zeros((0, 2)))])
    assert s["h_accuracy"][1] == 0.5 and s["mma"][1] == 0.5
    assert corner_error(None, H, 512, 512) == float("inf")


def test_rotation_about_center_180():
    H = rotation_about_center(780, 1063, 180)
    np.testing.assert_allclose(project(H, np.array([[0.0, 0.0]])), [[779.5, 1062.5]], atol=1e-9)


def test_synthetic_changes_are_deterministic_and_meaningful():
    img = _photo()
    a = apply_photometric(img, "night", np.random.default_rng(3))
    b = apply_photometric(img, "night", np.random.default_rng(3))
    np.testing.assert_array_equal(a, b)
    assert a.mean() < 0.4 * img.mean()
    c = apply_photometric(img, "illumination", np.random.default_rng(4))
    assert c.shape == img.shape and np.abs(c.astype(int) - img).mean() > 5
    np.testing.assert_array_equal(apply_photometric(img, "none", np.random.default_rng(0)), img)
    with pytest.raises(KeyError):
        apply_photometric(img, "fog", np.random.default_rng(0))


def test_relative_pose_error_of_exact_correspondences():
    rng = np.random.default_rng(1)
    K = np.array([[500.0, 0, 320], [0, 500, 240], [0, 0, 1]])
    from scipy.spatial.transform import Rotation

    T = make_transform(Rotation.from_euler("xyz", [3, -10, 2], degrees=True).as_matrix(), [0.5, 0.05, 0.1])
    X = rng.uniform([-2, -1.5, 4], [2, 1.5, 8], (300, 3))
    x0 = (X @ K.T)[:, :2] / X[:, 2:]
    X1 = X @ T[:3, :3].T + T[:3, 3]
    x1 = (X1 @ K.T)[:, :2] / X1[:, 2:]
    img = np.zeros((480, 640, 3), np.uint8)
    pair = PosePair("p", img, img, K, K, T)
    m = np.stack([np.arange(300), np.arange(300)], 1)
    assert evaluate_pose_pair(pair, x0, x1, m)["pose_error_deg"] < 0.5
    assert evaluate_pose_pair(pair, x0, x1, m[:3])["pose_error_deg"] == float("inf")


def test_ransac_trials_follow_colmaps_stopping_rule():
    from featloc_ros.evaluation.localization import ransac_trials

    assert ransac_trials(50, 100) == 259  # 3 * log(1e-5) / log(1 - 0.5^3) = 258.6
    assert ransac_trials(100, 100) == 100 and ransac_trials(5, 100) == 10000 and ransac_trials(0, 0) == 10000
    assert ransac_trials(80, 100) < ransac_trials(60, 100) < ransac_trials(40, 100)


def test_ransac_orders_give_the_auc_spread_over_match_orders():
    pair, k0, k1, rng = _warped_pair(1, 120)
    k1 = k1 + rng.normal(0, 1.0, (120, 2))  # noisy inliers ...
    k1[:60] = rng.uniform(0, 512, (60, 2))  # ... and half outliers: each order gives a slightly different model
    m = np.stack([np.arange(120), np.arange(120)], 1)
    one = evaluate_pair(pair, k0, k1, m)
    many = evaluate_pair(pair, k0, k1, m, ransac_orders=6)
    assert "corner_errors" not in one and len(many["corner_errors"]) == 6
    assert many["corner_errors"][0] == one["corner_error"] == many["corner_error"]  # order 0: the matches as given
    assert len(set(many["corner_errors"])) > 1  # the other orders are other draws
    assert evaluate_pair(pair, k0, k1, m, ransac_orders=6)["corner_errors"] == many["corner_errors"]  # seeded
    s = summarize_pairs([many, evaluate_pair(pair, k0, k1, m[:3], ransac_orders=6)])
    a = s["h_auc_orders"][3]
    per_order = [auc([e, float("inf")], 3) for e in many["corner_errors"]]
    assert s["ransac_orders"] == 6 and a["mean"] == pytest.approx(np.mean(per_order))
    assert a["std"] == pytest.approx(np.std(per_order)) and a["min"] <= s["h_auc"][3] <= a["max"]
    assert "h_auc_orders" not in summarize_pairs([one])


def test_refit_is_the_least_squares_homography_of_magsacs_inliers():
    pair, k0, k1, rng = _warped_pair(2, 150)
    k1 = k1 + rng.normal(0, 1.0, (150, 2))  # noisy inliers ...
    k1[:50] = rng.uniform(0, 512, (50, 2))  # ... and outliers
    H, mask = cv2.findHomography(k0, k1, cv2.USAC_MAGSAC, 3.0, confidence=0.9999, maxIters=10000)
    inliers = mask.ravel().astype(bool)
    H_ls, _ = cv2.findHomography(k0[inliers], k1[inliers], 0)
    assert np.allclose(estimate_homography(k0, k1), H)  # MAGSAC is seeded: the same model twice
    refitted = estimate_homography(k0, k1, refit=True)
    assert np.allclose(refitted, H_ls) and not np.allclose(refitted, H)
    assert estimate_homography(k0[:3], k1[:3], refit=True) is None
    m = np.stack([np.arange(150), np.arange(150)], 1)
    e = evaluate_pair(pair, k0, k1, m, ransac_orders=4, refit=True)
    assert len(e["corner_errors_refit"]) == 4
    w, h = pair.image0.shape[1], pair.image0.shape[0]
    assert e["corner_errors_refit"][0] == pytest.approx(corner_error(H_ls, pair.H_0to1, w, h))
    assert "corner_errors_refit" not in evaluate_pair(pair, k0, k1, m, ransac_orders=4)
    s = summarize_pairs([e, e])
    assert s["h_auc3_refit"]["mean"] == pytest.approx(np.mean([auc([x, x], 3) for x in e["corner_errors_refit"]]))
    assert "h_auc3_refit" not in summarize_pairs([evaluate_pair(pair, k0, k1, m, ransac_orders=4)])


def test_more_warps_per_photo_keep_the_pairs_of_fewer(tmp_path):
    cv2.imwrite(str(tmp_path / "a.png"), _photo()[:, :, ::-1])
    cv2.imwrite(str(tmp_path / "b.png"), _photo()[::-1, :, ::-1])
    photos = sorted(tmp_path.glob("*.png"))
    one = synthetic_pairs("synthetic_night", photos, warps_per_photo=1)
    three = synthetic_pairs("synthetic_night", photos, warps_per_photo=3)
    assert [p.name for p in one] == ["synthetic_night_a", "synthetic_night_b"]
    assert len(three) == 6 and len({p.name for p in three}) == 6
    kept = {p.name: p for p in three}
    for p in one:
        np.testing.assert_array_equal(kept[p.name].H_0to1, p.H_0to1)
        np.testing.assert_array_equal(kept[p.name].image1, p.image1)
    assert not np.allclose(three[0].H_0to1, three[1].H_0to1)  # the extra warps are new draws
    with pytest.raises(ValueError, match="warps_per_photo"):
        synthetic_pairs("synthetic_night", photos, warps_per_photo=0)


def test_paired_auc_difference_sees_a_consistent_gain_and_not_noise():
    rng = np.random.default_rng(0)
    ref = rng.uniform(0, 3, (5, 60))  # (orders, pairs)
    same = paired_auc_difference(ref, ref, resamples=300)
    assert same["difference"] == 0 and same["ci95"] == [0.0, 0.0]
    better = paired_auc_difference(ref * 0.8, ref, resamples=300)  # every pair 20% closer
    assert better["difference"] == pytest.approx(np.mean([auc(list(e * 0.8), 3) - auc(list(e), 3) for e in ref]))
    assert better["ci95"][0] > 0 and better["p_not_above"] == 0
    # one pair much better, one much worse: the interval straddles 0
    mixed = ref.copy()
    mixed[:, 0], mixed[:, 1] = 0.0, 10.0
    noisy = paired_auc_difference(mixed, ref, resamples=300)
    assert noisy["ci95"][0] < 0 < noisy["ci95"][1]
    with pytest.raises(ValueError, match="same non-empty pairs"):
        paired_auc_difference(ref[:, :10], ref)


def test_paired_localization_counts_queries_and_tests_signs(monkeypatch):
    """paired_error_comparison: wins per query, the exact sign test, medians and means over the queries both
    localized (not localized = infinite error), and the paired median difference with its interval; and the
    benchmark script's comparison of committed tables."""
    from pathlib import Path

    from featloc_ros.evaluation.metrics import paired_error_comparison

    ref = [0.2, 0.4, 0.6, 0.8, 1.0, 1.2, 1.4, 1.6, 1.8, 2.0]
    better = paired_error_comparison([r - 0.1 for r in ref], ref, resamples=300)  # every query 0.1 lower
    assert (better["lower"], better["higher"], better["ties"]) == (10, 0, 0)
    assert better["sign_test_p"] == pytest.approx(2 / 1024)
    assert better["median_difference"] == pytest.approx(-0.1) and better["ci95"][1] < 0
    mixed = paired_error_comparison([0.1, 0.3, 0.5, 0.7, 0.9, 1.3, 1.5, 1.7, 1.9, None], ref, resamples=300)
    assert (mixed["lower"], mixed["higher"]) == (5, 5) and mixed["sign_test_p"] == 1.0
    assert mixed["ci95"][0] < 0 < mixed["ci95"][1]  # five queries 0.1 better, five worse: cannot tell
    assert mixed["mean_both_localized"] == pytest.approx(np.mean([0.1, 0.3, 0.5, 0.7, 0.9, 1.3, 1.5, 1.7, 1.9]))
    assert mixed["reference_median"] == pytest.approx(1.1) and mixed["median"] == pytest.approx(1.1)
    # each method loses queries the other keeps: differences of -inf and +inf, whose middle pair has no mean
    lost = paired_error_comparison([None, None, None, 1.0], [1.0, 1.0, 1.0, None], resamples=300)
    assert (lost["lower"], lost["higher"]) == (1, 3)
    assert lost["median_difference"] == np.inf and not np.isnan(lost["ci95"]).any()
    split = paired_error_comparison([None, None, 1.0, 1.0], [1.0, 1.0, None, None], resamples=300)
    assert split["median_difference"] == -np.inf and not np.isnan(split["ci95"]).any()
    with pytest.raises(ValueError, match="same non-empty queries"):
        paired_error_comparison([1.0], ref)

    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[1] / "benchmarks"))  # its sibling imports
    from paired_localization import compare

    tables = {"a": {"fox": {"ref": {"position_errors": ref}, "other": {"position_errors": ref[::-1]},
                            "skip": None}},
              "b": {"fox": {"other": {"position_errors": [r / 2 for r in ref]}}}}
    out = compare(tables, "a:ref", ["fox"], None)["fox"]
    assert set(out) == {"a:ref", "a:other", "b:other"} and out["b:other"]["lower"] == 10
    assert list(compare(tables, "a:ref", ["fox"], ["oth"])["fox"]) == ["a:other", "b:other"]


def test_benchmark_method_for_experiment_feature_weights(tmp_path):
    """benchmarks/methods.py: "featloc@<weights>+isnn" runs an experiment's FeatLoc weights with invariance-selected
    mutual NN, named after the file, and is skipped with the reason when the file is missing."""
    from benchmarks.methods import TRAINED_FEATURES_PREFIX, resolve_methods
    from featloc_ros.features.featloc import resolve_model_file

    weights = resolve_model_file(None)  # the shipped featloc_v4.pt
    spec = TRAINED_FEATURES_PREFIX + str(weights) + "+isnn"
    missing = TRAINED_FEATURES_PREFIX + str(tmp_path / "missing.pt") + "+isnn"
    methods, skipped = resolve_methods([spec, missing])
    assert [m.name for m in methods] == ["featloc_v4+isnn"]
    assert methods[0].features["weights"] == str(weights.resolve()) and methods[0].matcher_name == "featloc_isnn"
    assert "missing.pt not found" in skipped[missing]


def test_keypoint_precision_residuals_keep_the_correct_matches_and_show_a_shift(monkeypatch):
    from pathlib import Path

    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[1] / "benchmarks"))  # its sibling imports
    from keypoint_precision import residuals, summarize

    pair, k0, k1, _ = _warped_pair(1, 100)
    k1 = k1 + [0.3, -0.1]  # every keypoint of image 1 shifted
    k1[:10] += 20.0  # ten wrong matches
    out = {"keypoints0": k0, "keypoints1": k1, "matches": np.stack([np.arange(100)] * 2, 1)}
    r = residuals(pair, out, within=3.0)
    s = summarize(r)
    assert s["matches"] == 90 and s["within_1px"] == 1.0
    assert s["mean_dx"] == pytest.approx(0.3, abs=1e-6) and s["mean_dy"] == pytest.approx(-0.1, abs=1e-6)
    assert s["rms_px"] == pytest.approx(np.hypot(0.3, 0.1), abs=1e-6)


def test_fox_localization_method_names_map_and_localization_matchers(monkeypatch):
    """benchmarks/fox_localization.py: "features+matcher[:localization matcher]" with the isnn short names."""
    from pathlib import Path

    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[1] / "benchmarks"))
    from fox_localization import parse_method

    assert parse_method("rootsift+mnn_ratio") == ("rootsift", "mnn_ratio", "")
    assert parse_method("featloc+isnn:isnn_ratio") == ("featloc", "featloc_isnn", "featloc_isnn_ratio")
    assert parse_method("featloc+isnn:featloc_sparse_small_v11") == ("featloc", "featloc_isnn",
                                                                     "featloc_sparse_small_v11")
    for bad in ("featloc", "featloc+", "+mnn"):
        with pytest.raises(SystemExit, match="bad method"):
            parse_method(bad)


def test_homography_benchmark_builds_validation_sets_from_given_photos(monkeypatch, tmp_path):
    """benchmarks/homography_benchmark.py --validation-photos: the synthetic sets come from the given photos (with
    --warps-per-photo pairs each), not from ../shared/data, and the real-image sets are not built."""
    from pathlib import Path

    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[1] / "benchmarks"))
    from homography_benchmark import build_sets

    rng = np.random.default_rng(0)
    photos = []
    for i in range(3):
        photos.append(tmp_path / f"p{i}.png")
        cv2.imwrite(str(photos[-1]), cv2.GaussianBlur(rng.integers(0, 255, (120, 160, 3), dtype=np.uint8), (0, 0), 2))
    sets, missing = build_sets(False, 2, ["synthetic_night", "synthetic_rot180"], photos)
    assert not missing and sorted(sets) == ["synthetic_night", "synthetic_rot180"]
    assert [len(v) for v in sets.values()] == [6, 6]
    assert {pr.name for pr in sets["synthetic_night"]} >= {"synthetic_night_p0", "synthetic_night_p2_w1"}
    assert sets["synthetic_night"][0].image0.shape == (120, 160, 3)


@pytest.mark.parametrize("name", ["/dev/null", "../escape", "sub/dir", "", ".."])
def test_benchmark_results_name_must_be_a_plain_stem(monkeypatch, name):
    """benchmarks/common.write_results: --name is a file stem under benchmarks/results/; a path (which would write
    outside it, e.g. /dev/null.json) is refused before anything is written."""
    from pathlib import Path

    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[1] / "benchmarks"))
    import common

    with pytest.raises(ValueError, match="plain name"):
        common.write_results(name, {}, "# nothing")
