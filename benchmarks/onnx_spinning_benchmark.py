"""ONNX Runtime thread spinning on or off: what it costs or saves in the localization pipeline (extraction with
the FeatLoc ONNX model, then retrieval, invariance-selected mutual-NN matching and PnP in the same process) and
in the sparse-attention matcher run back to back on image pairs.

ONNX Runtime's intra-op threads busy-wait after a run by default (``session.intra_op.allow_spinning``), which
speeds up the next run of the same session but holds both cores while the stages after it run. The settings
are ``onnx_spinning`` of the FeatLoc extractor (default off) and of the sparse-attention matcher (default on).

    python benchmarks/onnx_spinning_benchmark.py [--runs 20] [--rounds 3]

Same inputs and worker as latency_benchmark.py (640x480 demo-room queries, 60-keyframe map, 1024 keypoints,
2 threads); every configuration in a fresh process, the configurations alternated over the rounds (samples
pooled). Writes results/onnx_spinning.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import cv2
import numpy as np

from common import markdown_table, write_results  # noqa: E402
from latency_benchmark import (STAGES, THREADS, learned_available, query_pair_features, render_inputs, stats,
                               thread_env)

from featloc_ros.matching import confs as matcher_confs

PIPELINES = {"extractor spinning off (default)": "featloc-onnxruntime",
             "extractor spinning on": "featloc-onnxruntime:spin"}
MATCHER = "featloc_sparse_small_onnx"


def pair_worker(work: Path, max_keypoints: int, warmup: int, spinning: bool) -> dict:
    """Fresh process: FeatLoc features (ONNX Runtime) of the query frames, then the small sparse-attention matcher
    (ONNX Runtime) on consecutive frames, back to back -> per-pair times (ms)."""
    from featloc_ros.matching import create_matcher

    pairs = query_pair_features(work, max_keypoints)
    matcher = create_matcher({**matcher_confs[MATCHER], "num_threads": THREADS, "onnx_spinning": spinning})
    times = []
    for i, (f0, f1) in enumerate([pairs[0]] * warmup + pairs):
        t0 = cv2.getTickCount()
        matcher(f0, f1)
        if i >= warmup:
            times.append(1e3 * (cv2.getTickCount() - t0) / cv2.getTickFrequency())
    return {"match_ms": times}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", type=int, default=20)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--keypoints", type=int, default=1024)
    p.add_argument("--pair-worker", nargs=2, metavar=("WORKDIR", "SPINNING"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.pair_worker:
        out = pair_worker(Path(args.pair_worker[0]), args.keypoints, args.warmup, args.pair_worker[1] == "1")
        print(json.dumps(out))
        return 0
    missing = learned_available()
    if missing:
        print(f"skipped: {missing}")
        return 0
    env = thread_env()
    here = Path(__file__).resolve().parent
    raw = {label: {} for label in PIPELINES}
    raw_pairs = {"matcher spinning on (default)": [], "matcher spinning off": []}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        render_inputs(work, args.runs, ["featloc"])
        for rnd in range(args.rounds):
            for label, pipeline in PIPELINES.items():
                out = subprocess.run([sys.executable, str(here / "latency_benchmark.py"), "--worker", str(work),
                                      str(args.keypoints), pipeline, "--warmup", str(args.warmup)],
                                     capture_output=True, text=True, env=env, check=True)
                res = json.loads(out.stdout.strip().splitlines()[-1])
                for stage, v in res["times_ms"].items():
                    raw[label].setdefault(stage, []).extend(v)
                print(f"round {rnd + 1} {label}: total median {np.median(res['times_ms']['total']):.1f} ms")
            for label, flag in zip(raw_pairs, ("1", "0")):
                out = subprocess.run([sys.executable, __file__, "--pair-worker", str(work), flag, "--keypoints",
                                      str(args.keypoints), "--warmup", str(args.warmup)],
                                     capture_output=True, text=True, env=env, check=True)
                raw_pairs[label] += json.loads(out.stdout.strip().splitlines()[-1])["match_ms"]
                print(f"round {rnd + 1} {label}: pair median {np.median(raw_pairs[label]):.1f} ms")
    results = {"pipeline": {label: {s: stats(v) for s, v in st.items()} for label, st in raw.items()},
               "matcher": {label: stats(v) for label, v in raw_pairs.items()}}
    rows = [[label, *[f"{st[s]['median']:.1f} / {st[s]['p90']:.1f}" for s in STAGES]]
            for label, st in results["pipeline"].items()]
    pair_rows = [[label, f"{r['median']:.1f} / {r['p90']:.1f}"] for label, r in results["matcher"].items()]
    md = ["# ONNX Runtime thread spinning (ms, median / p90)\n",
          f"640x480, {args.keypoints} keypoints, {THREADS} threads; {args.runs} frames after {args.warmup} warm-up "
          f"runs per process, {args.rounds} rounds alternating the settings (samples pooled).\n",
          "## Localization pipeline (FeatLoc ONNX extraction + invariance-selected mutual NN)\n",
          markdown_table(["setting", *STAGES], rows),
          f"\n## Sparse-attention matcher `{MATCHER}` on consecutive query frames\n",
          markdown_table(["setting", "match per pair"], pair_rows)]
    write_results("onnx_spinning", {"settings": vars(args), "results": results}, "\n".join(md))
    return 0


if __name__ == "__main__":
    sys.exit(main())
