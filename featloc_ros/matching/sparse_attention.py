"""Learned matching of FeatLoc "selected" features with the sparse-attention matcher
(featloc_ros.nn.sparse_matcher.SparseMatcher), run by PyTorch or ONNX Runtime.

Weights: a state dict (``torch.load(..., weights_only=True)``), default ``models/featloc_matcher_v1.pt`` with its
architecture file (``.model.json``) and ONNX export (``.onnx``) next to it; nothing is downloaded. The sparse
attention needs at least ``k`` keypoints per image (k = max(k_self, k_cross)): smaller sets are padded with
far-away dummy keypoints whose matches are dropped.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..features.base import Features
from ..features.featloc import resolve_model_file
from .base import Matcher, Matches
from .invariance_selected import split_selected

DEFAULT_WEIGHTS = "featloc_matcher_v1.pt"
TRAIN_COMMAND = "python -m featloc_ros.training.train --config featloc_ros/training/configs/matcher_v1.yaml"


class SparseAttentionMatcher(Matcher):
    default_conf = {
        "weights": None,  # None: the shipped models/featloc_matcher_v1.pt; a bare file name: that shipped model
        "backend": "torch",  # "torch" | "onnxruntime" (the .onnx next to the weights)
        "filter_threshold": 0.1,  # match confidence threshold
        "num_threads": 0,  # >0: torch / onnxruntime intra-op threads
        "onnx_spinning": True,  # onnxruntime: threads busy-wait between runs (on: a query is matched against
        #                         several keyframes back to back; benchmarks/results/onnx_spinning.md)
        "model": {},  # SparseMatcher overrides applied to the weights' architecture (torch backend), e.g.
        #               {"attention": "dense"}: the same weights with dense attention (ablation);
        #               {"early_exit": True}: stop early on easy pairs (weights trained with deep_supervision)
        "num_kinds": 4,
        "local_dim": 64,
        "meta_dim": 16,
    }

    def __init__(self, conf=None):
        super().__init__(conf)
        c = self.conf
        if c["backend"] not in ("torch", "onnxruntime"):
            raise ValueError(f"SparseAttentionMatcher: backend must be 'torch' or 'onnxruntime', got {c['backend']!r}")
        self.weights_path = resolve_model_file(c["weights"], DEFAULT_WEIGHTS)
        from ..nn.sparse_matcher import SparseMatcher, load_architecture

        if c["model"] and c["backend"] != "torch":
            raise ValueError("SparseAttentionMatcher: model overrides need the torch backend (the ONNX graph is fixed)")
        arch = {**SparseMatcher.default_conf, **load_architecture(self.weights_path), **c["model"]}
        for key in ("num_kinds", "local_dim", "meta_dim"):
            if arch[key] != c[key]:
                raise ValueError(f"SparseAttentionMatcher: {self.weights_path} expects {key}={arch[key]}, "
                                 f"the matcher configuration says {c[key]}")
        self.min_keypoints = max(arch["k_self"], arch["k_cross"]) if arch["attention"] == "sparse" else 1
        self.last_layers_run: int | None = None  # layers the last PyTorch pass ran (early exit); None with ONNX
        if c["backend"] == "torch":
            import torch

            if c["num_threads"]:
                torch.set_num_threads(int(c["num_threads"]))
            net = SparseMatcher({**arch, "filter_threshold": float(c["filter_threshold"])})
            net.load_state_dict(torch.load(self.weights_path, map_location="cpu", weights_only=True), strict=True)
            self.net = net.eval()
        else:
            from ..nn.onnx_session import open_onnx_session

            self.session = open_onnx_session(Path(self.weights_path).with_suffix(".onnx"), c["num_threads"],
                                             "SparseAttentionMatcher",
                                             f"Export it with the training command ({TRAIN_COMMAND})",
                                             spinning=bool(c["onnx_spinning"]))

    @property
    def descriptor_dim(self) -> int:
        c = self.conf
        return c["num_kinds"] * (c["local_dim"] + c["meta_dim"])  # FeatLoc "selected" descriptors

    def _inputs(self, f: Features) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
        """Features -> keypoints (1,N',2), local (1,S,N',D), meta (1,S,N',Dm) padded to N' >= min_keypoints,
        and the real count N."""
        c = self.conf
        local, meta = split_selected(f.descriptors, c["num_kinds"], c["local_dim"], c["meta_dim"])
        kpts = np.asarray(f.keypoints, np.float32)
        n = len(kpts)
        pad = max(0, self.min_keypoints - n)
        if pad:  # far outside the image, unit descriptors: they attend among themselves and their matches are dropped
            dummies = -1e5 - 100.0 * np.arange(pad, dtype=np.float32)[:, None].repeat(2, 1)
            kpts = np.concatenate([kpts, dummies.astype(np.float32)])
            unit = np.zeros((local.shape[0], pad, local.shape[2]), np.float32)
            unit[..., 0] = 1.0
            local = np.concatenate([local, unit], 1)
            meta = np.concatenate([meta, np.zeros((meta.shape[0], pad, meta.shape[2]), np.float32)], 1)
        return kpts[None], local[None], meta[None], n

    def _match(self, feats0: Features, feats1: Features) -> Matches:
        k0, l0, m0, n0 = self._inputs(feats0)
        k1, l1, m1, n1 = self._inputs(feats1)
        size0 = np.array([feats0.image_size], np.float32)
        size1 = np.array([feats1.image_size], np.float32)
        thr = np.array([self.conf["filter_threshold"]], np.float32)
        if self.conf["backend"] == "torch":
            import torch

            t = torch.from_numpy
            with torch.inference_mode():  # the net applies this matcher's threshold (set at construction)
                out = self.net({"keypoints0": t(k0), "keypoints1": t(k1), "image_size0": t(size0),
                                "image_size1": t(size1), "local0": t(l0), "local1": t(l1), "meta0": t(m0),
                                "meta1": t(m1)})
                matches, scores = out["matches0"][0].numpy(), out["matching_scores0"][0].numpy()
            self.last_layers_run = out["layers_run"]  # < layers when the early exit stopped the pass
        else:
            names = ("keypoints0", "keypoints1", "image_size0", "image_size1", "local0", "local1", "meta0", "meta1",
                     "filter_threshold")
            res = self.session.run(None, dict(zip(names, (k0, k1, size0, size1, l0, l1, m0, m1, thr))))
            matches, scores = res[0][0], res[1][0]
        idx0 = np.nonzero((matches >= 0) & (matches < n1))[0]
        idx0 = idx0[idx0 < n0]
        return Matches(np.stack([idx0, matches[idx0]], 1).astype(np.int64), scores[idx0].astype(np.float32))
