"""Main-venv side of the pretrained peer methods: runs benchmarks/peers/run_peer.py in the peers venv.

The peers (XFeat, XFeat+LighterGlue, ALIKED/DISK + LightGlue or mutual NN) need another torch than the main
venv's, so they live in their own venv (`make peers` -> .venv-peers) and are reached only through a subprocess.
This module uses numpy and the standard library only.

    from benchmarks.peers.client import PEER_METHODS, check_peer, run_peer_pairs, peer_info, PeerUnavailable
    reason = check_peer("xfeat_mnn")            # None when runnable, else why not (e.g. "run `make peers`")
    res = run_peer_pairs("xfeat_mnn", [(rgb0, rgb1)], max_keypoints=1024)
    res[0]["keypoints0"], res[0]["matches"], res[0]["match_ms"]
    run_peer_extract("aliked_lightglue", [rgb])  # features only
    run_peer_match_features("aliked_lightglue", [{"keypoints0": ..., "descriptors0": ..., "image_size0": (W, H),
                                                  "keypoints1": ..., ...}])  # its matcher on given features
    peer_info("xfeat_mnn")                      # info.json of the last run: versions, threads, peak RSS

Keypoints are in pixel coordinates of the given images, OpenCV convention (centre of the top-left pixel at (0,0)).
Times are CPU wall times in ms measured inside the peer process (model loading and one warm-up excluded).
"""

from __future__ import annotations

import json
import os
import shutil
import struct
import subprocess
import tempfile
import zlib
from pathlib import Path

import numpy as np

PEER_METHODS = ("xfeat_mnn", "xfeat_lighterglue", "aliked_lightglue", "disk_lightglue", "aliked_mnn", "disk_mnn")

ROOT = Path(__file__).resolve().parents[2]
RUN_PEER = Path(__file__).resolve().parent / "run_peer.py"
_CHECK_TIMEOUT_S = 300.0

_check_cache: dict[str, dict] = {}  # peers python -> --check report (or {"error": reason})
_last_info: dict[str | None, dict] = {}  # method (and None = any) -> info.json of the last run in this process


class PeerUnavailable(Exception):
    """A peer method cannot run (venv missing, package missing, the subprocess failed); str() says why."""


def peers_venv() -> Path:
    """The peers venv: $FEATLOC_PEERS_VENV (relative paths are taken from the repo root) or <repo>/.venv-peers."""
    v = Path(os.environ.get("FEATLOC_PEERS_VENV") or ".venv-peers")
    return v if v.is_absolute() else ROOT / v


def peers_python() -> Path:
    """The peers venv's interpreter (not resolved: resolving the symlink would leave the venv)."""
    return peers_venv() / "bin" / "python"


def _env(num_threads: int | None = None) -> dict:
    """Environment for the peer process: nothing from the main venv may leak into its imports."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "PYTHONSTARTUP")}
    env["PYTHONNOUSERSITE"] = "1"
    env["HF_HUB_OFFLINE"] = "1"
    if num_threads is not None:
        for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
            env[k] = str(num_threads)
    return env


def _tail(text: str, n: int = 25) -> str:
    lines = [ln for ln in (text or "").strip().splitlines() if ln.strip()]
    return "\n".join(lines[-n:])


def _check_report() -> dict:
    py = peers_python()
    key = str(py)
    if key in _check_cache:
        return _check_cache[key]
    if not py.exists():
        rep = {"error": f"peers venv missing ({py} not found): run `make peers`"}
    elif not RUN_PEER.is_file():
        rep = {"error": f"{RUN_PEER} not found"}
    else:
        try:
            p = subprocess.run([str(py), str(RUN_PEER), "--check"], check=False, capture_output=True, text=True,
                               timeout=_CHECK_TIMEOUT_S, env=_env(1), cwd=str(ROOT))
            rep = json.loads(p.stdout)
        except subprocess.TimeoutExpired:
            rep = {"error": f"peers venv check timed out after {_CHECK_TIMEOUT_S:.0f} s ({py})"}
        except (OSError, ValueError) as e:
            err = _tail(p.stderr) if "p" in locals() else str(e)
            rep = {"error": f"peers venv {peers_venv()} is broken (run `make peers`): {err or e}"}
    _check_cache[key] = rep
    return rep


def check_peer(method: str) -> str | None:
    """None if `method` can run, else a human-readable reason. The venv is probed once per process."""
    if method not in PEER_METHODS:
        return f"unknown peer method {method!r} (known: {', '.join(PEER_METHODS)})"
    rep = _check_report()
    if "error" in rep:
        return rep["error"]
    return rep.get("methods", {}).get(method, f"peers venv does not know method {method!r}")


def peer_versions() -> dict:
    """Package versions in the peers venv (empty if it is unusable)."""
    return dict(_check_report().get("versions", {}))


# ---------------------------------------------------------------------------------------------------------------

def write_png(path: Path, img: np.ndarray) -> None:
    """Lossless 8-bit PNG (grey HxW or RGB HxWx3) with numpy + zlib only."""
    img = np.asarray(img)
    if img.dtype != np.uint8:
        raise ValueError(f"images must be uint8, got {img.dtype}")
    if img.ndim == 2:
        color = 0
    elif img.ndim == 3 and img.shape[2] == 3:
        color = 2
    else:
        raise ValueError(f"images must be HxW or HxWx3, got shape {img.shape}")
    h, w = img.shape[:2]
    raw = np.ascontiguousarray(img).reshape(h, -1)
    data = np.concatenate([np.zeros((h, 1), np.uint8), raw], axis=1).tobytes()  # filter 0 per row

    def chunk(tag: bytes, payload: bytes) -> bytes:
        return struct.pack(">I", len(payload)) + tag + payload + struct.pack(">I", zlib.crc32(tag + payload))

    Path(path).write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, color, 0, 0, 0))
                           + chunk(b"IDAT", zlib.compress(data, 1)) + chunk(b"IEND", b""))


def _run(method: str, entries: list[list[np.ndarray]], max_keypoints: int, num_threads: int, extract_only: bool,
         workdir: str | Path | None, warmup: int, timeout: float | None) -> list[dict]:
    """Images -> PNG files -> one peer job (extract and match, or extract only)."""

    def write_entries(wd: Path) -> list:
        img_dir = wd / "images"
        img_dir.mkdir(parents=True, exist_ok=True)
        job_entries = []
        for i, entry in enumerate(entries):
            paths = []
            for j, img in enumerate(entry):
                p = img_dir / f"{i:05d}_{j}.png"
                write_png(p, img)
                paths.append(str(p))
            job_entries.append(paths)
        return job_entries

    return _run_job(method, write_entries, len(entries), {"max_keypoints": int(max_keypoints),
                    "extract_only": bool(extract_only), "warmup": int(warmup)}, num_threads, workdir, timeout)


def _run_job(method: str, write_entries, n_entries: int, job_fields: dict, num_threads: int,
             workdir: str | Path | None, timeout: float | None) -> list[dict]:
    """Write the job's inputs with ``write_entries(workdir) -> job entries``, run run_peer.py in the peers venv and
    read one output dict per entry."""
    reason = check_peer(method)
    if reason is not None:
        raise PeerUnavailable(f"{method}: {reason}")
    own = workdir is None
    wd = Path(tempfile.mkdtemp(prefix=f"peer_{method}_")) if own else Path(workdir)
    try:
        out_dir = wd / "out"
        wd.mkdir(parents=True, exist_ok=True)
        if out_dir.exists():
            shutil.rmtree(out_dir)
        job = {"method": method, "num_threads": int(num_threads), **job_fields, "pairs": write_entries(wd)}
        job_path = wd / "job.json"
        job_path.write_text(json.dumps(job, indent=1))
        if timeout is None:
            timeout = 300.0 + 60.0 * n_entries
        cmd = [str(peers_python()), str(RUN_PEER), "--job", str(job_path), "--out", str(out_dir)]
        try:
            p = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=timeout, env=_env(num_threads),
                               cwd=str(ROOT))
        except subprocess.TimeoutExpired as e:
            err = e.stderr.decode(errors="replace") if isinstance(e.stderr, bytes) else (e.stderr or "")
            raise PeerUnavailable(f"{method}: peer process timed out after {timeout:.0f} s\n{_tail(err)}") from e
        if p.returncode != 0:
            raise PeerUnavailable(f"{method}: peer process failed (exit {p.returncode}):\n{_tail(p.stderr)}")
        info = json.loads((out_dir / "info.json").read_text())
        _last_info[method] = _last_info[None] = info
        results = []
        for i in range(n_entries):
            with np.load(out_dir / f"pair_{i:05d}.npz", allow_pickle=False) as z:
                rec = {k: z[k] for k in z.files}
            for k in ("extract_ms0", "extract_ms1", "match_ms"):
                if k in rec:
                    rec[k] = float(rec[k])
            results.append(rec)
        return results
    finally:
        if own:
            shutil.rmtree(wd, ignore_errors=True)


def run_peer_match_features(method: str, pairs: list[dict], num_threads: int = 2, workdir: str | Path | None = None,
                            timeout: float | None = None) -> list[dict]:
    """The method's own matcher (LightGlue, LighterGlue or mutual NN) on features this method extracted before
    (run_peer_extract). Each pair: keypoints0 (N0,2), descriptors0 (N0,D), image_size0 (W,H), and the same for 1,
    keypoints in the pixel frame of the image the peer saw. Returns per pair matches (M,2) int64, scores (M,)
    float32 and match_ms."""
    if method not in PEER_METHODS:
        raise PeerUnavailable(f"unknown peer method {method!r} (known: {', '.join(PEER_METHODS)})")
    keys = ("keypoints0", "descriptors0", "image_size0", "keypoints1", "descriptors1", "image_size1")

    def write_entries(wd: Path) -> list:
        feat_dir = wd / "features"
        feat_dir.mkdir(parents=True, exist_ok=True)
        paths = []
        for i, pair in enumerate(pairs):
            path = feat_dir / f"{i:05d}.npz"
            np.savez(path, **{k: np.asarray(pair[k], np.int64 if k.startswith("image_size") else np.float32)
                              for k in keys})
            paths.append([str(path)])
        return paths

    return _run_job(method, write_entries, len(pairs), {"match_features": True, "warmup": 0}, num_threads, workdir,
                    timeout if timeout is not None else 300.0 + 5.0 * len(pairs))


def run_peer_pairs(method: str, pairs: list[tuple[np.ndarray, np.ndarray]], max_keypoints: int, num_threads: int = 2,
                   workdir: str | Path | None = None, warmup: int = 1, timeout: float | None = None) -> list[dict]:
    """Extract and match each (rgb0, rgb1) pair (uint8 HxWx3 RGB, or HxW grey) with a peer method.

    Returns one dict per pair: keypoints0 (N0,2) float32, keypoints1 (N1,2) float32, matches (M,2) int64,
    scores (M,) float32, extract_ms0, extract_ms1, match_ms (float). `workdir` (kept) holds the PNGs, the job and
    the outputs; by default a temporary directory that is removed. Raises PeerUnavailable on any failure.
    """
    if method not in PEER_METHODS:
        raise PeerUnavailable(f"unknown peer method {method!r} (known: {', '.join(PEER_METHODS)})")
    return _run(method, [list(p) for p in pairs], max_keypoints, num_threads, False, workdir, warmup, timeout)


def run_peer_extract(method: str, images: list[np.ndarray], max_keypoints: int, num_threads: int = 2,
                     workdir: str | Path | None = None, warmup: int = 1, timeout: float | None = None) -> list[dict]:
    """The method's extractor only: one dict per image with keypoints0 (N,2) float32, descriptors0 (N,D) float32
    (L2-normalised) and extract_ms0."""
    if method not in PEER_METHODS:
        raise PeerUnavailable(f"unknown peer method {method!r} (known: {', '.join(PEER_METHODS)})")
    return _run(method, [[im] for im in images], max_keypoints, num_threads, True, workdir, warmup, timeout)


def peer_info(method: str | None = None, workdir: str | Path | None = None) -> dict | None:
    """info.json of a run: from `workdir` (a workdir passed to run_peer_*) if given, else of the last run of
    `method` in this process (any method if None). Keys include method, versions, torch_version, num_threads,
    model_load_ms, config, peak_rss_kb/peak_rss_mb (peak RSS of the peer process). None if there is none."""
    if workdir is not None:
        p = Path(workdir) / "out" / "info.json"
        return json.loads(p.read_text()) if p.is_file() else None
    info = _last_info.get(method)
    return dict(info) if info is not None else None
