"""The learned keypoint refiner (FeatLocNet conf ``keypoint_refiner``) and its fit (training/fit_refiner.py).
Random weights and synthetic data only: no accuracy claims here (those are in benchmarks/results)."""

import numpy as np
import pytest
import torch

from featloc_ros.nn.featloc_net import FeatLocNet, KeypointRefiner, export_onnx, rot90_points
from featloc_ros.training import fit_refiner

torch.set_num_threads(1)
REFINER = {"grid": 5, "spacing": 1.0, "hidden": 8}
FULL = {"detector_head": "full", "steered_kinds": ("ri_iv", "ri_ii"), "max_keypoints": 32}


def _refiner(seed=0) -> KeypointRefiner:
    torch.manual_seed(seed)
    return KeypointRefiner(**REFINER).eval()


def test_refiner_turns_its_correction_with_the_image():
    """Quarter turn of the maps, the keypoints and their frames: the same patches are sampled, so the offsets
    turn with the image ((dx, dy) -> (dy, -dx) for torch.rot90 by one turn)."""
    g = torch.Generator().manual_seed(1)
    h, w = 40, 48
    intensity, scores = torch.rand(1, 1, h, w, generator=g), torch.rand(1, 1, h, w, generator=g)
    kpts = torch.tensor([[[12.3, 15.7], [30.0, 20.5], [22.6, 28.1]]])
    ang = torch.rand(1, 3, generator=g) * 6.28
    frame = torch.stack([ang.cos(), ang.sin()], -1)
    ref = _refiner()
    with torch.no_grad():
        d = ref(intensity, scores, kpts, frame)
        turned = ref(torch.rot90(intensity, 1, (2, 3)), torch.rot90(scores, 1, (2, 3)), rot90_points(kpts, 1, h, w),
                     torch.stack([frame[..., 1], -frame[..., 0]], -1))
    assert d.abs().max() > 1e-3  # a random refiner moves the points
    torch.testing.assert_close(turned, torch.stack([d[..., 1], -d[..., 0]], -1), atol=1e-5, rtol=1e-4)


def test_refiner_ignores_gain_and_offset_of_the_intensities():
    g = torch.Generator().manual_seed(2)
    intensity, scores = torch.rand(1, 1, 32, 32, generator=g), torch.rand(1, 1, 32, 32, generator=g)
    kpts, frame = torch.tensor([[[14.2, 17.9]]]), torch.tensor([[[0.6, 0.8]]])
    ref = _refiner()
    with torch.no_grad():
        torch.testing.assert_close(ref(3 * intensity + 0.5, scores, kpts, frame), ref(intensity, scores, kpts, frame),
                                   atol=1e-4, rtol=1e-3)


def test_network_with_a_refiner_only_moves_the_keypoints():
    """A refiner whose last layer outputs a constant (u, v) moves every keypoint by (u, v) turned by its frame;
    scores and descriptors are those of the network without it."""
    torch.manual_seed(0)
    base = FeatLocNet(FULL).eval()
    net = FeatLocNet({**FULL, "keypoint_refiner": REFINER}).eval()
    net.load_state_dict(base.state_dict(), strict=False)
    last = net.keypoint_refiner.mlp[-1]
    torch.nn.init.zeros_(last.weight)
    last.bias.data = torch.tensor([0.3, 0.0])
    x = torch.rand(1, 1, 64, 80, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        a, b = base({"image": x}), net({"image": x})
        frame = base.orientation(base._features(x), a["keypoints"])
    for key in ("scores", "valid", "local", "meta"):
        torch.testing.assert_close(a[key], b[key])
    torch.testing.assert_close(b["keypoints"] - a["keypoints"], 0.3 * frame, atol=1e-5, rtol=1e-4)
    with pytest.raises(ValueError, match="keypoint_refiner"):
        FeatLocNet({"keypoint_refiner": REFINER})  # needs the full-resolution head


def test_fit_learns_a_covariant_correction():
    """Synthetic keypoint pairs whose residual is what a known refiner would remove: fitting a fresh refiner of
    the same shape must remove most of it (and leave a constant offset no lever)."""
    rng = np.random.default_rng(0)
    n, feat = 4000, 2 * REFINER["grid"] ** 2
    truth = _refiner(seed=5)
    for p in truth.mlp.parameters():
        p.data *= 3
    xa, xb = rng.normal(size=(n, feat)).astype(np.float32), rng.normal(size=(n, feat)).astype(np.float32)
    ang_a, ang_b = rng.uniform(0, 6.28, n), rng.uniform(0, 6.28, n)
    ja = fit_refiner.frame_matrices(np.stack([np.cos(ang_a), np.sin(ang_a)], 1)) * rng.uniform(0.8, 1.2, (n, 1, 1))
    rb = fit_refiner.frame_matrices(np.stack([np.cos(ang_b), np.sin(ang_b)], 1))
    data = {"inputs_a": xa, "inputs_b": xb, "ja": ja, "rb": rb, "residual": np.zeros((n, 2)),
            "kind": np.array(["none", "illumination", "night", "none"] * (n // 4))}
    with torch.no_grad():  # the residual that the true refiner's offsets cancel
        data["residual"] = -fit_refiner.refined_residuals(truth, fit_refiner.as_tensors(data)).double().numpy()
    model = _refiner(seed=9)
    fit_refiner.fit(model, data, steps=600, seed=0, lr=3e-3, batch=1024)
    before, after = fit_refiner.residual_summary(data), fit_refiner.residual_summary(data, model)
    assert after["all"]["rms_px"] < 0.5 * before["all"]["rms_px"], (before["all"], after["all"])
    assert set(before) == {"none", "illumination", "night", "all"} and before["night"]["pairs"] == n // 4


def test_refiner_exports_to_onnx(tmp_path):
    pytest.importorskip("onnxscript", reason="the ONNX export needs onnxscript")
    pytest.importorskip("onnxruntime", reason="the ONNX check needs onnxruntime")
    torch.manual_seed(0)
    net = FeatLocNet({**FULL, "keypoint_refiner": REFINER}).eval()
    res = export_onnx(net, tmp_path / "refined.onnx", nms_radius=2, detection_threshold=0.0, verify_size=(64, 96))
    assert res["common_keypoints"] > 0.95 and res["max_abs_diff"] < 1e-3, res
