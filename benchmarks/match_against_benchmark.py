"""The localizer's 2D-3D matching, two ways (``Localizer`` conf ``match_against``): the query against the 3D points
seen by the candidate keyframes, each once with the descriptor of its observation in the best-ranked candidate
("points", for descriptor-only matchers), or against every candidate keyframe's observations in turn ("keyframes",
the default, which the matchers that use the keypoint layout need). Neighbouring keyframes share most points, so
"points" matches about a third of the descriptors; this measures what that costs in recall and pose error.

    python benchmarks/match_against_benchmark.py [--quick]

Sets of localization_benchmark.py: the demo room (map from 60 day frames; queries by day, by night, by night
rolled 30-330 deg) and fox (map from 40 frames; the 10 held-out frames as they are and rolled + night). Methods:
RootSIFT + mutual NN with the ratio test, and FeatLoc with invariance-selected mutual NN (map and localization),
and localized with its ratio-test variant. Same map for both settings; each query localized from retrieval
alone. Writes results/match_against.{json,md}.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

from common import markdown_table, write_results  # noqa: E402
from localization_benchmark import METRIC_THRESHOLDS, demo_sets, fox_sets

from featloc_ros.evaluation.datasets import shared_data_dir
from featloc_ros.evaluation.fox import FOX_THRESHOLDS_PCT
from featloc_ros.evaluation.localization import build_evaluation_map, localize_frames

# (label, features, map matcher, localization matcher)
METHODS = [("rootsift+mnn_ratio", "rootsift", "mnn_ratio", "mnn_ratio"),
           ("featloc+isnn", "featloc", "featloc_isnn", "featloc_isnn"),
           ("featloc, localized with isnn_ratio", "featloc", "featloc_isnn", "featloc_isnn_ratio")]
SETTINGS = ("points", "keyframes")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="10 demo queries per pass, no fox")
    args = p.parse_args(argv)
    mapping, queries = demo_sets(args.quick)
    scenes = [("demo", mapping, queries, METRIC_THRESHOLDS, 1.0)]
    fox_root = shared_data_dir() / "instant_ngp_fox"
    skipped = {}
    if args.quick:
        skipped["fox"] = "--quick"
    elif fox_root.exists():
        train, fox_queries, extent = fox_sets(fox_root)
        scenes.append(("fox", train, fox_queries, FOX_THRESHOLDS_PCT, extent / 100.0))
    else:
        skipped["fox"] = f"{fox_root} not available"
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        maps = {}
        for label, feat, map_matcher, loc_matcher in METHODS:
            for scene, frames, sets, thresholds, scale in scenes:
                if (scene, feat, map_matcher) not in maps:
                    maps[scene, feat, map_matcher] = build_evaluation_map(
                        frames, Path(tmp) / f"{scene}_{feat}_{map_matcher}", feat, map_matcher)[0]
                vmap = maps[scene, feat, map_matcher]
                for set_name, q in sets.items():
                    for setting in SETTINGS:
                        s = localize_frames(vmap, q, thresholds=thresholds, scale=scale,
                                            localizer_conf={"matcher": loc_matcher, "match_against": setting})
                        match_ms = [1e3 * f["timings_s"].get("match", 0.0) for f in s["frames"]]
                        s.pop("frames")
                        s["median_match_ms"] = float(np.median(match_ms))
                        results.setdefault(set_name, {}).setdefault(label, {})[setting] = s
                        print(f"{set_name:<26} {label:<36} {setting:<9} localized {s['num_localized']}/"
                              f"{s['num_frames']}  match {s['median_match_ms']:.0f} ms", flush=True)
    md = ["# Localizer: matching against the candidates' points once each, or against every candidate keyframe\n",
          "`match_against: points` (descriptor-only matchers) vs `keyframes` (the default); same maps, 6 retrieved "
          "keyframes (+6 on failure), retrieval only (no tracking prior), 2 threads as set by the libraries' "
          "defaults here. Recall at the localization benchmark's thresholds (demo: metres; fox: % of the scene "
          "extent); match = median time of the matching stage per query (ms); the latency benchmark has the "
          "controlled timings.\n"]
    for set_name, by_method in results.items():
        rows = []
        for label, by_setting in by_method.items():
            for setting, s in by_setting.items():
                rec = " / ".join(f"{v:.2f}" for v in s["recall"].values())
                pos, rot = s.get("median_position_error"), s.get("median_rotation_error_deg")
                rows.append([label, setting, f"{s['num_localized']}/{s['num_frames']}", rec,
                             "–" if pos is None else f"{pos:.4g}", "–" if rot is None else f"{rot:.3g}",
                             f"{s['median_match_ms']:.0f}"])
        md += [f"\n## {set_name}\n", markdown_table(["method", "match against", "localized", "recall",
                                                     "median position error", "median rotation error (deg)",
                                                     "match ms"], rows)]
    if skipped:
        md += ["\n## Not run\n"] + [f"- {k}: {v}" for k, v in skipped.items()]
    write_results("match_against" + ("_quick" if args.quick else ""),
                  {"settings": vars(args), "results": results, "skipped": skipped}, "\n".join(md))
    return 0


if __name__ == "__main__":
    sys.exit(main())
