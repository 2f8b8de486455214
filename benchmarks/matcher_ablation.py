"""Ablation of the sparse-attention matcher (featloc_ros.nn.sparse_matcher): time per image pair of each
architecture variant (dense vs sparse attention; without the descriptor-similarity term, the relative-position
term, the matchability reweighting; a smaller model), PyTorch, 2 threads, FeatLoc features of real image pairs;
and the accuracy of each variant trained with the same budget (featloc_ros/training/configs/matcher_ablation.yaml:
the matcher_v1 set-up with 1000 instead of 3000 steps, same seed and data) on the homography sets of
homography_benchmark.py (1024 keypoints; features extracted once per pair and shared by every matcher).

    python benchmarks/matcher_ablation.py [--train] [--keypoints 512 1024 2048] [--runs 10] [--quick]

--train first trains the variants whose weights (models/ablation/matcher_<variant>.pt) are missing, one after
the other (~10 min each, dense ~15 min, 2 cores). Variants without weights get timing only. Writes
results/matcher_ablation.{json,md}.
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np

from common import markdown_table, write_results  # noqa: E402

VARIANTS = {  # name: (weights slug, SparseMatcher overrides of the shipped architecture)
    "sparse (full model)": ("sparse", {}),
    "dense attention": ("dense", {"attention": "dense"}),
    "sparse, no descriptor-similarity term": ("no_similarity", {"similarity_bias": False}),
    "sparse, no relative-position term": ("no_position", {"position_bias": False}),
    "sparse, no matchability reweighting": ("no_matchability", {"matchability": False}),
    "sparse, smaller: 3 layers, k = 8": ("small", {"layers": 3, "k_self": 8, "k_cross": 8}),  # speed
}
ABLATION_CONFIG = "featloc_ros/training/configs/matcher_ablation.yaml"
ACCURACY_KEYPOINTS = 1024


def variant_weights(slug: str):
    from featloc_ros.training.train import REPO_ROOT

    return REPO_ROOT / "models" / "ablation" / f"matcher_{slug}.pt"


def train_missing_variants() -> None:
    """Train, one after the other, the variants without weights (resumable: runs/matcher_ablation_<slug>)."""
    from featloc_ros.training.train import REPO_ROOT, load_config, train

    for name, (slug, override) in VARIANTS.items():
        weights = variant_weights(slug)
        if weights.is_file():
            continue
        print(f"training {name} -> {weights}", flush=True)
        overrides = [f"model.{k}={str(v).lower() if isinstance(v, bool) else v}" for k, v in override.items()]
        summary = weights.with_name(weights.stem + "_training.json")
        overrides += [f"export.weights={weights}", f"export.summary={summary}"]
        train(load_config(REPO_ROOT / ABLATION_CONFIG, overrides), REPO_ROOT / "runs" / f"matcher_ablation_{slug}",
              resume=True)


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


def accuracy(quick: bool) -> tuple[dict, dict]:
    """Homography accuracy of each trained variant (and of the baselines on the same features: invariance-selected
    mutual NN, the shipped matcher_v1 trained 3x longer) -> ({set: {method: summary}}, {method: weights path})."""
    from homography_benchmark import build_sets

    from featloc_ros.evaluation.homography import evaluate_pair, summarize_pairs
    from featloc_ros.features import create_extractor
    from featloc_ros.matching import create_matcher

    matchers = {"invariance-selected mutual NN (featloc_isnn)": "featloc_isnn",
                "shipped matcher_v1 (3000 steps)": {"name": "sparse_attention", "num_threads": 2}}
    trained = {}
    for name, (slug, _) in VARIANTS.items():
        weights = variant_weights(slug)
        if weights.is_file():
            matchers[f"{name}, 1000 steps"] = {"name": "sparse_attention", "weights": str(weights), "num_threads": 2}
            trained[name] = str(weights.relative_to(weights.parents[2]))
    matchers = {k: create_matcher(v) for k, v in matchers.items()}
    ext = create_extractor({"name": "featloc", "max_keypoints": ACCURACY_KEYPOINTS, "resize_max": 0,
                            "backend": "onnxruntime", "num_threads": 2})
    sets, _ = build_sets(quick)
    results = {}
    for set_name, pairs in sets.items():
        evals = {k: [] for k in matchers}
        for pr in pairs:
            f0, f1 = ext(pr.image0), ext(pr.image1)
            for k, matcher in matchers.items():
                m = matcher(f0, f1)
                evals[k].append(evaluate_pair(pr, f0.keypoints, f1.keypoints, m.indices))
        results[set_name] = {k: summarize_pairs(v) for k, v in evals.items()}
        print(set_name, {k: round(v["h_auc"][3], 3) for k, v in results[set_name].items()}, flush=True)
    return results, trained


def timing(keypoints: list[int], runs: int, shipped: dict) -> tuple[dict, list, str]:
    import torch

    from featloc_ros.nn.sparse_matcher import SparseMatcher

    results, rows, source = {}, [], None
    for k in keypoints:
        feats, source = pair_features(k)
        data = to_inputs(*feats)
        n = (len(feats[0]), len(feats[1]))
        for name, (_, override) in VARIANTS.items():
            net = SparseMatcher({**shipped, **override}).eval()
            times = []
            with torch.inference_mode():
                for i in range(runs + 2):
                    t0 = time.perf_counter()
                    net(data)
                    if i >= 2:
                        times.append(1e3 * (time.perf_counter() - t0))
            r = {"keypoints": n, "median_ms": float(np.median(times)), "p90_ms": float(np.percentile(times, 90)),
                 "parameters": sum(q.numel() for q in net.parameters()), "conf": {**shipped, **override}}
            results.setdefault(name, {})[k] = r
            rows.append([name, f"{n[0]} / {n[1]}", r["parameters"], f"{r['median_ms']:.1f} / {r['p90_ms']:.1f}"])
            print(name, k, f"{r['median_ms']:.1f} ms", flush=True)
    return results, rows, source


def main(argv=None) -> int:
    import torch

    from featloc_ros.nn.sparse_matcher import load_architecture

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--keypoints", type=int, nargs="+", default=[512, 1024, 2048])
    p.add_argument("--runs", type=int, default=10)
    p.add_argument("--train", action="store_true", help="train the variants whose weights are missing first")
    p.add_argument("--quick", action="store_true", help="accuracy on a few pairs per set (CI-sized)")
    args = p.parse_args(argv)
    if args.train:
        train_missing_variants()
    torch.set_num_threads(2)
    try:
        from featloc_ros.features.featloc import resolve_model_file

        shipped = load_architecture(resolve_model_file(None, "featloc_matcher_v1.pt"))
    except FileNotFoundError:
        shipped = {}
    times, rows, source = timing(args.keypoints, args.runs, shipped)
    acc, trained = accuracy(args.quick)
    md = ["# Sparse-attention matcher: ablation\n",
          f"Time per image pair (ms, median / p90 of {args.runs} runs after 2 warm-up runs), PyTorch, 2 threads, "
          f"FeatLoc v4 features of {source}; each variant is the shipped architecture with the change its name "
          "says. Timing "
          "does not depend on the weights.\n",
          markdown_table(["variant", "keypoints (image 0 / 1)", "parameters", "time per pair"], rows)]
    if acc:
        set_names = list(acc)
        methods = list(next(iter(acc.values())))
        md += [f"\n## Accuracy of the trained variants ({ACCURACY_KEYPOINTS} keypoints)\n",
               "Each variant trained with the same budget (`" + ABLATION_CONFIG + "`: the matcher_v1 set-up with 1000 "
               "instead of 3000 steps; same seed, data and schedule); weights in models/ablation/. Same FeatLoc v4 "
               "features (ONNX Runtime) for every matcher; homography by OpenCV MAGSAC (3 px) as in "
               "homography_benchmark.py. Cells: AUC@3 of the corner error / correct matches at 3 px per pair. The "
               "mutual-NN baseline and the shipped matcher (3000 steps) on the same features for reference.\n"]
        md.append(markdown_table(["matcher", *[f"{s} ({acc[s][methods[0]]['num_pairs']})" for s in set_names]],
                                 [[m, *[f"{acc[s][m]['h_auc'][3]:.3f} / {acc[s][m]['mean_num_correct_3px']:.0f}"
                                        for s in set_names]] for m in methods]))
        missing = [n for n in VARIANTS if n not in trained]
        if missing:
            md.append("\nNot trained (no weights in models/ablation/; `--train` trains them): " + ", ".join(missing))
    write_results("matcher_ablation" + ("_quick" if args.quick else ""),
                  {"settings": vars(args), "source": source, "timing": times, "accuracy": acc,
                   "trained_weights": trained}, "\n".join(md))
    return 0


if __name__ == "__main__":
    sys.exit(main())
