"""Loaders for the evaluation data in ``../shared/data`` (never bundled with the package)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import cv2
import numpy as np

from ..geometry.camera import Camera

OPENGL_TO_OPTICAL = np.diag([1.0, -1.0, -1.0, 1.0])


def shared_data_dir() -> Path:
    """``$FEATLOC_SHARED_DATA`` or ``../shared/data`` next to the repository checkout."""
    env = os.environ.get("FEATLOC_SHARED_DATA")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[2].parent / "shared" / "data"


def load_instant_ngp(root: str | Path) -> tuple[Camera, list[tuple[str, Path, np.ndarray]]]:
    """instant-ngp ``transforms.json`` -> camera and [(name, image path, T_world_cam optical)] for the
    frames whose image exists, sorted by name. Poses are converted from OpenGL camera axes
    (x right, y up, z back) to the ROS optical frame (x right, y down, z forward)."""
    root = Path(root)
    meta = json.loads((root / "transforms.json").read_text())
    camera = Camera("OPENCV", int(meta["w"]), int(meta["h"]),
                    (meta["fl_x"], meta["fl_y"], meta["cx"], meta["cy"], meta.get("k1", 0.0), meta.get("k2", 0.0),
                     meta.get("p1", 0.0), meta.get("p2", 0.0)))
    frames = []
    for f in meta["frames"]:
        path = root / f["file_path"]
        if path.is_file():
            frames.append((path.name, path, np.asarray(f["transform_matrix"], dtype=np.float64) @ OPENGL_TO_OPTICAL))
    frames.sort(key=lambda x: x[0])
    return camera, frames


def read_rgb(path: str | Path) -> np.ndarray:
    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if img is None:
        raise FileNotFoundError(f"cannot read image {path}")
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


# slambook2 ch5/rgbd: TUM RGB-D frames; intrinsics from the book's joinMap.cpp (see SOURCE.txt).
SLAMBOOK_CH5_INTRINSICS = (518.0, 519.0, 325.5, 253.5)


def load_slambook_rgbd(root: str | Path) -> tuple[Camera, list[tuple[str, Path, np.ndarray]]]:
    """slambook2 ch5/rgbd: color/1..5.png with camera-to-world poses (tx ty tz qx qy qz qw)."""
    from ..geometry.transforms import transform_from_pose

    root = Path(root)
    poses = [list(map(float, line.split())) for line in (root / "pose.txt").read_text().splitlines() if line.strip()]
    first = read_rgb(root / "color" / "1.png")
    camera = Camera("PINHOLE", first.shape[1], first.shape[0], SLAMBOOK_CH5_INTRINSICS)
    frames = [(f"{i + 1}.png", root / "color" / f"{i + 1}.png", transform_from_pose(p[:3], p[3:]))
              for i, p in enumerate(poses)]
    return camera, frames
