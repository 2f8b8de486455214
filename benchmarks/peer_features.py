"""Peers inside our map builder and localizer, for the localization benchmark.

The peers run in their own venv, so

- their local features are extracted in one batch per dataset and served to featloc through a registered
  extractor, ``{"name": "precomputed", "source": KEY}``, that looks images up by content hash;
- their own matchers (LightGlue, LighterGlue) are reached through a registered matcher,
  ``{"name": "peer_matches", "method": "aliked_lightglue"}``, that answers from a table of matches computed in the
  peers venv. ``localize_with_peer_matcher`` fills the table: it localizes every query once, recording the
  (query, keyframe) pairs the localizer asks for (retrieval decides them before any matching), runs the peer's
  matcher on all of them in one batch, and localizes again with the answers.
"""

from __future__ import annotations

import hashlib

import numpy as np

from featloc_ros.evaluation.homography import resize_max, resize_transform
from featloc_ros.evaluation.localization import localize_frames
from featloc_ros.features import EXTRACTORS, Extractor, Features
from featloc_ros.matching import MATCHERS, Matcher, Matches

_TABLES: dict[str, dict[str, Features]] = {}
_MATCHES: dict[str, dict[str, Matches]] = {}  # peer method -> pair key -> matches
_PENDING: dict[str, dict[str, dict]] = {}  # peer method -> pair key -> features in the peer's pixel frame
PEER_MAX_SIDE = 1024  # images are resized to at most this side for the peers (keypoints mapped back)

# the peers' matcher methods and the extractor method whose features they match (same network, same settings)
EXTRACTOR_OF = {"aliked_lightglue": "aliked_mnn", "disk_lightglue": "disk_mnn", "xfeat_lighterglue": "xfeat_mnn"}


def _key(image: np.ndarray) -> str:
    return hashlib.sha1(np.ascontiguousarray(image).tobytes()).hexdigest()


class PrecomputedExtractor(Extractor):
    default_conf = {"source": ""}

    def _extract(self, image: np.ndarray) -> Features:
        table = _TABLES.get(self.conf["source"])
        if table is None:
            raise KeyError(f"no precomputed features for source {self.conf['source']!r}")
        return table[_key(image)]


def _peer_frame(feats: Features) -> tuple[np.ndarray, tuple[int, int]]:
    """Full-resolution keypoints -> the pixel frame of the resized image the peer extracted them from."""
    S, size = resize_transform(int(feats.image_size[0]), int(feats.image_size[1]), PEER_MAX_SIDE)
    k = np.c_[feats.keypoints.astype(np.float64), np.ones(len(feats))] @ S.T
    return k[:, :2].astype(np.float32), size


class PeerMatcher(Matcher):
    """A peer's own matcher, answered from matches computed in the peers venv (see the module docstring).
    Pairs not computed yet are recorded and get no matches."""

    default_conf = {"method": ""}

    def _match(self, feats0: Features, feats1: Features) -> Matches:
        method = self.conf["method"]
        key = "".join(_key(a) for a in (feats0.keypoints, feats0.descriptors, feats1.keypoints, feats1.descriptors))
        found = _MATCHES.setdefault(method, {}).get(key)
        if found is not None:
            return found
        pair = {}
        for i, f in enumerate((feats0, feats1)):
            pair[f"keypoints{i}"], pair[f"image_size{i}"] = _peer_frame(f)
            pair[f"descriptors{i}"] = np.asarray(f.descriptors, np.float32)
        _PENDING.setdefault(method, {})[key] = pair
        return Matches.empty()


EXTRACTORS.setdefault("precomputed", PrecomputedExtractor)
MATCHERS.setdefault("peer_matches", PeerMatcher)


def precompute(method: str, images: list[np.ndarray], max_keypoints: int, max_side: int = PEER_MAX_SIDE) -> dict:
    """Extract peer features for ``images`` (resized to ``max_side`` for the peer, keypoints mapped
    back to full resolution) and register them; returns the feature configuration to use. A matcher
    method (e.g. aliked_lightglue) extracts with its extractor method (aliked_mnn)."""
    from peers.client import run_peer_extract

    method = EXTRACTOR_OF.get(method, method)
    source = f"{method}_{max_keypoints}"
    table = _TABLES.setdefault(source, {})
    todo = [im for im in images if _key(im) not in table]
    resized = [resize_max(im, max_side) for im in todo]
    outs = run_peer_extract(method, [r for r, _ in resized], max_keypoints) if todo else []
    for im, (_, S), o in zip(todo, resized, outs):
        k = np.c_[o["keypoints0"].astype(np.float64), np.ones(len(o["keypoints0"]))] @ np.linalg.inv(S).T
        d = o["descriptors0"].astype(np.float32)
        table[_key(im)] = Features(k[:, :2].astype(np.float32), np.ones(len(k), np.float32), d,
                                   (im.shape[1], im.shape[0]))
    return {"name": "precomputed", "source": source}


def localize_with_peer_matcher(vmap, frames, method: str, max_rounds: int = 3, **kwargs) -> dict:
    """localize_frames with the peer's own matcher for the 2D-3D matching (query vs candidate keyframes).
    The map must hold this peer's features (built with precompute(...) features)."""
    from peers.client import run_peer_match_features

    conf = {"matcher": {"name": "peer_matches", "method": method}}
    for _ in range(max_rounds):
        summary = localize_frames(vmap, frames, localizer_conf=conf, **kwargs)
        pending = _PENDING.pop(method, {})
        if not pending:
            return summary
        outs = run_peer_match_features(method, list(pending.values()))
        table = _MATCHES.setdefault(method, {})
        for key, o in zip(pending, outs):
            m = o["matches"].astype(np.int64).reshape(-1, 2)
            table[key] = Matches(m, o["scores"].astype(np.float32)) if len(m) else Matches.empty()
    raise RuntimeError(f"{method}: the localizer still asked for new pairs after {max_rounds} rounds")


__all__ = ["PrecomputedExtractor", "PeerMatcher", "precompute", "localize_with_peer_matcher", "EXTRACTOR_OF"]
