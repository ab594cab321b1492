"""Runs as sequences for the 1D neural baselines: step and frame features, clips, scales."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from opir.core.arrays import interp_linear
from opir.core.errors import DataError

#: Frame / step features of the 1D baselines (voltage, elapsed time, ...); see :func:`step_features`.
STEP_FEATURES = 3
FRAME_FEATURES = 3
CLIP_FEATURES = 3


# --------------------------------------------------------------------------------------------------------------
# Runs as sequences (the 1D baselines)
# --------------------------------------------------------------------------------------------------------------
@dataclass
class RunSeries:
    """One run from its initial spectrum to its last sample, in acquisition order (local index j = 0 is s(v_0)).
    ``target_mask`` marks the rows that may be used as targets (training samples; j = 0 is always an input)."""

    key: str
    system_id: str
    rows: np.ndarray  # (n,) rows of samples.h5
    voltage_v: np.ndarray  # (n,)
    elapsed_s: np.ndarray  # (n,) since s(v_0)
    spectra: np.ndarray  # (n, N_f); NaN except s(v_0) and the rows with target_mask
    target_mask: np.ndarray  # (n,) bool
    sample_index: dict[int, int]  # local index -> position in the caller's sample list

    @property
    def available(self) -> np.ndarray:
        """Local indices whose spectra a model may see: s(v_0) and the targets."""
        return np.flatnonzero(self.target_mask | (np.arange(len(self.rows)) == 0))


def build_runs(table, sample_idx: np.ndarray, target_idx: np.ndarray) -> list[RunSeries]:
    """Runs holding the samples ``sample_idx`` (positions in the sample table); each run spans s(v_0) to its last
    sample of any part, so the voltage profile (an input) is whole; spectra are marked usable only for
    ``target_idx``."""
    samples = table.samples
    all_last: dict[int, int] = {}
    for initial, row in zip(samples["initial_row"], samples["row"], strict=True):
        all_last[int(initial)] = max(all_last.get(int(initial), initial), int(row))
    targets = set(samples["row"][target_idx].tolist())
    runs = []
    for initial in sorted({int(i) for i in samples["initial_row"][sample_idx]}):
        rows = np.arange(initial, all_last[initial] + 1)
        run_id = table.rows["run_id"][initial]
        system = str(table.rows["system_id"][initial])
        if np.any(table.rows["run_id"][rows] != run_id) or np.any(table.rows["system_id"][rows] != system):
            raise DataError(f"{table.path}: rows {initial}..{rows[-1]} of run {system}/{run_id} are not contiguous")
        elapsed = table.rows["elapsed_s"][rows].astype(np.float64)
        members = sample_idx[samples["initial_row"][sample_idx] == initial]
        target_mask = np.isin(rows, list(targets))
        # spectra a model may not see (test targets) are not even copied: NaN makes any accidental use visible
        spectra = np.full((len(rows), table.absorbance.shape[1]), np.nan, dtype=np.float32)
        usable = target_mask | (rows == initial)
        spectra[usable] = table.absorbance[rows[usable]]
        runs.append(RunSeries(
            key=f"{system}/{run_id}", system_id=system, rows=rows,
            voltage_v=table.rows["voltage_v"][rows].astype(np.float64), elapsed_s=elapsed - elapsed[0],
            spectra=spectra, target_mask=target_mask,
            sample_index={int(samples["row"][i]) - initial: int(k) for k, i in
                          zip(np.searchsorted(sample_idx, members), members, strict=True)},
        ))
    return runs


def step_features(run: RunSeries, condition: dict[str, Any]) -> np.ndarray:
    """(n, 3) per row: scaled voltage, log1p(elapsed / time scale), scaled voltage step (the direction of sweep)."""
    v = (run.voltage_v - float(condition["voltage_center_v"])) / float(condition["voltage_scale_v"])
    dv = np.diff(v, prepend=v[0])
    elapsed = np.log1p(run.elapsed_s / float(condition["time_scale_s"]))
    return np.stack([v, elapsed, dv], axis=1).astype(np.float32)


def delta_scale(runs: list[RunSeries]) -> float:
    """Standard deviation of s(v_m) - s(v_0) over the training targets (the 1D models predict in its units)."""
    deltas = [run.spectra[run.target_mask] - run.spectra[0] for run in runs if run.target_mask.any()]
    if not deltas:
        raise DataError("no training targets for the neural baseline")
    return max(float(np.concatenate(deltas).std()), 1e-6)


def clip_from_run(run: RunSeries, start: int, end: int, frames: int, condition: dict[str, Any],
                  with_targets: bool = True) -> dict[str, np.ndarray]:
    """One clip of ``frames`` frames at evenly spaced positions of the local index from ``start`` to ``end``:
    frame values s(q) - s(start) interpolated between usable rows, per-frame features (scaled voltage, log
    elapsed since ``start``, position), clip features (log rows, log duration, scaled start voltage)."""
    if end <= start:
        raise DataError(f"{run.key}: a clip needs end > start, got {start}..{end}")
    query = start + (end - start) * np.linspace(0.0, 1.0, frames)
    index = np.arange(len(run.rows), dtype=np.float64)
    center, scale, tscale = (float(condition[k]) for k in ("voltage_center_v", "voltage_scale_v", "time_scale_s"))
    voltage = np.interp(query, index, run.voltage_v)
    elapsed = np.interp(query, index, run.elapsed_s) - run.elapsed_s[start]
    frame_features = np.stack([(voltage - center) / scale, np.log1p(elapsed / tscale),
                               np.linspace(0.0, 1.0, frames)], axis=1)
    clip_features = np.array([np.log1p(end - start), np.log1p((run.elapsed_s[end] - run.elapsed_s[start]) / tscale),
                              (run.voltage_v[start] - center) / scale])
    out = {"initial": run.spectra[start].astype(np.float32), "frame_features": frame_features.astype(np.float32),
           "clip_features": clip_features.astype(np.float32), "positions": query}
    if with_targets:
        usable = run.available
        usable = usable[usable >= start]
        at_query = interp_linear(usable, run.spectra[usable], query, axis=0, clamp=True)
        out["delta"] = (at_query - run.spectra[start]).astype(np.float32)
    return out
