"""ONNX Runtime sessions for the exported models (CPU execution provider; optional thread count)."""

from __future__ import annotations

from pathlib import Path


def open_onnx_session(path, num_threads: int, owner: str, how_to_make: str):
    """An onnxruntime InferenceSession of ``path``; FileNotFoundError naming the file and ``how_to_make`` it when
    it does not exist. ``num_threads`` > 0 sets the intra-op threads."""
    import onnxruntime as ort

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{owner}: ONNX model not found: {path}. {how_to_make}")
    opts = ort.SessionOptions()
    if num_threads:
        opts.intra_op_num_threads = int(num_threads)
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
