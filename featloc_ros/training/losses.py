"""Losses of FeatLocNet (all on a batch of samples (A, B, B0) from featloc_ros.training.data).

Descriptors (per kind s, anchors = K grid cells of A with valid correspondences in B and B0):
- a head INVARIANT to every change applied to the sample: HardNet triplet margin loss on (A, B) with the
  hardest in-batch negatives (rows and columns), excluding negatives of the same sample within
  ``neighbor_radius`` pixels of the anchor;
- a head VARIANT to an applied change: the same HardNet loss on (A, B0) (B0 = the untransformed copy:
  same geometry without the rotation, no relighting), plus the variant triplet
  relu(margin_v + ||l(A,p) - l(B0,q0)|| - ||l(A,p) - l(B,q)||) that pushes the anchor away from its
  transformed counterpart and towards the untransformed one.
  On samples without any change, every head gets the plain matching loss on (A, B) (B0 == B).
Spread-out regulariser (Zhang et al. 2017, "global orthogonal regularization"), per head, on the
  non-matching (A, B) pairs: mean(cos)^2 + relu(mean(cos^2) - 1/D). It keeps a head from collapsing to a
  constant descriptor, the trivial minimiser of a hardest-negative triplet whose task is too hard (a
  collapsed head has every distance ~0, so the triplet loss sits at the margin with no gradient).
Meta descriptors, on the invariance-selected distance d(p, q) on (A, B) (local descriptors detached by
  default, so only the meta branch learns the selection), ``meta_loss``:
  "nce": cross-entropy of the true match among all candidates (rows and columns) of softmax(-d / meta_temperature);
         a selection that puts its weight on an uninformative head is penalised (uniform softmax);
  "triplet": the HardNet-style triplet with ``meta_margin`` (can be minimised by selecting a collapsed head).
Shift equivariance (weight ``shift`` > 0; the task runs the detector on A translated by 1 px as well): mean
  squared difference of the translated score map and the score map of the translated image. Without it a
  detector can meet peakiness by a pixel lattice (one phase of the strided layers always wins) while the
  patch-level repeatability stays high.
Detector (R2D2-style, dense, fast on CPU):
- repeatability: 1 - mean cosine similarity of N x N patches of S_A and S_B warped into A;
- peakiness: 1 - mean(maxpool_N(S) - avgpool_N(S)) on all views;
- reliability: cells whose descriptor (``reliability_kind``) is distinctive (reciprocal rank P of the true
  match among the cells of B farther than ``neighbor_radius``; with ``reliability_cell_stride`` 8 the rank is
  estimated on every other cell, times 4) should hold a peak, others should not:
  mean(1 - P*R - kappa*(1 - R)) with R the max score in the 4x4 cell (as R2D2's AP/reliability loss);
- precision (weight ``precision``, off by default): keypoint_precision_loss, the distance between A's refined
  keypoints warped into B and B's nearest refined keypoints (the sub-pixel positions the detector reports), on
  the score maps blurred by ``precision_blur`` as at inference.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..nn.featloc_net import (
    KINDS, gaussian_blur, kind_invariances, normalize_meta, sample_map, selected_distance_matrix, subpixel_offsets)

DEFAULT_LOSS_CONF = {
    "points_per_image": 128,
    "neighbor_radius": 8.0,  # px in A: same-sample negatives closer than this are not negatives
    "margin": 1.0,  # HardNet margin (distances of unit vectors are in [0, 2])
    "variant_margin": 0.5,
    "meta_margin": 0.5,
    "meta_detach_local": True,
    "meta_loss": "triplet",  # "triplet" | "nce"
    "meta_temperature": 0.05,
    "patch_size": 16,  # repeatability / peakiness window
    "reliability_kind": "ri_ii",
    "reliability_cell_stride": 4,  # 8: rank the true match among every other 1/4 cell (x4), 4x cheaper
    "kappa": 0.5,
    "weights": {"descriptor": 1.0, "variant": 1.0, "meta": 1.0, "repeatability": 1.0, "peakiness": 0.5,
                "reliability": 0.5, "spread": 0.0, "shift": 0.0, "precision": 0.0},
    "precision_points": 128,  # keypoints of A per image for the sub-pixel precision loss
    "precision_temperature": 0.1,  # its soft-argmax temperature (the model's subpixel_temperature at inference)
    "precision_clip_px": 1.5,  # pairs farther apart than this did not repeat: no gradient
    "precision_blur": 0.0,  # sigma px of the score blur before the precision loss (the model's score_blur at inference)
}


def warp_points(H: torch.Tensor, pts: torch.Tensor) -> torch.Tensor:
    """(B,3,3) homographies, (B,N,2) points -> (B,N,2)."""
    ph = torch.cat([pts, torch.ones_like(pts[..., :1])], -1) @ H.transpose(1, 2)
    return ph[..., :2] / ph[..., 2:].clamp(min=1e-8)


def lookup_mask(mask: torch.Tensor, pts: torch.Tensor) -> torch.Tensor:
    """(B,S,S) bool, (B,N,2) pixel points -> (B,N) bool: inside the image and mask at the nearest pixel."""
    h, w = mask.shape[-2:]
    x, y = pts[..., 0].round().long(), pts[..., 1].round().long()
    inside = (x >= 0) & (x < w) & (y >= 0) & (y < h)
    idx = (y.clamp(0, h - 1) * w + x.clamp(0, w - 1))
    return inside & torch.gather(mask.flatten(1), 1, idx)


def cell_centers(h4: int, w4: int, stride: int = 4) -> torch.Tensor:
    """(h4*w4, 2) pixel centres of the cells of a stride-4 map (row-major)."""
    ys, xs = torch.meshgrid(torch.arange(h4), torch.arange(w4), indexing="ij")
    return torch.stack([xs, ys], -1).reshape(-1, 2).float() * stride + (stride - 1) / 2


def triplet_from_distances(dist: torch.Tensor, exclude: torch.Tensor, valid: torch.Tensor, margin: float
                           ) -> torch.Tensor:
    """HardNet loss from an (N,N) anchor x positive distance matrix whose diagonal holds the positives.
    exclude (N,N) bool: pairs that are not negatives; valid (N,) bool. Hardest negative over the row
    (other positives for the anchor) and the column (other anchors for the positive)."""
    if not bool(valid.any()):
        return dist.sum() * 0
    ban = exclude | ~(valid[:, None] & valid[None, :])
    far = dist + 10.0 * ban.to(dist.dtype)
    neg = torch.minimum(far.min(1).values, far.min(0).values)
    return F.relu(margin + dist.diagonal() - neg)[valid].mean()


def nce_from_distances(dist: torch.Tensor, exclude: torch.Tensor, valid: torch.Tensor, temperature: float
                       ) -> torch.Tensor:
    """Cross-entropy of the true match (diagonal) among the candidates of its row and of its column of
    softmax(-dist / temperature); excluded (near, same-sample) and invalid entries are not candidates."""
    if not bool(valid.any()):
        return dist.sum() * 0
    ban = (exclude & ~torch.eye(len(dist), dtype=torch.bool, device=dist.device)) | ~(valid[:, None] & valid[None, :])
    logits = (-dist / temperature).masked_fill(ban, float("-inf"))
    target = torch.arange(len(dist), device=dist.device)
    rows = F.cross_entropy(logits[valid], target[valid])
    cols = F.cross_entropy(logits.t()[valid], target[valid])
    return 0.5 * (rows + cols)


def spread_out(a: torch.Tensor, b: torch.Tensor, exclude: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Global orthogonal regularisation of unit descriptors a, b (N,D) over the non-matching valid pairs."""
    cos = a @ b.t()
    use = ~exclude & ~torch.eye(len(a), dtype=torch.bool, device=a.device) & valid[:, None] & valid[None, :]
    if not bool(use.any()):
        return cos.sum() * 0
    c = cos[use]
    return c.mean() ** 2 + F.relu((c * c).mean() - 1.0 / a.shape[-1])


def unit_distances(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return (2.0 - 2.0 * a @ b.transpose(-1, -2)).clamp(min=1e-6).sqrt()


def _flat_kinds(local: torch.Tensor) -> torch.Tensor:
    """(b,S,K,D) -> (S, b*K, D)."""
    b, s, k, d = local.shape
    return local.transpose(0, 1).reshape(s, b * k, d)


def _slice(out: dict, start: int, stop: int) -> dict:
    """The images start:stop of the batched dense outputs of FeatLocNet.forward_dense."""
    return {k: v[start:stop] for k, v in out.items()}


def _sample_meta(meta_raw: torch.Tensor, pts: torch.Tensor, log_tau: torch.Tensor) -> torch.Tensor:
    b, s, d, h, w = meta_raw.shape
    x = sample_map(meta_raw.reshape(b, s * d, h, w), pts, 8).reshape(b, -1, s, d)
    return normalize_meta(x, log_tau).permute(2, 0, 1, 3).reshape(s, -1, d)


def detector_losses(scores: torch.Tensor, batch: dict, conf: dict) -> dict[str, torch.Tensor]:
    """scores (3b,1,S,S) for [A; B; B0] -> repeatability and peakiness losses."""
    b = batch["A"].shape[0]
    sa, sb = scores[:b], scores[b:2 * b]
    S = sa.shape[-1]
    n = int(conf["patch_size"])
    pts = cell_centers(S, S, 1)[None].expand(b, -1, -1)  # every pixel of A
    pb = warp_points(batch["H_AB"], pts)
    valid = lookup_mask(batch["valid_B"], pb).reshape(b, 1, S, S).float()
    grid = ((pb + 0.5) / S * 2 - 1).reshape(b, S, S, 2)
    sbw = F.grid_sample(sb, grid, mode="bilinear", padding_mode="zeros", align_corners=False) * valid
    sam = sa * valid
    pool = lambda x: F.avg_pool2d(x, n, n // 2)  # noqa: E731
    cos = pool(sam * sbw) / (pool(sam * sam) * pool(sbw * sbw)).clamp(min=1e-12).sqrt()
    frac = pool(valid)
    use = frac > 0.5
    rep = 1.0 - cos[use].mean() if bool(use.any()) else scores.sum() * 0
    k, r = n + 1, n // 2  # separable (k,1) x (1,k) pooling: same result, ~k/2 times cheaper than k x k
    mx = F.max_pool2d(F.max_pool2d(scores, (1, k), 1, (0, r)), (k, 1), 1, (r, 0))
    av = F.avg_pool2d(F.avg_pool2d(scores, (1, k), 1, (0, r), count_include_pad=False), (k, 1), 1, (r, 0),
                      count_include_pad=False)
    peaky = 1.0 - (mx - av).mean()
    return {"repeatability": rep, "peakiness": peaky}


def shift_equivariance_loss(scores: torch.Tensor, shifted: torch.Tensor, shift: tuple[int, int], border: int = 8
                            ) -> torch.Tensor:
    """Mean squared difference of the score map of an image translated by whole pixels ``shift`` = (dx, dy) and
    the translated score map of the image (B,1,S,S) each, away from the borders: zero for a detector whose
    scores follow the image pixel for pixel (a pixel-shuffle or phase-reading detector does not)."""
    dx, dy = shift
    s = scores.shape[-1]
    a = scores[..., border:s - border - dy, border:s - border - dx]
    b = shifted[..., border + dy:s - border, border + dx:s - border]
    return ((a - b) ** 2).mean()


def _refined(scores: torch.Tensor, pix: torch.Tensor, temperature: float) -> torch.Tensor:
    """Integer pixels (B,N,2) of a score map (B,1,S,S) moved by the soft-argmax of their 3x3 windows -> (B,N,2)."""
    S = scores.shape[-1]
    off = subpixel_offsets(scores, temperature).flatten(2).transpose(1, 2)  # (B, S*S, 2)
    idx = (pix[..., 1] * S + pix[..., 0]).long()
    return pix + torch.gather(off, 1, idx[..., None].expand(-1, -1, 2))


def keypoint_precision_loss(scores: torch.Tensor, batch: dict, conf: dict) -> tuple[torch.Tensor, float]:
    """Sub-pixel precision of repeated keypoints, as the detector reports them at inference.

    scores (3b,1,S,S) for [A; B; B0]. A's top ``precision_points`` local maxima (3x3) per image, each refined by
    the soft-argmax of its 3x3 window (``precision_temperature``), are warped into B by H_AB; the local maximum of
    B nearest to each (within the 3x3 pixels around it), refined alike, should lie on it. Returns (mean distance in
    px over the pairs closer than ``precision_clip_px``: a keypoint that did not repeat gets no gradient, fraction
    of A's keypoints that repeated so). Gradients reach both score maps through the soft-argmax offsets.
    ``precision_blur`` > 0: the score maps are first blurred (Gaussian, sigma px), as the detector does at inference
    with its ``score_blur``."""
    b = batch["A"].shape[0]
    if float(conf.get("precision_blur", 0.0)) > 0:
        scores = gaussian_blur(scores[:2 * b], float(conf["precision_blur"]))
    sa, sb = scores[:b], scores[b:2 * b]
    S = sa.shape[-1]
    T, K, border = float(conf["precision_temperature"]), int(conf["precision_points"]), 2
    with torch.no_grad():
        inner = torch.zeros_like(sa, dtype=torch.bool)
        inner[..., border:S - border, border:S - border] = True
        peaks_a = (sa == F.max_pool2d(sa, 3, 1, 1)) & inner
        top, idx = torch.topk((sa * peaks_a).flatten(1), K, dim=1)  # (b, K)
        pix_a = torch.stack([idx % S, idx // S], -1).float()
        peaks_b = ((sb == F.max_pool2d(sb, 3, 1, 1)) & inner).flatten(1)  # (b, S*S)
    qb = warp_points(batch["H_AB"], _refined(sa, pix_a, T))  # (b, K, 2): A's keypoints where they belong in B
    with torch.no_grad():
        centre = qb.round()
        best, best_d = centre.clone(), top.new_full(top.shape, float("inf"))
        for dy in (-1, 0, 1):
            for dx in (-1, 0, 1):
                c = centre + centre.new_tensor([dx, dy])
                inside = ((c >= border) & (c <= S - 1 - border)).all(-1)
                lin = (c[..., 1].clamp(0, S - 1) * S + c[..., 0].clamp(0, S - 1)).long()
                is_peak = inside & torch.gather(peaks_b, 1, lin)
                d = torch.where(is_peak, (c - qb).norm(dim=-1), torch.full_like(best_d, float("inf")))
                closer = d < best_d
                best = torch.where(closer[..., None], c, best)
                best_d = torch.where(closer, d, best_d)
        ok = torch.isfinite(best_d) & (top > 0) & lookup_mask(batch["valid_B"], qb)
    err = (_refined(sb, best.clamp(0, S - 1), T) - qb).norm(dim=-1)
    use = ok & (err.detach() < float(conf["precision_clip_px"]))
    loss = err[use].mean() if bool(use.any()) else scores.sum() * 0
    return loss, float(use.float().mean())


def compute_losses(out: dict, batch: dict, conf: dict, model, generator: torch.Generator
                   ) -> tuple[torch.Tensor, dict[str, float]]:
    """``out`` = model.forward_dense(cat([A, B, B0])) of a FeatLocNet ``model`` (whose ``local_at`` gives the
    local descriptors at points and ``meta_log_tau`` the meta temperature); ``batch`` from data.collate.
    Returns (total loss, {name: float} for logging)."""
    c = {**DEFAULT_LOSS_CONF, **conf, "weights": {**DEFAULT_LOSS_CONF["weights"], **conf.get("weights", {})}}
    b = batch["A"].shape[0]
    meta_raw, log_tau = out["meta_raw"], model.meta_log_tau
    h4, w4 = out["p2"].shape[-2:]
    K = int(c["points_per_image"])

    # --- anchors: K cells of A with valid correspondences in B and B0
    cells = cell_centers(h4, w4)[None].expand(b, -1, -1)
    pb_all, pb0_all = warp_points(batch["H_AB"], cells), warp_points(batch["H_AB0"], cells)
    ok = lookup_mask(batch["valid_B"], pb_all) & lookup_mask(batch["valid_B0"], pb0_all)
    pick = torch.multinomial(ok.double() + 1e-9, K, replacement=False, generator=generator)  # (b, K)
    valid = torch.gather(ok, 1, pick).reshape(-1)  # (b*K,)
    pa = torch.gather(cells, 1, pick[..., None].expand(-1, -1, 2))
    pb = torch.gather(pb_all, 1, pick[..., None].expand(-1, -1, 2))
    pb0 = torch.gather(pb0_all, 1, pick[..., None].expand(-1, -1, 2))
    la, lb, lb0 = (_flat_kinds(x) for x in model.local_at(out, torch.cat([pa, pb, pb0])).split(b))
    sid = torch.arange(b).repeat_interleave(K)
    flat_pa = pa.reshape(-1, 2)
    exclude = (sid[:, None] == sid[None, :]) & (torch.cdist(flat_pa, flat_pa) < c["neighbor_radius"])
    rot = batch["rotation"].repeat_interleave(K)
    ill = batch["illumination"].repeat_interleave(K)

    logs: dict[str, float] = {}
    w = c["weights"]
    desc_total = la.new_zeros(())
    var_total = la.new_zeros(())
    spread_total = la.new_zeros(())
    for s, kind in enumerate(KINDS):
        rot_inv, ill_inv = kind_invariances(kind)
        variant = (rot & (not rot_inv)) | (ill & (not ill_inv))  # (b*K,) the head must tell this change apart
        pos = torch.where(variant[:, None], lb0[s], lb[s])
        l_desc = triplet_from_distances(unit_distances(la[s], pos), exclude, valid, c["margin"])
        sel = valid & variant
        if bool(sel.any()):
            d_pos = (la[s] - lb0[s]).norm(dim=-1)
            d_neg = (la[s] - lb[s]).norm(dim=-1)
            l_var = F.relu(c["variant_margin"] + d_pos - d_neg)[sel].mean()
        else:
            l_var = la.new_zeros(())
        desc_total = desc_total + l_desc
        var_total = var_total + l_var
        if w["spread"]:
            l_spread = spread_out(la[s], lb[s], exclude, valid)
            spread_total = spread_total + l_spread
            logs[f"spread_{kind}"] = l_spread.item()
        logs[f"desc_{kind}"] = l_desc.item()
        logs[f"var_{kind}"] = l_var.item()

    # --- meta descriptors: triplet on the invariance-selected distance (A, B)
    ma, mb = _sample_meta(meta_raw[:b], pa, log_tau), _sample_meta(meta_raw[b:2 * b], pb, log_tau)
    la_m, lb_m = (la.detach(), lb.detach()) if c["meta_detach_local"] else (la, lb)
    dsel = selected_distance_matrix(la_m, lb_m, ma, mb)  # (bK, bK)
    if c["meta_loss"] == "nce":
        l_meta = nce_from_distances(dsel, exclude, valid, c["meta_temperature"])
    elif c["meta_loss"] == "triplet":
        l_meta = triplet_from_distances(dsel, exclude, valid, c["meta_margin"])
    else:
        raise ValueError(f"loss.meta_loss must be 'nce' or 'triplet', not {c['meta_loss']!r}")
    with torch.no_grad():
        far = dsel + 10.0 * (exclude & ~torch.eye(len(sid), dtype=torch.bool))
        logs["acc_selected"] = float((far.argmin(1) == torch.arange(len(sid)))[valid].float().mean())
        cat_a = F.normalize(la.permute(1, 0, 2).flatten(1), dim=-1)
        cat_b = F.normalize(lb.permute(1, 0, 2).flatten(1), dim=-1)
        dc = unit_distances(cat_a, cat_b) + 10.0 * (exclude & ~torch.eye(len(sid), dtype=torch.bool))
        logs["acc_concat"] = float((dc.argmin(1) == torch.arange(len(sid)))[valid].float().mean())
        wsel = torch.softmax((ma * mb).sum(-1), 0)  # (S, bK) weights of the true pairs
        for s, kind in enumerate(KINDS):
            logs[f"w_{kind}"] = float(wsel[s][valid].mean())

    # --- detector
    det = detector_losses(out["scores"], batch, c)
    s_idx = KINDS.index(c["reliability_kind"])
    with torch.no_grad():
        # reciprocal rank of the true match among the cells of B (same sample) farther than the radius
        stride = int(c["reliability_cell_stride"])  # candidates: cells of B on a grid of this stride (px)
        cells_b = cell_centers(h4 * 4 // stride, w4 * 4 // stride, stride)
        dense_b = model.local_at(_slice(out, b, 2 * b), cells_b[None].expand(b, -1, -1), (s_idx,))[:, 0]
        anc = la[s_idx].reshape(b, K, -1)
        sims = anc @ dense_b.transpose(1, 2)  # (b, K, h4*w4)
        pos_sim = (anc * lb[s_idx].reshape(b, K, -1)).sum(-1, keepdim=True)
        near = torch.cdist(pb, cells_b[None].expand(b, -1, -1)) < c["neighbor_radius"]
        rank = ((sims > pos_sim) & ~near).sum(-1).float() * (stride / 4) ** 2  # rank among the 1/4 cells
        P = (1.0 / (1.0 + rank)).reshape(-1)
    R = F.max_pool2d(out["scores"][:b], 4, 4)[:, 0].flatten(1)  # (b, h4*w4): max score in each cell
    R = torch.gather(R, 1, pick).reshape(-1)
    l_rel = (1.0 - P * R - c["kappa"] * (1.0 - R))[valid].mean()

    total = (w["descriptor"] * desc_total + w["variant"] * var_total + w["spread"] * spread_total + w["meta"] * l_meta
             + w["repeatability"] * det["repeatability"] + w["peakiness"] * det["peakiness"] + w["reliability"] * l_rel)
    if "scores_shifted" in out:  # the scores of A translated by out["shift"] pixels (DescriptorTask, weight "shift")
        l_shift = shift_equivariance_loss(out["scores"][:b], out["scores_shifted"], out["shift"])
        total = total + w["shift"] * l_shift
        logs["shift"] = l_shift.item()
    if w["precision"]:
        l_prec, repeated = keypoint_precision_loss(out["scores"], batch, c)
        total = total + w["precision"] * l_prec
        logs["precision_px"], logs["precision_repeated"] = l_prec.item(), repeated
    logs.update({"meta": l_meta.item(), "repeatability": det["repeatability"].item(),
                 "peakiness": det["peakiness"].item(), "reliability": l_rel.item(),
                 "reliable_frac": float(P[valid].mean()),
                 "tau": log_tau.exp().item(), "total": total.item()})
    return total, logs
