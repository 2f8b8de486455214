"""Localization rows compared query by query with a reference row, from committed localization tables (no new run).

    python benchmarks/paired_localization.py --tables localization localization_refined \\
        --reference localization:rootsift+mnn_ratio --sets fox fox_rolled_night [--rows featloc] \\
        [--name localization_paired]

A median over 10 fox queries moves with one query. For each set and each row of each table (``--rows``: only the
labels that contain one of these strings; the reference's own table included), against the reference row on the
same queries: how many queries each localizes more precisely (position error), an exact two-sided sign test, the
medians and means, and the median of the paired differences with a 95% bootstrap interval over the queries
(featloc_ros.evaluation.metrics.paired_error_comparison). Rows are named TABLE:LABEL. Writes
results/<name>.{json,md}.
"""

from __future__ import annotations

import argparse
import json

from common import RESULTS_DIR, markdown_table, write_results  # noqa: E402

from featloc_ros.evaluation.metrics import paired_error_comparison


def load_table(name: str) -> dict:
    path = RESULTS_DIR / f"{name}.json"
    if not path.is_file():
        raise SystemExit(f"paired_localization: {path} not found")
    data = json.loads(path.read_text())
    if "results" not in data:
        raise SystemExit(f"paired_localization: {path} has no 'results' (not a localization table)")
    return data["results"]


def compare(tables: dict[str, dict], reference: str, sets: list[str], rows: list[str] | None) -> dict:
    """{set: {"TABLE:LABEL": paired_error_comparison(...)}} against the ``reference`` row (TABLE:LABEL)."""
    ref_table, _, ref_label = reference.partition(":")
    out = {}
    for set_name in sets:
        ref = tables[ref_table].get(set_name, {}).get(ref_label)
        if ref is None:
            raise SystemExit(f"paired_localization: no row {ref_label!r} for set {set_name!r} in {ref_table}")
        out[set_name] = {}
        for tname, results in tables.items():
            for label, row in results.get(set_name, {}).items():
                if row is None or "position_errors" not in row or (rows and not any(s in label for s in rows)):
                    continue
                out[set_name][f"{tname}:{label}"] = paired_error_comparison(row["position_errors"],
                                                                            ref["position_errors"])
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tables", nargs="+", required=True, help="results/<TABLE>.json localization tables")
    p.add_argument("--reference", required=True, help="TABLE:LABEL of the reference row")
    p.add_argument("--sets", nargs="+", default=["fox", "fox_rolled_night"])
    p.add_argument("--rows", nargs="*", default=None, help="keep the labels containing one of these strings")
    p.add_argument("--name", default="localization_paired")
    args = p.parse_args(argv)
    if args.reference.partition(":")[0] not in args.tables:
        p.error(f"--reference {args.reference}: its table must be one of --tables")
    tables = {t: load_table(t) for t in args.tables}
    results = compare(tables, args.reference, args.sets, args.rows)
    md = [f"# Localization, query by query against {args.reference}\n",
          "From the committed tables " + ", ".join(f"{t}.json" for t in args.tables) + " (no new run). Per row: "
          "queries with a lower / higher position error than the reference (not localized = infinite error), the "
          "exact two-sided sign test over the queries that differ, the median and the mean position error (mean "
          "over the queries both localized; reference in brackets), and the median of the paired differences "
          "(row - reference) with a 95% bootstrap interval over the queries. Units as in the tables (fox: scene "
          "units)."]
    for set_name, by_row in results.items():
        md.append(f"\n## {set_name}\n")
        md.append(markdown_table(
            ["row", "lower / higher / ties", "sign test p", "median (ref.)", "mean (ref.)",
             "median difference [95% CI]"],
            [[label, f"{r['lower']} / {r['higher']} / {r['ties']}", f"{r['sign_test_p']:.3f}",
              f"{r['median']:.5f} ({r['reference_median']:.5f})",
              f"{r['mean_both_localized']:.5f} ({r['reference_mean_both_localized']:.5f})",
              f"{r['median_difference']:+.5f} [{r['ci95'][0]:+.5f}, {r['ci95'][1]:+.5f}]"]
             for label, r in by_row.items()]))
    write_results(args.name, {"settings": vars(args), "results": results}, "\n".join(md))
    print(f"paired_localization: wrote results/{args.name}.{{json,md}}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
