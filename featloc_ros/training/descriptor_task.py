"""Training task ``descriptors``: FeatLocNet (keypoints, four local descriptors, meta descriptors) on the
homographic pairs of ``data.PairDataset`` with the losses of ``losses`` (the shipped featloc_v* weights)."""

from __future__ import annotations

from ..nn.featloc_net import KINDS, FeatLocNet, export_onnx, load_architecture, save_architecture
from .data import DEFAULT_DATA_CONF, PairDataset, collate
from .losses import DEFAULT_LOSS_CONF, compute_losses
from .train import memory_format

DEFAULT_EXPORT_CONF = {
    "weights": None,  # state dict; relative paths are relative to the repository root; None: <out>/model.pt
    "onnx": None,  # ONNX model (None: no ONNX export)
    "summary": None,  # a copy of summary.json (e.g. next to the weights, for the model card)
    "onnx_nms_radius": 2,
    "onnx_detection_threshold": 0.0,  # valid = survived NMS and borders; the extractor applies its threshold
    "onnx_opset": 18,
}


class DescriptorTask:
    name = "descriptors"
    model_class = FeatLocNet
    save_architecture = staticmethod(save_architecture)  # weights file -> its architecture file
    load_architecture = staticmethod(load_architecture)  # the settings stored there ({} without a file)
    sections = {"data": DEFAULT_DATA_CONF, "loss": DEFAULT_LOSS_CONF, "export": DEFAULT_EXPORT_CONF}
    panels = [("total", ["total"]), ("descriptor (HardNet)", [f"desc_{k}" for k in KINDS]),
              ("variant triplet", [f"var_{k}" for k in KINDS]), ("meta (selected distance)", ["meta"]),
              ("detector", ["repeatability", "peakiness", "reliability", "shift"]),
              ("nearest-neighbour accuracy", ["acc_selected", "acc_concat"]),
              ("selection weight of true pairs", [f"w_{k}" for k in KINDS])]

    @staticmethod
    def validate(conf: dict):
        if conf["data"]["crop_size"] % 32:
            raise ValueError("data.crop_size must be a multiple of 32")
        if conf["loss"]["points_per_image"] > (conf["data"]["crop_size"] // 4) ** 2:
            raise ValueError("loss.points_per_image exceeds the number of 1/4-resolution cells of a crop")

    @staticmethod
    def make_data(conf: dict, seed: int) -> PairDataset:
        return PairDataset(conf["data"], seed)

    @staticmethod
    def step_loss(model: FeatLocNet, data: PairDataset, indices: list[int], conf: dict, gen):
        import torch

        layout = memory_format(conf)  # the model's, set by the trainer
        batch = collate([data[i] for i in indices])
        out = model.forward_dense(torch.cat([batch["A"], batch["B"], batch["B0"]]).contiguous(memory_format=layout))
        if conf["loss"]["weights"]["shift"] > 0:  # A translated by 1 px (x, or x and y, alternately)
            shift = (1, indices[0] // len(indices) % 2)
            moved = torch.roll(batch["A"], shifts=(shift[1], shift[0]), dims=(2, 3))
            out["scores_shifted"] = model.forward_dense(moved.contiguous(memory_format=layout))["scores"]
            out["shift"] = shift
        return compute_losses(out, batch, conf["loss"], model, gen)

    @staticmethod
    def progress(logs: dict) -> str:
        desc = sum(logs[k] for k in logs if k.startswith("desc_")) / len(KINDS)
        return (f"desc {desc:.3f} meta {logs['meta']:.3f} rep {logs['repeatability']:.3f} "
                f"acc_sel {logs['acc_selected']:.2f}")

    @staticmethod
    def export_onnx(model: FeatLocNet, path, ec: dict) -> dict:
        return export_onnx(model, path, nms_radius=ec["onnx_nms_radius"],
                           detection_threshold=ec["onnx_detection_threshold"], opset=ec["onnx_opset"])
