"""Localization benchmark: map from frames with known poses, localize held-out frames.

Sets: fox (instant-ngp, map from 40, localize 10; pseudo-GT, not metric: thresholds in % of the
scene extent), the same 10 fox queries rolled about the optical axis and darkened to night,
TUM RGB-D frames of slambook2 ch5 (5 frames, metric; leave-one-out: each frame localized in a map
of the other four), and the rendered demo room (metric; map from 60 day frames, 30 query frames
along another path by day, by night, and by night with the camera rolled by 30-330 degrees).

    python benchmarks/localization_benchmark.py [--quick] [--features rootsift sift featloc:featloc_isnn]

Writes results/localization[_quick].{json,md}.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

from common import merge_previous_rows, markdown_table, write_results  # noqa: E402

from featloc_ros.evaluation.datasets import load_slambook_rgbd, read_rgb, shared_data_dir
from featloc_ros.evaluation.fox import FOX_THRESHOLDS_PCT, fox_frames
from featloc_ros.evaluation.localization import Frame, build_evaluation_map, localize_frames
from featloc_ros.features import confs as feature_confs
from featloc_ros.features.featloc import resolve_model_file
from peer_features import localize_with_peer_matcher, precompute

METRIC_THRESHOLDS = ((0.25, 2.0), (0.5, 5.0), (5.0, 10.0))


def tum_frames(root: Path) -> list[Frame]:
    camera, frames = load_slambook_rgbd(root)
    return [Frame(n, read_rgb(p), camera, T) for n, p, T in frames]


def tum_leave_one_out(frames: list[Frame], work: Path, features, matcher: str, localize) -> dict:
    runs = []
    for i in range(len(frames)):
        vmap, build_s = build_evaluation_map([f for j, f in enumerate(frames) if j != i], work / f"tum_{i}", features,
                                             matcher)
        runs.append({**localize(vmap, [frames[i]], thresholds=METRIC_THRESHOLDS), "map_build_s": build_s})
    pos = [r["position_errors"][0] for r in runs]
    rot = [r["rotation_errors_deg"][0] for r in runs]
    loc = [p is not None for p in pos]
    return {"num_frames": len(runs), "num_localized": int(sum(loc)),
            "median_position_error": float(np.median([p for p in pos if p is not None])) if any(loc) else None,
            "median_rotation_error_deg": float(np.median([r for r in rot if r is not None])) if any(loc) else None,
            "position_errors": pos, "rotation_errors_deg": rot,
            "recall": {f"{dt:.3g}/{dr:g}deg": float(np.mean([p is not None and p <= dt and r <= dr
                                                              for p, r in zip(pos, rot)]))
                       for dt, dr in METRIC_THRESHOLDS},
            "median_latency_s": float(np.median([r["median_latency_s"] for r in runs])),
            "map_build_s": float(np.mean([r["map_build_s"] for r in runs])), "features": features,
            "matcher": matcher}


def demo_sets(quick: bool) -> tuple[list[Frame], dict[str, list[Frame]]]:
    """Mapping frames by day and the query passes: day, night, and night with the camera rolled about its optical
    axis by 30-330 degrees (rendered, exact poses)."""
    from featloc_ros.demo.scene import DemoScene, camera_path, demo_intrinsics
    from featloc_ros.evaluation.query_changes import roll_angles, roll_camera_pose
    from featloc_ros.geometry import Camera

    w, h = 640, 480
    K = demo_intrinsics(w, h)
    cam = Camera("PINHOLE", w, h, (K[0, 0], K[1, 1], K[0, 2], K[1, 2]))
    scene = DemoScene()
    n_map, n_query = (60, 10) if quick else (60, 30)
    mapping = [Frame(f"map{i:03d}", scene.render(T, K, w, h)[0], cam, T) for i, T in enumerate(camera_path("mapping", n_map))]
    path = camera_path("query", n_query)
    queries = {f"demo_day_to_{light}": [Frame(f"q{i:03d}", scene.render(T, K, w, h, lighting=light, seed=i)[0], cam, T)
                                        for i, T in enumerate(path)] for light in ("day", "night")}
    rolled = [roll_camera_pose(T, a) for T, a in zip(path, roll_angles(n_query, seed=0))]
    queries["demo_day_to_night_rolled"] = [Frame(f"q{i:03d}_rolled", scene.render(T, K, w, h, lighting="night",
                                                                                seed=i)[0], cam, T)
                                           for i, T in enumerate(rolled)]
    return mapping, queries


def fox_sets(root: Path) -> tuple[list[Frame], dict[str, list[Frame]], float]:
    """Fox: map from 40 frames; queries = the 10 held-out frames as they are, and rolled + night."""
    from featloc_ros.evaluation.query_changes import rolled_night_frames

    train, test, extent = fox_frames(root)
    return train, {"fox": test, "fox_rolled_night": rolled_night_frames(test, seed=0)}, extent


def parse_method(spec: str) -> tuple[str, str, str]:
    """"features[:matcher[:localization matcher]]" -> (features, matcher or "", localization matcher or "").
    The matcher builds the map (and localizes, unless a localization matcher is given)."""
    feat, _, rest = spec.partition(":")
    matcher, _, loc_matcher = rest.partition(":")
    return feat, matcher, loc_matcher


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true")
    p.add_argument("--features", nargs="+", default=None,
                   help="registry features[:matcher[:localization matcher]], e.g. rootsift featloc:featloc_isnn "
                        "featloc:featloc_isnn:featloc_isnn_ratio (the matcher builds the map and, unless a third "
                        "field is given, localizes; default: rootsift sift; quick: rootsift)")
    p.add_argument("--matcher", default="mnn_ratio", help="matcher for --features entries without one")
    p.add_argument("--peers", nargs="*", default=["xfeat_mnn", "aliked_mnn", "disk_mnn", "xfeat_lighterglue",
                                                  "aliked_lightglue", "disk_lightglue"],
                   help="peer methods: *_mnn = their features with our mutual NN; *glue = their features and their "
                        "own matcher for the query-keyframe matching; skipped with --quick")
    p.add_argument("--peer-keypoints", type=int, default=2048)
    p.add_argument("--name", default="localization", help="results file name")
    p.add_argument("--update", action="store_true",
                   help="keep the rows of the committed results file that this run does not measure (e.g. rerun "
                        "only our learned features after new weights; each new row records its own commit)")
    args = p.parse_args(argv)
    args.features = args.features or (["rootsift"] if args.quick else ["rootsift", "sift"])
    data = shared_data_dir()
    results, missing = {}, {}
    methods = []  # (label, features, map matcher, peer matcher method or None)
    skipped = {}
    for spec in args.features:
        feat, matcher, loc_matcher = parse_method(spec)
        label = f"{feat}+{matcher or args.matcher}" + (f" (localized with {loc_matcher})" if loc_matcher else "")
        try:  # learned weights present? (checked without loading the model)
            if feature_confs.get(feat, {}).get("name") == "featloc":
                resolve_model_file(feature_confs[feat].get("weights"))
        except FileNotFoundError as e:  # learned weights not shipped
            skipped[label] = str(e).splitlines()[0]
            continue
        methods.append((label, feat, matcher or args.matcher, None, loc_matcher))
    if args.peers and not args.quick:
        from methods import resolve_methods

        ok, skipped_peers = resolve_methods(args.peers)
        skipped.update(skipped_peers)
        for m in ok:
            if m.name.endswith("_mnn"):
                methods.append((f"{m.name} (peer features, our mutual NN)", m.name, "mnn", None, ""))
            else:
                methods.append((f"{m.name} (peer features and matcher)", m.name, "mnn", m.name, ""))
    tum_root, fox_root = data / "slambook2" / "ch5" / "rgbd", data / "instant_ngp_fox"
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        mapping, queries = demo_sets(args.quick)
        tum = tum_frames(tum_root) if tum_root.exists() else None
        fox = fox_sets(fox_root) if fox_root.exists() and not args.quick else None
        if tum is None:
            missing["tum_slambook2"] = f"{tum_root} not available"
        if fox is None and not args.quick:
            missing["fox"] = f"{fox_root} not available"
        maps = {}  # (scene, features, map matcher) -> (map, build s): rows that differ only in the localization
        #            matcher share their maps

        def map_for(scene, frames, conf_of, feat, matcher, tag):  # conf_of(): the features (peers: extracted)
            if (scene, feat, matcher) not in maps:
                maps[scene, feat, matcher] = build_evaluation_map(frames, work / f"{scene}_{tag}", conf_of(), matcher)
            return maps[scene, feat, matcher]

        for index, (label, feat, matcher, peer_matcher, loc_matcher) in enumerate(methods):
            def conf_for(frames, feat=feat):
                if feat in feature_confs:
                    return feat
                return precompute(feat, [f.image for f in frames], args.peer_keypoints)

            def localize(vmap, frames, peer_matcher=peer_matcher, loc_matcher=loc_matcher, **kw):
                if peer_matcher:
                    return localize_with_peer_matcher(vmap, frames, peer_matcher, **kw)
                return localize_frames(vmap, frames, localizer_conf={"matcher": loc_matcher} if loc_matcher else None,
                                       **kw)

            tag = f"{index}_{label.split(' ')[0]}"
            all_demo = mapping + [f for q in queries.values() for f in q]
            vmap, build_s = map_for("demo", mapping, lambda: conf_for(all_demo), feat, matcher, tag)
            for set_name, q in queries.items():
                s = localize(vmap, q, thresholds=METRIC_THRESHOLDS)
                s.update({"num_map_frames": len(mapping), "map_build_s": build_s})
                results.setdefault(set_name, {})[label] = s
            if tum is not None:
                results.setdefault("tum_slambook2", {})[label] = tum_leave_one_out(tum, work / f"tum_{tag}",
                                                                                   conf_for(tum), matcher, localize)
            if fox is not None:
                train, fox_queries, extent = fox
                all_fox = train + [f for q in fox_queries.values() for f in q]
                vmap, build_s = map_for("fox", train, lambda: conf_for(all_fox), feat, matcher, tag)
                for set_name, q in fox_queries.items():
                    s = localize(vmap, q, thresholds=FOX_THRESHOLDS_PCT, scale=extent / 100.0)
                    s.update({"num_map_frames": len(train), "map_build_s": build_s, "scene_extent": extent})
                    results.setdefault(set_name, {})[label] = s
            print(f"done: {label}", flush=True)
    for by_method in results.values():
        for s in by_method.values():
            s.pop("frames", None)
    suffix = "_quick" if args.quick else ""
    previous_env = {}
    if args.update:
        results, previous_env = merge_previous_rows(f"{args.name}{suffix}", results)
    md = ["# Localization benchmark\n",
          "Recall at (position, rotation) thresholds; metric sets use metres, fox uses % of the scene extent. "
          "Every query is localized from retrieval alone (no tracking prior). The *rolled* sets turn the query "
          "camera about its optical axis by 30-330° (fixed seed) and make it night: the demo room is rendered "
          "that way, the fox queries are re-projected exactly (undistorted pinhole, black corners) and darkened "
          "(featloc_ros.evaluation.query_changes). Peer rows use the peer's keypoints and descriptors (extracted "
          "in its venv, images at most 1024 px) in our map builder (mutual NN, geometric verification, "
          "triangulation with the known poses), retrieval and PnP; *peer features and matcher* rows match each "
          "query to its candidate keyframes with the peer's own matcher (LightGlue, LighterGlue) in the peers "
          "venv, *our mutual NN* rows with our mutual nearest neighbour. Peer latency is in the latency table "
          "(here they run in another process). *RANSAC trials*: the median over localized queries of the trials "
          "COLMAP's adaptive stopping rule needs at the final inlier ratio (featloc_ros.evaluation.localization."
          "ransac_trials; pycolmap does not report its count; empty for rows measured before it was added).\n"]
    for set_name, by_method in results.items():
        md.append(f"\n## {set_name}\n")
        keys = list(next(iter(by_method.values()))["recall"])
        rows = [[m, f"{s['num_localized']}/{s['num_frames']}", *[s["recall"][k] for k in keys],
                 s["median_position_error"], s["median_rotation_error_deg"],
                 1000 * s["median_latency_s"] if s["median_latency_s"] is not None and "peer" not in m else None,
                 s.get("median_ransac_trials")]
                for m, s in by_method.items()]
        md.append(markdown_table(["method", "localized", *[f"recall {k}" for k in keys], "median pos. err.",
                                  "median rot. err. (°)", "median latency (ms)", "RANSAC trials"], rows))
    not_run = {**missing, **skipped}
    if not_run:
        md.append("\n## Not run\n")
        md += [f"- {k}: {v}" for k, v in not_run.items()]
    if previous_env:
        updated = {m: s["run"]["git_commit"] for by_method in results.values() for m, s in by_method.items()
                   if "run" in s}
        md.append(f"\nRows re-measured after the full run of commit {previous_env.get('git_commit')} "
                  f"({previous_env.get('date_utc')}): " + ", ".join(f"{m} (commit {c})" for m, c in updated.items())
                  + ".\n")
    write_results(f"{args.name}{suffix}", {"settings": vars(args), "results": results, "missing": missing,
                                           "skipped": skipped, "base_environment": previous_env},
                  "\n".join(md))
    for set_name, by_method in results.items():
        for m, s in by_method.items():
            print(f"{set_name:<26} {m:<45} {s['num_localized']}/{s['num_frames']} recall {list(s['recall'].values())}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
