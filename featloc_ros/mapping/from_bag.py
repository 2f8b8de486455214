"""Build a map from a rosbag2: read the camera stream, pick keyframes, run the map builder."""

from __future__ import annotations

import logging
from pathlib import Path

from ..geometry.image_codec import ImageDecodeError
from .bag_reader import BagCameraStream, BagError
from .builder import KeyframeInput, MapBuildError, build_map
from .keyframes import KeyframeSelector

log = logging.getLogger(__name__)


def build_map_from_bag(bag: str | Path, out: str | Path, image_topic: str, camera_info_topic: str | None,
                       pose_source: str = "tf", pose_topic: str | None = None, map_frame: str = "map",
                       camera_frame: str | None = None, pose_body_frame: str | None = None,
                       features: str | dict = "rootsift", matcher: str | dict = "mnn_ratio",
                       min_interval_s: float = 0.0, max_interval_s: float = 1.0, min_translation: float = 0.2,
                       min_rotation_deg: float = 10.0, max_keyframes: int = 0, progress: bool = True, **build_kwargs):
    """Keyframes are chosen by time and motion (see KeyframeSelector); frames without a pose are
    skipped when a pose source is used. Returns the VisualMap written to ``out``."""
    selector = KeyframeSelector(min_interval_s, max_interval_s, min_translation, min_rotation_deg)
    keyframes: list[KeyframeInput] = []
    skipped_no_pose = skipped_bad = 0
    with BagCameraStream(bag, image_topic, camera_info_topic, pose_source, pose_topic, map_frame, camera_frame,
                         pose_body_frame) as stream:
        records = stream.records()
        if progress:
            from tqdm import tqdm

            records = tqdm(records, total=stream.num_images, desc="reading bag", unit="img", dynamic_ncols=True)
        for rec in records:
            if pose_source != "none" and rec.T_map_cam is None:
                skipped_no_pose += 1
                continue
            if not selector.accept(rec.stamp_ns, rec.T_map_cam):
                continue
            try:
                image = rec.decode()
            except ImageDecodeError as e:
                skipped_bad += 1
                log.warning("%s: image %d at t=%.3fs skipped: %s", bag, rec.index, rec.stamp_ns * 1e-9, e)
                continue
            h, w = image.shape[:2]
            if (w, h) != (rec.camera.width, rec.camera.height):
                raise BagError(f"{bag}: image {rec.index} is {w}x{h} but CameraInfo says "
                               f"{rec.camera.width}x{rec.camera.height}")
            keyframes.append(KeyframeInput(f"kf_{len(keyframes):05d}_{rec.stamp_ns}.jpg", image, rec.camera,
                                           rec.T_map_cam, rec.stamp_ns))
            if max_keyframes and len(keyframes) >= max_keyframes:
                break
    if skipped_no_pose:
        log.warning("%s: %d images had no pose (%s) and were skipped", bag, skipped_no_pose, pose_source)
    if len(keyframes) < 2:
        raise MapBuildError(f"{bag}: only {len(keyframes)} usable keyframes on {image_topic!r}"
                            + (f" ({skipped_no_pose} images without a pose from {pose_source!r})" if skipped_no_pose else "")
                            + (f" ({skipped_bad} images could not be decoded)" if skipped_bad else ""))
    source = {"bag": str(Path(bag).resolve()), "image_topic": image_topic, "camera_info_topic": camera_info_topic,
              "pose_source": pose_source, "pose_topic": pose_topic, "camera_frame": camera_frame,
              "num_keyframes_selected": len(keyframes)}
    return build_map(keyframes, out, features=features, matcher=matcher, map_frame=map_frame, source=source,
                     progress=progress, **build_kwargs)
