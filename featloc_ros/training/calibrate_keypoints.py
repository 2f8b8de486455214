"""Measure a FeatLoc detector's systematic keypoint shift on training pairs, and store it with the weights.

    python -m featloc_ros.training.calibrate_keypoints --weights models/featloc_v4.pt \\
        --subpixel-temperature 0.1 [--pairs 150] [--seed 777] [--write]

A shift d that is the same in every image's own pixel frame cancels between two images related by a
translation, but not under rotation: with B = H(A), a keypoint at true position p is reported at p - d in
both images, so the residual r = H(pA) - pB of a correct pair is about (I - J) d, J = dH/dp at pA. Over
pairs turned by many angles, d is the least-squares solution of (J - I) d = -r.

The pairs are those of the descriptor training (training corpus + procedural images, training/data.py), each
with a large rotation and no photometric change; a keypoint of A counts when a keypoint of B lies within
``--match-px`` of its exact projection. With ``--write`` the offset and the refinement temperature go into the
weights' architecture file (``<weights>.model.json``, with the measurement under "keypoint_calibration") and the
ONNX model next to the weights is exported again with them. Never reads ../shared/data.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from ..evaluation.homography import project


def local_jacobians(H: np.ndarray, points: np.ndarray, eps: float = 0.5) -> np.ndarray:
    """(N,2) points -> (N,2,2) Jacobians of the homography H at them (central differences)."""
    jx = (project(H, points + [eps, 0.0]) - project(H, points - [eps, 0.0])) / (2 * eps)
    jy = (project(H, points + [0.0, eps]) - project(H, points - [0.0, eps])) / (2 * eps)
    return np.stack([jx, jy], axis=2)


def offset_equations(H: np.ndarray, kpts_a: np.ndarray, kpts_b: np.ndarray, match_px: float
                     ) -> tuple[np.ndarray, np.ndarray]:
    """Rows (J - I) and right-hand sides -r for the keypoints of A with a keypoint of B within match_px of
    their projection: ((2M, 2), (2M,))."""
    if len(kpts_a) == 0 or len(kpts_b) == 0:
        return np.zeros((0, 2)), np.zeros(0)
    proj = project(H, kpts_a)
    d2 = ((proj[:, None, :] - kpts_b[None, :, :]) ** 2).sum(-1)
    nearest = d2.argmin(1)
    ok = d2[np.arange(len(kpts_a)), nearest] < match_px ** 2
    residual = proj[ok] - kpts_b[nearest[ok]]
    rows = local_jacobians(H, kpts_a[ok]) - np.eye(2)
    return rows.reshape(-1, 2), -residual.reshape(-1)


def solve_offset(rows: np.ndarray, rhs: np.ndarray) -> dict:
    """Least-squares offset and its spread: {"offset": [dx, dy], "halves": [[..], [..]], "rms_before", "rms_after",
    "keypoint_pairs"}. The halves (first and second half of the equations) show how stable the estimate is."""
    if len(rhs) < 4:
        raise ValueError(f"keypoint calibration: only {len(rhs) // 2} matched keypoints, cannot estimate an offset")
    d = np.linalg.lstsq(rows, rhs, rcond=None)[0]
    half = len(rhs) // 4 * 2
    halves = [np.linalg.lstsq(r, b, rcond=None)[0] for r, b in ((rows[:half], rhs[:half]), (rows[half:], rhs[half:]))]
    return {"offset": [round(float(v), 4) for v in d], "halves": [[round(float(v), 4) for v in h] for h in halves],
            "rms_before": float(np.sqrt(np.mean(rhs ** 2))), "rms_after": float(np.sqrt(np.mean((rhs - rows @ d) ** 2))),
            "keypoint_pairs": int(len(rhs) // 2)}


def calibrate(weights: Path, subpixel_temperature: float, pairs: int, seed: int, match_px: float = 2.0,
              max_keypoints: int = 512, crop_size: int = 320) -> dict:
    """The offset of the FeatLoc detector of ``weights`` (its architecture file, with this refinement
    temperature and no offset) on ``pairs`` rotated training pairs."""
    from ..features.featloc import FeatLoc
    from .data import PairDataset

    ext = FeatLoc({"weights": str(weights), "max_keypoints": max_keypoints, "resize_max": 0,
                   "model": {"subpixel_temperature": subpixel_temperature, "keypoint_offset": (0.0, 0.0)}})
    data = PairDataset({"crop_size": crop_size, "p_rotation": 1.0, "p_illumination": 0.0}, seed)
    rows, rhs = [], []
    for i in range(pairs):
        s = data[i]
        r, b = offset_equations(s["H_AB"], ext(s["A"]).keypoints.astype(np.float64),
                                ext(s["B"]).keypoints.astype(np.float64), match_px)
        rows.append(r)
        rhs.append(b)
    out = solve_offset(np.concatenate(rows), np.concatenate(rhs))
    sources = data.describe_sources()
    if sources.get("corpus"):  # the folder's name, not this machine's path
        sources["corpus"] = Path(sources["corpus"]).name
    out.update({"subpixel_temperature": subpixel_temperature, "pairs": pairs, "seed": seed, "match_px": match_px,
                "max_keypoints": max_keypoints, "crop_size": crop_size, "data": sources})
    return out


def write_calibration(weights: Path, result: dict) -> dict:
    """Store the refinement temperature and offset in ``<weights>.model.json`` and export the ONNX model next to
    the weights again (verified with onnxruntime). Returns the ONNX check."""
    import torch

    from ..nn.architecture import architecture_path
    from ..nn.featloc_net import ARCHITECTURE_FORMAT, FeatLocNet, load_architecture
    from .descriptor_task import DEFAULT_EXPORT_CONF, DescriptorTask

    arch = {**load_architecture(weights), "subpixel_temperature": result["subpixel_temperature"],
            "keypoint_offset": result["offset"]}
    path = architecture_path(weights)
    path.write_text(json.dumps({"format": ARCHITECTURE_FORMAT, "model": arch, "keypoint_calibration": result},
                               indent=2) + "\n")
    net = FeatLocNet(arch)
    net.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
    # the training export's settings (NMS radius, no threshold baked in: the extractor applies its own)
    return DescriptorTask.export_onnx(net.eval(), Path(weights).with_suffix(".onnx"), DEFAULT_EXPORT_CONF)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--weights", required=True, help="FeatLoc state dict (its .model.json next to it)")
    p.add_argument("--subpixel-temperature", type=float, default=0.1)
    p.add_argument("--pairs", type=int, default=150)
    p.add_argument("--seed", type=int, default=777)
    p.add_argument("--match-px", type=float, default=2.0, help="a keypoint of B this close to the projection counts")
    p.add_argument("--write", action="store_true", help="store the result with the weights and re-export the ONNX")
    args = p.parse_args(argv)
    weights = Path(args.weights)
    if not weights.is_file():
        raise SystemExit(f"calibrate_keypoints: {weights} not found")
    result = calibrate(weights, args.subpixel_temperature, args.pairs, args.seed, args.match_px)
    print(json.dumps({k: result[k] for k in ("offset", "halves", "rms_before", "rms_after", "keypoint_pairs")}))
    if args.write:
        print(json.dumps(write_calibration(weights, result)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
