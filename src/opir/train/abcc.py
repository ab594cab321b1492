"""Training ABCC: MeanFlow with the physics losses, the fusion fit and the model folder."""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch

from opir import __version__
from opir.core.compute import resolve_device
from opir.core.config import with_defaults
from opir.core.errors import DataError
from opir.core.h5io import read_provenance
from opir.formats.model_dir import write_model_folder
from opir.formats.samples import load_split
from opir.models.abcc import ABCC, PhysicsBatch
from opir.models.conditioning import Condition
from opir.models.physics import detect_peaks
from opir.render.waveform import read_style
from opir.train.context import context_channels, within_run_context
from opir.train.data import (
    ABCCData,
    abcc_config_for,
    fit_spectrum_scale,
    load_abcc_data,
    train_config_for,
)
from opir.train.readout import Readout, fit_fusion_weight, readout_for, soft_spectra_fn
from opir.training import batch_indices, run_balance_weights, train, weighted_batch_indices

log = logging.getLogger(__name__)


# --------------------------------------------------------------------------------------------------------------
# Train
# --------------------------------------------------------------------------------------------------------------
#: Settings without a ``losses`` section train the ABCC core: MeanFlow alone (the other loss settings are the
#: schema's defaults).
NO_PHYSICS_WEIGHTS = {"mass_weight": 0.0, "peak_weight": 0.0, "stream_weight": 0.0}


def peak_weight_at(step: int, weight: float, every: int) -> float:
    """L_peak's weight at ``step`` when the term is computed every ``every`` steps: ``every`` x weight on those steps
    (the last of each block, so a curve logged every multiple of ``every`` steps shows it), 0 between them. The
    expected gradient is the every-step one; the decoding it costs in the latent space is paid 1 / every as often."""
    return weight * every if (step + 1) % every == 0 else 0.0


def drop_run_codes(cond: Condition, rate: float, step: int, seed: int, context: bool = False) -> Condition:
    """The batch with each run code replaced by the unseen run's (0) at ``rate``, and, with ``context``, the
    within-run context channels of the same rows zeroed, so that the model also learns to forecast a cell it has no
    code and no spectra of (the system split's test runs, ``opir predict``). Seeded by the step, so a resumed run
    drops the same rows."""
    if rate <= 0 or (cond.run is None and not context):
        return cond
    generator = torch.Generator().manual_seed(seed * 100_019 + step)
    keep = torch.rand(len(cond), generator=generator) >= rate
    if cond.run is not None:
        cond = cond.with_run(cond.run * keep.to(cond.run.device))
    if context:
        initial = cond.initial_latent
        kept = keep.to(initial.device, initial.dtype)[:, None, None]
        cond = dataclasses.replace(cond, initial_latent=torch.cat([initial[:, :1], initial[:, 1:] * kept], dim=1))
    return cond


def train_abcc(
    samples_h5: str | Path, latent_h5: str | Path | None, mixture_h5: str | Path, splits_json: str | Path, split: str,
    model_name: str, cfg: dict[str, Any], out_dir: str | Path, checkpoint_dir: str | Path, device: str = "auto",
    waveform_h5: str | Path | None = None, metadata: dict[str, Any] | None = None, progress: bool = True,
    residual_h5: str | Path | None = None, streams_h5: str | Path | None = None, vae_dir: str | Path | None = None,
    variation_h5: str | Path | None = None, electrodes_h5: str | Path | None = None,
) -> Path:
    """Train one ABCC model on the training samples of ``split``; write model.safetensors (EMA weights),
    model.json and training_curve.csv to ``out_dir``.

    ``residual_h5`` (latents of the variation images) adds the residual stream, ``streams_h5`` (MCR) the stream
    targets of the dual flow, ``vae_dir`` the decoder the peak loss and the fusion fit read spectra through,
    ``variation_h5`` the style of the variation images, ``electrodes_h5`` the electrode descriptors of the condition;
    each is needed only where the settings use it."""
    device_ = resolve_device(device)
    losses = with_defaults("models.abcc.losses", cfg.get("losses", NO_PHYSICS_WEIGHTS))
    # the schema's defaults for what a partial ``cfg`` leaves out; ``predict`` as given (the rule passes only the keys
    # training reads, and model.json must not claim draws it never saw)
    given_predict = {"predict": cfg["predict"]} if "predict" in cfg else {}
    cfg = {**with_defaults("models.abcc", cfg), "losses": losses, **given_predict}
    space = cfg["space"]
    train_ids = load_split(splits_json, split)["train"]
    spectrum_scale = fit_spectrum_scale(samples_h5, train_ids) if space == "spectrum" else None
    use_residual = space == "latent" and bool(cfg["chemical_flow"])
    two_stream = bool(cfg["two_stream"])
    use_electrode = bool(cfg["electrode_descriptors"])
    for flag, path, what in ((use_residual, residual_h5, "the variation latents (chemical_flow)"),
                             (two_stream, streams_h5, "the MCR streams (two_stream)"),
                             (use_electrode, electrodes_h5, "the electrode descriptors (electrode_descriptors)")):
        if flag and path is None:
            raise DataError(f"{split}/{model_name}: settings need {what}, but no file was given")
    data = load_abcc_data(samples_h5, latent_h5, mixture_h5, train_ids, cfg,
                          residual_h5=residual_h5 if use_residual else None,
                          streams_h5=streams_h5 if two_stream else None, spectrum_scale=spectrum_scale,
                          electrodes_h5=electrodes_h5 if use_electrode else None)
    context_widths = None
    if cfg["context_anchor"] and not cfg["run_context"]:
        raise DataError(f"{split}/{model_name}: context_anchor anchors the flow on the within-run context; set "
                        "run_context: true as well")
    if cfg["run_context"]:
        if space != "spectrum":
            raise DataError(f"{split}/{model_name}: run_context is a setting of the 1D variant (space: spectrum)")
        change, present, context_widths = within_run_context(samples_h5, train_ids, train_ids,
                                                             cfg["run_context_bandwidths"], leave_out=True)
        data = data.with_context(context_channels(change, present, spectrum_scale,
                                                  data.condition.initial_latent.shape[-1]))
        log.info("%s/%s: within-run context for %d of %d training samples (%d runs)", split, model_name,
                 int(present.sum()), len(present), len(context_widths))
    config = abcc_config_for(cfg, data)
    data = data.with_run_codes(config)
    train_config = train_config_for(cfg["train"], len(data.sample_id))
    torch.manual_seed(train_config.seed)  # the initial weights
    model = ABCC(config)
    if config.scale_mixture:
        model.condition_encoder.fit_mixture_scale(data.condition.mixture)
    n_params = sum(p.numel() for p in model.parameters())
    log.info("%s/%s: %d training samples, state %s (%s space, residual stream %s, two streams %s, electrode %s, "
             "run codes %d), %.2f M parameters, %d steps on %s", split, model_name, len(data.sample_id),
             tuple(data.target.shape[1:]), space, use_residual, two_stream, use_electrode,
             len(config.run_ids) if config.run_codes else 0, n_params / 1e6, train_config.steps, device_)  # fmt: skip

    readout = readout_for(space, config, data.initial_spectrum.shape[1], cfg, vae_dir, waveform_h5, variation_h5,
                           spectrum_scale, device_)
    weights = dict(mass=float(losses["mass_weight"]), peak=float(losses["peak_weight"]),
                   stream=float(losses["stream_weight"]) if two_stream else 0.0)
    spectra_fn = soft_spectra_fn(readout, device_) if weights["peak"] > 0 else None
    peaks = (detect_peaks(data.target_spectrum.numpy(), float(losses["peak_prominence"]),
                          int(losses["peak_max_peaks"])).to(device_) if weights["peak"] > 0 else None)
    stream_scale = None
    if data.stream_target is not None:
        stream_scale = data.stream_target.std(dim=(0, 2), keepdim=True).clamp_min(1e-6)
        stream_target = (data.stream_target / stream_scale).to(device_)
    target, condition = data.target.to(device_), data.condition.to(device_)
    initial_spectrum = data.initial_spectrum.to(device_)

    peak_every = int(losses["peak_every"])
    code_dropout = float(cfg["run_code_dropout"]) if config.run_codes or config.run_context else 0.0
    balance = float(cfg.get("run_balance", 0.0))  # settings from before the switch have none
    sample_weights = run_balance_weights(data.run_key, balance) if balance > 0 else None

    def batch(step: int) -> torch.Tensor:
        if sample_weights is None:  # epochs of seeded permutations (every model before run_balance)
            return batch_indices(len(target), train_config.batch_size, step, train_config.seed)
        return weighted_batch_indices(sample_weights, train_config.batch_size, step, train_config.seed)

    def loss_fn(step, generator, autocast):
        idx = batch(step).to(device_)
        s0 = initial_spectrum[idx]
        physics = PhysicsBatch(
            mass_weight=weights["mass"], peak_weight=peak_weight_at(step, weights["peak"], peak_every),
            stream_weight=weights["stream"],
            spectra_fn=(lambda state, rows: spectra_fn(state, s0[rows])) if spectra_fn else None,
            peaks=peaks.index_rows(idx) if peaks is not None else None,
            peak_half_window=int(losses["peak_half_window_points"]),
            peak_temperature=float(losses["peak_temperature"]),
            peak_samples=int(losses["peak_samples"]),
            peak_rows=losses["peak_rows"],
            physics_samples=int(losses["physics_samples"]),
            stream_target=stream_target[idx] if stream_scale is not None else None,
        )
        cond = drop_run_codes(condition.index(idx), code_dropout, step, train_config.seed, config.run_context)
        return model.loss(target[idx], cond, generator, autocast, physics)

    fingerprint = data.fingerprint()
    ema, result = train(model, loss_fn, train_config, checkpoint_dir, device_, run_settings=cfg,
                        progress=progress, desc=f"{split}/{model_name}", data=fingerprint)
    fusion = None
    if use_residual:
        model.load_state_dict(ema)
        fusion = _fit_fusion(model, data, readout, cfg, device_)
    meta = {
        "model": model_name, "split": split, "opir_version": __version__, "architecture": config.to_dict(),
        "settings": cfg, "train_steps": train_config.steps, "n_train": len(data.sample_id),
        "n_parameters": n_params, "train_seconds": result.seconds, "resumed_from_step": result.resumed_from,
        "training_data_sha256": fingerprint,
        "device": str(device_), "space": space, "n_points": int(data.initial_spectrum.shape[1]),
        "spectrum_scale": spectrum_scale,
        "run_context_widths_s": context_widths,
        "stream_scale": stream_scale.flatten().tolist() if stream_scale is not None else None,
        "fusion": fusion,
        # how the inputs were made, so predictions with this model can be reproduced from raw spectra
        "dataset_config": read_provenance(samples_h5).get("config"),
        "render": dataclasses.asdict(read_style(waveform_h5)) if waveform_h5 else None,
        "render_variation": dataclasses.asdict(read_style(variation_h5)) if variation_h5 and use_residual
        else None,
        **(metadata or {}),
    }
    return write_model_folder(out_dir, ema, meta, result.curve)


@torch.no_grad()
def _fit_fusion(model: ABCC, data: ABCCData, readout: Readout, cfg: dict[str, Any], device) -> dict[str, Any]:
    """Fusion weights of the waveform and the residual read-out, fitted on one-step samples of (a seeded subset
    of) the training samples: the model's own errors decide which path to trust at each wavenumber."""
    model.eval()
    n = len(data.sample_id)
    count = min(n, int(cfg["fusion_fit_samples"]))
    idx = torch.randperm(n, generator=torch.Generator().manual_seed(int(cfg["train"]["seed"])))[:count].sort().values
    batch = int(cfg["predict"]["batch_size"])
    paths: list[list[np.ndarray]] = [[], []]
    for start in range(0, count, batch):
        part = idx[start : start + batch]
        generator = torch.Generator().manual_seed(int(cfg["train"]["seed"]) * 7919 + start)
        state = model.sample_state(data.condition.index(part).to(device), generator)
        spectra, _ = readout.paths(state, data.initial_spectrum[part].numpy(), device)
        for i, s in enumerate(spectra):
            paths[i].append(s)
    a, b = np.concatenate(paths[0]), np.concatenate(paths[1])
    y = data.target_spectrum[idx].numpy()
    w = fit_fusion_weight(a, b, y)
    readout.fusion_weight = w
    fused = readout.fuse([a, b])
    summary = {"waveform_weight": w.tolist(), "fit_samples": count,
               "mae_waveform": float(np.abs(a - y).mean()), "mae_residual": float(np.abs(b - y).mean()),
               "mae_fused": float(np.abs(fused - y).mean())}
    log.info("fusion fitted on %d training samples: MAE waveform %.4g, residual %.4g, fused %.4g (mean w %.2f)",
             count, summary["mae_waveform"], summary["mae_residual"], summary["mae_fused"], float(w.mean()))
    return summary
