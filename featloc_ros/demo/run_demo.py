"""``make demo``: the whole path on a scene rendered here, with nothing downloaded.

1. Render the demo room (scikit-image photos as textures) along a mapping path (day) and a
   different query path (day, and night: darker, lamp light, noise, blur); write three rosbag2.
2. Build the map from the mapping bag with featloc_build_map's code (poses from /tf).
3. Replay each query bag through the real ROS 2 node (publisher process -> featloc_localizer
   process -> subscriber) and compare the published poses with the ground truth in the bag.
4. Print recall, median errors and per-frame latency; save a trajectory plot (PNG) and JSON.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from ..evaluation.metrics import summarize
from ..localization import Localizer
from ..mapping.bag_reader import BagCameraStream, read_pose_topic
from ..mapping.from_bag import build_map_from_bag
from ..mapping.map_format import VisualMap
from .make_bags import write_demo_bags

IMAGE_TOPIC, INFO_TOPIC, GT_TOPIC = "/camera/image_raw", "/camera/camera_info", "/camera/pose_gt"
THRESHOLDS = ((0.25, 2.0), (0.5, 5.0), (5.0, 10.0))


def in_process_latency(vmap: VisualMap, bag: Path, conf: dict | None = None) -> dict:
    """Localize every frame of a bag in this process; per-stage median/p90 latency in ms."""
    loc = Localizer(vmap, conf)
    stages: dict[str, list[float]] = {}
    with BagCameraStream(bag, IMAGE_TOPIC, INFO_TOPIC, pose_source="none") as stream:
        for rec in stream.records():
            t0 = time.perf_counter()
            image = rec.decode()
            decode_s = time.perf_counter() - t0
            r = loc.localize(image, rec.camera, timestamp=rec.stamp_ns * 1e-9)
            for k, v in {"decode": decode_s, **r.timings}.items():
                stages.setdefault(k, []).append(v * 1000)
    return {k: {"median_ms": float(np.median(v)), "p90_ms": float(np.percentile(v, 90))} for k, v in stages.items()}


def replay_through_node(map_dir: Path, bag: Path, rate: float) -> dict:
    from ..ros.replay import replay_bag_through_node

    return replay_bag_through_node(map_dir, bag, IMAGE_TOPIC, INFO_TOPIC, rate=rate)


def evaluate_pass(poses: dict[int, np.ndarray], gt: dict[int, np.ndarray]) -> dict:
    stamps = sorted(gt)
    s = summarize([poses.get(t) for t in stamps], [gt[t] for t in stamps], thresholds=THRESHOLDS)
    return s


def plot(path: Path, vmap: VisualMap, gt: dict[int, np.ndarray], estimates: dict[str, dict[int, np.ndarray]]):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 6.5))
    pts = vmap.points_xyz
    ax.scatter(pts[:, 0], pts[:, 1], s=0.3, c="0.75", label="map points")
    kf = vmap.keyframe_positions()
    ax.plot(kf[:, 0], kf[:, 1], "o-", ms=3, c="tab:blue", lw=0.8, label="map keyframes (mapping pass)")
    g = np.array([gt[t][:3, 3] for t in sorted(gt)])
    ax.plot(g[:, 0], g[:, 1], "-", c="k", lw=1.5, label="query ground truth")
    for (name, est), color in zip(estimates.items(), ("tab:green", "tab:red", "tab:purple")):
        if est:
            e = np.array([est[t][:3, 3] for t in sorted(est)])
            ax.plot(e[:, 0], e[:, 1], "x", c=color, ms=6, label=f"localized ({name}): {len(est)}/{len(gt)}")
    ax.set_aspect("equal")
    ax.set_xlabel("x [m] (map)")
    ax.set_ylabel("y [m] (map)")
    ax.set_title("featloc_ros demo: top view of the room")
    ax.legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv=None) -> int:
    run(argv)
    return 0


def run(argv=None) -> dict:
    """Run the demo; returns the results dict that is also written to OUT/demo_results.json."""
    p = argparse.ArgumentParser(prog="featloc_demo", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="demo_output", help="working directory for bags, map, plot and results")
    p.add_argument("--frames-mapping", type=int, default=60)
    p.add_argument("--frames-query", type=int, default=30)
    p.add_argument("--width", type=int, default=640)
    p.add_argument("--height", type=int, default=480)
    p.add_argument("--features", default="rootsift")
    p.add_argument("--rate", type=float, default=0.5, help="bag playback rate (the bags are 5 Hz)")
    p.add_argument("--no-ros", action="store_true", help="skip the ROS replay (core pipeline only)")
    args = p.parse_args(argv)
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)

    t0 = time.perf_counter()
    print(f"[1/4] rendering the demo room and writing bags to {out / 'bags'}")
    bags = write_demo_bags(out / "bags", args.frames_mapping, args.frames_query, args.width, args.height,
                           verbose=False)
    print(f"[2/4] building the map from {bags['mapping_day'].name} (poses from /tf)")
    t_map = time.perf_counter()
    vmap = build_map_from_bag(bags["mapping_day"], out / "map", IMAGE_TOPIC, INFO_TOPIC, pose_source="tf",
                              features=args.features, min_translation=0.0, min_rotation_deg=0.0, progress=False)
    map_s = time.perf_counter() - t_map
    print(f"      {vmap.num_keyframes} keyframes, {vmap.num_points} points in {map_s:.1f} s")

    results = {"settings": vars(args), "map": {"keyframes": vmap.num_keyframes, "points": vmap.num_points, "build_s": map_s,
                       "features": args.features}, "passes": {}}
    estimates = {}
    gt_day = None
    for name in ("query_day", "query_night"):
        bag = bags[name]
        gt = read_pose_topic(bag, GT_TOPIC)
        gt_day = gt_day or gt
        if args.no_ros:
            print(f"[3/4] {name}: localizing in-process (--no-ros)")
            loc = Localizer(vmap)
            poses = {}
            with BagCameraStream(bag, IMAGE_TOPIC, INFO_TOPIC, pose_source="none") as stream:
                for rec in stream.records():
                    r = loc.localize(rec.decode(), rec.camera, timestamp=rec.stamp_ns * 1e-9)
                    if r.ok:
                        poses[rec.stamp_ns] = r.T_map_cam
            node = {}
        else:
            print(f"[3/4] {name}: bag player -> featloc_localizer node -> recorder (rate {args.rate})")
            replay = replay_through_node(out / "map", bag, args.rate)
            poses = {stamp: T for stamp, T, _cov in replay["poses"]}
            diag = replay.get("last_diagnostics", {})
            node = {"diagnostics": diag, "returncode": replay.get("node_returncode"),
                    "frames_received": int(diag.get("frames_received", 0)),
                    "frames_dropped": int(diag.get("frames_dropped", 0))}
        summary = evaluate_pass(poses, gt)
        summary["latency"] = in_process_latency(vmap, bag)
        summary["node"] = node
        results["passes"][name] = summary
        estimates[name.replace("query_", "")] = poses

    plot(out / "trajectory.png", vmap, gt_day, estimates)
    (out / "demo_results.json").write_text(json.dumps(results, indent=2, default=float))
    print("[4/4] results (position errors in metres, rotation in degrees)")
    header = f"{'pass':<12}{'dropped':>8}{'localized':>10}{'<0.25m,2°':>11}{'<0.5m,5°':>10}{'<5m,10°':>9}{'med. pos':>10}" \
             f"{'med. rot':>10}{'latency ms (median/p90)':>26}"
    print(header)
    for name, s in results["passes"].items():
        rec = list(s["recall"].values())
        lat = s["latency"]["total"]
        mp = f"{s['median_position_error']:.3f}" if s["median_position_error"] is not None else "-"
        mr = f"{s['median_rotation_error_deg']:.2f}" if s["median_rotation_error_deg"] is not None else "-"
        dropped = s["node"].get("frames_dropped", "-")
        print(f"{name:<12}{dropped:>8}{s['num_localized']:>5}/{s['num_frames']:<4}{rec[0]:>11.0%}{rec[1]:>10.0%}{rec[2]:>9.0%}"
              f"{mp:>10}{mr:>10}{lat['median_ms']:>14.0f} / {lat['p90_ms']:.0f}")
    print(f"trajectory plot: {out / 'trajectory.png'}; numbers: {out / 'demo_results.json'}; "
          f"total {time.perf_counter() - t0:.0f} s")
    print("recall counts frames dropped by the node (latest frame wins) as not localized")
    return results


if __name__ == "__main__":
    sys.exit(main())
