"""Homography matching benchmark (HPatches protocol) for our pipeline and the peers, side by side.

    python benchmarks/homography_benchmark.py [--quick] [--methods ...] [--max-keypoints 2048]

Sets: Oxford graf (viewpoint), Sacre Coeur in-plane rotations 45..315 deg (imcui), and synthetic
pairs from real photos that are not in the training corpus (openMVG Sceaux castle, SuperGlue
phototourism samples): moderate homographies, rotation +-30 and +-180 deg, illumination changes,
night. Metrics: MMA at 1..10 px, homography accuracy and AUC of the mean corner error at 1/3/5 px
(OpenCV MAGSAC, 3 px), matches per pair; AUC@3 also as mean ± std over --ransac-orders estimates per pair
(the matches in random orders: MAGSAC's sampling luck, a few hundredths of AUC on the 5 graf pairs).
--warps-per-photo N: N pairs per photo in the synthetic sets (24 photos: 24 pairs by default, and the default pairs
are among those of any N), so that one or two hard pairs do not decide a comparison. --reference METHOD: each other
method's AUC@3 minus METHOD's on the same pairs and orders, with a 95% bootstrap interval over the pairs.
Writes results/homography[_quick].{json,md,png}.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from common import RESULTS_DIR, markdown_table, write_results  # noqa: E402
from methods import DEFAULT_METHODS, FEATLOC_ABLATION_METHODS, MATCHER_METHODS, resolve_methods

from featloc_ros.evaluation.datasets import shared_data_dir
from featloc_ros.evaluation.homography import (
    H_THRESHOLDS, SYNTHETIC_SETS, evaluate_pair, oxford_pairs, pair_corner_errors, paired_auc_difference,
    rotation_pairs, summarize_pairs, synthetic_pairs)

SYNTHETIC_SOURCES = ("openmvg_sceaux_castle/images", "superglue_assets/phototourism_sample_images")


SET_NAMES = ("graf", "rotation_sacre_coeur", *SYNTHETIC_SETS)


def photo_files(folder: Path) -> list[Path]:
    """The JPEG and PNG files of ``folder``, sorted by path."""
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))


def build_sets(quick: bool, warps_per_photo: int = 1, only: list[str] | None = None,
               synthetic_photos: list[Path] | None = None) -> tuple[dict, dict]:
    """The benchmark sets {name: pairs} and {name: why it is missing}; ``warps_per_photo`` pairs per photo in the
    synthetic sets (the pairs of 1 are among those of more); ``only``: just these sets (default: all);
    ``synthetic_photos``: the synthetic sets' photos instead of ../shared/data's (a validation set)."""
    wanted = set(SET_NAMES if only is None else only)
    data = shared_data_dir()
    sets, missing = {}, {}
    if "graf" in wanted:
        if (data / "oxford_graf").exists():
            sets["graf"] = oxford_pairs(data / "oxford_graf")
        else:
            missing["graf"] = f"{data / 'oxford_graf'} not available"
    rot, orig = data / "imcui_sacre_coeur_rot", data / "hloc_sacre_coeur" / "mapping"
    if "rotation_sacre_coeur" in wanted:
        if rot.exists() and orig.exists():
            ids = sorted({p.stem.rsplit("_rot", 1)[0] for p in rot.glob("*_rot*.jpg")})
            sets["rotation_sacre_coeur"] = rotation_pairs(rot, orig, max_side=640, ids=ids[:2] if quick else None)
        else:
            missing["rotation_sacre_coeur"] = f"{rot} or {orig} not available"
    synthetic = [name for name in SYNTHETIC_SETS if name in wanted]
    photos = synthetic_photos if synthetic_photos is not None else sorted(
        p for src in SYNTHETIC_SOURCES if (data / src).exists() for p in photo_files(data / src))
    if photos:
        photos = photos[::6] if quick else photos
        for name in synthetic:
            sets[name] = synthetic_pairs(name, photos, seed=0, warps_per_photo=warps_per_photo)
    else:
        missing.update({name: "no source photos in ../shared/data" for name in synthetic})
    return sets, missing


def plot(path, results: dict):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(results)
    cols = 4
    rows = (len(names) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 3.2 * rows), squeeze=False)
    for ax, set_name in zip(axes.flat, names):
        for method, s in results[set_name].items():
            ts = sorted(int(t) for t in s["mma"])
            ax.plot(ts, [s["mma"][t] for t in ts], marker=".", label=method)
        ax.set_title(set_name, fontsize=9)
        ax.set_xlabel("threshold (px)")
        ax.set_ylim(0, 1)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(names):]:
        ax.axis("off")
    axes.flat[0].set_ylabel("mean matching accuracy")
    axes.flat[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def mean_std(a: dict | None) -> str:
    """{"mean", "std", ...} -> "mean ± std" ("-" when not measured)."""
    return f"{a['mean']:.4f} ± {a['std']:.4f}" if a else "-"


def auc_refit(summary: dict) -> str:
    """AUC@3 refitted on MAGSAC's inliers, "mean ± std" over the RANSAC orders ("-" when not measured)."""
    return mean_std(summary.get("h_auc3_refit"))


def auc_orders(summary: dict) -> str:
    """"mean ± std" of AUC@3 over the RANSAC orders ("-" with a single order)."""
    return mean_std(summary.get("h_auc_orders", {}).get(3))


def versus_reference(summary: dict) -> str:
    """"difference [low, high]" of AUC@3 against the reference method ("-" when not compared)."""
    d = summary.get("auc3_vs_reference")
    return f"{d['difference']:+.4f} [{d['ci95'][0]:+.4f}, {d['ci95'][1]:+.4f}]" if d else "-"


def compare_with_reference(results: dict, per_pair: dict, reference: str) -> None:
    """Adds ``auc3_vs_reference`` (paired_auc_difference over the set's pairs) to every other method's summary."""
    for set_name, by_method in per_pair.items():
        if reference not in by_method:
            continue
        ref = pair_corner_errors(by_method[reference])
        for method, evals in by_method.items():
            if method != reference:
                results[set_name][method]["auc3_vs_reference"] = {
                    "reference": reference, **paired_auc_difference(pair_corner_errors(evals), ref)}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="a few pairs per set (CI-sized)")
    p.add_argument("--methods", nargs="+", default=None,
                   help="default: the peers and baselines; with --name featloc_ablation the learned-feature "
                        "ablation, with --name featloc_matcher the learned matcher against mutual NN and LightGlue")
    p.add_argument("--max-keypoints", type=int, default=2048)
    p.add_argument("--name", default="homography", help="results file name (e.g. for an ablation subset)")
    p.add_argument("--ransac-orders", type=int, default=10,
                   help="homography estimates per pair (the first on the matches as given, the others on random "
                        "orders of them, the same orders for every method) for the AUC@3 mean and spread")
    p.add_argument("--refit", action="store_true",
                   help="also AUC@3 (refit): each estimate refitted by least squares on MAGSAC's inliers, mean ± std "
                        "over the orders (a second measure of the same matches; the default column stays MAGSAC's)")
    p.add_argument("--warps-per-photo", type=int, default=1,
                   help="pairs per photo in the synthetic sets (1: the 24-pair sets of the committed tables; more: "
                        "larger sets that contain those pairs, so that a few pairs do not decide a comparison)")
    p.add_argument("--sets", nargs="+", default=None, choices=SET_NAMES, help="only these sets (default: all)")
    p.add_argument("--reference", default=None,
                   help="a method of --methods: adds each other method's AUC@3 minus the reference's on the same pairs "
                        "and orders, with a 95%% bootstrap interval over the pairs")
    p.add_argument("--validation-photos", type=Path, default=None, metavar="DIR",
                   help="build the synthetic sets from every --validation-stride-th photo of DIR (e.g. "
                        "../../shared/training_corpus) instead of ../shared/data's: a validation set on which a "
                        "setting can be chosen without looking at the benchmark's pairs")
    p.add_argument("--validation-stride", type=int, default=10)
    args = p.parse_args(argv)
    if args.warps_per_photo < 1:
        p.error("--warps-per-photo must be at least 1")
    if args.methods is None:
        args.methods = {"featloc_ablation": FEATLOC_ABLATION_METHODS,
                        "featloc_matcher": MATCHER_METHODS}.get(args.name, DEFAULT_METHODS)
    photos = None
    if args.validation_photos is not None:
        if not args.validation_photos.is_dir() or args.validation_stride < 1:
            p.error(f"--validation-photos {args.validation_photos} is not a folder (or --validation-stride < 1)")
        photos = photo_files(args.validation_photos)[::args.validation_stride]
    sets, missing_sets = build_sets(args.quick, args.warps_per_photo, args.sets, photos)
    methods, skipped = resolve_methods(args.methods)
    if args.reference and args.reference not in [m.name for m in methods]:
        p.error(f"--reference {args.reference} is not among the methods run: {[m.name for m in methods]}")
    for name, reason in skipped.items():
        print(f"skipping {name}: {reason}")
    results, per_pair = {}, {}
    for set_name, pairs in sets.items():
        results[set_name], per_pair[set_name] = {}, {}
        images = [(pr.image0, pr.image1) for pr in pairs]
        for method in methods:
            t0 = time.perf_counter()
            outs = method.match_pairs(images, args.max_keypoints)
            evals = [evaluate_pair(pr, o["keypoints0"], o["keypoints1"], o["matches"], ransac_orders=args.ransac_orders,
                                   refit=args.refit) for pr, o in zip(pairs, outs)]
            s = summarize_pairs(evals)
            s["extract_ms_median"] = float(np.median([o["extract_ms0"] for o in outs] + [o["extract_ms1"] for o in outs]))
            s["match_ms_median"] = float(np.median([o["match_ms"] for o in outs]))
            results[set_name][method.name], per_pair[set_name][method.name] = s, evals
            print(f"{set_name:<24} {method.name:<20} MMA@3 {s['mma'][3]:.3f}  H@3 {s['h_accuracy'][3]:.3f}  "
                  f"AUC@3 {s['h_auc'][3]:.3f} ({auc_orders(s)}{'; refit ' + auc_refit(s) if args.refit else ''})  "
                  f"matches {s['mean_num_matches']:.0f}  "
                  f"({time.perf_counter() - t0:.0f} s)")
    if args.reference:
        compare_with_reference(results, per_pair, args.reference)
    name = args.name + ("_quick" if args.quick else "")
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    plot(RESULTS_DIR / f"{name}.png", results)
    md = [f"# Homography benchmark{'' if args.name == 'homography' else ': ' + args.name}"
          f"{' (quick subset)' if args.quick else ''}\n",
          f"{args.max_keypoints} keypoints, images at most 640 px (graf at 800x640), mutual NN for descriptor-only "
          "methods. MMA = mean matching accuracy; H acc / AUC = homography estimation (OpenCV MAGSAC, 3 px) "
          "judged by the mean error of the four image corners. AUC@3 (orders): mean ± std of the set's AUC@3 over "
          f"{args.ransac_orders} estimates per pair (the first on the matches as given, the others on random orders "
          "of them, the same orders for every method): MAGSAC's sampling luck. "
          + ("AUC@3 (refit): the same estimates refitted by least squares on MAGSAC's inliers, mean ± std over the "
             "orders. " if args.refit else "") +
          (f"ΔAUC@3 vs {args.reference}: the method's AUC@3 minus {args.reference}'s on the same pairs (mean over "
           "the orders), with a 95% bootstrap interval over the pairs; an interval containing 0 means the set cannot "
           "tell them apart. " if args.reference else "") +
          (f"**Validation sets**: the synthetic sets built from every {args.validation_stride}th photo of "
             f"{args.validation_photos.name}, not from ../shared/data. " if photos is not None else "") +
          "The extract/match times here are side "
          "information (the machine may be busy during a long run); latency.md has the controlled timings.\n"]
    for set_name, by_method in results.items():
        n = next(iter(by_method.values()))["num_pairs"] if by_method else 0
        md.append(f"\n## {set_name} ({n} pairs)\n")
        rows = [[m, s["mma"][1], s["mma"][3], s["mma"][5], *[s["h_accuracy"][t] for t in H_THRESHOLDS],
                 *[s["h_auc"][t] for t in H_THRESHOLDS], auc_orders(s), *([auc_refit(s)] if args.refit else []),
                 *([versus_reference(s)] if args.reference else []), s["mean_num_matches"],
                 s["mean_num_correct_3px"], s["extract_ms_median"], s["match_ms_median"]]
                for m, s in by_method.items()]
        md.append(markdown_table(["method", "MMA@1", "MMA@3", "MMA@5", "H acc@1", "H acc@3", "H acc@5", "AUC@1",
                                  "AUC@3", "AUC@5", "AUC@3 (orders)", *(["AUC@3 (refit)"] if args.refit else []),
                                  *([f"ΔAUC@3 vs {args.reference} [95% CI]"] if args.reference else []),
                                  "matches", "correct@3px", "extract ms", "match ms"], rows))
    if skipped or missing_sets:
        md.append("\n## Not run\n")
        md += [f"- method {k}: {v}" for k, v in skipped.items()] + [f"- set {k}: {v}" for k, v in missing_sets.items()]
    md.append(f"\n![MMA curves]({name}.png)\n")
    settings = {**vars(args), "validation_photos": None if photos is None else str(args.validation_photos)}
    write_results(name, {"settings": settings, "results": results, "per_pair": per_pair,
                                          "skipped_methods": skipped, "missing_sets": missing_sets}, "\n".join(md))
    return 0


if __name__ == "__main__":
    sys.exit(main())
