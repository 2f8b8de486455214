"""Per-stage latency of the localization pipeline at 640x480 (decode, extract, retrieve, match,
PnP), 512/1024/2048 query keypoints, 2 threads; median and p90 over >= 20 frames after warm-up;
peak RSS of a fresh process per configuration. Peers: extraction and matching times from their
own venv (PyTorch, CPU).

    python benchmarks/latency_benchmark.py [--quick] [--runs 20] [--refined]

--refined adds the opt-in featloc_refined entry (models/featloc_v10: v4 + the learned keypoint refiner) with
PyTorch and ONNX Runtime, mapped and localized with its own features.

The map is built once (demo room, 60 frames, 2048 keypoints); each configuration runs in a new
process that loads the map and localizes JPEG-compressed query frames. Writes results/latency.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

import cv2
import numpy as np

from common import markdown_table, write_results  # noqa: E402
from methods import resolve_methods

from featloc_ros.features import confs as extractor_confs
from featloc_ros.matching import confs as matcher_confs

THREADS = 2
STAGES = ("decode", "extract", "retrieve", "match", "pnp", "total")


SIFT_CONF = {"name": "sift", "rootsift": True, "max_keypoints": 2048}
FEATLOC_CONF = {"name": "featloc", "descriptor": "selected", "max_keypoints": 2048}  # matcher featloc_isnn
FEATLOC_MATCHER = "featloc_isnn"
# the learned pipelines: their feature conf (each builds its own map); featloc_refined only with --refined
LEARNED_CONFS = {"featloc": FEATLOC_CONF,
                 "featloc_refined": {**FEATLOC_CONF, "weights": extractor_confs["featloc_refined"]["weights"]}}


def thread_env() -> dict:
    """The environment of a worker process: this one's, with the BLAS/OpenMP pools at THREADS threads."""
    return dict(os.environ, OMP_NUM_THREADS=str(THREADS), OPENBLAS_NUM_THREADS=str(THREADS),
                MKL_NUM_THREADS=str(THREADS))


def learned_available() -> str | None:
    """None if the shipped FeatLoc weights load, else the reason."""
    from featloc_ros.features import create_extractor

    try:
        create_extractor(FEATLOC_CONF)
    except (FileNotFoundError, ImportError) as e:
        return str(e).splitlines()[0]
    return None


def render_inputs(work: Path, num_queries: int, learned: list[str]) -> None:
    """The demo room's keyframes mapped with RootSIFT and with each of the ``learned`` pipelines (LEARNED_CONFS
    keys), and ``num_queries`` query frames as JPEG files."""
    from featloc_ros.demo.scene import DemoScene, camera_path, demo_intrinsics
    from featloc_ros.geometry import Camera
    from featloc_ros.mapping.builder import KeyframeInput, build_map

    w, h = 640, 480
    K = demo_intrinsics(w, h)
    cam = Camera("PINHOLE", w, h, (K[0, 0], K[1, 1], K[0, 2], K[1, 2]))
    scene = DemoScene()
    kfs = [KeyframeInput(f"kf{i:03d}.jpg", scene.render(T, K, w, h)[0], cam, T, i)
           for i, T in enumerate(camera_path("mapping", 60))]
    build_map(kfs, work / "map_sift", features=SIFT_CONF, matcher="mnn_ratio", progress=False)
    for name in learned:
        build_map(kfs, work / f"map_{name}", features=LEARNED_CONFS[name], matcher=FEATLOC_MATCHER, progress=False)
    qdir = work / "queries"
    qdir.mkdir()
    for i, T in enumerate(camera_path("query", num_queries)):
        rgb = scene.render(T, K, w, h, seed=i)[0]
        cv2.imwrite(str(qdir / f"{i:03d}.jpg"), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 90])
    (work / "camera.json").write_text(json.dumps(cam.to_dict()))


def worker(work: Path, max_keypoints: int, warmup: int, pipeline: str) -> dict:
    """Runs in a fresh process: load the map, localize every query (decode from JPEG bytes).
    pipeline: "sift" or "<learned>-torch" / "<learned>-onnxruntime" with <learned> a LEARNED_CONFS key
    ("featloc-onnxruntime:spin": with the ONNX Runtime threads busy-waiting between runs, the onnxruntime default;
    onnx_spinning_benchmark.py)."""
    cv2.setNumThreads(THREADS)
    from featloc_ros.geometry import Camera
    from featloc_ros.localization import Localizer

    cam = Camera.from_dict(json.loads((work / "camera.json").read_text()))
    if pipeline == "sift":
        map_dir, feats = work / "map_sift", {**SIFT_CONF, "max_keypoints": max_keypoints, "resize_max": 0}
    else:
        learned, rest = pipeline.split("-", 1)
        backend, _, option = rest.partition(":")
        map_dir = work / f"map_{learned}"
        feats = {**LEARNED_CONFS[learned], "max_keypoints": max_keypoints, "resize_max": 0, "backend": backend,
                 "num_threads": THREADS}
        if option == "spin":
            feats["onnx_spinning"] = True
    loc = Localizer.from_map_dir(map_dir, {"features": feats})
    blobs = [p.read_bytes() for p in sorted((work / "queries").glob("*.jpg"))]
    times = {s: [] for s in STAGES}
    localized = 0
    for i, blob in enumerate([blobs[0]] * warmup + blobs):
        loc.reset()  # retrieval only: the worst case, no tracking prior
        t0 = cv2.getTickCount()
        img = cv2.cvtColor(cv2.imdecode(np.frombuffer(blob, np.uint8), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
        decode_ms = 1e3 * (cv2.getTickCount() - t0) / cv2.getTickFrequency()
        r = loc.localize(img, cam, timestamp=float(i))
        if i < warmup:
            continue
        localized += r.ok
        t = {k: 1e3 * v for k, v in r.timings.items()}
        t["decode"] = decode_ms
        t["total"] = t.get("total", 0.0) + decode_ms
        for s in STAGES:
            times[s].append(t.get(s, 0.0))
    return {"times_ms": times, "localized": localized, "runs": len(blobs),
            "peak_rss_mb": peak_rss_mb()}


PAIR_MATCHERS = ("featloc_isnn", "featloc_isnn_ratio", "featloc_sparse", "featloc_sparse_onnx", "featloc_sparse_v3",
                 "featloc_sparse_v3_onnx", "featloc_sparse_v3_exit", "featloc_sparse_small",
                 "featloc_sparse_small_onnx", "featloc_sparse_small_v6", "featloc_sparse_small_v6_onnx",
                 "featloc_sparse_small_v11", "featloc_sparse_small_v11_onnx")


def query_pair_features(work: Path, max_keypoints: int) -> list:
    """FeatLoc features (ONNX Runtime, THREADS threads) of the query frames -> the pairs of consecutive frames
    (the peers' protocol)."""
    cv2.setNumThreads(THREADS)
    from featloc_ros.features import create_extractor

    ext = create_extractor({**FEATLOC_CONF, "max_keypoints": max_keypoints, "resize_max": 0,
                            "backend": "onnxruntime", "num_threads": THREADS})
    feats = [ext(cv2.cvtColor(cv2.imread(str(p)), cv2.COLOR_BGR2RGB))
             for p in sorted((work / "queries").glob("*.jpg"))]
    return list(zip(feats[:-1], feats[1:]))


def pair_worker(work: Path, max_keypoints: int, warmup: int) -> dict:
    """Runs in a fresh process: each of our matchers on the pairs of consecutive query frames
    (``query_pair_features``): per-pair matching times."""
    from featloc_ros.matching import create_matcher

    pairs = query_pair_features(work, max_keypoints)
    out = {}
    for name in PAIR_MATCHERS:
        try:
            matcher = create_matcher({**matcher_confs[name], "num_threads": THREADS}
                                     if "sparse" in name else name)
        except FileNotFoundError as e:
            out[name] = {"skipped": str(e).splitlines()[0]}
            continue
        times, counts, layers = [], [], []
        for i, (f0, f1) in enumerate([pairs[0]] * warmup + pairs):
            t0 = cv2.getTickCount()
            m = matcher(f0, f1)
            if i >= warmup:
                times.append(1e3 * (cv2.getTickCount() - t0) / cv2.getTickFrequency())
                counts.append(len(m))
                layers.append(getattr(matcher, "last_layers_run", None))
        out[name] = {"match_ms": times, "matches": counts}
        if None not in layers:  # layers run per pair (the early exit)
            out[name]["layers"] = layers
    return out


def peak_rss_mb() -> float:
    """VmHWM of this process. (getrusage's ru_maxrss survives fork + exec on Linux, so a child
    would report its parent's peak.)"""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024.0
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def stats(values) -> dict:
    return {"median": float(np.median(values)), "p90": float(np.percentile(values, 90))}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="1024 keypoints only, 20 runs, no peers")
    p.add_argument("--runs", type=int, default=20)
    p.add_argument("--rounds", type=int, default=2, help="measure every configuration this many times, "
                                                           "alternating (samples pooled); --quick: 1")
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--name", default="latency", help="results file name")
    p.add_argument("--worker", nargs=3, metavar=("WORKDIR", "KEYPOINTS", "PIPELINE"), help=argparse.SUPPRESS)
    p.add_argument("--pair-worker", nargs=2, metavar=("WORKDIR", "KEYPOINTS"), help=argparse.SUPPRESS)
    p.add_argument("--peers", nargs="*", default=["xfeat_mnn", "xfeat_lighterglue", "aliked_lightglue",
                                                  "disk_lightglue"])
    p.add_argument("--refined", action="store_true", help="also the opt-in featloc_refined entry (models/featloc_v10: "
                                                           "v4 + the learned keypoint refiner), with its own map")
    args = p.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(Path(args.worker[0]), int(args.worker[1]), args.warmup, args.worker[2])))
        return 0
    if args.pair_worker:
        print(json.dumps(pair_worker(Path(args.pair_worker[0]), int(args.pair_worker[1]), args.warmup)))
        return 0
    kp_list = [1024] if args.quick else [512, 1024, 2048]
    if args.quick:
        args.rounds = 1
    if args.rounds < 1:
        p.error("--rounds must be >= 1")
    results = {"ours": {}, "peers": {}}
    env = thread_env()
    no_learned = learned_available()
    pipelines = {"rootsift+mnn_ratio (OpenCV, numpy, pycolmap)": ("sift", kp_list)}
    if no_learned is None:
        pipelines["featloc+isnn (PyTorch)"] = ("featloc-torch", kp_list)
        # the keypoint count k is an input of the ONNX graph
        pipelines["featloc+isnn (ONNX Runtime)"] = ("featloc-onnxruntime", kp_list)
        if args.refined:
            pipelines["featloc_refined+isnn (PyTorch)"] = ("featloc_refined-torch", kp_list)
            pipelines["featloc_refined+isnn (ONNX Runtime)"] = ("featloc_refined-onnxruntime", kp_list)
    # Every measurement runs in args.rounds rounds (all configurations, then all again): the samples of the rounds
    # are pooled, so a slow phase of the (shared) machine does not fall on one configuration only.
    raw_ours, raw_pairs, raw_peers = {}, {}, {}
    skipped = {}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        render_inputs(work, args.runs, [] if no_learned else ["featloc"] + ["featloc_refined"] * args.refined)
        methods = []
        if not args.quick and args.peers:
            from peers.client import peer_info, run_peer_pairs

            methods, skipped = resolve_methods(args.peers)
            images = [cv2.cvtColor(cv2.imread(str(pth)), cv2.COLOR_BGR2RGB)
                      for pth in sorted((work / "queries").glob("*.jpg"))]
            pairs = list(zip(images[:-1], images[1:]))
        for rnd in range(args.rounds):
            for label, (pipeline, kps) in pipelines.items():
                for k in kps:
                    out = subprocess.run([sys.executable, __file__, "--worker", str(work), str(k), pipeline,
                                          "--warmup", str(args.warmup)], capture_output=True, text=True, env=env,
                                         check=True)
                    res = json.loads(out.stdout.strip().splitlines()[-1])
                    r = raw_ours.setdefault(label, {}).setdefault(k, {"times_ms": {}, "localized": 0, "runs": 0,
                                                                      "peak_rss_mb": 0.0, "round_total_ms": []})
                    for stage, v in res["times_ms"].items():
                        r["times_ms"].setdefault(stage, []).extend(v)
                    r["localized"] += res["localized"]
                    r["runs"] += res["runs"]
                    r["peak_rss_mb"] = max(r["peak_rss_mb"], res["peak_rss_mb"])
                    r["round_total_ms"].append(float(np.median(res["times_ms"]["total"])))
                    print(f"round {rnd + 1} {label} {k}: total median {r['round_total_ms'][-1]:.0f} ms")
            if no_learned is None:  # our matchers on the peers' pairs (consecutive query frames), per pair
                for k in kp_list:
                    out = subprocess.run([sys.executable, __file__, "--pair-worker", str(work), str(k), "--warmup",
                                          str(args.warmup)], capture_output=True, text=True, env=env, check=True)
                    for name, r in json.loads(out.stdout.strip().splitlines()[-1]).items():
                        acc = raw_pairs.setdefault(name, {}).setdefault(k, {"match_ms": [], "matches": [],
                                                                           "layers": [], "round_ms": []})
                        if "skipped" in r:
                            acc["skipped"] = r["skipped"]
                            continue
                        acc["match_ms"] += r["match_ms"]
                        acc["matches"] += r["matches"]
                        acc["layers"] += r.get("layers", [])
                        acc["round_ms"].append(float(np.median(r["match_ms"])))
            for m in methods:
                for k in kp_list:
                    outs = run_peer_pairs(m.name, pairs, k, num_threads=THREADS)
                    info = peer_info(m.name) or {}
                    acc = raw_peers.setdefault(m.name, {}).setdefault(k, {"extract_ms": [], "match_ms": [],
                                                                         "peak_rss_mb": None, "round_ms": []})
                    acc["extract_ms"] += [o["extract_ms0"] for o in outs] + [o["extract_ms1"] for o in outs]
                    acc["match_ms"] += [o["match_ms"] for o in outs]
                    acc["round_ms"].append(float(np.median([o["match_ms"] for o in outs])))
                    acc["peak_rss_mb"] = info.get("peak_rss_mb")
                    print(f"round {rnd + 1} {m.name} {k}: match {acc['round_ms'][-1]:.0f} ms")
    for label, by_k in raw_ours.items():
        for k, r in by_k.items():
            results["ours"].setdefault(label, {})[k] = {
                "stages": {s: stats(v) for s, v in r["times_ms"].items()}, "localized": r["localized"],
                "runs": r["runs"], "peak_rss_mb": r["peak_rss_mb"], "round_total_median_ms": r["round_total_ms"]}
    for name, by_k in raw_pairs.items():
        for k, r in by_k.items():
            results.setdefault("matchers", {}).setdefault(name, {})[k] = (
                {"skipped": r["skipped"]} if "skipped" in r else
                {"match_ms": stats(r["match_ms"]), "runs": len(r["match_ms"]), "round_median_ms": r["round_ms"],
                 "matches": float(np.median(r["matches"])),
                 "layers": float(np.mean(r["layers"])) if r["layers"] else None})
    for name, by_k in raw_peers.items():
        for k, r in by_k.items():
            results["peers"].setdefault(name, {})[k] = {
                "extract_ms": stats(r["extract_ms"]), "match_ms": stats(r["match_ms"]), "runs": len(r["match_ms"]),
                "round_median_ms": r["round_ms"], "peak_rss_mb": r["peak_rss_mb"]}
    rows = []
    for label, by_k in results["ours"].items():
        for k, r in by_k.items():
            st = r["stages"]
            rows.append([label, k, *[f"{st[s]['median']:.1f} / {st[s]['p90']:.1f}" for s in STAGES],
                         f"{r['localized']}/{r['runs']}", r["peak_rss_mb"]])
    for name, by_k in results["peers"].items():
        for k, r in by_k.items():
            rows.append([f"{name} (PyTorch)", k, "–", f"{r['extract_ms']['median']:.1f} / {r['extract_ms']['p90']:.1f}",
                         "–", f"{r['match_ms']['median']:.1f} / {r['match_ms']['p90']:.1f}", "–", "–", "–",
                         r["peak_rss_mb"]])
    pair_rows = []
    for name, by_k in results.get("matchers", {}).items():
        for k, r in by_k.items():
            if "skipped" not in r:
                pair_rows.append([f"featloc + {name}", k, f"{r['match_ms']['median']:.1f} / {r['match_ms']['p90']:.1f}",
                                  r["matches"], r.get("layers")])
    for name, by_k in results["peers"].items():
        for k, r in by_k.items():
            pair_rows.append([f"{name} (their matcher, PyTorch)", k,
                              f"{r['match_ms']['median']:.1f} / {r['match_ms']['p90']:.1f}", None, None])
    md = ["# Latency per stage (ms, median / p90), 640x480, 2 threads\n",
          f"{args.runs} query frames after {args.warmup} warm-up runs; each configuration in a fresh process "
          "(peak RSS of that process, MB)"
          + (f", in {args.rounds} rounds (every configuration, then every one again; the samples of the rounds "
             "are pooled and the json keeps each round's median)" if args.rounds > 1 else "")
          + ". Ours: full localization from JPEG bytes with retrieval only "
          "(no tracking prior) against a 60-keyframe map of the demo room. Peers: extraction per image and "
          "matching per image pair (their matcher), PyTorch on the CPU in their own venv. The learned FeatLoc "
          "pipeline (invariance-selected descriptors, invariance-selected mutual NN) runs with its PyTorch and "
          "ONNX Runtime backends (CPU); the keypoint count k is an input of its ONNX graph (the descriptor "
          "stage describes k keypoints).\n",
          markdown_table(["method (backend)", "keypoints", *STAGES, "localized", "peak RSS (MB)"], rows)]
    if pair_rows:
        md += ["\n## Matching one image pair (ms, median / p90)\n",
               "The peers' pairs (consecutive query frames), 2 threads, each configuration in a fresh process. Ours "
               "on FeatLoc features (ONNX Runtime): invariance-selected mutual NN (`featloc_isnn`, with the ratio "
               "test `featloc_isnn_ratio`) and the sparse-attention matcher (`featloc_sparse` PyTorch, "
               "`featloc_sparse_onnx` ONNX Runtime; 4 layers, k = 16; `featloc_sparse_v3[_onnx]`: the v3 weights, "
               "`featloc_sparse_v3_exit`: the same with the early exit; `featloc_sparse_small[_onnx]`: 3 layers, "
               "k = 8; `featloc_sparse_small_v6[_onnx]`: the same size with the similarity prior, "
               "`featloc_sparse_small_v11[_onnx]`: the average of small_v6 and two fine-tunes like it); "
               "matches = median "
               "count per pair; layers = mean layers run per pair (PyTorch).\n",
               markdown_table(["matcher", "keypoints", "match", "matches", "layers"], pair_rows)]
    if no_learned:
        skipped["featloc (learned)"] = no_learned
    skipped["TensorRT"] = ("needs an NVIDIA GPU; this machine has none (the ONNX model it would run is the one "
                           "measured with ONNX Runtime above)")
    if skipped:
        md += ["\n## Not run\n"] + [f"- {k}: {v}" for k, v in skipped.items()]
    suffix = "_quick" if args.quick else ""
    write_results(f"{args.name}{suffix}", {"settings": vars(args), "results": results, "skipped": skipped}, "\n".join(md))
    return 0


if __name__ == "__main__":
    sys.exit(main())
