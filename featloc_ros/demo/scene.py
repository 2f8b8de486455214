"""Synthetic textured room for the featloc demo and tests.

A tiny vectorised numpy ray-caster of an axis-aligned room (floor, ceiling,
four walls) with a few boxes / pillars standing inside.  Every surface is
textured with a mosaic of real photographs bundled in the scikit-image wheel
(``skimage.data``; all public-domain / CC0, loaded offline), so a feature-based
localizer has real image content to match.

Conventions
-----------
* Map frame: x east, y north, z up; the room spans ``ROOM_MIN`` .. ``ROOM_MAX``.
* Camera poses are 4x4 camera-to-map transforms ``T_map_cam`` whose camera
  axes are the ROS optical frame: x right, y down, z forward.
* Pixel ``(u, v)`` with integer coordinates is the *centre* of that pixel
  (OpenCV / ROS convention), i.e. the ray through pixel (u, v) is
  ``K^-1 [u, v, 1]``.
* Depth is the z coordinate in the camera frame (along the optical axis),
  not the Euclidean ray length.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import cv2
import numpy as np

__all__ = [
    "ROOM_MIN",
    "ROOM_MAX",
    "BOXES",
    "DemoScene",
    "camera_path",
    "demo_intrinsics",
    "look_pose",
    "TEXTURE_SOURCES",
]

ROOM_MIN = np.array([-4.0, -3.0, 0.0])
ROOM_MAX = np.array([4.0, 3.0, 3.0])

# (name, min corner, max corner) of boxes / pillars standing on the floor.
BOXES: tuple[tuple[str, tuple[float, float, float], tuple[float, float, float]], ...] = (
    ("crate", (-3.4, 1.5, 0.0), (-2.4, 2.3, 1.0)),
    ("pillar_se", (2.35, -2.05, 0.0), (2.85, -1.55, 3.0)),
    ("cabinet", (2.8, 1.0, 0.0), (3.6, 2.2, 1.8)),
    ("block", (-2.55, -2.55, 0.0), (-1.85, -1.85, 0.7)),
    ("pillar_n", (0.3, 2.2, 0.0), (0.7, 2.6, 3.0)),
)

# scikit-image sample images used as textures (all ship inside the wheel and
# load without network access).  Licences per the skimage.data docstrings:
# astronaut, rocket, hubble_deep_field: public domain (NASA / SpaceX);
# coffee, chelsea, camera, brick, grass, gravel: CC0;
# coins, text, immunohistochemistry: no known copyright restrictions.
_FLOOR_SOURCES = ("brick", "grass", "gravel")
_GENERAL_SOURCES = ("astronaut", "coffee", "chelsea", "rocket", "hubble_deep_field",
                    "immunohistochemistry", "camera", "coins", "text")
TEXTURE_SOURCES = _GENERAL_SOURCES + _FLOOR_SOURCES
# Upper bound on the grid size a source is cut into (keeps the star field from
# dominating the room).
_MAX_GRID = {"hubble_deep_field": 3}
# Regions with fewer ORB corners than this (flat sky, blurred background) are
# not used as wall/box textures.
_MIN_REGION_CORNERS = 40

# Cell size (metres) of the photo mosaic on each kind of surface.
_CELL_M = {"wall": 1.5, "floor": 1.5, "ceiling": 2.0, "box": 1.0}

_UP = np.array([0.0, 0.0, 1.0])


@functools.lru_cache(maxsize=None)
def _source_image(name: str) -> np.ndarray:
    """Load one skimage sample image as float32 RGB in [0, 255] (cached)."""
    from skimage import data  # local import: only needed when building textures

    img = np.asarray(getattr(data, name)())
    if img.dtype == bool:
        img = img.astype(np.uint8) * 255
    if img.ndim == 2:
        img = np.repeat(img[:, :, None], 3, axis=2)
    img = img[:, :, :3].astype(np.float32)
    img.setflags(write=False)
    return img


class _Deck:
    """Shuffled deck of disjoint square photo regions (each also mirrored).

    Every source image is cut into a grid of disjoint ~170 px squares
    (low-texture squares are dropped when ``min_corners`` > 0).  Each square
    is a card twice, as is and mirrored (mirrored patches do not match under
    SIFT/ORB-like descriptors).  Cards are drawn without replacement, so a
    square appears at most once unmirrored and once mirrored in the room
    (until a deck runs out; then it is reshuffled - with the default cell
    sizes it does not run out).
    """

    def __init__(self, sources: tuple[str, ...] | dict[str, np.ndarray], rng: np.random.Generator,
                 min_corners: int = 0):
        # sources: names of scikit-image samples, or {name: float32 RGB image in [0, 255]}
        self.images = dict(sources) if isinstance(sources, dict) else {n: _source_image(n) for n in sources}
        self._rng = rng
        self._cards = []
        orb = cv2.ORB_create(nfeatures=500) if min_corners > 0 else None
        for name, img in self.images.items():
            h, w = img.shape[:2]
            k = max(1, min(int(round(min(h, w) / 170.0)), _MAX_GRID.get(name, 99)))
            side = min(h, w) // k
            gray = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY).astype(np.uint8) if orb else None
            for y0 in range(0, h - side + 1, side):
                for x0 in range(0, w - side + 1, side):
                    if orb is not None:
                        patch = cv2.resize(gray[y0:y0 + side, x0:x0 + side], (200, 200),
                                           interpolation=cv2.INTER_AREA)
                        if len(orb.detect(patch, None)) < min_corners:
                            continue
                    for flip in (False, True):
                        self._cards.append((name, y0, x0, side, flip))
        self._pile: list[int] = []
        self.draws = 0

    def __len__(self) -> int:
        return len(self._cards)

    def draw(self):
        self.draws += 1
        if not self._pile:
            self._pile = list(self._rng.permutation(len(self._cards)))
        return self._cards[self._pile.pop()]


def _mosaic_texture(width_m: float, height_m: float, deck: _Deck,
                    rng: np.random.Generator, ppm: float, cell_m: float) -> np.ndarray:
    """Texture (uint8 HxWx3) for a width_m x height_m surface.

    The surface is tiled with square cells of ``cell_m`` metres; each cell
    shows one region drawn from ``deck`` with a random colour tint and
    contrast, so places in the room are distinguishable.
    """
    w_px = max(2, int(round(width_m * ppm)))
    h_px = max(2, int(round(height_m * ppm)))
    cell_px = max(2, int(round(cell_m * ppm)))
    ncol = -(-w_px // cell_px)
    nrow = -(-h_px // cell_px)
    canvas = np.zeros((nrow * cell_px, ncol * cell_px, 3), np.float32)
    for r in range(nrow):
        for c in range(ncol):
            name, y0, x0, side, flip = deck.draw()
            crop = deck.images[name][y0:y0 + side, x0:x0 + side]
            if flip:
                crop = crop[:, ::-1]
            interp = cv2.INTER_AREA if side > cell_px else cv2.INTER_LINEAR
            tile = cv2.resize(np.ascontiguousarray(crop), (cell_px, cell_px),
                              interpolation=interp)
            gray = float(np.ptp(crop.reshape(-1, 3).mean(axis=0))) < 1.0
            if gray:
                tint = rng.uniform(0.55, 1.15, size=3)
                tint *= rng.uniform(0.85, 1.1) / max(tint.max(), 1e-6)
            else:
                tint = rng.uniform(0.85, 1.15, size=3)
            tile = tile * tint.astype(np.float32)
            mean = tile.mean()
            tile = (tile - mean) * rng.uniform(0.9, 1.2) + mean * rng.uniform(0.9, 1.1)
            canvas[r * cell_px:(r + 1) * cell_px, c * cell_px:(c + 1) * cell_px] = tile
    return np.clip(canvas[:h_px, :w_px], 0, 255).astype(np.uint8)


@dataclass(frozen=True)
class _Face:
    name: str
    normal: np.ndarray  # unit normal pointing towards the viewer side
    origin: np.ndarray  # 3D point of texture pixel (0, 0) corner
    u_dir: np.ndarray  # unit vector: texture column direction
    v_dir: np.ndarray  # unit vector: texture row direction
    size_u: float
    size_v: float


def _make_face(name: str, axis: int, value: float, lo: np.ndarray, hi: np.ndarray,
               normal_sign: float) -> _Face:
    """Axis-aligned rectangle ``x[axis] == value`` spanning lo..hi on the other axes."""
    normal = np.zeros(3)
    normal[axis] = normal_sign
    if axis == 2:  # horizontal: u = +x; v chosen so the image is not mirrored
        u_dir = np.array([1.0, 0.0, 0.0])
        v_dir = np.array([0.0, -normal_sign, 0.0])
    else:  # vertical: u = viewer's right, v = down
        u_dir = np.cross(-normal, _UP)
        v_dir = -_UP
    corners = []
    a, b = [k for k in range(3) if k != axis]
    for ca in (lo[a], hi[a]):
        for cb in (lo[b], hi[b]):
            p = np.zeros(3)
            p[axis] = value
            p[a], p[b] = ca, cb
            corners.append(p)
    corners = np.array(corners)
    score = corners @ u_dir * 1e3 + corners @ v_dir
    origin = corners[int(np.argmin(score))]
    size_u = float(np.ptp(corners @ u_dir))
    size_v = float(np.ptp(corners @ v_dir))
    return _Face(name, normal, origin, u_dir, v_dir, size_u, size_v)


class DemoScene:
    """Textured room with boxes; ``render`` gives RGB + optical-axis depth.

    Parameters
    ----------
    texture_ppm:
        texture resolution in pixels per metre.
    seed:
        seed of the texture mosaic layout (the scene itself is fixed).
    texture_images:
        RGB uint8 images to texture the room with instead of the scikit-image samples (e.g. photos of the
        training corpus: the matcher training renders non-planar pairs that share no texture with the demo).
    """

    # Lighting parameters (map frame).
    DAY_LIGHT_DIR = np.array([0.45, 0.3, 0.84]) / np.linalg.norm([0.45, 0.3, 0.84])
    NIGHT_LAMP_POS = np.array([-1.8, 1.2, 2.6])

    def __init__(self, texture_ppm: float = 200.0, seed: int = 0,
                 texture_images: list[np.ndarray] | None = None):
        self.room_min = ROOM_MIN.copy()
        self.room_max = ROOM_MAX.copy()
        self.box_names = [b[0] for b in BOXES]
        self.box_min = np.array([b[1] for b in BOXES], dtype=np.float64)
        self.box_max = np.array([b[2] for b in BOXES], dtype=np.float64)
        self.texture_ppm = float(texture_ppm)
        rng = np.random.default_rng(seed)

        faces: list[_Face] = []
        kinds: list[str] = []
        room_names = ("wall_west", "wall_east", "wall_south", "wall_north", "floor", "ceiling")
        # room faces: id 2k -> min side of axis k (normal +e_k, inward), 2k+1 -> max side
        for k in range(3):
            for side in (0, 1):
                value = self.room_min[k] if side == 0 else self.room_max[k]
                nsign = 1.0 if side == 0 else -1.0
                name = room_names[2 * k + side]
                faces.append(_make_face(name, k, value, self.room_min, self.room_max, nsign))
                kinds.append(name if name in ("floor", "ceiling") else "wall")
        # box faces: id 6 + 6j + 2k -> min side (normal -e_k, outward), +1 -> max side
        for j, name in enumerate(self.box_names):
            for k in range(3):
                for side in (0, 1):
                    value = self.box_min[j, k] if side == 0 else self.box_max[j, k]
                    nsign = -1.0 if side == 0 else 1.0
                    faces.append(_make_face(f"{name}_{k}{side}", k, value,
                                            self.box_min[j], self.box_max[j], nsign))
                    hidden = k == 2 and (side == 0 or value >= self.room_max[2])
                    kinds.append("hidden" if hidden else "box")
        self.faces = faces

        if texture_images is not None:
            if not len(texture_images):
                raise ValueError("DemoScene: texture_images is empty")
            given = {f"image{i}": np.asarray(im, np.float32)[:, :, :3] for i, im in enumerate(texture_images)}
            floor_sources, general_sources = given, given
        else:
            floor_sources, general_sources = _FLOOR_SOURCES, _GENERAL_SOURCES
        floor_deck = _Deck(floor_sources, rng)
        general_deck = _Deck(general_sources, rng, min_corners=_MIN_REGION_CORNERS)
        if not len(general_deck):
            raise ValueError(f"DemoScene: no texture region has {_MIN_REGION_CORNERS} corners")
        textures = []
        for f, kind in zip(faces, kinds):
            if kind == "hidden":  # box bottoms / tops touching the ceiling
                textures.append(np.full((2, 2, 3), 128, np.uint8))
                continue
            deck = floor_deck if kind in ("floor", "ceiling") else general_deck
            textures.append(_mosaic_texture(f.size_u, f.size_v, deck, rng, self.texture_ppm,
                                            _CELL_M[kind]))
        self.deck_sizes = {"floor": len(floor_deck), "general": len(general_deck)}
        self.deck_draws = {"floor": floor_deck.draws, "general": general_deck.draws}
        self.textures = textures
        # Pack all textures into one atlas (stacked vertically) for a single gather.
        atlas_w = max(t.shape[1] for t in textures)
        atlas_h = sum(t.shape[0] for t in textures)
        atlas = np.zeros((atlas_h, atlas_w, 3), np.uint8)
        row_off = []
        r = 0
        for t in textures:
            atlas[r:r + t.shape[0], :t.shape[1]] = t
            row_off.append(r)
            r += t.shape[0]
        self._atlas = atlas.reshape(-1, 3)
        self._atlas_w = atlas_w
        self._f_row = np.array(row_off, np.int64)
        self._f_w = np.array([t.shape[1] for t in textures], np.int64)
        self._f_h = np.array([t.shape[0] for t in textures], np.int64)
        self._f_normal = np.array([f.normal for f in faces], np.float32)
        # texel column = su * P[au] + cu (pixel centres at integer texels), same for rows
        ppm = self.texture_ppm
        self._f_au = np.array([int(np.argmax(np.abs(f.u_dir))) for f in faces], np.int64)
        self._f_av = np.array([int(np.argmax(np.abs(f.v_dir))) for f in faces], np.int64)
        su = np.array([f.u_dir[a] for f, a in zip(faces, self._f_au)])
        sv = np.array([f.v_dir[a] for f, a in zip(faces, self._f_av)])
        ou = np.array([f.origin[a] for f, a in zip(faces, self._f_au)])
        ov = np.array([f.origin[a] for f, a in zip(faces, self._f_av)])
        self._f_su = (su * ppm).astype(np.float32)
        self._f_sv = (sv * ppm).astype(np.float32)
        self._f_cu = (-su * ou * ppm - 0.5).astype(np.float32)
        self._f_cv = (-sv * ov * ppm - 0.5).astype(np.float32)
        self._f_w1 = (self._f_w - 1).astype(np.float32)
        self._f_h1 = (self._f_h - 1).astype(np.float32)

    # ------------------------------------------------------------------ geometry
    def contains(self, p: np.ndarray, margin: float = 0.0) -> bool:
        """True if point ``p`` is inside the room and outside all boxes (with margin)."""
        return self.clearance(p) >= margin

    def clearance(self, p: np.ndarray) -> float:
        """Distance from ``p`` to the nearest surface (negative if inside a solid)."""
        p = np.asarray(p, np.float64)
        d_room = float(min(np.min(p - self.room_min), np.min(self.room_max - p)))
        # signed distance to each box
        q = np.maximum(self.box_min - p, p - self.box_max)
        outside = np.linalg.norm(np.maximum(q, 0.0), axis=1)
        inside = np.minimum(q.max(axis=1), 0.0)
        d_box = float(np.min(outside + inside))
        return min(d_room, d_box)

    def _box_rects(self, R: np.ndarray, c: np.ndarray, K: np.ndarray, width: int,
                   height: int) -> list[tuple[int, int, int, int] | None]:
        """Conservative pixel rectangle (r0, r1, c0, c1) per box; None = box not visible."""
        rects: list[tuple[int, int, int, int] | None] = []
        for j in range(len(self.box_names)):
            lo, hi = self.box_min[j], self.box_max[j]
            corners = np.array([[x, y, z] for x in (lo[0], hi[0]) for y in (lo[1], hi[1])
                                for z in (lo[2], hi[2])])
            cam = (corners - c) @ R  # rows: corners in the camera frame
            z = cam[:, 2]
            if np.all(z <= 1e-9):
                rects.append(None)  # entirely behind the camera
                continue
            if np.any(z <= 1e-3):
                rects.append((0, height, 0, width))  # straddles the image plane
                continue
            uvw = cam @ K.T
            u = uvw[:, 0] / uvw[:, 2]
            v = uvw[:, 1] / uvw[:, 2]
            c0 = max(0, int(np.floor(u.min())) - 1)
            c1 = min(width, int(np.ceil(u.max())) + 2)
            r0 = max(0, int(np.floor(v.min())) - 1)
            r1 = min(height, int(np.ceil(v.max())) + 2)
            rects.append((r0, r1, c0, c1) if (c0 < c1 and r0 < r1) else None)
        return rects

    def _raycast(self, origin: np.ndarray, d: list[np.ndarray],
                 rects: list[tuple[int, int, int, int] | None]) -> tuple[np.ndarray, np.ndarray]:
        """Nearest hit of the rays ``origin + t * (d[0], d[1], d[2])``.

        ``d``: three HxW float32 arrays (map-frame ray direction components,
        no exact zeros). ``rects``: per box, the pixel rectangle to test.
        Returns (t HxW float32, face id HxW int64).
        """
        o = origin.astype(np.float32)
        inv = [np.float32(1.0) / dk for dk in d]
        pos = [dk > 0 for dk in d]
        lo = self.room_min.astype(np.float32) - o
        hi = self.room_max.astype(np.float32) - o
        # Room: the ray leaves the room box from the inside.
        t_best = np.where(pos[0], hi[0], lo[0]) * inv[0]
        face = pos[0].astype(np.int64)
        for k in (1, 2):
            tk = np.where(pos[k], hi[k], lo[k]) * inv[k]
            m = tk < t_best
            t_best = np.where(m, tk, t_best)
            face = np.where(m, 2 * k + pos[k], face)
        # Boxes: the ray enters from outside (slab test), only inside the rectangle.
        for j, rect in enumerate(rects):
            if rect is None:
                continue
            r0, r1, c0, c1 = rect
            bl = self.box_min[j].astype(np.float32) - o
            bh = self.box_max[j].astype(np.float32) - o
            tnear = tfar = ax = None
            for k in range(3):
                ik = inv[k][r0:r1, c0:c1]
                t1 = bl[k] * ik
                t2 = bh[k] * ik
                tmin = np.minimum(t1, t2)
                tmax = np.maximum(t1, t2)
                if k == 0:
                    tnear, tfar, ax = tmin, tmax, np.zeros(tmin.shape, np.int64)
                else:
                    m = tmin > tnear
                    tnear = np.where(m, tmin, tnear)
                    ax = np.where(m, k, ax)
                    tfar = np.minimum(tfar, tmax)
            tb = t_best[r0:r1, c0:c1]
            hit = (tnear <= tfar) & (tnear > 0) & (tnear < tb)
            if not hit.any():
                continue
            # entering through the max side of axis ax when the ray goes negative
            neg = np.where(ax == 0, ~pos[0][r0:r1, c0:c1],
                           np.where(ax == 1, ~pos[1][r0:r1, c0:c1], ~pos[2][r0:r1, c0:c1]))
            fid = 6 + 6 * j + 2 * ax + neg
            tb[hit] = tnear[hit]
            face[r0:r1, c0:c1][hit] = fid[hit]
        return t_best, face

    # ------------------------------------------------------------------ render
    def render(self, T_map_cam: np.ndarray, K: np.ndarray, width: int, height: int,
               lighting: str = "day", seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """Render an RGB image and a depth map.

        Args:
            T_map_cam: 4x4 camera-to-map transform (ROS optical frame).
            K: 3x3 pinhole intrinsics.
            width, height: image size in pixels.
            lighting: ``"day"`` (directional light + ambient, noise free) or
                ``"night"`` (dark, warm point lamp, blur and sensor noise).
            seed: seed of the sensor noise (only used for ``"night"``).

        Returns:
            (rgb uint8 HxWx3, depth float32 HxW: z along the optical axis, metres).
        """
        if lighting not in ("day", "night"):
            raise ValueError(f"unknown lighting {lighting!r}")
        T = np.asarray(T_map_cam, np.float64)
        K = np.asarray(K, np.float64)
        R = T[:3, :3]
        c = T[:3, 3]
        if self.clearance(c) <= 0.0:
            raise ValueError(f"camera centre {c} is not in free space")

        # Camera-frame ray directions with z == 1 (so ray parameter t == depth):
        # d_cam = K^-1 [u, v, 1] for pixel centres (u, v).
        Kinv = np.linalg.inv(K)
        Kinv = Kinv / Kinv[2, 2]
        us = np.arange(width, dtype=np.float64)[None, :]
        vs = np.arange(height, dtype=np.float64)[:, None]
        xc = Kinv[0, 0] * us + Kinv[0, 1] * vs + Kinv[0, 2]
        yc = Kinv[1, 1] * vs + Kinv[1, 2] + 0.0 * us
        d = []
        for k in range(3):  # map-frame direction components, HxW float32
            dk = (R[k, 0] * xc + R[k, 1] * yc + R[k, 2]).astype(np.float32)
            dk[dk == 0] = np.float32(1e-20)  # avoid exact zeros in the slab tests
            d.append(dk)

        rects = self._box_rects(R, c, K, width, height)
        t, face = self._raycast(c, d, rects)
        depth = t.astype(np.float32)
        t = t.reshape(-1)
        face = face.reshape(-1)
        P = [np.float32(c[k]) + d[k].reshape(-1) * t for k in range(3)]
        Pstack = np.stack(P, axis=1)

        # Atlas texel coordinates: every face is axis aligned, so the texture
        # coordinate is an affine function of one map coordinate.
        tu = np.take_along_axis(Pstack, self._f_au[face][:, None], axis=1)[:, 0]
        tu = tu * self._f_su[face] + self._f_cu[face]
        tv = np.take_along_axis(Pstack, self._f_av[face][:, None], axis=1)[:, 0]
        tv = tv * self._f_sv[face] + self._f_cv[face]
        fw1 = self._f_w1[face]
        fh1 = self._f_h1[face]
        tu = np.clip(tu, 0, fw1)
        tv = np.clip(tv, 0, fh1)
        x0 = tu.astype(np.int64)  # tu >= 0, so truncation == floor
        y0 = tv.astype(np.int64)
        ax_ = (tu - x0)[:, None]
        ay_ = (tv - y0)[:, None]
        x1 = x0 + (x0 < fw1)
        rows0 = (self._f_row[face] + y0) * self._atlas_w
        rows1 = rows0 + (y0 < fh1) * self._atlas_w
        A = self._atlas
        c00 = A[rows0 + x0].astype(np.float32)
        c01 = A[rows0 + x1].astype(np.float32)
        c10 = A[rows1 + x0].astype(np.float32)
        c11 = A[rows1 + x1].astype(np.float32)
        top = c00 + (c01 - c00) * ax_
        bot = c10 + (c11 - c10) * ax_
        albedo = top + (bot - top) * ay_

        normal = self._f_normal[face]
        if lighting == "day":
            lam = np.maximum(normal @ self.DAY_LIGHT_DIR.astype(np.float32), 0.0)
            shade = 0.8 + 0.5 * lam
            # gentle darkening towards the floor corners (fake ambient occlusion)
            shade = shade * (0.92 + 0.08 * np.clip(P[2], 0.0, 1.0))
            rgb = albedo * shade[:, None]
        else:
            to_lamp = self.NIGHT_LAMP_POS.astype(np.float32) - Pstack
            dist = np.linalg.norm(to_lamp, axis=1)
            lam = np.maximum(np.einsum("ij,ij->i", normal, to_lamp) / np.maximum(dist, 1e-6), 0.0)
            falloff = 1.0 / (1.0 + (dist / 2.0) ** 2)
            shade = 0.3 * (0.4 + 2.6 * lam * falloff)
            tint = np.array([1.0, 0.86, 0.66], np.float32)  # warm lamp
            rgb = albedo * shade[:, None] * tint

        rgb = rgb.reshape(height, width, 3)
        if lighting == "night":
            rgb = cv2.GaussianBlur(rgb, (0, 0), sigmaX=0.8)
            rng = np.random.default_rng(seed)
            rgb = rgb + rng.normal(0.0, 4.0, size=rgb.shape).astype(np.float32)
        img = np.clip(np.rint(rgb), 0, 255).astype(np.uint8)
        return img, depth


# ---------------------------------------------------------------------- cameras
def demo_intrinsics(width: int = 640, height: int = 480, hfov_deg: float = 70.0) -> np.ndarray:
    """Square-pixel pinhole K with the given horizontal field of view."""
    f = (width / 2.0) / np.tan(np.deg2rad(hfov_deg) / 2.0)
    return np.array([[f, 0.0, width / 2.0], [0.0, f, height / 2.0], [0.0, 0.0, 1.0]])


def look_pose(position, yaw: float, pitch: float = 0.0, roll: float = 0.0) -> np.ndarray:
    """Camera-to-map pose (optical frame) at ``position`` looking along heading ``yaw``.

    yaw: radians, counter-clockwise from map +x; pitch: radians, positive looks up;
    roll: radians about the viewing direction (positive tilts the camera x axis
    towards world down).
    """
    cp, sp = np.cos(pitch), np.sin(pitch)
    fwd = np.array([np.cos(yaw) * cp, np.sin(yaw) * cp, sp])
    right = np.cross(fwd, _UP)
    right /= np.linalg.norm(right)
    down = np.cross(fwd, right)
    cr, sr = np.cos(roll), np.sin(roll)
    x = cr * right + sr * down
    y = -sr * right + cr * down
    T = np.eye(4)
    T[:3, 0], T[:3, 1], T[:3, 2] = x, y, fwd
    T[:3, 3] = np.asarray(position, np.float64)
    return T


def camera_path(kind: str, n: int) -> list[np.ndarray]:
    """``n`` camera-to-map poses (optical frame) on a closed loop in the room.

    kind ``"mapping"``: an ellipse (radii 1.3 m x 0.8 m) around the room centre,
    camera ~1.45 m high, looking outward at walls/boxes with yaw wobble of
    +-20 deg, pitch -4..-12 deg and a little roll.
    kind ``"query"``: a different loop covering the same area: ~0.3-0.5 m away
    from the mapping path, ~0.1 m lower, headings differing by up to ~20 deg
    from the mapping pose at the same phase, sampled at other phases.
    """
    if n <= 0:
        return []
    poses = []
    for i in range(n):
        if kind == "mapping":
            phi = 2.0 * np.pi * i / n
            pos = (1.3 * np.cos(phi), 0.8 * np.sin(phi), 1.45 + 0.05 * np.sin(3 * phi))
            yaw = phi + 0.35 * np.sin(2 * phi)
            pitch = np.deg2rad(-8.0 + 4.0 * np.sin(2 * phi + 1.0))
            roll = np.deg2rad(2.0 * np.sin(5 * phi))
        elif kind == "query":
            phi = 2.0 * np.pi * (i + 0.5) / n + 0.05
            pos = (0.1 + 1.7 * np.cos(phi), -0.05 + 1.2 * np.sin(phi),
                   1.35 + 0.04 * np.sin(2 * phi + 0.5))
            yaw = phi + 0.35 * np.sin(2 * phi) + 0.3 * np.sin(3 * phi + 0.5)
            pitch = np.deg2rad(-6.0 + 4.0 * np.sin(3 * phi))
            roll = np.deg2rad(-2.0 * np.sin(4 * phi + 0.3))
        else:
            raise ValueError(f"unknown path kind {kind!r} (expected 'mapping' or 'query')")
        poses.append(look_pose(pos, yaw, pitch, roll))
    return poses
