"""Config-driven, seeded, resumable trainer (glue-factory style) for the models of featloc_ros.nn.

    python -m featloc_ros.training.train --config featloc_ros/training/configs/featloc_v4.yaml \\
        [--out runs/featloc_v4] [--resume] [train.steps=100 data.crop_size=128 ...]
    python -m featloc_ros.training.train --config featloc_ros/training/configs/featloc_v4.yaml --export-onnx

``--export-onnx`` trains nothing: it writes the ONNX model of the config's ``export.onnx`` again from its
``export.weights`` (after a change of the export, e.g. the keypoint count becoming a graph input).

The config's ``task`` picks what is trained: ``descriptors`` (FeatLocNet; training.descriptor_task, the
default) or ``matcher`` (SparseMatcher on frozen FeatLoc features; training.matcher_task). A task supplies the
model, the data, the loss of a step, the plot panels and the exports; this module runs the loop.

Writes to the output directory: checkpoints/last.pt (model + optimizer state dicts, step, RNG states and loss
history as tensors; re-loaded with ``weights_only=True``), log.txt, loss_curves.png, summary.json; and when
all steps are done, the exports named in the config's ``export`` section (weights state dict, ONNX model,
a copy of the summary). Samples are a pure function of (seed, index), and the point sampling of the losses
of (seed, step), so a resumed run reproduces an uninterrupted one step for step.

A config with ``average: [weights files]`` trains nothing: its weights are the uniform average of those state
dicts (a "model soup" of fine-tunes of one initialisation: same architecture, other seeds or loss weights),
exported like trained weights, with each member's SHA-256 in the summary.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import random
import sys
import time
from pathlib import Path

import numpy as np
import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]

DEFAULT_TRAIN_CONF = {
    "steps": 3000,
    "batch_size": 6,
    "lr": 2e-3,
    "min_lr_factor": 0.05,  # cosine decay to lr * min_lr_factor
    "warmup_steps": 100,
    "weight_decay": 1e-4,
    "grad_clip": 5.0,
    "num_threads": 2,
    "channels_last": True,  # convolution weights and images in NHWC: 9-14% less time per descriptor step on 2 CPU
    #                         cores (benchmarks/results/training_speed.md); the same model, float rounding aside
    "log_every": 10,
    "checkpoint_every": 100,
    "plot_every": 100,
    "init_weights": None,  # a state dict to start from (fine-tuning): tensors with the same name and shape
    "trainable": None,  # None: every parameter; else a list of module names (e.g. [keypoint_head]) to train,
    #                     the rest frozen (no gradient, BatchNorm statistics kept: the module stays in eval mode)
}


def _deep_update(base: dict, update: dict) -> dict:
    out = dict(base)
    for k, v in (update or {}).items():
        out[k] = _deep_update(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> dict:
    """YAML file (optional ``base``: another YAML relative to it, deep-merged under this one) plus dotted
    ``key.sub=value`` overrides (values parsed as YAML) -> config dict."""
    conf: dict = {}
    if path:
        path = Path(path)
        conf = yaml.safe_load(path.read_text()) or {}
        if "base" in conf:
            conf = _deep_update(load_config(path.parent / conf.pop("base")), conf)
    for item in overrides or []:
        key, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"override {item!r} is not key=value")
        node = conf
        *parents, last = key.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[last] = yaml.safe_load(value)
    return conf


def get_task(conf: dict):
    """The task object of a config (``task``: descriptors | matcher)."""
    from .descriptor_task import DescriptorTask
    from .matcher_task import MatcherTask

    tasks = {"descriptors": DescriptorTask, "matcher": MatcherTask}
    name = conf.get("task", "descriptors")
    if name not in tasks:
        raise ValueError(f"training config: task must be one of {sorted(tasks)}, got {name!r}")
    return tasks[name]()


def full_config(conf: dict) -> dict:
    """Fill in defaults of every section (the task's data, loss and export defaults) and validate the keys."""
    task = get_task(conf)
    known = {"seed", "model", "data", "loss", "train", "export", "name", "task", "average"}
    unknown = set(conf) - known
    if unknown:
        raise ValueError(f"training config: unknown sections {sorted(unknown)}")
    sections = {**task.sections, "train": DEFAULT_TRAIN_CONF}
    out = {"name": conf.get("name", "featloc"), "task": task.name, "seed": int(conf.get("seed", 0)),
           "model": dict(conf.get("model") or {}), "average": [str(a) for a in conf.get("average") or []]}
    for name, default in sections.items():
        given = conf.get(name) or {}
        bad = set(given) - set(default)
        if bad:
            raise ValueError(f"training config [{name}]: unknown keys {sorted(bad)}")
        out[name] = _deep_update(default, given)
    bad = set(out["model"]) - set(task.model_class().default_conf)
    if bad:
        raise ValueError(f"training config [model]: unknown keys {sorted(bad)}")
    task.validate(out)
    return out


def resolve_path(path: str | None, default: Path | None = None) -> Path | None:
    """A config path: absolute, or relative to the repository root; ``default`` when empty."""
    if not path:
        return default
    p = Path(path)
    return p if p.is_absolute() else REPO_ROOT / p


def learning_rate(step: int, c: dict) -> float:
    if step < c["warmup_steps"]:
        return c["lr"] * (step + 1) / c["warmup_steps"]
    t = (step - c["warmup_steps"]) / max(1, c["steps"] - c["warmup_steps"])
    return c["lr"] * (c["min_lr_factor"] + (1 - c["min_lr_factor"]) * 0.5 * (1 + math.cos(math.pi * min(t, 1.0))))


# ----------------------------------------------------------------------------------------------------
# checkpoints: tensors and plain containers only (torch.load(..., weights_only=True))
# ----------------------------------------------------------------------------------------------------


def _rng_state_tensors() -> dict:
    import torch

    np_state = np.random.get_state()
    py_state = random.getstate()
    return {"torch": torch.get_rng_state(), "numpy_keys": torch.from_numpy(np_state[1].astype(np.int64)),
            "numpy_pos": torch.tensor([np_state[2], np_state[3]], dtype=torch.int64),
            "numpy_gauss": torch.tensor([np_state[4]], dtype=torch.float64),
            "python": torch.tensor(py_state[1], dtype=torch.int64)}


def _set_rng_state(state: dict):
    import torch

    torch.set_rng_state(state["torch"])
    pos, has_gauss = (int(v) for v in state["numpy_pos"])
    np.random.set_state(("MT19937", state["numpy_keys"].numpy().astype(np.uint32), pos, has_gauss,
                         float(state["numpy_gauss"][0])))
    random.setstate((3, tuple(int(v) for v in state["python"]), None))


def save_checkpoint(path: Path, model, optimizer, step: int, history: dict, conf: dict):
    import torch

    names = sorted(history["logs"][0]) if history["logs"] else []
    table = torch.tensor([[row[n] for n in names] for row in history["logs"]], dtype=torch.float64)
    ckpt = {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "step": torch.tensor(step),
            "rng": _rng_state_tensors(), "history_names": names, "history": table,
            "history_steps": torch.tensor(history["steps"], dtype=torch.int64),
            "history_time": torch.tensor(history["time"], dtype=torch.float64),
            "config_yaml": yaml.safe_dump(conf, sort_keys=True)}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    torch.save(ckpt, tmp)
    os.replace(tmp, path)


def load_checkpoint(path: Path, model, optimizer) -> tuple[int, dict, str]:
    import torch

    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    model.load_state_dict(ckpt["model"])
    optimizer.load_state_dict(ckpt["optimizer"])
    _set_rng_state(ckpt["rng"])
    names = ckpt["history_names"]
    logs = [dict(zip(names, row)) for row in ckpt["history"].tolist()]
    history = {"steps": ckpt["history_steps"].tolist(), "logs": logs, "time": ckpt["history_time"].tolist()}
    return int(ckpt["step"]), history, ckpt["config_yaml"]


# ----------------------------------------------------------------------------------------------------
# plots and summary
# ----------------------------------------------------------------------------------------------------


def _smooth(y: np.ndarray, n: int) -> np.ndarray:
    if len(y) < n or n <= 1:
        return y
    k = np.ones(n) / n
    return np.concatenate([y[: n - 1], np.convolve(y, k, mode="valid")])


def plot_history(history: dict, path: Path, panels: list[tuple[str, list[str]]]):
    """Loss curves: one subplot per (title, [log keys]) panel, moving averages over ~2% of the steps."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not history["logs"]:
        return
    steps = np.array(history["steps"])
    get = lambda k: np.array([r.get(k, np.nan) for r in history["logs"]])  # noqa: E731
    n = max(1, len(steps) // 50)
    cols = 4
    rows = math.ceil(len(panels) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(18, 4 * rows), squeeze=False)
    for ax, (title, keys) in zip(axes.flat, panels):
        for k in keys:
            ax.plot(steps, _smooth(get(k), n), label=k, lw=1)
        ax.set_title(title)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
        if len(keys) > 1:
            ax.legend(fontsize=7)
    for ax in list(axes.flat)[len(panels):]:
        ax.axis("off")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=80)
    plt.close(fig)


def _final_losses(history: dict, last: int = 50) -> dict:
    rows = history["logs"][-last:]
    return {k: float(np.mean([r[k] for r in rows])) for k in sorted(rows[0])} if rows else {}


# ----------------------------------------------------------------------------------------------------
# training
# ----------------------------------------------------------------------------------------------------


def train(conf: dict, out_dir: str | Path, resume: bool = False, max_steps: int | None = None, log=print) -> dict:
    """Train with a (partial) config; ``max_steps`` stops early (after a checkpoint) without changing the
    schedule, as an interruption would. Returns the summary dict."""
    import torch

    conf = full_config(conf)
    if conf["average"]:
        return average_weights(conf, out_dir, log)
    task = get_task(conf)
    tc, seed = conf["train"], conf["seed"]
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    ckpt_path = out_dir / "checkpoints" / "last.pt"
    logfile = open(out_dir / "log.txt", "a")

    def say(msg: str):
        log(msg)
        logfile.write(msg + "\n")
        logfile.flush()

    torch.set_num_threads(int(tc["num_threads"]))
    torch.manual_seed(seed)
    np.random.seed(seed)
    random.seed(seed)
    model = task.model_class(conf["model"])
    model.to(memory_format=memory_format(conf))
    frozen = freeze_except(model, tc["trainable"])
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=tc["lr"], weight_decay=tc["weight_decay"])
    t0 = time.time()
    data = task.make_data(conf, seed)
    say(f"[featloc] data: {json.dumps(data.describe_sources())} (loaded in {time.time() - t0:.1f}s)")
    step, history = 0, {"steps": [], "logs": [], "time": []}
    if tc["init_weights"] and not (resume and ckpt_path.is_file()):
        say(f"[featloc] {initialize_from(model, resolve_path(tc['init_weights']))}")
    if resume and ckpt_path.is_file():
        step, history, old_yaml = load_checkpoint(ckpt_path, model, optimizer)
        if old_yaml != yaml.safe_dump(conf, sort_keys=True):
            say("[featloc] warning: the configuration differs from the checkpoint's")
        say(f"[featloc] resumed from {ckpt_path} at step {step}")
    elif resume:
        say(f"[featloc] no checkpoint at {ckpt_path}: starting from scratch")
    nparams = sum(p.numel() for p in model.parameters())
    if frozen:
        say(f"[featloc] training {sum(p.numel() for p in params)} parameters of {tc['trainable']}; frozen: "
            f"{', '.join(frozen)}")
    say(f"[featloc] {task.name}: {nparams} parameters; {tc['steps']} steps of {tc['batch_size']} pairs, "
        f"{tc['num_threads']} threads -> {out_dir}")
    stop = tc["steps"] if max_steps is None else min(tc["steps"], max_steps)
    elapsed0 = history["time"][-1] if history["time"] else 0.0
    t_start, step_start = time.time(), step
    while step < stop:
        lr = learning_rate(step, tc)
        for g in optimizer.param_groups:
            g["lr"] = lr
        B = tc["batch_size"]
        gen = torch.Generator().manual_seed(seed * 1_000_003 + step)
        loss, logs = task.step_loss(model, data, list(range(step * B, (step + 1) * B)), conf, gen)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if tc["grad_clip"]:
            torch.nn.utils.clip_grad_norm_(params, tc["grad_clip"])
        optimizer.step()
        step += 1
        logs["lr"] = lr
        history["steps"].append(step)
        history["logs"].append(logs)
        history["time"].append(elapsed0 + time.time() - t_start)
        if step % tc["log_every"] == 0 or step == stop:
            sps = (time.time() - t_start) / (step - step_start)
            eta = sps * (tc["steps"] - step)
            say(f"[featloc] step {step}/{tc['steps']} loss {logs['total']:.4f} {task.progress(logs)} lr {lr:.2e} "
                f"{sps:.2f}s/step eta {eta / 60:.1f}min")
        if step % tc["checkpoint_every"] == 0 or step == stop:
            save_checkpoint(ckpt_path, model, optimizer, step, history, conf)
        if step % tc["plot_every"] == 0 or step == stop:
            plot_history(history, out_dir / "loss_curves.png", task.panels)
    summary = {"name": conf["name"], "task": task.name, "steps": step, "completed": step >= tc["steps"],
               "seed": seed, "parameters": nparams, "final_losses": _final_losses(history),
               "train_time_s": history["time"][-1] if history["time"] else 0.0,
               "data_sources": data.describe_sources(),
               "threads": tc["num_threads"], "config": conf, "torch": torch.__version__}
    if step >= tc["steps"]:
        summary["exports"] = export(task, model, conf, out_dir, say)
    write_summary(summary, conf, out_dir, exported=step >= tc["steps"])
    logfile.close()
    return summary


def freeze_except(model, trainable: list[str] | None) -> list[str]:
    """Put ``model`` in training mode with only the named top-level modules trainable (None: all). The other
    modules and top-level parameters get requires_grad False, and the frozen modules are put back in eval mode
    (their BatchNorm statistics do not move; the training loop never calls ``train()`` again).
    Returns the names of the frozen modules and parameters."""
    children = dict(model.named_children())
    unknown = set(trainable or ()) - set(children)
    if unknown:
        raise ValueError(f"train.trainable: unknown modules {sorted(unknown)}; known: {sorted(children)}")
    model.train()
    if trainable is None:
        return []
    frozen = [n for n in children if n not in trainable]
    for n in frozen:
        children[n].requires_grad_(False).eval()
    for name, p in model.named_parameters(recurse=False):  # e.g. meta_log_tau
        p.requires_grad_(False)
        frozen.append(name)
    return frozen


def write_summary(summary: dict, conf: dict, out_dir: Path, exported: bool = True) -> None:
    """<out_dir>/summary.json, and when the run exported its weights, the copy named by export.summary."""
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=2))
    summary_copy = resolve_path(conf["export"]["summary"])
    if summary_copy and exported:
        summary_copy.parent.mkdir(parents=True, exist_ok=True)
        summary_copy.write_text(json.dumps(summary, indent=2))


def average_weights(conf: dict, out_dir: str | Path, say=print) -> dict:
    """The config's ``average`` members (weights files; every tensor name and shape the same) averaged tensor by
    tensor into the config's model, then exported as after training. Returns the summary dict (also written to
    <out_dir>/summary.json and export.summary)."""
    import torch

    conf = full_config(conf)
    task = get_task(conf)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [resolve_path(a) for a in conf["average"]]
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        raise FileNotFoundError(f"average: {', '.join(missing)} not found (train those configs first)")
    states = [torch.load(p, map_location="cpu", weights_only=True) for p in paths]
    model = task.model_class(conf["model"])
    own = model.state_dict()
    for p, state in zip(paths, states):
        if set(state) != set(own) or any(state[k].shape != own[k].shape for k in own):
            raise ValueError(f"average: {p} does not hold the tensors of the config's model ({conf['model']})")
    averaged = {}
    for k in own:
        ts = [st[k] for st in states]
        if ts[0].is_floating_point():
            averaged[k] = torch.stack(ts).mean(0)
        elif all(torch.equal(t, ts[0]) for t in ts):
            averaged[k] = ts[0]
        else:
            raise ValueError(f"average: the integer tensor {k} differs between the members")
    model.load_state_dict(averaged)
    members = [{"weights": a, "sha256": hashlib.sha256(p.read_bytes()).hexdigest()}
               for a, p in zip(conf["average"], paths)]
    say(f"[featloc] {conf['name']}: uniform average of {len(paths)} weights files: {', '.join(map(str, paths))}")
    summary = {"name": conf["name"], "task": task.name, "averaged": members,
               "parameters": sum(t.numel() for t in own.values()), "config": conf, "torch": torch.__version__,
               "exports": export(task, model, conf, out_dir, say)}
    write_summary(summary, conf, out_dir)
    return summary


def initialize_from(model, path: Path) -> str:
    """Copy the tensors of a state dict (``weights_only``) whose name and shape match the model's; the rest keep
    their initialisation. Returns a one-line report."""
    import torch

    if not path.is_file():
        raise FileNotFoundError(f"train.init_weights: {path} does not exist")
    state = torch.load(path, map_location="cpu", weights_only=True)
    own = model.state_dict()
    same = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    model.load_state_dict(same, strict=False)
    fresh = sorted({k.rsplit(".", 2)[0] for k in own if k not in same})
    return (f"initialised {len(same)}/{len(own)} tensors from {path}; new or reshaped: "
            f"{', '.join(fresh) if fresh else 'none'}")


def memory_format(conf: dict):
    """The layout of convolution weights and images during training (``train.channels_last``): the trainer puts
    the model in it, and a task's ``step_loss`` puts its images in it."""
    import torch

    return torch.channels_last if conf["train"]["channels_last"] else torch.contiguous_format


def export(task, model, conf: dict, out_dir: Path, say=print) -> dict:
    """Write the weights (state dict + architecture file) and, if configured, the task's ONNX model (verified
    with onnxruntime; a failed export keeps the trained weights and is reported)."""
    import torch

    ec = conf["export"]
    model = model.eval().to(memory_format=torch.contiguous_format)  # the files as without channels_last
    weights = resolve_path(ec["weights"], out_dir / "model.pt")
    weights.parent.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), weights)
    task.save_architecture(weights, conf["model"])
    result = {"weights": str(weights)}
    say(f"[featloc] weights -> {weights}")
    onnx_path = resolve_path(ec["onnx"])
    if onnx_path:
        try:
            res = task.export_onnx(model, onnx_path, ec)
            result["onnx"] = res
            say(f"[featloc] onnx -> {onnx_path} (onnxruntime vs torch max abs diff {res['max_abs_diff']:.2e})")
        except Exception as exc:  # keep the trained weights even if the export fails
            result["onnx_error"] = f"{type(exc).__name__}: {exc}"
            say(f"[featloc] ONNX export failed: {result['onnx_error']}")
    return result


def export_onnx_only(conf: dict, say=print) -> dict:
    """Re-export the ONNX model of a config from its trained weights (``export.weights``, ``export.onnx``), with
    the settings of the architecture file next to the weights over the config's (what calibrate_keypoints
    measured after training: keypoint offset, score blur, soft-argmax temperature)."""
    import torch

    conf = full_config(conf)
    task, ec = get_task(conf), conf["export"]
    weights, onnx_path = resolve_path(ec["weights"]), resolve_path(ec["onnx"])
    if weights is None or onnx_path is None or not weights.is_file():
        raise ValueError(f"--export-onnx needs export.weights (an existing file, got {ec['weights']!r}) and "
                         f"export.onnx (got {ec['onnx']!r}) in the config")
    model = task.model_class({**conf["model"], **task.load_architecture(weights)})
    model.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
    res = task.export_onnx(model.eval(), onnx_path, ec)
    say(f"[featloc] onnx -> {onnx_path} (from {weights}; onnxruntime vs torch max abs diff {res['max_abs_diff']:.2e})")
    return res


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", required=True, help="training YAML (featloc_ros/training/configs/*.yaml)")
    p.add_argument("--out", default=None, help="output directory (default runs/<config name>)")
    p.add_argument("--resume", action="store_true", help="continue from <out>/checkpoints/last.pt if present")
    p.add_argument("--max-steps", type=int, default=None, help="stop after this many steps (schedule unchanged)")
    p.add_argument("--export-onnx", action="store_true", help="no training: write export.onnx from export.weights")
    p.add_argument("overrides", nargs="*", help="dotted overrides, e.g. train.steps=100")
    args = p.parse_args(argv)
    conf = load_config(args.config, args.overrides)
    if args.export_onnx:
        print(json.dumps(export_onnx_only(conf), indent=2))
        return 0
    out = Path(args.out) if args.out else Path("runs") / Path(args.config).stem
    summary = train(conf, out, resume=args.resume, max_steps=args.max_steps)
    keys = ("averaged",) if "averaged" in summary else ("steps", "completed", "final_losses", "train_time_s")
    print(json.dumps({k: summary[k] for k in keys}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
