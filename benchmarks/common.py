"""Shared output helpers for benchmark scripts: JSON + markdown table in benchmarks/results/."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

RESULTS_DIR = Path(__file__).resolve().parent / "results"
ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def environment() -> dict:
    """Date, commit and machine of a run. The commit reads "<hash>+uncommitted" when tracked files under
    featloc_ros/ or benchmarks/ differ from it (the code that ran is then not exactly that commit)."""
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                                check=False).stdout.strip()
        changed = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", "featloc_ros",
                                  "benchmarks/*.py", "benchmarks/peers"], cwd=ROOT, capture_output=True, text=True,
                                 check=False).stdout.strip()
        if commit and changed:
            commit += "+uncommitted"
    except OSError:
        commit = ""
    return {"date_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"), "git_commit": commit,
            "python": platform.python_version(), "machine": platform.machine(), "cpu_count": os.cpu_count(),
            "omp_num_threads": os.environ.get("OMP_NUM_THREADS")}


def markdown_table(headers: list[str], rows: list[list]) -> str:
    def fmt(v):
        if v is None:
            return "–"
        if isinstance(v, float):
            return f"{v:.4g}"
        return str(v)

    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(fmt(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def write_results(name: str, data: dict, markdown: str) -> tuple[Path, Path]:
    """results/<name>.json and .md; ``name`` is a plain file stem (a path would write outside results/)."""
    if not name or name == ".." or Path(name).name != name:
        raise ValueError(f"--name must be a plain name for benchmarks/results/<name>.json, not {name!r}")
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    data = {"environment": environment(), **data}
    jpath, mpath = RESULTS_DIR / f"{name}.json", RESULTS_DIR / f"{name}.md"
    jpath.write_text(json.dumps(data, indent=2, default=float))
    mpath.write_text(markdown.rstrip() + f"\n\n_{data['environment']['date_utc']}, commit "
                                         f"{data['environment']['git_commit']}, {data['environment']['cpu_count']} "
                                         f"CPUs, Python {data['environment']['python']}_\n")
    return jpath, mpath


def merge_previous_rows(name: str, results: dict[str, dict]) -> tuple[dict[str, dict], dict]:
    """For ``--update`` runs: the rows of the committed results/<name>.json that this run did not measure are
    kept (this run's rows replace rows of the same label, in place). Each new row is tagged with this run's
    date and commit (``row["run"]``). Also returned: the environment of the full run the untagged rows come from
    (carried through successive updates as ``base_environment``). ``results`` is {set: {row label: row dict}};
    missing previous file -> (results, {})."""
    path = RESULTS_DIR / f"{name}.json"
    if not path.is_file():
        return results, {}
    previous = json.loads(path.read_text())
    env = environment()
    merged: dict[str, dict] = {}
    for set_name, rows in previous.get("results", {}).items():
        merged[set_name] = {label: rows.get(label) for label in rows}
    for set_name, rows in results.items():
        for label, row in rows.items():
            row["run"] = {"date_utc": env["date_utc"], "git_commit": env["git_commit"]}
            merged.setdefault(set_name, {})[label] = row
    return merged, previous.get("base_environment") or previous.get("environment", {})
