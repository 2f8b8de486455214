"""Shift equivariance of the keypoints: a photo (scikit-image astronaut, not in the training corpus) against
copies of itself translated by whole and sub-stride pixel amounts and turned by 90 degrees (exact ground truth).
A detector whose keypoints follow the image lands the matches of a 1-pixel shift within 1 px, as for a 16-pixel
shift; a network whose strided layers alias does not. Writes results/featloc_shift.{json,md}.

    python benchmarks/shift_benchmark.py [--methods featloc+isnn sift+mnn]
"""

from __future__ import annotations

import argparse
import sys

import cv2
import numpy as np

from common import markdown_table, write_results  # noqa: E402
from methods import resolve_methods

from featloc_ros.training.data import rotation_about_center

WARPS = {
    "shift (16, 16) px": np.array([[1, 0, 16.0], [0, 1, 16.0], [0, 0, 1]]),
    "shift (1, 0) px": np.array([[1, 0, 1.0], [0, 1, 0.0], [0, 0, 1]]),
    "shift (0.5, 0) px": np.array([[1, 0, 0.5], [0, 1, 0.0], [0, 0, 1]]),
    "shift (7, 5) px": np.array([[1, 0, 7.0], [0, 1, 5.0], [0, 0, 1]]),
    "turn 90 deg": rotation_about_center(90.0, 512),
}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--methods", nargs="+", default=["featloc+isnn", "sift+mnn"])
    p.add_argument("--max-keypoints", type=int, default=1024)
    args = p.parse_args(argv)
    from skimage.data import astronaut

    img0 = astronaut()
    methods, skipped = resolve_methods(args.methods)
    pairs = [(img0, cv2.warpPerspective(img0, H, (512, 512), flags=cv2.INTER_LINEAR)) for H in WARPS.values()]
    results, rows = {}, []
    for m in methods:
        outs = m.match_pairs(pairs, args.max_keypoints)
        for (name, H), o in zip(WARPS.items(), outs):
            idx = o["matches"]
            pts = np.c_[o["keypoints0"][idx[:, 0]], np.ones(len(idx))] @ H.T
            err = np.linalg.norm(o["keypoints1"][idx[:, 1]] - pts[:, :2] / pts[:, 2:], axis=1)
            r = {"matches": int(len(idx)), "within_1px": int((err < 1).sum()), "within_3px": int((err < 3).sum()),
                 "median_error_of_3px_matches": float(np.median(err[err < 3])) if (err < 3).any() else None}
            results.setdefault(m.name, {})[name] = r
            rows.append([m.name, name, r["matches"], r["within_1px"], r["within_3px"], r["median_error_of_3px_matches"]])
            print(m.name, name, r)
    md = ["# Shift equivariance of the keypoints\n",
          f"scikit-image astronaut (512x512) against warped copies of itself, {args.max_keypoints} keypoints, the "
          "method's matcher; errors against the exact warp.\n",
          markdown_table(["method", "warp", "matches", "within 1 px", "within 3 px", "median error (< 3 px)"], rows)]
    if skipped:
        md += ["\n## Not run\n"] + [f"- {k}: {v}" for k, v in skipped.items()]
    write_results("featloc_shift", {"settings": vars(args), "results": results, "skipped": skipped}, "\n".join(md))
    return 0


if __name__ == "__main__":
    sys.exit(main())
