"""Predicting with the neural baselines."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from opir.core.arrays import interp_linear
from opir.core.compute import resolve_device
from opir.core.errors import ConfigError
from opir.formats.predictions import write_predictions
from opir.formats.samples import load_split, read_sample_arrays
from opir.latent.vae import load_vae
from opir.models.domain import check_placement, log_moved, place_system_mixtures
from opir.models.meanflow import draw_noise, noise_seed, sample_euler
from opir.models.nb_nets import (
    velocity_from_data_prediction,
)
from opir.models.vae import decode_latents
from opir.neural_baselines.series import build_runs, clip_from_run
from opir.neural_baselines.settings import LATENT_BASELINES
from opir.neural_baselines.train import gru_batch, load_baseline, spectrum_data, stack_clips, trajectory_network
from opir.predict.abcc import placed_test_mixtures
from opir.render.waveform import read_style
from opir.train.data import load_abcc_data
from opir.train.readout import images_to_spectra

log = logging.getLogger(__name__)


# --------------------------------------------------------------------------------------------------------------
# Predict
# --------------------------------------------------------------------------------------------------------------
def predict_neural_baseline(
    samples_h5: str | Path, splits_json: str | Path, mixture_h5: str | Path, split: str, model_dir: str | Path,
    out_h5: str | Path, predict_cfg: dict[str, Any], device: str = "auto", latent_h5: str | Path | None = None,
    waveform_h5: str | Path | None = None, vae_dir: str | Path | None = None, attrs: dict[str, Any] | None = None,
) -> dict[str, float]:
    """Predictions of a trained baseline for the test samples of ``split`` (k draws; k = 1 if deterministic)."""
    device_ = resolve_device(device)
    model, meta = load_baseline(model_dir, device_)
    kind = meta["kind"]
    t0 = time.perf_counter()
    if kind in LATENT_BASELINES:
        if latent_h5 is None or waveform_h5 is None or vae_dir is None:
            raise ConfigError(f"{kind}: prediction needs the split's latents, the waveform images and the VAE")
        sample_id, wavenumber, prediction, extra = _predict_latent(
            model, meta, samples_h5, splits_json, mixture_h5, latent_h5, waveform_h5, vae_dir, split, predict_cfg,
            device_)
    else:
        sample_id, wavenumber, prediction, extra = _predict_spectrum(
            model, meta, samples_h5, splits_json, mixture_h5, split, predict_cfg, device_)
    seconds = time.perf_counter() - t0
    file_attrs = {**(attrs or {}), **extra, "kind": kind, "draws": prediction.shape[1]}
    write_predictions(out_h5, sample_id, wavenumber, prediction, file_attrs, model=meta["model"])
    log.info("%s: %d samples x %d draws in %.1f s", out_h5, prediction.shape[0], prediction.shape[1], seconds)
    return {"seconds": seconds, "spectra_per_second": prediction.shape[0] * prediction.shape[1] / max(seconds, 1e-9)}


def _predict_latent(model, meta, samples_h5, splits_json, mixture_h5, latent_h5, waveform_h5, vae_dir, split, cfg,
                    device):

    settings = meta["settings"]
    data = load_abcc_data(samples_h5, latent_h5, mixture_h5, load_split(splits_json, split)["test"], settings)
    data, placement, moved = placed_test_mixtures(data, model, cfg, samples_h5, mixture_h5, splits_json, split,
                                                  f"{meta['model']} on {split}")
    vae = load_vae(vae_dir)
    scaling = float(vae.config.scaling_factor)
    style = read_style(waveform_h5)
    wavenumber = read_sample_arrays(samples_h5, ["wavenumber_cm1"])["wavenumber_cm1"]
    flow = meta["kind"] == "sit_flow_matching"
    draws = int(cfg["draws"]) if flow else 1  # a regressor gives the same answer every time
    steps, batch = int(settings.get("euler_steps", 0)), int(cfg["batch_size"])
    shared = cfg.get("noise", "independent") == "shared"
    prediction = np.empty((len(data.sample_id), draws, len(wavenumber)), dtype=np.float32)
    fallbacks = 0
    for start in range(0, len(data.sample_id), batch):
        idx = torch.arange(start, min(start + batch, len(data.sample_id)))
        cond = data.condition.index(idx).to(device)
        for k in range(draws):
            with torch.no_grad():
                if flow:
                    generator = torch.Generator().manual_seed(noise_seed(cfg["seed"], start, draws, k, shared))
                    eps = draw_noise(tuple(data.target[idx].shape), generator, shared).to(device)
                    z = sample_euler(lambda z_, r_, t_, drop_, c=cond: model(z_, t_, c), eps, steps)
                else:
                    z = model.regress(cond)
            images = decode_latents(vae, z.float() / scaling, batch, device)
            spectra, bad = images_to_spectra(images, len(wavenumber), style, float(cfg["background_grey"]))
            prediction[start : start + len(idx), k] = spectra
            fallbacks += bad
    if fallbacks:
        log.warning("%d decoded images had no ink above the background threshold; read without it", fallbacks)
    extra = {"sampler": f"euler_{steps}" if flow else "deterministic", "images_without_ink_above_background": fallbacks,
             **({"noise": "shared" if shared else "independent"} if flow else {}),
             "mixture_domain": placement, "mixtures_moved": json.dumps(moved)}
    return data.sample_id, wavenumber, prediction, extra


def _predict_spectrum(model, meta, samples_h5, splits_json, mixture_h5, split, cfg, device):
    settings = meta["settings"]
    condition = settings["condition"]
    table, train_idx, test_idx, mixtures = spectrum_data(samples_h5, splits_json, mixture_h5, split, "test")
    placement, moved = check_placement(cfg.get("mixture_domain", "training"), "predict.mixture_domain"), {}
    if placement == "training":  # these networks read the raw embedding: the domain in its own metric
        systems = table.samples["system_id"]
        mixtures, moved = place_system_mixtures(mixtures, sorted(set(systems[train_idx].tolist())),
                                                sorted(set(systems[test_idx].tolist())))
        log_moved(f"{meta['model']} on {split}", moved)
    order = np.argsort(test_idx, kind="stable")
    sorted_idx = test_idx[order]
    runs = build_runs(table, sorted_idx, train_idx)  # only s(v_0) and training targets are ever read
    mixture = {run.key: torch.from_numpy(mixtures[run.system_id]).float() for run in runs}
    n_points = table.absorbance.shape[1]
    generative = meta["kind"] == "trajectory_flow"
    draws = int(cfg["draws"]) if generative else 1
    out_sorted = np.empty((len(sorted_idx), draws, n_points), dtype=np.float32)
    for run in runs:
        local = np.array(sorted(run.sample_index), dtype=np.int64)
        positions = [run.sample_index[j] for j in local]
        if not generative:
            initial, mix, steps, _, _ = gru_batch([run], mixture, condition, device, with_targets=False)
            with torch.no_grad():
                delta = model(initial, mix, steps)[0].cpu().numpy()
            out_sorted[positions, 0] = run.spectra[0] + delta[local]
            continue
        clip = clip_from_run(run, 0, len(run.rows) - 1, int(settings["frames"]), condition, with_targets=False)
        batch = stack_clips([(run, clip)] * draws, [mixture[run.key]] * draws, device)
        generator = torch.Generator().manual_seed(int(cfg["seed"]) * 1_000_003 + int(run.rows[0]))
        eps = torch.randn((draws, int(settings["frames"]), n_points), generator=generator).to(device)
        velocity = velocity_from_data_prediction(trajectory_network(model, batch))
        frames = sample_euler(lambda z, r, t, drop, v=velocity: v(z, t), eps, int(settings["euler_steps"]))
        frames = frames.cpu().numpy() * float(meta["delta_scale"])  # (k, F, N_f)
        frame_index = np.arange(frames.shape[1], dtype=np.float64)
        at = local / (len(run.rows) - 1) * (frames.shape[1] - 1)  # sample positions on the frame axis
        for k in range(draws):
            out_sorted[positions, k] = run.spectra[0] + interp_linear(frame_index, frames[k], at, axis=0, clamp=True)
    prediction = np.empty_like(out_sorted)
    prediction[order] = out_sorted
    sample_id = table.samples["sample_id"][test_idx]
    extra = {"sampler": f"euler_{settings['euler_steps']}" if generative else "deterministic",
             "mixture_domain": placement, "mixtures_moved": json.dumps(moved)}
    return sample_id, table.wavenumber_cm1, prediction, extra
