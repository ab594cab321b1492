"""Preprocessing: raw absorbance on an OPUS axis -> normalized absorbance on the common grid.

Steps, in order (docs/preprocessing.md gives the reasons):
1. truncation to [f_min_cm1, f_max_cm1] (the axis must cover it; nothing is extrapolated);
2. resampling to ``n_points`` equally spaced wavenumbers, ascending: ``bin_mean`` (the mean of the raw spectrum
   over each grid cell, from the cumulative integral: it averages noise down instead of aliasing it) or ``linear``;
3. baseline handling per spectrum: ``none``, ``offset`` (subtract the minimum), ``linear`` (line through the
   means of the two end windows) or ``modpoly`` (iterative modified polynomial fit, Lieber and
   Mahadevan-Jansen 2003, Appl. Spectrosc. 57:1363);
4. normalization by a per-run scale taken from the run's own initial spectrum s(v_0) (``initial_max_abs`` or
   ``initial_rms``): it never needs any other run, so no statistic of a test system can enter a training run;
5. clipping to ``clip = [low, high]`` when given: the bounds are global statistics and are estimated on the
   training systems of the system split only (:func:`estimate_clip`, called by :mod:`opir.preprocess.dataset`).

:func:`apply` is the one entry point for any (wavenumber, absorbance) block: ingest runs, the MCR calibration set
and a user's spectrum in ``opir predict`` all go through it with a plain ``params`` dict that is stored with
every model.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import h5py
import numpy as np
from threadpoolctl import threadpool_limits

from opir.core import h5io
from opir.core.arrays import interp_linear
from opir.core.errors import DataError

log = logging.getLogger(__name__)

DEFAULTS: dict[str, Any] = {
    "f_min_cm1": 800.0,
    "f_max_cm1": 2000.0,
    "n_points": 512,
    "resample": "bin_mean",
    "baseline": "modpoly",
    "baseline_degree": 2,
    "baseline_iterations": 100,
    "scale": "initial_max_abs",
    "clip": None,
}


def resolve_params(params: Mapping[str, Any] | None) -> dict[str, Any]:
    """``params`` over :data:`DEFAULTS`, checked; unknown keys are an error (a typo must not pass silently)."""
    merged = {**DEFAULTS, **dict(params or {})}
    unknown = sorted(set(merged) - set(DEFAULTS) - {"clip_quantiles"})
    if unknown:
        raise DataError(f"preprocessing parameters: unknown key(s) {', '.join(unknown)}; known: {', '.join(DEFAULTS)}")
    if not merged["f_min_cm1"] < merged["f_max_cm1"]:
        raise DataError(f"preprocessing parameters: f_min_cm1 {merged['f_min_cm1']} must be below f_max_cm1")
    if int(merged["n_points"]) < 2:
        raise DataError(f"preprocessing parameters: n_points {merged['n_points']} must be at least 2")
    for key, allowed in (
        ("resample", ("bin_mean", "linear")),
        ("baseline", ("none", "offset", "linear", "modpoly")),
        ("scale", ("initial_max_abs", "initial_rms", "none")),
    ):
        if merged[key] not in allowed:
            raise DataError(f"preprocessing parameters: {key} {merged[key]!r} is not one of {', '.join(allowed)}")
    return merged


def common_grid(params: Mapping[str, Any]) -> np.ndarray:
    """The common wavenumber grid (ascending, 1/cm)."""
    p = resolve_params(params)
    return np.linspace(float(p["f_min_cm1"]), float(p["f_max_cm1"]), int(p["n_points"]))


def _ascending(wavenumber_cm1: np.ndarray, absorbance: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    x = np.asarray(wavenumber_cm1, dtype=np.float64)
    y = np.atleast_2d(np.asarray(absorbance, dtype=np.float64))
    if x.ndim != 1 or y.shape[-1] != x.size:
        raise DataError(f"absorbance shape {y.shape} does not match a wavenumber axis of {x.size} points")
    if x.size > 1 and x[0] > x[-1]:
        x, y = x[::-1], y[:, ::-1]
    if np.any(np.diff(x) <= 0):
        raise DataError("wavenumber axis is not strictly monotonic")
    return x, y


def resample(x: np.ndarray, y: np.ndarray, grid: np.ndarray, method: str = "bin_mean") -> np.ndarray:
    """Rows of ``y`` on ascending ``x`` -> rows on ``grid``."""
    if method == "linear":
        return interp_linear(x, y, grid)
    # cell mean = difference of the exact integral of the piecewise-linear spectrum at the cell edges / width
    steps = np.diff(x)
    cumulative = np.concatenate(
        [np.zeros((y.shape[0], 1)), np.cumsum(0.5 * (y[:, 1:] + y[:, :-1]) * steps, axis=1)], axis=1
    )
    half = 0.5 * (grid[1] - grid[0])
    edges = np.clip(np.concatenate([grid - half, grid[-1:] + half]), x[0], x[-1])
    left = np.clip(np.searchsorted(x, edges, side="right") - 1, 0, x.size - 2)
    run = edges - x[left]
    slope = (y[:, left + 1] - y[:, left]) / steps[left]
    integral = cumulative[:, left] + y[:, left] * run + 0.5 * slope * run**2
    return np.diff(integral, axis=1) / np.diff(edges)


def estimate_baseline(grid: np.ndarray, spectra: np.ndarray, params: Mapping[str, Any]) -> np.ndarray:
    """Baseline of every row (same shape as ``spectra``)."""
    method = params["baseline"]
    if method == "none":
        return np.zeros_like(spectra)
    if method == "offset":
        return np.repeat(spectra.min(axis=1, keepdims=True), spectra.shape[1], axis=1)
    if method == "linear":
        k = max(2, spectra.shape[1] // 50)
        left, right = spectra[:, :k].mean(axis=1), spectra[:, -k:].mean(axis=1)
        fraction = (grid - grid[0]) / (grid[-1] - grid[0])
        return left[:, None] + (right - left)[:, None] * fraction[None, :]
    # modpoly: fit, keep the lower of data and fit, refit; peaks are shaved off until the fit hugs the floor.
    # Columns are spectra (contiguous for the small matrix products), and BLAS runs single-threaded: the products
    # are tiny (degree + 1 columns), and threads only contend with the other jobs of the workflow.
    u = (grid - grid.mean()) / (0.5 * (grid[-1] - grid[0]))
    vander = np.vander(u, int(params["baseline_degree"]) + 1)
    projector = np.linalg.pinv(vander)
    floor = np.array(spectra.T, order="C")  # a copy: it is shaved in place
    fit = floor
    tolerance = 1e-9 * max(float(np.abs(spectra).max()), 1e-30)
    with threadpool_limits(limits=1, user_api="blas"):
        for _ in range(int(params["baseline_iterations"])):
            fit = vander @ (projector @ floor)
            if not np.any(fit < floor - tolerance):  # converged: the fit lies under the spectrum everywhere
                break
            np.minimum(floor, fit, out=floor)
    return np.ascontiguousarray(fit.T)


def run_scale(initial: np.ndarray, method: str) -> float:
    """Per-run scale from the run's own initial spectrum (baseline-corrected, on the grid)."""
    if method == "none":
        return 1.0
    value = float(np.max(np.abs(initial))) if method == "initial_max_abs" else float(np.sqrt(np.mean(initial**2)))
    if not np.isfinite(value) or value <= 0:
        raise DataError(f"initial spectrum gives an unusable scale {value} ({method}); is it all zeros?")
    return value


def snr(wavenumber_cm1: np.ndarray, absorbance: np.ndarray, f_min_cm1: float, f_max_cm1: float) -> np.ndarray:
    """Per-spectrum SNR on the raw points inside [f_min, f_max]: the largest absolute absorbance over the noise
    level (the simulator's definition, docs/simulator.md, so Fig. 2A of simulated data shows the drawn SNR).

    Noise is the robust standard deviation of second differences (MAD * 1.4826 / sqrt(6)): on a densely sampled
    spectrum the bands are smooth, so second differences are white noise; the median makes it blind to the few
    points on sharp band flanks.
    """
    x, y = _ascending(wavenumber_cm1, absorbance)
    window = (x >= f_min_cm1) & (x <= f_max_cm1)
    y = y[:, window]
    if y.shape[1] < 5:
        return np.full(y.shape[0], np.nan)
    second = np.diff(y, n=2, axis=1)
    mad = np.median(np.abs(second - np.median(second, axis=1, keepdims=True)), axis=1)
    noise = mad * 1.4826 / np.sqrt(6.0)
    signal = np.abs(y).max(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(noise > 0, signal / noise, np.inf)


def apply(
    wavenumber_cm1: np.ndarray,
    absorbance: np.ndarray,
    params: Mapping[str, Any] | None = None,
    *,
    scale: float | None = None,
    baseline: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """Preprocess a block of spectra that share one axis; row 0 is the run's initial spectrum s(v_0).

    ``wavenumber_cm1`` (n_raw,) in any order; ``absorbance`` (n, n_raw) or (n_raw,). ``scale`` and ``baseline``
    (n, n_points), when given, replace the estimates (truth.h5: the noise-free spectra get the measured run's
    estimates). Returns ``(grid, spectra, info)``: grid (n_points,) ascending, spectra (n, n_points) float32,
    info ``{"scale", "baseline", "snr", "n_clipped", "params"}``.
    """
    p = resolve_params(params)
    x, y = _ascending(wavenumber_cm1, absorbance)
    grid = common_grid(p)
    if x[0] > grid[0] or x[-1] < grid[-1]:
        raise DataError(
            f"wavenumber axis {x[0]:.1f}..{x[-1]:.1f} 1/cm does not cover the grid {grid[0]:.1f}..{grid[-1]:.1f} 1/cm "
            "(set preprocess.f_min_cm1 / f_max_cm1 inside the measured range)"
        )
    if not np.all(np.isfinite(y)):
        raise DataError("absorbance holds NaN or infinite values")
    # keep the raw points out to half a grid cell beyond each end (plus one neighbour): the end cells of
    # bin_mean reach that far, and interpolation at the ends uses real neighbours
    half = 0.5 * (grid[1] - grid[0])
    lo = max(int(np.searchsorted(x, grid[0] - half, side="right")) - 2, 0)
    hi = min(int(np.searchsorted(x, grid[-1] + half, side="left")) + 2, x.size)
    x, y = x[lo:hi], y[:, lo:hi]
    resampled = resample(x, y, grid, p["resample"])
    if baseline is None:
        baseline = estimate_baseline(grid, resampled, p)
    baseline = np.asarray(baseline, dtype=np.float64)
    if baseline.shape != resampled.shape:
        raise DataError(f"baseline shape {baseline.shape} does not match the spectra {resampled.shape}")
    corrected = resampled - baseline
    if scale is None:
        scale = run_scale(corrected[0], p["scale"])
    normalized = corrected / float(scale)
    n_clipped = 0
    if p["clip"] is not None:
        low, high = (float(v) for v in p["clip"])
        n_clipped = int(np.count_nonzero((normalized < low) | (normalized > high)))
        normalized = np.clip(normalized, low, high)
    info = {
        "scale": float(scale),
        "baseline": baseline,
        "snr": snr(x, y, p["f_min_cm1"], p["f_max_cm1"]),
        "n_clipped": n_clipped,
        "params": p,
    }
    return grid, normalized.astype(np.float32), info


def estimate_clip(train_spectra: np.ndarray, quantiles: tuple[float, float] | None) -> list[float] | None:
    """Clip bounds from the spectra of the training systems only (``quantiles`` of all their values)."""
    if quantiles is None:
        return None
    values = np.asarray(train_spectra, dtype=np.float64)
    if values.size == 0:
        raise DataError("no training-system spectra to estimate the clip bounds from (system split has no train rows?)")
    low, high = np.quantile(values, [float(quantiles[0]), float(quantiles[1])])
    return [float(low), float(high)]


# --------------------------------------------------------------------------------------------------------------
# Per-run files
# --------------------------------------------------------------------------------------------------------------
def _read_ingest(path: str | Path) -> dict[str, Any]:
    with h5py.File(path, "r") as handle:
        spectra = handle["spectra"]
        return {
            "wavenumber_cm1": spectra["wavenumber_cm1"][()],
            "absorbance": spectra["absorbance"][()],
            "elapsed_s": spectra["elapsed_s"][()],
            "voltage_v": handle["voltage_v"][()],
            "current_ma": handle["current_ma"][()],
            "acquired_utc": h5io.read_strings(handle["acquired_utc"]),
            "system_id": str(handle.attrs["system_id"]),
            "run_id": str(handle.attrs["run_id"]),
        }


def _write_run(path, attrs, grid, spectra, run, info) -> None:
    with h5io.atomic_h5(path, attrs) as handle:
        h5io.write_nxdata(
            handle,
            "spectra",
            "absorbance",
            spectra,
            [("elapsed_s", run["elapsed_s"]), ("wavenumber_cm1", grid)],
            long_name="baseline-corrected absorbance / per-run scale",
        )
        h5io.write_axis(handle, "voltage_v", run["voltage_v"])
        h5io.write_axis(handle, "current_ma", run["current_ma"])
        h5io.write_axis(handle, "acquired_utc", run["acquired_utc"])
        h5io.write_axis(handle, "snr", info["snr"])
        handle.attrs["scale"] = info["scale"]
        handle.attrs["system_id"] = run["system_id"]
        handle.attrs["run_id"] = run["run_id"]


def preprocess_run(ingest_path: str | Path, output: str | Path, params: Mapping[str, Any], rule: str = "preprocess"):
    """results/ingest/{system}/{run}.h5 -> results/preprocessed/{system}/{run}.h5 (unclipped; see module doc)."""
    run = _read_ingest(ingest_path)
    p = {k: v for k, v in resolve_params(params).items() if k in DEFAULTS}
    p["clip"] = None  # global bounds are applied by the dataset stage, from training systems only
    try:
        grid, spectra, info = apply(run["wavenumber_cm1"], run["absorbance"], p)
    except DataError as exc:
        raise DataError(f"{ingest_path}: {exc}") from exc
    attrs = h5io.provenance(rule, dict(params), [ingest_path])
    _write_run(output, attrs, grid, spectra, run, info)
    log.info("%s: %d spectra on %d points, scale %.4g", output, len(spectra), grid.size, info["scale"])


def read_truth(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """Noise-free absorbance of a simulated run: datasets ``wavenumber_cm1`` and ``absorbance`` (at the root or
    under an NXdata group ``spectra``)."""
    with h5py.File(path, "r") as handle:
        group = handle["spectra"] if "spectra" in handle and "absorbance" in handle["spectra"] else handle
        if "absorbance" not in group or "wavenumber_cm1" not in group:
            raise DataError(f"{path}: expected datasets wavenumber_cm1 and absorbance (noise-free truth)")
        return group["wavenumber_cm1"][()], group["absorbance"][()]


def preprocess_truth_run(
    ingest_path: str | Path, truth_path: str | Path, output: str | Path, params: Mapping[str, Any], rule: str
) -> None:
    """The noise-free truth of a run through exactly the measured run's preprocessing: the baseline and the scale
    are those estimated on the measured spectra, so truth and measurement differ only by the noise."""
    run = _read_ingest(ingest_path)
    p = {k: v for k, v in resolve_params(params).items() if k in DEFAULTS}
    p["clip"] = None
    _, _, measured = apply(run["wavenumber_cm1"], run["absorbance"], p)
    truth_x, truth_y = read_truth(truth_path)
    truth_y = np.atleast_2d(truth_y)
    positions = _positions(ingest_path, truth_y.shape[0], truth_path)
    try:
        grid, spectra, info = apply(
            truth_x, truth_y[positions], p, scale=measured["scale"], baseline=measured["baseline"]
        )
    except DataError as exc:
        raise DataError(f"{truth_path}: {exc}") from exc
    attrs = h5io.provenance(rule, dict(params), [ingest_path, truth_path])
    _write_run(output, attrs, grid, spectra, run, {**info, "snr": np.full(len(spectra), np.inf)})


def _positions(ingest_path, n_truth: int, truth_path) -> np.ndarray:
    """Rows of the truth file that match the ingested spectra (rejected files leave gaps)."""
    with h5py.File(ingest_path, "r") as handle:
        positions = handle["position_in_run"][()]
    if positions.size and positions.max() >= n_truth:
        raise DataError(
            f"{truth_path}: {n_truth} truth spectra but the run has a spectrum at position {positions.max()}"
        )
    return positions
