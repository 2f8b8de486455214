"""Demo-scene localization through the ROS 2 node (day->day, day->night), as `make demo` runs it.

    python benchmarks/demo_localization.py [--no-ros]

Writes benchmarks/results/demo_localization.{json,md,png}.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

from common import RESULTS_DIR, markdown_table, write_results  # noqa: E402

from featloc_ros.demo.run_demo import run


def main(argv=None) -> int:
    with tempfile.TemporaryDirectory() as work:
        results = run(["--out", str(Path(work) / "demo"), *(argv or sys.argv[1:])])
        RESULTS_DIR.mkdir(parents=True, exist_ok=True)
        shutil.copy(Path(work) / "demo" / "trajectory.png", RESULTS_DIR / "demo_localization.png")
    rows = []
    for name, s in results["passes"].items():
        lat = s["latency"]
        rows.append([name, s["node"].get("frames_dropped", "–"), f"{s['num_localized']}/{s['num_frames']}",
                     *[f"{v:.0%}" for v in s["recall"].values()], s["median_position_error"],
                     s["median_rotation_error_deg"], lat["total"]["median_ms"], lat["total"]["p90_ms"],
                     lat["extract"]["median_ms"], lat["match"]["median_ms"], lat["pnp"]["median_ms"]])
    m = results["map"]
    md = ("# Demo scene localization (rendered room, 640x480, map from the day mapping pass)\n\n"
          f"Map: {m['keyframes']} keyframes, {m['points']} points, {m['features']}, built in {m['build_s']:.0f} s. "
          f"Query bags replayed through the featloc_localizer node at rate {results['settings']['rate']} "
          "(frames dropped by the node count as not localized). Latency: in-process, per frame, 2 cores.\n\n"
          + markdown_table(["pass", "dropped", "localized", "recall 0.25 m/2°", "recall 0.5 m/5°", "recall 5 m/10°",
                            "median pos. err. (m)", "median rot. err. (°)", "latency median (ms)",
                            "latency p90 (ms)", "extract (ms)", "match (ms)", "PnP (ms)"], rows)
          + "\n\n![trajectory](demo_localization.png)\n")
    write_results("demo_localization", results, md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
