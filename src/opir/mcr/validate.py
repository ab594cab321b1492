"""MCR validation against the simulator's noise-free truth: concentration R2 per species and per run."""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from opir.core.arrays import r2_rows
from opir.core.errors import DataError
from opir.core.h5io import atomic_path, read_strings
from opir.mcr.streams import read_run_scale, read_streams

log = logging.getLogger(__name__)


# ==============================================================================================================
# Validation against the simulator's truth
# ==============================================================================================================
def per_run_gain(recovered: np.ndarray, true: np.ndarray) -> float:
    """One least-squares factor g with true ~ g * recovered, common to all components of a run: the normalization
    scale of that run when preprocessing did not record it."""
    num = float((recovered * true).sum())
    den = float((recovered * recovered).sum())
    return num / den if den > 0 else 1.0


def concentration_r2(
    recovered: np.ndarray, true: np.ndarray, names: Sequence[str], run_of_row: np.ndarray, scale: np.ndarray | None
) -> dict[str, Any]:
    """R2 per component of recovered vs true concentrations, pooled over all spectra.

    The per-run normalization divides every concentration of a run by that run's scale; ``scale`` (per row)
    undoes it. Without it, one gain per run is fitted over all components of the stream together (it cannot
    rescue a wrong split between components, only the run's overall scale)."""
    recovered = np.asarray(recovered, float).copy()
    if scale is not None:
        recovered *= np.asarray(scale, float)[:, None]
        method = "stored per-run scale"
    else:
        for run in np.unique(run_of_row):
            rows = run_of_row == run
            recovered[rows] *= per_run_gain(recovered[rows], true[rows])
        method = "fitted per-run gain"
    per_component = {name: float(r2_rows(true[:, i], recovered[:, i])[0]) for i, name in enumerate(names)}
    valid = [v for v in per_component.values() if np.isfinite(v)]
    return {
        "r2_per_component": per_component,
        "r2_mean": float(np.mean(valid)) if valid else float("nan"),
        "r2_pooled": float(r2_rows(true.ravel(), recovered.ravel())[0]),
        "scale_method": method,
    }


def truth_files(truth_dir: str | Path, runs: Sequence[tuple[str, str]]) -> dict[tuple[str, str], Path]:
    """The simulator's truth file of every run: ``{truth_dir}/{system}/{run}.h5``."""
    return {(system, run): Path(truth_dir) / system / f"{run}.h5" for system, run in runs}


def true_concentrations(
    truth: Mapping[tuple[str, str], str | Path], streams: Mapping[str, Any], names: Sequence[str]
) -> np.ndarray:
    """Rows of the simulator's true concentrations aligned with streams.h5 (NaN columns for unknown names);
    ``truth`` maps (system, run) to the run's truth file."""
    out = np.full((len(streams["run_id"]), len(names)), np.nan)
    keys = list(zip(streams["system_id"], streams["run_id"], strict=True))
    for system, run in dict.fromkeys(keys):
        if (system, run) not in truth:
            raise DataError(f"no truth file given for run {system}/{run}")
        path = Path(truth[(system, run)])
        if not path.is_file():
            raise DataError(f"{path}: truth file of run {system}/{run} not found")
        with h5py.File(path, "r") as h5:
            if "concentrations" not in h5 or "component_names" not in h5:
                raise DataError(f"{path}: needs 'concentrations' and 'component_names'")
            conc, truth_names = h5["concentrations"][()], list(read_strings(h5["component_names"]))
        rows = np.flatnonzero((streams["system_id"] == system) & (streams["run_id"] == run))
        index = streams["index_in_run"][rows]
        if index.max() >= len(conc):
            raise DataError(f"{path}: {len(conc)} truth rows, but spectrum index {index.max()} is used")
        for j, name in enumerate(names):
            if name in truth_names:
                out[rows, j] = conc[index, truth_names.index(name)]
    return out


def validate_against_truth(
    streams_h5: str | Path,
    truth: Mapping[tuple[str, str], str | Path],
    preprocessed: Mapping[tuple[str, str], str | Path] | None = None,
) -> dict[str, Any]:
    """R2 of recovered vs true concentrations per stream (the scale handling is in :func:`concentration_r2`)."""
    streams = read_streams(streams_h5)
    run_key = np.char.add(np.char.add(streams["system_id"].astype(str), "/"), streams["run_id"].astype(str))
    scale = None
    if preprocessed:
        per_run = {f"{s}/{r}": read_run_scale(p) for (s, r), p in preprocessed.items()}
        if all(v is not None for v in per_run.values()) and set(run_key) <= set(per_run):
            scale = np.array([per_run[k] for k in run_key])
    report: dict[str, Any] = {}
    for stream in ("sei", "elec"):
        names = streams[f"{stream}_names"]
        true = true_concentrations(truth, streams, names)
        known = ~np.isnan(true).any(axis=0)
        missing = [n for n, k in zip(names, known, strict=True) if not k]
        if missing:
            log.warning("no true concentration for %s: left out of R2", ", ".join(missing))
        kept = [n for n, k in zip(names, known, strict=True) if k]
        result = concentration_r2(streams[f"c_{stream}"][:, known], true[:, known], kept, run_key, scale)
        result["not_in_truth"] = missing
        report[stream] = result
    report["n_spectra"] = len(run_key)
    report["n_flagged"] = int(streams["flagged"].sum())
    report["median_relative_residual"] = float(np.median(streams["residual_norm"]))
    return report


def build_validation(streams_h5, truth, preprocessed, out_json) -> dict[str, Any]:
    """Driver of the ``mcr_validate`` rule: ``truth`` and ``preprocessed`` map (system, run) to files."""
    report = validate_against_truth(streams_h5, truth, preprocessed)
    log.info("R2 SEI %.4f, electrolyte %.4f", report["sei"]["r2_mean"], report["elec"]["r2_mean"])
    with atomic_path(out_json) as tmp:
        tmp.write_text(json.dumps(report, indent=2, default=float))
    return report


# ---- pathway files -------------------------------------------------------------------------------------------
