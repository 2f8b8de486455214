"""Training task ``matcher``: SparseMatcher (featloc_ros.nn.sparse_matcher) on frozen FeatLoc features of the
homographic (and, with data.rendered_fraction > 0, rendered non-planar) pairs of ``matcher_data.MatcherPairs``;
loss = assignment NLL (with unmatched terms) + matchability supervision. Logs the precision and recall of the
predicted matches, and of mutual nearest neighbours of the invariance-selected similarity on the same keypoints
(the baseline the matcher must beat)."""

from __future__ import annotations

from ..nn.sparse_matcher import SparseMatcher, assignment_loss, export_onnx, load_architecture, save_architecture
from .matcher_data import DEFAULT_MATCHER_DATA_CONF, MatcherPairs

DEFAULT_MATCHER_LOSS_CONF = {"weights": {
    "nll": 1.0, "matchability": 0.5,
    "matched": 0.0,  # > 0: + w * the NLL's true-pair term again (mean -log P of the true pairs): recall weighted up
    "near_miss": 0.0,  # > 0 (with data.near_miss_radius): + w * mean -log P(unmatched) of the near-miss keypoints
}}

DEFAULT_MATCHER_EXPORT_CONF = {
    "weights": None,  # state dict; relative paths are relative to the repository root; None: <out>/model.pt
    "onnx": None,
    "summary": None,
    "onnx_opset": 18,
}


def match_quality(matches0, gt0) -> tuple[float, float]:
    """matches0 (B,N) (index or -1), gt0 (B,N) ground truth (index, -1 unmatched, -2 ignored) ->
    (precision over predictions with a known label, recall of the true matches)."""
    pred = matches0 >= 0
    known = pred & (gt0 != -2)
    correct = pred & (matches0 == gt0)
    precision = float(correct.sum()) / max(1, int(known.sum()))
    recall = float(correct.sum()) / max(1, int((gt0 >= 0).sum()))
    return precision, recall


class MatcherTask:
    name = "matcher"
    model_class = SparseMatcher
    save_architecture = staticmethod(save_architecture)  # weights file -> its architecture file
    load_architecture = staticmethod(load_architecture)  # the settings stored there ({} without a file)
    sections = {"data": DEFAULT_MATCHER_DATA_CONF, "loss": DEFAULT_MATCHER_LOSS_CONF,
                "export": DEFAULT_MATCHER_EXPORT_CONF}
    panels = [("total", ["total"]), ("assignment NLL", ["nll", "final_nll", "matched", "unmatched", "near_miss"]),
              ("matchability BCE", ["matchability"]),
              ("precision", ["precision", "nn_precision"]), ("recall", ["recall", "nn_recall"]),
              ("ground truth", ["gt_match_fraction"])]

    @staticmethod
    def validate(conf: dict):
        m = {**SparseMatcher.default_conf, **conf["model"]}
        if conf["data"]["max_keypoints"] < max(m["k_self"], m["k_cross"]):
            raise ValueError("data.max_keypoints must be >= model.k_self and model.k_cross")

    @staticmethod
    def make_data(conf: dict, seed: int) -> MatcherPairs:
        from .train import resolve_path

        return MatcherPairs({**conf["data"], "features": str(resolve_path(conf["data"]["features"]))}, seed)

    @staticmethod
    def step_loss(model: SparseMatcher, data: MatcherPairs, indices: list[int], conf: dict, gen):
        import torch

        from ..nn.sparse_matcher import mutual_matches, selected_similarity

        batch = data.batch(indices)
        out = model(batch)
        losses = assignment_loss(out, batch["gt0"], batch["gt1"])
        w = conf["loss"]["weights"]
        total = w["nll"] * losses["nll"] + w["matchability"] * losses["matchability"]
        if w.get("matched", 0.0) > 0:
            total = total + w["matched"] * losses["matched"]
        if w.get("near_miss", 0.0) > 0:
            near = torch.cat([out["log_unmatched0"][batch["near0"]], out["log_unmatched1"][batch["near1"]]])
            losses["near_miss"] = -near.mean() if near.numel() else total * 0
            total = total + w["near_miss"] * losses["near_miss"]
        logs = {k: float(v.detach()) for k, v in losses.items()}
        with torch.no_grad():
            logs["precision"], logs["recall"] = match_quality(out["matches0"], batch["gt0"])
            sim = selected_similarity(batch["local0"], batch["local1"], batch["meta0"], batch["meta1"])
            sim = sim.masked_fill(~(batch["valid0"][:, :, None] & batch["valid1"][:, None]), -1.0)
            nn0, _ = mutual_matches(sim, -1.0)
            logs["nn_precision"], logs["nn_recall"] = match_quality(nn0, batch["gt0"])
            logs["gt_match_fraction"] = float((batch["gt0"] >= 0).sum()) / max(1, int(batch["valid0"].sum()))
        logs["total"] = float(total)
        return total, logs

    @staticmethod
    def progress(logs: dict) -> str:
        return (f"nll {logs['nll']:.3f} P/R {logs['precision']:.2f}/{logs['recall']:.2f} "
                f"(MNN {logs['nn_precision']:.2f}/{logs['nn_recall']:.2f})")

    @staticmethod
    def export_onnx(model: SparseMatcher, path, ec: dict) -> dict:
        return export_onnx(model, path, opset=ec["onnx_opset"])
