"""FeatLoc training: the smoke config runs on procedural images only, checkpoints, resumes deterministically;
the data pipeline's correspondences are exact."""

from pathlib import Path

import numpy as np
import pytest
import torch

from featloc_ros.training.data import PairDataset, find_corpus
from featloc_ros.training.losses import lookup_mask, warp_points
from featloc_ros.training.train import load_config, train

torch.set_num_threads(1)
SMOKE = Path(__file__).resolve().parents[1] / "featloc_ros" / "training" / "configs" / "smoke.yaml"


def _quiet(*_):
    pass


def test_smoke_training_resumes_deterministically(tmp_path):
    conf = load_config(SMOKE)
    assert conf["data"]["corpus"] is None  # procedural images only: no shared data needed
    full = train(conf, tmp_path / "full", log=_quiet)
    assert full["completed"] and full["steps"] == conf["train"]["steps"] == 4
    assert (tmp_path / "full" / "checkpoints" / "last.pt").is_file()
    assert (tmp_path / "full" / "loss_curves.png").stat().st_size > 1000
    assert (tmp_path / "full" / "model.pt").is_file() and (tmp_path / "full" / "summary.json").is_file()

    part = train(conf, tmp_path / "resumed", max_steps=2, log=_quiet)  # "interrupted" after step 2
    assert part["steps"] == 2 and not part["completed"]
    ckpt = torch.load(tmp_path / "resumed" / "checkpoints" / "last.pt", weights_only=True)
    assert int(ckpt["step"]) == 2 and set(ckpt) >= {"model", "optimizer", "rng", "history"}
    resumed = train(conf, tmp_path / "resumed", resume=True, log=_quiet)
    assert resumed["completed"] and resumed["steps"] == 4

    h_full = torch.load(tmp_path / "full" / "checkpoints" / "last.pt", weights_only=True)
    h_res = torch.load(tmp_path / "resumed" / "checkpoints" / "last.pt", weights_only=True)
    assert h_full["history_names"] == h_res["history_names"]
    names = h_full["history_names"]
    total = names.index("total")
    assert h_res["history_steps"].tolist() == [1, 2, 3, 4]
    # same losses at the same steps, resumed vs uninterrupted (same seed)
    torch.testing.assert_close(h_res["history"][:, total], h_full["history"][:, total], rtol=0, atol=1e-6)
    w_full = torch.load(tmp_path / "full" / "model.pt", weights_only=True)
    w_res = torch.load(tmp_path / "resumed" / "model.pt", weights_only=True)
    for k in w_full:
        torch.testing.assert_close(w_res[k], w_full[k], rtol=0, atol=1e-6)


def _first_step(conf: dict, channels_last: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """(loss, all gradients as one vector) of the first training step of ``conf`` from seed 0."""
    from featloc_ros.training.train import full_config, get_task, memory_format

    conf = full_config(conf)
    conf["train"]["channels_last"] = channels_last
    task = get_task(conf)
    torch.manual_seed(0)
    model = task.model_class(conf["model"]).train()
    model.to(memory_format=memory_format(conf))
    loss, _ = task.step_loss(model, task.make_data(conf, 0), [0, 1], conf, torch.Generator().manual_seed(0))
    loss.backward()
    return loss.detach(), torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])


@pytest.mark.parametrize("steered", [False, True])
def test_channels_last_trains_the_same_model(tmp_path, steered):
    """train.channels_last (the default) changes the memory layout, not the model (full-resolution detector and
    shift loss as v4; plain or steered heads): the same first-step loss as NCHW to float rounding and nearly the
    same gradients. Measured on one thread: scores differ by at most 4e-5; the whole gradient vector by 3.5e-3
    (plain) and 4.8e-3 (steered) of its norm, mostly in the detector head, where BatchNorm in training mode
    divides rounding differences by small batch deviations; a wrong layout would differ by order 1. (After a few
    Adam steps rounding differences grow, so whole runs are not compared.) The exported state dict is in the usual
    contiguous layout."""
    over = ["model.detector_head=full", "loss.weights.shift=5.0"]
    if steered:
        over.append("model.steered_kinds=[ri_iv, ri_ii]")
    conf = load_config(SMOKE, over)
    (loss_cl, grad_cl), (loss_nchw, grad_nchw) = _first_step(conf, True), _first_step(conf, False)
    torch.testing.assert_close(loss_cl, loss_nchw, rtol=1e-5, atol=1e-6)
    assert len(grad_cl) == len(grad_nchw) > 10_000
    assert float((grad_cl - grad_nchw).norm() / grad_nchw.norm()) < 2e-2

    assert train(conf, tmp_path / "cl", log=_quiet)["completed"]
    assert '"channels_last": true' in (tmp_path / "cl" / "summary.json").read_text()
    state = torch.load(tmp_path / "cl" / "model.pt", weights_only=True)
    assert any(v.dim() == 4 for v in state.values()) and all(v.is_contiguous() for v in state.values())


@pytest.mark.parametrize("want_rotation", [False, True])
def test_pair_correspondences_are_exact(want_rotation):
    ds = PairDataset({"corpus": None, "crop_size": 96, "p_illumination": 0.5}, seed=3)
    checked = 0
    for i in range(40):
        s = ds[i]
        if s["rotation"] != want_rotation:
            continue
        # A vs B0 (no photometric change ever) and A vs B when no illumination change was applied
        targets = [("B0", "H_AB0", "valid_B0")] + ([("B", "H_AB", "valid_B")] if not s["illumination"] else [])
        rng = np.random.default_rng(i)
        pts = rng.uniform(4, 91, (500, 2)).astype(np.float32)
        for img, H, valid in targets:
            q = warp_points(torch.from_numpy(s[H])[None], torch.from_numpy(pts)[None])
            ok = lookup_mask(torch.from_numpy(s[valid])[None], q)[0].numpy()
            q = q[0].numpy()
            ok &= (q[:, 0] > 2) & (q[:, 0] < 93) & (q[:, 1] > 2) & (q[:, 1] < 93)
            assert ok.sum() > 100
            a = _bilinear(s["A"], pts[ok])
            b = _bilinear(s[img], q[ok])
            # interpolation and resampling blur: the median colour difference is small (random pairing: ~40)
            assert np.median(np.abs(a - b)) < 6, (i, img)
            shuffled = _bilinear(s[img], q[ok][::-1])
            assert np.median(np.abs(a - shuffled)) > 3 * np.median(np.abs(a - b)) + 1
            checked += 1
        if s["rotation"]:
            # B differs from B0 by a rotation of at least 30 degrees about the centre
            assert 30 <= abs(s["angle"]) <= 180
        if checked >= 6:
            break
    assert checked >= 4


def _bilinear(img: np.ndarray, pts: np.ndarray) -> np.ndarray:
    img = img.astype(np.float32)
    x, y = pts[:, 0], pts[:, 1]
    x0, y0 = np.floor(x).astype(int), np.floor(y).astype(int)
    fx, fy = x - x0, y - y0
    return (img[y0, x0] * (1 - fx) * (1 - fy) + img[y0, x0 + 1] * fx * (1 - fy) + img[y0 + 1, x0] * (1 - fx) * fy
            + img[y0 + 1, x0 + 1] * fx * fy)


def test_samples_are_deterministic_and_corpus_is_never_research_data():
    ds = PairDataset({"corpus": None, "crop_size": 64}, seed=1)
    a, b = ds[5], ds[5]
    for k in ("A", "B", "B0", "H_AB"):
        np.testing.assert_array_equal(a[k], b[k])
    assert not np.array_equal(ds[6]["A"], a["A"])
    corpus = find_corpus("auto")
    if corpus is not None:
        assert corpus.name == "training_corpus" and "data" not in corpus.parts[-2:]


def test_nce_and_spread_out_losses():
    from featloc_ros.training.losses import nce_from_distances, spread_out

    n = 6
    exclude = torch.zeros(n, n, dtype=torch.bool)
    valid = torch.ones(n, dtype=torch.bool)
    perfect = 2.0 * (1 - torch.eye(n))  # true matches at distance 0, all others at 2
    uniform = torch.ones(n, n)
    assert float(nce_from_distances(perfect, exclude, valid, 0.05)) < 1e-6
    assert abs(float(nce_from_distances(uniform, exclude, valid, 0.05)) - np.log(n)) < 1e-5
    # an excluded (near) candidate is not a negative
    near = perfect.clone()
    near[0, 1] = 0.0
    ex = exclude.clone()
    ex[0, 1] = True
    assert float(nce_from_distances(near, ex, valid, 0.05)) < float(nce_from_distances(near, exclude, valid, 0.05))
    # a collapsed head (all descriptors equal) is penalised, orthogonal descriptors are not
    const = torch.nn.functional.normalize(torch.ones(n, 8), dim=-1)
    ortho = torch.eye(8)[:n]
    assert float(spread_out(const, const, exclude, valid)) > 0.5
    assert float(spread_out(ortho, ortho, exclude, valid)) < 1e-6


def test_v2_losses_train_on_the_smoke_config(tmp_path):
    conf = load_config(SMOKE, ["loss.meta_loss=nce", "loss.weights.spread=1.0", "data.rotation_ramp_samples=4"])
    out = train(conf, tmp_path / "v2", log=_quiet)
    ckpt = torch.load(tmp_path / "v2" / "checkpoints" / "last.pt", weights_only=True)
    names = ckpt["history_names"]
    assert out["completed"] and "spread_ri_ii" in names
    assert torch.isfinite(ckpt["history"]).all()


def test_steered_heads_train_and_fine_tune_from_a_state_dict(tmp_path):
    """The v3 set-up on the smoke config: steered rotation-invariant heads, the subsampled reliability rank,
    initialisation from another model's weights (matching tensors copied, the steered heads fresh)."""
    from featloc_ros.nn.featloc_net import FeatLocNet

    torch.manual_seed(1)
    plain = FeatLocNet()
    torch.save(plain.state_dict(), tmp_path / "plain.pt")
    conf = load_config(SMOKE, ["model.steered_kinds=[ri_iv, ri_ii]", "loss.reliability_cell_stride=8",
                               f"train.init_weights={tmp_path / 'plain.pt'}", "loss.meta_loss=nce"])
    out = train(conf, tmp_path / "v3", log=_quiet)
    assert out["completed"]
    log = (tmp_path / "v3" / "log.txt").read_text()
    assert "new or reshaped: descriptor_heads.1, descriptor_heads.1.mlp, descriptor_heads.3" in log
    ckpt = torch.load(tmp_path / "v3" / "checkpoints" / "last.pt", weights_only=True)
    assert torch.isfinite(ckpt["history"]).all()
    state = ckpt["model"]
    # the backbone started from the plain model's weights (then trained a few steps: close, not equal)
    w0, w1 = plain.state_dict()["backbone.stem.0.0.weight"], state["backbone.stem.0.0.weight"]
    assert (w1 - w0).abs().max() < 0.05 and "descriptor_heads.1.mlp.1.weight" in state
    sidecar = tmp_path / "v3" / "model.model.json"
    import json

    assert json.loads(sidecar.read_text())["model"]["steered_kinds"] == ["ri_iv", "ri_ii"]


def test_detector_head_fine_tunes_alone(tmp_path):
    """The v4 set-up on the smoke config: a full-resolution detector head on a frozen model (train.trainable):
    every other tensor, BatchNorm statistics included, keeps the initial weights; the head learns."""
    from featloc_ros.nn.featloc_net import FeatLocNet

    torch.manual_seed(2)
    base = FeatLocNet()
    torch.save(base.state_dict(), tmp_path / "base.pt")
    conf = load_config(SMOKE, ["model.detector_head=full", "train.trainable=[keypoint_head]",
                               f"train.init_weights={tmp_path / 'base.pt'}"])
    out = train(conf, tmp_path / "v4", log=_quiet)
    assert out["completed"]
    assert "frozen: backbone, fpn, descriptor_heads, meta, meta_log_tau" in (tmp_path / "v4" / "log.txt").read_text()
    state = torch.load(tmp_path / "v4" / "model.pt", weights_only=True)
    init = base.state_dict()
    for k, v in state.items():
        if not k.startswith("keypoint_head."):
            torch.testing.assert_close(v, init[k], rtol=0, atol=0, msg=k)
    fresh = FeatLocNet({"detector_head": "full"}).state_dict()
    assert any(not torch.equal(state[k], fresh[k]) for k in state if k.startswith("keypoint_head.fine"))
    assert not torch.equal(state["keypoint_head.lat.weight"], init["keypoint_head.lat.weight"])  # copied, then trained
    with pytest.raises(ValueError, match="train.trainable: unknown modules"):
        train(load_config(SMOKE, ["train.trainable=[detector]"]), tmp_path / "bad", log=_quiet)


def test_export_onnx_only_rewrites_the_graph_from_the_weights(tmp_path):
    """``--export-onnx`` (no training): the ONNX model of a config from its weights; a missing weights file is
    named in the error."""
    pytest.importorskip("onnxscript")
    pytest.importorskip("onnxruntime")
    from featloc_ros.nn.featloc_net import FeatLocNet
    from featloc_ros.training.train import main

    torch.manual_seed(3)
    torch.save(FeatLocNet().state_dict(), tmp_path / "w.pt")
    onnx_path = tmp_path / "w.onnx"
    assert main(["--config", str(SMOKE), f"export.weights={tmp_path / 'w.pt'}", f"export.onnx={onnx_path}",
                 "--export-onnx"]) == 0
    import onnxruntime as ort

    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    assert [i.name for i in sess.get_inputs()] == ["image", "max_keypoints"]
    with pytest.raises(ValueError, match="nope.pt"):
        main(["--config", str(SMOKE), f"export.weights={tmp_path / 'nope.pt'}", f"export.onnx={onnx_path}",
              "--export-onnx"])
    # settings calibrated after training (stored next to the weights) reach the re-exported graph
    import json

    import onnx

    (tmp_path / "w.model.json").write_text(json.dumps({"format": "featloc_ros.featloc_net/1", "model": {
        "keypoint_offset": [0.25, -0.5], "score_blur": 1.0, "subpixel_temperature": 0.04}}))
    assert main(["--config", str(SMOKE), f"export.weights={tmp_path / 'w.pt'}", f"export.onnx={onnx_path}",
                 "--export-onnx"]) == 0
    meta = {p.key: p.value for p in onnx.load(str(onnx_path)).metadata_props}
    assert meta["featloc.keypoint_offset"] == "0.25,-0.5" and meta["featloc.score_blur"] == "1.0"
    assert meta["featloc.subpixel_temperature"] == "0.04"


def test_average_config_exports_the_mean_of_its_members(tmp_path):
    """A config with ``average`` trains nothing: its weights are the tensor-wise mean of the members (integer
    tensors, e.g. BatchNorm counters, must agree); missing or mismatched members are named in the error."""
    from featloc_ros.nn.featloc_net import FeatLocNet

    members = []
    for seed in (1, 2, 3):
        torch.manual_seed(seed)
        members.append(tmp_path / f"m{seed}.pt")
        torch.save(FeatLocNet().state_dict(), members[-1])
    out = tmp_path / "avg.pt"
    conf = load_config(SMOKE, [f"average={[str(m) for m in members]}", f"export.weights={out}", "export.onnx=null",
                               f"export.summary={tmp_path / 'avg.json'}"])
    summary = train(conf, tmp_path / "run", log=_quiet)
    states = [torch.load(m, weights_only=True) for m in members]
    avg = torch.load(out, weights_only=True)
    for k, t in avg.items():
        expect = torch.stack([s[k] for s in states]).mean(0) if t.is_floating_point() else states[0][k]
        torch.testing.assert_close(t, expect)
    key = next(k for k, t in avg.items() if t.is_floating_point() and t.dim() == 4)  # a convolution kernel
    assert all(not torch.equal(avg[key], s[key]) for s in states)  # the members differ: the mean is none of them
    assert [m["weights"] for m in summary["averaged"]] == [str(m) for m in members]
    assert all(len(m["sha256"]) == 64 for m in summary["averaged"]) and (tmp_path / "avg.json").is_file()
    with pytest.raises(FileNotFoundError, match="nope.pt"):
        train(load_config(SMOKE, [f"average={[str(members[0]), str(tmp_path / 'nope.pt')]}"]), tmp_path / "r2",
              log=_quiet)
    odd = dict(states[0])
    odd["meta_log_tau"] = torch.zeros(2)
    torch.save(odd, tmp_path / "odd.pt")
    with pytest.raises(ValueError, match="odd.pt"):
        train(load_config(SMOKE, [f"average={[str(members[0]), str(tmp_path / 'odd.pt')]}"]), tmp_path / "r3",
              log=_quiet)


def _blobs(S: int, centres: np.ndarray, sigma: float = 1.5) -> torch.Tensor:
    """(1,1,S,S) score map with a Gaussian peak at each (x, y) centre."""
    ys, xs = np.mgrid[0:S, 0:S].astype(np.float64)
    m = np.zeros((S, S))
    for x, y in centres:
        m = np.maximum(m, np.exp(-((xs - x) ** 2 + (ys - y) ** 2) / (2 * sigma ** 2)))
    return torch.tensor(m, dtype=torch.float32)[None, None]


def test_keypoint_precision_loss_measures_subpixel_disagreement_and_trains_the_scores():
    from featloc_ros.training.losses import DEFAULT_LOSS_CONF, keypoint_precision_loss

    S, rng = 64, np.random.default_rng(0)
    grid = np.stack(np.meshgrid(np.arange(8, 60, 8), np.arange(8, 60, 8)), -1).reshape(-1, 2)
    pa = grid + rng.uniform(-0.4, 0.4, (49, 2))
    t = np.array([0.3, 0.2])  # B = A translated by t pixels
    H = torch.tensor([[1, 0, t[0]], [0, 1, t[1]], [0, 0, 1.0]], dtype=torch.float32)[None]
    batch = {"A": torch.zeros(1, 3, S, S), "H_AB": H, "valid_B": torch.ones(1, S, S, dtype=torch.bool)}
    conf = {**DEFAULT_LOSS_CONF, "precision_points": 49}
    sa = _blobs(S, pa)
    exact, repeated = keypoint_precision_loss(torch.cat([sa, _blobs(S, pa + t), sa]), batch, conf)
    off = keypoint_precision_loss(torch.cat([sa, _blobs(S, pa + t + [0.5, 0.0]), sa]), batch, conf)[0]
    assert repeated == 1.0
    # peaks as wide as the temperature suits: 0.06 px (one pixel wide, the soft-argmax rounds: 0.33); a 0.5 px miss
    assert float(exact) < 0.1 and float(off) > 0.45
    sb = _blobs(S, pa + t + [0.5, 0.0]).requires_grad_(True)
    keypoint_precision_loss(torch.cat([sa, sb, sa]), batch, conf)[0].backward()
    assert sb.grad is not None and float(sb.grad.abs().sum()) > 0


def test_keypoint_precision_loss_on_blurred_scores_sees_what_the_blurred_detector_reports():
    """precision_blur: the loss is measured on the score maps blurred as at inference. Two nearby one-sided
    bumps in B merge under the blur into one peak that is off A's; without the blur the loss sees B's sharp
    peak exactly where A's keypoint lands."""
    from featloc_ros.nn.featloc_net import gaussian_blur
    from featloc_ros.training.losses import DEFAULT_LOSS_CONF, keypoint_precision_loss

    S = 64
    grid = np.stack(np.meshgrid(np.arange(10, 56, 12), np.arange(10, 56, 12)), -1).reshape(-1, 2).astype(float)
    H = torch.eye(3)[None]
    batch = {"A": torch.zeros(1, 3, S, S), "H_AB": H, "valid_B": torch.ones(1, S, S, dtype=torch.bool)}
    sa = _blobs(S, grid, sigma=1.0)
    shoulder = 0.6 * _blobs(S, grid + [2.0, 0.0], sigma=1.0)  # a weaker bump 2 px to the right of each peak
    sb = torch.maximum(sa, shoulder)
    conf = {**DEFAULT_LOSS_CONF, "precision_points": len(grid), "precision_temperature": 0.04}
    sharp = float(keypoint_precision_loss(torch.cat([sa, sb, sa]), batch, conf)[0])
    blurred_conf = {**conf, "precision_blur": 1.0}
    blurred = float(keypoint_precision_loss(torch.cat([sa, sb, sa]), batch, blurred_conf)[0])
    assert sharp < 0.05 < blurred
    # the same number as the loss on maps blurred beforehand
    pre = gaussian_blur(torch.cat([sa, sb]), 1.0)
    assert blurred == pytest.approx(float(keypoint_precision_loss(torch.cat([pre, sa]), batch, conf)[0]), abs=1e-6)
