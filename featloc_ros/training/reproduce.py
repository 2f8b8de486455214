"""One command that rebuilds the shipped FeatLoc weights from nothing and compares them with models/.

    python -m featloc_ros.training.reproduce --out runs/reproduce     # 2 cores: ~2 h where the weights were trained,
                                                                      # 185 min on this machine in 2026-11 (models/README.md)
    python -m featloc_ros.training.reproduce --out runs/reproduce --until featloc_v4

The stages run in order, each started from the previous stage's output in ``--out`` (never from models/):

1. ``featloc_v2``: train ``configs/featloc_v2.yaml`` from random weights;
2. ``featloc_v3``: train ``configs/featloc_v3.yaml`` from 1;
3. ``featloc_v4``: train ``configs/featloc_v4.yaml`` from 2 (the default weights of the ``featloc*`` entries);
4. ``featloc_v4_calibration``: ``calibrate_keypoints --write`` on 3 (score blur, soft-argmax temperature and
   keypoint offset into ``featloc_v4.model.json``; the ONNX model exported again);
5. ``featloc_v10``: ``fit_refiner`` on 4 (the ``featloc_refined*`` entries).

Resumable: run the same command again. A finished stage (recorded in ``<out>/reproduce.json``) is skipped, and a
training stage continues from its last checkpoint (``train --resume``; the trainer's samples are a pure function
of seed and index, so a resumed run repeats an uninterrupted one). Each stage's output goes to
``<out>/<stage>.log``. ``<out>/reproduce.json`` and its table ``<out>/reproduce.md`` are rewritten after every
stage, an interrupted one included, with the times so far. At the end every weights file and calibrated setting is
compared with its shipped counterpart in models/ and both files get, per file, whether the tensors are identical or
by how much they differ.
"""

from __future__ import annotations

import argparse
import json
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from .train import REPO_ROOT

CONFIG_DIR = REPO_ROOT / "featloc_ros" / "training" / "configs"
MODELS_DIR = REPO_ROOT / "models"
CALIBRATED_SETTINGS = ("score_blur", "subpixel_temperature", "keypoint_offset", "edge_ratio", "keypoint_refiner")


@dataclass(frozen=True)
class Stage:
    """One step of the chain. ``weights``: the state dict the stage writes, ``<out>/<weights>.pt`` (for a
    calibration, the weights whose ``.model.json`` it rewrites); ``base``: the weights it starts from (``None``:
    random initialisation); ``extra``: more arguments for its command (training: dotted config overrides)."""

    name: str
    kind: str  # "train" | "calibrate" | "refine"
    weights: str
    base: str | None = None
    config: str | None = None
    extra: tuple[str, ...] = field(default_factory=tuple)


STAGES = (
    Stage("featloc_v2", "train", "featloc_v2", config="featloc_v2.yaml"),
    Stage("featloc_v3", "train", "featloc_v3", base="featloc_v2", config="featloc_v3.yaml"),
    Stage("featloc_v4", "train", "featloc_v4", base="featloc_v3", config="featloc_v4.yaml"),
    Stage("featloc_v4_calibration", "calibrate", "featloc_v4"),
    Stage("featloc_v10", "refine", "featloc_v10", base="featloc_v4"),
)


def stage_command(stage: Stage, out: Path) -> list[str]:
    """The command line of ``stage`` with its files under ``out`` (absolute paths)."""
    def pt(stem):
        return str(out / f"{stem}.pt")

    module = {"train": "train", "calibrate": "calibrate_keypoints", "refine": "fit_refiner"}.get(stage.kind)
    if module is None:
        raise ValueError(f"stage {stage.name}: unknown kind {stage.kind!r}")
    cmd = [sys.executable, "-m", f"featloc_ros.training.{module}"]
    if stage.kind == "train":
        cmd += ["--config", str(CONFIG_DIR / stage.config), "--out", str(out / f"{stage.name}_run"), "--resume",
                f"export.weights={pt(stage.weights)}", f"export.onnx={out / (stage.weights + '.onnx')}",
                f"export.summary={out / (stage.weights + '_training.json')}",
                f"train.init_weights={pt(stage.base) if stage.base else 'null'}"]
    elif stage.kind == "calibrate":
        cmd += ["--weights", pt(stage.weights), "--write"]
    else:
        cmd += ["--weights", pt(stage.base), "--out", pt(stage.weights)]
    return cmd + list(stage.extra)


def read_json(path: Path, remedy: str):
    """The JSON in ``path``; invalid JSON stops the command with a message naming the file and ``remedy``."""
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise SystemExit(f"reproduce: {path} is not valid JSON ({exc}); {remedy}") from exc


def load_record(path: Path) -> dict:
    if not path.is_file():
        return {"stages": {}}
    record = read_json(path, "delete it to start the record again")
    if not isinstance(record, dict) or not isinstance(record.get("stages"), dict):
        raise SystemExit(f"reproduce: {path} has no 'stages' mapping; delete it to start the record again")
    return record


def run_stages(stages, out: Path, say=print) -> dict:
    """Run the stages not yet recorded as finished in ``<out>/reproduce.json``; returns the record."""
    out.mkdir(parents=True, exist_ok=True)
    record = load_record(out / "reproduce.json")
    record.pop("comparison", None)  # an earlier run's; reproduce() compares again once the stages are done
    for stage in stages:
        done = record["stages"].get(stage.name)
        if done and done.get("finished"):
            say(f"[reproduce] {stage.name}: finished before ({done['seconds']:.0f} s), skipped")
            continue
        cmd = stage_command(stage, out)
        log = out / f"{stage.name}.log"
        say(f"[reproduce] {stage.name}: {' '.join(cmd[1:])}  (log: {log})")
        t0 = time.time()
        with open(log, "a") as fh:
            try:
                code = subprocess.call(cmd, stdout=fh, stderr=subprocess.STDOUT, cwd=REPO_ROOT)
            except KeyboardInterrupt:  # Ctrl-C or SIGTERM (main): the stage's time so far is still recorded
                code = None
        seconds = time.time() - t0 + (done or {}).get("seconds", 0.0)  # time of earlier, interrupted runs too
        record["stages"][stage.name] = {"command": cmd[1:], "seconds": round(seconds, 1), "finished": code == 0,
                                        "runs": (done or {}).get("runs", 0) + 1}
        _write_record(record, out)  # after every stage, so an unfinished run's times are readable as a table too
        if code is None:
            raise SystemExit(f"reproduce: interrupted during {stage.name}; run the same command again to resume")
        if code != 0:
            raise SystemExit(f"reproduce: stage {stage.name} failed (exit {code}); see {log}")
        say(f"[reproduce] {stage.name}: done in {seconds / 60:.1f} min")
    _write_record(record, out)
    return record


def _write_record(record: dict, out: Path) -> None:
    """``<out>/reproduce.json`` and its table ``<out>/reproduce.md`` (with the total so far)."""
    record["total_seconds"] = round(sum(s["seconds"] for s in record["stages"].values()), 1)
    (out / "reproduce.json").write_text(json.dumps(record, indent=2) + "\n")
    (out / "reproduce.md").write_text(markdown(record))


def compare_weights(path: Path, shipped: Path) -> dict:
    """Tensor by tensor: identical, or the largest absolute difference (and its tensor)."""
    import torch

    a = torch.load(path, map_location="cpu", weights_only=True)
    b = torch.load(shipped, map_location="cpu", weights_only=True)
    if set(a) != set(b):
        return {"identical": False, "problem": f"tensor names differ: {len(set(a) ^ set(b))} not in both"}
    worst, worst_name, equal, counters = 0.0, None, 0, []
    for k in a:
        if a[k].shape != b[k].shape:
            return {"identical": False, "problem": f"{k}: shape {tuple(a[k].shape)} vs {tuple(b[k].shape)}"}
        if torch.equal(a[k], b[k]):
            equal += 1
        elif not a[k].is_floating_point():  # BatchNorm's num_batches_tracked: a step count, not a weight
            counters.append(k)
        else:
            d = float((a[k].double() - b[k].double()).abs().max())
            if d >= worst:
                worst, worst_name = d, k
    return {"identical": equal == len(a), "tensors": len(a), "equal_tensors": equal, "max_abs_diff": worst,
            "max_abs_diff_tensor": worst_name, "integer_tensors_differing": counters}


def model_settings(path: Path) -> dict:
    if not path.is_file():
        return {}
    model = json.loads(path.read_text()).get("model", {})
    return {k: model[k] for k in CALIBRATED_SETTINGS if k in model}


def seconds_per_step(summary: Path) -> float | None:
    """Training time per step from a training summary (``<stem>_training.json``), or None without one."""
    if not summary.is_file():
        return None
    d = read_json(summary, "its stage's training wrote it: run the stage again, or delete the file to compare "
                           "without its time")
    if not isinstance(d, dict):
        raise SystemExit(f"reproduce: {summary} is not a training summary (a JSON object)")
    return round(d["train_time_s"] / d["steps"], 3) if d.get("train_time_s") and d.get("steps") else None


def compare_with_shipped(stages, out: Path, models: Path = MODELS_DIR) -> dict:
    """For each weights file the stages wrote: the comparison with ``models/<same name>``, where a
    ``.model.json`` exists its calibrated settings against the shipped ones, and for a trained file the training
    seconds per step of both runs (the same steps, so the ratio is the speed of the two machines and codes)."""
    result = {}
    for stem in dict.fromkeys(s.weights for s in stages):
        made, shipped = out / f"{stem}.pt", models / f"{stem}.pt"
        if not made.is_file():
            continue
        if not shipped.is_file():
            result[stem] = {"identical": None, "problem": f"no shipped {shipped.name} in {models}"}
            continue
        entry = compare_weights(made, shipped)
        mine, theirs = (model_settings(p.with_suffix(".model.json")) for p in (made, shipped))
        if mine or theirs:
            entry["settings"] = {"reproduced": mine, "shipped": theirs, "equal": mine == theirs}
        pace = [seconds_per_step(d / f"{stem}_training.json") for d in (out, models)]
        if pace[0] is not None:
            entry["seconds_per_step"] = {"reproduced": pace[0], "shipped": pace[1]}
        result[stem] = entry
    return result


def markdown(record: dict) -> str:
    lines = ["# Reproducing the shipped FeatLoc weights", "",
             "`python -m featloc_ros.training.reproduce` (featloc_ros/training/reproduce.py): each stage from the "
             "previous stage's output, never from models/; wall time on this machine, then each file against "
             "models/.", "", "| stage | minutes | runs |", "|---|---|---|"]
    for name, s in record["stages"].items():
        lines.append(f"| {name} | {s['seconds'] / 60:.1f}{'' if s['finished'] else ' (unfinished)'} | {s['runs']} |")
    lines.append(f"| **total** | **{record.get('total_seconds', 0) / 60:.1f}** | |")
    lines += ["", "| weights | identical to models/ | equal tensors | max abs diff (tensor) | calibrated settings | "
              "training s/step: rebuilt (shipped) |", "|---|---|---|---|---|---|"]
    for stem, c in record.get("comparison", {}).items():
        if "problem" in c:
            lines.append(f"| {stem} | {c['identical']} | | {c['problem']} | | |")
            continue
        settings, pace = c.get("settings"), c.get("seconds_per_step")
        s = "" if settings is None else ("equal" if settings["equal"] else
                                         f"reproduced {settings['reproduced']} vs shipped {settings['shipped']}")
        p = "" if pace is None else f"{pace['reproduced']} ({'-' if pace['shipped'] is None else pace['shipped']})"
        lines.append(f"| {stem} | {'yes' if c['identical'] else 'no'} | {c['equal_tensors']}/{c['tensors']} | "
                     f"{c['max_abs_diff']:.3g} ({c['max_abs_diff_tensor'] or '-'}) | {s} | {p} |")
    return "\n".join(lines) + "\n"


def reproduce(stages, out: Path, models: Path = MODELS_DIR, say=print) -> dict:
    record = run_stages(stages, out, say)
    record["comparison"] = compare_with_shipped(stages, out, models)
    _write_record(record, out)
    say(markdown(record))
    return record


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="runs/reproduce", help="run directory (all outputs; models/ is never written)")
    p.add_argument("--until", default=STAGES[-1].name, choices=[s.name for s in STAGES],
                   help="the last stage to run (default: all)")
    args = p.parse_args(argv)
    out = Path(args.out).resolve()
    if out == MODELS_DIR.resolve():
        raise SystemExit("reproduce: --out must not be models/ (the comparison needs the shipped files)")
    signal.signal(signal.SIGTERM, _interrupt)
    last = [s.name for s in STAGES].index(args.until)
    reproduce(STAGES[:last + 1], out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
