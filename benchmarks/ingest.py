"""Benchmark: ingest + preprocess of the full simulated dataset (OpIRSpec-7K-sim: 10 runs, 7,128 OPUS files).

    python benchmarks/ingest.py [--raw-dir DIR] [--workers 2] [--scale 1.0]

Without ``--raw-dir`` the dataset is simulated first (not timed) into ``--cache`` (kept for the next call). Each run
is one task, as in the workflow (one ingest and one preprocess job per run); ``--workers`` processes share them.
Reports files per second (wall clock, all runs) and peak memory: the peak RSS of each worker is that of the
largest run it handled, so it is bounded by one run, not by the dataset. The last line printed is one JSON object.
Goals (issue 4): >= 300 files/s on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def load_config(scale: float) -> tuple[dict, object]:
    """The default config's sections this benchmark uses (validated, defaults filled) and the sheets."""
    import yaml

    from opir.core.config import load_sheets, validate_with_schema

    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    config["simulate"]["scale"] = scale
    for section in ("simulate", "ingest", "preprocess", "dataset"):
        validate_with_schema(config[section], f"config/{section}.schema.yaml", f"config.{section}")
    return config, load_sheets(config, root=REPO, fallback_root=REPO)


def simulate_all(raw_dir: Path, truth_dir: Path, scale: float) -> None:
    from opir.simulate.runs import simulate_system_run

    config, sheets = load_config(scale)
    systems = sheets.systems.set_index("system_id", drop=False)
    runs = list(sheets.runs[["system_id", "run_id"]].itertuples(index=False, name=None))
    for system_id, run_id in runs:
        siblings = [r for s, r in runs if s == system_id]
        simulate_system_run(
            systems.loc[system_id].to_dict(), run_id, siblings, config["simulate"],
            raw_dir / system_id / run_id, truth_dir / system_id / f"{run_id}.h5",
        )  # fmt: skip


def one_run(task: tuple[str, str, str, str, dict, dict]) -> dict:
    """Ingest + preprocess one run in this worker; returns its size, time and the worker's peak RSS so far."""
    from opir.ingest.runs import ingest_run_dir
    from opir.preprocess.spectra import preprocess_run

    run_dir, out_dir, system_id, run_id, ingest_params, preprocess_params = task
    start = time.perf_counter()
    ingested = Path(out_dir) / "ingest" / system_id / f"{run_id}.h5"
    result = ingest_run_dir(
        run_dir, ingested, ingested.with_suffix(".rejected.tsv"), ingest_params, system_id, run_id, rule="bench"
    )
    preprocess_run(ingested, Path(out_dir) / "preprocessed" / system_id / f"{run_id}.h5", preprocess_params, "bench")
    return {
        "run": f"{system_id}/{run_id}",
        "files": len(result.spectra) + len(result.rejected),
        "seconds": time.perf_counter() - start,
        "worker_pid": os.getpid(),
        "worker_peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def assemble_and_split(out_dir: str, runs: list[tuple[str, str]], preprocess_params: dict, scale: float) -> dict:
    from opir.preprocess.dataset import assemble, write_splits

    config, sheets = load_config(scale)
    systems = sheets.systems
    train = systems.system_id[systems.system_split == "train"].tolist()
    test = systems.system_id[systems.system_split == "test"].tolist()
    order = list(sheets.runs[["system_id", "run_id"]].itertuples(index=False, name=None))
    paths = [Path(out_dir) / "preprocessed" / s / f"{r}.h5" for s, r in order if (s, r) in set(runs)]
    samples = Path(out_dir) / "samples.h5"
    assemble(paths, samples, preprocess_params, train, rule="bench")
    splits = write_splits(samples, Path(out_dir) / "splits.json", config["dataset"], test)
    return {**splits, "n_samples": len(splits["random"]["train"]) + len(splits["random"]["test"])}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--raw-dir", type=Path, help="simulated raw dataset ({raw_dir}/{system}/{run}/)")
    parser.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "opir-bench-raw")
    parser.add_argument("--scale", type=float, default=1.0, help="simulate.scale when simulating (1.0 = full)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--n-points", type=int, default=512)
    args = parser.parse_args(argv)

    raw_dir = args.raw_dir
    simulate_s = 0.0
    if raw_dir is None:
        raw_dir = args.cache / f"scale{args.scale:g}" / "raw"
        if not (raw_dir / ".complete").exists():
            start = time.perf_counter()
            simulate_all(raw_dir, raw_dir.parent / "truth", args.scale)
            (raw_dir / ".complete").write_text("")
            simulate_s = time.perf_counter() - start
    runs = sorted((p.parent.parent.name, p.parent.name) for p in raw_dir.glob("*/*/manifest.tsv"))
    if not runs:
        sys.exit(f"no runs under {raw_dir} (expected {{system}}/{{run}}/manifest.tsv)")
    config, _ = load_config(args.scale)
    ingest_params = dict(config["ingest"])
    preprocess_params = {**config["preprocess"], "n_points": args.n_points}
    with tempfile.TemporaryDirectory() as out_dir:
        tasks = [(str(raw_dir / s / r), out_dir, s, r, ingest_params, preprocess_params) for s, r in runs]
        # largest runs first, so the two workers finish together
        tasks.sort(key=lambda t: -len(os.listdir(Path(t[0]) / "spectra")))
        start = time.perf_counter()
        with ProcessPoolExecutor(max_workers=args.workers) as pool:
            per_run = list(pool.map(one_run, tasks))
        wall = time.perf_counter() - start
        # the aggregates on the same runs: sample table and splits (not part of files/s)
        start = time.perf_counter()
        splits = assemble_and_split(out_dir, runs, preprocess_params, args.scale)
        dataset_s = time.perf_counter() - start
    files = sum(r["files"] for r in per_run)
    largest = max(per_run, key=lambda r: r["files"])
    summary = {
        "benchmark": "ingest+preprocess",
        "runs": len(per_run),
        "files": files,
        "workers": args.workers,
        "wall_s": round(wall, 2),
        "files_per_s": round(files / wall, 1),
        "peak_rss_mb": round(max(r["worker_peak_rss_mb"] for r in per_run), 1),
        "largest_run": largest["run"],
        "largest_run_files": largest["files"],
        "n_points": args.n_points,
        "simulate_s": round(simulate_s, 1),
        "dataset_s": round(dataset_s, 2),
        "samples": splits["n_samples"],
        "random_split": [len(splits["random"]["train"]), len(splits["random"]["test"])],
        "system_split": [len(splits["system"]["train"]), len(splits["system"]["test"])],
        "goal_files_per_s": 300,
    }
    for r in sorted(per_run, key=lambda r: r["run"]):
        rss = r["worker_peak_rss_mb"]
        print(f"{r['run']:28s} {r['files']:5d} files {r['seconds']:7.2f} s  worker peak RSS {rss:.0f} MB")
    print(json.dumps(summary))
    return summary


if __name__ == "__main__":
    main()
