"""MCR step 2: every spectrum decomposed on the fixed references, D(v) = C_elec S_elec^T + C_SEI S_SEI^T + baseline + E;
the streams file."""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pandas as pd

from opir.core.errors import ConfigError, DataError
from opir.core.h5io import atomic_h5, atomic_path, provenance, read_strings, write_axis, write_nxdata
from opir.formats.samples import read_sample_arrays, read_spectra
from opir.mcr.references import References, read_references

log = logging.getLogger(__name__)


# ==============================================================================================================
# Step 2: streams with the references held fixed
# ==============================================================================================================
def baseline_basis(n_points: int, order: int) -> np.ndarray:
    """Legendre polynomials 0..order on [-1, 1]: a slow baseline that neither stream should absorb.
    (order < 0: none)."""
    if order < 0:
        return np.zeros((0, n_points))
    x = np.linspace(-1.0, 1.0, n_points)
    return np.polynomial.legendre.legvander(x, order).T


def fit_concentrations(
    D: np.ndarray, ST: np.ndarray, baseline: np.ndarray | None = None, solver: str = "scipy_nnls"
) -> tuple[np.ndarray, np.ndarray]:
    """Non-negative concentrations C (n, k) with D ~ C ST + B baseline, ST fixed; baseline coefficients
    (n, n_b) may have either sign.

    ``scipy_nnls`` solves one Lawson-Hanson NNLS per spectrum; a signed baseline term enters as a +/- pair of
    columns, which keeps the problem an NNLS. ``pymcr`` does the same through ``McrAR(st_fix=all)`` (one
    iteration; the result does not change after it), kept to compare (benchmarks/mcr.py).
    """
    D = np.asarray(D, dtype=float)
    ST = np.asarray(ST, dtype=float)
    B = np.zeros((0, ST.shape[1])) if baseline is None else np.asarray(baseline, float)
    design = np.vstack([ST, B, -B])
    if solver == "scipy_nnls":
        # scipy.optimize takes 0.7 s to import; every ABCC job reads the streams through this module, few solve
        from scipy.optimize import nnls

        A = design.T
        coef = np.empty((D.shape[0], design.shape[0]))
        for n, d in enumerate(D):
            coef[n] = nnls(A, d, maxiter=50 * A.shape[1])[0]
    elif solver == "pymcr":
        # off the start-up path: the workflow imports this package while it parses the rules
        from pymcr.constraints import ConstraintNonneg
        from pymcr.mcr import McrAR

        mcr = McrAR(c_regr="NNLS", st_regr="OLS", c_constraints=[ConstraintNonneg()], max_iter=1)
        mcr.fit(D, ST=design.copy(), st_fix=list(range(design.shape[0])))
        coef = mcr.C_opt_
    else:
        raise ConfigError(f"mcr.solver: unknown solver {solver!r}; expected scipy_nnls or pymcr")
    k, nb = ST.shape[0], B.shape[0]
    return coef[:, :k], coef[:, k : k + nb] - coef[:, k + nb :]


@dataclass
class Streams:
    c_elec: np.ndarray
    c_sei: np.ndarray
    elec: np.ndarray
    sei: np.ndarray
    baseline: np.ndarray
    residual: np.ndarray
    residual_norm: np.ndarray  # ||E|| / ||D|| per spectrum
    flagged: np.ndarray


def decompose_streams(D: np.ndarray, refs: References, baseline_order: int = 1, solver: str = "scipy_nnls") -> Streams:
    """Eq. 11 with S fixed: D = C_elec S_elec^T + C_SEI S_SEI^T (+ slow baseline) + E."""
    D = np.asarray(D, dtype=float)
    if D.shape[1] != refs.spectra.shape[1]:
        raise DataError(
            f"spectra have {D.shape[1]} points but the references {refs.spectra.shape[1]}: both must be on the "
            "same preprocessed grid"
        )
    _, S_elec = refs.select("elec")
    _, S_sei = refs.select("sei")
    basis = baseline_basis(D.shape[1], baseline_order)
    C, b = fit_concentrations(D, np.vstack([S_elec, S_sei]), basis, solver)
    c_elec, c_sei = C[:, : len(S_elec)], C[:, len(S_elec) :]
    elec, sei, baseline = c_elec @ S_elec, c_sei @ S_sei, b @ basis
    residual = D - elec - sei - baseline
    norm = np.linalg.norm(residual, axis=1) / np.maximum(np.linalg.norm(D, axis=1), 1e-12)
    return Streams(c_elec, c_sei, elec, sei, baseline, residual, norm, np.zeros(len(D), bool))


def flag_poorly_explained(
    residual_norm: np.ndarray, max_relative: float, robust_z: float, snr: np.ndarray | None = None
) -> np.ndarray:
    """A spectrum is flagged when its relative residual exceeds ``max_relative`` (the references miss something
    big) or when its residual is an outlier: more than ``robust_z`` robust SDs (1.4826 MAD) above the median
    (a bubble, a contaminant, a shifted baseline in one spectrum).

    With the SNR of every spectrum, the outlier test is on ``residual_norm * snr``: a residual that is only
    noise has ||E|| / ||D|| proportional to 1 / SNR, so the product is the residual in units of what the noise
    explains, and low-SNR spectra are not flagged for being noisy."""
    r = np.asarray(residual_norm, float)
    statistic = r if snr is None else r * np.asarray(snr, float)
    finite = np.isfinite(statistic)
    median = np.median(statistic[finite])
    mad = 1.4826 * np.median(np.abs(statistic[finite] - median))
    outlier = np.zeros_like(r, bool)
    if mad > 0:
        outlier[finite] = (statistic[finite] - median) > robust_z * mad
    return (r > max_relative) | outlier


def read_samples(samples_h5: str | Path) -> dict[str, np.ndarray]:
    """The per-row view MCR works on: the spectra with their run, position and voltage (the sample ids and rows
    when the table has them)."""
    table = read_sample_arrays(
        samples_h5,
        ["wavenumber_cm1", "rows/system_id", "rows/run_id", "rows/index_in_run", "rows/voltage_v"],
        optional=["rows/snr", "samples/sample_id", "samples/row"],
    )
    out = {key.rpartition("/")[2]: table[key] for key in table if not key.startswith("samples/")}
    out["absorbance"] = read_spectra(samples_h5, slice(None))
    if "samples/sample_id" in table:
        out["sample_id"], out["sample_row"] = table["samples/sample_id"], table["samples/row"]
    return out


def build_streams(
    samples_h5: str | Path,
    references_h5: str | Path,
    out_h5: str | Path,
    out_flagged_tsv: str | Path,
    params: Mapping[str, Any],
    rule: str = "mcr_streams",
) -> Streams:
    """Driver of the ``mcr_streams`` rule: every row of samples.h5 -> results/mcr/streams.h5 + flagged.tsv."""
    samples = read_samples(samples_h5)
    refs = read_references(references_h5)
    if not np.allclose(samples["wavenumber_cm1"], refs.wavenumber_cm1):
        raise DataError(f"{references_h5}: wavenumber grid differs from {samples_h5}; rerun mcr_references")
    start = time.perf_counter()
    streams = decompose_streams(samples["absorbance"], refs, params["baseline_order"], params["solver"])
    streams.flagged = flag_poorly_explained(
        streams.residual_norm, params["flag"]["max_relative_residual"], params["flag"]["robust_z"], samples.get("snr")
    )
    log.info("streams: %d spectra in %.2f s", len(streams.residual_norm), time.perf_counter() - start)
    flagged = flagged_table(samples, streams)
    for _, row in flagged.iterrows():
        log.warning(
            "poorly explained by the references: %s/%s spectrum %d (relative residual %.4f, SNR %.0f)",
            row.system_id,
            row.run_id,
            row.index_in_run,
            row.relative_residual,
            row.snr,
        )
    log.info("flagged %d of %d spectra", len(flagged), len(streams.flagged))
    write_streams(out_h5, samples, refs, streams, provenance(rule, params, [samples_h5, references_h5]))
    with atomic_path(out_flagged_tsv) as tmp:
        flagged.to_csv(tmp, sep="\t", index=False, float_format="%.6g")
    return streams


def flagged_table(samples: Mapping[str, np.ndarray], streams: Streams) -> pd.DataFrame:
    rows = np.flatnonzero(streams.flagged)
    return pd.DataFrame(
        {
            "row": rows,
            "system_id": samples["system_id"][rows],
            "run_id": samples["run_id"][rows],
            "index_in_run": samples["index_in_run"][rows],
            "voltage_v": samples["voltage_v"][rows],
            "relative_residual": streams.residual_norm[rows],
            "snr": samples["snr"][rows] if "snr" in samples else np.full(rows.size, np.nan),
        }
    )


def write_streams(path, samples, refs: References, streams: Streams, attrs) -> None:
    elec_names, _ = refs.select("elec")
    sei_names, _ = refs.select("sei")
    grid = refs.wavenumber_cm1
    row_axis = ("row", np.arange(len(streams.residual_norm)))
    f32 = {"dtype": "float32", "compression": "gzip", "compression_opts": 4, "shuffle": True}
    with atomic_h5(path, attrs) as h5:
        write_axis(h5, "wavenumber_cm1", grid)
        write_nxdata(
            h5,
            "c_elec",
            "c_elec",
            streams.c_elec,
            [row_axis, ("component", np.array(elec_names, dtype=str))],
            units="calibration amount / run scale",
        )
        write_nxdata(
            h5,
            "c_sei",
            "c_sei",
            streams.c_sei,
            [row_axis, ("component", np.array(sei_names, dtype=str))],
            units="calibration amount / run scale",
        )
        for name, values in (
            ("elec", streams.elec),
            ("sei", streams.sei),
            ("baseline", streams.baseline),
            ("residual", streams.residual),
        ):
            write_nxdata(h5, name, name, values, [row_axis, ("wavenumber_cm1", grid)], **f32)
        h5.create_dataset("residual_norm", data=streams.residual_norm).attrs["long_name"] = "||E|| / ||D||"
        h5.create_dataset("flagged", data=streams.flagged)
        rows = h5.create_group("rows")
        for key in ("system_id", "run_id", "index_in_run", "voltage_v"):
            write_axis(rows, key, samples[key] if samples[key].dtype.kind != "U" else samples[key].astype(str))


def read_streams(path: str | Path) -> dict[str, Any]:
    with h5py.File(path, "r") as h5:
        return {
            "c_elec": h5["c_elec/c_elec"][()],
            "c_sei": h5["c_sei/c_sei"][()],
            "elec_names": list(read_strings(h5["c_elec/component"])),
            "sei_names": list(read_strings(h5["c_sei/component"])),
            "residual_norm": h5["residual_norm"][()],
            "flagged": h5["flagged"][()],
            "system_id": read_strings(h5["rows/system_id"]),
            "run_id": read_strings(h5["rows/run_id"]),
            "index_in_run": h5["rows/index_in_run"][()],
        }


def read_stream_spectra(path: str | Path, names, n_rows: int) -> dict[str, np.ndarray]:
    """The reconstructed stream spectra ``names`` (``elec``, ``sei``) of every row; a missing stream or a row count
    other than the sample table's (``n_rows``) is a DataError naming the file."""
    out = {}
    with h5py.File(path, "r") as h5:
        for name in names:
            key = f"{name}/{name}"
            if key not in h5:
                raise DataError(f"{path}: missing dataset {key!r} (docs/formats.md, MCR streams)")
            out[name] = h5[key][()]
            if len(out[name]) != n_rows:
                raise DataError(f"{path}: {key} has {len(out[name])} rows, samples.h5 has {n_rows}")
    return out


def read_run_scale(preprocessed_h5: str | Path) -> float | None:
    """The per-run normalization scale preprocessing recorded, or None when the file does not hold one."""
    with h5py.File(preprocessed_h5, "r") as h5:
        for key in ("scale", "normalization/scale", "per_run_scale"):
            if key in h5:
                return float(np.ravel(h5[key][()])[0])
        for key in ("scale", "per_run_scale"):
            if key in h5.attrs:
                return float(h5.attrs[key])
    return None
