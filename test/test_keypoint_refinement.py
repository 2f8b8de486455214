"""Sub-pixel keypoint refinement on the |LoG| of the image (featloc_ros.features.keypoint_refinement) and how the
FeatLoc extractor and calibrate_keypoints carry it."""

import json
import shutil

import numpy as np
import pytest

from featloc_ros.features.keypoint_refinement import (apply_refinement, log_response, parabola_vertex,
                                                      refine_keypoints, refinement_settings)


def _blobs(centres, size=(64, 96), sigma=2.0) -> np.ndarray:
    """A float image of bright Gaussian blobs at sub-pixel (x, y) centres."""
    h, w = size
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float64)
    img = np.zeros((h, w))
    for x, y in centres:
        img += np.exp(-((xs - x) ** 2 + (ys - y) ** 2) / (2 * sigma ** 2))
    return (40 + 180 * img).astype(np.float32)


def test_parabola_vertex():
    assert parabola_vertex(np.array(1.0), np.array(2.0), np.array(1.0)) == 0.0
    # samples of -(x - 0.3)^2 at -1, 0, 1
    assert parabola_vertex(np.array(-1.69), np.array(-0.09), np.array(-0.49)) == pytest.approx(0.3)
    assert parabola_vertex(np.array(1.0), np.array(0.0), np.array(1.0)) == 0.0  # a minimum: no move


def test_refinement_finds_sub_pixel_blob_centres_and_follows_shifts():
    centres = np.array([[20.3, 15.6], [60.7, 40.2], [45.45, 20.8]])
    start = np.round(centres) + [[1, 0], [0, -1], [-1, 1]]  # one pixel off, inside the window
    out = refine_keypoints(log_response(_blobs(centres), 1.5), start, radius=1)
    assert np.abs(out - centres).max() < 0.12
    assert np.abs(start - centres).max() > 0.9  # the test starts far from the answer
    # the refined points move with the image by a sub-pixel shift
    shift = np.array([0.4, -0.3])
    moved = refine_keypoints(log_response(_blobs(centres + shift), 1.5), np.round(centres + shift), radius=1)
    plain = refine_keypoints(log_response(_blobs(centres), 1.5), np.round(centres), radius=1)
    assert np.abs((moved - plain) - shift).max() < 0.06


def test_refinement_stays_inside_its_window():
    centres = np.array([[30.0, 30.0]])
    start = np.array([[34.0, 30.0], [31.0, 30.0], [-5.0, 3.0]])  # 4 px off, 1 px off, outside the image
    out = refine_keypoints(log_response(_blobs(centres), 1.5), start, radius=1)
    assert abs(out[0, 0] - 34.0) <= 1.5 and out[0, 0] < 34.0  # towards the blob, at most radius + 0.5
    assert np.abs(out[1] - centres[0]).max() < 0.05
    np.testing.assert_array_equal(out[2], start[2])
    assert refine_keypoints(np.zeros((8, 8)), np.zeros((0, 2))).shape == (0, 2)


def test_refinement_settings_are_checked():
    assert refinement_settings(None)["log_sigma"] == 0.0
    s = refinement_settings({"log_sigma": 1.5, "offset": [0.1, -0.2]})
    assert s == {"log_sigma": 1.5, "radius": 1, "offset": (0.1, -0.2)}
    for bad in ({"log_sigma": -1}, {"offset": [1.0]}, {"radius": -1}, {"sigma": 1.0}, {"log_sigma": "x"},
                {"offset": [float("nan"), 0.0]}):
        with pytest.raises(ValueError, match="model.json"):
            refinement_settings(bad, "x.model.json")
    kpts = np.array([[10.2, 11.7]], np.float32)
    np.testing.assert_array_equal(apply_refinement(np.zeros((20, 20), np.uint8), kpts, s | {"log_sigma": 0.0}), kpts)
    img = _blobs([(10.0, 12.0)], size=(24, 24)).astype(np.uint8)
    np.testing.assert_allclose(apply_refinement(img, kpts, s), [[10.1, 11.8]], atol=0.05)  # the blob + the offset


def test_extractor_applies_the_stored_refinement(tmp_path):
    """The FeatLoc extractor reads ``keypoint_refinement`` next to the weights; conf ``refinement`` overrides it;
    a corrupt entry names the file."""
    from featloc_ros.features import create_extractor
    from featloc_ros.features.featloc import resolve_model_file

    try:
        shipped = resolve_model_file(None)
    except FileNotFoundError as e:
        pytest.skip(str(e).splitlines()[0])
    weights = tmp_path / "w.pt"
    shutil.copy(shipped, weights)
    arch = json.loads(shipped.with_suffix(".model.json").read_text())
    arch.pop("keypoint_refinement", None)
    weights.with_suffix(".model.json").write_text(json.dumps(arch))
    conf = {"name": "featloc", "weights": str(weights), "max_keypoints": 80, "resize_max": 0,
            "detection_threshold": 0.0}
    rng = np.random.default_rng(0)
    img = _blobs(rng.uniform([8, 8], [88, 56], (25, 2)), sigma=1.5).clip(0, 255).astype(np.uint8)
    plain = create_extractor(conf)
    assert plain.refinement["log_sigma"] == 0.0
    base = plain(img).keypoints
    arch["keypoint_refinement"] = {"log_sigma": 1.5, "radius": 1, "offset": [0.0, 0.0]}
    weights.with_suffix(".model.json").write_text(json.dumps(arch))
    stored = create_extractor(conf)
    assert stored.refinement["log_sigma"] == 1.5
    refined = stored(img).keypoints
    gray = img.astype(np.float32)
    np.testing.assert_allclose(refined, refine_keypoints(log_response(gray, 1.5), base, 1), atol=1e-4)
    assert not np.allclose(refined, base)
    np.testing.assert_array_equal(create_extractor({**conf, "refinement": {}})(img).keypoints, base)
    arch["keypoint_refinement"] = [1.5]
    weights.with_suffix(".model.json").write_text(json.dumps(arch))
    with pytest.raises(ValueError, match="w.model.json"):
        create_extractor(conf)


def test_refinement_choice_on_training_pairs():
    """choose_refinement measures each candidate's offset and repeatability on training pairs (procedural images
    work without the corpus) and keeps the best score; the candidate 0 is no refinement."""
    from featloc_ros.features.featloc import resolve_model_file
    from featloc_ros.training.calibrate_keypoints import choose_refinement

    try:
        weights = resolve_model_file(None)
    except FileNotFoundError as e:
        pytest.skip(str(e).splitlines()[0])
    res = choose_refinement(weights, 0.1, 1.0, (0.29, 0.16), [0.0, 1.5], pairs=4, seed=3)
    none, log = res["candidates"]["0.0"], res["candidates"]["1.5"]
    assert none["offset"] == [0.0, 0.0] and none["rms_after"] is None
    assert log["rms_after"] > 0 and max(abs(v) for v in log["offset"]) < 1.0
    assert all(r["all"]["repeat_1px"] > 0.05 for r in (none, log))
    best = max((0.0, 1.5), key=lambda s: res["candidates"][str(s)]["score"])
    assert res["settings"]["log_sigma"] == best and res["settings"]["offset"] == res["candidates"][str(best)]["offset"]
