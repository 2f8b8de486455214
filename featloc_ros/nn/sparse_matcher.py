"""SparseMatcher: residual attention over mined neighbourhoods, with matchability reweighting (one readable file,
in the style of LightGlue's ``lightglue.py``; dict in, dict out).

Input: two sets of FeatLoc "selected" features (keypoints, S local descriptors l_s and S meta descriptors m_s).

    x_i = MLP([l_1..l_S, m_1..m_S](i)) + FourierPositionEncoding(p_i)        (B,N,C)
    repeat ``layers`` times:
      self-attention  (within an image):  logit_ij = q_i.k_j / sqrt(c) + phi_h(p_j - p_i) + beta_h log mu_j
      cross-attention (across images):    logit_ij = q_i.k_j / sqrt(c) + alpha_h sim(i, j)  + beta_h log mu_j
      values v_j are rescaled by mu_j (matchability of the source keypoint, sigmoid of a per-layer linear map);
      x_i <- x_i + MLP([x_i, sum_j softmax_j(logit_ij) v_j])
    phi: a small MLP of the relative offset of the two keypoints (normalised coordinates): the layer learns a
    residual *filtering* function over the spatial context; sim: the invariance-selected similarity of the
    descriptor model (1 - d/2 with d the softmax(m.m')-weighted sum of the S local L2 distances): the layer
    learns a residual *matching* function on top of plain descriptor similarity.

Sparse attention (``attention: sparse``): keypoint i attends only to its ``k_self`` nearest keypoints by position
(same image) and to its ``k_cross`` most similar keypoints of the other image (top-k of the cosine of the fully
invariant descriptor kind at the input, then of the current features' dot product, re-mined every ``mine_every``
layers); keys and values are gathered (fixed k, exportable): O(N k) per layer instead of O(N^2), and sim is
computed on the mined pairs only. ``attention: dense`` attends to everything with the dense sim (ablation).

Assignment (as LightGlue): S_ij = f_i.f_j / sqrt(c); log P_ij = log_softmax_j S + log_softmax_i S + log sigma(z_i)
+ log sigma(z_j) with z the final matchability logits, log P_i,dustbin = log sigma(-z_i). Matches: mutual
argmax of log P with P > ``filter_threshold``; confidence P_ij. With ``similarity_prior`` the scores get the
descriptors' own evidence as a residual base, S_ij += sum_s w_s cos_s(i, j) (learned weights w of the S per-kind
cosines, already computed for the mining): the network learns only where plain similarity is wrong (the dense
invariance-selected similarity would cost an N x M x S softmax, about as much as the rest of the small model).

Early exit (``early_exit``, PyTorch only; needs weights trained with ``deep_supervision``, i.e. with the
assignment loss after every layer, so that the shared assignment head is meaningful on intermediate features):
after layer ``exit_min_layers`` and every later one but the last, the intermediate assignment is computed; a
keypoint is settled when its most likely outcome (its best pair or the dustbin) has P >= ``exit_confidence``;
when at least ``exit_ratio`` of the keypoints of both images are settled, the remaining layers are skipped and
that assignment is the output (``layers_run`` says how many layers ran). Easy pairs (consecutive frames, small
changes) stop early; hard ones run every layer. The ONNX export always runs every layer.

Shapes: B batch, N/M keypoints of image 0/1, S kinds, D local dim, Dm meta dim, C model width, H heads,
K neighbours. Keypoints are pixels (x, y); they are normalised by the image size (centre, / max side * 2).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from . import architecture

NEG = -1e4  # logit of a masked (invalid) key; finite so that fully masked rows stay NaN-free


def normalize_keypoints(kpts: torch.Tensor, size: torch.Tensor) -> torch.Tensor:
    """(B,N,2) pixels, (B,2) image (width, height) -> (B,N,2) roughly in [-1, 1] (aspect ratio kept)."""
    size = size.to(kpts)
    return (kpts - size[:, None] / 2) / (size.max(-1).values[:, None, None] / 2)


def kind_similarities(local0: torch.Tensor, local1: torch.Tensor, meta0: torch.Tensor, meta1: torch.Tensor
                      ) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-kind cosines (B,S,N,M) of the local descriptors and products (B,S,N,M) of the meta descriptors: two
    batched matrix products (the descriptors are inputs, never trained here: no autograd)."""
    with torch.no_grad():
        return local0 @ local1.transpose(-1, -2), meta0 @ meta1.transpose(-1, -2)


def selected_from_kinds(cos: torch.Tensor, meta_dot: torch.Tensor) -> torch.Tensor:
    """Invariance-selected similarity 1 - d/2 in [0, 1] from per-kind cosines and meta products (B,S,...) ->
    (B,...): d = sum_s softmax_s(m_s.m_s') ||l_s - l_s'|| (the descriptor model's distance)."""
    dist = (2.0 - 2.0 * cos).clamp(min=0.0).sqrt()
    return 1.0 - 0.5 * (torch.softmax(meta_dot, dim=1) * dist).sum(1)


def selected_similarity(local0: torch.Tensor, local1: torch.Tensor, meta0: torch.Tensor, meta1: torch.Tensor
                        ) -> torch.Tensor:
    """Dense invariance-selected similarity: local (B,S,N,D), (B,S,M,D), meta (B,S,N,Dm), (B,S,M,Dm) -> (B,N,M)."""
    return selected_from_kinds(*kind_similarities(local0, local1, meta0, meta1))


def selected_similarity_at(cos: torch.Tensor, meta_dot: torch.Tensor, idx: torch.Tensor, reverse: bool = False
                           ) -> torch.Tensor:
    """The similarity of each keypoint of image 0 with its K candidates idx (B,N,K) only, from the per-kind
    matrices (B,S,N,M) of ``kind_similarities``: -> (B,N,K) (element-wise work on N K S entries, not N M S).
    reverse: the same for the keypoints of image 1, idx (B,M,K) indices in image 0 -> (B,M,K), read from the
    same matrices (the small index is transposed, not the N x M matrices)."""
    s = cos.shape[1]
    if reverse:
        at = idx.transpose(1, 2)[:, None].expand(-1, s, -1, -1)  # (B,S,K,M)
        return selected_from_kinds(torch.gather(cos, 2, at), torch.gather(meta_dot, 2, at)).transpose(1, 2)
    at = idx[:, None].expand(-1, s, -1, -1)
    return selected_from_kinds(torch.gather(cos, 3, at), torch.gather(meta_dot, 3, at))


def gather_rows(x: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """x (B,M,C), idx (B,N,K) int64 in [0, M) -> (B,N,K,C) (one flat index_select: exports as a single Gather)."""
    b, m, c = x.shape
    n, k = idx.shape[1:]
    offset = (torch.arange(b, device=idx.device) * m).view(b, 1, 1)
    return x.reshape(b * m, c).index_select(0, (idx + offset).reshape(-1)).reshape(b, n, k, c)


def knn_by_position(kpts: torch.Tensor, valid: torch.Tensor | None, k: int) -> torch.Tensor:
    """(B,N,2), (B,N) bool or None (all valid) -> (B,N,K) indices of the K nearest valid keypoints (itself
    included)."""
    d = torch.cdist(kpts, kpts)
    if valid is not None:
        d = d + (~valid)[:, None, :].to(kpts.dtype) * 1e6
    return torch.topk(d, k, dim=-1, largest=False).indices


def top_k_similar(sim: torch.Tensor, valid1: torch.Tensor | None, k: int) -> torch.Tensor:
    """(B,N,M) similarity, (B,M) bool or None (all valid) -> (B,N,K) indices of the K most similar valid
    keypoints of the other image."""
    if valid1 is not None:
        sim = sim + (~valid1)[:, None, :].to(sim.dtype) * NEG
    return torch.topk(sim, k, dim=-1).indices


def mlp(dims: list[int]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i in range(1, len(dims)):
        layers.append(nn.Linear(dims[i - 1], dims[i]))
        if i < len(dims) - 1:
            layers += [nn.LayerNorm(dims[i]), nn.GELU()]
    return nn.Sequential(*layers)


class FourierPositionEncoding(nn.Module):
    """(B,N,2) normalised keypoints -> (B,N,C): [cos, sin] of a learned linear projection (LightGlue-style)."""

    def __init__(self, dim: int, gamma: float = 1.0):
        super().__init__()
        self.proj = nn.Linear(2, dim // 2, bias=False)
        nn.init.normal_(self.proj.weight, std=gamma ** -2)

    def forward(self, p: torch.Tensor) -> torch.Tensor:
        x = self.proj(p)
        return torch.cat([x.cos(), x.sin()], -1)


class RelativePositionBias(nn.Module):
    """Offsets (...,2) of the source keypoint from the query keypoint (normalised units) -> (...,H) logit terms."""

    def __init__(self, heads: int, hidden: int = 16, scale: float = 8.0):
        super().__init__()
        self.scale = scale  # normalised offsets are small (neighbours are close): bring them to ~unit range
        self.net = nn.Sequential(nn.Linear(2, hidden), nn.GELU(), nn.Linear(hidden, heads))

    def forward(self, offsets: torch.Tensor) -> torch.Tensor:
        return self.net(offsets * self.scale)


class ResidualAttention(nn.Module):
    """One attention layer with additive logit terms and matchability reweighting.

    x (B,N,C) queries; src (B,M,C) sources; idx (B,N,K) source indices (sparse) or None (dense: K = M);
    bias (B,N,K,H) or (B,N,M,H) extra logit terms (or None); valid_src (B,M) bool ->
    (B,N,C) updated x, (B,M) matchability logits of the sources (None without matchability)."""

    def __init__(self, dim: int, heads: int, matchability: bool):
        super().__init__()
        self.heads, self.head_dim = heads, dim // heads
        self.q, self.k, self.v = nn.Linear(dim, dim), nn.Linear(dim, dim), nn.Linear(dim, dim)
        self.merge = nn.Linear(dim, dim)
        self.ffn = mlp([2 * dim, 2 * dim, dim])
        self.matchability = nn.Linear(dim, 1) if matchability else None
        self.beta = nn.Parameter(torch.ones(heads)) if matchability else None  # weight of log mu on the logits

    def forward(self, x: torch.Tensor, src: torch.Tensor, idx: torch.Tensor | None, bias: torch.Tensor | None,
                valid_src: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        h, d = self.heads, self.head_dim
        q = self.q(x).view(b, n, 1, h, d)
        k, v = self.k(src), self.v(src)  # (B,M,C)
        key_bias = (~valid_src).to(x.dtype)[..., None] * NEG  # (B,M,1)
        z = None
        if self.matchability is not None:
            z = self.matchability(src)  # (B,M,1) logits
            log_mu = F.logsigmoid(z)
            v = v * log_mu.exp()
            key_bias = key_bias + log_mu * self.beta  # (B,M,H)
        key_bias = key_bias.expand(-1, -1, h)
        if idx is None:  # dense: every source, (B,N,M,H) logits by matrix products
            kh, vh = k.view(b, -1, h, d).transpose(1, 2), v.view(b, -1, h, d).transpose(1, 2)  # (B,H,M,d)
            logits = (q.view(b, n, h, d).transpose(1, 2) @ kh.transpose(2, 3)).permute(0, 2, 3, 1) / math.sqrt(d)
            logits = logits + key_bias[:, None]
            if bias is not None:
                logits = logits + bias
            attn = torch.softmax(logits, dim=2)  # (B,N,M,H)
            msg = (attn.permute(0, 3, 1, 2) @ vh).transpose(1, 2).reshape(b, n, c)
        else:  # sparse: gathered neighbours, (B,N,K,H) logits
            k, v, kb = gather_rows(k, idx), gather_rows(v, idx), gather_rows(key_bias, idx)  # (B,N,K,*)
            kk = idx.shape[2]
            logits = (q * k.view(b, n, kk, h, d)).sum(-1) / math.sqrt(d) + kb
            if bias is not None:
                logits = logits + bias
            attn = torch.softmax(logits, dim=2)
            msg = (attn[..., None] * v.view(b, n, kk, h, d)).sum(2).reshape(b, n, c)
        return x + self.ffn(torch.cat([x, self.merge(msg)], -1)), (None if z is None else z[..., 0])


class SparseMatcher(nn.Module):
    default_conf = {
        "num_kinds": 4,  # FeatLoc descriptor kinds S
        "local_dim": 64,  # D
        "meta_dim": 16,  # Dm
        "dim": 96,  # C
        "heads": 4,
        "layers": 4,  # self + cross attention pairs
        "attention": "sparse",  # "sparse" (mined neighbourhoods) | "dense" (ablation)
        "k_self": 16,  # neighbours by position (same image)
        "k_cross": 16,  # neighbours by similarity (other image)
        "mine_every": 2,  # re-mine the cross neighbours from the current features every this many layers
        "mining_kind": 3,  # first mining: cosine of this descriptor kind (3 = ri_ii, invariant to rotation and light)
        "similarity_bias": True,  # invariance-selected similarity on the cross-attention logits
        "position_bias": True,  # learned function of the relative position on the self-attention logits
        "matchability": True,  # matchability bias on the logits + rescaled values
        "similarity_prior": False,  # + learned weighted sum of the per-kind cosines on the assignment scores
        "filter_threshold": 0.1,  # match confidence threshold
        "deep_supervision": False,  # trained with the assignment loss after every layer (needed by early_exit)
        "early_exit": False,  # stop when the intermediate assignment is confident (PyTorch, inference only)
        "exit_min_layers": 2,  # first layer count after which the exit is checked
        "exit_confidence": 0.9,  # a keypoint is settled when its most likely outcome has P >= this
        "exit_ratio": 0.95,  # share of settled keypoints (in both images) that ends the forward pass
    }

    def __init__(self, conf: dict | None = None):
        super().__init__()
        unknown = set(conf or {}) - set(self.default_conf)
        if unknown:
            raise ValueError(f"SparseMatcher: unknown configuration keys {sorted(unknown)}")
        self.conf = c = {**self.default_conf, **(conf or {})}
        if c["attention"] not in ("sparse", "dense"):
            raise ValueError(f"SparseMatcher: attention must be 'sparse' or 'dense', got {c['attention']!r}")
        dim, heads = c["dim"], c["heads"]
        if dim % heads or dim % 2:
            raise ValueError(f"SparseMatcher: dim {dim} must be even and divisible by heads {heads}")
        if c["early_exit"] and not c["deep_supervision"]:
            raise ValueError("SparseMatcher: early_exit needs weights trained with deep_supervision (the "
                             "intermediate assignments of other weights are meaningless)")
        in_dim = c["num_kinds"] * (c["local_dim"] + c["meta_dim"])
        self.input_proj = mlp([in_dim, 2 * dim, dim])
        self.posenc = FourierPositionEncoding(dim)
        self.self_attn = nn.ModuleList([ResidualAttention(dim, heads, c["matchability"]) for _ in range(c["layers"])])
        self.cross_attn = nn.ModuleList([ResidualAttention(dim, heads, c["matchability"]) for _ in range(c["layers"])])
        self.position_bias = nn.ModuleList([RelativePositionBias(heads) for _ in range(c["layers"])]) \
            if c["position_bias"] else None
        # alpha_h * sim + offset_h: init alpha = 10 (a similarity gap of 0.1 -> one logit)
        self.sim_scale = nn.Parameter(torch.full((c["layers"], heads), 10.0)) if c["similarity_bias"] else None
        # w_s * cos_s on the assignment scores; init 2.5 each: a mean-cosine gap of 0.1 -> one logit
        self.prior_weights = nn.Parameter(torch.full((c["num_kinds"],), 2.5)) if c["similarity_prior"] else None
        self.final_proj = nn.Linear(dim, dim)
        self.final_matchability = nn.Linear(dim, 1)

    # ------------------------------------------------------------------------------------------------ pieces
    def embed(self, local: torch.Tensor, meta: torch.Tensor, kpts_n: torch.Tensor) -> torch.Tensor:
        """local (B,S,N,D), meta (B,S,N,Dm), normalised keypoints (B,N,2) -> (B,N,C)."""
        b, s, n, _ = local.shape
        desc = torch.cat([local.permute(0, 2, 1, 3).reshape(b, n, -1), meta.permute(0, 2, 1, 3).reshape(b, n, -1)], -1)
        return self.input_proj(desc) + self.posenc(kpts_n)

    def _self_bias(self, layer: int, kpts_n: torch.Tensor, idx: torch.Tensor | None) -> torch.Tensor | None:
        if self.position_bias is None:
            return None
        src = kpts_n[:, None] if idx is None else gather_rows(kpts_n, idx)  # (B,1|N,K,2)
        return self.position_bias[layer](src - kpts_n[:, :, None])

    def _cross_bias(self, layer: int, sim: torch.Tensor | None) -> torch.Tensor | None:
        """sim (B,N,K) at the mined pairs or (B,N,M) dense -> (B,N,K|M,H) logit terms."""
        if self.sim_scale is None:
            return None
        return sim[..., None] * self.sim_scale[layer]

    def assignment(self, x0: torch.Tensor, x1: torch.Tensor, valid0: torch.Tensor | None, valid1: torch.Tensor | None,
                   cos: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(B,N,C), (B,M,C), validity (B,N), (B,M) or None (no padding), per-kind cosines (B,S,N,M) (used with
        similarity_prior) -> log P (B,N,M) of the pairs, log P of 'unmatched' for each keypoint (B,N), (B,M)."""
        f0, f1 = self.final_proj(x0), self.final_proj(x1)
        scores = f0 @ f1.transpose(1, 2) / math.sqrt(f0.shape[-1])
        if self.prior_weights is not None:
            scores = scores + (cos * self.prior_weights[:, None, None]).sum(1)
        if valid0 is not None:  # padding (training batches)
            scores = scores.masked_fill(~(valid0[:, :, None] & valid1[:, None, :]), NEG)
        z0, z1 = self.final_matchability(x0)[..., 0], self.final_matchability(x1)[..., 0]
        logp = (F.log_softmax(scores, 2) + F.log_softmax(scores, 1)
                + F.logsigmoid(z0)[:, :, None] + F.logsigmoid(z1)[:, None, :])
        return logp, F.logsigmoid(-z0), F.logsigmoid(-z1)

    def settled(self, logp: torch.Tensor, un0: torch.Tensor, un1: torch.Tensor) -> bool:
        """Early-exit test on an assignment (log P (B,N,M), log P unmatched (B,N), (B,M)): at least exit_ratio of
        the keypoints of each image have a most likely outcome with P >= exit_confidence."""
        thr = math.log(self.conf["exit_confidence"])
        best0 = torch.maximum(logp.max(2).values, un0)
        best1 = torch.maximum(logp.max(1).values, un1)
        ratio = self.conf["exit_ratio"]
        return bool(((best0 >= thr).float().mean(1) >= ratio).all() and ((best1 >= thr).float().mean(1) >= ratio).all())

    # ------------------------------------------------------------------------------------------------ forward
    def forward(self, data: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """data: keypoints0 (B,N,2), keypoints1 (B,M,2) pixels; image_size0, image_size1 (B,2) (width, height);
        local0 (B,S,N,D), local1 (B,S,M,D) unit; meta0 (B,S,N,Dm), meta1 (B,S,M,Dm); optional valid0 (B,N),
        valid1 (B,M) bool (padding). Sparse attention needs N, M >= k_self and >= k_cross.
        -> log_assignment (B,N,M), log_unmatched0 (B,N), log_unmatched1 (B,M),
           matches0 (B,N) int64 index in image 1 or -1, matching_scores0 (B,N) confidence (0 if unmatched);
           with matchability the per-layer matchability logits matchability0 (L,B,N), matchability1 (L,B,M);
           layers_run (int); training with deep_supervision: layer_assignments, a list of the L-1 intermediate
           (log_assignment, log_unmatched0, log_unmatched1)."""
        c = self.conf
        k0, k1 = data["keypoints0"], data["keypoints1"]
        b, n, m = k0.shape[0], k0.shape[1], k1.shape[1]
        padded = "valid0" in data
        valid0 = data["valid0"] if padded else torch.ones(b, n, dtype=torch.bool, device=k0.device)
        valid1 = data["valid1"] if padded else torch.ones(b, m, dtype=torch.bool, device=k1.device)
        kn0 = normalize_keypoints(k0, data["image_size0"])
        kn1 = normalize_keypoints(k1, data["image_size1"])
        l0, l1, m0, m1 = data["local0"], data["local1"], data["meta0"], data["meta1"]
        x0 = self.embed(l0, m0, kn0)
        x1 = self.embed(l1, m1, kn1)
        sparse = c["attention"] == "sparse"
        cos, meta_dot = kind_similarities(l0, l1, m0, m1)  # (B,S,N,M) each
        if sparse:  # candidates by the cosine of the mining kind; the selected similarity on mined pairs only
            mask0, mask1 = (valid0, valid1) if padded else (None, None)  # no masking work without padding
            self0 = knn_by_position(kn0, mask0, c["k_self"])
            self1 = knn_by_position(kn1, mask1, c["k_self"])
            proxy = cos[:, c["mining_kind"]]  # (B,N,M)
        else:
            self0 = self1 = None
            sim01 = selected_from_kinds(cos, meta_dot)  # (B,N,M)
            sim10 = sim01.transpose(1, 2)
        z0s, z1s, layer_assignments = [], [], []
        deep = c["deep_supervision"] and self.training
        exit_check = c["early_exit"] and not self.training and not torch.jit.is_tracing()
        result = None
        for i in range(c["layers"]):
            x0, z0 = self.self_attn[i](x0, x0, self0, self._self_bias(i, kn0, self0), valid0)
            x1, z1 = self.self_attn[i](x1, x1, self1, self._self_bias(i, kn1, self1), valid1)
            z0s.append(z0)
            z1s.append(z1)
            if sparse and i % c["mine_every"] == 0:  # mine on the input descriptors, then on the current features
                mining = proxy if i == 0 else x0 @ x1.transpose(1, 2)
                cross01 = top_k_similar(mining, mask1, c["k_cross"])
                cross10 = top_k_similar(mining.transpose(1, 2), mask0, c["k_cross"])
                if self.sim_scale is not None:
                    sim01 = selected_similarity_at(cos, meta_dot, cross01)
                    sim10 = selected_similarity_at(cos, meta_dot, cross10, reverse=True)
                else:
                    sim01 = sim10 = None
            y0, _ = self.cross_attn[i](x0, x1, cross01 if sparse else None, self._cross_bias(i, sim01), valid1)
            y1, _ = self.cross_attn[i](x1, x0, cross10 if sparse else None, self._cross_bias(i, sim10), valid0)
            x0, x1 = y0, y1
            if i == c["layers"] - 1:
                break
            if deep:
                layer_assignments.append(self.assignment(x0, x1, valid0 if padded else None,
                                                         valid1 if padded else None, cos))
            elif exit_check and i + 1 >= c["exit_min_layers"]:
                result = self.assignment(x0, x1, valid0 if padded else None, valid1 if padded else None, cos)
                if self.settled(*result):
                    break
                result = None
        layers_run = i + 1
        logp, un0, un1 = result if result is not None else self.assignment(
            x0, x1, valid0 if padded else None, valid1 if padded else None, cos)
        matches0, scores0 = mutual_matches(logp, c["filter_threshold"])
        out = {"log_assignment": logp, "log_unmatched0": un0, "log_unmatched1": un1,
               "matches0": matches0, "matching_scores0": scores0, "layers_run": layers_run}
        if deep:
            out["layer_assignments"] = layer_assignments
        if c["matchability"]:  # per-layer matchability logits (self-attention layers), (L,B,N) and (L,B,M)
            out["matchability0"], out["matchability1"] = torch.stack(z0s), torch.stack(z1s)
        return out


def mutual_matches(logp: torch.Tensor, threshold: float | None) -> tuple[torch.Tensor, torch.Tensor]:
    """log P (B,N,M) -> matches0 (B,N) (index in image 1 or -1) and confidences exp(log P) (B,N): mutual argmax
    with P > threshold (None: every mutual argmax, e.g. mutual nearest neighbours of a similarity)."""
    best0, j = logp.max(2)
    i = logp.max(1).indices  # (B,M)
    mutual = torch.gather(i, 1, j) == torch.arange(logp.shape[1], device=logp.device)[None]
    conf = best0.exp()
    keep = mutual if threshold is None else mutual & (conf > threshold)
    return torch.where(keep, j, torch.full_like(j, -1)), torch.where(keep, conf, torch.zeros_like(conf))


def assignment_nll(logp: torch.Tensor, un0: torch.Tensor, un1: torch.Tensor, gt_matches0: torch.Tensor,
                   gt_matches1: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """log P (B,N,M), log P unmatched (B,N), (B,M), ground truth (B,N), (B,M) (index, -1 unmatched, -2 ignored)
    -> mean -log P of the true pairs (B,), mean -log P of the dustbin for the unmatched keypoints (B,)."""
    pos0 = gt_matches0 >= 0
    neg0, neg1 = gt_matches0 == -1, gt_matches1 == -1
    lp = torch.gather(logp, 2, gt_matches0.clamp(min=0)[..., None])[..., 0]  # (B,N)
    matched = -(lp * pos0).sum(1) / pos0.sum(1).clamp(min=1)
    unmatched = -((un0 * neg0).sum(1) + (un1 * neg1).sum(1)) / (neg0.sum(1) + neg1.sum(1)).clamp(min=1)
    return matched, unmatched


def assignment_loss(out: dict[str, torch.Tensor], gt_matches0: torch.Tensor, gt_matches1: torch.Tensor
                    ) -> dict[str, torch.Tensor]:
    """Negative log-likelihood of the ground-truth assignment with unmatched terms (as SuperGlue / LightGlue),
    and matchability supervision of every layer's matchability logits.
    gt_matches0 (B,N): index in image 1, -1 unmatched, -2 ignored (ambiguous or padding); gt_matches1 (B,M) alike.
    -> {"nll": (matched + unmatched) / 2 of the final assignment, averaged with every intermediate one when the
        output has layer_assignments (deep supervision, as LightGlue), "final_nll": that of the final assignment
        alone, "matched": mean -log P of the true pairs, "unmatched": mean -log P of the dustbin for unmatched
        keypoints (final assignment), "matchability": mean over layers of the BCE of the layer's matchability
        logits against 'has a match' (0 without matchability)}."""
    logp = out["log_assignment"]
    pos0, pos1 = gt_matches0 >= 0, gt_matches1 >= 0
    neg0, neg1 = gt_matches0 == -1, gt_matches1 == -1
    matched, unmatched = assignment_nll(logp, out["log_unmatched0"], out["log_unmatched1"], gt_matches0, gt_matches1)
    final_nll = (0.5 * (matched + unmatched)).mean()
    layer_nlls = [final_nll] + [(0.5 * sum(assignment_nll(*a, gt_matches0, gt_matches1))).mean()
                                for a in out.get("layer_assignments", [])]
    bce = logp.new_zeros(())
    if "matchability0" in out:
        terms = []
        for z, pos, neg in ((out["matchability0"], pos0, neg0), (out["matchability1"], pos1, neg1)):
            known = (pos | neg).expand_as(z)
            target = pos.to(z.dtype).expand_as(z)
            terms.append(F.binary_cross_entropy_with_logits(z[known], target[known]) if bool(known.any())
                         else z.sum() * 0)
        bce = 0.5 * (terms[0] + terms[1])
    return {"nll": sum(layer_nlls) / len(layer_nlls), "final_nll": final_nll, "matched": matched.mean(),
            "unmatched": unmatched.mean(), "matchability": bce}


# ----------------------------------------------------------------------------------------------------
# architecture file and ONNX export
# ----------------------------------------------------------------------------------------------------

ARCHITECTURE_FORMAT = "featloc_ros.sparse_matcher/1"
ONNX_INPUTS = ("keypoints0", "keypoints1", "image_size0", "image_size1", "local0", "local1", "meta0", "meta1")
# plus "filter_threshold" (1,) float: the match confidence threshold is an input, not baked into the graph
ONNX_OUTPUTS = ("matches0", "matching_scores0")


def save_architecture(weights, model_conf: dict):
    return architecture.save_architecture(weights, model_conf, ARCHITECTURE_FORMAT)


def load_architecture(weights) -> dict:
    return architecture.load_architecture(weights, ARCHITECTURE_FORMAT, "SparseMatcher")


class _OnnxWrapper(nn.Module):
    def __init__(self, model: SparseMatcher):
        super().__init__()
        self.model = model

    def forward(self, *inputs):
        *data, threshold = inputs
        out = self.model(dict(zip(ONNX_INPUTS, data)))
        return mutual_matches(out["log_assignment"], threshold)


def example_inputs(n: int, m: int, conf: dict, seed: int = 0) -> tuple[torch.Tensor, ...]:
    """Inputs in ONNX_INPUTS order (batch 1, 640x480 images) for the export and its check: random keypoints
    and descriptors in image 0; image 1 holds a shifted, noisy copy of the first min(n, m) of them (in shuffled
    order) plus random ones, so that an untrained matcher already finds matches."""
    g = torch.Generator().manual_seed(seed)
    size = torch.tensor([[640.0, 480.0]])
    s, d, dm = conf["num_kinds"], conf["local_dim"], conf["meta_dim"]
    k0, l0, m0 = (torch.rand(1, n, 2, generator=g) * size, F.normalize(torch.randn(1, s, n, d, generator=g), dim=-1),
                  torch.randn(1, s, n, dm, generator=g))
    k1, l1, m1 = (torch.rand(1, m, 2, generator=g) * size, F.normalize(torch.randn(1, s, m, d, generator=g), dim=-1),
                  torch.randn(1, s, m, dm, generator=g))
    common = min(n, m)
    perm = torch.randperm(m, generator=g)[:common]
    k1[:, perm] = k0[:, :common] + 5.0
    l1[:, :, perm] = F.normalize(l0[:, :, :common] + 0.1 * torch.randn(1, s, common, d, generator=g), dim=-1)
    m1[:, :, perm] = m0[:, :, :common]
    return k0, k1, size, size, l0, l1, m0, m1


def export_onnx(model: SparseMatcher, path, opset: int = 18, verify: bool = True) -> dict:
    """Export ONNX_INPUTS + filter_threshold (batch 1, dynamic keypoint counts N, M >= max(k_self, k_cross))
    -> ONNX_OUTPUTS with the dynamo exporter; with ``verify``, compares onnxruntime with PyTorch on other keypoint
    counts, threshold 0 (every mutual best pair)."""
    import copy
    from pathlib import Path

    import numpy as np

    model = copy.deepcopy(model).eval()
    model.conf = {**model.conf, "early_exit": False}  # data-dependent depth does not export: every layer runs
    wrapper = _OnnxWrapper(model).eval()
    c = model.conf
    kmin = max(c["k_self"], c["k_cross"]) if c["attention"] == "sparse" else 1
    n_dim, m_dim = torch.export.Dim("n", min=kmin, max=100000), torch.export.Dim("m", min=kmin, max=100000)
    dyn = {"keypoints0": {1: n_dim}, "keypoints1": {1: m_dim}, "image_size0": None, "image_size1": None,
           "local0": {2: n_dim}, "local1": {2: m_dim}, "meta0": {2: n_dim}, "meta1": {2: m_dim},
           "filter_threshold": None}
    threshold = torch.tensor([c["filter_threshold"]], dtype=torch.float32)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with torch.no_grad():
        prog = torch.onnx.export(wrapper, (*example_inputs(96, 80, c), threshold), dynamo=True,
                                 opset_version=opset, input_names=[*ONNX_INPUTS, "filter_threshold"],
                                 output_names=list(ONNX_OUTPUTS),
                                 dynamic_shapes={"inputs": tuple(dyn.values())}, external_data=False, verbose=False)
    prog.save(str(path))
    result = {"path": str(path), "opset": opset}
    if verify:
        import onnxruntime as ort

        inputs = (*example_inputs(130, 110, c, seed=1), torch.zeros(1))
        sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        got = sess.run(None, {k: v.numpy() for k, v in zip([*ONNX_INPUTS, "filter_threshold"], inputs)})
        with torch.no_grad():
            want = [t.numpy() for t in wrapper(*inputs)]
        result["same_matches"] = float(np.mean(got[0] == want[0]))
        result["matches"] = int((want[0] >= 0).sum())
        result["max_abs_diff"] = float(np.abs(got[1] - want[1]).max())
    return result
