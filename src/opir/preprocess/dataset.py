"""Dataset assembly: the sample table ``samples.h5``, the row-aligned noise-free ``truth.h5`` and the OpIRBench
splits ``splits.json`` (layouts: docs/architecture.md and docs/formats.md, "Sample table and splits").

A sample is a spectrum s(v_m), m >= 1, of a run paired with that run's first spectrum s(v_0); its voltage profile
is v_0..v_m. The global clip bounds of preprocessing are estimated here, on the rows of the training systems of
the system split only, and stored with the resolved preprocessing parameters in the file's ``preprocess_params``
attribute (the dict a model stores and ``opir predict`` passes to :func:`opir.preprocess.spectra.apply`).
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from opir.core import h5io
from opir.core.config import with_defaults
from opir.core.electrodes import DESCRIPTOR_COLUMNS, descriptors_from_row
from opir.core.errors import DataError
from opir.formats.electrodes import write_electrodes
from opir.formats.samples import read_preprocess_params, read_sample_arrays
from opir.preprocess import spectra as preprocess

log = logging.getLogger(__name__)


def _read_run(path: str | Path) -> dict[str, Any]:
    with h5py.File(path, "r") as handle:
        return {
            "wavenumber_cm1": handle["spectra/wavenumber_cm1"][()],
            "absorbance": handle["spectra/absorbance"][()],
            "elapsed_s": handle["spectra/elapsed_s"][()],
            "voltage_v": handle["voltage_v"][()],
            "current_ma": handle["current_ma"][()],
            "snr": handle["snr"][()],
            "system_id": str(handle.attrs["system_id"]),
            "run_id": str(handle.attrs["run_id"]),
            "scale": float(handle.attrs["scale"]),
        }


def assemble(
    run_paths: Sequence[str | Path],
    output: str | Path,
    preprocess_params: Mapping[str, Any],
    train_systems: Sequence[str],
    rule: str = "dataset",
) -> dict[str, Any]:
    """Concatenate the preprocessed runs (in the order given) into ``samples.h5``; returns the resolved
    preprocessing parameters (with the clip bounds estimated on ``train_systems``)."""
    runs = [_read_run(path) for path in run_paths]
    if not runs:
        raise DataError("no preprocessed runs to assemble")
    grid = runs[0]["wavenumber_cm1"]
    for path, run in zip(run_paths, runs, strict=True):
        if run["wavenumber_cm1"].shape != grid.shape or not np.allclose(run["wavenumber_cm1"], grid):
            raise DataError(f"{path}: grid differs from {run_paths[0]}'s; preprocess every run with the same settings")
        if len(run["absorbance"]) < 2:
            raise DataError(f"{path}: a run needs at least 2 spectra (s(v_0) and one target)")
    train = set(train_systems)
    train_rows = [run["absorbance"] for run in runs if run["system_id"] in train]
    if not train_rows:
        raise DataError(f"none of the runs belongs to a training system ({', '.join(sorted(train)) or 'none'})")
    params = {k: v for k, v in preprocess.resolve_params(preprocess_params).items() if k in preprocess.DEFAULTS}
    quantiles = preprocess_params.get("clip_quantiles")
    params["clip"] = preprocess.estimate_clip(np.concatenate(train_rows), quantiles)

    spectra = np.concatenate([run["absorbance"] for run in runs]).astype(np.float32)
    n_clipped = 0
    if params["clip"] is not None:
        low, high = params["clip"]
        n_clipped = int(np.count_nonzero((spectra < low) | (spectra > high)))
        spectra = np.clip(spectra, low, high)
    table = sample_table(runs)
    attrs = h5io.provenance(rule, {"preprocess": dict(preprocess_params), "train_systems": sorted(train)}, run_paths)
    attrs["preprocess_params"] = json.dumps(params, sort_keys=True)
    attrs["clip_estimated_on"] = json.dumps(sorted({r["system_id"] for r in runs if r["system_id"] in train}))
    attrs["n_clipped"] = n_clipped
    with h5io.atomic_h5(output, attrs) as handle:
        h5io.write_axis(handle, "wavenumber_cm1", grid)
        h5io.write_nxdata(
            handle,
            "spectra",
            "absorbance",
            spectra,
            [".", ("wavenumber_cm1", grid)],
            long_name="preprocessed absorbance (per-run scale, clipped)",
            chunks=(min(len(spectra), 256), grid.size),
        )
        for group_name, columns in table.items():
            group = handle.create_group(group_name)
            for name, values in columns.items():
                h5io.write_axis(group, name, values)
    log.info(
        "%s: %d rows, %d samples, %d runs, clip %s",
        output,
        len(spectra),
        len(table["samples"]["row"]),
        len(runs),
        params["clip"],
    )
    return params


def sample_table(runs: Sequence[Mapping[str, Any]]) -> dict[str, dict[str, np.ndarray]]:
    """The rows/, samples/ and runs/ columns of samples.h5 for runs in the given order."""
    rows: dict[str, list] = {
        k: [] for k in ("system_id", "run_id", "index_in_run", "voltage_v", "current_ma", "elapsed_s", "snr")
    }
    samples: dict[str, list] = {
        k: [] for k in ("sample_id", "row", "initial_row", "m", "system_id", "run_id", "voltage_v", "elapsed_s")
    }
    run_table: dict[str, list] = {k: [] for k in ("system_id", "run_id", "first_row", "n_rows")}
    first_row = 0
    for run in runs:
        n = len(run["absorbance"])
        system_id, run_id = run["system_id"], run["run_id"]
        run_table["system_id"].append(system_id)
        run_table["run_id"].append(run_id)
        run_table["first_row"].append(first_row)
        run_table["n_rows"].append(n)
        for m in range(n):
            rows["system_id"].append(system_id)
            rows["run_id"].append(run_id)
            rows["index_in_run"].append(m)
            rows["voltage_v"].append(run["voltage_v"][m])
            rows["current_ma"].append(run["current_ma"][m])
            rows["elapsed_s"].append(run["elapsed_s"][m])
            rows["snr"].append(run["snr"][m])
            if m == 0:
                continue
            samples["sample_id"].append(f"{system_id}/{run_id}/{m:05d}")
            samples["row"].append(first_row + m)
            samples["initial_row"].append(first_row)
            samples["m"].append(m)
            samples["system_id"].append(system_id)
            samples["run_id"].append(run_id)
            samples["voltage_v"].append(run["voltage_v"][m])
            samples["elapsed_s"].append(run["elapsed_s"][m])
        first_row += n

    def arrays(columns):
        out = {}
        for name, values in columns.items():
            if values and isinstance(values[0], str):
                out[name] = np.asarray(values, dtype=str)
            elif name in ("index_in_run", "row", "initial_row", "m", "first_row", "n_rows"):
                out[name] = np.asarray(values, dtype=np.int64)
            else:
                out[name] = np.asarray(values, dtype=np.float64)
        return out

    return {"rows": arrays(rows), "samples": arrays(samples), "runs": arrays(run_table)}


def assemble_truth(
    truth_paths: Sequence[str | Path], samples_path: str | Path, output: str | Path, rule: str = "dataset_truth"
) -> None:
    """Row-aligned noise-free spectra, clipped with the bounds samples.h5 was clipped with."""
    params = read_preprocess_params(samples_path)
    table = read_sample_arrays(samples_path, ["runs/system_id", "runs/run_id", "runs/n_rows", "wavenumber_cm1"])
    runs = list(zip(table["runs/system_id"], table["runs/run_id"], table["runs/n_rows"], strict=True))
    grid = table["wavenumber_cm1"]
    blocks = []
    for path, (system_id, run_id, n_rows) in zip(truth_paths, runs, strict=True):
        with h5py.File(path, "r") as handle:
            if (str(handle.attrs["system_id"]), str(handle.attrs["run_id"])) != (system_id, run_id):
                raise DataError(f"{path}: truth of another run than {system_id}/{run_id} (row order must match)")
            block = handle["spectra/absorbance"][()]
        if len(block) != n_rows:
            raise DataError(f"{path}: {len(block)} truth spectra for {n_rows} rows of {system_id}/{run_id}")
        blocks.append(block)
    if len(truth_paths) != len(runs):
        raise DataError(f"{len(truth_paths)} truth runs for {len(runs)} runs in {samples_path}")
    absorbance = np.concatenate(blocks).astype(np.float32)
    if params.get("clip") is not None:
        absorbance = np.clip(absorbance, *params["clip"])
    attrs = h5io.provenance(rule, params, [*truth_paths, samples_path])
    attrs["preprocess_params"] = json.dumps(params, sort_keys=True)
    with h5io.atomic_h5(output, attrs) as handle:
        h5io.write_axis(handle, "wavenumber_cm1", grid)
        h5io.write_nxdata(
            handle,
            "truth",
            "absorbance",
            absorbance,
            [".", ("wavenumber_cm1", grid)],
            long_name="noise-free absorbance, preprocessed like samples.h5",
        )
        handle["absorbance"] = h5py.SoftLink("/truth/absorbance")


# --------------------------------------------------------------------------------------------------------------
# Splits
# --------------------------------------------------------------------------------------------------------------
def random_split(sample_ids: Sequence[str], test_fraction: float, seed: int) -> dict[str, list[str]]:
    """Test = floor(test_fraction * n) samples drawn with a seeded generator; both lists in table order."""
    n = len(sample_ids)
    n_test = math.floor(test_fraction * n + 1e-9)
    chosen = np.random.default_rng(seed).permutation(n)[:n_test]
    is_test = np.zeros(n, dtype=bool)
    is_test[chosen] = True
    ids = np.asarray(sample_ids, dtype=object)
    return {"train": ids[~is_test].tolist(), "test": ids[is_test].tolist()}


def system_split(
    sample_ids: Sequence[str], system_ids: Sequence[str], test_systems: Sequence[str]
) -> dict[str, list[str]]:
    """Every sample of a held-out system is a test sample; the rest train."""
    held_out = set(test_systems)
    train = [s for s, system in zip(sample_ids, system_ids, strict=True) if system not in held_out]
    test = [s for s, system in zip(sample_ids, system_ids, strict=True) if system in held_out]
    return {"train": train, "test": test}


def write_splits(
    samples_path: str | Path, output: str | Path, params: Mapping[str, Any], test_systems: Sequence[str]
) -> dict[str, dict[str, list[str]]]:
    params = with_defaults("dataset", params)
    table = read_sample_arrays(samples_path, ["samples/sample_id", "samples/system_id"])
    sample_ids, system_ids = table["samples/sample_id"].tolist(), table["samples/system_id"].tolist()
    present = set(system_ids)
    missing = sorted(set(test_systems) - present)
    if missing:
        log.warning("held-out system(s) %s have no samples in %s", ", ".join(missing), samples_path)
    splits = {
        "random": random_split(sample_ids, float(params["test_fraction"]), int(params["seed"])),
        "system": system_split(sample_ids, system_ids, test_systems),
    }
    with h5io.atomic_path(output) as tmp:
        tmp.write_text(json.dumps(splits, indent=1) + "\n")
    for name, split in splits.items():
        log.info("%s split: %d train / %d test", name, len(split["train"]), len(split["test"]))
    return splits


def write_electrode_descriptors(
    systems: Sequence[Mapping[str, Any]], output: str | Path, rule: str = "electrodes"
) -> None:
    """The systems sheet's electrode descriptors (rows with system_id, working_electrode and the descriptor
    columns) -> ``results/dataset/electrodes.h5``, checked as the sheet is, for the models to read."""
    rows = [dict(row) for row in systems]
    electrodes = {row["system_id"]: descriptors_from_row(row, f"system {row['system_id']}") for row in rows}
    names = {row["system_id"]: row["working_electrode"] for row in rows}
    slice_ = {"systems": [{k: row[k] for k in ("system_id", "working_electrode", *DESCRIPTOR_COLUMNS)} for row in rows]}
    write_electrodes(output, electrodes, names, h5io.provenance(rule, slice_))
    log.info("%d electrodes described: %s", len(rows), ", ".join(sorted(set(names.values()))))
