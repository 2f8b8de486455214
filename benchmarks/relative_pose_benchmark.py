"""Relative pose benchmark on the ScanNet sample pairs of SuperGlue (15 indoor pairs, 1296x968
resized to 640x480 as in SuperGlue's evaluation): pose AUC at 5/10/20 degrees (essential matrix,
RANSAC at 1 px).

    python benchmarks/relative_pose_benchmark.py [--methods ...] [--max-keypoints 2048]

Writes results/relative_pose.{json,md}.
"""

from __future__ import annotations

import argparse
import sys

import cv2
import numpy as np

from common import markdown_table, write_results  # noqa: E402
from methods import DEFAULT_METHODS, resolve_methods

from featloc_ros.evaluation.datasets import shared_data_dir
from featloc_ros.evaluation.relative_pose import POSE_THRESHOLDS, evaluate_pose_pair, scannet_pairs, summarize_pose


def resize_pair(pair, size=(640, 480)):
    """Resize both images to ``size`` and scale the intrinsics (pixel-centre convention)."""
    for i in (0, 1):
        img = getattr(pair, f"image{i}")
        h, w = img.shape[:2]
        sx, sy = size[0] / w, size[1] / h
        S = np.array([[sx, 0, 0.5 * sx - 0.5], [0, sy, 0.5 * sy - 0.5], [0, 0, 1.0]])
        setattr(pair, f"image{i}", cv2.resize(img, size, interpolation=cv2.INTER_AREA))
        setattr(pair, f"K{i}", S @ getattr(pair, f"K{i}"))
    return pair


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--methods", nargs="+", default=DEFAULT_METHODS)
    p.add_argument("--max-keypoints", type=int, default=2048)
    p.add_argument("--quick", action="store_true", help="5 pairs")
    args = p.parse_args(argv)
    root = shared_data_dir() / "superglue_assets"
    if not root.exists():
        print(f"skipped: {root} not available")
        return 0
    pairs = [resize_pair(pr) for pr in scannet_pairs(root)]
    if args.quick:
        pairs = pairs[:5]
    methods, skipped = resolve_methods(args.methods)
    results, per_pair = {}, {}
    for method in methods:
        outs = method.match_pairs([(pr.image0, pr.image1) for pr in pairs], args.max_keypoints)
        evals = [evaluate_pose_pair(pr, o["keypoints0"], o["keypoints1"], o["matches"]) for pr, o in zip(pairs, outs)]
        results[method.name], per_pair[method.name] = summarize_pose(evals), evals
        s = results[method.name]
        print(f"{method.name:<20} AUC@5/10/20 {s['auc'][5]:.3f} {s['auc'][10]:.3f} {s['auc'][20]:.3f} "
              f"matches {s['mean_num_matches']:.0f}")
    rows = [[m, *[s["auc"][t] for t in POSE_THRESHOLDS], s["mean_num_matches"]] for m, s in results.items()]
    md = [f"# Relative pose: ScanNet sample pairs (SuperGlue assets, {len(pairs)} pairs, 640x480)\n",
          f"{args.max_keypoints} keypoints; essential matrix with OpenCV RANSAC (1 px); error = max(rotation, "
          "translation direction) in degrees.\n",
          markdown_table(["method", "AUC@5°", "AUC@10°", "AUC@20°", "matches"], rows)]
    if skipped:
        md += ["\n## Not run\n"] + [f"- {k}: {v}" for k, v in skipped.items()]
    suffix = "_quick" if args.quick else ""
    write_results(f"relative_pose{suffix}", {"settings": vars(args), "results": results, "per_pair": per_pair,
                                             "skipped_methods": skipped}, "\n".join(md))
    return 0


if __name__ == "__main__":
    sys.exit(main())
