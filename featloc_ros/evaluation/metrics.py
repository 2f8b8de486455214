"""Localization metrics: pose errors, recall at thresholds, medians."""

from __future__ import annotations

import numpy as np

from ..geometry.transforms import pose_errors

DEFAULT_THRESHOLDS = ((0.25, 2.0), (0.5, 5.0), (5.0, 10.0))


def summarize(estimates: list[np.ndarray | None], ground_truth: list[np.ndarray],
              thresholds=DEFAULT_THRESHOLDS, scale: float = 1.0) -> dict:
    """Errors of each estimate (None = not localized) against ground truth.

    ``scale`` multiplies the position thresholds (e.g. for scenes without metric scale).
    Medians are over localized frames; recall is over all frames.
    """
    pos, rot = [], []
    for T, G in zip(estimates, ground_truth):
        if T is None:
            pos.append(np.inf)
            rot.append(np.inf)
        else:
            dt, dr = pose_errors(T, G)
            pos.append(dt)
            rot.append(dr)
    pos, rot = np.array(pos), np.array(rot)
    ok = np.isfinite(pos)
    out = {
        "num_frames": int(len(pos)), "num_localized": int(ok.sum()),
        "median_position_error": float(np.median(pos[ok])) if ok.any() else None,
        "median_rotation_error_deg": float(np.median(rot[ok])) if ok.any() else None,
        "position_errors": [float(x) if np.isfinite(x) else None for x in pos],
        "rotation_errors_deg": [float(x) if np.isfinite(x) else None for x in rot],
        "recall": {},
    }
    for dt, dr in thresholds:
        out["recall"][f"{dt * scale:.3g}/{dr:g}deg"] = float(np.mean((pos <= dt * scale) & (rot <= dr)))
    return out
