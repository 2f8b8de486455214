"""FeatLoc learned features (featloc_ros.nn.FeatLocNet): keypoints, four invariance-specific local
descriptors and meta descriptors for invariance selection, run with PyTorch or ONNX Runtime.

Descriptor forms (conf ``descriptor``):

- ``"selected"``: the descriptors are the concatenation ``[l_rv_iv, l_ri_iv, l_rv_ii, l_ri_ii, m_rv_iv, m_ri_iv,
  m_rv_ii, m_ri_ii]`` (see ``FeatLoc.layout``: 4 x descriptor_dim unit local descriptors, then 4 x meta_dim
  meta descriptors of norm sqrt(tau)). The vector as a whole is NOT unit-norm: match it with the
  ``invariance_selected_nn`` matcher (conf ``featloc_isnn``), which splits it and uses the
  invariance-selected distance d(p,q) = sum_s softmax_s(m_s(p).m_s(q)) ||l_s(p) - l_s(q)||.
- ``"concat"``: the four local descriptors concatenated and L2-normalised (ablation; plain mutual NN).
- one kind name (``"rv_iv"``, ``"ri_iv"``, ``"rv_ii"``, ``"ri_ii"``): that head alone (unit vectors).

Weights: a state dict (``torch.load(..., weights_only=True)``); default ``models/featloc_v4.pt`` (architecture in ``featloc_v4.model.json``) shipped with
the package (source tree, or ``share/featloc_ros/models`` once installed); ``featloc_v10.pt`` (v4 + the learned
keypoint refiner; registry entries ``featloc_refined`` / ``featloc_refined_onnx``) is shipped beside it. The ONNX
backend uses the ``.onnx`` file next to it (fixed k and NMS radius baked in at export time; recorded in its
metadata).
"""

from __future__ import annotations

import sys
from pathlib import Path

import cv2
import numpy as np

from ..geometry.image_codec import to_gray
from .base import Extractor, Features
from .keypoint_refinement import apply_refinement, refinement_settings

KINDS = ("rv_iv", "ri_iv", "rv_ii", "ri_ii")  # same order as featloc_ros.nn.featloc_net.KINDS
DEFAULT_WEIGHTS = "featloc_v4.pt"
TRAIN_COMMAND = "python -m featloc_ros.training.train --config featloc_ros/training/configs/featloc_v4.yaml"


def model_search_paths(filename: str) -> list[Path]:
    """Where a shipped model file may be: the source tree's models/, the ament share directory (when
    ament_index_python is importable and the package is installed), and <prefix>/share/featloc_ros/models."""
    paths = [Path(__file__).resolve().parents[2] / "models" / filename]
    try:
        from ament_index_python.packages import get_package_share_directory

        paths.append(Path(get_package_share_directory("featloc_ros")) / "models" / filename)
    except Exception:  # not importable, or the package is not installed in an ament prefix
        pass
    paths.append(Path(sys.prefix) / "share" / "featloc_ros" / "models" / filename)  # pip install (data_files)
    return list(dict.fromkeys(paths))


def resolve_model_file(path: str | None, filename: str = DEFAULT_WEIGHTS) -> Path:
    """An explicit path (must exist) or the first existing shipped copy of ``filename``. A bare file name that is
    not a file here (e.g. ``featloc_v10.pt``) names a shipped model."""
    if path and Path(path).name == path and not Path(path).is_file():
        path, filename = None, path
    if path:
        p = Path(path).expanduser()
        if not p.is_file():
            raise FileNotFoundError(f"FeatLoc weights not found: {p}. Train them with: {TRAIN_COMMAND}")
        return p
    candidates = model_search_paths(filename)
    for p in candidates:
        if p.is_file():
            return p
    raise FileNotFoundError(f"FeatLoc weights {filename} not found (looked in: {', '.join(map(str, candidates))}). "
                            f"Train them with: {TRAIN_COMMAND} (writes models/{filename})")


class FeatLoc(Extractor):
    default_conf = {
        "weights": None,  # state dict path, or a shipped file name (featloc_v10.pt); None: models/featloc_v4.pt
        "backend": "torch",  # "torch" | "onnxruntime" (uses the .onnx next to the weights, or ``onnx``)
        "onnx": None,  # explicit ONNX path for the onnxruntime backend
        "model": {},  # FeatLocNet architecture overrides (must match the weights)
        "max_keypoints": 2048,
        "detection_threshold": 0.01,
        "nms_radius": 2,
        "resize_max": 1024,  # longest side used for detection; keypoints are scaled back
        "descriptor": "selected",  # "selected" | "concat" | one of KINDS
        "num_threads": 0,  # >0: torch / onnxruntime intra-op threads
        "refinement": None,  # keypoint refinement (keypoint_refinement.refinement_settings); None: the one stored
        #                      next to the weights (``keypoint_refinement`` in the .model.json), {} or log_sigma 0: off
        "onnx_spinning": False,  # onnxruntime: threads busy-wait between runs (off: the cores go to the stages
        #                          after the extraction; benchmarks/results/onnx_spinning.md)
    }

    def __init__(self, conf=None):
        super().__init__(conf)
        c = self.conf
        if c["descriptor"] not in ("selected", "concat", *KINDS):
            raise ValueError(f"FeatLoc: descriptor must be 'selected', 'concat' or one of {KINDS}, "
                             f"got {c['descriptor']!r}")
        if c["backend"] not in ("torch", "onnxruntime"):
            raise ValueError(f"FeatLoc: backend must be 'torch' or 'onnxruntime', got {c['backend']!r}")
        if c["backend"] == "onnxruntime" and c["model"].get("rotation_pooling"):
            raise ValueError("FeatLoc: rotation_pooling runs with the torch backend only (the ONNX graph has one pass)")
        self.weights_path = resolve_model_file(c["weights"])
        from ..nn.featloc_net import load_keypoint_refinement

        stored = load_keypoint_refinement(self.weights_path) if c["refinement"] is None else c["refinement"]
        self.refinement = refinement_settings(stored, f"FeatLoc ({self.weights_path})")
        if c["backend"] == "torch":
            self._init_torch()
        else:
            self._init_onnx()
        d, dm = self.dims
        # Layout of the "selected" descriptor: name -> (start, stop) column range.
        self.layout = {**{f"l_{k}": (i * d, (i + 1) * d) for i, k in enumerate(KINDS)},
                       **{f"m_{k}": (4 * d + i * dm, 4 * d + (i + 1) * dm) for i, k in enumerate(KINDS)}}

    def _init_torch(self):
        import torch

        from ..nn.featloc_net import FeatLocNet, load_architecture

        c = self.conf
        if c["num_threads"]:
            torch.set_num_threads(int(c["num_threads"]))
        net = FeatLocNet({**load_architecture(self.weights_path), **c["model"], "max_keypoints": c["max_keypoints"],
                          "nms_radius": c["nms_radius"], "detection_threshold": c["detection_threshold"]})
        state = torch.load(self.weights_path, map_location="cpu", weights_only=True)
        net.load_state_dict(state, strict=True)
        self.net = net.eval()
        self.dims = (net.conf["descriptor_dim"], net.conf["meta_dim"])
        self._torch = torch

    def _init_onnx(self):
        from ..nn.onnx_session import open_onnx_session

        c = self.conf
        path = Path(c["onnx"]) if c["onnx"] else self.weights_path.with_suffix(".onnx")
        self.session = open_onnx_session(path, c["num_threads"], "FeatLoc", f"Export it with the training command "
                                         f"({TRAIN_COMMAND}) or featloc_ros.nn.export_onnx",
                                         spinning=bool(c["onnx_spinning"]))
        meta = self.session.get_modelmeta().custom_metadata_map
        self.onnx_meta = meta
        if "max_keypoints" not in [i.name for i in self.session.get_inputs()]:
            raise ValueError(f"FeatLoc: {path} has a fixed keypoint count (an export before the max_keypoints "
                             f"input); export it again with featloc_ros.nn.export_onnx")
        baked_r = int(meta["featloc.nms_radius"])
        if baked_r != c["nms_radius"]:
            raise ValueError(f"FeatLoc: {path} was exported with nms_radius={baked_r}, conf asks for {c['nms_radius']}")
        self.dims = (int(meta["featloc.descriptor_dim"]), int(meta["featloc.meta_dim"]))

    @property
    def descriptor_dim(self) -> int:
        d, dm = self.dims
        return {"selected": 4 * (d + dm), "concat": 4 * d}.get(self.conf["descriptor"], d)

    @property
    def retrieval_columns(self) -> tuple[int, int] | None:
        """Retrieval aggregates the rotation- and illumination-invariant local descriptor (l_ri_ii) of the
        "selected" form: the rotation-variant parts and the meta descriptors change when the camera rolls."""
        return self.layout["l_ri_ii"] if self.conf["descriptor"] == "selected" else None

    def _run(self, gray: np.ndarray) -> dict[str, np.ndarray]:
        """(H, W) uint8 -> keypoints (k,2), scores (k,), valid (k,), local (4,k,D), meta (4,k,Dm)."""
        x = (gray.astype(np.float32) / 255.0)[None, None]
        k = min(self.conf["max_keypoints"], x.shape[2] * x.shape[3])
        if self.conf["backend"] == "torch":
            torch = self._torch
            with torch.inference_mode():
                out = self.net({"image": torch.from_numpy(x), "max_keypoints": k})
            return {k: v[0].numpy() for k, v in out.items()}
        names = [o.name for o in self.session.get_outputs()]
        res = dict(zip(names, self.session.run(None, {"image": x, "max_keypoints": np.array(k, np.int64)})))
        return {"keypoints": res["keypoints"][0], "scores": res["scores"][0], "valid": res["valid"][0],
                "local": np.stack([res[f"desc_{k}"][0] for k in KINDS]), "meta": res["meta"][0]}

    def _extract(self, image: np.ndarray) -> Features:
        c = self.conf
        gray = to_gray(image)
        h, w = gray.shape
        rmax = c["resize_max"]
        if rmax and max(h, w) > rmax:
            s = rmax / max(h, w)
            gray = cv2.resize(gray, (max(round(w * s), 32), max(round(h * s), 32)), interpolation=cv2.INTER_AREA)
        hs, ws = gray.shape
        if hs < 32 or ws < 32:
            raise ValueError(f"FeatLoc needs images of at least 32x32 pixels, got {w}x{h}")
        out = self._run(gray)
        keep = out["valid"] & (out["scores"] >= c["detection_threshold"])
        idx = np.flatnonzero(keep)[: c["max_keypoints"]]  # already sorted by descending score
        kpts = apply_refinement(gray, out["keypoints"][idx], self.refinement)
        local, meta = out["local"][:, idx], out["meta"][:, idx]  # (4, N, D), (4, N, Dm)
        if c["descriptor"] == "selected":
            desc = np.concatenate([*local, *meta], axis=1)
        elif c["descriptor"] == "concat":
            desc = np.concatenate(list(local), axis=1)
            desc /= np.maximum(np.linalg.norm(desc, axis=1, keepdims=True), 1e-8)
        else:
            desc = local[KINDS.index(c["descriptor"])]
        # pixel centres at integer coordinates at every scale (as in SIFT): map back to the input image
        kpts = (kpts + 0.5) * np.array([w / ws, h / hs], np.float32) - 0.5
        return Features(kpts.astype(np.float32), out["scores"][idx].astype(np.float32),
                        np.ascontiguousarray(desc, dtype=np.float32), (w, h))
