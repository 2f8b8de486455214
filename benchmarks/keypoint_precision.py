"""How precisely the keypoints of correct matches land: residuals against the ground-truth homography.

    python benchmarks/keypoint_precision.py [--methods featloc+isnn sift+mnn] [--max-keypoints 2048]
                                            [--warps-per-photo 1] [--sets ...] [--name keypoint_precision]

For every match within --within px of the projection of its first keypoint (the correct matches of the
homography benchmark, on its synthetic sets), the residual r = kp1 - H kp0: its mean vector (a systematic shift
would show there), rms and median length, and the fraction within 1 px. A detector whose keypoints are noisier
loses homography AUC and MMA@1 even when it matches as many points as another. Writes
results/<name>.{json,md}.
"""

from __future__ import annotations

import argparse
import sys

import numpy as np

from common import markdown_table, write_results  # noqa: E402
from homography_benchmark import build_sets
from methods import resolve_methods

from featloc_ros.evaluation.homography import SYNTHETIC_SETS, match_residuals


def residuals(pair, out: dict, within: float) -> np.ndarray:
    """(M, 2) residuals kp1 - H kp0 of the pair's matches closer than ``within`` px."""
    r = match_residuals(pair, out["keypoints0"], out["keypoints1"], out["matches"])[3]
    return r[np.linalg.norm(r, axis=1) < within]


def summarize(r: np.ndarray) -> dict:
    d = np.linalg.norm(r, axis=1)
    return {"matches": int(len(r)), "mean_dx": float(r[:, 0].mean()), "mean_dy": float(r[:, 1].mean()),
            "rms_px": float(np.sqrt((d ** 2).mean())), "median_px": float(np.median(d)),
            "within_1px": float(np.mean(d < 1))}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--methods", nargs="+", default=["featloc+isnn", "sift+mnn"])
    p.add_argument("--max-keypoints", type=int, default=2048)
    p.add_argument("--warps-per-photo", type=int, default=1)
    p.add_argument("--sets", nargs="+", default=list(SYNTHETIC_SETS), choices=list(SYNTHETIC_SETS))
    p.add_argument("--within", type=float, default=3.0, help="matches closer than this (px) count as correct")
    p.add_argument("--name", default="keypoint_precision")
    args = p.parse_args(argv)
    sets, missing = build_sets(False, args.warps_per_photo, args.sets)
    methods, skipped = resolve_methods(args.methods)
    results: dict = {}
    for set_name, pairs in sets.items():
        results[set_name] = {}
        for method in methods:
            outs = method.match_pairs([(pr.image0, pr.image1) for pr in pairs], args.max_keypoints)
            r = np.concatenate([residuals(pr, o, args.within) for pr, o in zip(pairs, outs)] + [np.zeros((0, 2))])
            s = results[set_name][method.name] = summarize(r) if len(r) else {"matches": 0}
            print(f"{set_name:<24} {method.name:<20} " + " ".join(f"{k} {v:.3f}" for k, v in s.items()), flush=True)
    md = [f"# Keypoint precision: {args.name}\n",
          f"Residuals kp1 − H·kp0 of the matches within {args.within:g} px, {args.max_keypoints} keypoints, "
          f"synthetic sets with {args.warps_per_photo} warp(s) per photo (homography_benchmark.py's pairs).\n"]
    for set_name, by_method in results.items():
        md.append(f"\n## {set_name} ({len(sets[set_name])} pairs)\n")
        md.append(markdown_table(["method", "matches", "mean dx", "mean dy", "rms px", "median px", "within 1 px"],
                                 [[m, s["matches"], s.get("mean_dx"), s.get("mean_dy"), s.get("rms_px"),
                                   s.get("median_px"), s.get("within_1px")] for m, s in by_method.items()]))
    if skipped or missing:
        md.append("\n## Not run\n")
        md += [f"- method {k}: {v}" for k, v in skipped.items()] + [f"- set {k}: {v}" for k, v in missing.items()]
    write_results(args.name, {"settings": vars(args), "results": results, "skipped_methods": skipped,
                              "missing_sets": missing}, "\n".join(md) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
