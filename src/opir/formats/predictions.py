"""The predictions file that every model writes and evaluation reads (docs/formats.md)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from opir.core.errors import DataError
from opir.core.h5io import atomic_h5, read_strings, write_axis


# --------------------------------------------------------------------------------------------------------------
# The predictions file (docs/formats.md, "Predictions, metrics and tables")
# --------------------------------------------------------------------------------------------------------------
@dataclass
class Predictions:
    sample_id: np.ndarray  # (n,) str
    wavenumber_cm1: np.ndarray  # (N_f,)
    prediction: np.ndarray  # (n, k, N_f) float32: k draws per input

    @property
    def mean(self) -> np.ndarray:
        """The point prediction scored by the metrics: the mean over draws."""
        return self.prediction.mean(axis=1)


def write_predictions(
    path: str | os.PathLike,
    sample_id,
    wavenumber_cm1,
    prediction,
    attrs: dict[str, Any] | None = None,
    model: str | None = None,
) -> None:
    """Write a predictions file: the root is an NXdata group with signal ``prediction`` (n, k, N_f) float32 and
    axes ``sample_id`` and ``wavenumber_cm1`` (1/cm). A (n, N_f) prediction is stored with k = 1."""
    sample_id = np.asarray(sample_id, dtype=str)
    wavenumber = np.asarray(wavenumber_cm1, dtype=np.float64)
    pred = np.asarray(prediction, dtype=np.float32)
    if pred.ndim == 2:
        pred = pred[:, None, :]
    if pred.ndim != 3 or pred.shape[0] != sample_id.size or pred.shape[2] != wavenumber.size:
        raise ValueError(f"{path}: prediction {pred.shape} must be (n={sample_id.size}, k, N_f={wavenumber.size})")
    with atomic_h5(path, attrs) as handle:
        handle.attrs["NX_class"] = "NXdata"
        handle.attrs["signal"] = "prediction"
        handle.attrs["axes"] = np.array(["sample_id", ".", "wavenumber_cm1"], dtype=h5py.string_dtype())
        if model:
            handle.attrs["model"] = model
        write_axis(handle, "sample_id", sample_id)
        write_axis(handle, "wavenumber_cm1", wavenumber)
        dataset = handle.create_dataset("prediction", data=pred, chunks=(1, pred.shape[1], pred.shape[2]))
        dataset.attrs["long_name"] = "predicted absorbance (k draws per input; metrics score the mean)"


def read_predictions(path: str | os.PathLike) -> Predictions:
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: predictions file does not exist")
    with h5py.File(path, "r") as handle:
        missing = [key for key in ("sample_id", "wavenumber_cm1", "prediction") if key not in handle]
        if missing:
            raise DataError(f"{path}: missing dataset(s) {missing}; see docs/formats.md (predictions)")
        sample_id = read_strings(handle["sample_id"])
        wavenumber = handle["wavenumber_cm1"][()]
        prediction = handle["prediction"][()]
    if prediction.ndim != 3 or prediction.shape[0] != sample_id.size or prediction.shape[2] != wavenumber.size:
        raise DataError(
            f"{path}: 'prediction' has shape {prediction.shape}; expected (n={sample_id.size}, k, "
            f"N_f={wavenumber.size})"
        )
    if prediction.shape[1] < 1:
        raise DataError(f"{path}: 'prediction' holds zero draws per sample")
    return Predictions(sample_id, wavenumber, prediction)


# --------------------------------------------------------------------------------------------------------------
