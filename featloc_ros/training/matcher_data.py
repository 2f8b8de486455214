"""Training pairs for the matcher: FeatLoc features of the homographic pairs of ``data.PairDataset`` (same
images, warps, rotations and photometric changes as the descriptor training) and exact ground-truth
correspondences from the homography.

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

DEFAULT_MATCHER_DATA_CONF = {
    "pairs": {},  # data.PairDataset settings (crop_size, p_rotation, p_illumination, ...)
    "features": "models/featloc_v4.pt",  # frozen FeatLoc weights (architecture file next to them; relative paths
    #                                      are relative to the repository root)
    "max_keypoints": 256,  # per image (fixed k; padding flagged invalid)
    "detection_threshold": 0.01,
    "match_radius": 3.0,  # px
    "unmatched_radius": 5.0,  # px
}

IGNORE, UNMATCHED = -2, -1


def ground_truth_matches(kp0: torch.Tensor, kp1: torch.Tensor, valid0: torch.Tensor, valid1: torch.Tensor,
                         H: torch.Tensor, inside1: torch.Tensor, inside0: torch.Tensor, match_radius: float,
                         unmatched_radius: float) -> tuple[torch.Tensor, torch.Tensor]:
    """kp0 (B,N,2), kp1 (B,M,2) pixels; valid0/1 (B,N)/(B,M) bool; H (B,3,3) maps image 0 to image 1;
    inside1 (B,N) bool: the projection of kp0 lies in image 1's valid area; inside0 (B,M) alike for kp1.
    -> gt0 (B,N), gt1 (B,M) int64: index of the match in the other image, UNMATCHED (-1) or IGNORE (-2)."""
    p0 = warp_points(H, kp0)  # in image 1
    p1 = warp_points(torch.linalg.inv(H), kp1)  # in image 0
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
        self.weights = weights = resolve_model_file(str(c["features"]))  # the trainer makes it absolute
        net = FeatLocNet({**load_architecture(weights), "max_keypoints": int(c["max_keypoints"]),
                          "detection_threshold": float(c["detection_threshold"])})
        net.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
        self.net = net.eval().requires_grad_(False)

    def describe_sources(self) -> dict:
        return {**self.pairs.describe_sources(), "features": str(self.weights),
                "max_keypoints": int(self.conf["max_keypoints"])}

    @torch.no_grad()
    def batch(self, indices: list[int]) -> dict[str, torch.Tensor]:
        c = self.conf
        b = collate([self.pairs[i] for i in indices])
        n = len(indices)
        out = self.net({"image": torch.cat([b["A"], b["B"]])})
        size = torch.tensor([b["A"].shape[-1], b["A"].shape[-2]], dtype=torch.float32).expand(n, 2)
        kp, valid = out["keypoints"], out["valid"]
        kp0, kp1, v0, v1 = kp[:n], kp[n:], valid[:n], valid[n:]
        inside1 = lookup_mask(b["valid_B"], warp_points(b["H_AB"], kp0))
        all_valid_a = torch.ones_like(b["valid_B"])  # A is the unwarped crop: every pixel valid
        inside0 = lookup_mask(all_valid_a, warp_points(torch.linalg.inv(b["H_AB"]), kp1))
        gt0, gt1 = ground_truth_matches(kp0, kp1, v0, v1, b["H_AB"], inside1, inside0, c["match_radius"],
                                        c["unmatched_radius"])
        return {"keypoints0": kp0, "keypoints1": kp1, "valid0": v0, "valid1": v1,
                "image_size0": size, "image_size1": size,
                "local0": out["local"][:n], "local1": out["local"][n:], "meta0": out["meta"][:n],
                "meta1": out["meta"][n:], "gt0": gt0, "gt1": gt1, "H_AB": b["H_AB"],
                "rotation": b["rotation"], "illumination": b["illumination"]}

