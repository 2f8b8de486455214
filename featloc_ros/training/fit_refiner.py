"""Fit the keypoint refiner of a FeatLoc detector on training pairs, and write the refined model.

    python -m featloc_ros.training.fit_refiner --weights models/featloc_v4.pt \\
        --out runs/featloc_v10/featloc_v10.pt [--pairs 400] [--held-out-pairs 150] [--seed 1234] [--steps 2000]

The refiner (FeatLocNet conf ``keypoint_refiner``, nn/featloc_net.KeypointRefiner) moves each keypoint by an
offset predicted from its neighbourhood, sampled in the keypoint's frame. The network itself is frozen: only
the refiner's MLP is fitted. Data: the photometric training pairs of calibrate_keypoints (training corpus and
procedural images; a third each without photometric change / illumination / night, half rotated; 320 px crops,
512 keypoints). A keypoint of A and the keypoint of B nearest to its projection, within ``--match-px``, form a
pair; with pA, pB the keypoints, J the Jacobian of H_AB at pA and dA, dB the refiner's offsets, the loss is the
Huber norm of H(pA + dA) - (pB + dB) ~ (H(pA) - pB) + J dA - dB. A constant offset cannot lower it (it cancels up
to I - J); the refiner must move both keypoints to the same point of the scene. Held-out pairs (seed + 1) give
the residuals before and after. Writes ``--out`` (the state dict: the base weights and the refiner), its
architecture file (the base's, with ``keypoint_refiner`` and the fit record under ``refiner_fit``), the ONNX
model next to it (verified with onnxruntime) and ``<out>.fit.json``. Never reads ../shared/data.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..evaluation.homography import project
from .calibrate_keypoints import PHOTOMETRIC_KINDS, local_jacobians, nearest_in_b, photometric_pairs

DEFAULT_REFINER = {"grid": 9, "spacing": 1.0, "hidden": 64}


def refined_network(weights: Path, refiner_conf: dict):
    """The FeatLocNet of ``weights`` (its architecture file) with a fresh keypoint refiner, in eval mode."""
    from ..nn.featloc_net import FeatLocNet, load_architecture

    net = FeatLocNet({**load_architecture(weights), "keypoint_refiner": dict(refiner_conf)})
    result = net.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True), strict=False)
    extra = [k for k in result.missing_keys if not k.startswith("keypoint_refiner.")] + list(result.unexpected_keys)
    if extra:
        raise ValueError(f"fit_refiner: {weights} does not fit the network: {extra[:5]}")
    return net.eval()


def frame_matrices(frame: np.ndarray) -> np.ndarray:
    """(N,2) (cos, sin) -> (N,2,2) matrices taking (u, v) in the keypoint frame to pixels."""
    c, s = frame[:, 0], frame[:, 1]
    return np.stack([np.stack([c, -s], -1), np.stack([s, c], -1)], 1)


def detections(net, image: np.ndarray, max_keypoints: int) -> dict[str, np.ndarray]:
    """The refiner's view of one (H,W) uint8 image: keypoints (N,2) before the refinement, frames (N,2) and the
    refiner inputs (N,F), for the valid keypoints above the network's detection threshold."""
    x = torch.from_numpy(image.astype(np.float32) / 255.0)[None, None]
    with torch.inference_mode():
        f = net._features(x)
        d = net.detect_for_refiner(f, torch.sigmoid(f["logits"]), min(max_keypoints, x.shape[2] * x.shape[3]))
        keep = d["valid"][0] & (d["scores"][0] >= net.conf["detection_threshold"])
        kpts, frame = d["keypoints"][:, keep], d["frame"][:, keep]
        inputs = net.keypoint_refiner.inputs(d["intensity"], d["scores_map"], kpts, frame)
    return {"keypoints": kpts[0].double().numpy(), "frame": frame[0].double().numpy(), "inputs": inputs[0].numpy()}


def collect_pairs(net, pairs: int, seed: int, max_keypoints: int = 512, crop_size: int = 320,
                  match_px: float = 1.5) -> dict[str, np.ndarray]:
    """Keypoint pairs of the first ``pairs`` photometric training pairs (seed ``seed``): inputs_a, inputs_b (M,F),
    ja (M,2,2) = J R_A (frame offsets of A to pixels of B), rb (M,2,2) = R_B, residual (M,2) = H(pA) - pB, kind (M,)."""
    data = photometric_pairs(crop_size, seed)
    out: dict[str, list] = {k: [] for k in ("inputs_a", "inputs_b", "ja", "rb", "residual", "kind")}
    for i in range(pairs):
        s = data[i]
        H = s["H_AB"].astype(np.float64)
        a, b = detections(net, s["A"], max_keypoints), detections(net, s["B"], max_keypoints)
        if len(a["keypoints"]) == 0 or len(b["keypoints"]) == 0:
            continue
        ia, ib, dist = nearest_in_b(H, a["keypoints"], b["keypoints"], s["valid_B"])
        ia, ib = ia[dist < match_px], ib[dist < match_px]
        out["inputs_a"].append(a["inputs"][ia])
        out["inputs_b"].append(b["inputs"][ib])
        out["ja"].append(local_jacobians(H, a["keypoints"][ia]) @ frame_matrices(a["frame"][ia]))
        out["rb"].append(frame_matrices(b["frame"][ib]))
        out["residual"].append(project(H, a["keypoints"][ia]) - b["keypoints"][ib])
        out["kind"].append(np.full(len(ia), s["photometric"]))
    if not out["residual"]:
        raise ValueError(f"fit_refiner: no repeated keypoints in {pairs} training pairs")
    return {k: np.concatenate(v) for k, v in out.items()}


def refined_residuals(refiner, data: dict[str, torch.Tensor], idx=slice(None)) -> torch.Tensor:
    """(M,2) H(pA + dA) - (pB + dB) to first order, for the pairs ``idx`` of ``as_tensors(collect_pairs(...))``."""
    da = refiner.frame_offsets(data["inputs_a"][idx])[..., None]
    db = refiner.frame_offsets(data["inputs_b"][idx])[..., None]
    return data["residual"][idx] + (data["ja"][idx] @ da)[..., 0] - (data["rb"][idx] @ db)[..., 0]


def as_tensors(data: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
    return {k: torch.from_numpy(v.astype(np.float32)) for k, v in data.items() if k != "kind"}


def fit(refiner, data: dict[str, np.ndarray], steps: int, seed: int, lr: float = 1e-3, batch: int = 4096,
        huber_px: float = 0.5) -> list[float]:
    """Adam on the Huber loss of ``refined_residuals`` over random batches; returns the loss every 100 steps."""
    t = as_tensors(data)
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(refiner.mlp.parameters(), lr)
    refiner.train()
    curve = []
    for step in range(steps):
        idx = torch.randint(0, len(t["residual"]), (batch,), generator=gen)
        e = refined_residuals(refiner, t, idx)
        loss = F.huber_loss(e, torch.zeros_like(e), delta=huber_px)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % 100 == 99:
            curve.append(loss.item())
    refiner.eval()
    return curve


def residual_summary(data: dict[str, np.ndarray], refiner=None) -> dict:
    """Per photometric kind and "all": pairs, median and rms length of the residuals (after the refiner when
    given, to first order), fraction within 0.5 px."""
    r = data["residual"]
    if refiner is not None:
        with torch.no_grad():
            r = refined_residuals(refiner, as_tensors(data)).double().numpy()
    d = np.linalg.norm(r, axis=1)
    out = {}
    for kind in (*PHOTOMETRIC_KINDS, "all"):
        sel = d if kind == "all" else d[data["kind"] == kind]
        out[kind] = {"pairs": int(len(sel)), "median_px": float(np.median(sel)) if len(sel) else float("nan"),
                     "rms_px": float(np.sqrt((sel ** 2).mean())) if len(sel) else float("nan"),
                     "within_0.5px": float((sel < 0.5).mean()) if len(sel) else 0.0}
    return out


def write_model(net, weights: Path, out: Path, record: dict) -> dict:
    """Save the refined state dict at ``out`` with the base's architecture file plus ``keypoint_refiner`` and the
    fit record, and export the ONNX model next to it (verified); returns the ONNX check."""
    from ..nn.architecture import architecture_path
    from ..nn.featloc_net import ARCHITECTURE_FORMAT
    from .descriptor_task import DEFAULT_EXPORT_CONF, DescriptorTask

    out.parent.mkdir(parents=True, exist_ok=True)
    torch.save(net.state_dict(), out)
    base = architecture_path(weights)
    data = json.loads(base.read_text()) if base.is_file() else {"format": ARCHITECTURE_FORMAT, "model": {}}
    data["model"]["keypoint_refiner"] = net.conf["keypoint_refiner"]
    data["refiner_fit"] = record
    architecture_path(out).write_text(json.dumps(data, indent=2) + "\n")
    return DescriptorTask.export_onnx(net, out.with_suffix(".onnx"), DEFAULT_EXPORT_CONF)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--weights", required=True, help="FeatLoc state dict (its .model.json next to it)")
    p.add_argument("--out", required=True, help="the refined state dict to write (e.g. runs/featloc_v10/featloc_v10.pt)")
    p.add_argument("--pairs", type=int, default=400, help="training pairs for the fit")
    p.add_argument("--held-out-pairs", type=int, default=150, help="pairs (seed + 1) for the residuals before/after")
    p.add_argument("--seed", type=int, default=1234)
    p.add_argument("--steps", type=int, default=2000)
    p.add_argument("--grid", type=int, default=DEFAULT_REFINER["grid"])
    p.add_argument("--spacing", type=float, default=DEFAULT_REFINER["spacing"])
    p.add_argument("--hidden", type=int, default=DEFAULT_REFINER["hidden"])
    p.add_argument("--match-px", type=float, default=1.5, help="a keypoint of B this close to the projection pairs")
    args = p.parse_args(argv)
    weights, out = Path(args.weights), Path(args.out)
    if not weights.is_file():
        raise SystemExit(f"fit_refiner: {weights} not found")
    if out.resolve() == weights.resolve():
        raise SystemExit("fit_refiner: --out must differ from --weights (the base weights stay as they are)")
    torch.manual_seed(args.seed)
    conf = {"grid": args.grid, "spacing": args.spacing, "hidden": args.hidden}
    net = refined_network(weights, conf)
    t0 = time.time()
    train = collect_pairs(net, args.pairs, args.seed, match_px=args.match_px)
    held = collect_pairs(net, args.held_out_pairs, args.seed + 1, match_px=args.match_px)
    print(f"fit_refiner: {len(train['residual'])} training / {len(held['residual'])} held-out keypoint pairs "
          f"({time.time() - t0:.0f} s)", flush=True)
    curve = fit(net.keypoint_refiner, train, args.steps, args.seed)
    before, after = residual_summary(held), residual_summary(held, net.keypoint_refiner)
    for kind in (*PHOTOMETRIC_KINDS, "all"):
        print(f"  {kind:<13} median {before[kind]['median_px']:.3f} -> {after[kind]['median_px']:.3f} px, rms "
              f"{before[kind]['rms_px']:.3f} -> {after[kind]['rms_px']:.3f} px", flush=True)
    record = {"base_weights": weights.name, "refiner": conf, "pairs": args.pairs, "held_out_pairs": args.held_out_pairs,
              "seed": args.seed, "steps": args.steps, "match_px": args.match_px,
              "training_keypoint_pairs": int(len(train["residual"])), "held_out_before": before,
              "held_out_after": after, "loss_every_100_steps": curve, "seconds": round(time.time() - t0, 1),
              "command": "python -m featloc_ros.training.fit_refiner " + " ".join(argv if argv is not None
                                                                                  else sys.argv[1:])}
    check = write_model(net, weights, out, record)
    out.with_suffix(".fit.json").write_text(json.dumps({**record, "onnx_check": check}, indent=2) + "\n")
    print(f"fit_refiner: wrote {out} (+ .model.json, .onnx, .fit.json); ONNX check {check}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
