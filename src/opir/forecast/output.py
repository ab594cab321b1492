"""A forecast and its files: HDF5, CSV, and the entry point of ``opir predict``."""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pandas as pd
import torch

from opir.core.errors import ConfigError
from opir.core.h5io import atomic_h5, atomic_path, provenance, write_axis, write_nxdata
from opir.forecast.band import BAND_QUANTILES, band_offsets, calibrated_band
from opir.forecast.inputs import (
    StaticSpectrum,
    VoltageProfile,
    check_voltage_range,
    embed_electrolyte,
    read_static_spectrum,
    read_voltage_profile,
    resolve_electrode,
)
from opir.forecast.model import ForecastModel, load_forecast_model
from opir.forecast.sampling import (
    build_conditions,
    hedge_draws,
    initial_state,
    partner_thresholds,
    preprocess_static,
    sample_sequence,
)
from opir.formats.model_dir import FORECAST_JSON, HEDGE_PARTNER, check_model_dir
from opir.models.domain import check_placement
from opir.predict.abcc import mixture_domain as mixture_domain_of
from opir.predict.abcc import sampler_name
from opir.preprocess.profile import run_profile_features
from opir.report.forecast import plot_forecast

log = logging.getLogger(__name__)


@dataclass
class Forecast:
    wavenumber_cm1: np.ndarray
    input_spectrum: np.ndarray  # preprocessed s(v_0)
    input_scale: float
    input_voltage_v: float  # v_0, the static spectrum's state
    time_s: np.ndarray  # of the targets (rows 1..M of the profile), from the static spectrum
    voltage_v: np.ndarray
    draws: np.ndarray  # (M, k, N_f)
    band_offsets: np.ndarray | None = None  # conformal widening of the band (N_f,), None: raw quantiles
    # how far the electrolyte's mixture was moved into the training mixtures' domain (their spreads; 0: inside),
    # None: not placed (mixture_domain 'open', or a model directory that records no training mixtures)
    mixture_moved: float | None = None
    # the hedge's weight of the model in the blend with its partner (forecast.json "hedge"), None: the model alone
    hedge_weight: float | None = None

    @property
    def summary(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return calibrated_band(self.draws, self.band_offsets)


def forecast(
    fm: ForecastModel, spectrum: StaticSpectrum, profile: VoltageProfile, electrolyte: str, draws: int, seed: int = 0,
    batch_size: int = 64, voltage_tolerance_v: float = 0.05, electrode: np.ndarray | None = None,
    mixture_domain: str = "training",
) -> Forecast:
    """The whole forecast of one static spectrum (see the module docstring); ``electrode``: the descriptor features
    of the cell's electrode, for a model that reads them. ``mixture_domain`` 'training' places an electrolyte outside
    the training mixtures' domain at its nearest point (opir.models.domain), 'open' extrapolates."""
    if draws < 2:
        raise ConfigError(f"--draws {draws}: at least 2 draws are needed for an uncertainty band")
    if fm.model.config.electrode_dim and electrode is None:
        raise ConfigError(f"{fm.path}: this model reads the working electrode; give --electrode (a system or "
                          f"working_electrode of its systems sheet, or the descriptor values)")  # fmt: skip
    check_voltage_range(profile, fm.forecast["voltage_range_v"], voltage_tolerance_v)
    calibrated_with = (fm.forecast.get("band_calibration") or {}).get("draws", 0)
    if draws < calibrated_with:  # the quantiles of fewer draws lie closer together: the band would under-cover
        log.warning("--draws %d: the band was calibrated with %d draws per forecast; fewer draws give a narrower "
                    "band than calibrated", draws, calibrated_with)
    elapsed = profile.time_s[-1] - profile.time_s[0]
    if elapsed > fm.forecast.get("elapsed_max_s", np.inf):
        log.warning("the profile lasts %.0f s, beyond the longest training sequence (%.0f s): extrapolation in time",
                    elapsed, fm.forecast["elapsed_max_s"])
    mixture, moved = place_electrolyte(embed_electrolyte(electrolyte, fm), electrolyte, fm, mixture_domain)
    processed, scale = preprocess_static(spectrum, fm)
    with torch.no_grad():
        latent = initial_state(processed, fm)
        reads = bool(fm.model.config.electrode_dim)
        condition = build_conditions(latent, profile, mixture, fm.meta["settings"], electrode if reads else None)
        s0 = np.repeat(processed[None], len(condition), axis=0)
        sampled = sample_sequence(fm, condition, s0, draws, seed, batch_size)
    weight = None
    if fm.hedge is not None:
        features = run_profile_features(profile.voltage_v, profile.time_s, partner_thresholds(fm))[1:]
        sampled, weight = hedge_draws(fm, sampled, s0, features), float(fm.hedge["weight"])
        log.info("hedged: each draw = %.3g x the model's + %.3g x the %s's forecast (--no-hedge: the model alone)",
                 weight, 1.0 - weight, fm.hedge["partner"])
    return Forecast(fm.wavenumber_cm1, processed, scale, float(profile.voltage_v[0]),
                    profile.time_s[1:] - profile.time_s[0], profile.voltage_v[1:], sampled, band_offsets(fm), moved,
                    weight)


def place_electrolyte(mixture: np.ndarray, electrolyte: str, fm: ForecastModel,
                      mixture_domain: str) -> tuple[np.ndarray, float | None]:
    """The mixture embedding the network reads, and how far it was moved into the training mixtures' domain."""
    if check_placement(mixture_domain, "--mixture-domain") == "open":
        return mixture, None
    if not fm.training_mixtures:
        log.warning("%s records no training mixtures (packaged before opir recorded them): the electrolyte's mixture "
                    "is used as it is, however far from the training chemistry", fm.path)
        return mixture, None
    placed, moved = mixture_domain_of(fm.model, fm.training_mixtures).place(np.asarray(mixture)[None])
    if moved[0] > 0:
        log.warning("--electrolyte %r lies outside the mixtures the model trained on (%s; %.3g x their spread away): "
                    "forecast at the nearest point of their domain, i.e. as the nearest known chemistry, not as this "
                    "one (--mixture-domain open extrapolates instead)", electrolyte, ", ".join(fm.training_mixtures),
                    moved[0])
    return placed[0], float(moved[0])


# --------------------------------------------------------------------------------------------------------------
# Output: HDF5 + CSV + PNG
# --------------------------------------------------------------------------------------------------------------
def write_forecast_h5(path: Path, result: Forecast, attrs: dict[str, Any]) -> None:
    mean, low, high = result.summary
    with atomic_h5(path, attrs) as handle:
        write_nxdata(handle, "input", "absorbance", result.input_spectrum, [("wavenumber_cm1", result.wavenumber_cm1)],
                     long_name="static spectrum, preprocessed as in training (baseline removed, / input_scale)")
        handle["input"].attrs["input_scale"] = result.input_scale
        handle["input"].attrs["voltage_v"] = result.input_voltage_v
        group = write_nxdata(handle, "forecast", "mean", mean.astype(np.float32),
                             [("elapsed_s", result.time_s), ("wavenumber_cm1", result.wavenumber_cm1)],
                             long_name="mean of the draws (normalized absorbance)")
        group.attrs["auxiliary_signals"] = np.array(["band_q05", "band_q95"], dtype=h5py.string_dtype())
        widened = "" if result.band_offsets is None else " - conformal offset"
        group.create_dataset("band_q05", data=low.astype(np.float32)).attrs["long_name"] = f"5 % quantile{widened}"
        widened = "" if result.band_offsets is None else " + conformal offset"
        group.create_dataset("band_q95", data=high.astype(np.float32)).attrs["long_name"] = f"95 % quantile{widened}"
        if result.band_offsets is not None:
            write_axis(group, "band_offset", result.band_offsets.astype(np.float32))
        write_axis(group, "voltage_v", result.voltage_v)
        write_nxdata(handle, "draws", "absorbance", result.draws,
                     [("elapsed_s", result.time_s), ".", ("wavenumber_cm1", result.wavenumber_cm1)],
                     long_name="one-step MeanFlow draws (normalized absorbance)" if result.hedge_weight is None
                     else f"one-step MeanFlow draws, each blended {result.hedge_weight:.3g} : "
                          f"{1.0 - result.hedge_weight:.3g} with the hedge's partner (normalized absorbance)")


def write_forecast_csv(path: Path, result: Forecast) -> None:
    """Long format: one line per (spectrum, wavenumber)."""
    mean, low, high = result.summary
    m, n = mean.shape
    table = pd.DataFrame({
        "step": np.repeat(np.arange(1, m + 1), n),
        "elapsed_s": np.repeat(result.time_s, n),
        "voltage_v": np.repeat(result.voltage_v, n),
        "wavenumber_cm1": np.tile(result.wavenumber_cm1, m),
        "mean": mean.ravel(),
        "band_q05": low.ravel(),
        "band_q95": high.ravel(),
    })
    with atomic_path(path) as tmp:
        table.to_csv(tmp, index=False, float_format="%.6g")


def predict(
    model_dir: str | Path, spectrum_path: str | Path, profile_path: str | Path, electrolyte: str, out_dir: str | Path,
    electrode: str | None = None, draws: int = 32, seed: int = 0, device: str = "auto", batch_size: int = 64,
    voltage_tolerance_v: float = 0.05, plot_voltages: Sequence[float] | None = None, block: str = "AB",
    mixture_domain: str = "training", hedge: bool = True,
) -> dict[str, Path]:
    """``opir predict``: read and check every input before any model work, forecast, write forecast.{h5,csv,png}.
    ``electrode`` (a systems-sheet row's name or the descriptor values, :func:`resolve_electrode`) is resolved to
    its descriptors, which forecast.h5 records. ``hedge`` False forecasts with the model alone when the directory
    carries a hedge (forecast.json "hedge": Table 3's hedged row)."""
    check_model_dir(model_dir)  # a wrong --model is named first, not through what it lacks for another option
    described = resolve_electrode(electrode, model_dir) if electrode else None
    profile = read_voltage_profile(profile_path)
    spectrum = read_static_spectrum(spectrum_path, block)
    fm = load_forecast_model(model_dir, device)
    if not hedge:
        fm = fm.without_hedge()
    features = described[1].features() if described else None
    result = forecast(fm, spectrum, profile, electrolyte, draws, seed, batch_size, voltage_tolerance_v, features,
                      mixture_domain)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    settings = {"model_dir": str(Path(model_dir).resolve()), "electrolyte": electrolyte, "electrode": electrode,
                "draws": draws, "seed": seed, "voltage_tolerance_v": voltage_tolerance_v, "block": block,
                "mixture_domain": mixture_domain, "hedge": hedge}
    euler_steps = int(fm.meta["settings"].get("predict", {}).get("euler_steps", 0))
    inputs = [spectrum_path, profile_path, Path(model_dir) / "model.safetensors", Path(model_dir) / FORECAST_JSON]
    if fm.hedge is not None:
        inputs.append(Path(model_dir) / fm.hedge.get("partner_file", HEDGE_PARTNER))
    attrs = provenance("opir predict", settings, inputs)
    attrs |= {"model": str(fm.meta.get("model")), "split": str(fm.meta.get("split")), "electrolyte": electrolyte,
              "electrode": electrode or "", "draws": draws,
              "electrode_descriptors": json.dumps(described[1].as_row()) if described else "",
              "sampler": sampler_name(fm.model.config, euler_steps),
              "mixture_domain": mixture_domain,
              "mixture_moved": np.nan if result.mixture_moved is None else result.mixture_moved,
              "hedge_weight": np.nan if result.hedge_weight is None else result.hedge_weight,
              "hedge_partner": fm.hedge["partner"] if fm.hedge else "",
              "band_quantiles": list(BAND_QUANTILES),
              "band_calibration": "none (raw quantiles of the draws)" if result.band_offsets is None else
              fm.forecast["band_calibration"]["method"]}
    paths = {"h5": out_dir / "forecast.h5", "csv": out_dir / "forecast.csv", "png": out_dir / "forecast.png"}
    write_forecast_h5(paths["h5"], result, attrs)
    write_forecast_csv(paths["csv"], result)
    title = (f"{Path(spectrum_path).name} | {electrolyte}" + (f" | {electrode}" if electrode else "")
             + f" | model {fm.meta.get('split')}/{fm.meta.get('model')}")
    plot_forecast(paths["png"], result, title, plot_voltages)
    log.info("forecast of %d spectra x %d draws written to %s", len(result.time_s), draws, out_dir)
    return paths
