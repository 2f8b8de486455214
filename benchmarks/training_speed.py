"""Training seconds per step of the shipped FeatLoc stages, with and without ``train.channels_last``.

    python benchmarks/training_speed.py [--configs featloc_v2.yaml featloc_v3.yaml featloc_v4.yaml]
                                        [--steps 40] [--warmup 3] [--name training_speed]

Each configuration runs ``--warmup`` + ``--steps`` real training steps (the trainer itself, its data and
threads, into a temporary folder, nothing exported), once in each memory layout, the two runs back to back; the
seconds per step are measured over the last ``--steps``. The table also gives each stage's full length at that
speed (its ``train.steps``), for comparison with ``make weights`` (benchmarks/results/reproduce.md). Runs one
training at a time: never start it next to another training or benchmark. Writes results/<name>.{json,md}.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import torch

from common import markdown_table, write_results  # noqa: E402

from featloc_ros.training.train import full_config, load_config, train

CONFIG_DIR = Path(__file__).resolve().parents[1] / "featloc_ros" / "training" / "configs"


def seconds_per_step(config: str, channels_last: bool, steps: int, warmup: int) -> dict:
    """Train ``config`` for warmup + steps steps in a temporary folder -> {"s_per_step", "stage_steps"}."""
    overrides = [f"train.channels_last={str(channels_last).lower()}", "train.log_every=1000000",
                 "train.checkpoint_every=1000000", "train.plot_every=1000000", "export.onnx=null",
                 "export.weights=null", "export.summary=null"]  # never touches models/
    conf = load_config(CONFIG_DIR / config, overrides)
    with tempfile.TemporaryDirectory() as tmp:
        summary = train(conf, Path(tmp), max_steps=warmup + steps, log=lambda *_: None)
        times = torch.load(Path(tmp) / "checkpoints" / "last.pt", weights_only=True)["history_time"].tolist()
    if summary["steps"] != warmup + steps:
        raise RuntimeError(f"{config}: trained {summary['steps']} steps, expected {warmup + steps}")
    return {"s_per_step": (times[-1] - times[warmup - 1]) / steps, "stage_steps": full_config(conf)["train"]["steps"]}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--configs", nargs="+", default=["featloc_v2.yaml", "featloc_v3.yaml", "featloc_v4.yaml"])
    p.add_argument("--steps", type=int, default=40)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--name", default="training_speed")
    args = p.parse_args(argv)
    if args.steps < 1 or args.warmup < 1:
        p.error("--steps and --warmup must be at least 1")
    results: dict = {}
    for config in args.configs:
        results[config] = {layout: seconds_per_step(config, layout == "channels_last", args.steps, args.warmup)
                           for layout in ("nchw", "channels_last")}
        r = results[config]
        print(f"{config:<20} NCHW {r['nchw']['s_per_step']:.3f} s/step, channels_last "
              f"{r['channels_last']['s_per_step']:.3f} s/step", flush=True)
    rows = []
    for config, r in results.items():
        nchw, cl, n = r["nchw"]["s_per_step"], r["channels_last"]["s_per_step"], r["nchw"]["stage_steps"]
        rows.append([config, n, round(nchw, 3), round(cl, 3), f"{100 * (1 - cl / nchw):.1f}%",
                     round(n * nchw / 60, 1), round(n * cl / 60, 1)])
    md = [f"# Training speed: {args.name}\n",
          f"Seconds per training step over {args.steps} steps after {args.warmup} warm-up steps, the trainer's own "
          "threads (2), NCHW vs `train.channels_last` (the default since it was measured here), each pair of runs "
          "back to back. Stage minutes: the stage's steps at that speed (training only; the calibration and "
          "refiner fit of `make weights` come on top).\n",
          markdown_table(["config", "stage steps", "s/step NCHW", "s/step channels_last", "saved",
                          "stage min NCHW", "stage min channels_last"], rows)]
    write_results(args.name, {"steps": args.steps, "warmup": args.warmup, "results": results}, "\n".join(md))
    return 0


if __name__ == "__main__":
    sys.exit(main())
