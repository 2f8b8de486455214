"""featloc_bag_player: republish a rosbag2 (sqlite3 or mcap) with rclpy, without ros2 bag.

Messages are read with ``rosbags`` and published in bag order with their original relative timing
(scaled by ``--rate``). The raw CDR bytes are turned into rclpy messages with
``rclpy.serialization.deserialize_message``; the message class is imported from the type name
(``pkg/msg/Type`` -> ``pkg.msg.Type``), topics whose type cannot be imported are skipped with a
warning. ``/tf_static`` is published transient-local (latched), like tf2_ros does.

    featloc_bag_player --bag DIR [--topics /a /b] [--rate 1.0] [--start-delay-s 2.0]
                       [--wait-subscribers N --wait-timeout 10] [--image-qos reliable|best_effort]
"""

from __future__ import annotations

import argparse
import importlib
import sys
import time
from pathlib import Path

IMAGE_TYPES = ("sensor_msgs/msg/Image", "sensor_msgs/msg/CompressedImage")
CAMERA_TYPES = IMAGE_TYPES + ("sensor_msgs/msg/CameraInfo",)
EXIT_ERROR = 2


def import_message_class(type_name: str):
    """'sensor_msgs/msg/Image' (or 'sensor_msgs/Image') -> the rclpy message class; raises ImportError."""
    parts = type_name.split("/")
    if len(parts) == 2:
        parts = [parts[0], "msg", parts[1]]
    if len(parts) != 3 or not all(parts):
        raise ImportError(f"malformed message type name {type_name!r}")
    module = importlib.import_module(f"{parts[0]}.{parts[1]}")
    try:
        return getattr(module, parts[2])
    except AttributeError as e:
        raise ImportError(f"{parts[0]}.{parts[1]} has no message {parts[2]!r}") from e


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="featloc_bag_player", description=__doc__.split("\n")[0])
    ap.add_argument("--bag", required=True, help="rosbag2 directory (or a single .db3/.mcap file)")
    ap.add_argument("--topics", nargs="+", default=None, help="only these topics (default: all)")
    ap.add_argument("--rate", type=float, default=1.0, help="playback speed factor (> 0)")
    ap.add_argument("--start-delay-s", type=float, default=2.0,
                    help="wait this long after creating the publishers (and after --wait-subscribers) "
                         "before the first message, so subscribers can match")
    ap.add_argument("--wait-subscribers", type=int, default=0, metavar="N",
                    help="before playing, wait until every image / CameraInfo topic being played (or, if "
                         "there is none, every topic) has at least N subscribers")
    ap.add_argument("--wait-timeout", type=float, default=10.0,
                    help="give up waiting for subscribers after this many seconds (exit code 2)")
    ap.add_argument("--image-qos", choices=("reliable", "best_effort"), default="reliable",
                    help="reliability of image topics (best-effort rgb8 VGA between processes drops most "
                         "frames with Fast DDS)")
    ap.add_argument("--qos-depth", type=int, default=10, help="history depth of the (non-latched) publishers")
    ap.add_argument("--end-delay-s", type=float, default=0.5,
                    help="keep the publishers alive this long after the last message (delivery)")
    ap.add_argument("--quiet", action="store_true", help="only print the final count")
    return ap


def _qos(reliable: bool, depth: int, transient_local: bool = False):
    from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy

    return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=max(1, int(depth)),
                      reliability=ReliabilityPolicy.RELIABLE if reliable else ReliabilityPolicy.BEST_EFFORT,
                      durability=DurabilityPolicy.TRANSIENT_LOCAL if transient_local else DurabilityPolicy.VOLATILE)


def _open_reader(path: Path):
    from rosbags.highlevel import AnyReader

    return AnyReader([path])


def play(args, node, log=print) -> dict[str, int]:
    """Publish the bag with ``node``; returns {topic: messages published}."""
    from rclpy.serialization import deserialize_message

    bag = Path(args.bag)
    counts: dict[str, int] = {}
    with _open_reader(bag) as reader:
        connections = [c for c in reader.connections if args.topics is None or c.topic in args.topics]
        if args.topics:
            missing = sorted(set(args.topics) - {c.topic for c in connections})
            if missing:
                log(f"warning: topics not in the bag: {', '.join(missing)}")
        classes: dict[str, type] = {}
        publishers: dict[str, object] = {}
        topic_types: dict[str, str] = {}
        msgcount: dict[str, int] = {}
        for c in connections:
            msgcount[c.topic] = msgcount.get(c.topic, 0) + int(getattr(c, "msgcount", 0) or 0)
        for c in connections:
            if c.topic in publishers or c.topic in topic_types:
                continue
            topic_types[c.topic] = c.msgtype
            try:
                cls = import_message_class(c.msgtype)
            except ImportError as e:
                log(f"warning: skipping {c.topic}: cannot import {c.msgtype} ({e})")
                continue
            if c.topic == "/tf_static":
                qos = _qos(True, max(1, msgcount.get(c.topic, 1)), transient_local=True)
            elif c.msgtype in IMAGE_TYPES:
                qos = _qos(args.image_qos == "reliable", args.qos_depth)
            elif c.topic == "/tf":
                qos = _qos(True, max(100, args.qos_depth))
            else:
                qos = _qos(True, args.qos_depth)
            classes[c.topic] = cls
            publishers[c.topic] = node.create_publisher(cls, c.topic, qos)
            counts[c.topic] = 0
        if not publishers:
            log("nothing to play")
            return counts

        if args.wait_subscribers > 0:
            watched = [t for t in publishers if topic_types[t] in CAMERA_TYPES] or list(publishers)
            deadline = time.monotonic() + args.wait_timeout
            while True:
                short = {t: publishers[t].get_subscription_count() for t in watched}
                short = {t: n for t, n in short.items() if n < args.wait_subscribers}
                if not short:
                    break
                if time.monotonic() > deadline:
                    raise TimeoutError(f"timed out after {args.wait_timeout} s waiting for {args.wait_subscribers} "
                                       f"subscriber(s) on: " + ", ".join(f"{t} ({n})" for t, n in short.items()))
                time.sleep(0.05)
        if args.start_delay_s > 0:
            time.sleep(args.start_delay_s)

        warned: set[str] = set()
        selected = [c for c in connections if c.topic in publishers]
        t_bag0 = None
        t_wall0 = time.monotonic()
        for conn, t_bag, raw in reader.messages(connections=selected):
            if t_bag0 is None:
                t_bag0 = t_bag
            delay = t_wall0 + (t_bag - t_bag0) * 1e-9 / args.rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            try:
                msg = deserialize_message(bytes(raw), classes[conn.topic])
            except Exception as e:  # definition mismatch between the bag and the installed type
                if conn.topic not in warned:
                    warned.add(conn.topic)
                    log(f"warning: cannot deserialize a message on {conn.topic} as {conn.msgtype}: {e}")
                continue
            publishers[conn.topic].publish(msg)
            counts[conn.topic] += 1
        if args.end_delay_s > 0:
            time.sleep(args.end_delay_s)
    return counts


def main(argv: list[str] | None = None) -> int:
    import rclpy
    from rclpy.utilities import remove_ros_args

    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(remove_ros_args(["featloc_bag_player"] + argv)[1:])
    if not args.rate > 0:
        print("featloc_bag_player: --rate must be > 0", file=sys.stderr)
        return EXIT_ERROR
    if not Path(args.bag).exists():
        print(f"featloc_bag_player: {args.bag}: no such bag", file=sys.stderr)
        return EXIT_ERROR

    def log(text):
        if not args.quiet or text.startswith("warning"):
            print(f"featloc_bag_player: {text}", flush=True)

    rclpy.init(args=["featloc_bag_player"] + argv)
    node = rclpy.create_node("featloc_bag_player")
    code = 0
    counts: dict[str, int] = {}
    t0 = time.monotonic()
    try:
        counts = play(args, node, log)
    except KeyboardInterrupt:
        code = 130
    except TimeoutError as e:
        print(f"featloc_bag_player: {e}", file=sys.stderr, flush=True)
        code = EXIT_ERROR
    except Exception as e:  # unreadable bag etc.
        if not rclpy.ok():
            code = 130
        else:
            print(f"featloc_bag_player: cannot play {args.bag}: {type(e).__name__}: {e}", file=sys.stderr, flush=True)
            code = EXIT_ERROR
    finally:
        node.destroy_node()
        rclpy.try_shutdown()
    total = sum(counts.values())
    for topic, n in sorted(counts.items()):
        log(f"  {topic}: {n}")
    print(f"featloc_bag_player: published {total} messages on {len(counts)} topics "
          f"in {time.monotonic() - t0:.1f} s", flush=True)
    return code


if __name__ == "__main__":
    sys.exit(main())
