"""Image + camera model -> camera pose in the map frame, with covariance and a status.

Pipeline: local features -> candidate keyframes (VLAD retrieval, plus keyframes near the last pose
while tracking) -> 2D-3D matches (``match_against``: the map observations of each candidate keyframe in turn, or,
faster, for descriptor-only matchers, the 3D points seen by the candidates once each, with the descriptor of their
observation in the best-ranked candidate) -> pycolmap LO-RANSAC PnP + non-linear refinement -> covariance ->
acceptance checks. When no pose is accepted, the next retrieved keyframes are matched too and PnP runs again on
all matches (retrieval fallback: the keyframe that sees the query is sometimes just below the first candidates,
e.g. at night).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..configuration import merge_conf
from ..features import Features, create_extractor
from ..geometry.camera import Camera
from ..geometry.transforms import invert_transform, make_transform
from ..mapping.map_format import VisualMap, load_map
from ..matching import create_matcher
from ..retrieval import VLAD
from .covariance import pose_covariance


class InvalidInputError(ValueError):
    """The image or camera given to the localizer cannot be used (the message says why)."""


@dataclass
class LocalizationResult:
    """status: "ok" or "lost" (then ``reason`` says why and the pose must not be used).

    T_map_cam:   (4, 4) camera-to-map pose (ROS optical camera frame), or None
    covariance:  (6, 6) over (x, y, z, rx, ry, rz) in the map frame, or None
    timings:     seconds per stage: extract, retrieve, match, pnp, covariance, total
    """

    status: str
    reason: str = ""
    T_map_cam: np.ndarray | None = None
    covariance: np.ndarray | None = None
    num_inliers: int = 0
    num_matches: int = 0
    num_keypoints: int = 0
    keyframes: list[int] = field(default_factory=list)
    reprojection_sigma_px: float = float("nan")
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.status == "ok"


class Localizer:
    default_conf = {
        "features": None,  # None: the map's feature configuration (must match the map's descriptors)
        "matcher": None,  # None: the map's matcher configuration
        "num_retrieved": 6,  # keyframes from global-descriptor retrieval
        "num_retrieved_fallback": 6,  # no pose accepted: match the next N retrieved keyframes too (0: off)
        "match_against": "keyframes",  # "keyframes": each candidate's observations in turn (any matcher); "points":
        #                                the candidates' 3D points once each (descriptor-only matchers; neighbouring
        #                                keyframes share most points: about half the matching time, at a cost in
        #                                accuracy: benchmarks/results/match_against.md)
        "num_tracking_candidates": 4,  # keyframes nearest to the last pose while tracking
        "tracking_timeout_s": 3.0,  # use the last pose only if it is at most this old
        "ransac_max_error_px": 8.0,
        "ransac_min_inlier_ratio": 0.05,
        "ransac_max_trials": 10000,
        "ransac_seed": 0,  # deterministic RANSAC; -1 for random
        "min_inliers": 30,
        "min_inlier_ratio": 0.2,
        "max_position_std": 0.0,  # > 0: reject if sqrt(max position variance) exceeds it (map units)
        "max_rotation_std_deg": 0.0,  # > 0: reject if the rotation std exceeds it
    }

    def __init__(self, vmap: VisualMap, conf: dict | None = None):
        self.conf = merge_conf(self.default_conf, conf, "Localizer")
        self.map = vmap
        self.extractor = create_extractor(self.conf["features"] or vmap.manifest["features"])
        self.matcher = create_matcher(self.conf["matcher"] or vmap.manifest["matcher"])
        need = self.matcher.descriptor_dim
        if need is not None and need != vmap.descriptors.shape[1]:
            raise ValueError(f"Localizer: matcher {self.conf['matcher'] or vmap.manifest['matcher']} needs "
                             f"{need}-d descriptors, the map has {vmap.descriptors.shape[1]}-d ones")
        mode = self.conf["match_against"]
        if mode not in ("points", "keyframes"):
            raise ValueError(f"Localizer: match_against must be 'keyframes' or 'points', got {mode!r}")
        if mode == "points" and not self.matcher.descriptor_only:
            raise ValueError(f"Localizer: match_against='points' needs a descriptor-only matcher; "
                             f"{type(self.matcher).__name__} uses each image's keypoint layout (use 'keyframes')")
        self.match_points = mode == "points"
        self.vlad = VLAD(vmap.codebook, vmap.retrieval_columns)
        self._kf_features = [
            Features(vmap.keypoints[vmap.keyframe_slice(k)], np.ones(vmap.offsets[k + 1] - vmap.offsets[k], np.float32),
                     vmap.descriptors[vmap.keyframe_slice(k)],
                     (vmap.cameras[int(vmap.keyframe_camera_ids[k])].width,
                      vmap.cameras[int(vmap.keyframe_camera_ids[k])].height))
            for k in range(vmap.num_keyframes)]
        self._last_pose: np.ndarray | None = None
        self._last_time: float = -np.inf

    @classmethod
    def from_map_dir(cls, path: str | Path, conf: dict | None = None) -> "Localizer":
        return cls(load_map(path), conf)

    def reset(self) -> None:
        """Forget the tracking state (e.g. after a relocalization request)."""
        self._last_pose, self._last_time = None, -np.inf

    def _check_input(self, image: np.ndarray, camera: Camera) -> None:
        if not isinstance(camera, Camera):
            raise InvalidInputError("camera must be a featloc_ros Camera")
        if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim not in (2, 3):
            raise InvalidInputError("image must be an (H, W) or (H, W, 3) uint8 array")
        h, w = image.shape[:2]
        if (w, h) != (camera.width, camera.height):
            raise InvalidInputError(f"image is {w}x{h} but the camera model is {camera.width}x{camera.height}")

    def retrieval_order(self, feats: Features) -> list[int]:
        """All keyframes, most similar (VLAD) first."""
        order, _sims = self.vlad.rank(self.vlad.describe(feats.descriptors), self.map.global_descriptors)
        return [int(k) for k in order]

    def candidates(self, feats: Features, now: float, order: list[int] | None = None) -> list[int]:
        """The first ``num_retrieved`` keyframes of ``order`` (default: ``retrieval_order(feats)``), plus the
        keyframes near the last pose while tracking."""
        order = self.retrieval_order(feats) if order is None else order
        cands = list(order[: self.conf["num_retrieved"]])
        if self._last_pose is not None and now - self._last_time <= self.conf["tracking_timeout_s"]:
            P = self.map.T_map_cam
            d = np.linalg.norm(P[:, :3, 3] - self._last_pose[:3, 3], axis=1)
            cosang = P[:, :3, 2] @ self._last_pose[:3, 2]
            d[cosang < 0.5] = np.inf  # optical axes more than 60 degrees apart
            for k in np.argsort(d)[: self.conf["num_tracking_candidates"]]:
                if np.isfinite(d[k]) and int(k) not in cands:
                    cands.append(int(k))
        return cands

    def localize(self, image: np.ndarray, camera: Camera, timestamp: float | None = None) -> LocalizationResult:
        """Localize one image. ``timestamp`` (seconds) drives the tracking timeout; default: wall clock.

        Raises InvalidInputError for unusable input; every other failure is a "lost" result.
        """
        self._check_input(image, camera)
        now = time.monotonic() if timestamp is None else float(timestamp)
        timings: dict[str, float] = {}
        t0 = t = time.perf_counter()

        def lap(name):  # stages that run twice (retrieval fallback) add up
            nonlocal t
            t1 = time.perf_counter()
            timings[name] = timings.get(name, 0.0) + t1 - t
            t = t1

        feats = self.extractor(image)
        lap("extract")
        result = LocalizationResult(status="lost", num_keypoints=len(feats), timings=timings)
        if len(feats) < self.conf["min_inliers"]:
            result.reason = f"only {len(feats)} keypoints"
        else:
            order = self.retrieval_order(feats)
            cands = self.candidates(feats, now, order)
            lap("retrieve")
            best: dict[int, tuple[float, int]] = {}  # query keypoint -> (score, point index)
            self._match(feats, cands, best, [])
            lap("match")
            result = self._solve(feats, camera, cands, best, result, lap)
            n_fallback = self.conf["num_retrieved_fallback"]
            if not result.ok and n_fallback > 0:
                start = self.conf["num_retrieved"]
                extra = [k for k in order[start:start + n_fallback] if k not in cands]
                if extra:
                    self._match(feats, extra, best, cands)
                    lap("match")
                    first_reason = result.reason
                    result = self._solve(feats, camera, cands + extra, best, result, lap)
                    if not result.ok:
                        result.reason = f"{first_reason}; with {len(extra)} more keyframes: {result.reason}"
        if result.ok:
            self._last_pose, self._last_time = result.T_map_cam, now
        timings["total"] = time.perf_counter() - t0
        return result

    def _match(self, feats: Features, keyframes: list[int], best: dict[int, tuple[float, int]],
               matched_before: list[int]) -> None:
        """Match the query against the map seen by ``keyframes`` (``match_against``); ``best`` keeps, per query
        keypoint, the 3D point of its highest-scoring match. ``matched_before``: keyframes whose points were already
        matched (points mode: those points are not matched again)."""
        if self.match_points:
            rows = self._point_rows(keyframes, matched_before)
            if len(rows):
                points = Features(self.map.keypoints[rows], np.ones(len(rows), np.float32), self.map.descriptors[rows],
                                  self._kf_features[keyframes[0]].image_size)
                m = self.matcher(feats, points)
                self._keep_best(best, m, self.map.point_index[rows[m.indices[:, 1]]])
            return
        for k in keyframes:
            m = self.matcher(feats, self._kf_features[k])
            self._keep_best(best, m, self.map.point_index[self.map.offsets[k] + m.indices[:, 1]])

    def _point_rows(self, keyframes: list[int], matched_before: list[int]) -> np.ndarray:
        """Observation rows, one per 3D point seen by ``keyframes``: the point's observation in the first of them
        that sees it (retrieval order: the most similar view first); points seen by ``matched_before`` left out."""
        rows = np.concatenate([np.arange(self.map.offsets[k], self.map.offsets[k + 1]) for k in keyframes])
        _, first = np.unique(self.map.point_index[rows], return_index=True)
        rows = rows[np.sort(first)]
        if matched_before:
            before = np.concatenate([self.map.point_index[self.map.keyframe_slice(k)] for k in matched_before])
            rows = rows[~np.isin(self.map.point_index[rows], before)]
        return rows

    @staticmethod
    def _keep_best(best: dict[int, tuple[float, int]], m, points: np.ndarray) -> None:
        for q, p, s in zip(m.indices[:, 0].tolist(), points.tolist(), m.scores.tolist()):
            if q not in best or s > best[q][0]:
                best[q] = (s, p)

    def _solve(self, feats: Features, camera: Camera, keyframes: list[int], best: dict[int, tuple[float, int]],
               previous: LocalizationResult, lap) -> LocalizationResult:
        """PnP-RANSAC + refinement on the 2D-3D matches, covariance and acceptance checks -> a new result."""
        import pycolmap

        result = LocalizationResult(status="lost", num_keypoints=previous.num_keypoints, timings=previous.timings,
                                    keyframes=list(keyframes), num_matches=len(best))
        if len(best) < self.conf["min_inliers"]:
            result.reason = f"only {len(best)} 2D-3D matches"
            return result
        q_idx = np.fromiter(best.keys(), dtype=np.int64)
        p_idx = np.array([best[q][1] for q in q_idx.tolist()], dtype=np.int64)
        pts2d = feats.keypoints[q_idx].astype(np.float64)
        pts3d = self.map.points_xyz[p_idx]
        est = pycolmap.AbsolutePoseEstimationOptions()
        est.ransac.max_error = float(self.conf["ransac_max_error_px"])
        est.ransac.min_inlier_ratio = float(self.conf["ransac_min_inlier_ratio"])
        est.ransac.max_num_trials = int(self.conf["ransac_max_trials"])
        est.ransac.random_seed = int(self.conf["ransac_seed"])
        ans = pycolmap.estimate_and_refine_absolute_pose(pts2d, pts3d, camera.to_pycolmap(), est)
        lap("pnp")
        if ans is None:
            result.reason = "PnP-RANSAC found no pose"
            return result
        inliers = np.asarray(ans["inlier_mask"], dtype=bool)
        cam_from_world = ans["cam_from_world"]
        T_map_cam = invert_transform(make_transform(cam_from_world.rotation.matrix(), cam_from_world.translation))
        n_in = int(inliers.sum())
        result.num_inliers, result.T_map_cam = n_in, T_map_cam
        if n_in >= 6:
            result.covariance, result.reprojection_sigma_px = pose_covariance(camera, T_map_cam, pts2d[inliers],
                                                                              pts3d[inliers])
        lap("covariance")
        result.reason = self._reject_reason(result)
        if not result.reason:
            result.status = "ok"
        return result

    def _reject_reason(self, r: LocalizationResult) -> str:
        c = self.conf
        if r.num_inliers < c["min_inliers"]:
            return f"{r.num_inliers} inliers < min_inliers {c['min_inliers']}"
        ratio = r.num_inliers / max(r.num_matches, 1)
        if ratio < c["min_inlier_ratio"]:
            return f"inlier ratio {ratio:.2f} < min_inlier_ratio {c['min_inlier_ratio']}"
        if r.covariance is None or not np.all(np.isfinite(r.covariance)):
            return "pose covariance is not finite (degenerate geometry)"
        pos_std = float(np.sqrt(np.max(np.diag(r.covariance)[:3])))
        rot_std = float(np.degrees(np.sqrt(np.max(np.diag(r.covariance)[3:]))))
        if c["max_position_std"] > 0 and pos_std > c["max_position_std"]:
            return f"position std {pos_std:.3g} > max_position_std {c['max_position_std']}"
        if c["max_rotation_std_deg"] > 0 and rot_std > c["max_rotation_std_deg"]:
            return f"rotation std {rot_std:.3g} deg > max_rotation_std_deg {c['max_rotation_std_deg']}"
        return ""
