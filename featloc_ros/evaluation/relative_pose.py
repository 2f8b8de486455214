"""Relative pose protocol (SuperGlue / LightGlue style): essential matrix with RANSAC from matches,
pose error = max(angular rotation error, angular translation error), AUC at 5/10/20 degrees."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from ..geometry.transforms import rotation_angle_deg
from .datasets import read_rgb
from .homography import auc

POSE_THRESHOLDS = (5, 10, 20)


@dataclass
class PosePair:
    name: str
    image0: np.ndarray
    image1: np.ndarray
    K0: np.ndarray
    K1: np.ndarray
    T_0to1: np.ndarray  # maps camera-0 points into camera 1


def scannet_pairs(root: Path, list_file: str = "scannet_sample_pairs_with_gt.txt") -> list[PosePair]:
    """SuperGlue's pair list: name0 name1 rot0 rot1 K0(9) K1(9) T_0to1(16); EXIF rotations are 0 here."""
    pairs = []
    for line in (root / list_file).read_text().splitlines():
        tok = line.split()
        if len(tok) < 38:
            continue
        if int(tok[2]) or int(tok[3]):
            raise ValueError(f"{root / list_file}: EXIF rotations are not supported ({line[:60]}...)")
        vals = np.array(tok[4:], dtype=np.float64)
        img_dir = root / "scannet_sample_images"
        pairs.append(PosePair(f"{Path(tok[0]).stem}__{Path(tok[1]).stem}", read_rgb(img_dir / tok[0]),
                              read_rgb(img_dir / tok[1]), vals[:9].reshape(3, 3), vals[9:18].reshape(3, 3),
                              vals[18:34].reshape(4, 4)))
    return pairs


def angle_between_deg(a: np.ndarray, b: np.ndarray) -> float:
    c = np.dot(a, b) / max(np.linalg.norm(a) * np.linalg.norm(b), 1e-12)
    return float(np.degrees(np.arccos(np.clip(c, -1.0, 1.0))))


def evaluate_pose_pair(pair: PosePair, kpts0, kpts1, matches, ransac_px: float = 1.0) -> dict:
    m = np.asarray(matches, np.int64).reshape(-1, 2)
    err = float("inf")
    if len(m) >= 5:
        p0 = cv2.undistortPoints(np.asarray(kpts0, np.float64)[m[:, 0]].reshape(-1, 1, 2), pair.K0, None).reshape(-1, 2)
        p1 = cv2.undistortPoints(np.asarray(kpts1, np.float64)[m[:, 1]].reshape(-1, 1, 2), pair.K1, None).reshape(-1, 2)
        f = np.mean([pair.K0[0, 0], pair.K0[1, 1], pair.K1[0, 0], pair.K1[1, 1]])
        E, mask = cv2.findEssentialMat(p0, p1, np.eye(3), method=cv2.RANSAC, prob=0.99999, threshold=ransac_px / f)
        if E is not None:
            best = None
            for Ei in np.split(E, len(E) // 3):  # OpenCV may return several solutions stacked
                n, R, t, _ = cv2.recoverPose(Ei, p0, p1, np.eye(3), 1e9, mask=mask.copy())[:4]
                if best is None or n > best[0]:
                    best = (n, R, t.ravel())
            _, R, t = best
            e_R = rotation_angle_deg(R.T @ pair.T_0to1[:3, :3])
            e_t = angle_between_deg(t, pair.T_0to1[:3, 3])
            e_t = min(e_t, 180.0 - e_t)  # the sign of t is ambiguous for pure translation errors
            err = max(e_R, e_t)
    return {"pair": pair.name, "num_matches": int(len(m)), "pose_error_deg": err}


def summarize_pose(per_pair: list[dict]) -> dict:
    errs = [p["pose_error_deg"] for p in per_pair]
    return {"num_pairs": len(per_pair), "auc": {t: auc(errs, t) for t in POSE_THRESHOLDS},
            "mean_num_matches": float(np.mean([p["num_matches"] for p in per_pair]))}
