"""ONNX Runtime sessions for the exported models (CPU execution provider; optional thread count)."""

from __future__ import annotations

from pathlib import Path


def open_onnx_session(path, num_threads: int, owner: str, how_to_make: str, spinning: bool = True):
    """An onnxruntime InferenceSession of ``path``; FileNotFoundError naming the file and ``how_to_make`` it when
    it does not exist. ``num_threads`` > 0 sets the intra-op threads. ``spinning`` False: the intra-op threads
    sleep as soon as a run ends instead of busy-waiting for the next one (ONNX Runtime's default is to spin),
    which leaves the cores to whatever runs next in the same process (retrieval and matching after the
    extraction); True suits back-to-back runs of the same session."""
    import onnxruntime as ort

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{owner}: ONNX model not found: {path}. {how_to_make}")
    opts = ort.SessionOptions()
    if num_threads:
        opts.intra_op_num_threads = int(num_threads)
    opts.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
