"""Which wrong matches cost homography accuracy: the matches of each method binned by their ground-truth error,
and the homography AUC@3 after removing, by oracle, the matches of one error range (near misses 3-10 px, far
outliers > 10 px, every match > 3 px, or also the imprecise correct ones > 1.5 px).

    python benchmarks/outlier_analysis.py [--methods featloc+isnn featloc+sparse_small] [--max-keypoints 1024]

Same sets, estimator (OpenCV MAGSAC, 3 px) and corner-error AUC as homography_benchmark.py. A method whose
outliers are mostly far is hardly hurt by them; near misses sit inside MAGSAC's scale and bend the estimate.
Writes results/<--name>.{json,md} (default outlier_analysis).
"""

from __future__ import annotations

import argparse
import sys

import numpy as np

from common import markdown_table, write_results  # noqa: E402
from homography_benchmark import build_sets
from methods import RegistryMethod, resolve_methods

from featloc_ros.evaluation.homography import auc, corner_error, estimate_homography, project

BINS = (0.0, 1.0, 2.0, 3.0, 5.0, 10.0, 30.0, np.inf)
BIN_NAMES = ("0-1", "1-2", "2-3", "3-5", "5-10", "10-30", ">30")
# oracle removals: name -> keep(err)
REMOVALS = {
    "none": lambda e: np.ones(len(e), bool),
    "far (>10 px)": lambda e: e <= 10,
    "near misses (3-10 px)": lambda e: (e <= 3) | (e > 10),
    "all wrong (>3 px)": lambda e: e <= 3,
    "all >1.5 px": lambda e: e <= 1.5,
}


def homography_error(pair, p0: np.ndarray, p1: np.ndarray) -> float:
    h, w = pair.image0.shape[:2]
    return corner_error(estimate_homography(p0, p1), pair.H_0to1, w, h)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--methods", nargs="+", default=["featloc+isnn", "featloc+sparse_small"])
    p.add_argument("--max-keypoints", type=int, default=1024)
    p.add_argument("--name", default="outlier_analysis", help="results file name (e.g. for an experiment)")
    args = p.parse_args(argv)
    sets, missing = build_sets(False)
    methods, skipped = resolve_methods(args.methods)
    shared: dict = {}  # no times reported here: methods with the same extractor share features
    for method in methods:
        if isinstance(method, RegistryMethod):
            method.feature_cache = shared
    if not sets or not methods:
        print(f"skipped: no sets ({missing}) or no methods ({skipped})")
        return 0
    results = {}
    for set_name, pairs in sets.items():
        for method in methods:
            outs = method.match_pairs([(pr.image0, pr.image1) for pr in pairs], args.max_keypoints)
            errors, per_removal = [], {k: [] for k in REMOVALS}
            for pr, o in zip(pairs, outs):
                m = np.asarray(o["matches"], np.int64).reshape(-1, 2)
                p0 = np.asarray(o["keypoints0"], np.float64)[m[:, 0]]
                p1 = np.asarray(o["keypoints1"], np.float64)[m[:, 1]]
                err = np.linalg.norm(project(pr.H_0to1, p0) - p1, axis=1) if len(m) else np.zeros(0)
                errors.append(err)
                for name, keep in REMOVALS.items():
                    k = keep(err)
                    per_removal[name].append(homography_error(pr, p0[k], p1[k]))
            hist = np.histogram(np.concatenate(errors), BINS)[0] / len(pairs)
            results.setdefault(set_name, {})[method.name] = {
                "matches_per_pair_by_error_px": dict(zip(BIN_NAMES, map(float, hist))),
                "auc3_after_removing": {k: auc(v, 3.0) for k, v in per_removal.items()}}
            print(f"{set_name:<24} {method.name:<22} "
                  + " ".join(f"{k}: {auc(v, 3.0):.3f}" for k, v in per_removal.items()), flush=True)
    md = ["# Which wrong matches cost homography accuracy\n",
          f"{args.max_keypoints} keypoints; the homography sets and estimator of homography_benchmark.py (OpenCV "
          "MAGSAC, 3 px). Left: matches per pair by ground-truth error (px). Right: AUC@3 of the corner error "
          "after removing, by oracle, the matches of an error range: none (the benchmark's AUC@3), far (> 10 px), "
          "near misses (3-10 px), all wrong (> 3 px), all > 1.5 px.\n"]
    for set_name, by_method in results.items():
        rows = [[name, *[f"{r['matches_per_pair_by_error_px'][b]:.1f}" for b in BIN_NAMES],
                 *[f"{r['auc3_after_removing'][k]:.3f}" for k in REMOVALS]] for name, r in by_method.items()]
        md += [f"\n## {set_name} ({len(sets[set_name])} pairs)\n",
               markdown_table(["method", *[f"{b} px" for b in BIN_NAMES],
                               *[f"AUC@3 -{k.split(' (')[0]}" for k in REMOVALS]], rows)]
    write_results(args.name, {"settings": vars(args), "results": results, "skipped": skipped}, "\n".join(md))
    return 0


if __name__ == "__main__":
    sys.exit(main())
