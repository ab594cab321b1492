"""Data that several test modules make: a small operando run written with the project's OPUS writer and EC-Lab
text format (the ingest-stage tests), and a toy sample table with truth, splits and mixture embeddings (the
evaluation, baseline, table and report tests)."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import numpy as np
import pandas as pd

from opir.core.h5io import atomic_h5, provenance, write_axis, write_nxdata
from opir.formats.opus_writer import write_opus

START = dt.datetime(2026, 3, 2, 9, 0, 0, tzinfo=dt.UTC)
AXIS = (2400.0, 600.0, 934)  # descending like OPUS, ~1.93 1/cm spacing


# --------------------------------------------------------------------------------------------------------------
# A small operando run written with the project's OPUS writer (also used by the other ingest-stage tests)
# --------------------------------------------------------------------------------------------------------------
def synthetic_absorbance(n: int, seed: int = 0, axis=AXIS, noise: float = 0.002) -> np.ndarray:
    """Bands of EC/DMC-like positions whose heights drift with the spectrum index, a slow baseline, noise."""
    rng = np.random.default_rng(seed)
    x = np.linspace(*axis)
    bands = [(1770.0, 12.0, 0.8), (1300.0, 15.0, 0.5), (1070.0, 10.0, 0.6), (840.0, 8.0, 0.7)]
    out = np.empty((n, x.size))
    for i in range(n):
        growth = i / max(n - 1, 1)
        y = 0.05 + 2e-5 * (x - 600.0)
        for k, (centre, width, height) in enumerate(bands):
            y += height * (1 + 0.2 * growth * (-1) ** k) / (1 + ((x - centre) / width) ** 2)
        out[i] = y + rng.normal(0, noise, x.size)
    return out.astype(np.float32)


def write_mpt(path: Path, started: dt.datetime, duration_s: float, step_s: float = 5.0) -> None:
    t = np.arange(0.0, duration_s + step_s, step_s)
    voltage = 3.0 - 2.9 * t / t[-1]
    current = np.full_like(t, -0.1)
    local = started.astimezone(dt.UTC).strftime("%m/%d/%Y %H:%M:%S.%f")[:-3]
    header = [
        "EC-Lab ASCII FILE",
        "Nb header lines : 5",
        "",
        f"Acquisition started on : {local}",
        "time/s\tEwe/V\t<I>/mA",
    ]
    rows = [f"{a:.3f}\t{b:.6f}\t{c:.6f}" for a, b, c in zip(t, voltage, current, strict=True)]
    path.write_text("\n".join(header + rows) + "\n", encoding="latin-1")


def write_run(
    run_dir: Path,
    n: int = 6,
    interval_s: float = 30.0,
    seed: int = 0,
    started: dt.datetime = START,
    utc_offset_hours: float = 1.0,
    manifest: bool = True,
) -> list[Path]:
    """A run folder as docs/architecture.md describes it: spectra/*.0, potentiostat.mpt, manifest.tsv."""
    spectra_dir = run_dir / "spectra"
    spectra_dir.mkdir(parents=True, exist_ok=True)
    absorbance = synthetic_absorbance(n, seed)
    paths, rows = [], []
    for i in range(n):
        acquired = started + dt.timedelta(seconds=10 + i * interval_s)
        path = spectra_dir / f"spec_{i:05d}.0"
        write_opus(
            path,
            {"AB": absorbance[i]},
            first_x_cm1=AXIS[0],
            last_x_cm1=AXIS[1],
            acquired=acquired,
            sample_name=f"{run_dir.name} #{i}",
            utc_offset_hours=utc_offset_hours,
        )
        paths.append(path)
        rows.append((path.name, i, acquired.isoformat()))
    write_mpt(run_dir / "potentiostat.mpt", started, 10 + n * interval_s + 30)
    if manifest:
        pd.DataFrame(rows, columns=["file", "index", "acquired_utc"]).to_csv(
            run_dir / "manifest.tsv", sep="\t", index=False
        )
    return paths


# --------------------------------------------------------------------------------------------------------------
# A toy sample table
# --------------------------------------------------------------------------------------------------------------
TOY_SYSTEMS = {"sys_a": [1.0, 0.0], "sys_b": [0.0, 1.0], "sys_c": [0.1, 0.9]}


def _band(wavenumber, center, width=25.0):
    return np.exp(-0.5 * ((wavenumber - center) / width) ** 2)


def write_toy_dataset(folder, n_points: int = 60, rows_per_run: int = 13, noise: float = 0.002, seed: int = 0):
    """A samples.h5 / truth.h5 / splits.json / mixture_3d.h5 following docs/architecture.md.

    Three systems with one run each; voltage goes 3.0 V -> 0.05 V -> 2.0 V; an 'SEI' band at 1650 1/cm grows with
    the time-integrated exposure below 1.0 V. System split: sys_c is the test system.
    """
    rng = np.random.default_rng(seed)
    wavenumber = np.linspace(800.0, 2000.0, n_points)
    truth, rows, samples, runs = (
        [],
        {k: [] for k in ("system_id", "run_id", "index_in_run", "voltage_v", "current_ma", "elapsed_s", "snr")},
        [],
        [],
    )
    centers = {"sys_a": 1750.0, "sys_b": 1800.0, "sys_c": 1790.0}
    half = rows_per_run // 2
    voltage = np.concatenate([np.linspace(3.0, 0.05, half + 1), np.linspace(0.05, 2.0, rows_per_run - half)[1:]])
    elapsed = np.arange(rows_per_run) * 1800.0
    exposure = np.concatenate([[0.0], np.cumsum(np.maximum(0.0, 1.0 - voltage[1:]) * 0.5)])
    for system in TOY_SYSTEMS:
        first = len(truth)
        for j in range(rows_per_run):
            truth.append(_band(wavenumber, centers[system]) + 0.3 * exposure[j] * _band(wavenumber, 1650.0) + 0.05)
            rows["system_id"].append(system)
            rows["run_id"].append("run01")
            rows["index_in_run"].append(j)
            rows["voltage_v"].append(voltage[j])
            rows["current_ma"].append(-0.1 if j <= half else 0.1)
            rows["elapsed_s"].append(elapsed[j])
            rows["snr"].append(100.0)
            if j > 0:
                samples.append(
                    (f"{system}/run01/{j:05d}", first + j, first, j, system, "run01", voltage[j], elapsed[j])
                )
        runs.append((system, "run01", first, rows_per_run))
    truth = np.array(truth)
    measured = (truth + noise * rng.normal(size=truth.shape)).astype(np.float32)

    samples_path = folder / "samples.h5"
    with atomic_h5(samples_path, provenance("toy_dataset", {}, [])) as handle:
        write_axis(handle, "wavenumber_cm1", wavenumber)
        write_nxdata(handle, "spectra", "absorbance", measured, [".", ("wavenumber_cm1", wavenumber)])
        group = handle.create_group("rows")
        for key, values in rows.items():
            write_axis(group, key, np.array(values))
        group = handle.create_group("samples")
        columns = list(zip(*samples, strict=True))
        for key, values in zip(
            ("sample_id", "row", "initial_row", "m", "system_id", "run_id", "voltage_v", "elapsed_s"),
            columns,
            strict=True,
        ):
            write_axis(group, key, np.array(values))
        group = handle.create_group("runs")
        for key, values in zip(("system_id", "run_id", "first_row", "n_rows"), zip(*runs, strict=True), strict=True):
            write_axis(group, key, np.array(values))
    truth_path = folder / "truth.h5"
    with atomic_h5(truth_path, provenance("toy_truth", {}, [])) as handle:
        handle.create_dataset("absorbance", data=truth.astype(np.float32))

    ids = [s[0] for s in samples]
    random_test = ids[2::5]
    system_test = [sid for sid in ids if sid.startswith("sys_c/")]
    splits = {
        "random": {"train": [s for s in ids if s not in random_test], "test": random_test},
        "system": {"train": [s for s in ids if s not in system_test], "test": system_test},
    }
    splits_path = folder / "splits.json"
    splits_path.write_text(json.dumps(splits))
    embedding_path = folder / "mixture_3d.h5"
    with atomic_h5(embedding_path, provenance("toy_embed", {}, [])) as handle:
        write_axis(handle, "system_id", np.array(list(TOY_SYSTEMS)))
        handle.create_dataset("mixture_embedding", data=np.array(list(TOY_SYSTEMS.values()), dtype=np.float32))
    return {"samples": samples_path, "truth": truth_path, "splits": splits_path, "embedding": embedding_path}
