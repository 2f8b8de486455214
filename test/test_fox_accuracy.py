"""Accuracy on real images: instant-ngp fox, map from 40 frames with COLMAP poses, localize 10."""

from featloc_ros.evaluation.fox import evaluate_fox

from conftest import shared_dataset


def test_fox_localization(tmp_path):
    root = shared_dataset("instant_ngp_fox")
    s = evaluate_fox(root, tmp_path, features="rootsift_fast")
    assert s["num_localized"] >= 9, s["frames"]
    assert s["median_rotation_error_deg"] < 1.0
    assert s["median_position_error_pct_extent"] < 1.0
