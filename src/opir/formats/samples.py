"""The sample table (``samples.h5``) and the splits (``splits.json``) written by the dataset stage, read by every later
stage."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

from opir.core.errors import DataError
from opir.core.h5io import read_strings


# The sample table and the splits (written by the dataset stage; docs/architecture.md)
# --------------------------------------------------------------------------------------------------------------
@dataclass
class SampleTable:
    """What evaluation and the baselines read from ``results/dataset/samples.h5``."""

    path: Path
    wavenumber_cm1: np.ndarray
    absorbance: np.ndarray  # (n_rows, N_f)
    rows: dict[str, np.ndarray]
    samples: dict[str, np.ndarray]
    runs: dict[str, np.ndarray]

    def sample_index(self, sample_ids, where: str) -> np.ndarray:
        """Positions of ``sample_ids`` in the table; unknown ids are an error naming ``where``."""
        lookup = {sid: i for i, sid in enumerate(self.samples["sample_id"])}
        missing = [sid for sid in sample_ids if sid not in lookup]
        if missing:
            raise DataError(f"{where}: {len(missing)} sample id(s) not in {self.path}, e.g. {missing[:5]}")
        return np.array([lookup[sid] for sid in sample_ids], dtype=np.int64)

    def run_key(self) -> np.ndarray:
        """'{system}/{run}' of every sample."""
        return np.char.add(np.char.add(self.samples["system_id"], "/"), self.samples["run_id"])


_SAMPLE_KEYS = ("sample_id", "row", "initial_row", "m", "system_id", "run_id", "voltage_v", "elapsed_s")
_ROW_KEYS = ("system_id", "run_id", "index_in_run", "voltage_v", "elapsed_s")
_RUN_KEYS = ("system_id", "run_id", "first_row", "n_rows")


def _read_group(handle: h5py.File, group: str, keys, path: Path, optional=()) -> dict[str, np.ndarray]:
    if group not in handle:
        raise DataError(f"{path}: group '{group}' is missing (docs/architecture.md, samples.h5)")
    out = {}
    for key in (*keys, *optional):
        if key not in handle[group]:
            if key in optional:
                continue
            raise DataError(f"{path}: dataset '{group}/{key}' is missing (docs/architecture.md, samples.h5)")
        dataset = handle[group][key]
        out[key] = read_strings(dataset) if dataset.dtype.kind in "OSU" else dataset[()]
    return out


def load_samples(path: str | os.PathLike) -> SampleTable:
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: sample table does not exist")
    with h5py.File(path, "r") as handle:
        for key in ("wavenumber_cm1", "spectra/absorbance"):
            if key not in handle:
                raise DataError(f"{path}: dataset '{key}' is missing (docs/architecture.md, samples.h5)")
        wavenumber = handle["wavenumber_cm1"][()]
        absorbance = handle["spectra/absorbance"][()]
        rows = _read_group(handle, "rows", _ROW_KEYS, path, optional=("current_ma", "snr"))
        samples = _read_group(handle, "samples", _SAMPLE_KEYS, path)
        runs = _read_group(handle, "runs", _RUN_KEYS, path)
    if absorbance.ndim != 2 or absorbance.shape[1] != wavenumber.size:
        raise DataError(f"{path}: spectra/absorbance {absorbance.shape} does not match {wavenumber.size} wavenumbers")
    n_rows = absorbance.shape[0]
    for key, values in rows.items():
        if len(values) != n_rows:
            raise DataError(f"{path}: rows/{key} has {len(values)} entries, spectra/absorbance {n_rows} rows")
    for key in ("row", "initial_row"):
        bad = np.flatnonzero((samples[key] < 0) | (samples[key] >= n_rows))
        if bad.size:
            raise DataError(f"{path}: samples/{key} out of range for sample {samples['sample_id'][bad[0]]}")
    return SampleTable(path, wavenumber, absorbance, rows, samples, runs)


def load_split(path: str | os.PathLike, split: str) -> dict[str, list[str]]:
    """``{"train": [...], "test": [...]}`` of one split from ``splits.json``."""
    path = Path(path)
    try:
        splits = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise DataError(f"{path}: cannot read the splits ({err})") from err
    if split not in splits or not all(part in splits[split] for part in ("train", "test")):
        raise DataError(f"{path}: split '{split}' with 'train' and 'test' lists is missing")
    train, test = list(splits[split]["train"]), list(splits[split]["test"])
    overlap = set(train) & set(test)
    if overlap:
        raise DataError(
            f"{path}: split '{split}': {len(overlap)} sample(s) both train and test, e.g. {sorted(overlap)[:3]}"
        )
    return {"train": train, "test": test}
