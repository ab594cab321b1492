"""The within-run context of the 1D ABCC (``run_context``): for a sample of a run the model has training spectra of,
the Gaussian-kernel mean in time of that run's other training changes, the within-run smoother's estimate
(:func:`opir.baselines.regression.run_kernel_means`), given to the network as two more channels of the initial state:
the mean change (scaled like the target) and a flag that says it is there. A cell the model has no spectra of (the
system split's test runs, every cell of ``opir predict``) gets zeros in both, as training's dropped rows do."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from opir.baselines.regression import run_kernel_means
from opir.core.errors import DataError
from opir.formats.samples import read_sample_arrays, read_spectra, run_keys
from opir.train.data import pad_points

#: Channels the context adds to the 1D variant's initial state s(v_0): the mean change and its presence flag.
CONTEXT_CHANNELS = 2


def context_channels(change: np.ndarray, present: np.ndarray, spectrum_scale: float, length: int) -> torch.Tensor:
    """(n, N_f) unscaled mean changes and (n,) presence -> the two context channels (n, 2, length)."""
    scaled = pad_points(np.where(present[:, None], change, 0.0) / spectrum_scale, length).astype(np.float32)
    flag = np.broadcast_to(present[:, None].astype(np.float32), scaled.shape)
    return torch.from_numpy(np.stack([scaled, flag], axis=1))


def absent_context(n: int, length: int) -> torch.Tensor:
    """The context of cells the model has no spectra of: zeros (n, 2, length)."""
    return torch.zeros(n, CONTEXT_CHANNELS, length)


def within_run_context(
    samples_h5: str | Path, train_ids: list[str], query_ids: list[str], bandwidths, leave_out: bool,
) -> tuple[np.ndarray, np.ndarray, dict[str, float]]:
    """Each query sample's within-run mean change from the training samples ``train_ids`` (unscaled (n, N_f)), its
    presence (n,) and the kernel width per run (s). ``leave_out``: the query samples are training samples, each left
    out of its own mean, so the model learns from estimates as good as a test sample's, not from its own target."""
    table = read_sample_arrays(samples_h5, ["samples/sample_id", "samples/row", "samples/initial_row",
                                            "samples/system_id", "samples/run_id", "samples/elapsed_s"])
    position = {sample: i for i, sample in enumerate(table["samples/sample_id"])}
    missing = [s for s in (*train_ids, *query_ids) if s not in position]
    if missing:
        raise DataError(f"{samples_h5}: {len(missing)} sample(s) of the split are missing, e.g. {missing[0]}")
    train_idx = np.array([position[s] for s in train_ids], dtype=np.int64)
    query_idx = np.array([position[s] for s in query_ids], dtype=np.int64)
    rows, initial = table["samples/row"], table["samples/initial_row"]
    run_key = run_keys(table["samples/system_id"], table["samples/run_id"])

    def change_of(index: np.ndarray) -> np.ndarray:  # one run's training changes: only their rows are read
        return (read_spectra(samples_h5, rows[index]).astype(np.float64)
                - read_spectra(samples_h5, initial[index]).astype(np.float64))  # fmt: skip

    means, present, widths = run_kernel_means(run_key, table["samples/elapsed_s"], change_of, train_idx, query_idx,
                                              bandwidths, leave_out=leave_out)
    if not np.all(np.isfinite(means)):
        raise DataError(f"{samples_h5}: NaN or inf in the within-run context of the requested samples")
    return means, present, widths
