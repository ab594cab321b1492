"""Training the neural baselines and writing their model folders."""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch

from opir import __version__
from opir.core.compute import resolve_device
from opir.core.errors import ConfigError, DataError
from opir.formats.embeddings import read_mixture_embeddings
from opir.formats.model_dir import read_model_meta, read_model_weights, write_model_folder
from opir.formats.samples import load_samples, load_split
from opir.models.nb_nets import (
    LatentSiT,
    TrajectoryTransformer,
    VoltageGRU,
    count_parameters,
    flow_matching_loss,
)
from opir.models.sit import SiTConfig
from opir.neural_baselines.series import (
    CLIP_FEATURES,
    FRAME_FEATURES,
    STEP_FEATURES,
    RunSeries,
    build_runs,
    clip_from_run,
    delta_scale,
    step_features,
)
from opir.neural_baselines.settings import LATENT_BASELINES, NEURAL_BASELINES, SPECTRUM_BASELINES
from opir.render.waveform import read_style
from opir.train.data import load_abcc_data, train_config_for
from opir.training import TrainConfig, batch_indices, data_fingerprint, train

log = logging.getLogger(__name__)


# --------------------------------------------------------------------------------------------------------------
# Model folders
# --------------------------------------------------------------------------------------------------------------
def _build(architecture: dict[str, Any]) -> torch.nn.Module:
    kind, kwargs = architecture["class"], dict(architecture["kwargs"])
    if kind == "LatentSiT":
        kwargs["sit"] = SiTConfig(**kwargs["sit"])
        return LatentSiT(**kwargs)
    if kind == "VoltageGRU":
        return VoltageGRU(**kwargs)
    if kind == "TrajectoryTransformer":
        return TrajectoryTransformer(**kwargs)
    raise DataError(f"unknown network class {kind!r} in model.json")


def load_baseline(model_dir: str | Path, device: torch.device | str = "cpu") -> tuple[torch.nn.Module, dict]:
    """A trained neural baseline from its folder (safetensors only)."""
    model_dir = Path(model_dir)
    meta = read_model_meta(model_dir)
    if meta.get("kind") not in NEURAL_BASELINES:
        raise DataError(f"{model_dir}/model.json: not a neural baseline (kind {meta.get('kind')!r})")
    model = _build(meta["architecture"])
    model.load_state_dict(read_model_weights(model_dir, device))
    return model.to(device).eval(), meta


def _train_config(train_cfg: dict[str, Any], n_items: int) -> TrainConfig:
    """``epochs`` passes over ``n_items`` (capped by ``max_steps``), or ``steps`` when given."""
    if "steps" in train_cfg:
        return TrainConfig.from_dict(train_cfg)
    return train_config_for(train_cfg, n_items)


# --------------------------------------------------------------------------------------------------------------
# Train
# --------------------------------------------------------------------------------------------------------------
def train_neural_baseline(
    samples_h5: str | Path, splits_json: str | Path, mixture_h5: str | Path, split: str, model_name: str,
    settings: dict[str, Any], out_dir: str | Path, checkpoint_dir: str | Path, device: str = "auto",
    latent_h5: str | Path | None = None, waveform_h5: str | Path | None = None, progress: bool = True,
) -> Path:
    """Train baseline ``settings['kind']`` on the training samples of ``split``; write its model folder."""
    kind = settings.get("kind")
    if kind in LATENT_BASELINES:
        if latent_h5 is None or waveform_h5 is None:
            raise ConfigError(f"{kind}: needs the split's latents and the waveform images")
        return _train_latent(samples_h5, splits_json, mixture_h5, latent_h5, waveform_h5, split, model_name,
                             settings, Path(out_dir), checkpoint_dir, resolve_device(device), progress)
    if kind in SPECTRUM_BASELINES:
        return _train_spectrum(samples_h5, splits_json, mixture_h5, split, model_name, settings, Path(out_dir),
                               checkpoint_dir, resolve_device(device), progress)
    raise ConfigError(f"settings.kind: unknown neural baseline {kind!r} (known: {', '.join(NEURAL_BASELINES)})")


def _meta(model_name, split, settings, architecture, model, train_config, result, n_train, device, extra=None):
    return {
        "model": model_name, "kind": settings["kind"], "split": split, "opir_version": __version__,
        "architecture": architecture, "settings": settings, "train_steps": train_config.steps, "n_train": n_train,
        "n_parameters": count_parameters(model), "train_seconds": result.seconds,
        "resumed_from_step": result.resumed_from, "device": str(device), **(extra or {}),
    }


def _train_latent(samples_h5, splits_json, mixture_h5, latent_h5, waveform_h5, split, model_name, settings, out_dir,
                  checkpoint_dir, device, progress) -> Path:
    data = load_abcc_data(samples_h5, latent_h5, mixture_h5, load_split(splits_json, split)["train"],
                          settings)
    channels, size = data.target.shape[1], data.target.shape[-1]
    flow = settings["kind"] == "sit_flow_matching"
    sit = SiTConfig(input_size=size, patch_size=int(settings["patch_size"]),
                    in_channels=(2 if flow else 1) * channels, out_channels=channels,
                    hidden_size=int(settings["hidden_size"]), depth=int(settings["depth"]),
                    num_heads=int(settings["num_heads"]), mlp_ratio=float(settings["mlp_ratio"]),
                    cond_dim=int(settings["hidden_size"]), attention=settings["attention"])
    architecture = {"class": "LatentSiT", "kwargs": {
        "sit": sit.to_dict(), "latent_channels": channels, "profile_dim": data.condition.profile.shape[1],
        "mixture_dim": data.condition.mixture.shape[1], "with_noise_input": flow}}
    train_config = _train_config(settings["train"], len(data.sample_id))
    torch.manual_seed(train_config.seed)
    model = _build(architecture)
    log.info("%s/%s (%s): %d training samples, latents %s, %.2f M parameters, %d steps on %s", split, model_name,
             settings["kind"], len(data.sample_id), tuple(data.target.shape[1:]), count_parameters(model) / 1e6,
             train_config.steps, device)
    target, condition = data.target.to(device), data.condition.to(device)

    def loss_fn(step, generator, autocast):
        idx = batch_indices(len(target), train_config.batch_size, step, train_config.seed).to(device)
        cond = condition.index(idx)
        with autocast():
            if flow:
                return flow_matching_loss(lambda z, t: model(z, t, cond), target[idx], float(settings["time_mu"]),
                                          float(settings["time_sigma"]), generator)
            mse = (model.regress(cond).float() - target[idx]).pow(2).mean()
            return {"loss": mse, "mse": mse.detach()}

    weights, result = train(model, loss_fn, train_config, checkpoint_dir, device, run_settings=settings,
                            progress=progress, desc=f"{split}/{model_name}", data=data.fingerprint())
    meta = _meta(model_name, split, settings, architecture, model, train_config, result, len(data.sample_id), device,
                 {"render": dataclasses.asdict(read_style(waveform_h5))})
    return write_model_folder(out_dir, weights, meta, result.curve)


def spectrum_data(samples_h5, splits_json, mixture_h5, split, part):
    table = load_samples(samples_h5)
    ids = load_split(splits_json, split)
    train_idx = np.sort(table.sample_index(ids["train"], f"{splits_json} ({split}/train)"))
    part_idx = train_idx if part == "train" else table.sample_index(ids[part], f"{splits_json} ({split}/{part})")
    mixtures = read_mixture_embeddings(mixture_h5)
    unknown = sorted(set(table.samples["system_id"][part_idx]) - set(mixtures))
    if unknown:
        raise DataError(f"{mixture_h5}: no mixture embedding for system(s) {', '.join(unknown)}")
    return table, train_idx, part_idx, mixtures


def _train_spectrum(samples_h5, splits_json, mixture_h5, split, model_name, settings, out_dir, checkpoint_dir,
                    device, progress) -> Path:
    table, train_idx, _, mixtures = spectrum_data(samples_h5, splits_json, mixture_h5, split, "train")
    runs = [run for run in build_runs(table, train_idx, train_idx) if run.target_mask.any()]
    scale = delta_scale(runs)
    n_points, mixture_dim = table.absorbance.shape[1], len(next(iter(mixtures.values())))
    condition = settings["condition"]
    train_config = TrainConfig.from_dict(settings["train"])
    if settings["kind"] == "gru_forecaster":
        architecture = {"class": "VoltageGRU", "kwargs": {
            "n_points": n_points, "mixture_dim": mixture_dim, "step_features": STEP_FEATURES,
            "hidden": int(settings["hidden_size"]), "layers": int(settings["layers"]),
            "dropout": float(settings["dropout"]), "delta_scale": scale, "stride": int(settings["stride"])}}
    else:
        architecture = {"class": "TrajectoryTransformer", "kwargs": {
            "n_points": n_points, "frames": int(settings["frames"]), "mixture_dim": mixture_dim,
            "frame_features": FRAME_FEATURES, "clip_features": CLIP_FEATURES, "hidden": int(settings["hidden_size"]),
            "depth": int(settings["depth"]), "num_heads": int(settings["num_heads"]),
            "mlp_ratio": float(settings["mlp_ratio"])}}
    torch.manual_seed(train_config.seed)
    model = _build(architecture).to(device)
    log.info("%s/%s (%s): %d training runs, %d targets, %.2f M parameters, %d steps on %s", split, model_name,
             settings["kind"], len(runs), len(train_idx), count_parameters(model) / 1e6, train_config.steps, device)
    mixture = {run.key: torch.from_numpy(mixtures[run.system_id]).float() for run in runs}

    if settings["kind"] == "gru_forecaster":
        def loss_fn(step, generator, autocast):
            chosen = [runs[i] for i in batch_indices(len(runs), train_config.batch_size, step, train_config.seed)]
            initial, mix, steps, target, mask = gru_batch(chosen, mixture, condition, device)
            with autocast():
                predicted = model(initial, mix, steps).float()
            per_row = (predicted - target).pow(2).mean(dim=-1)
            mse = (per_row * mask).sum() / mask.sum()
            return {"loss": mse / scale**2, "mse": mse.detach()}
    else:
        weights_by_run = np.array([run.target_mask.sum() for run in runs], dtype=np.float64)

        def loss_fn(step, generator, autocast):
            clips = [_random_clip(runs, weights_by_run, settings, condition, generator)
                     for _ in range(int(train_config.batch_size))]
            batch = stack_clips(clips, [mixture[run.key] for run, _ in clips], device)
            x = batch["delta"] / scale
            with autocast():
                return flow_matching_loss(trajectory_network(model, batch), x, float(settings["time_mu"]),
                                          float(settings["time_sigma"]), generator, prediction="data")

    fingerprint = data_fingerprint(*(array for run in runs for array in (run.spectra, run.voltage_v, run.elapsed_s,
                                                                         run.target_mask)),
                                   *(mixtures[system] for system in sorted(mixtures)))
    weights, result = train(model, loss_fn, train_config, checkpoint_dir, device, run_settings=settings,
                            progress=progress, desc=f"{split}/{model_name}", data=fingerprint)
    meta = _meta(model_name, split, settings, architecture, model, train_config, result, len(train_idx), device,
                 {"delta_scale": scale, "training_runs": [run.key for run in runs]})
    return write_model_folder(out_dir, weights, meta, result.curve)


def gru_batch(runs: list[RunSeries], mixture: dict[str, torch.Tensor], condition, device, with_targets=True):
    """Padded batch of whole runs: initial (B, N_f), mixture (B, D), steps (B, L, S), target deltas (B, L, N_f),
    mask (B, L) of usable targets."""
    length = max(len(run.rows) for run in runs)
    n_points = runs[0].spectra.shape[1]
    steps = np.zeros((len(runs), length, STEP_FEATURES), dtype=np.float32)
    target = np.zeros((len(runs), length, n_points), dtype=np.float32)
    mask = np.zeros((len(runs), length), dtype=np.float32)
    for b, run in enumerate(runs):
        n = len(run.rows)
        steps[b, :n] = step_features(run, condition)
        if with_targets:
            target[b, :n][run.target_mask] = run.spectra[run.target_mask] - run.spectra[0]
            mask[b, :n] = run.target_mask
    initial = torch.from_numpy(np.stack([run.spectra[0] for run in runs]).astype(np.float32))
    mix = torch.stack([mixture[run.key] for run in runs])
    return (initial.to(device), mix.to(device), torch.from_numpy(steps).to(device), torch.from_numpy(target).to(device),
            torch.from_numpy(mask).to(device))


def _random_clip(runs, weights_by_run, settings, condition, generator):
    """A training clip: a run drawn in proportion to its targets; with probability ``full_run_fraction`` the clip
    starts at s(v_0), else at a random usable row (a later spectrum taken as the clip's initial one: windows of
    the same runs, which is how a model with whole-trajectory outputs gets more than one clip per run); it ends
    at a usable row after its start."""
    cumulative = np.cumsum(weights_by_run) / weights_by_run.sum()
    u = torch.rand(3, generator=generator).numpy()
    run = runs[int(np.searchsorted(cumulative, u[0], side="right").clip(0, len(runs) - 1))]
    usable = run.available
    if u[1] < float(settings["full_run_fraction"]) or len(usable) < 3:
        start, end = 0, int(usable[-1])
    else:
        start = int(usable[int(u[2] * (len(usable) - 1))])
        later = usable[usable > start]
        end = int(later[int(torch.randint(len(later), (1,), generator=generator))])
    return run, clip_from_run(run, start, end, int(settings["frames"]), condition)


def trajectory_network(model, batch: dict[str, torch.Tensor]):
    """x_hat(z, t) of a trajectory model with a batch of clip conditions bound."""
    return lambda z, t: model(z, t, batch["frame_features"], batch["initial"], batch["mixture"],
                              batch["clip_features"])


def stack_clips(clips, mixtures, device) -> dict[str, torch.Tensor]:
    keys = [k for k in ("initial", "frame_features", "clip_features", "delta") if k in clips[0][1]]
    batch = {k: torch.from_numpy(np.stack([clip[k] for _, clip in clips])).to(device) for k in keys}
    batch["mixture"] = torch.stack(mixtures).to(device)
    return batch
