"""Training pairs for FeatLocNet: crops of permissively licensed photos/textures (``training_corpus``) and of
procedural images, warped by homographies with/without a large rotation and with/without a photometric change.

Never reads the research data in ``../shared/data``: only ``$FEATLOC_TRAINING_CORPUS`` or
``../shared/training_corpus`` (its MANIFEST.tsv gives the licence of every file) and images generated here.

A sample (deterministic given (seed, index), independent of the order in which samples are drawn):

    A   (S,S) anchor crop                                      (uint8 gray; RGB is used for the photometric change)
    B   = photometric(warp(A-region, H_AB)) with H_AB = R @ H0 (R: large rotation about the centre, if rotation)
    B0  = warp(A-region, H0): the "untransformed copy" (same geometry without the rotation, no relighting);
          the positive of the variant losses. B0 == B when neither change is applied.
    H_AB, H_AB0 (3,3) map A pixels to B / B0 pixels (OpenCV convention, pixel centres at integers),
    valid_B, valid_B0 (S,S) bool: pixels of B / B0 with image content, rotation, illumination flags.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path

import cv2
import numpy as np

from ..synthesis import apply_photometric, sample_homography

PROCEDURAL_KINDS = ("shapes", "dead_leaves", "noise", "gratings")

DEFAULT_DATA_CONF = {
    "corpus": "auto",  # "auto": $FEATLOC_TRAINING_CORPUS or ../shared/training_corpus; a path; or null
    "corpus_max_side": 640,  # corpus images are decoded once, reduced to this longest side, kept in memory
    "corpus_limit": 0,  # >0: use only the first N corpus files (sorted; for quick tests)
    "procedural_ratio": 0.35,  # fraction of samples from procedural images (1.0 without a corpus)
    "procedural_kinds": list(PROCEDURAL_KINDS),
    "crop_size": 192,  # S: side of A, B, B0
    "context": 1.6,  # region around the crop (side context*S) that B is warped from (fewer empty borders)
    "p_rotation": 0.5,
    "p_illumination": 0.5,
    "night_fraction": 0.3,  # share of the illumination changes that are "night" (else "illumination")
    "rotation_deg": [30.0, 180.0],  # |angle| of the large rotation, random sign
    "rotation_ramp_samples": 0,  # >0: curriculum, the largest |angle| grows linearly over the first N samples
    "base_rotation_deg": 10.0,  # small rotation included in H0 (upright images are never exactly upright)
    "scale_range": [0.8, 1.25],
    "max_perspective": 0.001,
    "max_translation": 0.08,
}


def find_corpus(setting: str | None = "auto") -> Path | None:
    """The training corpus directory: an explicit path, or for "auto" $FEATLOC_TRAINING_CORPUS, else
    ../shared/training_corpus next to the repository; None when absent (or setting is null)."""
    if not setting:
        return None
    if setting != "auto":
        return Path(setting)
    env = os.environ.get("FEATLOC_TRAINING_CORPUS")
    if env:
        return Path(env)
    path = Path(__file__).resolve().parents[3] / "shared" / "training_corpus"
    return path if path.is_dir() else None


def read_manifest(corpus: Path) -> list[dict]:
    """Rows of MANIFEST.tsv (file, source, original_path, licence, ...) whose file exists."""
    with open(corpus / "MANIFEST.tsv", newline="") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    return [r for r in rows if (corpus / r["file"]).is_file()]


def load_corpus(corpus: Path, max_side: int, limit: int = 0) -> tuple[list[np.ndarray], list[dict]]:
    """Decode the corpus images (RGB uint8, longest side <= max_side) listed in its manifest."""
    rows = sorted(read_manifest(corpus), key=lambda r: r["file"])
    if limit:
        rows = rows[:limit]
    images = []
    for r in rows:
        img = cv2.imread(str(corpus / r["file"]), cv2.IMREAD_REDUCED_COLOR_2)
        if img is None:
            raise OSError(f"cannot decode training image {corpus / r['file']}")
        h, w = img.shape[:2]
        if max(h, w) > max_side:
            s = max_side / max(h, w)
            img = cv2.resize(img, (round(w * s), round(h * s)), interpolation=cv2.INTER_AREA)
        images.append(cv2.cvtColor(img, cv2.COLOR_BGR2RGB))
    return images, rows


# ----------------------------------------------------------------------------------------------------
# procedural images (RGB uint8, size x size)
# ----------------------------------------------------------------------------------------------------


def _color(rng) -> tuple[int, int, int]:
    return tuple(int(v) for v in rng.integers(0, 256, 3))


def _shapes(rng, size: int) -> np.ndarray:
    img = np.empty((size, size, 3), np.uint8)
    img[:] = _color(rng)
    for _ in range(int(rng.integers(15, 40))):
        kind = rng.integers(0, 4)
        c = _color(rng)
        p = rng.integers(0, size, 2)
        if kind == 0:
            q = p + rng.integers(8, size // 3, 2)
            cv2.rectangle(img, tuple(int(v) for v in p), tuple(int(v) for v in q), c, -1)
        elif kind == 1:
            axes = tuple(int(v) for v in rng.integers(4, size // 6, 2))
            cv2.ellipse(img, tuple(int(v) for v in p), axes, float(rng.uniform(0, 180)), 0, 360, c, -1)
        elif kind == 2:
            pts = (p + rng.integers(-size // 6, size // 6, (int(rng.integers(3, 7)), 2))).astype(np.int32)
            cv2.fillPoly(img, [pts], c)
        else:
            q = rng.integers(0, size, 2)
            cv2.line(img, tuple(int(v) for v in p), tuple(int(v) for v in q), c, int(rng.integers(1, 5)))
    return img


def _dead_leaves(rng, size: int) -> np.ndarray:
    img = np.empty((size, size, 3), np.uint8)
    img[:] = _color(rng)
    rmin, rmax = 3.0, size / 5
    for _ in range(int(rng.integers(150, 350))):
        r = rmin * (rmax / rmin) ** rng.uniform() ** 2  # power-law-ish radii: many small leaves
        cv2.circle(img, tuple(int(v) for v in rng.integers(0, size, 2)), int(r), _color(rng), -1)
    return img


def _noise(rng, size: int) -> np.ndarray:
    acc = np.zeros((size, size, 3), np.float32)
    for octave in range(int(rng.integers(2, 6))):
        cells = max(2, int(2 ** (octave + rng.uniform(1, 3))))
        layer = rng.uniform(-1, 1, (cells, cells, 3)).astype(np.float32)
        acc += cv2.resize(layer, (size, size), interpolation=cv2.INTER_CUBIC) / (1.0 + octave * rng.uniform(0, 1))
    acc = (acc - acc.min()) / max(float(acc.max() - acc.min()), 1e-6)
    return (acc * 255).astype(np.uint8)


def _gratings(rng, size: int) -> np.ndarray:
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    if rng.uniform() < 0.4:  # checkerboard, randomly rotated
        cell = rng.uniform(6, size / 5)
        th = rng.uniform(0, np.pi)
        u, v = xx * np.cos(th) + yy * np.sin(th), -xx * np.sin(th) + yy * np.cos(th)
        pattern = ((np.floor(u / cell) + np.floor(v / cell)) % 2).astype(np.float32)
    else:  # sum of sine gratings
        pattern = np.zeros((size, size), np.float32)
        for _ in range(int(rng.integers(1, 4))):
            f, th, ph = rng.uniform(0.02, 0.2), rng.uniform(0, np.pi), rng.uniform(0, 2 * np.pi)
            pattern += np.sin(2 * np.pi * f * (xx * np.cos(th) + yy * np.sin(th)) + ph)
        pattern = (pattern - pattern.min()) / max(float(pattern.max() - pattern.min()), 1e-6)
    c0, c1 = np.array(_color(rng), np.float32), np.array(_color(rng), np.float32)
    img = c0 + pattern[..., None] * (c1 - c0)
    # a few occluding shapes break the periodicity (keeps some unambiguous correspondences)
    img = img.astype(np.uint8)
    for _ in range(int(rng.integers(2, 6))):
        cv2.circle(img, tuple(int(v) for v in rng.integers(0, size, 2)), int(rng.integers(4, size // 8)),
                   _color(rng), -1)
    return img


PROCEDURAL = {"shapes": _shapes, "dead_leaves": _dead_leaves, "noise": _noise, "gratings": _gratings}


def procedural_image(kind: str, rng: np.random.Generator, size: int) -> np.ndarray:
    """A random RGB uint8 (size, size) image of the given kind, with mild blur and noise."""
    img = PROCEDURAL[kind](rng, size)
    if rng.uniform() < 0.7:
        img = cv2.GaussianBlur(img, (0, 0), rng.uniform(0.3, 1.2))
    noise = rng.normal(0, rng.uniform(0, 4), img.shape)
    return np.clip(img + noise, 0, 255).astype(np.uint8)


# ----------------------------------------------------------------------------------------------------
# pairs
# ----------------------------------------------------------------------------------------------------


def rotation_about_center(theta_deg: float, size: int) -> np.ndarray:
    c = (size - 1) / 2
    t = np.radians(theta_deg)
    R = np.array([[np.cos(t), -np.sin(t), 0], [np.sin(t), np.cos(t), 0], [0, 0, 1.0]])
    C = np.array([[1, 0, c], [0, 1, c], [0, 0, 1.0]])
    return C @ R @ np.linalg.inv(C)


class PairDataset:
    """``dataset[i]`` -> dict of numpy arrays (see the module docstring); deterministic in (seed, i)."""

    def __init__(self, conf: dict | None = None, seed: int = 0):
        unknown = set(conf or {}) - set(DEFAULT_DATA_CONF)
        if unknown:
            raise ValueError(f"data: unknown configuration keys {sorted(unknown)}")
        self.conf = c = {**DEFAULT_DATA_CONF, **(conf or {})}
        self.seed = int(seed)
        self.corpus_dir = find_corpus(c["corpus"])
        self.images, self.manifest = [], []
        if self.corpus_dir is not None:
            if not (self.corpus_dir / "MANIFEST.tsv").is_file():
                raise FileNotFoundError(f"training corpus {self.corpus_dir} has no MANIFEST.tsv")
            self.images, self.manifest = load_corpus(self.corpus_dir, c["corpus_max_side"], c["corpus_limit"])
        self.procedural_ratio = 1.0 if not self.images else float(c["procedural_ratio"])
        for k in c["procedural_kinds"]:
            if k not in PROCEDURAL:
                raise ValueError(f"unknown procedural image kind {k!r}; known: {sorted(PROCEDURAL)}")

    def describe_sources(self) -> dict:
        """Data sources for the training summary (corpus path, counts per licence, procedural kinds)."""
        licences: dict[str, int] = {}
        for r in self.manifest:
            licences[r["licence"]] = licences.get(r["licence"], 0) + 1
        return {"corpus": str(self.corpus_dir) if self.corpus_dir else None, "corpus_images": len(self.images),
                "corpus_licences": licences, "procedural_ratio": self.procedural_ratio,
                "procedural_kinds": list(self.conf["procedural_kinds"])}

    def _region(self, rng: np.random.Generator, side: int) -> tuple[np.ndarray, str]:
        """An RGB (side, side) region: a random-scale crop of a corpus image, or a procedural image."""
        if rng.uniform() < self.procedural_ratio:
            kind = str(rng.choice(self.conf["procedural_kinds"]))
            return procedural_image(kind, rng, side), kind
        i = int(rng.integers(len(self.images)))
        img = self.images[i]
        h, w = img.shape[:2]
        short = min(h, w)
        if short < side:  # upscale small images
            s = side / short
            img = cv2.resize(img, (max(side, round(w * s)), max(side, round(h * s))), interpolation=cv2.INTER_LINEAR)
            h, w = img.shape[:2]
            short = min(h, w)
        crop = int(rng.uniform(side, max(side, short * 0.9) + 1)) if short > side else side
        x0, y0 = int(rng.integers(0, w - crop + 1)), int(rng.integers(0, h - crop + 1))
        region = img[y0:y0 + crop, x0:x0 + crop]
        if crop != side:
            region = cv2.resize(region, (side, side), interpolation=cv2.INTER_AREA)
        if rng.uniform() < 0.5:
            region = region[:, ::-1]
        return np.ascontiguousarray(region), "corpus"

    def __getitem__(self, index: int) -> dict:
        c = self.conf
        rng = np.random.default_rng([self.seed, int(index)])
        S = int(c["crop_size"])
        side = int(round(S * c["context"]))
        off = (side - S) / 2
        region, source = self._region(rng, side)
        rotation = bool(rng.uniform() < c["p_rotation"])
        illumination = bool(rng.uniform() < c["p_illumination"])
        H0 = sample_homography(rng, S, S, max_rotation_deg=c["base_rotation_deg"], scale_range=tuple(c["scale_range"]),
                               max_perspective=c["max_perspective"], max_translation=c["max_translation"])
        theta = 0.0
        if rotation:
            lo, hi = c["rotation_deg"]
            if c["rotation_ramp_samples"]:
                hi = lo + (hi - lo) * min(1.0, index / c["rotation_ramp_samples"])
            theta = float(rng.uniform(lo, hi) * rng.choice([-1, 1]))
        H_AB = rotation_about_center(theta, S) @ H0
        T = np.array([[1, 0, -off], [0, 1, -off], [0, 0, 1.0]])  # region pixels -> A pixels
        A = region[int(off):int(off) + S, int(off):int(off) + S]
        ones = np.ones(region.shape[:2], np.uint8)

        def warp(H):
            M = H @ T
            img = cv2.warpPerspective(region, M, (S, S), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
            valid = cv2.warpPerspective(ones, M, (S, S), flags=cv2.INTER_NEAREST, borderMode=cv2.BORDER_CONSTANT)
            return img, cv2.erode(valid, np.ones((3, 3), np.uint8)).astype(bool)

        B, valid_B = warp(H_AB)
        B0, valid_B0 = (B.copy(), valid_B.copy()) if not rotation else warp(H0)
        photometric = "none"
        if illumination:
            photometric = "night" if rng.uniform() < c["night_fraction"] else "illumination"
            B = apply_photometric(B, photometric, rng)
        gray = lambda im: cv2.cvtColor(np.ascontiguousarray(im), cv2.COLOR_RGB2GRAY)  # noqa: E731
        return {"A": gray(A), "B": gray(B), "B0": gray(B0), "H_AB": H_AB.astype(np.float32),
                "H_AB0": H0.astype(np.float32), "valid_B": valid_B, "valid_B0": valid_B0, "rotation": rotation,
                "illumination": illumination, "photometric": photometric, "angle": theta, "source": source}


def collate(samples: list[dict]):
    """List of samples -> dict of torch tensors: images (B,1,S,S) float in [0,1] for A, B, B0; H_AB, H_AB0
    (B,3,3); valid_B, valid_B0 (B,S,S) bool; rotation, illumination (B,) bool."""
    import torch

    img = lambda k: torch.from_numpy(np.stack([s[k] for s in samples]))[:, None].float() / 255.0  # noqa: E731
    out = {k: img(k) for k in ("A", "B", "B0")}
    for k in ("H_AB", "H_AB0"):
        out[k] = torch.from_numpy(np.stack([s[k] for s in samples]))
    for k in ("valid_B", "valid_B0"):
        out[k] = torch.from_numpy(np.stack([s[k] for s in samples]))
    for k in ("rotation", "illumination"):
        out[k] = torch.tensor([s[k] for s in samples], dtype=torch.bool)
    return out
