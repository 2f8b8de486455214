"""``featloc_build_map``: build a localization map from a rosbag2 (no ROS install needed)."""

from __future__ import annotations

import argparse
import logging
import sys

from ..features import confs as feature_confs
from ..geometry.image_codec import ImageDecodeError
from ..matching import confs as matcher_confs
from .bag_reader import BagError
from .builder import MapBuildError
from .from_bag import build_map_from_bag


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="featloc_build_map", description=__doc__,
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--bag", required=True, help="rosbag2 directory (sqlite3 or mcap)")
    p.add_argument("--image-topic", required=True, help="sensor_msgs/Image or CompressedImage topic")
    p.add_argument("--camera-info-topic", help="sensor_msgs/CameraInfo topic (required unless the bag has none)")
    p.add_argument("--pose-source", choices=["tf", "topic", "none"], default="tf",
                   help="tf: map_frame<-camera frame from /tf,/tf_static; topic: --pose-topic; none: SfM")
    p.add_argument("--pose-topic", help="PoseStamped / PoseWithCovarianceStamped / Odometry topic")
    p.add_argument("--pose-body-frame", help="frame whose pose --pose-topic gives (default: the camera frame, "
                                             "or Odometry child_frame_id); TF links it to the camera")
    p.add_argument("--map-frame", default="map")
    p.add_argument("--camera-frame", help="camera optical frame (default: the image header frame_id)")
    p.add_argument("--features", default="rootsift", choices=sorted(feature_confs))
    p.add_argument("--matcher", default="mnn_ratio", choices=sorted(matcher_confs))
    p.add_argument("--min-interval", type=float, default=0.0, help="seconds between keyframes at least")
    p.add_argument("--max-interval", type=float, default=1.0, help="take a keyframe after this long anyway")
    p.add_argument("--min-translation", type=float, default=0.2, help="map units of motion for a new keyframe")
    p.add_argument("--min-rotation", type=float, default=10.0, help="degrees of rotation for a new keyframe")
    p.add_argument("--max-keyframes", type=int, default=0, help="stop after N keyframes (0: no limit)")
    p.add_argument("--vlad-clusters", type=positive_int, default=None,
                   help="VLAD codebook size for retrieval (default: 16384 / descriptor width, e.g. 128 for SIFT, 256 "
                        "for featloc; more clusters retrieve better across lighting, with longer global descriptors; "
                        "benchmarks/results/retrieval.md)")
    p.add_argument("--out", required=True, help="output map directory")
    p.add_argument("--quiet", action="store_true")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO, format="%(levelname)s %(message)s")
    try:
        vmap = build_map_from_bag(
            args.bag, args.out, args.image_topic, args.camera_info_topic, args.pose_source, args.pose_topic,
            args.map_frame, args.camera_frame, args.pose_body_frame, features=args.features, matcher=args.matcher,
            min_interval_s=args.min_interval, max_interval_s=args.max_interval, min_translation=args.min_translation,
            min_rotation_deg=args.min_rotation, max_keyframes=args.max_keyframes, progress=not args.quiet,
            num_vlad_clusters=args.vlad_clusters)
    except (BagError, MapBuildError, ImageDecodeError, ValueError) as e:
        print(f"featloc_build_map: error: {e}", file=sys.stderr)
        return 2
    print(f"map written to {args.out}: {vmap.num_keyframes} keyframes, {vmap.num_points} points "
          f"({vmap.manifest['scale']})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
