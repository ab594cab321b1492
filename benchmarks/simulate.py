"""Benchmark of the simulator: writes the full OpIRSpec-7K-sim (scale 1: 7,118 samples, 7,128 OPUS files) and
prints, as one JSON line last, the write speed and the dataset's statistics against the goals of issue 3:

- files_per_s: OPUS files written per second of wall time (all runs, ``--jobs`` processes);
- snr_median / snr_mean: realized SNR (peak absorbance in 800-2000 1/cm / std of the drawn noise);
- voltage_0p2_2p0_share: share of spectra acquired between 0.2 and 2.0 V;
- top5_change_share: share of the total frame-to-frame RMS change (noise-free truth, 800-2000 1/cm) carried by the
  5 % of frames with the largest change;
- persistence_over_noise_system / persistence_over_noise_random: per split (DESIGN.md section 6), the MAE of
  Persistence (the first spectrum of the run repeated) over the MAE of the noise floor (truth vs noisy target), both
  on the test samples in 800-2000 1/cm.

Usage: python benchmarks/simulate.py [--scale 1.0] [--jobs 2] [--out DIR] [--keep]
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from opir.core.config import load_sheets, validate_with_schema  # noqa: E402
from opir.simulate.runs import simulate_system_run  # noqa: E402


def _settings(scale: float) -> tuple[dict, object]:
    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    validate_with_schema(config, "config.schema.yaml", "config/config.yaml")
    config["simulate"]["scale"] = scale
    sheets = load_sheets(config, root=REPO)
    return config["simulate"], sheets


def _one_run(job: tuple) -> dict:
    system, run_id, runs, settings, out = job
    run = simulate_system_run(system, run_id, runs, settings, Path(out) / "raw" / system["system_id"] / run_id,
                              Path(out) / "truth" / system["system_id"] / f"{run_id}.h5")  # fmt: skip
    window = (run.wavenumber_cm1 >= 800.0) & (run.wavenumber_cm1 <= 2000.0)
    truth, measured = run.truth[:, window], run.measured[:, window]
    noise = measured - truth
    signal = np.abs(truth).max(1)
    return {
        "system_id": system["system_id"], "run_id": run_id, "n_files": len(run.time_s),
        "snr": (signal / noise.std(1)).tolist(), "voltage_v": run.voltage_v.tolist(),
        "frame_change": np.sqrt(((truth[1:] - truth[:-1]) ** 2).mean(1)).tolist(),
        "persistence_mae": np.abs(measured[1:] - measured[:1]).mean(1).tolist(),
        "noise_floor_mae": np.abs(measured[1:] - truth[1:]).mean(1).tolist(),
    }  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=1.0)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--out", type=Path, default=None, help="folder to write into (default: a temporary one)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    args = parser.parse_args()
    settings, sheets = _settings(args.scale)
    out = args.out or Path(tempfile.mkdtemp(prefix="opir-sim-bench-"))
    systems = sheets.systems.set_index("system_id", drop=False)
    jobs = []
    for system_id, group in sheets.runs.groupby("system_id", sort=False):
        runs = group["run_id"].tolist()
        jobs += [(systems.loc[system_id].to_dict(), run_id, runs, settings, str(out)) for run_id in runs]
    jobs.sort(key=lambda job: -int(job[0]["sim_samples"]))  # longest first, for the pool
    start = time.perf_counter()
    with ProcessPoolExecutor(max_workers=args.jobs) as pool:
        results = list(pool.map(_one_run, jobs))
    wall = time.perf_counter() - start

    snr = np.concatenate([r["snr"] for r in results])
    voltage = np.concatenate([r["voltage_v"] for r in results])
    change = np.sort(np.concatenate([r["frame_change"] for r in results]))[::-1]
    top = change[: max(1, int(np.ceil(0.05 * change.size)))].sum() / change.sum()
    samples = [(r["system_id"], p, f) for r in results for p, f in zip(r["persistence_mae"], r["noise_floor_mae"],
                                                                         strict=True)]  # fmt: skip
    persistence = np.array([p for _, p, _ in samples])
    floor = np.array([f for _, _, f in samples])
    rng = np.random.default_rng(int(settings["seed"]))
    random_test = rng.permutation(len(samples))[: len(samples) // 10]
    test_systems = set(sheets.systems.loc[sheets.systems.system_split == "test", "system_id"])
    system_test = np.array([i for i, (s, _, _) in enumerate(samples) if s in test_systems])
    ratio = {
        split: float(persistence[idx].mean() / floor[idx].mean())
        for split, idx in (("random", random_test), ("system", system_test))
    }
    n_files = sum(r["n_files"] for r in results)
    if args.out is None and not args.keep:
        shutil.rmtree(out)
    print(json.dumps({
        "benchmark": "simulate", "scale": args.scale, "jobs": args.jobs, "files": n_files,
        "samples": len(samples), "wall_s": round(wall, 2), "files_per_s": round(n_files / wall, 1),
        "snr_median": round(float(np.median(snr)), 2), "snr_mean": round(float(snr.mean()), 2),
        "voltage_0p2_2p0_share": round(float(((voltage >= 0.2) & (voltage <= 2.0)).mean()), 4),
        "top5_change_share": round(float(top), 4),
        **{f"persistence_over_noise_{split}": round(value, 3) for split, value in ratio.items()},
        "out": str(out) if (args.out or args.keep) else None,
    }))  # fmt: skip


if __name__ == "__main__":
    main()
