"""Peers' own matchers inside our localizer (benchmarks/peer_features.py): the recorded (query, keyframe)
pairs are matched in one batch and the second pass uses the answers. The peers venv is replaced by a fake
matcher here (mutual NN on the arrays it is sent); the end-to-end LightGlue test skips without `make peers`."""

import sys
from pathlib import Path

import numpy as np

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"
if str(BENCH) not in sys.path:
    sys.path.insert(0, str(BENCH))

import peer_features  # noqa: E402
import peers.client  # noqa: E402

from featloc_ros.evaluation.localization import Frame, localize_frames  # noqa: E402
from featloc_ros.features import Features  # noqa: E402
from featloc_ros.matching import nearest_neighbor_match  # noqa: E402


def test_peer_matcher_answers_from_a_batch(demo_small, monkeypatch):
    calls = []

    def fake_match_features(method, pairs, **_):
        calls.append((method, len(pairs)))
        out = []
        for p in pairs:
            assert p["keypoints0"].dtype == np.float32 and tuple(p["image_size0"]) == (320, 240)
            f0 = Features(p["keypoints0"], np.ones(len(p["keypoints0"]), np.float32), p["descriptors0"], (320, 240))
            f1 = Features(p["keypoints1"], np.ones(len(p["keypoints1"]), np.float32), p["descriptors1"], (320, 240))
            m = nearest_neighbor_match(f0.descriptors, f1.descriptors, ratio=0.8, mutual=True)
            out.append({"matches": m.indices, "scores": m.scores, "match_ms": 1.0})
        return out

    monkeypatch.setattr(peers.client, "run_peer_match_features", fake_match_features)
    frames = [Frame(f"q{i}", img, cam, T) for i, (img, cam, T) in enumerate(demo_small["queries"][:3])]
    got = peer_features.localize_with_peer_matcher(demo_small["map"], frames, "fake_glue")
    ref = localize_frames(demo_small["map"], frames)
    assert len(calls) == 1 and calls[0][0] == "fake_glue"  # one batch with every pair the localizer asked for
    assert calls[0][1] >= len(frames)  # at least one candidate keyframe per query
    assert got["num_localized"] == ref["num_localized"] == 3
    assert [f["num_matches"] for f in got["frames"]] == [f["num_matches"] for f in ref["frames"]]


def test_peer_frame_follows_the_peer_resize():
    f = Features(np.array([[0.0, 0.0], [2047.0, 1023.0]], np.float32), np.ones(2, np.float32),
                 np.zeros((2, 4), np.float32), (2048, 1024))
    k, size = peer_features._peer_frame(f)
    assert size == (1024, 512)
    np.testing.assert_allclose(k, [[-0.25, -0.25], [1023.25, 511.25]], atol=1e-4)
