"""Time the whole workflow from an empty working directory to the HTML report; prints one JSON line last.

Goal (issue 12): the embedded default config (config/config.yaml) on 2 cores, from a fresh clone to
results/report.html, in under 15 minutes (installation excluded). The wall time covers `snakemake --cores N`
(every target of `rule all`, which includes `paper_figures`) plus `snakemake --report`; the per-stage seconds are
summed from the rules' `benchmark:` files (results/benchmarks/<stage>/...), so the slowest stage is named.

    python benchmarks/paper_end_to_end.py                              # default config, 2 cores, temp folder
    python benchmarks/paper_end_to_end.py --configfile tests/config/config.yaml --workdir /tmp/e2e --keep
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
GOAL_S = 15 * 60


def stage_seconds(benchmarks: Path) -> dict[str, dict[str, float]]:
    """{stage: {"jobs": n, "total_s": sum, "max_s": slowest job}} from snakemake's benchmark TSV files."""
    stages: dict[str, dict[str, float]] = {}
    for path in sorted(benchmarks.rglob("*.tsv")):
        lines = path.read_text().splitlines()
        if len(lines) < 2:
            continue
        seconds = float(lines[-1].split("\t")[0])
        entry = stages.setdefault(path.relative_to(benchmarks).parts[0], {"jobs": 0, "total_s": 0.0, "max_s": 0.0})
        entry["jobs"] += 1
        entry["total_s"] = round(entry["total_s"] + seconds, 1)
        entry["max_s"] = round(max(entry["max_s"], seconds), 1)
    return stages


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--configfile", type=Path, default=None, help="config merged over the default (none)")
    parser.add_argument("--cores", type=int, default=2)
    parser.add_argument("--workdir", type=Path, default=None, help="empty folder to run in (default: a temp one)")
    parser.add_argument("--keep", action="store_true", help="keep the working directory")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="opir-e2e-"))
    workdir.mkdir(parents=True, exist_ok=True)
    if any(workdir.iterdir()):
        sys.exit(f"{workdir} is not empty: the benchmark starts from nothing")
    snakemake = [str(Path(sys.executable).with_name("snakemake")), "-s", str(REPO / "Snakefile"), "-d", str(workdir)]
    if args.configfile:
        snakemake += ["--configfile", str(args.configfile.resolve())]
    t0 = time.perf_counter()
    run = subprocess.run([*snakemake, "--cores", str(args.cores)], cwd=workdir, capture_output=True, text=True)
    t1 = time.perf_counter()
    report = subprocess.run([*snakemake, "--report", "results/report.html"], cwd=workdir, capture_output=True,
                            text=True)
    t2 = time.perf_counter()
    if run.returncode or report.returncode:
        print((run.stderr + report.stderr)[-4000:], file=sys.stderr)
    stages = stage_seconds(workdir / "results" / "benchmarks")
    result = {
        "benchmark": "paper_end_to_end",
        "config": str(args.configfile or "config/config.yaml"),
        "cores": args.cores,
        "ok": run.returncode == 0 and report.returncode == 0,
        "workflow_s": round(t1 - t0, 1),
        "report_s": round(t2 - t1, 1),
        "wall_s": round(t2 - t0, 1),
        "goal_s": GOAL_S,
        "within_goal": run.returncode == 0 and t2 - t0 < GOAL_S,
        "slowest_stage": max(stages, key=lambda s: stages[s]["total_s"]) if stages else None,
        "stages": stages,
        "load_average_1min": os.getloadavg()[0],
    }
    if not args.keep:
        shutil.rmtree(workdir, ignore_errors=True)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
