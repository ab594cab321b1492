"""Reference rows of every table: Random, Persistence and the noise floor."""

from __future__ import annotations

import os

import h5py
import numpy as np

from opir.core.errors import DataError
from opir.formats.samples import SampleTable

REFERENCE_MODELS = ("random", "persistence", "noise_floor")


# --------------------------------------------------------------------------------------------------------------
# Reference rows
# --------------------------------------------------------------------------------------------------------------
def random_reference(table: SampleTable, train_idx: np.ndarray, n_test: int, seed: int, draws: int) -> np.ndarray:
    """(n_test, draws, N_f): training target spectra drawn uniformly with replacement."""
    rng = np.random.default_rng(seed)
    pool = table.samples["row"][train_idx]
    if pool.size == 0:
        raise DataError(f"{table.path}: no training samples to draw the random reference from")
    return table.absorbance[rng.choice(pool, size=(n_test, draws))]


def persistence_reference(table: SampleTable, test_idx: np.ndarray) -> np.ndarray:
    return table.absorbance[table.samples["initial_row"][test_idx]][:, None, :]


def noise_floor_reference(table: SampleTable, test_idx: np.ndarray, truth_path: str | os.PathLike) -> np.ndarray:
    """The noise-free truth of each test target (``truth.h5``, row-aligned with the sample table)."""
    with h5py.File(truth_path, "r") as handle:
        if "absorbance" not in handle:
            raise DataError(f"{truth_path}: dataset 'absorbance' is missing")
        truth = handle["absorbance"]
        if truth.shape != table.absorbance.shape:
            raise DataError(
                f"{truth_path}: absorbance {truth.shape} is not row-aligned with {table.path} {table.absorbance.shape}"
            )
        # row-aligned: the truth of a test target sits at the target's row (h5py wants sorted indices, so read all)
        values = truth[()][table.samples["row"][test_idx]]
    return values[:, None, :]
