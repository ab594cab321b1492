"""Neural baselines of OpIRBench: the same data, splits, condition and metrics as ABCC, other modelling choices
(docs/method.md, "Neural baselines").

- ``sit_regression``: deterministic regression of the target latent with ABCC's SiT backbone and condition encoder
  (MSE; the classical approach the paper argues against: it predicts the conditional mean);
- ``sit_flow_matching``: the same backbone trained with plain flow matching (instantaneous velocity, r = t) and
  sampled with an Euler ODE solver in ``euler_steps`` steps (what MeanFlow's one step replaces);
- ``gru_forecaster``: a GRU that reads the voltage profile v_0, v_1, ... step by step and emits s(v_m) - s(v_0)
  on the wavenumber grid, its state initialised from s(v_0) and the mixture embedding (1D spectra, no images);
- ``trajectory_flow``: a flow-matching generator of a whole run's trajectory at once (F frames of s - s(v_0) over
  the run's normalized index, attention over frames), read at each test sample's position (1D spectra).

Each trains with :func:`opir.train.train` (checkpoints, resume, EMA, NaN guard) and writes the model folder
(``model.safetensors``, ``model.json``, ``training_curve.csv``) and a predictions file (n, k, N_f).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from opir import __version__
from opir.compute import resolve_device
from opir.errors import ConfigError, DataError
from opir.models.nb_nets import (
    LatentSiT,
    TrajectoryTransformer,
    VoltageGRU,
    count_parameters,
    flow_matching_loss,
    velocity_from_data_prediction,
)
from opir.models.nb_settings import LATENT_BASELINES, NEURAL_BASELINES, SPECTRUM_BASELINES
from opir.models.sit import SiTConfig
from opir.train import TrainConfig, batch_indices, data_fingerprint, train, write_curve

log = logging.getLogger(__name__)

#: Frame / step features of the 1D baselines (voltage, elapsed time, ...); see :func:`step_features`.
STEP_FEATURES = 3
FRAME_FEATURES = 3
CLIP_FEATURES = 3


# --------------------------------------------------------------------------------------------------------------
# Runs as sequences (the 1D baselines)
# --------------------------------------------------------------------------------------------------------------
@dataclass
class RunSeries:
    """One run from its initial spectrum to its last sample, in acquisition order (local index j = 0 is s(v_0)).
    ``target_mask`` marks the rows that may be used as targets (training samples; j = 0 is always an input)."""

    key: str
    system_id: str
    rows: np.ndarray  # (n,) rows of samples.h5
    voltage_v: np.ndarray  # (n,)
    elapsed_s: np.ndarray  # (n,) since s(v_0)
    spectra: np.ndarray  # (n, N_f); NaN except s(v_0) and the rows with target_mask
    target_mask: np.ndarray  # (n,) bool
    sample_index: dict[int, int]  # local index -> position in the caller's sample list

    @property
    def available(self) -> np.ndarray:
        """Local indices whose spectra a model may see: s(v_0) and the targets."""
        return np.flatnonzero(self.target_mask | (np.arange(len(self.rows)) == 0))


def build_runs(table, sample_idx: np.ndarray, target_idx: np.ndarray) -> list[RunSeries]:
    """Runs holding the samples ``sample_idx`` (positions in the sample table); each run spans s(v_0) to its last
    sample of any part, so the voltage profile (an input) is whole; spectra are marked usable only for
    ``target_idx``."""
    samples = table.samples
    all_last: dict[int, int] = {}
    for initial, row in zip(samples["initial_row"], samples["row"], strict=True):
        all_last[int(initial)] = max(all_last.get(int(initial), initial), int(row))
    targets = set(samples["row"][target_idx].tolist())
    runs = []
    for initial in sorted({int(i) for i in samples["initial_row"][sample_idx]}):
        rows = np.arange(initial, all_last[initial] + 1)
        run_id = table.rows["run_id"][initial]
        system = str(table.rows["system_id"][initial])
        if np.any(table.rows["run_id"][rows] != run_id) or np.any(table.rows["system_id"][rows] != system):
            raise DataError(f"{table.path}: rows {initial}..{rows[-1]} of run {system}/{run_id} are not contiguous")
        elapsed = table.rows["elapsed_s"][rows].astype(np.float64)
        members = sample_idx[samples["initial_row"][sample_idx] == initial]
        target_mask = np.isin(rows, list(targets))
        # spectra a model may not see (test targets) are not even copied: NaN makes any accidental use visible
        spectra = np.full((len(rows), table.absorbance.shape[1]), np.nan, dtype=np.float32)
        usable = target_mask | (rows == initial)
        spectra[usable] = table.absorbance[rows[usable]]
        runs.append(RunSeries(
            key=f"{system}/{run_id}", system_id=system, rows=rows,
            voltage_v=table.rows["voltage_v"][rows].astype(np.float64), elapsed_s=elapsed - elapsed[0],
            spectra=spectra, target_mask=target_mask,
            sample_index={int(samples["row"][i]) - initial: int(k) for k, i in
                          zip(np.searchsorted(sample_idx, members), members, strict=True)},
        ))
    return runs


def step_features(run: RunSeries, condition: dict[str, Any]) -> np.ndarray:
    """(n, 3) per row: scaled voltage, log1p(elapsed / time scale), scaled voltage step (the direction of sweep)."""
    v = (run.voltage_v - float(condition["voltage_center_v"])) / float(condition["voltage_scale_v"])
    dv = np.diff(v, prepend=v[0])
    elapsed = np.log1p(run.elapsed_s / float(condition["time_scale_s"]))
    return np.stack([v, elapsed, dv], axis=1).astype(np.float32)


def delta_scale(runs: list[RunSeries]) -> float:
    """Standard deviation of s(v_m) - s(v_0) over the training targets (the 1D models predict in its units)."""
    deltas = [run.spectra[run.target_mask] - run.spectra[0] for run in runs if run.target_mask.any()]
    if not deltas:
        raise DataError("no training targets for the neural baseline")
    return max(float(np.concatenate(deltas).std()), 1e-6)


def _interp_rows(values: np.ndarray, known: np.ndarray, query: np.ndarray) -> np.ndarray:
    """Linear interpolation of ``values[known]`` (rows indexed by ``known``, ascending) at fractional ``query``."""
    known = np.asarray(known, dtype=np.float64)
    right = np.clip(np.searchsorted(known, query, side="right"), 1, len(known) - 1) if len(known) > 1 else None
    if right is None:
        return np.repeat(values[int(known[0])][None], len(query), axis=0)
    left = right - 1
    span = known[right] - known[left]
    weight = np.clip((query - known[left]) / span, 0.0, 1.0)[:, None]
    return (1 - weight) * values[known[left].astype(int)] + weight * values[known[right].astype(int)]


def clip_from_run(run: RunSeries, start: int, end: int, frames: int, condition: dict[str, Any],
                  with_targets: bool = True) -> dict[str, np.ndarray]:
    """One clip of ``frames`` frames at evenly spaced positions of the local index from ``start`` to ``end``:
    frame values s(q) - s(start) interpolated between usable rows, per-frame features (scaled voltage, log
    elapsed since ``start``, position), clip features (log rows, log duration, scaled start voltage)."""
    if end <= start:
        raise DataError(f"{run.key}: a clip needs end > start, got {start}..{end}")
    query = start + (end - start) * np.linspace(0.0, 1.0, frames)
    index = np.arange(len(run.rows), dtype=np.float64)
    center, scale, tscale = (float(condition[k]) for k in ("voltage_center_v", "voltage_scale_v", "time_scale_s"))
    voltage = np.interp(query, index, run.voltage_v)
    elapsed = np.interp(query, index, run.elapsed_s) - run.elapsed_s[start]
    frame_features = np.stack([(voltage - center) / scale, np.log1p(elapsed / tscale),
                               np.linspace(0.0, 1.0, frames)], axis=1)
    clip_features = np.array([np.log1p(end - start), np.log1p((run.elapsed_s[end] - run.elapsed_s[start]) / tscale),
                              (run.voltage_v[start] - center) / scale])
    out = {"initial": run.spectra[start].astype(np.float32), "frame_features": frame_features.astype(np.float32),
           "clip_features": clip_features.astype(np.float32), "positions": query}
    if with_targets:
        usable = run.available
        usable = usable[usable >= start]
        out["delta"] = (_interp_rows(run.spectra, usable, query) - run.spectra[start]).astype(np.float32)
    return out


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


def _save_model(out_dir: Path, weights: dict[str, torch.Tensor], meta: dict[str, Any], curve: list[dict]) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous().cpu() for k, v in weights.items()}, out_dir / "model.safetensors",
              metadata={"format": "pt", "weights": "ema"})
    (out_dir / "model.json").write_text(json.dumps(meta, indent=2, default=str))
    write_curve(curve, out_dir / "training_curve.csv")
    return out_dir


def load_baseline(model_dir: str | Path, device: torch.device | str = "cpu") -> tuple[torch.nn.Module, dict]:
    """A trained neural baseline from its folder (safetensors only)."""
    model_dir = Path(model_dir)
    if not (model_dir / "model.json").exists():
        raise DataError(f"{model_dir}: no model.json")
    meta = json.loads((model_dir / "model.json").read_text())
    if meta.get("kind") not in NEURAL_BASELINES:
        raise DataError(f"{model_dir}/model.json: not a neural baseline (kind {meta.get('kind')!r})")
    model = _build(meta["architecture"])
    model.load_state_dict(load_file(model_dir / "model.safetensors", device=str(device)))
    return model.to(device).eval(), meta


def _train_config(train_cfg: dict[str, Any], n_items: int) -> TrainConfig:
    """``epochs`` passes over ``n_items`` (capped by ``max_steps``), or ``steps`` when given."""
    from opir.models.pipeline import train_config_for

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
    from opir.models.pipeline import load_abcc_data, load_split_samples
    from opir.render import read_style

    data = load_abcc_data(samples_h5, latent_h5, mixture_h5, load_split_samples(splits_json, split, "train"),
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
    return _save_model(out_dir, weights, meta, result.curve)


def _spectrum_data(samples_h5, splits_json, mixture_h5, split, part):
    from opir.models.pipeline import read_mixtures
    from opir.predictions import load_samples, load_split

    table = load_samples(samples_h5)
    ids = load_split(splits_json, split)
    train_idx = np.sort(table.sample_index(ids["train"], f"{splits_json} ({split}/train)"))
    part_idx = train_idx if part == "train" else table.sample_index(ids[part], f"{splits_json} ({split}/{part})")
    mixtures = read_mixtures(mixture_h5)
    unknown = sorted(set(table.samples["system_id"][part_idx]) - set(mixtures))
    if unknown:
        raise DataError(f"{mixture_h5}: no mixture embedding for system(s) {', '.join(unknown)}")
    return table, train_idx, part_idx, mixtures


def _train_spectrum(samples_h5, splits_json, mixture_h5, split, model_name, settings, out_dir, checkpoint_dir,
                    device, progress) -> Path:
    table, train_idx, _, mixtures = _spectrum_data(samples_h5, splits_json, mixture_h5, split, "train")
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
            initial, mix, steps, target, mask = _gru_batch(chosen, mixture, condition, device)
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
            batch = _stack_clips(clips, [mixture[run.key] for run, _ in clips], device)
            x = batch["delta"] / scale
            with autocast():
                return flow_matching_loss(_trajectory_network(model, batch), x, float(settings["time_mu"]),
                                          float(settings["time_sigma"]), generator, prediction="data")

    fingerprint = data_fingerprint(*(array for run in runs for array in (run.spectra, run.voltage_v, run.elapsed_s,
                                                                         run.target_mask)),
                                   *(mixtures[system] for system in sorted(mixtures)))
    weights, result = train(model, loss_fn, train_config, checkpoint_dir, device, run_settings=settings,
                            progress=progress, desc=f"{split}/{model_name}", data=fingerprint)
    meta = _meta(model_name, split, settings, architecture, model, train_config, result, len(train_idx), device,
                 {"delta_scale": scale, "training_runs": [run.key for run in runs]})
    return _save_model(out_dir, weights, meta, result.curve)


def _gru_batch(runs: list[RunSeries], mixture: dict[str, torch.Tensor], condition, device, with_targets=True):
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


def _trajectory_network(model, batch: dict[str, torch.Tensor]):
    """x_hat(z, t) of a trajectory model with a batch of clip conditions bound."""
    return lambda z, t: model(z, t, batch["frame_features"], batch["initial"], batch["mixture"],
                              batch["clip_features"])


def _stack_clips(clips, mixtures, device) -> dict[str, torch.Tensor]:
    keys = [k for k in ("initial", "frame_features", "clip_features", "delta") if k in clips[0][1]]
    batch = {k: torch.from_numpy(np.stack([clip[k] for _, clip in clips])).to(device) for k in keys}
    batch["mixture"] = torch.stack(mixtures).to(device)
    return batch


# --------------------------------------------------------------------------------------------------------------
# Predict
# --------------------------------------------------------------------------------------------------------------
def predict_neural_baseline(
    samples_h5: str | Path, splits_json: str | Path, mixture_h5: str | Path, split: str, model_dir: str | Path,
    out_h5: str | Path, predict_cfg: dict[str, Any], device: str = "auto", latent_h5: str | Path | None = None,
    waveform_h5: str | Path | None = None, vae_dir: str | Path | None = None, attrs: dict[str, Any] | None = None,
) -> dict[str, float]:
    """Predictions of a trained baseline for the test samples of ``split`` (k draws; k = 1 if deterministic)."""
    from opir.predictions import write_predictions

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
    import h5py

    from opir.latent import load_vae
    from opir.models.meanflow import sample_euler
    from opir.models.pipeline import images_to_spectra, load_abcc_data, load_split_samples
    from opir.models.vae import decode_latents
    from opir.render import read_style

    settings = meta["settings"]
    data = load_abcc_data(samples_h5, latent_h5, mixture_h5, load_split_samples(splits_json, split, "test"), settings)
    vae = load_vae(vae_dir)
    scaling = float(vae.config.scaling_factor)
    style = read_style(waveform_h5)
    with h5py.File(samples_h5, "r") as handle:
        wavenumber = handle["wavenumber_cm1"][()]
    flow = meta["kind"] == "sit_flow_matching"
    draws = int(cfg["draws"]) if flow else 1  # a regressor gives the same answer every time
    steps, batch = int(settings.get("euler_steps", 0)), int(cfg["batch_size"])
    prediction = np.empty((len(data.sample_id), draws, len(wavenumber)), dtype=np.float32)
    fallbacks = 0
    for start in range(0, len(data.sample_id), batch):
        idx = torch.arange(start, min(start + batch, len(data.sample_id)))
        cond = data.condition.index(idx).to(device)
        for k in range(draws):
            with torch.no_grad():
                if flow:
                    generator = torch.Generator().manual_seed(int(cfg["seed"]) * 1_000_003 + start * draws + k)
                    eps = torch.randn(data.target[idx].shape, generator=generator).to(device)
                    z = sample_euler(lambda z_, r_, t_, drop_, c=cond: model(z_, t_, c), eps, steps)
                else:
                    z = model.regress(cond)
            images = decode_latents(vae, z.float() / scaling, batch, device)
            spectra, bad = images_to_spectra(images, len(wavenumber), style, float(cfg["background_grey"]))
            prediction[start : start + len(idx), k] = spectra
            fallbacks += bad
    if fallbacks:
        log.warning("%d decoded images had no ink above the background threshold; read without it", fallbacks)
    extra = {"sampler": f"euler_{steps}" if flow else "deterministic", "images_without_ink_above_background": fallbacks}
    return data.sample_id, wavenumber, prediction, extra


def _predict_spectrum(model, meta, samples_h5, splits_json, mixture_h5, split, cfg, device):
    from opir.models.meanflow import sample_euler

    settings = meta["settings"]
    condition = settings["condition"]
    table, train_idx, test_idx, mixtures = _spectrum_data(samples_h5, splits_json, mixture_h5, split, "test")
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
            initial, mix, steps, _, _ = _gru_batch([run], mixture, condition, device, with_targets=False)
            with torch.no_grad():
                delta = model(initial, mix, steps)[0].cpu().numpy()
            out_sorted[positions, 0] = run.spectra[0] + delta[local]
            continue
        clip = clip_from_run(run, 0, len(run.rows) - 1, int(settings["frames"]), condition, with_targets=False)
        batch = _stack_clips([(run, clip)] * draws, [mixture[run.key]] * draws, device)
        generator = torch.Generator().manual_seed(int(cfg["seed"]) * 1_000_003 + int(run.rows[0]))
        eps = torch.randn((draws, int(settings["frames"]), n_points), generator=generator).to(device)
        velocity = velocity_from_data_prediction(_trajectory_network(model, batch))
        frames = sample_euler(lambda z, r, t, drop, v=velocity: v(z, t), eps, int(settings["euler_steps"]))
        frames = frames.cpu().numpy() * float(meta["delta_scale"])  # (k, F, N_f)
        frame_index = np.arange(frames.shape[1], dtype=np.float64)
        at = local / (len(run.rows) - 1) * (frames.shape[1] - 1)  # sample positions on the frame axis
        for k in range(draws):
            out_sorted[positions, k] = run.spectra[0] + _interp_rows(frames[k], frame_index, at)
    prediction = np.empty_like(out_sorted)
    prediction[order] = out_sorted
    sample_id = table.samples["sample_id"][test_idx]
    extra = {"sampler": f"euler_{settings['euler_steps']}" if generative else "deterministic"}
    return sample_id, table.wavenumber_cm1, prediction, extra
