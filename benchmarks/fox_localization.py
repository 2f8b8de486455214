"""Fox localization benchmark: map from 40 frames (COLMAP poses), localize the other 10.

    python benchmarks/fox_localization.py [--features rootsift rootsift_fast]

Writes benchmarks/results/fox_localization.{json,md}. Needs ../shared/data/instant_ngp_fox.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from common import markdown_table, write_results  # noqa: E402  (adds the repo root to sys.path)

from featloc_ros.evaluation.datasets import shared_data_dir
from featloc_ros.evaluation.fox import evaluate_fox
from featloc_ros.mapping.builder import MapBuildError


SHORT_MATCHERS = {"isnn": "featloc_isnn", "isnn_ratio": "featloc_isnn_ratio"}


def parse_method(method: str) -> tuple[str, str, str]:
    """"features+matcher[:localization matcher]" -> (features, matcher, localization matcher or "") with the
    short names isnn / isnn_ratio expanded."""
    feat, plus, matchers = method.partition("+")
    matcher, _, loc_matcher = matchers.partition(":")
    if not plus or not feat or not matcher:
        raise SystemExit(f"fox_localization: bad method {method!r}: expected FEATURES+MATCHER[:LOCALIZATION_MATCHER]")
    return feat, SHORT_MATCHERS.get(matcher, matcher), SHORT_MATCHERS.get(loc_matcher, loc_matcher)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--methods", nargs="+",
                   default=["rootsift+mnn_ratio", "rootsift_fast+mnn_ratio", "featloc+isnn:isnn_ratio",
                            "featloc+isnn_ratio"],
                   help="FEATURES+MATCHER[:LOCALIZATION_MATCHER] registry names: the matcher builds the map and, "
                        "unless a localization matcher follows, localizes (featloc+isnn[_ratio] = featloc with "
                        "featloc_isnn[_ratio]; featloc+isnn:isnn_ratio is the combination models/README.md "
                        "recommends)")
    args = p.parse_args(argv)
    root = shared_data_dir() / "instant_ngp_fox"
    if not root.exists():
        print(f"skipped: {root} not available", file=sys.stderr)
        return 0
    runs, failed = [], {}
    with tempfile.TemporaryDirectory() as work:
        for index, method in enumerate(args.methods):
            feat, matcher, loc_matcher = parse_method(method)
            method_dir = Path(work) / str(index)  # a folder per method: two may build the same features + matcher map
            method_dir.mkdir()
            try:
                s = evaluate_fox(root, method_dir, features=feat, matcher=matcher,
                                 localizer_conf={"matcher": loc_matcher} if loc_matcher else None)
            except FileNotFoundError as e:  # learned weights not shipped yet
                print(f"skipped {method}: {str(e).splitlines()[0]}")
                continue
            except MapBuildError as e:  # the method cannot build a map: a failed row, not a crash
                failed[method] = str(e)
                print(f"failed {method}: {e}")
                continue
            s["method"] = method
            runs.append(s)
            print(f"{method}: {s['num_localized']}/{s['num_frames']} localized, median "
                  f"{s['median_position_error_pct_extent']}% of extent, {s['median_rotation_error_deg']} deg")
    rows = [[r["method"], f"{r['num_localized']}/{r['num_frames']}",
             r["median_position_error"], r["median_position_error_pct_extent"], r["median_rotation_error_deg"],
             *r["recall"].values(), r["median_latency_s"] * 1000, r["map_build_s"]] for r in runs]
    headers = ["method (features+matcher)", "localized", "median pos. err. (scene units)", "median pos. err. (% extent)",
               "median rot. err. (deg)", *[f"recall @{k} (pos. % extent / rot.)" for k in runs[0]["recall"]],
               "median latency (ms)", "map build (s)"]
    md = ("# Fox localization (instant-ngp fox, 1080x1920, map from 40 frames, 10 held out)\n\n"
          "Ground truth: COLMAP poses from transforms.json (pseudo-GT, not metric; scene extent "
          f"{runs[0]['scene_extent']:.3f} units = camera-centre bounding-box diagonal). A method "
          "FEATURES+MATCHER:LOCALIZATION_MATCHER builds the map with MATCHER and localizes with LOCALIZATION_MATCHER."
          "\n\n"
          + markdown_table(headers, rows)
          + "".join(f"\n\n- {m}: map building failed: {why}" for m, why in failed.items()))
    jpath, mpath = write_results("fox_localization", {"runs": runs, "failed": failed}, md)
    print(f"wrote {jpath} and {mpath}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
