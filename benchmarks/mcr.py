"""Benchmark of the two-stream MCR (issue 6): accuracy against the simulator's truth and speed on the full dataset.
Prints one JSON line last:

- n_spectra, n_points, k_elec, k_sei: size of the problem (every row of samples.h5, all references);
- t_streams_s: C_elec, C_SEI, both streams and the residual of every spectrum with the references fixed
  (scipy NNLS, the default solver), in process, after the data are loaded; t_pymcr_s: the same with pyMCR
  McrAR(st_fix=all, max_iter=1), the alternative measured for the choice of solver (docs/mcr.md);
- t_build_streams_s: the whole mcr_streams job in process (read samples.h5 and references, fit, flag, write
  streams.h5 and flagged.tsv);
- r2_sei_mean / r2_sei_pooled / r2_elec_mean / r2_elec_pooled and per-component R2 of recovered vs true
  concentrations (per-run scale undone with the scale preprocessing stored), n_flagged;
- goals: r2_sei_mean >= 0.95 and t_streams_s < 10 s on 2 cores.

The data come from the workflow itself: unless --workdir already holds them, Snakemake builds the simulated
dataset at --scale (1.0 = all 7,118 samples), its preprocessing, the sample table and the references there.

Usage: python benchmarks/mcr.py [--scale 1.0] [--workdir DIR] [--cores 2]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from opir.mcr.references import read_references  # noqa: E402
from opir.mcr.streams import build_streams, decompose_streams, read_samples  # noqa: E402
from opir.mcr.validate import truth_files, validate_against_truth  # noqa: E402


def build_inputs(workdir: Path, scale: float, cores: int) -> None:
    """Run the workflow up to the sample table, the references and the per-run files MCR validation reads."""
    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    overrides = workdir / "benchmark_config.yaml"
    overrides.write_text(yaml.safe_dump({"simulate": {"scale": scale}}))
    targets = ["results/dataset/samples.h5", "results/mcr/references.h5"]
    runs = [line.split("\t") for line in (REPO / config["sheets"]["runs"]).read_text().splitlines()[1:] if line]
    targets += [f"results/preprocessed/{system}/{run}.h5" for system, run in runs]
    exe = Path(sys.executable).with_name("snakemake")
    cmd = [str(exe), "-s", str(REPO / "Snakefile"), "-d", str(workdir), "--configfile", str(overrides),
           "--cores", str(cores), *targets]  # fmt: skip
    result = subprocess.run(cmd, cwd=workdir, capture_output=True, text=True)
    if result.returncode != 0:
        sys.stderr.write(result.stdout[-3000:] + result.stderr[-6000:])
        raise SystemExit(f"snakemake failed ({result.returncode})")


def finite_or_null(value):
    """JSON has no NaN: a component that never varies has no R2 and is written as null."""
    if isinstance(value, dict):
        return {k: finite_or_null(v) for k, v in value.items()}
    if isinstance(value, float) and not np.isfinite(value):
        return None
    return value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scale", type=float, default=1.0, help="simulate.scale of the dataset (1.0 = full)")
    parser.add_argument("--workdir", type=Path, default=None, help="reuse (or keep) the workflow's results here")
    parser.add_argument("--cores", type=int, default=2)
    args = parser.parse_args()
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="opir-bench-mcr-"))
    workdir.mkdir(parents=True, exist_ok=True)

    start = time.perf_counter()
    build_inputs(workdir, args.scale, args.cores)
    t_workflow = time.perf_counter() - start
    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    params = config["mcr"]
    samples_h5 = workdir / "results/dataset/samples.h5"
    refs_h5 = workdir / "results/mcr/references.h5"

    samples = read_samples(samples_h5)
    refs = read_references(refs_h5)
    D = samples["absorbance"]
    start = time.perf_counter()
    decompose_streams(D, refs, params["baseline_order"], "scipy_nnls")
    t_streams = time.perf_counter() - start
    start = time.perf_counter()
    decompose_streams(D, refs, params["baseline_order"], "pymcr")
    t_pymcr = time.perf_counter() - start

    with tempfile.TemporaryDirectory(prefix="opir-bench-mcr-out-") as tmp:
        out = Path(tmp)
        start = time.perf_counter()
        build_streams(samples_h5, refs_h5, out / "streams.h5", out / "flagged.tsv", params)
        t_build = time.perf_counter() - start

        truth_dir = workdir / config["data"]["truth_dir"]
        keys = sorted(set(zip(samples["system_id"], samples["run_id"], strict=True)))
        preprocessed = {key: workdir / f"results/preprocessed/{key[0]}/{key[1]}.h5" for key in keys}
        report = validate_against_truth(out / "streams.h5", truth_files(truth_dir, keys), preprocessed)
    elec_names, sei_names = refs.select("elec")[0], refs.select("sei")[0]
    result = {
        "benchmark": "mcr",
        "scale": args.scale,
        "n_spectra": int(D.shape[0]),
        "n_points": int(D.shape[1]),
        "k_elec": len(elec_names),
        "k_sei": len(sei_names),
        "t_streams_s": round(t_streams, 3),
        "t_pymcr_s": round(t_pymcr, 3),
        "t_build_streams_s": round(t_build, 3),
        "t_workflow_inputs_s": round(t_workflow, 1),
        "references_lack_of_fit_percent": round(float(refs.diagnostics["lack_of_fit_percent"]), 3),
        "r2_sei_mean": round(report["sei"]["r2_mean"], 4),
        "r2_sei_pooled": round(report["sei"]["r2_pooled"], 4),
        "r2_elec_mean": round(report["elec"]["r2_mean"], 4),
        "r2_elec_pooled": round(report["elec"]["r2_pooled"], 4),
        "r2_sei": {k: round(v, 4) for k, v in report["sei"]["r2_per_component"].items()},
        "r2_elec": {k: round(v, 4) for k, v in report["elec"]["r2_per_component"].items()},
        "scale_method": report["sei"]["scale_method"],
        "n_flagged": report["n_flagged"],
        "median_relative_residual": round(report["median_relative_residual"], 4),
        "threads": os.cpu_count(),
        "goal_r2_sei": 0.95,
        "goal_t_streams_s": 10.0,
        "goals_met": bool(report["sei"]["r2_mean"] >= 0.95 and t_streams < 10.0),
        "workdir": str(workdir),
    }
    print(json.dumps(finite_or_null(result)))


if __name__ == "__main__":
    main()
