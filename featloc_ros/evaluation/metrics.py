"""Localization metrics: pose errors, recall at thresholds, medians."""

from __future__ import annotations

from math import comb

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


def _median_of_rows(x: np.ndarray) -> np.ndarray:
    """Median of each row of (R, N) differences that may hold -inf and +inf (a query one method lost and the other
    kept): where the two middle values are -inf and +inf their mean does not exist, and the lower one is taken."""
    with np.errstate(invalid="ignore"):
        med = np.median(x, axis=1)
    split = np.isnan(med)
    med[split] = np.quantile(x[split], 0.5, axis=1, method="lower")
    return med


def paired_error_comparison(errors, reference, resamples: int = 2000, seed: int = 0) -> dict:
    """Per-query errors of a method against a reference on the same queries in the same order (None: not
    localized, counted as an infinite error): how many queries each wins, an exact two-sided sign test over the
    queries that differ, the median and mean of both (the means over the queries both localized), and the median of
    the paired differences (method - reference) with a 95% bootstrap interval over the queries. A small query set
    (fox: 10) gives wide intervals: an interval that contains 0 cannot tell the two apart."""
    e = np.array([np.inf if v is None else v for v in errors], np.float64)
    r = np.array([np.inf if v is None else v for v in reference], np.float64)
    if e.shape != r.shape or e.size == 0:
        raise ValueError(f"paired comparison needs the same non-empty queries, got {e.shape} and {r.shape}")
    lower, higher = int(np.sum(e < r)), int(np.sum(e > r))
    n = lower + higher
    tail = sum(comb(n, k) for k in range(min(lower, higher) + 1)) / 2.0 ** n if n else 1.0
    both = np.isfinite(e) & np.isfinite(r)
    with np.errstate(invalid="ignore"):  # inf - inf where neither localized: not a difference
        diff = np.where(both | (np.isfinite(e) != np.isfinite(r)), e - r, 0.0)
    rng = np.random.default_rng(seed)
    boot = _median_of_rows(diff[rng.integers(0, e.size, (resamples, e.size))])
    with np.errstate(invalid="ignore"):
        lo, hi = np.percentile(boot, [2.5, 97.5])
    if np.isnan(lo) or np.isnan(hi):  # interpolated between infinities: the neighbouring resample values instead
        lo, hi = np.percentile(boot, 2.5, method="lower"), np.percentile(boot, 97.5, method="higher")
    return {"queries": int(e.size), "lower": lower, "higher": higher, "ties": int(e.size - n),
            "sign_test_p": float(min(1.0, 2.0 * tail)),
            "median": float(np.median(e)), "reference_median": float(np.median(r)),
            "mean_both_localized": float(np.mean(e[both])) if both.any() else float("nan"),
            "reference_mean_both_localized": float(np.mean(r[both])) if both.any() else float("nan"),
            "median_difference": float(_median_of_rows(diff[None])[0]), "ci95": [float(lo), float(hi)],
            "resamples": int(resamples)}
