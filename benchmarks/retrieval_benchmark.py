"""Retrieval benchmark: does VLAD put a keyframe that sees the query among the candidates the localizer matches?

The rendered demo room (benchmarks/localization_benchmark.demo_sets: map from 60 day frames, 30 queries by day, by
night, and by night with the camera rolled by 30-330 degrees). For each feature configuration, codebook size
and k-means seed, the codebook is trained and the keyframes described exactly as the map builder does (all
keypoints of each keyframe, the extractor's retrieval columns), and every query is ranked against them.
Ground truth: the 3 keyframes closest to the query pose (distance between the camera centres in metres + 1 -
cosine of the angle between the optical axes). Reported: recall@N = share of queries with one of them among the
first N (N = 6 is the localizer's ``num_retrieved``) and the mean best rank (0 = first).

    python benchmarks/retrieval_benchmark.py [--quick] [--features rootsift featloc] [--clusters 32 128]

Writes results/retrieval[_quick].{json,md}.
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np

from common import markdown_table, write_results  # noqa: E402
from localization_benchmark import demo_sets

from featloc_ros.features import create_extractor
from featloc_ros.retrieval import VLAD, select_columns, train_codebook

NUM_RELEVANT = 3
RECALL_AT = (1, 6, 10)


def relevant_keyframes(map_poses: np.ndarray, T_world_cam: np.ndarray, num: int = NUM_RELEVANT) -> np.ndarray:
    """Indices of the ``num`` map keyframes (poses (K,4,4)) closest to a query pose: centre distance + 1 - cos of
    the angle between the optical axes."""
    score = (np.linalg.norm(map_poses[:, :3, 3] - T_world_cam[:3, 3], axis=1)
             + 1.0 - map_poses[:, :3, 2] @ T_world_cam[:3, 2])
    return np.argsort(score, kind="stable")[:num]


def best_ranks(vlad: VLAD, database: np.ndarray, queries: list[tuple[np.ndarray, np.ndarray]],
               map_poses: np.ndarray) -> np.ndarray:
    """queries: (descriptors, T_world_cam) -> best rank of a relevant keyframe for each query."""
    ranks = []
    for desc, T in queries:
        order, _ = vlad.rank(vlad.describe(desc), database)
        position = np.empty(len(order), np.int64)
        position[order] = np.arange(len(order))
        ranks.append(int(position[relevant_keyframes(map_poses, T)].min()))
    return np.array(ranks)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="10 queries per set, one seed")
    p.add_argument("--features", nargs="+", default=["rootsift", "featloc"])
    p.add_argument("--clusters", nargs="+", type=int, default=[32, 64, 128, 256])
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--name", default="retrieval")
    args = p.parse_args(argv)
    seeds = args.seeds[:1] if args.quick else args.seeds
    mapping, query_sets = demo_sets(args.quick)
    map_poses = np.stack([f.T_world_cam for f in mapping])
    results = {}
    for feat_name in args.features:
        extractor = create_extractor(feat_name)
        columns = extractor.retrieval_columns
        t0 = time.perf_counter()
        map_desc = [extractor(f.image).descriptors for f in mapping]
        queries = {s: [(extractor(f.image).descriptors, f.T_world_cam) for f in frames]
                   for s, frames in query_sets.items()}
        print(f"{feat_name}: features in {time.perf_counter() - t0:.0f} s", flush=True)
        all_desc = select_columns(np.concatenate(map_desc), columns)
        for k in args.clusters:
            row = {"features": feat_name, "clusters": k, "columns": list(columns) if columns else None,
                   "per_seed": {}}
            for seed in seeds:
                t0 = time.perf_counter()
                vlad = VLAD(train_codebook(all_desc, k, seed=seed), columns)
                train_s = time.perf_counter() - t0
                database = np.stack([vlad.describe(d) for d in map_desc])
                ranks = {s: best_ranks(vlad, database, q, map_poses).tolist() for s, q in queries.items()}
                row["per_seed"][seed] = {"codebook_s": train_s, "ranks": ranks}
            for s in queries:
                all_ranks = np.array([row["per_seed"][seed]["ranks"][s] for seed in seeds])  # (seeds, queries)
                row[s] = {f"recall@{n}": float((all_ranks < n).mean()) for n in RECALL_AT}
                row[s]["recall@6_min_over_seeds"] = float((all_ranks < 6).mean(1).min())
                row[s]["mean_best_rank"] = float(all_ranks.mean())
            row["codebook_s"] = float(np.median([v["codebook_s"] for v in row["per_seed"].values()]))
            row["dim"] = int(vlad.dim)
            results[f"{feat_name} k={k}"] = row
            print(f"{feat_name} k={k}: " + " | ".join(f"{s} R@6 {row[s]['recall@6']:.2f}" for s in queries),
                  flush=True)
    md = ["# Retrieval benchmark (VLAD codebook size)\n",
          f"Demo room, map from {len(mapping)} day frames; {len(next(iter(query_sets.values())))} queries per set. "
          f"Recall@6: share of queries with one of the {NUM_RELEVANT} keyframes closest in pose among the first 6 "
          "retrieved (what the localizer matches), averaged over the k-means seeds "
          f"{', '.join(map(str, seeds))} (in brackets: the worst seed); rank = mean best rank of such a keyframe "
          "(0 = first). Codebook: OpenCV k-means on at most 50,000 map descriptors; dim = global descriptor "
          "length.\n"]
    for s in query_sets:
        md.append(f"\n## {s}\n")
        md.append(markdown_table(
            ["features", "clusters", "dim", "recall@1", "recall@6", "recall@10", "mean best rank", "codebook s"],
            [[r["features"], r["clusters"], r["dim"], r[s]["recall@1"],
              f"{r[s]['recall@6']:.3f} ({r[s]['recall@6_min_over_seeds']:.3f})", r[s]["recall@10"],
              r[s]["mean_best_rank"], r["codebook_s"]] for r in results.values()]))
    write_results(args.name + ("_quick" if args.quick else ""), {"settings": vars(args), "results": results},
                  "\n".join(md))
    return 0


if __name__ == "__main__":
    sys.exit(main())
