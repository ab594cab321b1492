"""The sample table (``samples.h5``) and the splits (``splits.json``) written by the dataset stage, read by every later
stage."""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from opir.core.errors import DataError
from opir.core.h5io import read_strings


# --------------------------------------------------------------------------------------------------------------
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
        return run_keys(self.samples["system_id"], self.samples["run_id"])


def run_keys(system_id: np.ndarray, run_id: np.ndarray) -> np.ndarray:
    """'{system}/{run}', the key of a run across systems, element by element."""
    return np.char.add(np.char.add(np.asarray(system_id).astype(str), "/"), np.asarray(run_id).astype(str))


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


def read_sample_arrays(
    path: str | os.PathLike, keys: Sequence[str], optional: Sequence[str] = ()
) -> dict[str, np.ndarray]:
    """Named datasets of ``samples.h5`` (``"wavenumber_cm1"``, ``"rows/voltage_v"``, ``"samples/sample_id"``, ...)
    without the spectra, strings decoded; a missing key is a DataError naming the file, a missing ``optional`` key
    is left out."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: sample table does not exist")
    out = {}
    with h5py.File(path, "r") as handle:
        missing = [key for key in keys if key not in handle]
        if missing:
            raise DataError(f"{path}: missing {', '.join(missing)} (docs/architecture.md, samples.h5)")
        for key in (*keys, *(k for k in optional if k in handle)):
            dataset = handle[key]
            out[key] = read_strings(dataset) if dataset.dtype.kind in "OSU" else dataset[()]
    return out


@contextlib.contextmanager
def open_spectra(path: str | os.PathLike) -> Iterator[h5py.Dataset]:
    """``spectra/absorbance`` of ``samples.h5`` as an open dataset, for a stage that streams it in blocks."""
    with h5py.File(path, "r") as handle:
        if "spectra/absorbance" not in handle:
            raise DataError(f"{path}: dataset 'spectra/absorbance' is missing (docs/architecture.md, samples.h5)")
        yield handle["spectra/absorbance"]


def read_spectra(path: str | os.PathLike, rows: np.ndarray | slice) -> np.ndarray:
    """Rows of ``spectra/absorbance``, read without loading the whole table: a slice, or row indices in any order
    (repeats allowed), returned in the order asked."""
    with open_spectra(path) as spectra:
        if isinstance(rows, slice):
            return spectra[rows]
        rows = np.asarray(rows, dtype=np.int64)
        if rows.size == 0:
            return np.zeros((0, spectra.shape[1]), dtype=spectra.dtype)
        unique, inverse = np.unique(rows, return_inverse=True)
        block = spectra[unique]
    return block if unique.size == rows.size and np.array_equal(unique, rows) else block[inverse]


def read_preprocess_params(path: str | os.PathLike) -> dict[str, Any]:
    """The preprocessing parameters the dataset stage applied (``preprocess_params`` root attribute)."""
    with h5py.File(path, "r") as handle:
        if "preprocess_params" not in handle.attrs:
            raise DataError(f"{path}: no 'preprocess_params' attribute (made by an older dataset stage?)")
        return json.loads(handle.attrs["preprocess_params"])
