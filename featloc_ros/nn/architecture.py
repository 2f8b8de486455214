"""The architecture file next to a weights file: ``<name>.model.json`` holds the model settings that differ from
the model's ``default_conf``, tagged with a format string per model family (written by the training export,
read by whoever loads the weights)."""

from __future__ import annotations

import json
from pathlib import Path


def architecture_path(weights) -> Path:
    """featloc_v3.pt -> featloc_v3.model.json (next to it)."""
    return Path(weights).with_suffix(".model.json")


def save_architecture(weights, model_conf: dict, fmt: str) -> Path:
    path = architecture_path(weights)
    path.write_text(json.dumps({"format": fmt, "model": model_conf}, indent=2) + "\n")
    return path


def load_architecture_file(weights, fmt: str, owner: str) -> dict:
    """The whole file next to ``weights`` ({"format", "model", and whatever else the writer stored}); {} when
    there is no file. A corrupt file or one of another format raises ValueError naming it."""
    path = architecture_path(weights)
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text())
        if not isinstance(data, dict) or data.get("format") != fmt or not isinstance(data.get("model"), dict):
            raise ValueError(f"expected {{'format': '{fmt}', 'model': {{...}}}}")
    except ValueError as exc:
        raise ValueError(f"{owner}: bad architecture file {path}: {exc}") from exc
    return data


def load_architecture(weights, fmt: str, owner: str) -> dict:
    """The settings stored next to ``weights``; {} when there is no file. A corrupt file or one of another
    format raises ValueError naming it."""
    return load_architecture_file(weights, fmt, owner).get("model", {})
