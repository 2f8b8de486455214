"""Map building: keyframes -> features -> pairs -> matches -> geometric verification ->
pycolmap triangulation (known poses) or incremental SfM (no poses) -> VisualMap on disk."""

from __future__ import annotations

import datetime
import logging
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from .. import __version__
from ..configuration import resolve_conf
from ..features import Features, create_extractor
from ..features import confs as feature_confs
from ..geometry.camera import Camera
from ..geometry.transforms import invert_transform, make_transform
from ..matching import confs as matcher_confs
from ..matching import create_matcher
from ..retrieval import VLAD, default_num_clusters, select_columns, train_codebook
from .keyframes import select_pairs
from .map_format import VisualMap

log = logging.getLogger(__name__)


@dataclass
class KeyframeInput:
    name: str
    image: np.ndarray  # (H, W, 3) uint8 RGB
    camera: Camera
    T_map_cam: np.ndarray | None  # camera-to-map (ROS optical camera frame), None if unknown
    stamp_ns: int = 0


class MapBuildError(RuntimeError):
    pass


def _progress(iterable, desc: str, total: int | None = None, enabled: bool = True):
    if not enabled:
        return iterable
    from tqdm import tqdm

    return tqdm(iterable, desc=desc, total=total, unit="it", dynamic_ncols=True)


def _normalized(camera: Camera, pts: np.ndarray) -> np.ndarray:
    """Pixels -> undistorted normalised image coordinates (N, 2)."""
    return np.asarray(camera.to_pycolmap().cam_from_img(np.ascontiguousarray(pts, dtype=np.float64)))


def epipolar_inliers(f0: Features, f1: Features, matches: np.ndarray, cam0: Camera, cam1: Camera,
                     T_map_cam0: np.ndarray, T_map_cam1: np.ndarray, max_error_px: float) -> np.ndarray:
    """Boolean mask of matches whose Sampson error under the known relative pose is below the threshold."""
    T_10 = invert_transform(T_map_cam1) @ T_map_cam0
    R, t = T_10[:3, :3], T_10[:3, 3]
    tx = np.array([[0, -t[2], t[1]], [t[2], 0, -t[0]], [-t[1], t[0], 0]])
    E = tx @ R
    x0 = np.c_[_normalized(cam0, f0.keypoints[matches[:, 0]]), np.ones(len(matches))]
    x1 = np.c_[_normalized(cam1, f1.keypoints[matches[:, 1]]), np.ones(len(matches))]
    Ex0, Etx1 = x0 @ E.T, x1 @ E
    num = np.sum(x1 * Ex0, axis=1) ** 2
    den = Ex0[:, 0] ** 2 + Ex0[:, 1] ** 2 + Etx1[:, 0] ** 2 + Etx1[:, 1] ** 2
    err2 = num / np.maximum(den, 1e-18)
    focal = 0.5 * (np.mean(cam0.params[:2]) + np.mean(cam1.params[:2]))
    return err2 * focal ** 2 <= max_error_px ** 2


def build_map(keyframes: list[KeyframeInput], out_dir: str | Path, features: str | dict = "rootsift",
              matcher: str | dict = "mnn_ratio", map_frame: str = "map", source: dict | None = None,
              sequential_window: int = 5, num_pose_neighbors: int = 10, min_pair_inliers: int = 15,
              epipolar_max_error_px: float = 4.0, num_vlad_clusters: int | None = None, save_images: bool = True,
              progress: bool = True, seed: int = 0) -> VisualMap:
    """Build a map from keyframes. With poses for all keyframes, points are triangulated with the
    poses held fixed (the map is in ``map_frame``, same scale as the poses); without poses,
    pycolmap incremental SfM estimates them (arbitrary frame and scale, see README).
    ``num_vlad_clusters``: retrieval codebook size; None: ``default_num_clusters`` of the retrieval columns."""
    if len(keyframes) < 2:
        raise MapBuildError(f"need at least 2 keyframes to build a map, got {len(keyframes)}")
    if num_vlad_clusters is not None and num_vlad_clusters < 1:
        raise ValueError(f"num_vlad_clusters must be >= 1 (or None for the default), got {num_vlad_clusters}")
    out_dir = Path(out_dir)
    keyframes = [k if Path(k.name).suffix.lower() in (".jpg", ".jpeg", ".png")
                 else KeyframeInput(k.name + ".jpg", k.image, k.camera, k.T_map_cam, k.stamp_ns) for k in keyframes]
    if len({k.name for k in keyframes}) != len(keyframes):
        raise MapBuildError("keyframe names must be unique")
    have_poses = all(k.T_map_cam is not None for k in keyframes)
    if not have_poses and any(k.T_map_cam is not None for k in keyframes):
        log.warning("only some keyframes have poses: dropping those without")
        keyframes = [k for k in keyframes if k.T_map_cam is not None]
        have_poses = True
    fconf = resolve_conf(features, feature_confs, "feature")
    mconf = resolve_conf(matcher, matcher_confs, "matcher")
    extractor, match = create_extractor(fconf), create_matcher(mconf)

    feats = [extractor(k.image) for k in _progress(keyframes, "features", enabled=progress)]
    pairs = select_pairs(len(keyframes), [k.T_map_cam for k in keyframes] if have_poses else None,
                         sequential_window, num_pose_neighbors if have_poses else 0)

    work = Path(tempfile.mkdtemp(prefix="featloc_build_"))
    try:
        image_dir = (out_dir / "images") if save_images else (work / "images")
        image_dir.mkdir(parents=True, exist_ok=True)
        for k in keyframes:
            params = [cv2.IMWRITE_JPEG_QUALITY, 90] if Path(k.name).suffix.lower() in (".jpg", ".jpeg") else []
            cv2.imwrite(str(image_dir / k.name), cv2.cvtColor(k.image, cv2.COLOR_RGB2BGR), params)
        rec = _reconstruct(keyframes, feats, pairs, match, work, image_dir, have_poses, min_pair_inliers,
                           epipolar_max_error_px, progress)
        sfm_dir = out_dir / "sfm"
        if sfm_dir.exists():
            shutil.rmtree(sfm_dir)
        sfm_dir.mkdir(parents=True)
        rec.write(str(sfm_dir))
    finally:
        shutil.rmtree(work, ignore_errors=True)

    columns = extractor.retrieval_columns
    vmap = _to_visual_map(rec, keyframes, feats, num_vlad_clusters, seed, columns)
    vmap.manifest = {
        "created_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "featloc_ros_version": __version__,
        "map_frame": map_frame,
        "camera_frame_convention": "ROS optical frame: x right, y down, z forward",
        "pose_convention": "T_map_cam: 4x4 camera-to-map (maps camera-frame points into the map frame)",
        "scale": ("same as the input poses (metric if the TF/pose source is metric)" if have_poses
                  else "arbitrary: incremental SfM without poses (frame and scale of the first reconstruction)"),
        "poses_source": "input poses, held fixed during triangulation" if have_poses else "pycolmap incremental_mapping",
        "features": fconf, "matcher": mconf,
        "retrieval": {"name": "vlad", "num_clusters": int(vmap.codebook.shape[0]),
                      "columns": list(columns) if columns else None},
        "source": source or {},
        "num_pairs": len(pairs),
    }
    vmap.save(out_dir)
    return vmap


def _reconstruct(keyframes, feats, pairs, match, work: Path, image_dir: Path, have_poses: bool,
                 min_pair_inliers: int, epipolar_max_error_px: float, progress: bool):
    import pycolmap

    pycolmap.logging.minloglevel = 1 if not progress else 0  # glog: 0 INFO, 1 WARNING
    db_path = work / "database.db"
    cameras: dict[Camera, int] = {}
    rec = pycolmap.Reconstruction()
    image_ids = []
    with pycolmap.Database.open(str(db_path)) as db:
        rig_ids = {}
        for k, f in zip(keyframes, feats):
            if k.camera not in cameras:
                cam = k.camera.to_pycolmap()
                cam.camera_id = db.write_camera(cam)
                cameras[k.camera] = cam.camera_id
                rig = pycolmap.Rig()
                rig.add_ref_sensor(pycolmap.sensor_t(pycolmap.SensorType.CAMERA, cam.camera_id))
                rig_ids[cam.camera_id] = db.write_rig(rig)
                rec.add_camera_with_trivial_rig(cam)
            cid = cameras[k.camera]
            iid = db.write_image(pycolmap.Image(name=k.name, camera_id=cid))
            frame = pycolmap.Frame()
            frame.rig_id = rig_ids[cid]
            frame.add_data_id(pycolmap.data_t(pycolmap.sensor_t(pycolmap.SensorType.CAMERA, cid), iid))
            db.write_frame(frame)
            db.write_keypoints(iid, f.keypoints.astype(np.float32))
            image_ids.append(iid)
            if have_poses:
                T_cam_map = invert_transform(k.T_map_cam)
                img = pycolmap.Image(name=k.name, keypoints=f.keypoints.astype(np.float64), camera_id=cid, image_id=iid)
                rec.add_image_with_trivial_frame(
                    img, pycolmap.Rigid3d(pycolmap.Rotation3d(T_cam_map[:3, :3]), T_cam_map[:3, 3]))
        num_verified = 0
        for i, j in _progress(pairs, "matching", enabled=progress):
            m = match(feats[i], feats[j]).indices
            if len(m) < min_pair_inliers:
                continue
            if have_poses:
                inl = m[epipolar_inliers(feats[i], feats[j], m, keyframes[i].camera, keyframes[j].camera,
                                         keyframes[i].T_map_cam, keyframes[j].T_map_cam, epipolar_max_error_px)]
                config = pycolmap.TwoViewGeometryConfiguration.CALIBRATED
            else:
                tvg = pycolmap.estimate_calibrated_two_view_geometry(
                    keyframes[i].camera.to_pycolmap(), feats[i].keypoints.astype(np.float64),
                    keyframes[j].camera.to_pycolmap(), feats[j].keypoints.astype(np.float64), m.astype(np.uint32))
                inl, config = np.asarray(tvg.inlier_matches), tvg.config
            if len(inl) < min_pair_inliers:
                continue
            db.write_matches(image_ids[i], image_ids[j], m.astype(np.uint32))
            tvg = pycolmap.TwoViewGeometry()
            tvg.config = config
            tvg.inlier_matches = np.asarray(inl, dtype=np.uint32)
            db.write_two_view_geometry(image_ids[i], image_ids[j], tvg)
            num_verified += 1
    if num_verified == 0:
        raise MapBuildError("no image pair survived matching and geometric verification: the keyframes do not overlap")
    log.info("%d of %d pairs verified", num_verified, len(pairs))
    out = work / "sfm_out"
    out.mkdir()
    if have_poses:
        return pycolmap.triangulate_points(rec, str(db_path), str(image_dir), str(out))
    options = pycolmap.IncrementalPipelineOptions()
    options.multiple_models = False
    models = pycolmap.incremental_mapping(str(db_path), str(image_dir), str(out), options=options)
    if not models:
        raise MapBuildError("incremental SfM did not reconstruct anything (too little overlap or texture)")
    return max(models.values(), key=lambda r: r.num_reg_images())


def _to_visual_map(rec, keyframes, feats, num_vlad_clusters: int | None, seed: int,
                   columns: tuple[int, int] | None = None) -> VisualMap:
    by_name = {k.name: i for i, k in enumerate(keyframes)}
    point_ids = sorted(rec.points3D.keys())
    if not point_ids:
        raise MapBuildError("triangulation produced no 3D points")
    row = {pid: r for r, pid in enumerate(point_ids)}
    kept = []  # (keyframe index, image) for registered images, in keyframe order
    for image in rec.images.values():
        if image.has_pose:
            kept.append((by_name[image.name], image))
    kept.sort(key=lambda x: x[0])
    offsets, kps, descs, pidx = [0], [], [], []
    poses = []
    for ki, image in kept:
        obs = [(p2d_idx, row[p.point3D_id]) for p2d_idx, p in enumerate(image.points2D) if p.has_point3D()]
        idx = np.array([o[0] for o in obs], dtype=np.int64)
        kps.append(feats[ki].keypoints[idx])
        descs.append(feats[ki].descriptors[idx])
        pidx.append(np.array([o[1] for o in obs], dtype=np.int64))
        offsets.append(offsets[-1] + len(idx))
        poses.append(invert_transform(make_transform(image.cam_from_world().rotation.matrix(),
                                                     image.cam_from_world().translation)))
    all_desc = select_columns(np.concatenate([f.descriptors for f in feats]), columns)
    if num_vlad_clusters is None:  # global descriptors of VLAD_DIM floats
        num_vlad_clusters = default_num_clusters(all_desc.shape[1])
    codebook = train_codebook(all_desc, num_vlad_clusters, seed=seed)
    vlad = VLAD(codebook, columns)
    gdesc = np.stack([vlad.describe(feats[ki].descriptors) for ki, _ in kept])
    pts = [rec.points3D[pid] for pid in point_ids]
    cam_ids = {}
    cameras = {}
    for ki, _ in kept:
        cam = keyframes[ki].camera
        if cam not in cam_ids:
            cam_ids[cam] = len(cam_ids) + 1
            cameras[cam_ids[cam]] = cam
    D = feats[0].descriptors.shape[1]
    return VisualMap(
        manifest={}, cameras=cameras,
        keyframe_names=np.array([keyframes[ki].name for ki, _ in kept]),
        keyframe_stamps_ns=np.array([keyframes[ki].stamp_ns for ki, _ in kept], dtype=np.int64),
        keyframe_camera_ids=np.array([cam_ids[keyframes[ki].camera] for ki, _ in kept], dtype=np.int32),
        T_map_cam=np.stack(poses), global_descriptors=gdesc.astype(np.float32),
        offsets=np.array(offsets, dtype=np.int64),
        keypoints=np.concatenate(kps) if kps else np.zeros((0, 2), np.float32),
        descriptors=np.concatenate(descs) if descs else np.zeros((0, D), np.float32),
        point_index=np.concatenate(pidx) if pidx else np.zeros(0, np.int64),
        points_xyz=np.array([p.xyz for p in pts], dtype=np.float64),
        points_colors=np.array([p.color for p in pts], dtype=np.uint8).reshape(-1, 3),
        points_track_length=np.array([p.track.length() for p in pts], dtype=np.int32),
        points_error=np.array([p.error for p in pts], dtype=np.float32),
        codebook=codebook)
