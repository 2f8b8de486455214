"""On-disk visual map: a directory with a versioned manifest, ``.npz`` arrays and a COLMAP model.

Layout (format version 1)::

    MAP/manifest.json      format name + version, conventions, cameras, feature/matcher/retrieval
                           configurations, source bag, creation time, counts, sha256 of every array file
    MAP/keyframes.npz      names (K,) str, stamps_ns (K,) int64, camera_ids (K,) int32,
                           T_map_cam (K, 4, 4) float64, global_descriptors (K, G) float32
    MAP/observations.npz   offsets (K+1,) int64 into the rows below, keypoints (N, 2) float32 (pixels),
                           descriptors (N, D) float16, point_index (N,) int64 (row in points3d.npz)
    MAP/points3d.npz       xyz (P, 3) float64 (map frame), colors (P, 3) uint8, track_length (P,) int32,
                           reprojection_error (P,) float32 (pixels)
    MAP/retrieval.npz      codebook (C, D) float32 (VLAD)
    MAP/sfm/               COLMAP binary model written by pycolmap (cameras, images, points3D, ...)
    MAP/images/            keyframe images (JPEG), for inspection and re-extraction

Only observations that belong to a triangulated 3D point are stored in observations.npz: they are
what 2D-3D matching needs. Arrays are loaded with ``allow_pickle=False``; nothing is pickled.
"""

from __future__ import annotations

import hashlib
import json
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..geometry.camera import Camera, InvalidCameraError

FORMAT_NAME = "featloc_map"
FORMAT_VERSION = 1
ARRAY_FILES = ("keyframes.npz", "observations.npz", "points3d.npz", "retrieval.npz")


class MapFormatError(ValueError):
    """A map directory that cannot be loaded; the message names the file and the problem."""


@dataclass
class VisualMap:
    manifest: dict
    cameras: dict[int, Camera]
    keyframe_names: np.ndarray
    keyframe_stamps_ns: np.ndarray
    keyframe_camera_ids: np.ndarray
    T_map_cam: np.ndarray
    global_descriptors: np.ndarray
    offsets: np.ndarray
    keypoints: np.ndarray
    descriptors: np.ndarray
    point_index: np.ndarray
    points_xyz: np.ndarray
    points_colors: np.ndarray
    points_track_length: np.ndarray
    points_error: np.ndarray
    codebook: np.ndarray
    path: Path | None = field(default=None)

    @property
    def num_keyframes(self) -> int:
        return int(self.keyframe_names.shape[0])

    @property
    def num_points(self) -> int:
        return int(self.points_xyz.shape[0])

    @property
    def retrieval_columns(self) -> list[int] | None:
        """The descriptor columns [start, stop) the global descriptors aggregate (None: all; manifest retrieval)."""
        return (self.manifest.get("retrieval") or {}).get("columns")

    def keyframe_slice(self, k: int) -> slice:
        return slice(int(self.offsets[k]), int(self.offsets[k + 1]))

    def keyframe_positions(self) -> np.ndarray:
        return self.T_map_cam[:, :3, 3]

    # ------------------------------------------------------------------ writing
    def save(self, path: str | Path) -> None:
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        arrays = {
            "keyframes.npz": {
                "names": self.keyframe_names.astype(str), "stamps_ns": self.keyframe_stamps_ns.astype(np.int64),
                "camera_ids": self.keyframe_camera_ids.astype(np.int32), "T_map_cam": self.T_map_cam.astype(np.float64),
                "global_descriptors": self.global_descriptors.astype(np.float32)},
            "observations.npz": {
                "offsets": self.offsets.astype(np.int64), "keypoints": self.keypoints.astype(np.float32),
                "descriptors": self.descriptors.astype(np.float16), "point_index": self.point_index.astype(np.int64)},
            "points3d.npz": {
                "xyz": self.points_xyz.astype(np.float64), "colors": self.points_colors.astype(np.uint8),
                "track_length": self.points_track_length.astype(np.int32),
                "reprojection_error": self.points_error.astype(np.float32)},
            "retrieval.npz": {"codebook": self.codebook.astype(np.float32)},
        }
        checksums = {}
        for name, content in arrays.items():
            np.savez_compressed(path / name, **content)
            checksums[name] = _sha256(path / name)
        manifest = dict(self.manifest)
        manifest.update({
            "format": FORMAT_NAME, "format_version": FORMAT_VERSION,
            "cameras": {str(cid): cam.to_dict() for cid, cam in self.cameras.items()},
            "counts": {"keyframes": self.num_keyframes, "points3D": self.num_points,
                       "observations": int(self.keypoints.shape[0])},
            "files": checksums,
        })
        (path / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True))
        self.manifest, self.path = manifest, path


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


# ---------------------------------------------------------------------- loading
_SCHEMA = {
    # file: {field: (dtype kind(s), ndim, trailing shape or None)}
    "keyframes.npz": {"names": ("U", 1, None), "stamps_ns": ("i", 1, None), "camera_ids": ("i", 1, None),
                      "T_map_cam": ("f", 3, (4, 4)), "global_descriptors": ("f", 2, None)},
    "observations.npz": {"offsets": ("i", 1, None), "keypoints": ("f", 2, (2,)), "descriptors": ("f", 2, None),
                         "point_index": ("i", 1, None)},
    "points3d.npz": {"xyz": ("f", 2, (3,)), "colors": ("u", 2, (3,)), "track_length": ("i", 1, None),
                     "reprojection_error": ("f", 1, None)},
    "retrieval.npz": {"codebook": ("f", 2, None)},
}


def _load_npz(path: Path) -> dict[str, np.ndarray]:
    name = path.name
    if not path.is_file():
        raise MapFormatError(f"{path}: missing map file")
    schema = _SCHEMA[name]
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as e:
        raise MapFormatError(f"{path}: cannot read arrays ({type(e).__name__}: {e})") from e
    for key, (kinds, ndim, trailing) in schema.items():
        if key not in arrays:
            raise MapFormatError(f"{path}: missing field {key!r}")
        a = arrays[key]
        if a.dtype.kind not in kinds:
            raise MapFormatError(f"{path}: field {key!r} has dtype {a.dtype}, expected kind {kinds!r}")
        if a.ndim != ndim or (trailing is not None and tuple(a.shape[1:]) != trailing):
            raise MapFormatError(f"{path}: field {key!r} has shape {a.shape}, expected {ndim}-D"
                                 + (f" (..., {', '.join(map(str, trailing))})" if trailing else ""))
        if a.dtype.kind == "f" and not np.all(np.isfinite(a)):
            raise MapFormatError(f"{path}: field {key!r} contains NaN or infinite values")
    return arrays


def load_manifest(path: str | Path) -> dict:
    path = Path(path)
    mpath = path / "manifest.json"
    if not path.is_dir():
        raise MapFormatError(f"{path}: map directory does not exist")
    if not mpath.is_file():
        raise MapFormatError(f"{mpath}: missing manifest (is {path} a featloc map?)")
    try:
        manifest = json.loads(mpath.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise MapFormatError(f"{mpath}: invalid JSON ({e})") from e
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT_NAME:
        raise MapFormatError(f"{mpath}: field 'format' must be {FORMAT_NAME!r}, got {manifest.get('format') if isinstance(manifest, dict) else manifest!r}")
    version = manifest.get("format_version")
    if version != FORMAT_VERSION:
        raise MapFormatError(f"{mpath}: field 'format_version' is {version!r}; this featloc_ros reads version "
                             f"{FORMAT_VERSION} (rebuild the map with featloc_build_map)")
    for key in ("cameras", "features", "matcher", "files", "map_frame"):
        if key not in manifest:
            raise MapFormatError(f"{mpath}: missing field {key!r}")
    return manifest


def load_map(path: str | Path, verify_checksums: bool = True) -> VisualMap:
    """Load and validate a map directory. Raises MapFormatError naming the file and field."""
    path = Path(path)
    manifest = load_manifest(path)
    mpath = path / "manifest.json"
    try:
        cameras = {int(cid): Camera.from_dict(c) for cid, c in manifest["cameras"].items()}
    except (KeyError, TypeError, ValueError, InvalidCameraError) as e:
        raise MapFormatError(f"{mpath}: field 'cameras' is invalid ({e})") from e
    data = {}
    for name in ARRAY_FILES:
        if verify_checksums and (path / name).is_file():
            expected = manifest["files"].get(name)
            if expected != _sha256(path / name):
                raise MapFormatError(f"{path / name}: checksum does not match manifest.json (file corrupt or modified)")
        data[name] = _load_npz(path / name)
    kf, obs, pts = data["keyframes.npz"], data["observations.npz"], data["points3d.npz"]
    K = kf["names"].shape[0]
    for key in ("stamps_ns", "camera_ids", "T_map_cam", "global_descriptors"):
        if kf[key].shape[0] != K:
            raise MapFormatError(f"{path / 'keyframes.npz'}: field {key!r} has {kf[key].shape[0]} rows, expected {K}")
    unknown_cams = set(np.unique(kf["camera_ids"]).tolist()) - set(cameras)
    if unknown_cams:
        raise MapFormatError(f"{path / 'keyframes.npz'}: field 'camera_ids' refers to unknown cameras {sorted(unknown_cams)}")
    N = obs["keypoints"].shape[0]
    offsets = obs["offsets"]
    if offsets.shape[0] != K + 1 or offsets[0] != 0 or offsets[-1] != N or np.any(np.diff(offsets) < 0):
        raise MapFormatError(f"{path / 'observations.npz'}: field 'offsets' is inconsistent with {K} keyframes and {N} rows")
    for key in ("descriptors", "point_index"):
        if obs[key].shape[0] != N:
            raise MapFormatError(f"{path / 'observations.npz'}: field {key!r} has {obs[key].shape[0]} rows, expected {N}")
    P = pts["xyz"].shape[0]
    for key in ("colors", "track_length", "reprojection_error"):
        if pts[key].shape[0] != P:
            raise MapFormatError(f"{path / 'points3d.npz'}: field {key!r} has {pts[key].shape[0]} rows, expected {P}")
    if N and (obs["point_index"].min() < 0 or obs["point_index"].max() >= P):
        raise MapFormatError(f"{path / 'observations.npz'}: field 'point_index' out of range [0, {P})")
    codebook = data["retrieval.npz"]["codebook"]
    D = obs["descriptors"].shape[1]
    columns = (manifest.get("retrieval") or {}).get("columns")  # aggregated descriptor columns (None: all)
    if columns is not None and not (isinstance(columns, list) and len(columns) == 2
                                    and all(isinstance(c, int) for c in columns) and 0 <= columns[0] < columns[1] <= D):
        raise MapFormatError(f"{path / 'manifest.json'}: retrieval.columns {columns!r} is not [start, stop] "
                             f"within the descriptor dim {D}")
    d_ret = D if columns is None else columns[1] - columns[0]
    if codebook.shape[1] != d_ret or kf["global_descriptors"].shape[1] != codebook.size:
        raise MapFormatError(f"{path / 'retrieval.npz'}: field 'codebook' shape {codebook.shape} does not fit "
                             f"retrieval descriptor dim {d_ret} / global descriptor dim "
                             f"{kf['global_descriptors'].shape[1]}")
    return VisualMap(
        manifest=manifest, cameras=cameras, keyframe_names=kf["names"], keyframe_stamps_ns=kf["stamps_ns"],
        keyframe_camera_ids=kf["camera_ids"], T_map_cam=kf["T_map_cam"],
        global_descriptors=kf["global_descriptors"].astype(np.float32), offsets=offsets,
        keypoints=obs["keypoints"], descriptors=obs["descriptors"].astype(np.float32),
        point_index=obs["point_index"], points_xyz=pts["xyz"], points_colors=pts["colors"],
        points_track_length=pts["track_length"], points_error=pts["reprojection_error"], codebook=codebook, path=path)
