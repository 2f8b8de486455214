"""Fox (instant-ngp) localization protocol: map from 40 frames with COLMAP poses, localize the
other 10 (every 5th frame, starting at the 3rd) and compare with their poses."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .datasets import load_instant_ngp, read_rgb
from .localization import Frame, evaluate_localization

FOX_THRESHOLDS_PCT = ((0.5, 1.0), (1.0, 2.0), (5.0, 10.0))  # (% of scene extent, degrees)


def fox_frames(root: str | Path) -> tuple[list[Frame], list[Frame], float]:
    camera, frames = load_instant_ngp(root)
    all_frames = [Frame(n, read_rgb(p), camera, T) for n, p, T in frames]
    test = all_frames[2::5]
    test_names = {f.name for f in test}
    centers = np.stack([f.T_world_cam[:3, 3] for f in all_frames])
    extent = float(np.linalg.norm(centers.max(0) - centers.min(0)))
    return [f for f in all_frames if f.name not in test_names], test, extent


def evaluate_fox(root: str | Path, work_dir: str | Path, features: str | dict = "rootsift", matcher: str = "mnn_ratio",
                 localizer_conf: dict | None = None, frames=None) -> dict:
    """``frames``: the output of fox_frames(root) when already loaded."""
    train, test, extent = frames or fox_frames(root)
    label = features if isinstance(features, str) else "_".join(str(v) for v in features.values())
    summary = evaluate_localization(train, test, Path(work_dir) / f"fox_{label}_{matcher}", features, matcher,
                                    thresholds=FOX_THRESHOLDS_PCT, scale=extent / 100.0,
                                    localizer_conf=localizer_conf)
    summary["scene_extent"] = extent
    summary["median_position_error_pct_extent"] = (100.0 * summary["median_position_error"] / extent
                                                   if summary["median_position_error"] is not None else None)
    summary["recall_note"] = "position thresholds are % of the scene extent (camera-centre bounding-box diagonal)"
    return summary
