"""Keyframe selection by time and motion, and image-pair selection for matching."""

from __future__ import annotations

import numpy as np

from ..geometry.transforms import rotation_angle_deg


class KeyframeSelector:
    """Accept a frame when at least ``min_interval_s`` passed since the last keyframe and either it
    moved ``min_translation`` (map units) / turned ``min_rotation_deg``, or ``max_interval_s`` passed.
    Without poses only the time rules apply (every ``max_interval_s``, or every frame if 0)."""

    def __init__(self, min_interval_s: float = 0.0, max_interval_s: float = 1.0, min_translation: float = 0.2,
                 min_rotation_deg: float = 10.0):
        self.min_interval_ns = int(min_interval_s * 1e9)
        self.max_interval_ns = int(max_interval_s * 1e9)
        self.min_translation, self.min_rotation_deg = min_translation, min_rotation_deg
        self._last_stamp: int | None = None
        self._last_pose: np.ndarray | None = None

    def accept(self, stamp_ns: int, T_map_cam: np.ndarray | None) -> bool:
        if self._last_stamp is None:
            ok = True
        else:
            dt = stamp_ns - self._last_stamp
            if dt < self.min_interval_ns:
                ok = False
            elif T_map_cam is not None and self._last_pose is not None:
                moved = np.linalg.norm(T_map_cam[:3, 3] - self._last_pose[:3, 3]) >= self.min_translation
                turned = rotation_angle_deg(self._last_pose[:3, :3].T @ T_map_cam[:3, :3]) >= self.min_rotation_deg
                ok = moved or turned or (self.max_interval_ns > 0 and dt >= self.max_interval_ns)
            else:
                ok = dt >= self.max_interval_ns
        if ok:
            self._last_stamp, self._last_pose = stamp_ns, T_map_cam
        return ok


def select_pairs(num_frames: int, poses: list[np.ndarray | None] | None = None, sequential_window: int = 5,
                 num_pose_neighbors: int = 10, max_view_angle_deg: float = 60.0) -> list[tuple[int, int]]:
    """Sequential neighbours (i, i+1..i+window) plus, when poses are known, the nearest frames by
    camera position whose optical axes differ by less than ``max_view_angle_deg``."""
    pairs = {(i, j) for i in range(num_frames) for j in range(i + 1, min(num_frames, i + 1 + sequential_window))}
    if poses is not None and num_pose_neighbors > 0 and all(p is not None for p in poses) and num_frames > 1:
        P = np.stack(poses)
        centers, axes = P[:, :3, 3], P[:, :3, 2]
        dist = np.linalg.norm(centers[:, None] - centers[None], axis=-1)
        cos = np.clip(axes @ axes.T, -1, 1)
        dist[np.degrees(np.arccos(cos)) > max_view_angle_deg] = np.inf
        np.fill_diagonal(dist, np.inf)
        for i in range(num_frames):
            for j in np.argsort(dist[i])[:num_pose_neighbors]:
                if np.isfinite(dist[i, j]):
                    pairs.add((min(i, int(j)), max(i, int(j))))
    return sorted(pairs)
