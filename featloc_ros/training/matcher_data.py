"""Training pairs for the matcher: FeatLoc features of the homographic pairs of ``data.PairDataset`` (same
images, warps, rotations and photometric changes as the descriptor training) with exact ground-truth
correspondences from the homography, mixed with non-planar pairs rendered with depth
(``rendered_pairs.RenderedPairs``: rooms textured with the same corpus images; correspondences from depth and
poses, occluded points unmatched).

Ground truth per keypoint (as SuperGlue / LightGlue): a keypoint of A whose projection into B has a mutual
nearest keypoint of B closer than ``match_radius`` px is matched to it; one whose nearest keypoint of B is
farther than ``unmatched_radius`` (or whose projection leaves B) is unmatched (-1); the ones in between, and the
padding of the fixed-k detector, are ignored (-2). Symmetrically for B.
"""

from __future__ import annotations

import numpy as np
import torch

from .data import PairDataset, collate
from .losses import lookup_mask, warp_points
from .rendered_pairs import project

DEFAULT_MATCHER_DATA_CONF = {
    "pairs": {},  # data.PairDataset settings (crop_size, p_rotation, p_illumination, ...)
    "features": "models/featloc_v4.pt",  # frozen FeatLoc weights (architecture file next to them; relative paths
    #                                      are relative to the repository root)
    "max_keypoints": 256,  # per image (fixed k; padding flagged invalid)
    "detection_threshold": 0.01,
    "match_radius": 3.0,  # px
    "unmatched_radius": 5.0,  # px
    "near_miss_radius": 0.0,  # px; > 0: a keypoint without a true match whose nearest keypoint of the other image is
    #                           within this radius of its projection is a near miss (batch "near0" / "near1": the
    #                           keypoints a matcher could pair a few pixels off; loss.weights.near_miss)
    "rendered_fraction": 0.0,  # share of the samples that are rendered non-planar pairs (0: homographic only)
    "rendered": {},  # rendered_pairs.RenderedPairs settings (rooms, baseline, roll, night, ...)
    "rendered_pool": 600,  # distinct rendered pairs (sample i uses pair i mod pool; each is rendered once, ~0.5 s,
    #                        and kept in memory)
}

IGNORE, UNMATCHED = -2, -1


def ground_truth_matches(kp0: torch.Tensor, kp1: torch.Tensor, valid0: torch.Tensor, valid1: torch.Tensor,
                         H: torch.Tensor, inside1: torch.Tensor, inside0: torch.Tensor, match_radius: float,
                         unmatched_radius: float) -> tuple[torch.Tensor, torch.Tensor]:
    """kp0 (B,N,2), kp1 (B,M,2) pixels; valid0/1 (B,N)/(B,M) bool; H (B,3,3) maps image 0 to image 1;
    inside1 (B,N) bool: the projection of kp0 lies in image 1's valid area; inside0 (B,M) alike for kp1.
    -> gt0 (B,N), gt1 (B,M) int64: index of the match in the other image, UNMATCHED (-1) or IGNORE (-2)."""
    return ground_truth_from_projections(kp0, kp1, warp_points(H, kp0), warp_points(torch.linalg.inv(H), kp1),
                                         valid0, valid1, inside1, inside0, match_radius, unmatched_radius)


def ground_truth_from_projections(kp0: torch.Tensor, kp1: torch.Tensor, p0: torch.Tensor, p1: torch.Tensor,
                                  valid0: torch.Tensor, valid1: torch.Tensor, inside1: torch.Tensor,
                                  inside0: torch.Tensor, match_radius: float, unmatched_radius: float
                                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """As ``ground_truth_matches`` with the projections given: p0 (B,N,2) kp0 in image 1, p1 (B,M,2) kp1 in
    image 0 (any geometry: homography, or depth and poses); inside1 / inside0 say where they are valid
    (in the image and, with depth, not occluded)."""
    big = 1e6
    d01 = torch.cdist(p0, kp1) + (~valid1)[:, None, :] * big + (~valid0)[:, :, None] * big  # (B,N,M), image 1 px
    d10 = torch.cdist(kp0, p1) + (~valid1)[:, None, :] * big + (~valid0)[:, :, None] * big  # image 0 px
    dist0, j = d01.min(2)
    dist1, i = d10.min(1)
    n, m = kp0.shape[1], kp1.shape[1]
    mutual0 = torch.gather(i, 1, j) == torch.arange(n)[None]
    mutual1 = torch.gather(j, 1, i) == torch.arange(m)[None]

    def label(dist, nearest, mutual, valid, inside):
        out = torch.full_like(nearest, IGNORE)
        out = torch.where((dist > unmatched_radius) | ~inside, torch.full_like(nearest, UNMATCHED), out)
        out = torch.where(mutual & (dist < match_radius) & inside, nearest, out)
        return torch.where(valid, out, torch.full_like(nearest, IGNORE))

    return label(dist0, j, mutual0, valid0, inside1), label(dist1, i, mutual1, valid1, inside0)


def near_misses(kp0, kp1, p0, p1, valid0, valid1, inside1, inside0, gt0, gt1, radius: float
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """Keypoints without a true match (gt < 0) whose projection (p0: kp0 in image 1, p1: kp1 in image 0) has a
    valid keypoint of the other image within ``radius`` px -> near0 (B,N), near1 (B,M) bool (all False for
    radius <= 0)."""
    if radius <= 0:
        return torch.zeros_like(valid0), torch.zeros_like(valid1)
    big = 1e6
    d0 = (torch.cdist(p0, kp1) + (~valid1)[:, None, :] * big).amin(2)
    d1 = (torch.cdist(kp0, p1) + (~valid0)[:, :, None] * big).amin(1)
    return (valid0 & inside1 & (gt0 < 0) & (d0 <= radius)), (valid1 & inside0 & (gt1 < 0) & (d1 <= radius))


class MatcherPairs:
    """``pairs.batch(indices)`` -> the matcher's input dict (keypoints, local and meta descriptors, image sizes,
    validity) and ground truth ``gt0``, ``gt1``; deterministic in (seed, index)."""

    def __init__(self, conf: dict | None = None, seed: int = 0):
        from ..features.featloc import resolve_model_file
        from ..nn.featloc_net import FeatLocNet, load_architecture

        unknown = set(conf or {}) - set(DEFAULT_MATCHER_DATA_CONF)
        if unknown:
            raise ValueError(f"matcher data: unknown configuration keys {sorted(unknown)}")
        self.conf = c = {**DEFAULT_MATCHER_DATA_CONF, **(conf or {})}
        self.pairs = PairDataset({**c["pairs"]}, seed)
        self.seed = int(seed)
        self.rendered = None
        if float(c["rendered_fraction"]) > 0:
            from .rendered_pairs import RenderedPairs

            self.rendered = RenderedPairs(c["rendered"], self.pairs.images, self.pairs.conf["crop_size"], seed)
            self._rendered_cache: dict[int, dict] = {}
        self.weights = weights = resolve_model_file(str(c["features"]))  # the trainer makes it absolute
        net = FeatLocNet({**load_architecture(weights), "max_keypoints": int(c["max_keypoints"]),
                          "detection_threshold": float(c["detection_threshold"])})
        net.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
        self.net = net.eval().requires_grad_(False)

    def describe_sources(self) -> dict:
        out = {**self.pairs.describe_sources(), "features": str(self.weights),
               "max_keypoints": int(self.conf["max_keypoints"])}
        if self.rendered is not None:
            out["rendered"] = {"fraction": float(self.conf["rendered_fraction"]), **self.rendered.conf,
                               "pool": int(self.conf["rendered_pool"]),
                               "textures": "training corpus images" if self.pairs.images else "procedural images"}
        return out

    def is_rendered(self, index: int) -> bool:
        """Sample ``index`` is a rendered non-planar pair (a seeded draw with probability rendered_fraction)."""
        f = float(self.conf["rendered_fraction"])
        return f > 0 and bool(np.random.default_rng([self.seed, 31, int(index)]).uniform() < f)

    def _rendered_pair(self, index: int) -> dict:
        key = int(index) % max(1, int(self.conf["rendered_pool"]))
        if key not in self._rendered_cache:
            self._rendered_cache[key] = self.rendered[key]
        return self._rendered_cache[key]

    def _sample(self, index: int) -> dict:
        """One sample as images A, B (uint8) and the geometry: ("homography", PairDataset sample) or
        ("depth", RenderedPairs sample)."""
        if self.is_rendered(index):
            r = self._rendered_pair(index)
            return {"A": r["A"], "B": r["B"], "geometry": "depth", "sample": r}
        s = self.pairs[index]
        return {"A": s["A"], "B": s["B"], "geometry": "homography", "sample": s}

    @torch.no_grad()
    def batch(self, indices: list[int]) -> dict[str, torch.Tensor]:
        c = self.conf
        samples = [self._sample(i) for i in indices]
        n = len(indices)
        img = lambda k: torch.from_numpy(np.stack([s[k] for s in samples]))[:, None].float() / 255.0  # noqa: E731
        A, B = img("A"), img("B")
        out = self.net({"image": torch.cat([A, B])})
        size = torch.tensor([A.shape[-1], A.shape[-2]], dtype=torch.float32).expand(n, 2)
        kp, valid = out["keypoints"], out["valid"]
        kp0, kp1, v0, v1 = kp[:n], kp[n:], valid[:n], valid[n:]
        p0, p1 = torch.zeros_like(kp0), torch.zeros_like(kp1)  # projections into the other image
        inside1, inside0 = torch.zeros_like(v0), torch.zeros_like(v1)
        homographic = [i for i, s in enumerate(samples) if s["geometry"] == "homography"]
        if homographic:
            b = collate([samples[i]["sample"] for i in homographic])
            h = torch.tensor(homographic)
            H, k0, k1 = b["H_AB"], kp0[h], kp1[h]
            p0[h], p1[h] = warp_points(H, k0), warp_points(torch.linalg.inv(H), k1)
            inside1[h] = lookup_mask(b["valid_B"], p0[h])
            inside0[h] = lookup_mask(torch.ones_like(b["valid_B"]), p1[h])  # A: the unwarped crop, all valid
        for i, s in enumerate(samples):
            if s["geometry"] == "depth":
                r, tol = s["sample"], self.rendered.conf["depth_tolerance"]
                q0, vis1 = project(kp0[i].numpy(), r["depth_A"], r["T_A"], r["T_B"], r["K"], r["depth_B"], tol)
                q1, vis0 = project(kp1[i].numpy(), r["depth_B"], r["T_B"], r["T_A"], r["K"], r["depth_A"], tol)
                p0[i], p1[i] = torch.from_numpy(q0), torch.from_numpy(q1)
                inside1[i], inside0[i] = torch.from_numpy(vis1), torch.from_numpy(vis0)
        gt0, gt1 = ground_truth_from_projections(kp0, kp1, p0, p1, v0, v1, inside1, inside0, c["match_radius"],
                                                 c["unmatched_radius"])
        near0, near1 = near_misses(kp0, kp1, p0, p1, v0, v1, inside1, inside0, gt0, gt1, float(c["near_miss_radius"]))
        return {"keypoints0": kp0, "keypoints1": kp1, "valid0": v0, "valid1": v1,
                "image_size0": size, "image_size1": size, "near0": near0, "near1": near1,
                "local0": out["local"][:n], "local1": out["local"][n:], "meta0": out["meta"][:n],
                "meta1": out["meta"][n:], "gt0": gt0, "gt1": gt1,
                "rendered": torch.tensor([s["geometry"] == "depth" for s in samples])}

