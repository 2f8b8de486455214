"""Methods compared by the benchmarks, behind one interface.

``match_pairs(pairs, max_keypoints) -> list[dict]`` with keypoints0, keypoints1 (N, 2) pixels,
matches (M, 2) int64, extract_ms0, extract_ms1, match_ms. Ours come from the featloc registries;
OpenCV ORB is built here; pretrained peers run in their own venv (benchmarks/peers).
"""

from __future__ import annotations

import hashlib
import time
from pathlib import Path

import cv2
import numpy as np

from featloc_ros.features import create_extractor
from featloc_ros.features import confs as feature_confs
from featloc_ros.matching import create_matcher

try:
    from peers.client import PEER_METHODS, PeerUnavailable, check_peer, run_peer_pairs
except ImportError:  # the peers client is optional
    PEER_METHODS, PeerUnavailable = (), RuntimeError
    check_peer = run_peer_pairs = None


class RegistryMethod:
    """An extractor + matcher from the featloc registries (our pipeline and the SIFT baselines)."""

    kind = "featloc registry"

    def __init__(self, name: str, features: str | dict, matcher: str | dict):
        self.name, self.features, self.matcher_name = name, features, matcher
        # None, or a dict shared by several methods: features kept per (extractor, max_keypoints, image) so that
        # methods with the same extractor extract each image once (the extraction times are then those of the
        # first method: only for benchmarks that do not report them)
        self.feature_cache: dict | None = None

    def _extractor(self, max_keypoints: int):
        conf = dict(feature_confs[self.features] if isinstance(self.features, str) else self.features)
        conf["max_keypoints"] = max_keypoints
        conf["resize_max"] = 0  # benchmark images are used at the size the set defines
        return create_extractor(conf)

    def match_pairs(self, pairs, max_keypoints: int) -> list[dict]:
        ext, matcher = self._extractor(max_keypoints), create_matcher(self.matcher_name)
        out = []
        for im0, im1 in pairs:
            t0 = time.perf_counter()
            f0 = self._extract(ext, im0, max_keypoints)
            t1 = time.perf_counter()
            f1 = self._extract(ext, im1, max_keypoints)
            t2 = time.perf_counter()
            m = matcher(f0, f1)
            t3 = time.perf_counter()
            out.append({"keypoints0": f0.keypoints, "keypoints1": f1.keypoints, "matches": m.indices,
                        "extract_ms0": 1e3 * (t1 - t0), "extract_ms1": 1e3 * (t2 - t1), "match_ms": 1e3 * (t3 - t2)})
        return out

    def _extract(self, ext, image: np.ndarray, max_keypoints: int):
        if self.feature_cache is None:
            return ext(image)
        key = (str(self.features), max_keypoints, image.shape, hashlib.sha1(image.tobytes()).hexdigest())
        if key not in self.feature_cache:
            self.feature_cache[key] = ext(image)
        return self.feature_cache[key]


class OrbMethod:
    """OpenCV ORB + brute-force Hamming mutual nearest neighbour (cross-check)."""

    kind = "OpenCV"
    name = "orb+hamming_mnn"

    def match_pairs(self, pairs, max_keypoints: int) -> list[dict]:
        orb = cv2.ORB_create(nfeatures=max_keypoints)
        bf = cv2.BFMatcher(cv2.NORM_HAMMING, crossCheck=True)
        out = []
        for im0, im1 in pairs:
            res = {}
            for i, im in enumerate((im0, im1)):
                t0 = time.perf_counter()
                kps, desc = orb.detectAndCompute(cv2.cvtColor(im, cv2.COLOR_RGB2GRAY), None)
                res[f"extract_ms{i}"] = 1e3 * (time.perf_counter() - t0)
                res[f"keypoints{i}"] = np.array([k.pt for k in kps], np.float32).reshape(-1, 2)
                res[f"desc{i}"] = desc
            t0 = time.perf_counter()
            if res["desc0"] is None or res["desc1"] is None:
                m = np.zeros((0, 2), np.int64)
            else:
                m = np.array([[x.queryIdx, x.trainIdx] for x in bf.match(res["desc0"], res["desc1"])],
                             np.int64).reshape(-1, 2)
            res["match_ms"] = 1e3 * (time.perf_counter() - t0)
            res["matches"] = m
            del res["desc0"], res["desc1"]
            out.append(res)
        return out


class PeerMethod:
    kind = "pretrained peer (separate venv)"

    def __init__(self, name: str):
        self.name = name

    def match_pairs(self, pairs, max_keypoints: int) -> list[dict]:
        return run_peer_pairs(self.name, pairs, max_keypoints)


OURS = {
    "rootsift+mnn_ratio": ("rootsift", "mnn_ratio"),  # the featloc baseline pipeline
    "sift+mnn_ratio": ("sift", "mnn_ratio"),
    "rootsift+mnn": ("rootsift", "mnn"),
    "sift+mnn": ("sift", "mnn"),  # plain mutual NN: the descriptor-only comparison of the learned features
    # learned (models/featloc_v4.pt): invariance selection on, and the ablation variants
    "featloc+isnn": ("featloc", "featloc_isnn"),
    "featloc+isnn_ratio": ("featloc", "featloc_isnn_ratio"),
    "featloc_rot4+isnn": ("featloc_rot4", "featloc_isnn"),  # rotation pooling (4 passes)
    "featloc_concat+mnn": ("featloc_concat", "mnn"),
    **{f"featloc_{k}+mnn": (f"featloc_{k}", "mnn") for k in ("rv_iv", "ri_iv", "rv_ii", "ri_ii")},
    # the learned sparse-attention matcher (models/featloc_matcher_v1.pt) on the same features
    "featloc+sparse": ("featloc", "featloc_sparse"),
    "featloc+sparse_as_dense": ("featloc", "featloc_sparse_as_dense"),
    "featloc+sparse_v2": ("featloc", "featloc_sparse_v2"),  # v1 fine-tuned with non-planar pairs
    "featloc+sparse_small": ("featloc", "featloc_sparse_small"),  # 3 layers, k = 8 (speed)
    "featloc+sparse_small_v6": ("featloc", "featloc_sparse_small_v6"),  # + similarity prior, near-miss loss
    "featloc+sparse_small_v11": ("featloc", "featloc_sparse_small_v11"),  # average of small_v6 + 2 like it
    "featloc+sparse_v3": ("featloc", "featloc_sparse_v3"),  # v2 + deep supervision, every layer
    "featloc+sparse_v3_exit": ("featloc", "featloc_sparse_v3_exit"),  # the same weights with the early exit
}
# "featloc+sparse@<weights.pt>[:<threshold>]": FeatLoc features + the sparse-attention matcher with an experiment's
# weights (the architecture file next to them; a relative path is relative to the working directory) and optionally
# another match confidence threshold, named featloc+<file stem>[@<threshold>]
TRAINED_MATCHER_PREFIX = "featloc+sparse@"
# "featloc@<weights.pt>+isnn": an experiment's FeatLoc weights (the architecture file next to them) with
# invariance-selected mutual NN, named <file stem>+isnn
TRAINED_FEATURES_PREFIX, TRAINED_FEATURES_SUFFIX = "featloc@", "+isnn"
# the matcher against invariance-selected mutual NN (with and without the ratio test) on the same keypoints
MATCHER_METHODS = ["featloc+sparse", "featloc+sparse_as_dense", "featloc+isnn", "featloc+isnn_ratio",
                   "aliked_lightglue"]
# invariance selection on vs each head alone vs concatenation, against SIFT and XFeat with plain mutual NN
FEATLOC_ABLATION_METHODS = ["featloc+isnn", "featloc_concat+mnn", "featloc_rv_iv+mnn", "featloc_ri_iv+mnn",
                            "featloc_rv_ii+mnn", "featloc_ri_ii+mnn", "sift+mnn", "rootsift+mnn_ratio", "xfeat_mnn"]
DEFAULT_METHODS = ["rootsift+mnn_ratio", "sift+mnn_ratio", "orb+hamming_mnn", "xfeat_mnn", "xfeat_lighterglue",
                   "aliked_lightglue", "disk_lightglue"]


def trained_matcher_spec(spec: str) -> tuple[Path, float | None]:
    """"<weights.pt>" or "<weights.pt>:<threshold>" -> (path, threshold or None)."""
    path, sep, tail = spec.rpartition(":")
    if sep:
        try:
            return Path(path), float(tail)
        except ValueError:
            pass
    return Path(spec), None


def resolve_methods(names: list[str]) -> tuple[list, dict[str, str]]:
    """(runnable methods, {name: reason} for the skipped ones)."""
    methods, skipped = [], {}
    for name in names:
        if name in OURS:
            method = RegistryMethod(name, *OURS[name])
            try:
                method._extractor(64)
            except FileNotFoundError as e:
                skipped[name] = str(e).splitlines()[0]
                continue
            methods.append(method)
        elif name.startswith(TRAINED_MATCHER_PREFIX):  # an experiment's sparse-matcher weights (e.g. under runs/)
            path, threshold = trained_matcher_spec(name[len(TRAINED_MATCHER_PREFIX):])
            if not path.is_file():
                skipped[name] = f"matcher weights {path} not found (train them first)"
                continue
            conf = {"name": "sparse_attention", "weights": str(path.resolve())}
            if threshold is not None:
                conf["filter_threshold"] = threshold
            methods.append(RegistryMethod(f"featloc+{path.stem}" + ("" if threshold is None else f"@{threshold:g}"),
                                          "featloc", conf))
        elif name.startswith(TRAINED_FEATURES_PREFIX) and name.endswith(TRAINED_FEATURES_SUFFIX):
            path = Path(name[len(TRAINED_FEATURES_PREFIX):-len(TRAINED_FEATURES_SUFFIX)])
            if not path.is_file():
                skipped[name] = f"FeatLoc weights {path} not found (train them first)"
                continue
            conf = {**feature_confs["featloc"], "weights": str(path.resolve())}
            methods.append(RegistryMethod(f"{path.stem}+isnn", conf, "featloc_isnn"))
        elif name == OrbMethod.name:
            methods.append(OrbMethod())
        elif name in PEER_METHODS:
            reason = check_peer(name)
            if reason:
                skipped[name] = reason
            else:
                methods.append(PeerMethod(name))
        else:
            skipped[name] = "unknown method"
    return methods, skipped
