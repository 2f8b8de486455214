"""FeatLocNet: keypoints, four invariance-specific local descriptors and meta descriptors that select
the invariance per keypoint pair (one readable file, in the style of LightGlue's ``lightglue.py``).

Architecture (channels for the default configuration; strides relative to the input image):

    image (B,1,H,W) in [0,1] -> per-image normalisation (zero mean, unit std; ``normalize_input``)
      -> Backbone (bottom-up): c1 (16, 1/2), c2 (32, 1/4), c3 (64, 1/8), c4 (128, 1/16)
         depthwise-separable 3x3 blocks, strided convolutions for downsampling
      -> FPN (top-down + lateral 1x1): p3 (64, 1/8), p2 (48, 1/4)
      -> KeypointHead(c1, p2): full-resolution score map (pixel shuffle of a 1/2-resolution map; v4
         ``detector_head: full``: FullResolutionKeypointHead, scored at full resolution from the upsampled
         context and low-level maps, so the keypoints follow sub-pixel shifts),
         optional Gaussian blur of the score map (``score_blur``), NMS by max-pooling, an optional edge test
         on the maxima (``edge_ratio``, as SIFT's), top-k (fixed k +
         validity mask, static output shapes), optional soft-argmax refinement of each keypoint in its 3x3
         window (``subpixel_temperature``; off by default), and a constant offset added to the output
         keypoints (``keypoint_offset``: the detector's measured shift); optionally (``keypoint_refiner``, v10)
         a learned correction of each keypoint from its oriented 9x9 neighbourhood (KeypointRefiner)
      -> 4 DescriptorHeads(p2): semi-dense local descriptors l_s at 1/4 (D=64 each), one per invariance
         kind s in KINDS = (rv_iv, ri_iv, rv_ii, ri_ii): rotation variant/invariant x illumination
         variant/invariant; sampled at keypoints (bilinear grid_sample) and L2-normalised
         With conf ``steered_kinds`` (v3: ri_iv, ri_ii) those heads are SteeredDescriptorHeads instead: each
         keypoint gets an orientation (dominant gradient direction, closed-form histogram as in SIFT), and the
         head samples low-level maps (blurred intensities, gradients in the keypoint frame) on an 8x8 grid and
         its own learned 1/4 features on a 4x4 grid, both turned by that orientation, then an MLP: rotation
         invariant by construction (exactly for quarter turns); patch-normalised for the ii kind
      -> MetaAttention(p3): one hand-written self-attention layer per kind (run in parallel), queries at
         1/8, keys/values average-pooled to 1/32 (global receptive field), giving meta descriptors m_s
         at 1/8 (Dm=16), sampled at keypoints, normalised and scaled by sqrt(tau) (learned temperature)

Invariance-selected distance between keypoints p (image 0) and q (image 1):

    w_s(p, q) = softmax_s( m_s(p) . m_s(q) )            (the scale sqrt(tau) is inside m_s)
    d(p, q)   = sum_s w_s(p, q) * || l_s(p) - l_s(q) ||  (in [0, 2]; matching similarity = -d)

Pixel convention: keypoints are (x, y) pixel coordinates with pixel centres at integers (OpenCV).
A cell c of a feature map of stride s is taken to be centred at pixel s*c + (s-1)/2 (``grid_sample`` with
``align_corners=False`` on a map that covers s*w_map pixels), for any image size (not only multiples of 16).

Inference samples the 1/4 descriptor trunk at the keypoints and applies each head's final 1x1 projection
to the N sampled vectors: bilinear sampling (with border padding, weights summing to 1) commutes with a
1x1 convolution, so this equals sampling the dense descriptor map, at a fraction of the cost.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from . import architecture

KINDS = ("rv_iv", "ri_iv", "rv_ii", "ri_ii")  # rotation variant/invariant x illumination variant/invariant


def kind_invariances(kind: str) -> tuple[bool, bool]:
    """(rotation invariant, illumination invariant) of a descriptor kind name."""
    return kind.startswith("ri"), kind.endswith("ii")


# ----------------------------------------------------------------------------------------------------
# building blocks
# ----------------------------------------------------------------------------------------------------


class ConvBNReLU(nn.Sequential):
    def __init__(self, cin: int, cout: int, kernel: int = 3, stride: int = 1, groups: int = 1):
        super().__init__(nn.Conv2d(cin, cout, kernel, stride, kernel // 2, groups=groups, bias=False),
                         nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class DWSeparable(nn.Sequential):
    """Depthwise 3x3 (optionally strided) + pointwise 1x1, each with BN + ReLU. (B,cin,H,W) -> (B,cout,H',W')."""

    def __init__(self, cin: int, cout: int, stride: int = 1):
        super().__init__(ConvBNReLU(cin, cin, 3, stride, groups=cin), ConvBNReLU(cin, cout, 1))


class Backbone(nn.Module):
    """Bottom-up pathway. image (B,1,H,W) -> [c1 (1/2), c2 (1/4), c3 (1/8), c4 (1/16)]."""

    def __init__(self, channels: tuple[int, int, int, int]):
        super().__init__()
        c1, c2, c3, c4 = channels
        self.stem = nn.Sequential(ConvBNReLU(1, c1, 3, 2), DWSeparable(c1, c1))
        self.stage2 = nn.Sequential(DWSeparable(c1, c2, 2), DWSeparable(c2, c2))
        self.stage3 = nn.Sequential(DWSeparable(c2, c3, 2), DWSeparable(c3, c3))
        self.stage4 = nn.Sequential(DWSeparable(c3, c4, 2), DWSeparable(c4, c4))

    def forward(self, image: torch.Tensor) -> list[torch.Tensor]:
        c1 = self.stem(image)
        c2 = self.stage2(c1)
        c3 = self.stage3(c2)
        c4 = self.stage4(c3)
        return [c1, c2, c3, c4]


def upsample_to(x: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    """Bilinear upsampling of x (B,C,h,w) to the spatial size of ref (B,*,H,W)."""
    return F.interpolate(x, size=ref.shape[-2:], mode="bilinear", align_corners=False)


class FPN(nn.Module):
    """Top-down pathway with lateral 1x1 connections. [c1..c4] -> p3 (B,Cp3,H/8,W/8), p2 (B,Cp2,H/4,W/4)."""

    def __init__(self, channels: tuple[int, int, int, int], p3_dim: int, p2_dim: int):
        super().__init__()
        _, c2, c3, c4 = channels
        self.lat4 = nn.Conv2d(c4, p3_dim, 1)
        self.lat3 = nn.Conv2d(c3, p3_dim, 1)
        self.smooth3 = DWSeparable(p3_dim, p3_dim)
        self.reduce3 = nn.Conv2d(p3_dim, p2_dim, 1)
        self.lat2 = nn.Conv2d(c2, p2_dim, 1)
        self.smooth2 = DWSeparable(p2_dim, p2_dim)

    def forward(self, feats: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        _, c2, c3, c4 = feats
        p3 = self.smooth3(self.lat3(c3) + upsample_to(self.lat4(c4), c3))
        p2 = self.smooth2(self.lat2(c2) + upsample_to(self.reduce3(p3), c2))
        return p3, p2


class KeypointHead(nn.Module):
    """Score logits at full resolution from c1 (1/2) and p2 (1/4):
    (B,C1,H/2,W/2), (B,Cp2,H/4,W/4) -> (B,1,2*(H/2),2*(W/2)) via a 4-channel map and pixel shuffle."""

    def __init__(self, c1: int, p2_dim: int):
        super().__init__()
        self.lat = nn.Conv2d(p2_dim, c1, 1)
        self.block = DWSeparable(c1, c1)
        self.out = nn.Conv2d(c1, 4, 1)

    def forward(self, c1: torch.Tensor, p2: torch.Tensor) -> torch.Tensor:
        x = self.block(c1 + upsample_to(self.lat(p2), c1))
        return F.pixel_shuffle(self.out(x), 2)


class FullResolutionKeypointHead(nn.Module):
    """Score logits computed at full resolution (v4): the learned 1/2-resolution context (c1 + p2, as in
    KeypointHead) squeezed to ``hidden`` channels and upsampled bilinearly, concatenated with full-resolution
    low-level maps (blurred intensities, gradients and their products), then pointwise + depthwise convolutions
    at full resolution. No pixel shuffle: every pixel is scored by the same function of its neighbourhood, so the
    score map follows sub-stride shifts of the image (a pixel-shuffle head scores the four pixels of a 2x2 cell
    with four different functions, and its peaks then sit on a 2-pixel lattice). The upsampled context is blurred
    (sigma 1 px: a 2-px periodic pattern is damped ~150x) so that the head cannot read the phase of the strided
    layers from it; the training adds a shift-equivariance loss (losses.shift_equivariance_loss).
    (B,C1,H/2,W/2), (B,Cp2,H/4,W/4), low (B,6,H,W) -> (B,1,H,W)."""

    low_channels = 9  # the 6 low-level maps + gx^2, gx*gy, gy^2 of the sigma-1 gradients

    def __init__(self, c1: int, p2_dim: int, hidden: int = 8):
        super().__init__()
        self.lat = nn.Conv2d(p2_dim, c1, 1)
        self.block = DWSeparable(c1, c1)
        self.squeeze = nn.Conv2d(c1, hidden, 1)
        self.fine = nn.Sequential(ConvBNReLU(hidden + self.low_channels, hidden, 1), DWSeparable(hidden, hidden),
                                  ConvBNReLU(hidden, hidden, 3, groups=hidden), nn.Conv2d(hidden, 1, 1))

    def forward(self, c1: torch.Tensor, p2: torch.Tensor, low: torch.Tensor) -> torch.Tensor:
        ctx = self.squeeze(self.block(c1 + upsample_to(self.lat(p2), c1)))
        ctx = gaussian_blur(upsample_to(ctx, low), 1.0)  # removes the 2-px periodic traces of the strided layers
        gx, gy = low[:, 2:3], low[:, 3:4]
        return self.fine(torch.cat([ctx, low, gx * gx, gx * gy, gy * gy], 1))


class DescriptorHead(nn.Module):
    """One local descriptor kind: trunk (depthwise 3x3 + pointwise, BN, ReLU) then a linear 1x1 projection.
    dense: (B,Cp2,h,w) -> (B,D,h,w) (unnormalised); ``project`` applies the projection to sampled (B,N,C)."""

    def __init__(self, p2_dim: int, dim: int):
        super().__init__()
        self.trunk = DWSeparable(p2_dim, p2_dim)
        self.proj = nn.Conv2d(p2_dim, dim, 1)

    def forward(self, p2: torch.Tensor) -> torch.Tensor:
        return self.proj(self.trunk(p2))

    def project(self, x: torch.Tensor) -> torch.Tensor:
        """(B,N,C) sampled trunk features -> (B,N,D) unnormalised descriptors (same as the 1x1 conv)."""
        return F.linear(x, self.proj.weight.flatten(1), self.proj.bias)


class SelfAttention(nn.Module):
    """One hand-written self-attention layer (no nn.MultiheadAttention, which does not export cleanly):
    queries at every cell of x (B,C,h,w); keys/values from x average-pooled by ``pool`` (global receptive
    field); out = proj([x, softmax(Q K^T / sqrt(d)) V]) -> (B,Dm,h,w) (raw meta descriptor map)."""

    def __init__(self, dim: int, attn_dim: int, out_dim: int, pool: int):
        super().__init__()
        self.pool = pool
        self.q = nn.Linear(dim, attn_dim)
        self.k = nn.Linear(dim, attn_dim)
        self.v = nn.Linear(dim, attn_dim)
        self.proj = nn.Sequential(nn.Linear(dim + attn_dim, dim), nn.ReLU(inplace=True), nn.Linear(dim, out_dim))
        self.scale = 1.0 / math.sqrt(attn_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        tokens = x.flatten(2).transpose(1, 2)  # (B, h*w, C)
        ctx = F.avg_pool2d(x, self.pool, self.pool).flatten(2).transpose(1, 2)  # (B, M, C)
        q, k, v = self.q(tokens), self.k(ctx), self.v(ctx)  # (B,hw,d), (B,M,d), (B,M,d)
        attn = torch.softmax(q @ k.transpose(1, 2) * self.scale, dim=-1)  # (B, hw, M)
        out = self.proj(torch.cat([tokens, attn @ v], dim=-1))  # (B, hw, Dm)
        return out.transpose(1, 2).reshape(b, -1, h, w)


class MetaAttention(nn.Module):
    """Parallel self-attention: one layer per invariance kind. p3 (B,C,h,w) -> list of 4 (B,Dm,h,w)."""

    def __init__(self, dim: int, attn_dim: int, out_dim: int, pool: int, num_kinds: int = 4):
        super().__init__()
        self.layers = nn.ModuleList([SelfAttention(dim, attn_dim, out_dim, pool) for _ in range(num_kinds)])

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return [layer(x) for layer in self.layers]


# ----------------------------------------------------------------------------------------------------
# detection and sampling
# ----------------------------------------------------------------------------------------------------


def simple_nms(scores: torch.Tensor, radius: int) -> torch.Tensor:
    """Keep local maxima of (B,1,H,W) scores in (2r+1)^2 windows (others set to 0)."""
    if radius <= 0:
        return scores
    k = 2 * radius + 1  # separable (1,k) then (k,1) max-pooling == k x k max-pooling, fewer comparisons
    local_max = F.max_pool2d(F.max_pool2d(scores, (1, k), 1, (0, radius)), (k, 1), 1, (radius, 0))
    return torch.where(scores == local_max, scores, torch.zeros_like(scores))


def border_mask(scores: torch.Tensor, border: int) -> torch.Tensor:
    """(B,1,H,W) scores with a ``border``-pixel frame set to 0 (works with dynamic H, W)."""
    if border <= 0:
        return scores
    h, w = scores.shape[-2:]
    ys = torch.arange(h, device=scores.device).view(h, 1)
    xs = torch.arange(w, device=scores.device).view(1, w)
    inside = (ys >= border) & (ys < h - border) & (xs >= border) & (xs < w - border)
    return scores * inside.to(scores.dtype)


def subpixel_offsets(scores: torch.Tensor, temperature: float) -> torch.Tensor:
    """Soft-argmax offsets in every 3x3 window: (B,1,H,W) scores in [0,1] -> (B,2,H,W) (dx, dy) in [-1, 1],
    sum_j softmax_j(s_j / T) * j over the window offsets j (two fixed 3x3 convolutions; exports to ONNX)."""
    e = torch.exp(scores / temperature)  # scores <= 1: no overflow for T >= 0.02
    r = torch.tensor([-1.0, 0.0, 1.0], dtype=scores.dtype, device=scores.device)
    kernels = torch.stack([r.view(1, 3).expand(3, 3), r.view(3, 1).expand(3, 3),
                           torch.ones(3, 3, dtype=scores.dtype, device=scores.device)])[:, None]  # (3,1,3,3)
    out = F.conv2d(e, kernels, padding=1)
    return out[:, :2] / out[:, 2:]


def peak_shape_mask(scores: torch.Tensor, max_ratio: float) -> torch.Tensor:
    """SIFT's edge test on a score map: (B,1,H,W) -> (B,1,H,W) bool, True where the 3x3 finite-difference Hessian
    has two principal curvatures of the same sign whose ratio is below ``max_ratio`` (trace^2 / det <
    (r + 1)^2 / r). A peak on a ridge (an edge) is sharp across it and flat along it, so its position along the
    ridge is poorly defined; the test rejects it (three fixed 3x3 convolutions; exports to ONNX)."""
    if max_ratio < 1:
        raise ValueError(f"peak_shape_mask: max_ratio must be >= 1, got {max_ratio}")
    z = [0.0, 0.0, 0.0]
    kernels = torch.tensor([[z, [1.0, -2.0, 1.0], z],  # d2/dx2
                            [[0.0, 1.0, 0.0], [0.0, -2.0, 0.0], [0.0, 1.0, 0.0]],  # d2/dy2
                            [[0.25, 0.0, -0.25], z, [-0.25, 0.0, 0.25]]],  # d2/dxdy
                           dtype=scores.dtype, device=scores.device)[:, None]  # (3,1,3,3)
    hess = F.conv2d(scores, kernels, padding=1)
    dxx, dyy, dxy = hess[:, 0:1], hess[:, 1:2], hess[:, 2:3]
    det = dxx * dyy - dxy * dxy
    trace = dxx + dyy
    return (det > 0) & (trace * trace * max_ratio < (max_ratio + 1) ** 2 * det)


def detect_keypoints(scores: torch.Tensor, k: int, nms_radius: int, threshold: float, border: int,
                     subpixel_temperature: float = 0.0, blur: float = 0.0, edge_ratio: float = 0.0
                     ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Fixed-k detection: (B,1,H,W) scores in [0,1] -> keypoints (B,k,2) float (x, y) pixels,
    scores (B,k) (descending), valid (B,k) bool (score > threshold after NMS). Needs H*W >= k.
    blur > 0: the scores are first blurred (Gaussian, sigma px; the returned scores are the blurred ones).
    edge_ratio > 0: maxima that fail the edge test (``peak_shape_mask``) are dropped after NMS, and the next
    strongest maxima take their places.
    subpixel_temperature > 0: each keypoint moves by the soft-argmax of the scores in its 3x3 window."""
    if blur > 0:
        scores = gaussian_blur(scores, blur)
    s = simple_nms(border_mask(scores, border), nms_radius)
    if edge_ratio > 0:
        s = torch.where(peak_shape_mask(scores, edge_ratio), s, torch.zeros_like(s))
    h, w = s.shape[-2:]
    top, idx = torch.topk(s.flatten(1), k, dim=1)
    # (x, y) by gathering from a coordinate grid: ``idx % w`` with a symbolic w does not export to ONNX
    ys, xs = torch.meshgrid(torch.arange(h, device=s.device), torch.arange(w, device=s.device), indexing="ij")
    grid = torch.stack([xs, ys], dim=-1).reshape(-1, 2).to(scores.dtype)  # (H*W, 2)
    kpts = grid[idx]
    if subpixel_temperature > 0:
        off = subpixel_offsets(scores, subpixel_temperature).flatten(2).transpose(1, 2)  # (B, H*W, 2)
        kpts = kpts + torch.gather(off, 1, idx[..., None].expand(-1, -1, 2))
    return kpts, top, top > threshold


def sample_map(fmap: torch.Tensor, keypoints: torch.Tensor, stride: int) -> torch.Tensor:
    """Bilinear samples of a stride-``stride`` map (B,C,h,w) at pixel keypoints (B,N,2) -> (B,N,C).
    Cell c is centred at pixel stride*c + (stride-1)/2; border padding (weights always sum to 1).
    PyTorch runs ``grid_sample``; the ONNX export gets ``sample_map_by_gathers`` (the same numbers): ONNX
    Runtime's GridSample kernel is slow for the many sample points of the steered heads, PyTorch's is fast."""
    if torch.onnx.is_in_onnx_export():
        return sample_map_by_gathers(fmap, keypoints, stride)
    h, w = fmap.shape[-2:]
    gx = (keypoints[..., 0] + 0.5) / (w * stride) * 2 - 1
    gy = (keypoints[..., 1] + 0.5) / (h * stride) * 2 - 1
    grid = torch.stack([gx, gy], dim=-1)
    out = F.grid_sample(fmap, grid[:, None], mode="bilinear", padding_mode="border", align_corners=False)
    return out[:, :, 0].transpose(1, 2)


def sample_map_by_gathers(fmap: torch.Tensor, keypoints: torch.Tensor, stride: int) -> torch.Tensor:
    """``sample_map`` as four gathers of the flattened map and their weighted sum (what the ONNX export runs:
    about 7% less extraction time in ONNX Runtime than its GridSample; in PyTorch grid_sample is faster)."""
    b, c, h, w = fmap.shape
    n = keypoints.shape[1]
    u = ((keypoints[..., 0] + 0.5) / stride - 0.5).clamp(min=0, max=w - 1)  # map coordinates, border padding
    v = ((keypoints[..., 1] + 0.5) / stride - 0.5).clamp(min=0, max=h - 1)
    u0, v0 = u.floor(), v.floor()
    fu, fv = u - u0, v - v0  # (B,N)
    x0, y0 = u0.long(), v0.long()
    x1, y1 = (x0 + 1).clamp(max=w - 1), (y0 + 1).clamp(max=h - 1)
    idx = torch.stack([y0 * w + x0, y0 * w + x1, y1 * w + x0, y1 * w + x1], -1).reshape(b, 1, n * 4)
    corners = torch.gather(fmap.reshape(b, c, h * w), 2, idx.expand(b, c, n * 4)).reshape(b, c, n, 4)
    weights = torch.stack([(1 - fu) * (1 - fv), fu * (1 - fv), (1 - fu) * fv, fu * fv], -1)  # (B,N,4)
    return (corners * weights[:, None]).sum(-1).transpose(1, 2)


def normalize_meta(raw: torch.Tensor, log_tau: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """Meta descriptors: L2-normalised and scaled by sqrt(tau), so that m.m' = tau * cos."""
    tau = log_tau.exp().clamp(1.0, 50.0)
    return F.normalize(raw, dim=dim) * tau.sqrt()


# ----------------------------------------------------------------------------------------------------
# steered (rotation-invariant) descriptors: keypoint orientation + patch sampled in the keypoint's frame
# ----------------------------------------------------------------------------------------------------


def gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of (B,C,H,W) with reflect padding (radius ceil(3 sigma))."""
    r = max(1, math.ceil(3 * sigma))
    t = torch.arange(-r, r + 1, dtype=x.dtype, device=x.device)
    k = torch.exp(-0.5 * (t / sigma) ** 2)
    k = k / k.sum()
    c = x.shape[1]  # contiguous kernels (.repeat, not .expand): an expanded weight takes a slow conv path
    x = F.conv2d(F.pad(x, (r, r, 0, 0), mode="reflect"), k.view(1, 1, 1, -1).repeat(c, 1, 1, 1), groups=c)
    return F.conv2d(F.pad(x, (0, 0, r, r), mode="reflect"), k.view(1, 1, -1, 1).repeat(c, 1, 1, 1), groups=c)


def image_gradients(x: torch.Tensor) -> torch.Tensor:
    """Central differences of (B,1,H,W) -> (B,2,H,W) (d/dx, d/dy), replicate padding at the border."""
    xp = F.pad(x, (1, 1, 1, 1), mode="replicate")
    gx = 0.5 * (xp[:, :, 1:-1, 2:] - xp[:, :, 1:-1, :-2])
    gy = 0.5 * (xp[:, :, 2:, 1:-1] - xp[:, :, :-2, 1:-1])
    return torch.cat([gx, gy], 1)


def low_level_maps(gray: torch.Tensor, sigmas: tuple[float, float]) -> torch.Tensor:
    """Rotation-covariant low-level maps of the (normalised) grey image (B,1,H,W) -> (B,6,H,W):
    [I_s1, I_s2, dI_s1/dx, dI_s1/dy, dI_s2/dx, dI_s2/dy] (Gaussian blur at sigmas s1 < s2, full resolution)."""
    i1, i2 = gaussian_blur(gray, sigmas[0]), gaussian_blur(gray, sigmas[1])
    return torch.cat([i1, i2, image_gradients(i1), image_gradients(i2)], 1)


def sample_points(fmap: torch.Tensor, points: torch.Tensor, stride: int) -> torch.Tensor:
    """Bilinear samples of a stride-``stride`` map (B,C,h,w) at pixel points (B,N,P,2) -> (B,N,P,C)
    (same cell convention and border padding as ``sample_map``)."""
    b, n, p, _ = points.shape
    return sample_map(fmap, points.reshape(b, n * p, 2), stride).reshape(b, n, p, -1)


def grid_offsets(size: int, spacing: float, device=None, dtype=torch.float32) -> torch.Tensor:
    """(size*size, 2) offsets (u, v) of a square grid centred on 0 with the given spacing (row-major)."""
    t = (torch.arange(size, device=device, dtype=dtype) - (size - 1) / 2) * spacing
    v, u = torch.meshgrid(t, t, indexing="ij")
    return torch.stack([u, v], -1).reshape(-1, 2)


def keypoint_orientation(grad: torch.Tensor, keypoints: torch.Tensor, radius: float, bins: int = 36,
                         step: float = 2.0) -> torch.Tensor:
    """Dominant gradient orientation around each keypoint (as SIFT's orientation assignment, in closed form).
    grad (B,2,H,W) image gradient; keypoints (B,N,2) -> (B,N,2) unit (cos phi, sin phi).
    A histogram of the gradient angles over a grid of step ``step`` px within radius r (Gaussian window of
    sigma r/2; the gradient should be blurred at a scale ~ step),
    weighted by magnitude and soft-assigned to ``bins`` directions with a von Mises kernel (no atan2: the
    cosine to each bin direction comes from a dot product); phi = argmax bin refined by a parabola through
    it and its two neighbours. Turning the image turns phi with it (up to sampling)."""
    m = int(radius // step)  # the grid points of the disc (a constant list: no data-dependent shapes in export)
    disc = [(i * step, j * step) for j in range(-m, m + 1) for i in range(-m, m + 1)
            if (i * i + j * j) * step * step <= radius * radius]
    off = torch.tensor(disc, device=keypoints.device, dtype=keypoints.dtype)  # (P, 2)
    wgt = torch.exp(-0.5 * (off * off).sum(-1) / (radius / 2) ** 2)
    g = sample_points(grad, keypoints[:, :, None] + off, 1)  # (B,N,P,2)
    mag = (g * g).sum(-1, keepdim=True).sqrt()
    ang = torch.arange(bins, device=g.device, dtype=g.dtype) * (2 * math.pi / bins)
    dirs = torch.stack([torch.cos(ang), torch.sin(ang)], -1)  # (K, 2)
    cos = (g @ dirs.t()) / (mag + 1e-8)  # (B,N,P,K) cosine between each gradient and each bin direction
    kappa = 1.0 / (2 * math.pi / bins) ** 2  # von Mises concentration ~ one bin width
    hist = (torch.exp(kappa * (cos - 1)) * (mag * wgt[:, None])).sum(2)  # (B,N,K)
    k0 = hist.argmax(-1, keepdim=True)
    hm = torch.gather(hist, -1, (k0 - 1) % bins)
    h0 = torch.gather(hist, -1, k0)
    hp = torch.gather(hist, -1, (k0 + 1) % bins)
    den = hm - 2 * h0 + hp
    delta = torch.where(den.abs() > 1e-12, 0.5 * (hm - hp) / torch.where(den.abs() > 1e-12, den, torch.ones_like(den)),
                        torch.zeros_like(den)).clamp(-0.5, 0.5)
    phi = ((k0.to(g.dtype) + delta) * (2 * math.pi / bins))[..., 0]
    return torch.stack([torch.cos(phi), torch.sin(phi)], -1)


def steer_points(keypoints: torch.Tensor, frame: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
    """Points of a pattern in each keypoint's frame: keypoints (B,N,2), frame (B,N,2) (cos, sin),
    offsets (P,2) (u, v) -> (B,N,P,2) pixels p + u * (cos, sin) + v * (-sin, cos)."""
    c, s = frame[..., None, 0], frame[..., None, 1]  # (B,N,1)
    u, v = offsets[:, 0], offsets[:, 1]  # (P,)
    return keypoints[:, :, None] + torch.stack([u * c - v * s, u * s + v * c], -1)


def to_frame(vectors: torch.Tensor, frame: torch.Tensor) -> torch.Tensor:
    """Image-plane vectors (B,N,P,2) -> their (u, v) components in each keypoint's frame (B,N,2)."""
    c, s = frame[..., None, 0], frame[..., None, 1]
    x, y = vectors[..., 0], vectors[..., 1]
    return torch.stack([x * c + y * s, -x * s + y * c], -1)


def from_frame(uv: torch.Tensor, frame: torch.Tensor) -> torch.Tensor:
    """(u, v) components in each keypoint's frame (B,N,2) -> image-plane vectors (B,N,2) (inverse of ``to_frame``)."""
    c, s = frame[..., 0], frame[..., 1]
    u, v = uv[..., 0], uv[..., 1]
    return torch.stack([u * c - v * s, u * s + v * c], -1)


class SteeredDescriptorHead(nn.Module):
    """A rotation-invariant local descriptor kind: a patch sampled in each keypoint's own frame (its dominant
    gradient orientation), so that turning the image turns the sampling pattern with it.
    Inputs per keypoint, sampled bilinearly on grids rotated by the keypoint orientation:
      - low-level maps (``low_level_maps``) on a G x G grid: the two blurred intensities and the two gradients
        expressed in the keypoint frame (u, v components), i.e. 6 values per grid point;
      - learned context: a 1x1 projection (Cf channels) of this head's 1/4-resolution trunk, on a G2 x G2 grid.
    With ``normalize_patch`` (illumination-invariant kinds) the intensities are standardised over the patch and
    the gradients divided by their RMS over the patch (invariant to a local gain and offset).
    Then BatchNorm + MLP -> (B,N,D) unnormalised descriptors."""

    def __init__(self, p2_dim: int, dim: int, grid: int, spacing: float, feat_dim: int, feat_grid: int,
                 hidden: int, normalize_patch: bool):
        super().__init__()
        self.trunk = DWSeparable(p2_dim, p2_dim)
        self.feat = nn.Conv2d(p2_dim, feat_dim, 1)
        self.normalize_patch = normalize_patch
        self.register_buffer("offsets", grid_offsets(grid, spacing), persistent=False)
        feat_spacing = spacing * (grid - 1) / max(feat_grid - 1, 1)
        self.register_buffer("feat_offsets", grid_offsets(feat_grid, feat_spacing), persistent=False)
        n_in = 6 * grid * grid + feat_dim * feat_grid * feat_grid
        self.mlp = nn.Sequential(nn.BatchNorm1d(n_in), nn.Linear(n_in, hidden), nn.ReLU(inplace=True),
                                 nn.Linear(hidden, dim))

    def sample_low_level(self, low: torch.Tensor, keypoints: torch.Tensor, frame: torch.Tensor) -> torch.Tensor:
        """low (B,6,H,W) -> (B,N,P,6) samples on this head's steered grid (the same for every steered head of a
        model: sampled once and shared)."""
        return sample_points(low, steer_points(keypoints, frame, self.offsets), 1)

    def forward(self, p2: torch.Tensor, low_samples: torch.Tensor, keypoints: torch.Tensor, frame: torch.Tensor
                ) -> torch.Tensor:
        """p2 (B,Cp2,h4,w4), low_samples (B,N,P,6) from ``sample_low_level``, keypoints (B,N,2), frame (B,N,2)
        -> (B,N,D) unnormalised."""
        b, n = keypoints.shape[:2]
        x = low_samples
        inten = x[..., :2]
        grads = torch.cat([to_frame(x[..., 2:4], frame), to_frame(x[..., 4:6], frame)], -1)  # (B,N,P,4)
        if self.normalize_patch:
            inten = inten - inten.mean(2, keepdim=True)
            inten = inten / (inten.pow(2).mean(2, keepdim=True).sqrt() + 1e-3)
            grads = grads / (grads.pow(2).mean((2, 3), keepdim=True).sqrt() + 1e-3)
        ctx = sample_points(self.feat(self.trunk(p2)), steer_points(keypoints, frame, self.feat_offsets), 4)
        z = torch.cat([inten.flatten(2), grads.flatten(2), ctx.flatten(2)], -1)  # (B,N,n_in)
        return self.mlp(z.reshape(b * n, -1)).reshape(b, n, -1)


# ----------------------------------------------------------------------------------------------------
# invariance-selected distance
# ----------------------------------------------------------------------------------------------------


def invariance_weights(meta0: torch.Tensor, meta1: torch.Tensor) -> torch.Tensor:
    """Selection weights for all pairs: meta0 (S,N0,Dm), meta1 (S,N1,Dm) -> (S,N0,N1), softmax over S."""
    return torch.softmax(meta0 @ meta1.transpose(1, 2), dim=0)


def local_distances(desc0: torch.Tensor, desc1: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """L2 distances of unit descriptors: (S,N0,D), (S,N1,D) -> (S,N0,N1)."""
    return (2.0 - 2.0 * desc0 @ desc1.transpose(1, 2)).clamp(min=eps).sqrt()


def selected_distance_matrix(desc0: torch.Tensor, desc1: torch.Tensor, meta0: torch.Tensor, meta1: torch.Tensor
                             ) -> torch.Tensor:
    """Invariance-selected distance d (N0,N1) = sum_s w_s ||l_s(p) - l_s(q)||.
    desc*: (S,N,D) unit local descriptors per kind; meta*: (S,N,Dm) meta descriptors per kind."""
    return (invariance_weights(meta0, meta1) * local_distances(desc0, desc1)).sum(0)


@torch.no_grad()
def selected_distance_inference(desc0: torch.Tensor, desc1: torch.Tensor, meta0: torch.Tensor, meta1: torch.Tensor,
                                meta_bound: float | None = None) -> torch.Tensor:
    """``selected_distance_matrix`` for inference: no autograd, leading batch dimensions allowed:
    (...,S,N,D), (...,S,M,D), (...,S,N,Dm), (...,S,M,Dm) -> (...,N,M).
    One kind at a time, accumulating sum_s e^(m_s.m_s') ||l_s - l_s'|| and sum_s e^(m_s.m_s') in two (N,M) buffers:
    the working set is two N x M maps instead of four S x N x M ones, and the softmax over S needs no max
    subtraction when every logit is below ``_EXP_SAFE`` in magnitude (|m.m'| <= |m| |m'|; the model's meta
    descriptors have |m|^2 = tau <= 50). About 0.6 of the time of the stable form at 1024 x 1800 keypoints
    (``selected_distance_stable``, used when the bound does not hold). ``meta_bound``: max |m0| * max |m1| when the
    caller knows it (a matcher computing row blocks of one matrix), else computed here."""
    if meta_bound is None:  # max |m0| * max |m1| >= |m0 . m1|
        meta_bound = (math.sqrt(float(meta0.square().sum(-1).amax()) * float(meta1.square().sum(-1).amax()))
                      if meta0.numel() and meta1.numel() else 0.0)
    if meta_bound > _EXP_SAFE:
        return selected_distance_stable(desc0, desc1, meta0, meta1)
    lead, (S, n), m = desc0.shape[:-3], desc0.shape[-3:-1], desc1.shape[-2]
    a0, a1 = desc0.reshape(-1, S, n, desc0.shape[-1]), desc1.reshape(-1, S, m, desc1.shape[-1])
    b0, b1 = meta0.reshape(-1, S, n, meta0.shape[-1]), meta1.reshape(-1, S, m, meta1.shape[-1])
    two = torch.full((1, 1, 1), 2.0, dtype=desc0.dtype, device=desc0.device)
    num = den = None
    for s in range(S):
        w = torch.bmm(b0[:, s], b1[:, s].transpose(1, 2)).exp_()
        d = torch.baddbmm(two, a0[:, s], a1[:, s].transpose(1, 2), alpha=-2.0).clamp_(min=0.0).sqrt_()  # 2 - 2 cos
        if num is None:
            num, den = d.mul_(w), w
        else:
            num.addcmul_(w, d)
            den.add_(w)
    return num.div_(den).reshape(*lead, n, m)


_EXP_SAFE = 80.0  # exp(80) ~ 5.5e34: four of them, times a distance <= 2, stay finite in float32


@torch.no_grad()
def selected_distance_stable(desc0: torch.Tensor, desc1: torch.Tensor, meta0: torch.Tensor, meta1: torch.Tensor
                             ) -> torch.Tensor:
    """``selected_distance_inference`` with the softmax over S shifted by its maximum (any meta descriptors)."""
    dist = torch.matmul(desc0, desc1.transpose(-1, -2)).mul_(-2.0).add_(2.0).clamp_(min=0.0).sqrt_()
    w = torch.matmul(meta0, meta1.transpose(-1, -2))
    w = w.sub_(w.amax(dim=-3, keepdim=True)).exp_()  # unnormalised softmax over the kinds S
    total = w.sum(dim=-3)
    return w.mul_(dist).sum(dim=-3).div_(total)


def selected_similarity(desc0, desc1, meta0, meta1) -> torch.Tensor:
    """Matching similarity (N0,N1) = -d (higher is better)."""
    return -selected_distance_matrix(desc0, desc1, meta0, meta1)


def selected_distance_pairs(desc0: torch.Tensor, desc1: torch.Tensor, meta0: torch.Tensor, meta1: torch.Tensor,
                            eps: float = 1e-6) -> torch.Tensor:
    """Distance of corresponding rows only: (S,N,D), (S,N,D), (S,N,Dm), (S,N,Dm) -> (N,)."""
    w = torch.softmax((meta0 * meta1).sum(-1), dim=0)  # (S, N)
    d = (2.0 - 2.0 * (desc0 * desc1).sum(-1)).clamp(min=eps).sqrt()  # (S, N)
    return (w * d).sum(0)


def concat_descriptors(desc: torch.Tensor) -> torch.Tensor:
    """The 'concatenated' ablation descriptor: (S,N,D) unit heads -> (N,S*D) unit vectors."""
    return F.normalize(desc.transpose(0, 1).flatten(1), dim=-1)


class KeypointRefiner(nn.Module):
    """Sub-pixel correction of each keypoint from its own neighbourhood (v10; trained by
    training/fit_refiner.py). A ``grid`` x ``grid`` pattern of points ``spacing`` px apart, turned by the
    keypoint's orientation, samples the blurred image (standardised over the pattern: a local gain and offset of
    the intensities change nothing) and the blurred score map (divided by its maximum over the pattern); an MLP
    maps the two patches to an offset in the keypoint's frame, turned back into pixels. The input is expressed in
    the keypoint's frame, so turning the image turns the correction with it.
    intensity (B,1,H,W), scores (B,1,H,W), keypoints (B,N,2), frame (B,N,2) (cos, sin) -> offsets (B,N,2) px."""

    def __init__(self, grid: int = 9, spacing: float = 1.0, hidden: int = 64):
        super().__init__()
        if grid < 2 or spacing <= 0 or hidden < 1:
            raise ValueError(f"KeypointRefiner: needs grid >= 2, spacing > 0 and hidden >= 1, got {grid}, {spacing}, "
                             f"{hidden}")
        self.register_buffer("offsets", grid_offsets(grid, spacing), persistent=False)
        n = 2 * grid * grid
        self.mlp = nn.Sequential(nn.Linear(n, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, hidden),
                                 nn.ReLU(inplace=True), nn.Linear(hidden, 2))

    def inputs(self, intensity: torch.Tensor, scores: torch.Tensor, keypoints: torch.Tensor, frame: torch.Tensor
               ) -> torch.Tensor:
        """The MLP's input: (B,N,2*grid^2) = [standardised intensity patch, score patch / its maximum]."""
        pts = steer_points(keypoints, frame, self.offsets)  # (B,N,P,2)
        ip = sample_points(intensity, pts, 1)[..., 0]  # (B,N,P)
        sp = sample_points(scores, pts, 1)[..., 0]
        ip = (ip - ip.mean(-1, keepdim=True)) / (ip.std(-1, keepdim=True) + 1e-3)
        sp = sp / (sp.amax(-1, keepdim=True) + 1e-6)
        return torch.cat([ip, sp], -1)

    def frame_offsets(self, x: torch.Tensor) -> torch.Tensor:
        """``inputs`` (B,N,2P) -> offsets (B,N,2) (u, v) in the keypoint's frame."""
        return self.mlp(x)

    def forward(self, intensity: torch.Tensor, scores: torch.Tensor, keypoints: torch.Tensor, frame: torch.Tensor
                ) -> torch.Tensor:
        uv = self.frame_offsets(self.inputs(intensity, scores, keypoints, frame))
        return from_frame(uv, frame)


# ----------------------------------------------------------------------------------------------------
# the network
# ----------------------------------------------------------------------------------------------------


class FeatLocNet(nn.Module):
    default_conf = {
        "channels": (16, 32, 64, 128),  # backbone c1..c4 (strides 2, 4, 8, 16)
        "p3_dim": 64,  # FPN width at 1/8 (input of the meta attention)
        "p2_dim": 48,  # FPN width at 1/4 (input of the descriptor heads)
        "descriptor_dim": 64,  # per local descriptor head
        "meta_dim": 16,  # per meta descriptor
        "attn_dim": 16,  # query/key/value width of each self-attention layer
        "attn_pool": 4,  # keys/values pooled from 1/8 to 1/32
        "init_tau": 4.0,  # initial meta temperature (m.m' = tau * cos)
        "normalize_input": True,  # per-image zero mean / unit contrast of the grey input (global light changes)
        # detection (inference)
        "max_keypoints": 2048,
        "nms_radius": 2,
        "detection_threshold": 0.01,
        "remove_borders": 4,
        "detector_head": "shuffle",  # "shuffle": KeypointHead (v1-v3); "full": FullResolutionKeypointHead (v4)
        # > 0: the score map is blurred (Gaussian, sigma px) before NMS and refinement: peaks made by image noise
        # merge, so the detections repeat better on dark, noisy images (measured by calibrate_keypoints.py)
        "score_blur": 0.0,
        # > 0: SIFT's edge test on the (blurred) score map with this curvature ratio: maxima on ridges are dropped
        # (their position along the ridge is poorly defined; calibrate_keypoints.py can choose it; 0 = off, as
        # shipped: tried and withdrawn, models/README.md "Edge test")
        "edge_ratio": 0.0,
        "subpixel_temperature": 0.0,  # > 0: soft-argmax refinement in the 3x3 window (v2 peaks are one pixel wide: no gain)
        # (dx, dy) px added to every output keypoint (after the descriptors are sampled): the detector's systematic
        # shift, measured on training pairs by training/calibrate_keypoints.py (v4: about a quarter pixel in x)
        "keypoint_offset": (0.0, 0.0),
        "rotation_pooling": False,  # average scores and descriptors over the 4 rotations of the image by 90 deg
        # {"grid", "spacing", "hidden"} (KeypointRefiner, v10): a learned sub-pixel correction of each output keypoint
        # from its neighbourhood, after the offset (training/fit_refiner.py); None: none
        "keypoint_refiner": None,
        # steered heads (v3): these kinds sample a patch in each keypoint's frame (SteeredDescriptorHead)
        "steered_kinds": (),  # e.g. ("ri_iv", "ri_ii"); () = every head is a plain semi-dense map (v1, v2)
        "steer_grid": 8,  # G: low-level samples on a G x G grid ...
        "steer_spacing": 2.5,  # ... with this spacing in pixels (support (G-1) * spacing)
        "steer_feature_dim": 16,  # Cf: learned context channels ...
        "steer_feature_grid": 4,  # ... on a G2 x G2 grid over the same support
        "steer_hidden": 256,
        "low_level_sigmas": (1.0, 2.0),  # blur of the low-level maps (pixels)
        "orientation_radius": 8.0,  # window of the orientation histogram (pixels; uses the s2 gradient)
        "orientation_bins": 36,
    }
    kinds = KINDS

    def __init__(self, conf: dict | None = None):
        super().__init__()
        unknown = set(conf or {}) - set(self.default_conf)
        if unknown:
            raise ValueError(f"FeatLocNet: unknown configuration keys {sorted(unknown)}")
        self.conf = c = {**self.default_conf, **(conf or {})}
        ch = tuple(c["channels"])
        self.backbone = Backbone(ch)
        self.fpn = FPN(ch, c["p3_dim"], c["p2_dim"])
        if c["detector_head"] not in ("shuffle", "full"):
            raise ValueError(f"FeatLocNet: detector_head must be 'shuffle' or 'full', got {c['detector_head']!r}")
        self.keypoint_head = (FullResolutionKeypointHead(ch[0], c["p2_dim"]) if c["detector_head"] == "full"
                              else KeypointHead(ch[0], c["p2_dim"]))
        bad = set(c["steered_kinds"]) - set(KINDS)
        if bad:
            raise ValueError(f"FeatLocNet: steered_kinds {sorted(bad)} are not descriptor kinds {KINDS}")
        self.steered = tuple(k in c["steered_kinds"] for k in KINDS)
        self.descriptor_heads = nn.ModuleList([
            SteeredDescriptorHead(c["p2_dim"], c["descriptor_dim"], c["steer_grid"], c["steer_spacing"],
                                  c["steer_feature_dim"], c["steer_feature_grid"], c["steer_hidden"],
                                  normalize_patch=kind_invariances(k)[1])
            if steered else DescriptorHead(c["p2_dim"], c["descriptor_dim"]) for k, steered in zip(KINDS, self.steered)])
        self.meta = MetaAttention(c["p3_dim"], c["attn_dim"], c["meta_dim"], c["attn_pool"], len(KINDS))
        if c["keypoint_refiner"] is not None and c["detector_head"] != "full":
            raise ValueError("FeatLocNet: keypoint_refiner needs detector_head 'full' (it samples the low-level maps)")
        if c["keypoint_refiner"] is not None and c["rotation_pooling"]:
            raise ValueError("FeatLocNet: keypoint_refiner and rotation_pooling cannot be combined")
        self.keypoint_refiner = (KeypointRefiner(**c["keypoint_refiner"]) if c["keypoint_refiner"] is not None
                                 else None)
        self.meta_log_tau = nn.Parameter(torch.tensor(math.log(c["init_tau"])))

    @staticmethod
    def to_gray(image: torch.Tensor) -> torch.Tensor:
        """(B,1,H,W) or (B,3,H,W) RGB in [0,1] -> (B,1,H,W)."""
        if image.shape[1] == 3:
            wts = torch.tensor([0.299, 0.587, 0.114], dtype=image.dtype, device=image.device).view(1, 3, 1, 1)
            image = (image * wts).sum(1, keepdim=True)
        return image

    @staticmethod
    def normalize_image(gray: torch.Tensor, eps: float = 0.005) -> torch.Tensor:
        """(B,1,H,W) -> per image zero mean and unit standard deviation (eps keeps flat images finite): a global
        gain and offset of the intensities (exposure, dusk) leaves the network input unchanged."""
        mean = gray.mean(dim=(2, 3), keepdim=True)
        std = ((gray - mean) ** 2).mean(dim=(2, 3), keepdim=True).sqrt()
        return (gray - mean) / (std + eps)

    def _features(self, image: torch.Tensor) -> dict[str, torch.Tensor]:
        gray = self.to_gray(image)
        if self.conf["normalize_input"]:
            gray = self.normalize_image(gray)
        feats = self.backbone(gray)
        p3, p2 = self.fpn(feats)
        f = {"p2": p2, "p3": p3}
        if any(self.steered) or self.conf["detector_head"] == "full":
            f["low"] = low_level_maps(gray, tuple(self.conf["low_level_sigmas"]))
        if self.conf["detector_head"] == "full":
            f["logits"] = self.keypoint_head(feats[0], p2, f["low"])
        else:
            h, w = image.shape[-2:]
            f["logits"] = self.keypoint_head(feats[0], p2)[..., :h, :w]
        return f

    def forward_dense(self, image: torch.Tensor) -> dict[str, torch.Tensor]:
        """Dense outputs for training. image (B,1|3,H,W) in [0,1] ->
        logits, scores (B,1,H,W); meta_raw (B,S,Dm,h8,w8) unnormalised; the features p2, p3 (and the low-level
        maps ``low`` with steered heads) from which ``local_at`` computes the local descriptors at any points."""
        f = self._features(image)
        return {**f, "scores": torch.sigmoid(f["logits"]), "meta_raw": torch.stack(self.meta(f["p3"]), 1)}

    def orientation(self, f: dict[str, torch.Tensor], keypoints: torch.Tensor) -> torch.Tensor:
        """Keypoint frames (B,N,2) (cos, sin) from the low-level maps of ``_features`` (steered heads only)."""
        return keypoint_orientation(f["low"][:, 4:6], keypoints, self.conf["orientation_radius"],
                                    self.conf["orientation_bins"])

    def local_at(self, f: dict[str, torch.Tensor], keypoints: torch.Tensor, kinds: tuple[int, ...] | None = None,
                 frame: torch.Tensor | None = None) -> torch.Tensor:
        """Unit local descriptors at pixel points (B,N,2) -> (B,S',N,D) for the kind indices ``kinds``
        (default all). Plain heads sample their 1/4 trunk and apply the 1x1 projection to the samples (bilinear
        sampling commutes with a 1x1 convolution: the same as sampling the dense map); steered heads sample
        their patch in the keypoint frame."""
        kinds = range(len(KINDS)) if kinds is None else kinds
        steered = [s for s in kinds if self.steered[s]]
        if steered:
            frame = self.orientation(f, keypoints) if frame is None else frame
            low_samples = self.descriptor_heads[steered[0]].sample_low_level(f["low"], keypoints, frame)
        local = []
        for s in kinds:
            head = self.descriptor_heads[s]
            if self.steered[s]:
                x = head(f["p2"], low_samples, keypoints, frame)
            else:
                x = head.project(sample_map(head.trunk(f["p2"]), keypoints, 4))
            local.append(F.normalize(x, dim=-1))
        return torch.stack(local, 1)

    def describe(self, f: dict[str, torch.Tensor], keypoints: torch.Tensor, frame: torch.Tensor | None = None
                 ) -> dict[str, torch.Tensor]:
        """Descriptors at keypoints (B,N,2): local (B,S,N,D) unit, meta (B,S,N,Dm) scaled unit. ``frame``: the
        keypoints' orientations when already computed (steered heads)."""
        meta = [normalize_meta(sample_map(m, keypoints, 8), self.meta_log_tau) for m in self.meta(f["p3"])]
        return {"local": self.local_at(f, keypoints, frame=frame), "meta": torch.stack(meta, 1)}

    def forward(self, data: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """data["image"] (B,1|3,H,W) float in [0,1] ->
        keypoints (B,k,2) float pixels (x, y); scores (B,k); valid (B,k) bool;
        local (B,4,k,D) L2-normalised per kind (order KINDS); meta (B,4,k,Dm) (norm sqrt(tau)).
        k = data["max_keypoints"] when given (an int; the ONNX graph's input), else conf max_keypoints (fixed;
        invalid entries padded, flagged by ``valid``).
        With conf rotation_pooling (4 network passes; PyTorch only): the score map is the mean of the score maps
        of the image turned by 0, 90, 180 and 270 deg (turned back), and each descriptor the normalised mean of
        the descriptors of the same point in the four turned images: exactly invariant to 90-degree turns."""
        c = self.conf
        image = data["image"]
        turns = range(4) if c["rotation_pooling"] else range(1)
        if c["rotation_pooling"]:
            feats = [self._features(torch.rot90(image, r, (2, 3))) for r in turns]
            scores = torch.stack([torch.rot90(torch.sigmoid(f["logits"]), -r, (2, 3))
                                  for r, f in zip(turns, feats)]).mean(0)
        else:  # one pass, no extra ops in the hot path (or the ONNX graph)
            feats = [self._features(image)]
            scores = torch.sigmoid(feats[0]["logits"])
        k = data.get("max_keypoints", c["max_keypoints"])
        if self.keypoint_refiner is not None:  # one pass (no rotation pooling: checked in __init__)
            d = self.detect_for_refiner(feats[0], scores, k)
            kpts = d["keypoints"] + self.keypoint_refiner(d["intensity"], d["scores_map"], d["keypoints"], d["frame"])
            return {"keypoints": kpts, "scores": d["scores"], "valid": d["valid"], **d["descriptors"]}
        kpts, kscores, valid, _ = self._detect(scores, k)
        h, w = image.shape[-2:]
        desc = [self.describe(f, rot90_points(kpts, r, h, w)) for r, f in zip(turns, feats)]
        kpts = self._with_offset(kpts)
        if len(desc) == 1:
            return {"keypoints": kpts, "scores": kscores, "valid": valid, **desc[0]}
        local = F.normalize(torch.stack([d["local"] for d in desc]).mean(0), dim=-1)
        meta = normalize_meta(torch.stack([d["meta"] for d in desc]).mean(0), self.meta_log_tau)
        return {"keypoints": kpts, "scores": kscores, "valid": valid, "local": local, "meta": meta}

    def detect_for_refiner(self, f: dict[str, torch.Tensor], scores: torch.Tensor, k) -> dict[str, torch.Tensor]:
        """``forward``'s steps before the keypoint refiner: f = ``_features`` of the image, scores (B,1,H,W) its
        score map, k keypoints -> keypoints (B,k,2) with the offset added, scores (B,k), valid (B,k), frame (B,k,2)
        (orientations, shared with the steered heads), descriptors (``describe``), and the refiner's maps:
        scores_map (B,1,H,W) (blurred as for the detection) and intensity (B,1,H,W) (the first low-level map)."""
        kpts, kscores, valid, blurred = self._detect(scores, k)
        frame = self.orientation(f, kpts)
        desc = self.describe(f, kpts, frame)
        return {"keypoints": self._with_offset(kpts), "scores": kscores, "valid": valid, "frame": frame,
                "descriptors": desc, "scores_map": blurred, "intensity": f["low"][:, 0:1]}

    def _detect(self, scores: torch.Tensor, k) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """The conf's detection on the score map (B,1,H,W): keypoints (B,k,2) before the offset, scores (B,k),
        valid (B,k), and the score map the maxima were taken from (blurred by ``score_blur``)."""
        c = self.conf
        blurred = gaussian_blur(scores, c["score_blur"]) if c["score_blur"] > 0 else scores
        kpts, kscores, valid = detect_keypoints(blurred, k, c["nms_radius"], c["detection_threshold"],
                                                c["remove_borders"], c["subpixel_temperature"], 0.0, c["edge_ratio"])
        return kpts, kscores, valid, blurred

    def _with_offset(self, kpts: torch.Tensor) -> torch.Tensor:
        """Output keypoints: ``kpts`` plus the conf's ``keypoint_offset`` (no op when it is zero)."""
        offset = self.conf["keypoint_offset"]
        return kpts + torch.tensor(offset, dtype=kpts.dtype, device=kpts.device) if any(offset) else kpts


def rot90_points(points: torch.Tensor, turns: int, height: int, width: int) -> torch.Tensor:
    """Pixel (x, y) points (B,N,2) of an (height, width) image -> the same points in
    ``torch.rot90(image, turns, (2, 3))`` (each turn: (x, y) -> (y, w - 1 - x) with w the current width)."""
    h, w = height, width
    for _ in range(turns % 4):
        points = torch.stack([points[..., 1], (w - 1) - points[..., 0]], -1)
        h, w = w, h
    return points


# ----------------------------------------------------------------------------------------------------
# architecture file next to the weights (the settings that differ from default_conf)
# ----------------------------------------------------------------------------------------------------

ARCHITECTURE_FORMAT = "featloc_ros.featloc_net/1"


def save_architecture(weights, model_conf: dict) -> Path:
    """Write the FeatLocNet settings of a weights file (written by the training export)."""
    return architecture.save_architecture(weights, model_conf, ARCHITECTURE_FORMAT)


def load_architecture(weights) -> dict:
    """The FeatLocNet settings stored next to a weights file; {} when there is none (v2: the defaults).
    A corrupt file raises ValueError naming it."""
    return architecture.load_architecture(weights, ARCHITECTURE_FORMAT, "FeatLoc")


def load_keypoint_refinement(weights) -> dict:
    """The keypoint refinement stored next to a weights file ({} when there is none): the extractor's
    post-processing of the network's keypoints (featloc_ros.features.keypoint_refinement), not a network
    setting. A corrupt file raises ValueError naming it."""
    data = architecture.load_architecture_file(weights, ARCHITECTURE_FORMAT, "FeatLoc").get("keypoint_refinement", {})
    if not isinstance(data, dict):
        raise ValueError(f"FeatLoc: bad architecture file {architecture.architecture_path(weights)}: "
                         f"keypoint_refinement must be a mapping, got {type(data).__name__}")
    return data


# ----------------------------------------------------------------------------------------------------
# ONNX export
# ----------------------------------------------------------------------------------------------------

ONNX_OUTPUTS = ("keypoints", "scores", "valid", *(f"desc_{k}" for k in KINDS), "meta")


class _OnnxWrapper(nn.Module):
    """image (1,1,H,W), max_keypoints () int64 (1 <= k <= H*W) -> keypoints (1,k,2), scores (1,k), valid (1,k),
    desc_<kind> (1,k,D) x4, meta (1,4,k,Dm): the cost of the descriptor stage follows the k asked for."""

    def __init__(self, model: FeatLocNet):
        super().__init__()
        self.model = model

    def forward(self, image: torch.Tensor, max_keypoints: torch.Tensor):
        k = max_keypoints.item()
        torch._check(k >= 1)
        torch._check(k <= image.shape[2] * image.shape[3])
        out = self.model({"image": image, "max_keypoints": k})
        local = out["local"]
        return (out["keypoints"], out["scores"], out["valid"], *(local[:, i] for i in range(len(KINDS))),
                out["meta"])


def export_onnx(model: FeatLocNet, path, nms_radius: int | None = None, detection_threshold: float | None = None,
                opset: int = 18, verify: bool = True, verify_size: tuple[int, int] = (96, 128),
                verify_keypoints: int = 64) -> dict:
    """Export image (1,1,H,W) float32 in [0,1] (dynamic H, W) and max_keypoints () int64 (the k of the top-k:
    1 <= k <= H*W) -> ONNX_OUTPUTS with the dynamo exporter (``torch.onnx.export(..., dynamo=True)``); k rows
    per output (validity mask). The detection settings are baked into the graph and recorded in the model's
    metadata_props. With ``verify``, runs onnxruntime on a random (verify_size) image with ``verify_keypoints``
    and returns {"max_abs_diff": ..., "keypoints_equal": ...}. Needs the ``onnxscript`` package."""
    import copy

    import onnx

    conf = {"nms_radius": nms_radius, "detection_threshold": detection_threshold}
    model = copy.deepcopy(model).eval()
    model.conf.update({k: v for k, v in conf.items() if v is not None})
    wrapper = _OnnxWrapper(model).eval()
    h0, w0 = verify_size
    example = torch.rand(1, 1, h0, w0, generator=torch.Generator().manual_seed(0))
    dyn = {"image": {2: torch.export.Dim("height", min=32, max=8192), 3: torch.export.Dim("width", min=32, max=8192)},
           "max_keypoints": None}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with torch.no_grad():
        prog = torch.onnx.export(wrapper, (example, torch.tensor(verify_keypoints)), dynamo=True, opset_version=opset,
                                 input_names=["image", "max_keypoints"], output_names=list(ONNX_OUTPUTS),
                                 dynamic_shapes=dyn, external_data=False, verbose=False)
    prog.save(str(path))
    proto = onnx.load(str(path))
    meta = {"featloc.kinds": ",".join(KINDS), "featloc.nms_radius": str(model.conf["nms_radius"]),
            "featloc.detection_threshold": str(model.conf["detection_threshold"]),
            "featloc.remove_borders": str(model.conf["remove_borders"]),
            "featloc.subpixel_temperature": str(model.conf["subpixel_temperature"]),
            "featloc.score_blur": str(model.conf["score_blur"]),
            "featloc.edge_ratio": str(model.conf["edge_ratio"]),
            "featloc.keypoint_offset": ",".join(str(float(v)) for v in model.conf["keypoint_offset"]),
            "featloc.keypoint_refiner": json.dumps(model.conf["keypoint_refiner"]),  # "null": none
            "featloc.descriptor_dim": str(model.conf["descriptor_dim"]),
            "featloc.meta_dim": str(model.conf["meta_dim"])}
    for key, value in meta.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.save(proto, str(path))
    result = {"path": str(path), "opset": opset}
    if verify:
        result.update(verify_onnx(wrapper, path, (h0 + 32, w0 - 32), verify_keypoints))
    return result


def verify_onnx(wrapper: nn.Module, path, size: tuple[int, int], k: int) -> dict:
    """Compare onnxruntime with PyTorch on a random (H, W) image (a size other than the export example's,
    to exercise the dynamic shapes). Keypoints are paired by their exact (x, y) position first: near-equal
    scores may be ordered differently by the two top-k implementations, so row-wise comparison would report
    swaps rather than numerical differences (positions are sub-pixel: paired when within 1e-3 px). Returns the max abs difference over the paired keypoints of all
    outputs, per output, and the fraction of the valid PyTorch keypoints that onnxruntime found too."""
    import numpy as np
    import onnxruntime as ort

    image = torch.rand(1, 1, *size, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ref = [t.numpy() for t in wrapper(image, torch.tensor(k))]
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    got = sess.run(None, {"image": image.numpy(), "max_keypoints": np.array(k, np.int64)})
    out_names = [o.name for o in sess.get_outputs()]
    got = [got[out_names.index(name)] for name in ONNX_OUTPUTS]
    valid_ref, valid_got = ref[2][0].astype(bool), got[2][0].astype(bool)
    # pair by position (sub-pixel refined positions agree to float rounding: nearest within 1e-3 px)
    vr, vg = np.flatnonzero(valid_ref), np.flatnonzero(valid_got)
    if len(vr) and len(vg):
        dist = np.linalg.norm(got[0][0][vg][:, None] - ref[0][0][vr][None], axis=-1)
        nearest = dist.argmin(1)
        close = dist[np.arange(len(vg)), nearest] < 1e-3
        ir, ig = vr[nearest[close]], vg[close]
    else:
        ir = ig = np.zeros(0, np.int64)
    pairs = list(zip(ir.tolist(), ig.tolist()))
    diffs = {}
    for name, r, g in zip(ONNX_OUTPUTS, ref, got):
        r, g = np.asarray(r, np.float32), np.asarray(g, np.float32)
        r, g = (r[:, :, ir], g[:, :, ig]) if name == "meta" else (r[:, ir], g[:, ig])
        diffs[name] = float(np.abs(r - g).max()) if r.size else 0.0
    return {"max_abs_diff": max(diffs.values()), "max_abs_diff_per_output": diffs,
            "common_keypoints": len(pairs) / max(int(valid_ref.sum()), 1), "num_valid": int(valid_ref.sum()),
            "verify_size": list(size)}
