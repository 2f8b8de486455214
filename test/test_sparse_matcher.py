"""SparseMatcher (featloc_ros.nn.sparse_matcher): shapes, padding, ablation switches, ONNX export, the
ground truth of its training pairs, the training task and the registry matcher. Untrained weights only: no
accuracy claims here (those are in benchmarks/results)."""

import importlib.util

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from featloc_ros.nn.sparse_matcher import SparseMatcher, assignment_loss, export_onnx, mutual_matches
from featloc_ros.training.matcher_data import IGNORE, UNMATCHED, ground_truth_matches

torch.set_num_threads(1)
SIZE = torch.tensor([[640.0, 480.0]])


def _data(n=60, m=50, seed=0, b=1):
    g = torch.Generator().manual_seed(seed)
    k0, k1 = torch.rand(b, n, 2, generator=g) * SIZE, torch.rand(b, m, 2, generator=g) * SIZE
    l0 = F.normalize(torch.randn(b, 4, n, 64, generator=g), dim=-1)
    l1 = F.normalize(torch.randn(b, 4, m, 64, generator=g), dim=-1)
    common = min(n, m) // 2  # image 1 holds noisy copies of the first half of image 0's features
    k1[:, :common] = k0[:, :common] + 3.0
    l1[:, :, :common] = F.normalize(l0[:, :, :common] + 0.05 * torch.randn(b, 4, common, 64, generator=g), dim=-1)
    return {"keypoints0": k0, "keypoints1": k1, "image_size0": SIZE.expand(b, 2), "image_size1": SIZE.expand(b, 2),
            "local0": l0, "local1": l1, "meta0": torch.randn(b, 4, n, 16, generator=g),
            "meta1": torch.randn(b, 4, m, 16, generator=g)}


def _net(**conf):
    torch.manual_seed(0)
    return SparseMatcher({"layers": 2, "dim": 32, "heads": 2, "k_self": 8, "k_cross": 8, **conf}).eval()


@pytest.mark.parametrize("attention", ["sparse", "dense"])
def test_shapes_and_matches_are_mutual(attention):
    out = _net(attention=attention)(_data(b=2))
    assert out["log_assignment"].shape == (2, 60, 50) and out["matches0"].shape == (2, 60)
    assert out["matchability0"].shape == (2, 2, 60) and out["log_unmatched1"].shape == (2, 50)
    m = out["matches0"]
    for b in range(2):
        j = m[b][m[b] >= 0]
        assert len(j) == len(set(j.tolist()))  # one-to-one
    assert torch.all((out["matching_scores0"] > 0) == (m >= 0))


@pytest.mark.parametrize("attention", ["sparse", "dense"])
def test_padding_does_not_change_the_valid_keypoints(attention):
    """Padded (invalid) keypoints get no attention and no matches: the outputs of the valid ones are those of the
    unpadded sets."""
    net = _net(attention=attention)
    d = _data()
    pad = _data(n=75, m=64, seed=3)
    padded = {k: v.clone() for k, v in pad.items()}
    for key, n in (("keypoints0", 60), ("keypoints1", 50)):
        padded[key][:, :n] = d[key]
    for key, n in (("local0", 60), ("local1", 50), ("meta0", 60), ("meta1", 50)):
        padded[key][:, :, :n] = d[key]
    padded["valid0"] = torch.arange(75)[None] < 60
    padded["valid1"] = torch.arange(64)[None] < 50
    with torch.no_grad():
        a, b = net(d), net(padded)
    torch.testing.assert_close(b["log_assignment"][:, :60, :50], a["log_assignment"], rtol=1e-4, atol=1e-4)
    assert torch.equal(b["matches0"][:, :60], a["matches0"]) and (b["matches0"][:, 60:] == -1).all()


def test_every_term_learns_and_the_ablation_switches_remove_them():
    net = _net().train()
    d = _data(b=2)
    gt0 = torch.full((2, 60), UNMATCHED)
    gt0[:, :25] = torch.arange(25)
    gt1 = torch.full((2, 50), UNMATCHED)
    gt1[:, :25] = torch.arange(25)
    losses = assignment_loss(net(d), gt0, gt1)
    (losses["nll"] + losses["matchability"]).backward()
    for name, p in net.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    plain = _net(similarity_bias=False, position_bias=False, matchability=False)
    names = {n for n, _ in plain.named_parameters()}
    assert not any("position_bias" in n or "sim_scale" in n or "beta" in n or ".matchability" in n for n in names)
    assert "matchability0" not in plain(d) and float(assignment_loss(plain(d), gt0, gt1)["matchability"]) == 0.0
    with pytest.raises(ValueError, match="attention"):
        SparseMatcher({"attention": "linear"})


def test_similarity_prior_puts_the_descriptor_evidence_in_the_assignment():
    """With the network's own scores and matchability silenced, the prior alone decides: the mutual argmax is the
    mutual nearest neighbour of the weighted per-kind cosines (the 25 noisy copies are paired); without the prior
    every pair scores the same and nothing is matched. The prior weights get a gradient."""
    d = _data()

    def silenced(**conf):
        net = _net(**conf)
        with torch.no_grad():
            for lin in (net.final_proj, net.final_matchability):
                lin.weight.zero_()
                lin.bias.fill_(10.0 if lin is net.final_matchability else 0.0)
        return net

    net = silenced(similarity_prior=True)
    with torch.no_grad():
        net.prior_weights.fill_(25.0)
        out = net(d)
    assert torch.equal(out["matches0"][0, :25], torch.arange(25))
    assert (silenced()(d)["matches0"] == -1).all()
    net.train()
    gt0, gt1 = _gt(b=1)
    assignment_loss(net(d), gt0, gt1)["nll"].backward()
    assert net.prior_weights.grad is not None and net.prior_weights.grad.abs().sum() > 0


def _gt(b=2, n=60, m=50, common=25):
    gt0 = torch.full((b, n), UNMATCHED)
    gt0[:, :common] = torch.arange(common)
    gt1 = torch.full((b, m), UNMATCHED)
    gt1[:, :common] = torch.arange(common)
    return gt0, gt1


def test_deep_supervision_averages_the_loss_of_every_layer():
    net = _net(layers=3, deep_supervision=True).train()
    out = net(_data(b=2))
    assert len(out["layer_assignments"]) == 2 and out["layers_run"] == 3
    gt0, gt1 = _gt()
    losses = assignment_loss(out, gt0, gt1)
    inter = [float(assignment_loss({"log_assignment": a[0], "log_unmatched0": a[1], "log_unmatched1": a[2]},
                                   gt0, gt1)["nll"].detach()) for a in out["layer_assignments"]]
    assert float(losses["nll"].detach()) == pytest.approx((float(losses["final_nll"].detach()) + sum(inter)) / 3,
                                                          rel=1e-5)
    assert "layer_assignments" not in net.eval()(_data())  # inference: no intermediate assignments
    with torch.no_grad():
        plain = assignment_loss(_net(layers=3).train()(_data(b=2)), gt0, gt1)
    assert float(plain["nll"]) == pytest.approx(float(plain["final_nll"]))


def test_early_exit_stops_when_the_assignment_is_settled_and_needs_deep_supervision():
    with pytest.raises(ValueError, match="deep_supervision"):
        SparseMatcher({"early_exit": True})
    d = _data()
    full = _net(layers=4, deep_supervision=True)
    with torch.no_grad():
        ref = full(d)
        assert ref["layers_run"] == 4
        # every keypoint counts as settled: stop at the first check (after exit_min_layers)
        easy = _net(layers=4, deep_supervision=True, early_exit=True, exit_min_layers=2, exit_confidence=1e-9)(d)
        assert easy["layers_run"] == 2 and easy["log_assignment"].shape == (1, 60, 50)
        # nothing is ever settled (P >= 1 is never reached by this untrained net): every layer runs, same output
        hard = _net(layers=4, deep_supervision=True, early_exit=True, exit_confidence=1.0, exit_ratio=1.0)(d)
    assert hard["layers_run"] == 4
    torch.testing.assert_close(hard["log_assignment"], ref["log_assignment"])
    assert not torch.equal(easy["log_assignment"], ref["log_assignment"])


def test_mutual_matches_threshold():
    logp = torch.log(torch.tensor([[[0.8, 0.01], [0.05, 0.06]]]))
    m, s = mutual_matches(logp, 0.1)
    assert m.tolist() == [[0, -1]] and abs(float(s[0, 0]) - 0.8) < 1e-6
    m, _ = mutual_matches(logp, None)
    assert m.tolist() == [[0, 1]]


def test_ground_truth_from_a_homography():
    H = torch.tensor([[[1.0, 0, 10], [0, 1, 0], [0, 0, 1]]])
    kp0 = torch.tensor([[[20.0, 20], [50, 50], [80, 80], [5, 5]]])
    kp1 = torch.tensor([[[30.5, 20], [63.0, 50], [300, 300], [94, 80]]])  # match, 3 px off (ambiguous), far, 4px
    v0 = torch.ones(1, 4, dtype=torch.bool)
    v1 = torch.tensor([[True, True, True, False]])
    inside = torch.tensor([[True, True, True, False]])  # kp0[3] leaves image 1
    gt0, gt1 = ground_truth_matches(kp0, kp1, v0, v1, H, inside, torch.ones(1, 4, dtype=torch.bool), 2.0, 5.0)
    assert gt0.tolist() == [[0, IGNORE, UNMATCHED, UNMATCHED]]
    assert gt1.tolist() == [[0, IGNORE, UNMATCHED, IGNORE]]
    # near misses (data.near_miss_radius): no true match, a keypoint of the other image within the radius
    from featloc_ros.training.matcher_data import near_misses

    ones = torch.ones(1, 4, dtype=torch.bool)
    p0, p1 = kp0 + torch.tensor([10.0, 0]), kp1 - torch.tensor([10.0, 0])
    near0, near1 = near_misses(kp0, kp1, p0, p1, v0, v1, inside, ones, gt0, gt1, 10.0)
    assert near0.tolist() == [[False, True, False, False]]  # kp0[1]: 3 px off; kp0[3] leaves image 1
    assert near1.tolist() == [[False, True, False, False]]  # kp1[3] is padding
    assert not near_misses(kp0, kp1, p0, p1, v0, v1, inside, ones, gt0, gt1, 2.5)[0].any()
    assert not near_misses(kp0, kp1, p0, p1, v0, v1, inside, ones, gt0, gt1, 0.0)[0].any()


def _onnx_missing():
    for mod in ("onnx", "onnxruntime", "onnxscript"):
        if importlib.util.find_spec(mod) is None:
            return f"{mod} is not installed"
    return None


def test_onnx_export_with_dynamic_keypoint_counts(tmp_path):
    reason = _onnx_missing()
    if reason:
        pytest.skip(reason)
    res = export_onnx(_net(), tmp_path / "m.onnx")
    assert res["matches"] > 20 and res["same_matches"] == 1.0 and res["max_abs_diff"] < 1e-4, res
    res = export_onnx(_net(similarity_prior=True), tmp_path / "prior.onnx")
    assert res["matches"] > 20 and res["same_matches"] == 1.0 and res["max_abs_diff"] < 1e-4, res
    # with early exit on, the graph runs every layer (data-dependent depth does not export)
    res = export_onnx(_net(deep_supervision=True, early_exit=True, exit_min_layers=1, exit_confidence=1e-9),
                      tmp_path / "exit.onnx")
    assert res["same_matches"] == 1.0 and res["max_abs_diff"] < 1e-4, res


def _features(kpts, local, meta, size=(640, 480)):
    from featloc_ros.features.base import Features

    n = kpts.shape[0]
    desc = np.concatenate([local.transpose(1, 0, 2).reshape(n, -1), meta.transpose(1, 0, 2).reshape(n, -1)], 1)
    return Features(kpts.astype(np.float32), np.ones(n, np.float32), desc.astype(np.float32), size)


def test_registry_matcher_runs_the_weights_pads_small_sets_and_onnx_agrees(tmp_path):
    from featloc_ros.matching import create_matcher
    from featloc_ros.nn.sparse_matcher import save_architecture

    net = _net()
    weights = tmp_path / "m.pt"
    torch.save(net.state_dict(), weights)
    with pytest.raises(RuntimeError):  # no architecture file: default architecture, the state dict does not fit
        create_matcher({"name": "sparse_attention", "weights": str(weights)})
    save_architecture(weights, {k: net.conf[k] for k in ("layers", "dim", "heads", "k_self", "k_cross")})
    d = _data()
    f0 = _features(d["keypoints0"][0].numpy(), d["local0"][0].numpy(), d["meta0"][0].numpy())
    f1 = _features(d["keypoints1"][0].numpy(), d["local1"][0].numpy(), d["meta1"][0].numpy())
    matcher = create_matcher({"name": "sparse_attention", "weights": str(weights), "filter_threshold": 0.0})
    m = matcher(f0, f1)
    with torch.no_grad():
        want = net(d)["log_assignment"]
    ref, _ = mutual_matches(want, 0.0)
    assert len(m) == int((ref >= 0).sum()) > 0 and all(int(ref[0, i]) == j for i, j in m.indices)
    few = matcher(f0.subset(np.arange(5)), f1.subset(np.arange(6)))  # fewer than k = 8: padded, dummies dropped
    assert few.indices.shape[1] == 2 and (few.indices[:, 0] < 5).all() and (few.indices[:, 1] < 6).all()
    if _onnx_missing() is None:
        export_onnx(net, weights.with_suffix(".onnx"))
        ort = create_matcher({"name": "sparse_attention", "weights": str(weights), "filter_threshold": 0.0,
                              "backend": "onnxruntime"})
        assert np.array_equal(ort(f0, f1).indices, m.indices)


def test_matcher_training_task_trains_resumes_and_exports(tmp_path):
    """task: matcher on the smoke config: FeatLoc features (an untrained FeatLocNet here) of procedural pairs,
    ground truth from the homography, NLL + matchability losses; resumable like the descriptor task."""
    from pathlib import Path

    from featloc_ros.nn.featloc_net import FeatLocNet
    from featloc_ros.nn.sparse_matcher import load_architecture
    from featloc_ros.training.train import load_config, train

    torch.manual_seed(0)
    torch.save(FeatLocNet().state_dict(), tmp_path / "feat.pt")
    smoke = Path(__file__).resolve().parents[1] / "featloc_ros" / "training" / "configs" / "smoke_matcher.yaml"
    conf = load_config(smoke, [f"data.features={tmp_path / 'feat.pt'}"])
    full = train(conf, tmp_path / "full", log=lambda *_: None)
    assert full["completed"] and full["task"] == "matcher"
    assert full["final_losses"]["gt_match_fraction"] > 0.05  # the pairs do hold correspondences
    assert np.isfinite(full["final_losses"]["nll"]) and (tmp_path / "full" / "loss_curves.png").is_file()
    assert load_architecture(tmp_path / "full" / "model.pt")["k_self"] == 8
    train(conf, tmp_path / "part", max_steps=2, log=lambda *_: None)
    resumed = train(conf, tmp_path / "part", resume=True, log=lambda *_: None)
    assert resumed["completed"]
    a = torch.load(tmp_path / "full" / "model.pt", weights_only=True)
    b = torch.load(tmp_path / "part" / "model.pt", weights_only=True)
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=1e-6)
    with pytest.raises(ValueError, match="max_keypoints"):
        train(load_config(smoke, ["data.max_keypoints=4", f"data.features={tmp_path / 'feat.pt'}"]), tmp_path / "bad")


def test_similarity_on_mined_pairs_equals_the_dense_similarity():
    from featloc_ros.nn.featloc_net import selected_distance_matrix
    from featloc_ros.nn.sparse_matcher import kind_similarities, selected_similarity, selected_similarity_at

    d = _data(b=2)
    dense = selected_similarity(d["local0"], d["local1"], d["meta0"], d["meta1"])
    ref = 1 - 0.5 * selected_distance_matrix(d["local0"][0], d["local1"][0], d["meta0"][0], d["meta1"][0])
    torch.testing.assert_close(dense[0], ref, rtol=1e-4, atol=1e-4)  # the descriptor model's distance
    idx = torch.randint(0, 50, (2, 60, 7))
    at = selected_similarity_at(*kind_similarities(d["local0"], d["local1"], d["meta0"], d["meta1"]), idx)
    torch.testing.assert_close(at, torch.gather(dense, 2, idx), rtol=1e-5, atol=1e-5)
    # image 1 -> image 0 from the same (B,S,N,M) matrices (the index is transposed, not the matrices)
    idx10 = torch.randint(0, 60, (2, 50, 5))
    back = selected_similarity_at(*kind_similarities(d["local0"], d["local1"], d["meta0"], d["meta1"]), idx10,
                                  reverse=True)
    torch.testing.assert_close(back, torch.gather(dense.transpose(1, 2), 2, idx10), rtol=1e-5, atol=1e-5)


def test_registry_weights_by_shipped_file_name():
    """A bare file name in ``weights`` is looked up among the shipped models (not relative to the working
    directory); a missing one is named in the error."""
    from featloc_ros.matching import create_matcher

    with pytest.raises(FileNotFoundError, match="featloc_matcher_v9.pt"):
        create_matcher({"name": "sparse_attention", "weights": "featloc_matcher_v9.pt"})


def test_every_registry_matcher_has_its_shipped_files():
    """Each sparse-attention entry of the matcher registry names shipped weights with their architecture file and
    ONNX export next to them, and builds (PyTorch entries; the ONNX ones when onnxruntime is installed)."""
    from featloc_ros.matching import confs, create_matcher
    from featloc_ros.features.featloc import resolve_model_file
    from featloc_ros.matching.sparse_attention import DEFAULT_WEIGHTS

    entries = {name: c for name, c in confs.items() if c["name"] == "sparse_attention"}
    assert "featloc_sparse_small_v11" in entries and "featloc_sparse_small_v11_onnx" in entries
    for name, conf in entries.items():
        weights = resolve_model_file(None, conf.get("weights", DEFAULT_WEIGHTS))
        for suffix in (".model.json", ".onnx"):
            assert weights.with_suffix(suffix).is_file(), (name, suffix)
        if conf.get("backend") != "onnxruntime" or not _onnx_missing():
            assert create_matcher(name).weights_path == weights


def test_benchmark_method_for_experiment_weights(tmp_path):
    """benchmarks/methods.py: "featloc+sparse@<weights>[:<threshold>]" runs an experiment's matcher weights (e.g.
    under runs/), named after the file, and is skipped with the reason when the file is missing."""
    from benchmarks.methods import TRAINED_MATCHER_PREFIX, resolve_methods
    from featloc_ros.features.featloc import resolve_model_file

    weights = resolve_model_file(None, "featloc_matcher_small_v1.pt")
    methods, skipped = resolve_methods([TRAINED_MATCHER_PREFIX + str(weights),
                                        TRAINED_MATCHER_PREFIX + str(tmp_path / "missing.pt")])
    assert [m.name for m in methods] == ["featloc+featloc_matcher_small_v1"]
    assert methods[0].matcher_name == {"name": "sparse_attention", "weights": str(weights.resolve())}
    assert "missing.pt not found" in skipped[TRAINED_MATCHER_PREFIX + str(tmp_path / "missing.pt")]
    methods, _ = resolve_methods([TRAINED_MATCHER_PREFIX + str(weights) + ":0.05"])  # another match threshold
    assert [m.name for m in methods] == ["featloc+featloc_matcher_small_v1@0.05"]
    assert methods[0].matcher_name["filter_threshold"] == 0.05
