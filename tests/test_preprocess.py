"""Preprocessing: truncation, resampling, baseline, per-run scale, clipping, SNR, and the per-run files."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
from helpers import synthetic_absorbance, write_run

from opir.core.errors import DataError
from opir.ingest.runs import ingest_run_dir
from opir.preprocess import spectra as preprocess

RAW_AXIS = np.linspace(2400.0, 600.0, 934)
PARAMS = {"n_points": 128, "baseline": "none", "scale": "none"}


def test_grid_and_resampling_are_exact_on_a_line_in_any_axis_order():
    line = 1e-3 * RAW_AXIS + 0.5
    for method in ("linear", "bin_mean"):
        grid, spectra, _ = preprocess.apply(RAW_AXIS, line, {**PARAMS, "resample": method})
        assert grid[0] == 800.0 and grid[-1] == 2000.0 and grid.size == 128 and np.all(np.diff(grid) > 0)
        np.testing.assert_allclose(spectra[0], 1e-3 * grid + 0.5, rtol=1e-5)
        _, ascending, _ = preprocess.apply(RAW_AXIS[::-1], line[::-1], {**PARAMS, "resample": method})
        np.testing.assert_array_equal(spectra, ascending)


def test_bin_mean_averages_noise_down():
    rng = np.random.default_rng(0)
    noise = rng.normal(0, 1.0, (20, RAW_AXIS.size))
    _, linear, _ = preprocess.apply(RAW_AXIS, noise, {**PARAMS, "resample": "linear"})
    _, binned, _ = preprocess.apply(RAW_AXIS, noise, {**PARAMS, "resample": "bin_mean"})
    # ~4.9 raw points per grid cell: the bin mean's noise is about 1/sqrt(4.9) of the raw noise
    assert binned.std() < 0.6 * linear.std()


def test_axis_must_cover_the_window_and_bad_params_are_named():
    with pytest.raises(DataError, match=r"does not cover the grid 800.0\.\.2000.0"):
        preprocess.apply(np.linspace(4000, 1000, 100), np.ones(100), PARAMS)
    with pytest.raises(DataError, match="unknown key"):
        preprocess.apply(RAW_AXIS, np.ones(RAW_AXIS.size), {"n_point": 3})
    with pytest.raises(DataError, match="baseline 'spline' is not one of"):
        preprocess.apply(RAW_AXIS, np.ones(RAW_AXIS.size), {"baseline": "spline"})
    with pytest.raises(DataError, match="NaN"):
        preprocess.apply(RAW_AXIS, np.full(RAW_AXIS.size, np.nan), PARAMS)


@pytest.mark.parametrize("method", ["modpoly", "linear", "offset"])
def test_baseline_removes_drift_and_keeps_bands(method):
    x = RAW_AXIS
    drift = 0.3 + 2e-4 * (x - 800) if method != "offset" else np.full(x.size, 0.3)
    if method == "modpoly":
        drift = drift + 1e-7 * (x - 1400) ** 2
    band = 1.0 / (1 + ((x - 1400) / 10) ** 2)
    params = {**PARAMS, "baseline": method}
    grid, with_drift, info = preprocess.apply(x, band + drift, params)
    _, clean, _ = preprocess.apply(x, band, params)
    _, raw, _ = preprocess.apply(x, band, {**PARAMS, "baseline": "none"})
    # the result does not depend on the drift, and the band keeps its height
    assert np.abs(with_drift[0] - clean[0]).max() < 0.01
    assert with_drift[0].max() == pytest.approx(raw[0].max(), abs=0.05)
    assert info["baseline"].shape == (1, grid.size)


def test_per_run_scale_comes_from_the_initial_spectrum_only():
    block = synthetic_absorbance(5, axis=(2400.0, 600.0, 934))
    params = {"n_points": 128, "baseline": "modpoly", "scale": "initial_max_abs"}
    _, spectra, info = preprocess.apply(RAW_AXIS, block, params)
    assert np.abs(spectra[0]).max() == pytest.approx(1.0, rel=1e-6)
    # later spectra do not change the scale: they are normalized by s(v_0)'s scale
    changed = block.copy()
    changed[1:] *= 10
    _, spectra_changed, info_changed = preprocess.apply(RAW_AXIS, changed, params)
    assert info_changed["scale"] == info["scale"]
    np.testing.assert_array_equal(spectra_changed[0], spectra[0])
    with pytest.raises(DataError, match="unusable scale"):
        preprocess.apply(RAW_AXIS, np.zeros((2, RAW_AXIS.size)), params)


def test_given_estimates_reproduce_the_measured_pipeline():
    """truth.h5's path: the noise-free spectra with the measured run's baseline and scale."""
    noisy = synthetic_absorbance(4, seed=0, noise=0.002)
    clean = synthetic_absorbance(4, seed=0, noise=0.0)
    params = {"n_points": 128}
    _, measured, info = preprocess.apply(RAW_AXIS, noisy, params)
    _, again, _ = preprocess.apply(RAW_AXIS, noisy, params, scale=info["scale"], baseline=info["baseline"])
    np.testing.assert_array_equal(measured, again)
    _, truth, _ = preprocess.apply(RAW_AXIS, clean, params, scale=info["scale"], baseline=info["baseline"])
    # truth and measurement differ by the (binned, scaled) noise only
    assert np.abs(truth - measured).mean() < 0.01
    with pytest.raises(DataError, match="baseline shape"):
        preprocess.apply(RAW_AXIS, clean, params, baseline=info["baseline"][:2])


def test_clip_bounds_apply_and_are_counted():
    spike = 1.0 / (1 + ((RAW_AXIS - 1400) / 10) ** 2)
    _, spectra, info = preprocess.apply(RAW_AXIS, spike, {**PARAMS, "clip": [0.0, 0.5]})
    assert spectra.max() == 0.5 and info["n_clipped"] > 0
    assert preprocess.estimate_clip(np.arange(101.0), (0.01, 0.99)) == [1.0, 99.0]
    assert preprocess.estimate_clip(np.arange(10.0), None) is None


def test_snr_estimate_recovers_the_true_ratio():
    rng = np.random.default_rng(1)
    x = np.linspace(2000, 800, 2400)
    band = 0.5 / (1 + ((x - 1400) / 15) ** 2)
    sigma = 0.005
    noisy = band + rng.normal(0, sigma, (50, x.size))
    snr = preprocess.snr(x, noisy, 800, 2000)
    true_ratio = band.max() / sigma
    assert np.median(snr) == pytest.approx(true_ratio, rel=0.15)


def test_preprocess_run_file(tmp_path):
    run_dir = tmp_path / "raw" / "sys" / "run01"
    write_run(run_dir, n=4)
    ingest_run_dir(run_dir, tmp_path / "i.h5", tmp_path / "i.tsv", {}, "sys", "run01")
    preprocess.preprocess_run(tmp_path / "i.h5", tmp_path / "p.h5", {"n_points": 64})
    with h5py.File(tmp_path / "p.h5", "r") as handle:
        assert handle["spectra/absorbance"].shape == (4, 64)
        assert handle["spectra/wavenumber_cm1"][0] == 800.0
        assert handle["snr"].shape == (4,) and np.all(handle["snr"][()] > 10)
        assert handle.attrs["producer_rule"] == "preprocess" and handle.attrs["scale"] > 0
        assert handle["voltage_v"].attrs["units"] == "V"
