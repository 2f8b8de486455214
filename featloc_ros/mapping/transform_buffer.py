"""A small pure-Python TF buffer: static and time-stamped edges, chain lookup, interpolation.

Used for map building from bags (``/tf`` + ``/tf_static``, or a pose topic) without tf2_ros.
"""

from __future__ import annotations

import bisect

import numpy as np

from ..geometry.transforms import interpolate_transform, invert_transform


class TransformLookupError(LookupError):
    pass


class _Edge:
    def __init__(self, parent: str):
        self.parent = parent
        self.static: np.ndarray | None = None
        self.stamps: list[int] = []
        self.transforms: list[np.ndarray] = []

    def add(self, stamp_ns: int, T: np.ndarray, static: bool) -> None:
        if static:
            self.static = T
            return
        i = bisect.bisect_left(self.stamps, stamp_ns)
        if i < len(self.stamps) and self.stamps[i] == stamp_ns:
            self.transforms[i] = T
        else:
            self.stamps.insert(i, stamp_ns)
            self.transforms.insert(i, T)

    def at(self, stamp_ns: int, tolerance_ns: int, name: str) -> np.ndarray:
        if self.static is not None:
            return self.static
        if not self.stamps:
            raise TransformLookupError(f"no transform {self.parent} -> {name}")
        i = bisect.bisect_left(self.stamps, stamp_ns)
        if i < len(self.stamps) and self.stamps[i] == stamp_ns:
            return self.transforms[i]
        if 0 < i < len(self.stamps):
            t0, t1 = self.stamps[i - 1], self.stamps[i]
            return interpolate_transform(self.transforms[i - 1], self.transforms[i], (stamp_ns - t0) / (t1 - t0))
        j = 0 if i == 0 else len(self.stamps) - 1
        if abs(self.stamps[j] - stamp_ns) <= tolerance_ns:
            return self.transforms[j]
        raise TransformLookupError(
            f"transform {self.parent} -> {name} at t={stamp_ns * 1e-9:.3f}s would need extrapolation "
            f"(data from {self.stamps[0] * 1e-9:.3f}s to {self.stamps[-1] * 1e-9:.3f}s)")


class TransformBuffer:
    """Frames form a tree (one parent per child). ``lookup(target, source, t)`` returns T_target_source."""

    def __init__(self, extrapolation_tolerance_s: float = 0.05):
        self._edges: dict[str, _Edge] = {}
        self.tolerance_ns = int(extrapolation_tolerance_s * 1e9)

    def add(self, parent: str, child: str, stamp_ns: int, T_parent_child: np.ndarray, static: bool = False) -> None:
        parent, child = parent.lstrip("/"), child.lstrip("/")
        edge = self._edges.get(child)
        if edge is None or edge.parent != parent:
            edge = self._edges[child] = _Edge(parent)  # a re-parented frame starts a new history
        edge.add(int(stamp_ns), np.asarray(T_parent_child, dtype=np.float64), static)

    @property
    def frames(self) -> set[str]:
        return set(self._edges) | {e.parent for e in self._edges.values()}

    def _chain(self, frame: str) -> list[str]:
        chain = [frame]
        while chain[-1] in self._edges:
            chain.append(self._edges[chain[-1]].parent)
            if len(chain) > 1000:
                raise TransformLookupError(f"TF cycle through frame {frame!r}")
        return chain

    def _to_ancestor(self, chain: list[str], ancestor: str, stamp_ns: int) -> np.ndarray:
        T = np.eye(4)
        for frame in chain:
            if frame == ancestor:
                return T
            T = self._edges[frame].at(stamp_ns, self.tolerance_ns, frame) @ T
        raise AssertionError("ancestor not in chain")

    def lookup(self, target: str, source: str, stamp_ns: int) -> np.ndarray:
        target, source = target.lstrip("/"), source.lstrip("/")
        known = self.frames
        for f in (target, source):
            if f not in known:
                raise TransformLookupError(f"frame {f!r} does not exist in TF (known: {sorted(known)})")
        ct, cs = self._chain(target), self._chain(source)
        common = next((f for f in cs if f in set(ct)), None)
        if common is None:
            raise TransformLookupError(f"frames {target!r} and {source!r} are not connected in TF")
        T_common_source = self._to_ancestor(cs, common, stamp_ns)
        T_common_target = self._to_ancestor(ct, common, stamp_ns)
        return invert_transform(T_common_target) @ T_common_source
