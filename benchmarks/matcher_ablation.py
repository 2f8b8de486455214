"""Ablation of the sparse-attention matcher (featloc_ros.nn.sparse_matcher): time per image pair of each
architecture variant (dense vs sparse attention; without the descriptor-similarity term, the relative-position
term, the matchability reweighting), PyTorch, 2 threads, FeatLoc features of real image pairs; and the accuracy
of each variant for which trained weights exist (homography sets, as homography_benchmark.py).

Timing does not depend on the weight values, so every variant is timed; accuracy needs weights trained with the
variant's architecture (models/featloc_matcher_v1.pt is the full sparse model; the same weights run with dense
attention are reported as such). Writes results/matcher_ablation.{json,md}.

    python benchmarks/matcher_ablation.py [--keypoints 512 1024 2048] [--runs 10]
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np

from common import markdown_table, write_results  # noqa: E402

VARIANTS = {
    "sparse (full model)": {},
    "dense attention": {"attention": "dense"},
    "sparse, no descriptor-similarity term": {"similarity_bias": False},
    "sparse, no relative-position term": {"position_bias": False},
    "sparse, no matchability reweighting": {"matchability": False},
}


def pair_features(max_keypoints: int):
    """FeatLoc features (ONNX Runtime) of two consecutive frames of the fox sequence, or of two demo renders."""
    import cv2

    from featloc_ros.evaluation.datasets import shared_data_dir
    from featloc_ros.features import create_extractor

    ext = create_extractor({"name": "featloc", "max_keypoints": max_keypoints, "resize_max": 640,
                            "backend": "onnxruntime", "num_threads": 2})
    fox = sorted((shared_data_dir() / "instant_ngp_fox" / "images").glob("*.jpg"))
    if len(fox) >= 2:
        imgs = [cv2.cvtColor(cv2.imread(str(p)), cv2.COLOR_BGR2RGB) for p in fox[:2]]
        source = "instant_ngp_fox frames 0-1 (resized to 640 px)"
    else:
        from featloc_ros.demo.scene import DemoScene, camera_path, demo_intrinsics

        scene, K = DemoScene(), demo_intrinsics(640, 480)
        imgs = [scene.render(T, K, 640, 480)[0] for T in camera_path("mapping", 60)[:2]]
        source = "demo room renders (fox not available)"
    return [ext(im) for im in imgs], source


def to_inputs(f0, f1):
    import torch

    from featloc_ros.matching.invariance_selected import split_selected

    out = {}
    for i, f in enumerate((f0, f1)):
        local, meta = split_selected(f.descriptors, 4, 64, 16)
        out[f"keypoints{i}"] = torch.from_numpy(f.keypoints)[None]
        out[f"local{i}"] = torch.from_numpy(local)[None]
        out[f"meta{i}"] = torch.from_numpy(meta)[None]
        out[f"image_size{i}"] = torch.tensor([f.image_size], dtype=torch.float32)
    return out


def main(argv=None) -> int:
    import torch

    from featloc_ros.nn.sparse_matcher import SparseMatcher, load_architecture

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--keypoints", type=int, nargs="+", default=[512, 1024, 2048])
    p.add_argument("--runs", type=int, default=10)
    args = p.parse_args(argv)
    torch.set_num_threads(2)
    try:
        from featloc_ros.features.featloc import resolve_model_file

        shipped = load_architecture(resolve_model_file(None, "featloc_matcher_v1.pt"))
    except FileNotFoundError:
        shipped = {}
    results, rows, source = {}, [], None
    for k in args.keypoints:
        feats, source = pair_features(k)
        data = to_inputs(*feats)
        n = (len(feats[0]), len(feats[1]))
        for name, override in VARIANTS.items():
            net = SparseMatcher({**shipped, **override}).eval()
            times = []
            with torch.inference_mode():
                for i in range(args.runs + 2):
                    t0 = time.perf_counter()
                    net(data)
                    if i >= 2:
                        times.append(1e3 * (time.perf_counter() - t0))
            r = {"keypoints": n, "median_ms": float(np.median(times)), "p90_ms": float(np.percentile(times, 90)),
                 "parameters": sum(q.numel() for q in net.parameters()), "conf": {**shipped, **override}}
            results.setdefault(name, {})[k] = r
            rows.append([name, f"{n[0]} / {n[1]}", r["parameters"], f"{r['median_ms']:.1f} / {r['p90_ms']:.1f}"])
            print(name, k, f"{r['median_ms']:.1f} ms", flush=True)
    md = ["# Sparse-attention matcher: ablation\n",
          f"Time per image pair (ms, median / p90 of {args.runs} runs after 2 warm-up runs), PyTorch, 2 threads, "
          f"FeatLoc v4 features of {source}; each variant is the shipped architecture with one change. Timing "
          "does not depend on the weights. Accuracy per variant needs weights trained with that architecture: "
          "only the full sparse model is trained (homography and localization accuracy in featloc_matcher.md and "
          "localization.md, where the same weights also run with dense attention); the other variants are not "
          "trained yet.\n",
          markdown_table(["variant", "keypoints (image 0 / 1)", "parameters", "time per pair"], rows)]
    write_results("matcher_ablation", {"settings": vars(args), "source": source, "results": results}, "\n".join(md))
    return 0


if __name__ == "__main__":
    sys.exit(main())
