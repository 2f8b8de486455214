"""Localization benchmark: map from frames with known poses, localize held-out frames.

Sets: fox (instant-ngp, map from 40, localize 10; pseudo-GT, not metric: thresholds in % of the
scene extent), TUM RGB-D frames of slambook2 ch5 (5 frames, metric; leave-one-out: each frame
localized in a map of the other four), and the rendered demo room (metric; map from 60 day frames,
30 query frames by day and by night along another path).

    python benchmarks/localization_benchmark.py [--quick] [--features rootsift sift]

Writes results/localization[_quick].{json,md}.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

from common import markdown_table, write_results  # noqa: E402

from featloc_ros.evaluation.datasets import load_slambook_rgbd, read_rgb, shared_data_dir
from featloc_ros.evaluation.fox import evaluate_fox, fox_frames
from featloc_ros.features import confs as feature_confs
from peer_features import precompute
from featloc_ros.evaluation.localization import Frame, build_evaluation_map, evaluate_localization, localize_frames

METRIC_THRESHOLDS = ((0.25, 2.0), (0.5, 5.0), (5.0, 10.0))


def tum_frames(root: Path) -> list[Frame]:
    camera, frames = load_slambook_rgbd(root)
    return [Frame(n, read_rgb(p), camera, T) for n, p, T in frames]


def tum_leave_one_out(frames: list[Frame], work: Path, features, matcher: str) -> dict:
    runs = [evaluate_localization([f for j, f in enumerate(frames) if j != i], [frames[i]], work / f"tum_{i}",
                                  features, matcher, thresholds=METRIC_THRESHOLDS) for i in range(len(frames))]
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
    from featloc_ros.demo.scene import DemoScene, camera_path, demo_intrinsics
    from featloc_ros.geometry import Camera

    w, h = 640, 480
    K = demo_intrinsics(w, h)
    cam = Camera("PINHOLE", w, h, (K[0, 0], K[1, 1], K[0, 2], K[1, 2]))
    scene = DemoScene()
    n_map, n_query = (60, 10) if quick else (60, 30)
    mapping = [Frame(f"map{i:03d}", scene.render(T, K, w, h)[0], cam, T) for i, T in enumerate(camera_path("mapping", n_map))]
    queries = {light: [Frame(f"q{i:03d}", scene.render(T, K, w, h, lighting=light, seed=i)[0], cam, T)
                       for i, T in enumerate(camera_path("query", n_query))] for light in ("day", "night")}
    return mapping, queries


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true")
    p.add_argument("--features", nargs="+", default=None, help="default: rootsift sift (quick: rootsift)")
    p.add_argument("--matcher", default="mnn_ratio")
    p.add_argument("--peers", nargs="*", default=["xfeat_mnn", "aliked_mnn", "disk_mnn"],
                   help="peer feature extractors (their descriptors with our mutual NN); skipped with --quick")
    p.add_argument("--peer-keypoints", type=int, default=2048)
    args = p.parse_args(argv)
    args.features = args.features or (["rootsift"] if args.quick else ["rootsift", "sift"])
    data = shared_data_dir()
    results, missing = {}, {}
    methods = [(f"{feat}+{args.matcher}", feat, args.matcher) for feat in args.features]
    skipped = {}
    if args.peers and not args.quick:
        from methods import resolve_methods

        ok, skipped = resolve_methods(args.peers)
        methods += [(f"{m.name} (peer features, our mutual NN)", m.name, "mnn") for m in ok]
    tum_root, fox_root = data / "slambook2" / "ch5" / "rgbd", data / "instant_ngp_fox"
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        mapping, queries = demo_sets(args.quick)
        tum = tum_frames(tum_root) if tum_root.exists() else None
        fox = fox_frames(fox_root) if fox_root.exists() and not args.quick else None
        if tum is None:
            missing["tum_slambook2"] = f"{tum_root} not available"
        if fox is None and not args.quick:
            missing["fox"] = f"{fox_root} not available"
        for label, feat, matcher in methods:
            def conf_for(frames, feat=feat):
                if feat in feature_confs:
                    return feat
                return precompute(feat, [f.image for f in frames], args.peer_keypoints)

            tag = label.split(" ")[0]
            all_demo = mapping + [f for q in queries.values() for f in q]
            vmap, build_s = build_evaluation_map(mapping, work / f"demo_{tag}", conf_for(all_demo), matcher)
            for light, q in queries.items():
                s = localize_frames(vmap, q, thresholds=METRIC_THRESHOLDS)
                s.update({"num_map_frames": len(mapping), "map_build_s": build_s})
                results.setdefault(f"demo_day_to_{light}", {})[label] = s
            if tum is not None:
                results.setdefault("tum_slambook2", {})[label] = tum_leave_one_out(tum, work / f"tum_{tag}",
                                                                                   conf_for(tum), matcher)
            if fox is not None:
                results.setdefault("fox", {})[label] = evaluate_fox(
                    fox_root, work, conf_for(fox[0] + fox[1]), matcher, frames=fox)
            print(f"done: {label}")
    md = ["# Localization benchmark\n",
          "Recall at (position, rotation) thresholds; metric sets use metres, fox uses % of the scene extent. "
          "Every query is localized from retrieval alone (no tracking prior). Peer rows use the peer's keypoints "
          "and descriptors (extracted in its venv, images at most 1024 px) with our map builder, retrieval, mutual "
          "NN and PnP; their latency is in the latency table (extraction runs in another process here).\n"]
    for set_name, by_method in results.items():
        md.append(f"\n## {set_name}\n")
        keys = list(next(iter(by_method.values()))["recall"])
        rows = [[m, f"{s['num_localized']}/{s['num_frames']}", *[s["recall"][k] for k in keys],
                 s["median_position_error"], s["median_rotation_error_deg"],
                 1000 * s["median_latency_s"] if s["median_latency_s"] is not None and "peer" not in m else None]
                for m, s in by_method.items()]
        md.append(markdown_table(["method", "localized", *[f"recall {k}" for k in keys], "median pos. err.",
                                  "median rot. err. (°)", "median latency (ms)"], rows))
    md.append("\n## Not run\n\n- peers with their own matchers (LightGlue, LighterGlue): the localizer matches "
              "in-process and these matchers live in the peers venv; the peers' features are evaluated with our "
              "mutual nearest neighbour instead.")
    md += [f"- {k}: {v}" for k, v in {**missing, **skipped}.items()]
    for by_method in results.values():
        for s in by_method.values():
            s.pop("frames", None)
    suffix = "_quick" if args.quick else ""
    write_results(f"localization{suffix}", {"settings": vars(args), "results": results, "missing": missing},
                  "\n".join(md))
    for set_name, by_method in results.items():
        for m, s in by_method.items():
            print(f"{set_name:<20} {m:<20} {s['num_localized']}/{s['num_frames']} recall {list(s['recall'].values())}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
