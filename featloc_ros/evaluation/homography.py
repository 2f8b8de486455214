"""Homography benchmark protocol (HPatches style): pair sets with ground-truth homographies and
the metrics: mean matching accuracy (MMA) at 1-10 px, homography estimation accuracy and AUC of
the mean corner error, number of matches.

MAGSAC samples the matches in their given order with a fixed seed, so one estimate per pair is one draw of its
sampling luck: on a small set (graf has 5 pairs) a method's AUC@3 moves by a few hundredths between orders of the
same matches. ``ransac_orders`` > 1 estimates the homography again for random orders of the matches (seeded, the
same orders for every method) and the summary reports the AUC mean and spread over them."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from ..synthesis import apply_photometric, sample_homography, warp_image
from .datasets import read_rgb

MMA_THRESHOLDS = tuple(range(1, 11))
H_THRESHOLDS = (1, 3, 5)


@dataclass
class HomographyPair:
    name: str
    image0: np.ndarray  # (H, W, 3) uint8 RGB
    image1: np.ndarray
    H_0to1: np.ndarray  # pixels of image0 -> pixels of image1


def resize_max(image: np.ndarray, max_side: int) -> tuple[np.ndarray, np.ndarray]:
    """Resize so the longest side is at most ``max_side``; returns the image and S (3x3) with
    pixels_resized = S @ pixels_original (pixel-centre convention)."""
    h, w = image.shape[:2]
    S, (nw, nh) = resize_transform(w, h, max_side)
    if (nw, nh) == (w, h):
        return image, S
    return cv2.resize(image, (nw, nh), interpolation=cv2.INTER_AREA), S


def resize_transform(width: int, height: int, max_side: int) -> tuple[np.ndarray, tuple[int, int]]:
    """The resize of ``resize_max`` for an image of this size: (S (3x3), (new width, new height))."""
    s = min(1.0, max_side / max(height, width))
    if s == 1.0:
        return np.eye(3), (width, height)
    nw, nh = round(width * s), round(height * s)
    sx, sy = nw / width, nh / height
    return np.array([[sx, 0, 0.5 * sx - 0.5], [0, sy, 0.5 * sy - 0.5], [0, 0, 1.0]]), (nw, nh)


def oxford_pairs(root: Path, max_side: int = 0) -> list[HomographyPair]:
    """Oxford affine-covariant sequence (e.g. graf): img1 against img2..img6 with H1toNp."""
    im1 = read_rgb(root / "img1.ppm")
    pairs = []
    for n in range(2, 7):
        H = np.loadtxt(root / f"H1to{n}p")
        im = read_rgb(root / f"img{n}.ppm")
        if max_side:
            im1r, S0 = resize_max(im1, max_side)
            imr, S1 = resize_max(im, max_side)
            pairs.append(HomographyPair(f"{root.name}_1_{n}", im1r, imr, S1 @ H @ np.linalg.inv(S0)))
        else:
            pairs.append(HomographyPair(f"{root.name}_1_{n}", im1, im, H))
    return pairs


def rotation_about_center(w: int, h: int, degrees: float) -> np.ndarray:
    """Rotation by ``degrees`` (clockwise on screen, y down) about the image centre, same canvas.

    The centre (w/2 - 0.25, h/2 - 0.25) was measured on the imcui files (RANSAC fits on 90 and
    180 degree pairs) and is within 0.3 px of both common conventions."""
    th = np.radians(degrees)
    c, s = np.cos(th), np.sin(th)
    R = np.array([[c, -s, 0], [s, c, 0], [0, 0, 1.0]])
    C = np.array([[1, 0, w / 2 - 0.25], [0, 1, h / 2 - 0.25], [0, 0, 1.0]])
    return C @ R @ np.linalg.inv(C)


def rotation_pairs(rot_root: Path, orig_root: Path, max_side: int = 0, ids: list[str] | None = None
                   ) -> list[HomographyPair]:
    """``<id>_rotNN.jpg`` against ``<id>.jpg`` (in-plane rotation NN degrees, same canvas)."""
    pairs = []
    for path in sorted(rot_root.glob("*_rot*.jpg")):
        ident, rot = path.stem.rsplit("_rot", 1)
        if ids is not None and ident not in ids:
            continue
        im0 = read_rgb(orig_root / f"{ident}.jpg")
        im1 = read_rgb(path)
        h, w = im0.shape[:2]
        if im1.shape[:2] != (h, w):
            raise ValueError(f"{path}: size {im1.shape[:2]} differs from {orig_root / (ident + '.jpg')}")
        H = rotation_about_center(w, h, float(rot))
        if max_side:
            im0, S = resize_max(im0, max_side)
            im1, _ = resize_max(im1, max_side)
            H = S @ H @ np.linalg.inv(S)
        pairs.append(HomographyPair(f"{ident}_rot{rot}", im0, im1, H))
    return pairs


SYNTHETIC_SETS = {
    # name: (homography kwargs, photometric change)
    "synthetic_moderate": ({"max_rotation_deg": 15.0}, "none"),
    "synthetic_rot30": ({"max_rotation_deg": 30.0}, "none"),
    "synthetic_rot180": ({"max_rotation_deg": 180.0}, "none"),
    "synthetic_illumination": ({"max_rotation_deg": 15.0}, "illumination"),
    "synthetic_night": ({"max_rotation_deg": 15.0}, "night"),
}


def synthetic_pairs(set_name: str, photos: list[Path], seed: int = 0, max_side: int = 640,
                    warps_per_photo: int = 1) -> list[HomographyPair]:
    """``warps_per_photo`` pairs per photo: the photo (resized) against a warped, photometrically changed copy.
    Deterministic: warp k of photo i is drawn from the generator seeded with (seed, set index, i) for k = 0 and
    (seed, set index, i, k) after, so the pairs of a smaller ``warps_per_photo`` are a subset of a larger one's."""
    if warps_per_photo < 1:
        raise ValueError(f"warps_per_photo must be at least 1, got {warps_per_photo}")
    hkw, change = SYNTHETIC_SETS[set_name]
    set_index = list(SYNTHETIC_SETS).index(set_name)
    pairs = []
    for i, path in enumerate(photos):
        im0, _ = resize_max(read_rgb(path), max_side)
        h, w = im0.shape[:2]
        for k in range(warps_per_photo):
            rng = np.random.default_rng([seed, set_index, i] + ([k] if k else []))
            H = sample_homography(rng, w, h, **hkw)
            im1 = apply_photometric(warp_image(im0, H), change, rng)
            pairs.append(HomographyPair(f"{set_name}_{path.stem}" + (f"_w{k}" if k else ""), im0, im1, H))
    return pairs


def project(H: np.ndarray, pts: np.ndarray) -> np.ndarray:
    p = np.c_[pts, np.ones(len(pts))] @ H.T
    return p[:, :2] / p[:, 2:3]


def corner_error(H_est: np.ndarray | None, H_gt: np.ndarray, w: int, h: int) -> float:
    if H_est is None or not np.all(np.isfinite(H_est)):
        return float("inf")
    corners = np.array([[0, 0], [w - 1, 0], [w - 1, h - 1], [0, h - 1]], np.float64)
    return float(np.mean(np.linalg.norm(project(H_est, corners) - project(H_gt, corners), axis=1)))


def magsac_homographies(p0: np.ndarray, p1: np.ndarray, ransac_px: float = 3.0
                        ) -> tuple[np.ndarray | None, np.ndarray | None]:
    """One OpenCV MAGSAC run on matched points (N,2) -> (N,2) -> (its homography, the least-squares homography of
    its inliers (MAGSAC's own when it has fewer than 4)); (None, None) with fewer than 4 matches or no model."""
    if len(p0) < 4:
        return None, None
    H, mask = cv2.findHomography(p0, p1, cv2.USAC_MAGSAC, ransac_px, confidence=0.9999, maxIters=10000)
    if H is None or mask is None or int(mask.sum()) < 4:
        return H, H
    inliers = mask.ravel().astype(bool)
    H_ls, _ = cv2.findHomography(p0[inliers], p1[inliers], 0)
    return H, (H if H_ls is None else H_ls)


def estimate_homography(p0: np.ndarray, p1: np.ndarray, ransac_px: float = 3.0, refit: bool = False
                        ) -> np.ndarray | None:
    """OpenCV MAGSAC homography of matched points (N,2) -> (N,2); None with fewer than 4 matches or no model.
    ``refit``: instead, the least-squares homography of MAGSAC's inliers (MAGSAC's own when it has fewer than 4)."""
    H, H_refit = magsac_homographies(p0, p1, ransac_px)
    return H_refit if refit else H


def match_residuals(pair: HomographyPair, kpts0: np.ndarray, kpts1: np.ndarray, matches: np.ndarray
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Matches (M,2) int64, their points p0, p1 (M,2) and residuals p1 - H p0 (M,2) against the ground truth."""
    m = np.asarray(matches, dtype=np.int64).reshape(-1, 2)
    p0 = np.asarray(kpts0, np.float64)[m[:, 0]] if len(m) else np.zeros((0, 2))
    p1 = np.asarray(kpts1, np.float64)[m[:, 1]] if len(m) else np.zeros((0, 2))
    return m, p0, p1, (p1 - project(pair.H_0to1, p0)) if len(m) else np.zeros((0, 2))


def evaluate_pair(pair: HomographyPair, kpts0: np.ndarray, kpts1: np.ndarray, matches: np.ndarray,
                  ransac_px: float = 3.0, ransac_orders: int = 1, refit: bool = False) -> dict:
    """Per-pair metrics from matched keypoints (pixel coordinates of image0 / image1).

    ``corner_error`` comes from the matches in their given order; with ``ransac_orders`` = R > 1,
    ``corner_errors`` (R values) adds R - 1 estimates on random orders of the matches (order r is drawn from
    seed r, independent of the method). ``refit``: also ``corner_errors_refit`` (R values), the same estimates
    refitted by least squares on MAGSAC's inliers (a second measure; the criteria use MAGSAC's own)."""
    m, p0, p1, residual = match_residuals(pair, kpts0, kpts1, matches)
    err = np.linalg.norm(residual, axis=1)
    h, w = pair.image0.shape[:2]
    errors, refitted = [], []
    for r in range(max(1, int(ransac_orders))):
        order = np.arange(len(m)) if r == 0 else np.random.default_rng(r).permutation(len(m))
        H, H_refit = magsac_homographies(p0[order], p1[order], ransac_px)
        errors.append(corner_error(H, pair.H_0to1, w, h))
        if refit:
            refitted.append(corner_error(H_refit, pair.H_0to1, w, h))
    out = {
        "pair": pair.name, "num_keypoints0": int(len(kpts0)), "num_keypoints1": int(len(kpts1)),
        "num_matches": int(len(m)), "num_correct_3px": int(np.sum(err <= 3)),
        "mma": {t: float(np.mean(err <= t)) if len(m) else 0.0 for t in MMA_THRESHOLDS},
        "corner_error": errors[0],
    }
    if len(errors) > 1:
        out["corner_errors"] = errors
    if refit:
        out["corner_errors_refit"] = refitted
    return out


def auc(errors: list[float], threshold: float) -> float:
    """Area under the recall-vs-error curve up to ``threshold``, normalised to [0, 1]."""
    e = np.sort(np.asarray(errors, np.float64))
    recall = np.arange(1, len(e) + 1) / len(e)
    e = np.r_[0.0, e]
    recall = np.r_[0.0, recall]
    last = np.searchsorted(e, threshold)
    x = np.r_[e[:last], threshold]
    y = np.r_[recall[:last], recall[last - 1]]
    return float(np.trapezoid(y, x) / threshold)


def pair_corner_errors(per_pair: list[dict]) -> np.ndarray:
    """(R, pairs) corner errors: the R RANSAC orders of each pair (R = 1 without ``corner_errors``)."""
    return np.array([p.get("corner_errors", [p["corner_error"]]) for p in per_pair], np.float64).T


def paired_auc_difference(errors: np.ndarray, reference: np.ndarray, threshold: float = 3.0,
                          resamples: int = 2000, seed: int = 0) -> dict:
    """AUC@threshold of a method minus that of a reference on the same pairs, with a 95% bootstrap interval.

    ``errors``, ``reference``: (R, pairs) corner errors (R RANSAC orders, the same pairs in the same order). The
    difference is the mean over the orders of AUC(method) - AUC(reference); the interval resamples the pairs with
    replacement (the same draw for both, so what the pairs have in common cancels) and gives the 2.5 and 97.5
    percentiles of that difference. An interval that contains 0 means the set cannot tell the two apart."""
    errors, reference = np.atleast_2d(errors), np.atleast_2d(reference)
    if errors.shape[1] != reference.shape[1] or errors.shape[1] == 0:
        raise ValueError(f"paired comparison needs the same non-empty pairs, got {errors.shape} and {reference.shape}")

    def difference(idx: np.ndarray) -> float:
        return float(np.mean([auc(list(e[idx]), threshold) for e in errors])
                     - np.mean([auc(list(e[idx]), threshold) for e in reference]))

    n = errors.shape[1]
    rng = np.random.default_rng(seed)
    boot = np.array([difference(rng.integers(0, n, n)) for _ in range(resamples)])
    lo, hi = np.percentile(boot, [2.5, 97.5])
    return {"difference": difference(np.arange(n)), "ci95": [float(lo), float(hi)],
            "p_not_above": float(np.mean(boot <= 0)), "resamples": int(resamples)}


def summarize_pairs(per_pair: list[dict]) -> dict:
    """Set metrics. When every pair has ``corner_errors`` (R orders), ``h_auc_orders`` gives per threshold the
    mean, standard deviation, min and max over the R orders of the set's AUC (order r of every pair together).
    When every pair has ``corner_errors_refit``, ``h_auc3_refit`` gives the mean and std of their AUC@3 alike."""
    errs = [p["corner_error"] for p in per_pair]
    out = {
        "num_pairs": len(per_pair),
        "mma": {t: float(np.mean([p["mma"][t] for p in per_pair])) for t in MMA_THRESHOLDS},
        "h_accuracy": {t: float(np.mean(np.asarray(errs) <= t)) for t in H_THRESHOLDS},
        "h_auc": {t: auc(errs, t) for t in H_THRESHOLDS},
        "mean_num_matches": float(np.mean([p["num_matches"] for p in per_pair])),
        "mean_num_correct_3px": float(np.mean([p["num_correct_3px"] for p in per_pair])),
    }
    orders = {len(p.get("corner_errors", ())) for p in per_pair}
    if per_pair and len(orders) == 1 and min(orders) > 1:
        by_order = pair_corner_errors(per_pair)  # (R, pairs)
        out["ransac_orders"] = int(by_order.shape[0])
        out["h_auc_orders"] = {}
        for t in H_THRESHOLDS:
            a = np.array([auc(list(e), t) for e in by_order])
            out["h_auc_orders"][t] = {"mean": float(a.mean()), "std": float(a.std()), "min": float(a.min()),
                                      "max": float(a.max())}
    if per_pair and all("corner_errors_refit" in p for p in per_pair):
        by_order = np.array([p["corner_errors_refit"] for p in per_pair]).T  # (R, pairs)
        a = np.array([auc(list(e), 3) for e in by_order])
        out["h_auc3_refit"] = {"mean": float(a.mean()), "std": float(a.std())}
    return out
