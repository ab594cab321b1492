"""Forecasting: the static spectrum preprocessed as in training, the condition built, draws sampled and read out."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from opir.core.errors import DataError
from opir.evaluate.hedge import blend_draws
from opir.forecast.inputs import StaticSpectrum, VoltageProfile
from opir.forecast.model import ForecastModel
from opir.formats.model_dir import model_space
from opir.formats.samples import load_samples, read_sample_arrays, read_spectra
from opir.models.conditioning import Condition
from opir.models.vae import encode_images
from opir.preprocess.profile import profile_features, sample_profile_features
from opir.preprocess.spectra import apply
from opir.render.waveform import spectrum_to_waveform
from opir.train.context import absent_context
from opir.train.data import pad_points, spectral_length
from opir.training import autocast_factory

log = logging.getLogger(__name__)


# --------------------------------------------------------------------------------------------------------------
# Forecast
# --------------------------------------------------------------------------------------------------------------
def preprocess_static(spectrum: StaticSpectrum, fm: ForecastModel) -> tuple[np.ndarray, float]:
    """The spectrum on the model's grid, preprocessed as training did (it is its own run's s(v_0)); and its scale."""
    try:
        _, processed, info = apply(spectrum.wavenumber_cm1, spectrum.absorbance, fm.forecast["preprocess_params"])
    except DataError as exc:
        raise DataError(f"{spectrum.path}: {exc}") from exc
    return processed[0], float(info["scale"])


def initial_state(spectrum: np.ndarray, fm: ForecastModel):
    """The condition's initial state, made as in training: the Alg. 1 image of the preprocessed spectrum encoded
    exactly as opir.latent encodes the training images (1, C, h, w); for the spectral variant the spectrum itself,
    padded to the patch size (1, 1, L)."""
    spectrum = np.asarray(spectrum, dtype=np.float32)[None]
    if model_space(fm.meta) == "spectrum":
        length = spectral_length(spectrum.shape[1], int(fm.meta["settings"]["spectral_patch_size"]))
        state = torch.from_numpy(pad_points(spectrum, length)[:, None]).float()
        # a cell being forecast has no training spectra: no within-run context
        return torch.cat([state, absent_context(1, length)], dim=1) if fm.model.config.run_context else state
    image = spectrum_to_waveform(spectrum, fm.readout.style)
    latent = encode_images(fm.vae, image, 1, fm.device) * float(fm.vae.config.scaling_factor)
    return torch.from_numpy(latent).float()


def build_conditions(
    latent, profile: VoltageProfile, mixture: np.ndarray, settings: dict[str, Any], electrode: np.ndarray | None = None
):
    """One condition per target row m >= 1: profile v_0..v_m and elapsed t_m - t_0, as in training; ``electrode``
    (descriptor features) for a model that reads them."""
    features = np.stack([
        profile_features(profile.voltage_v[: m + 1], float(profile.time_s[m] - profile.time_s[0]),
                         int(settings["profile_length"]), float(settings["voltage_center_v"]),
                         float(settings["voltage_scale_v"]), float(settings["time_scale_s"]),
                         profile.time_s[: m + 1], settings.get("exposure_thresholds_v") or ())
        for m in range(1, len(profile.time_s))
    ])
    n = len(features)
    return Condition(
        initial_latent=latent.expand(n, *latent.shape[1:]).contiguous(),
        profile=torch.from_numpy(features).float(),
        mixture=torch.from_numpy(np.asarray(mixture, dtype=np.float32)).expand(n, -1).contiguous(),
        electrode=None if electrode is None else
        torch.from_numpy(np.asarray(electrode, dtype=np.float32)).expand(n, -1).contiguous(),
    )


def sample_sequence(
    fm: ForecastModel, condition, initial_spectra: np.ndarray, draws: int, seed: int, batch_size: int
) -> np.ndarray:
    """``draws`` one-step samples per condition -> spectra (n, draws, N_f) float32, read out and fused exactly as
    the workflow's predict (opir.train.Readout); ``initial_spectra`` (n, N_f) are the s(v_0) the
    residual path adds its change to."""
    settings = fm.meta["settings"]
    euler_steps = int(settings.get("predict", {}).get("euler_steps", 0))
    n_points = int(fm.forecast["preprocess_params"]["n_points"])
    autocast = autocast_factory(fm.device, settings.get("train", {}).get("precision", "fp32"))
    n = len(condition)
    # all (target, draw) pairs in one flat batch: draw k of target i is row i * draws + k
    flat = torch.arange(n).repeat_interleave(draws)
    out = np.empty((n * draws, n_points), dtype=np.float32)
    fallbacks = 0
    for start in range(0, len(flat), batch_size):
        idx = flat[start : start + batch_size]
        generator = torch.Generator().manual_seed(int(seed) * 1_000_003 + start)
        with autocast():
            state = fm.model.sample_state(condition.index(idx).to(fm.device), generator, euler_steps=euler_steps)
        paths, bad = fm.readout.paths(state, initial_spectra[idx.numpy()], fm.device)
        out[start : start + len(idx)] = fm.readout.fuse(paths)
        fallbacks += bad
    if fallbacks:
        log.warning("%d of %d decoded images had no ink above the background threshold; read without it",
                    fallbacks, len(flat))
    return out.reshape(n, draws, n_points)


def hedge_draws(fm: ForecastModel, draws: np.ndarray, initial_spectra: np.ndarray,
                features: np.ndarray) -> np.ndarray:  # fmt: skip
    """A hedged model's draws (n, k, N_f) blended with its partner's forecast, s(v_0) (``initial_spectra``, (n, N_f))
    plus the change the partner predicts from the voltage-profile features (n, F) (opir.evaluate.hedge.blend_draws,
    the blend of Table 3's hedged row); the draws as they are without a hedge."""
    if fm.hedge is None:
        return draws
    partner = np.asarray(initial_spectra, dtype=np.float64) + fm.hedge_partner.predict_change(features)
    return blend_draws(draws, partner, float(fm.hedge["weight"]))


def partner_thresholds(fm: ForecastModel) -> list[float]:
    """The exposure thresholds (V) of the hedge partner's profile features."""
    return list(fm.hedge["partner_settings"]["exposure_thresholds_v"])


def hedge_dataset_draws(fm: ForecastModel, samples_h5: str | Path, sample_ids: Sequence[str],
                        draws: np.ndarray) -> np.ndarray:  # fmt: skip
    """:func:`hedge_draws` for the draws of :func:`forecast_samples` on dataset samples."""
    if fm.hedge is None:
        return draws
    table = load_samples(samples_h5)
    index = table.sample_index(list(sample_ids), str(samples_h5))
    initial = table.absorbance[table.samples["initial_row"][index]]
    return hedge_draws(fm, draws, initial, sample_profile_features(table, index, partner_thresholds(fm)))


def forecast_samples(
    fm: ForecastModel, samples_h5: str | Path, sample_ids: Sequence[str], mixtures: dict[str, np.ndarray],
    draws: int, seed: int = 0, batch_size: int = 64, electrodes: dict[str, np.ndarray] | None = None,
) -> np.ndarray:
    """``opir predict``'s path on dataset samples (for measuring the band's coverage): each sample's initial
    spectrum (already preprocessed in samples.h5) is drawn, encoded and forecast at the sample's voltage profile.
    ``electrodes`` (system_id -> descriptor features) is needed by a model that reads them. Returns the model's own
    draws (n, draws, N_f), unhedged (:func:`hedge_dataset_draws` blends them)."""
    table = read_sample_arrays(samples_h5, ["samples/sample_id", "samples/row", "samples/initial_row",
                                            "samples/system_id", "rows/voltage_v", "rows/elapsed_s"])
    position = {s: i for i, s in enumerate(table["samples/sample_id"])}
    missing = [s for s in sample_ids if s not in position]
    if missing:
        raise DataError(f"{samples_h5}: {len(missing)} sample(s) not in the table, e.g. {missing[0]}")
    idx = np.array([position[s] for s in sample_ids], dtype=np.int64)
    rows, initial = table["samples/row"][idx], table["samples/initial_row"][idx]
    systems = table["samples/system_id"][idx]
    voltage, elapsed = table["rows/voltage_v"], table["rows/elapsed_s"]
    starts = np.unique(initial)
    initial_spectra = dict(zip((int(r) for r in starts), read_spectra(samples_h5, starts), strict=True))
    unknown = sorted(set(systems) - set(mixtures))
    if unknown:
        raise DataError(f"no mixture embedding for system(s) {', '.join(unknown)}")
    reads_electrode = bool(fm.model.config.electrode_dim)
    missing_electrodes = sorted(set(systems) - set(electrodes or {})) if reads_electrode else []
    if missing_electrodes:
        raise DataError(f"the model reads the electrode descriptors; none for system(s) "
                        f"{', '.join(missing_electrodes)}")
    parts = []
    with torch.no_grad():
        latents = {r: initial_state(s, fm) for r, s in initial_spectra.items()}
        for r in starts:
            chosen = np.flatnonzero(initial == r)
            profile = VoltageProfile(str(samples_h5), elapsed[r : rows[chosen].max() + 1],
                                     voltage[r : rows[chosen].max() + 1])
            system = systems[chosen[0]]
            run_conditions = build_conditions(latents[int(r)], profile, mixtures[system], fm.meta["settings"],
                                              electrodes[system] if reads_electrode else None)
            parts.append((chosen, run_conditions.index(torch.as_tensor(rows[chosen] - r - 1))))
        order = np.concatenate([c for c, _ in parts])
        condition = Condition(*(torch.cat([getattr(p, f) for _, p in parts]) for f in
                                ("initial_latent", "profile", "mixture")),
                              electrode=torch.cat([p.electrode for _, p in parts]) if reads_electrode else None)
        s0 = np.stack([initial_spectra[int(r)] for r in initial[order]])
        sampled = sample_sequence(fm, condition, s0, draws, seed, batch_size)
    out = np.empty_like(sampled)
    out[order] = sampled
    return out
