"""Fox (instant-ngp) localization protocol: map from 40 frames with COLMAP poses, localize the
other 10 (every 5th frame, starting at the 3rd) and compare with their poses."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from ..localization import Localizer
from ..mapping.builder import KeyframeInput, build_map
from .datasets import load_instant_ngp, read_rgb
from .metrics import summarize


def split_fox(frames):
    test = frames[2::5]
    names = {n for n, _, _ in test}
    return [f for f in frames if f[0] not in names], test


def evaluate_fox(root: str | Path, work_dir: str | Path, features: str = "rootsift", matcher: str = "mnn_ratio",
                 localizer_conf: dict | None = None) -> dict:
    camera, frames = load_instant_ngp(root)
    train, test = split_fox(frames)
    t0 = time.perf_counter()
    kfs = [KeyframeInput(n, read_rgb(p), camera, T, i) for i, (n, p, T) in enumerate(train)]
    vmap = build_map(kfs, Path(work_dir) / f"fox_{features}_{matcher}", features=features, matcher=matcher,
                     progress=False)
    build_s = time.perf_counter() - t0
    loc = Localizer(vmap, localizer_conf)
    estimates, per_frame = [], []
    for n, p, T_gt in test:
        r = loc.localize(read_rgb(p), camera, timestamp=0.0)  # same timestamp: no tracking timeout
        estimates.append(r.T_map_cam if r.ok else None)
        per_frame.append({"name": n, "status": r.status, "reason": r.reason, "num_inliers": r.num_inliers,
                          "num_matches": r.num_matches, "timings_s": r.timings})
    centers = np.stack([T[:3, 3] for _, _, T in frames])
    extent = float(np.linalg.norm(centers.max(0) - centers.min(0)))
    summary = summarize(estimates, [T for _, _, T in test], scale=extent / 100.0,
                        thresholds=((0.5, 1.0), (1.0, 2.0), (5.0, 10.0)))
    summary.update({
        "features": features, "matcher": matcher, "num_map_frames": len(train), "num_query_frames": len(test),
        "map_keyframes": vmap.num_keyframes, "map_points": vmap.num_points, "map_build_s": build_s,
        "scene_extent": extent,
        "median_position_error_pct_extent": (100.0 * summary["median_position_error"] / extent
                                             if summary["median_position_error"] is not None else None),
        "median_latency_s": float(np.median([f["timings_s"]["total"] for f in per_frame])),
        "frames": per_frame,
        "recall_note": "position thresholds are % of the scene extent (camera-centre bounding-box diagonal)",
    })
    return summary
