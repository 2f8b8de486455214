"""Fox localization benchmark: map from 40 frames (COLMAP poses), localize the other 10.

    python benchmarks/fox_localization.py [--features rootsift rootsift_fast]

Writes benchmarks/results/fox_localization.{json,md}. Needs ../shared/data/instant_ngp_fox.
"""

from __future__ import annotations

import argparse
import sys
import tempfile

from common import markdown_table, write_results  # noqa: E402  (adds the repo root to sys.path)

from featloc_ros.evaluation.datasets import shared_data_dir
from featloc_ros.evaluation.fox import evaluate_fox


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--features", nargs="+", default=["rootsift", "rootsift_fast"])
    p.add_argument("--matcher", default="mnn_ratio")
    args = p.parse_args(argv)
    root = shared_data_dir() / "instant_ngp_fox"
    if not root.exists():
        print(f"skipped: {root} not available", file=sys.stderr)
        return 0
    runs = []
    with tempfile.TemporaryDirectory() as work:
        for feat in args.features:
            s = evaluate_fox(root, work, features=feat, matcher=args.matcher)
            runs.append(s)
            print(f"{feat}: {s['num_localized']}/{s['num_frames']} localized, median "
                  f"{s['median_position_error_pct_extent']:.3f}% of extent, {s['median_rotation_error_deg']:.3f} deg")
    rows = [[r["features"], r["matcher"], f"{r['num_localized']}/{r['num_frames']}",
             r["median_position_error"], r["median_position_error_pct_extent"], r["median_rotation_error_deg"],
             *r["recall"].values(), r["median_latency_s"] * 1000, r["map_build_s"]] for r in runs]
    headers = ["features", "matcher", "localized", "median pos. err. (scene units)", "median pos. err. (% extent)",
               "median rot. err. (deg)", *[f"recall @{k} (pos. % extent / rot.)" for k in runs[0]["recall"]],
               "median latency (ms)", "map build (s)"]
    md = ("# Fox localization (instant-ngp fox, 1080x1920, map from 40 frames, 10 held out)\n\n"
          "Ground truth: COLMAP poses from transforms.json (pseudo-GT, not metric; scene extent "
          f"{runs[0]['scene_extent']:.3f} units = camera-centre bounding-box diagonal).\n\n"
          + markdown_table(headers, rows))
    jpath, mpath = write_results("fox_localization", {"runs": runs}, md)
    print(f"wrote {jpath} and {mpath}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
