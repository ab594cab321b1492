"""Predicting with a trained ABCC: load its folder, sample draws for the test samples, read them out as spectra."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from opir.core.compute import resolve_device
from opir.core.errors import DataError
from opir.formats.model_dir import read_model_meta, read_model_weights
from opir.formats.predictions import write_predictions
from opir.formats.samples import load_split, read_sample_arrays
from opir.models.abcc import ABCC, ABCCConfig
from opir.models.domain import MixtureDomain, check_placement, log_moved
from opir.models.meanflow import noise_seed
from opir.render.waveform import CurveStyle, read_style
from opir.train.context import absent_context, context_channels, within_run_context
from opir.train.data import ABCCData, load_abcc_data, training_mixtures
from opir.train.readout import readout_for
from opir.training import autocast_factory

log = logging.getLogger(__name__)


def load_abcc(model_dir: str | Path, device: torch.device | str = "cpu") -> tuple[ABCC, dict[str, Any]]:
    """A trained model from its folder (safetensors only)."""
    meta = read_model_meta(model_dir)
    model = ABCC(ABCCConfig.from_dict(meta["architecture"]))
    model.load_state_dict(read_model_weights(model_dir, device))
    return model.to(device).eval(), meta


# --------------------------------------------------------------------------------------------------------------
# Predict
# --------------------------------------------------------------------------------------------------------------


def sampler_name(config: ABCCConfig, euler_steps: int) -> str:
    """How the predictions were drawn, for the predictions file."""
    if config.objective == "regression":
        return "regression"
    return "euler" if euler_steps else "meanflow_one_step"


def mixture_domain(model: ABCC, training: dict[str, np.ndarray]) -> MixtureDomain:
    """The domain of the mixtures ``model`` trained on (system_id -> embedding), in the metric its encoder reads."""
    return MixtureDomain.fit(np.stack(list(training.values())), *model.condition_encoder.mixture_standardization())


def place_mixtures(data: ABCCData, domain: MixtureDomain, what: str) -> tuple[ABCCData, dict[str, float]]:
    """``data`` with each mixture outside ``domain`` placed at its nearest point (inside ones untouched), and how far
    each moved system's mixture was moved (in units of the training mixtures' spread), logged as a warning."""
    placed, moved = domain.place(data.condition.mixture.numpy())
    systems = np.array([key.split("/", 1)[0] for key in data.run_key])
    distances = {str(system): round(float(moved[systems == system].max()), 4) for system in np.unique(systems)
                 if moved[systems == system].max() > 0}
    log_moved(what, distances)
    return data.with_mixture(torch.from_numpy(placed)), distances


def placed_test_mixtures(data: ABCCData, model, predict_cfg: dict[str, Any], samples_h5: str | Path,
                         mixture_h5: str | Path, splits_json: str | Path, split: str,
                         what: str) -> tuple[ABCCData, str, dict[str, float]]:
    """``predict.mixture_domain`` applied to the test data of a model with a :class:`ConditionEncoder`
    (``model.condition_encoder``): the setting and the systems moved, with how far."""
    placement = check_placement(predict_cfg.get("mixture_domain", "training"), "predict.mixture_domain")
    if placement == "open":
        return data, placement, {}
    training = training_mixtures(samples_h5, mixture_h5, load_split(splits_json, split)["train"])
    data, moved = place_mixtures(data, mixture_domain(model, training), what)
    return data, placement, moved


def predict_abcc(
    samples_h5: str | Path, latent_h5: str | Path | None, mixture_h5: str | Path, splits_json: str | Path,
    waveform_h5: str | Path | None, split: str, model_dir: str | Path, vae_dir: str | Path | None, out_h5: str | Path,
    predict_cfg: dict[str, Any], device: str = "auto", attrs: dict[str, Any] | None = None,
    electrodes_h5: str | Path | None = None,
) -> dict[str, float]:
    """k = ``predict_cfg['draws']`` predicted spectra per test sample of ``split``, written in the predictions
    format (opir.formats.predictions.write_predictions): one-step samples of the whole state, read out through each path
    (waveform image; s(v_0) + variation image; the spectral variant's difference) and fused. Returns timings."""
    device_ = resolve_device(device)
    model, meta = load_abcc(model_dir, device_)
    settings, space = meta["settings"], meta.get("space", "latent")
    if model.config.electrode_dim and electrodes_h5 is None:
        raise DataError(f"{model_dir}: the model reads the electrode descriptors; give results/dataset/electrodes.h5")
    data = load_abcc_data(samples_h5, latent_h5, mixture_h5, load_split(splits_json, split)["test"],
                          settings, spectrum_scale=meta.get("spectrum_scale"),
                          electrodes_h5=electrodes_h5 if model.config.electrode_dim else None)
    config = model.config
    data, placement, moved = placed_test_mixtures(data, model, predict_cfg, samples_h5, mixture_h5, splits_json, split,
                                                  str(out_h5))
    knows_runs = bool(predict_cfg.get("run_codes", True))  # false: every test run as a cell never seen
    use_codes = config.run_codes and knows_runs
    if config.run_context:
        data = data.with_context(_test_context(samples_h5, splits_json, split, data, settings, meta, knows_runs))
    data = data.with_run_codes(config) if use_codes else data
    if use_codes:
        unseen = sorted(set(data.run_key.tolist()) - set(config.run_ids))
        log.info("%s: run codes for %d of %d test runs (unseen, forecast without a code: %s)", model_dir,
                 len(set(data.run_key.tolist())) - len(unseen), len(set(data.run_key.tolist())),
                 ", ".join(unseen) or "none")
    styles = None
    if space == "latent":
        styles = (CurveStyle(**meta["render"]) if meta.get("render") else read_style(waveform_h5),
                  CurveStyle(**meta["render_variation"]) if meta.get("render_variation") else None)
    readout = readout_for(space, config, data.initial_spectrum.shape[1], {**settings, "predict": predict_cfg},
                           vae_dir, waveform_h5, None, meta.get("spectrum_scale"), device_, styles, decode=True)
    if meta.get("fusion"):
        readout.fusion_weight = np.asarray(meta["fusion"]["waveform_weight"], dtype=np.float32)
    wavenumber = read_sample_arrays(samples_h5, ["wavenumber_cm1"])["wavenumber_cm1"]
    draws, batch = int(predict_cfg["draws"]), int(predict_cfg["batch_size"])
    shared = predict_cfg.get("noise", "independent") == "shared"
    autocast = autocast_factory(device_, settings["train"]["precision"])
    prediction = np.empty((len(data.sample_id), draws, len(wavenumber)), dtype=np.float32)
    t0, fallbacks = time.perf_counter(), 0
    for start in range(0, len(data.sample_id), batch):
        idx = torch.arange(start, min(start + batch, len(data.sample_id)))
        cond = data.condition.index(idx).to(device_)
        s0 = data.initial_spectrum[idx].numpy()
        for k in range(draws):
            generator = torch.Generator().manual_seed(noise_seed(predict_cfg["seed"], start, draws, k, shared))
            with autocast():
                state = model.sample_state(cond, generator, euler_steps=int(predict_cfg["euler_steps"]),
                                           shared_noise=shared)
            paths, bad = readout.paths(state, s0, device_)
            prediction[start : start + len(idx), k] = readout.fuse(paths)
            fallbacks += bad
    seconds = time.perf_counter() - t0
    if fallbacks:
        log.warning("%d decoded images had no ink above the background threshold %s; read without it",
                    fallbacks, predict_cfg["background_grey"])
    file_attrs = dict(attrs or {})
    file_attrs.update({"draws": draws, "sampler": sampler_name(config, int(predict_cfg["euler_steps"])),
                       "noise": "shared" if shared else "independent", "run_codes": use_codes,
                       "run_context": bool(config.run_context and knows_runs),
                       "images_without_ink_above_background": fallbacks, "space": space,
                       "residual_stream": bool(config.residual_channels), "two_stream": bool(config.two_stream),
                       "mixture_domain": placement, "mixtures_moved": json.dumps(moved)})
    write_predictions(out_h5, data.sample_id, wavenumber, prediction, file_attrs, model=meta["model"])
    log.info("%s: %d samples x %d draws in %.1f s", out_h5, len(data.sample_id), draws, seconds)
    return {"seconds": seconds, "spectra_per_second": prediction.shape[0] * draws / max(seconds, 1e-9)}


def _test_context(samples_h5, splits_json, split, data, settings, meta, knows_runs: bool) -> torch.Tensor:
    """The within-run context channels of the test samples: from the split's training samples of each test run
    (none for a run without any, or for every run when ``knows_runs`` is false)."""
    length = int(data.condition.initial_latent.shape[-1])
    if not knows_runs:
        return absent_context(len(data.sample_id), length)
    change, present, widths = within_run_context(samples_h5, load_split(splits_json, split)["train"],
                                                 list(data.sample_id), settings["run_context_bandwidths"],
                                                 leave_out=False)
    trained = meta.get("run_context_widths_s") or {}
    changed = sorted(run for run, width in widths.items() if run in trained and not np.isclose(width, trained[run]))
    if changed:
        raise DataError(f"{splits_json} ({split}): the training samples of run(s) {', '.join(changed)} differ from "
                        f"those the model was trained with (another kernel width); retrain it on this split")
    log.info("within-run context for %d of %d test samples", int(present.sum()), len(present))
    return context_channels(change, present, float(meta["spectrum_scale"]), length)
