"""Localization protocol shared by the fox, TUM and demo-scene evaluations: build a map from
frames with known poses, localize held-out frames, compare with their poses."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..geometry.camera import Camera
from ..localization import Localizer
from ..mapping.builder import KeyframeInput, build_map
from .metrics import summarize


@dataclass
class Frame:
    name: str
    image: np.ndarray  # (H, W, 3) uint8 RGB
    camera: Camera
    T_world_cam: np.ndarray  # optical camera frame


def build_evaluation_map(map_frames: list[Frame], work_dir: str | Path, features: str | dict = "rootsift",
                         matcher: str | dict = "mnn_ratio"):
    """Map from frames with known poses; returns (VisualMap, build seconds)."""
    t0 = time.perf_counter()
    kfs = [KeyframeInput(f.name, f.image, f.camera, f.T_world_cam, i) for i, f in enumerate(map_frames)]
    vmap = build_map(kfs, work_dir, features=features, matcher=matcher, progress=False)
    return vmap, time.perf_counter() - t0


def ransac_trials(num_inliers: int, num_matches: int, sample_size: int = 3, confidence: float = 0.99999,
                  multiplier: float = 3.0, min_trials: int = 100, max_trials: int = 10000) -> int:
    """The number of RANSAC trials COLMAP's stopping rule asks for at the final inlier ratio w of a PnP problem
    (pycolmap's defaults: P3P samples, confidence 0.99999, dynamic multiplier 3, clamped to [100, 10000]):
    multiplier * log(1 - confidence) / log(1 - w^sample_size). pycolmap does not report the trials it ran; this
    is the count its adaptive loop converges to, a function of the match quality alone."""
    if num_matches <= 0 or num_inliers <= 0:
        return max_trials
    w = min(1.0, num_inliers / num_matches)
    p = w ** sample_size
    if p >= 1.0:
        return min_trials
    trials = multiplier * np.log(1.0 - confidence) / np.log(1.0 - p)
    return int(min(max_trials, max(min_trials, np.ceil(trials))))


def localize_frames(vmap, query_frames: list[Frame], thresholds=((0.25, 2.0), (0.5, 5.0), (5.0, 10.0)),
                    scale: float = 1.0, localizer_conf: dict | None = None, tracking: bool = False) -> dict:
    """Localize each query and summarise. ``scale`` multiplies the position thresholds (1 for
    metric scenes). Without ``tracking`` the tracking state is reset before every query, so each
    is localized from retrieval alone."""
    loc = Localizer(vmap, localizer_conf)
    estimates, per_frame = [], []
    for i, f in enumerate(query_frames):
        if not tracking:
            loc.reset()
        r = loc.localize(f.image, f.camera, timestamp=float(i))
        estimates.append(r.T_map_cam if r.ok else None)
        per_frame.append({"name": f.name, "status": r.status, "reason": r.reason, "num_inliers": r.num_inliers,
                          "num_matches": r.num_matches, "timings_s": r.timings,
                          "ransac_trials": ransac_trials(r.num_inliers, r.num_matches) if r.ok else None})
    summary = summarize(estimates, [f.T_world_cam for f in query_frames], thresholds=thresholds, scale=scale)
    summary.update({
        "features": vmap.manifest["features"].get("name"), "matcher": vmap.manifest["matcher"].get("name"),
        "num_query_frames": len(query_frames), "map_keyframes": vmap.num_keyframes, "map_points": vmap.num_points,
        "median_latency_s": float(np.median([p["timings_s"]["total"] for p in per_frame])) if per_frame else None,
        "median_ransac_trials": (float(np.median([p["ransac_trials"] for p in per_frame if p["ransac_trials"]]))
                                 if any(p["ransac_trials"] for p in per_frame) else None),
        "frames": per_frame,
    })
    return summary


def evaluate_localization(map_frames: list[Frame], query_frames: list[Frame], work_dir: str | Path,
                          features: str | dict = "rootsift", matcher: str | dict = "mnn_ratio",
                          thresholds=((0.25, 2.0), (0.5, 5.0), (5.0, 10.0)), scale: float = 1.0,
                          localizer_conf: dict | None = None, tracking: bool = False) -> dict:
    """Build a map from ``map_frames`` and localize ``query_frames`` in it (see localize_frames)."""
    vmap, build_s = build_evaluation_map(map_frames, work_dir, features, matcher)
    summary = localize_frames(vmap, query_frames, thresholds, scale, localizer_conf, tracking)
    summary.update({"num_map_frames": len(map_frames), "map_build_s": build_s})
    return summary
