"""ABCC as workflow stages: assemble (target latent, condition) pairs from the dataset files, train with
:func:`opir.train.train`, and predict spectra (one-step MeanFlow -> VAE decoder -> Alg. 1 inverse).

Inputs (docs/architecture.md): samples.h5 (samples/{row, initial_row, system_id, elapsed_s}, rows/voltage_v),
splits.json, the split's latents (opir.latent), the mixture embeddings and the waveform file (its render
attributes give the image geometry that the inverse needs).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import torch
from safetensors.torch import load_file, save_file

from opir import __version__
from opir.compute import resolve_device
from opir.errors import DataError
from opir.h5io import read_provenance, read_strings
from opir.models.abcc import ABCC, ABCCConfig
from opir.models.conditioning import Condition, profile_features
from opir.models.meanflow import MeanFlowConfig
from opir.train import TrainConfig, autocast_factory, batch_indices, train, write_curve

log = logging.getLogger(__name__)


# --------------------------------------------------------------------------------------------------------------
# Data
# --------------------------------------------------------------------------------------------------------------
@dataclass
class ABCCData:
    sample_id: np.ndarray  # (n,) str
    target: torch.Tensor  # (n, C, h, w) scaled latents of s(v_m)
    condition: Condition


def read_mixtures(mixture_h5: str | Path) -> dict[str, np.ndarray]:
    with h5py.File(mixture_h5, "r") as handle:
        for key in ("system_id", "mixture_embedding"):
            if key not in handle:
                raise DataError(f"{mixture_h5}: missing dataset {key!r} (docs/formats.md, mixture embeddings)")
        return dict(zip(read_strings(handle["system_id"]), handle["mixture_embedding"][()], strict=True))


def load_split_samples(splits_json: str | Path, split: str, part: str) -> list[str]:
    splits = json.loads(Path(splits_json).read_text())
    try:
        return list(splits[split][part])
    except KeyError:
        raise DataError(f"{splits_json}: no list '{split}' / '{part}'") from None


def load_abcc_data(
    samples_h5: str | Path, latent_h5: str | Path, mixture_h5: str | Path, sample_ids: list[str], cfg: dict[str, Any],
) -> ABCCData:
    """Targets and conditions of ``sample_ids`` (in that order)."""
    from opir.latent import read_latents

    latents, _ = read_latents(latent_h5)
    mixtures = read_mixtures(mixture_h5)
    with h5py.File(samples_h5, "r") as handle:
        group = handle["samples"]
        all_ids = read_strings(group["sample_id"])
        rows, initial = group["row"][()], group["initial_row"][()]
        systems = read_strings(group["system_id"])
        elapsed = group["elapsed_s"][()]
        voltage = handle["rows/voltage_v"][()]
    if len(voltage) != len(latents):
        raise DataError(f"{latent_h5} has {len(latents)} latents but {samples_h5} has {len(voltage)} rows")
    position = {sample: i for i, sample in enumerate(all_ids)}
    missing = [s for s in sample_ids if s not in position]
    if missing:
        raise DataError(f"{samples_h5}: {len(missing)} sample(s) of the split are missing, e.g. {missing[0]}")
    idx = np.array([position[s] for s in sample_ids], dtype=np.int64)
    unknown = sorted(set(systems[idx]) - set(mixtures))
    if unknown:
        raise DataError(f"{mixture_h5}: no mixture embedding for system(s) {', '.join(unknown)}")
    profiles = np.stack([
        profile_features(voltage[initial[i] : rows[i] + 1], float(elapsed[i]), int(cfg["profile_length"]),
                         float(cfg["voltage_center_v"]), float(cfg["voltage_scale_v"]), float(cfg["time_scale_s"]))
        for i in idx
    ])
    condition = Condition(
        initial_latent=torch.from_numpy(latents[initial[idx]]).float(),
        profile=torch.from_numpy(profiles).float(),
        mixture=torch.from_numpy(np.stack([mixtures[s] for s in systems[idx]])).float(),
    )
    return ABCCData(np.asarray(sample_ids), torch.from_numpy(latents[rows[idx]]).float(), condition)


def abcc_config_for(cfg: dict[str, Any], data: ABCCData) -> ABCCConfig:
    target = data.target
    if target.shape[-1] != target.shape[-2]:
        raise DataError(f"latents must be square, got {tuple(target.shape[1:])}")
    return ABCCConfig(
        latent_channels=target.shape[1],
        latent_size=target.shape[-1],
        profile_dim=data.condition.profile.shape[1],
        mixture_dim=data.condition.mixture.shape[1],
        hidden_size=int(cfg["hidden_size"]),
        depth=int(cfg["depth"]),
        num_heads=int(cfg["num_heads"]),
        patch_size=int(cfg["patch_size"]),
        mlp_ratio=float(cfg["mlp_ratio"]),
        attention=cfg["attention"],
        meanflow=MeanFlowConfig(**cfg["meanflow"]),
    )


def steps_for(train_cfg: dict[str, Any], n_train: int) -> int:
    """Epochs (``epochs`` passes over the training samples) as optimizer steps, capped by ``max_steps``."""
    per_epoch = max(1, n_train // min(int(train_cfg["batch_size"]), n_train))
    steps = max(1, round(float(train_cfg["epochs"]) * per_epoch))
    return min(steps, int(train_cfg["max_steps"])) if train_cfg.get("max_steps") else steps


def train_config_for(train_cfg: dict[str, Any], n_train: int) -> TrainConfig:
    values = {k: v for k, v in train_cfg.items() if k not in ("epochs", "max_steps")}
    return TrainConfig.from_dict({**values, "steps": steps_for(train_cfg, n_train)})


# --------------------------------------------------------------------------------------------------------------
# Train
# --------------------------------------------------------------------------------------------------------------
def train_abcc(
    samples_h5: str | Path, latent_h5: str | Path, mixture_h5: str | Path, splits_json: str | Path, split: str,
    model_name: str, cfg: dict[str, Any], out_dir: str | Path, checkpoint_dir: str | Path, device: str = "auto",
    waveform_h5: str | Path | None = None, metadata: dict[str, Any] | None = None, progress: bool = True,
) -> Path:
    """Train one ABCC model on the training samples of ``split``; write model.safetensors (EMA weights),
    model.json and training_curve.csv to ``out_dir``."""
    device_ = resolve_device(device)
    data = load_abcc_data(samples_h5, latent_h5, mixture_h5, load_split_samples(splits_json, split, "train"), cfg)
    config = abcc_config_for(cfg, data)
    train_config = train_config_for(cfg["train"], len(data.sample_id))
    torch.manual_seed(train_config.seed)  # the initial weights
    model = ABCC(config)
    n_params = sum(p.numel() for p in model.parameters())
    log.info("%s/%s: %d training samples, latents %s, %.2f M parameters, %d steps on %s", split, model_name,
             len(data.sample_id), tuple(data.target.shape[1:]), n_params / 1e6, train_config.steps, device_)
    target, condition = data.target.to(device_), data.condition.to(device_)

    def loss_fn(step, generator, autocast):
        idx = batch_indices(len(target), train_config.batch_size, step, train_config.seed).to(device_)
        return model.loss(target[idx], condition.index(idx), generator, autocast)

    weights, result = train(model, loss_fn, train_config, checkpoint_dir, device_, run_settings=cfg,
                            progress=progress, desc=f"{split}/{model_name}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous().cpu() for k, v in weights.items()}, out_dir / "model.safetensors",
              metadata={"format": "pt", "weights": "ema"})
    meta = {
        "model": model_name, "split": split, "opir_version": __version__, "architecture": config.to_dict(),
        "settings": cfg, "train_steps": train_config.steps, "n_train": len(data.sample_id),
        "n_parameters": n_params, "train_seconds": result.seconds, "resumed_from_step": result.resumed_from,
        "device": str(device_),
        # how the inputs were made, so predictions with this model can be reproduced from raw spectra
        "dataset_config": read_provenance(samples_h5).get("config"),
        "render": dataclasses.asdict(curve_style_of(waveform_h5)) if waveform_h5 else None,
        **(metadata or {}),
    }
    (out_dir / "model.json").write_text(json.dumps(meta, indent=2, default=str))
    write_curve(result.curve, out_dir / "training_curve.csv")
    return out_dir


def load_abcc(model_dir: str | Path, device: torch.device | str = "cpu") -> tuple[ABCC, dict[str, Any]]:
    """A trained model from its folder (safetensors only)."""
    model_dir = Path(model_dir)
    meta_path = model_dir / "model.json"
    if not meta_path.exists():
        raise DataError(f"{model_dir}: no model.json")
    meta = json.loads(meta_path.read_text())
    model = ABCC(ABCCConfig.from_dict(meta["architecture"]))
    model.load_state_dict(load_file(model_dir / "model.safetensors", device=str(device)))
    return model.to(device).eval(), meta


# --------------------------------------------------------------------------------------------------------------
# Predict
# --------------------------------------------------------------------------------------------------------------
def curve_style_of(waveform_h5: str | Path):
    """The render geometry the waveform images were made with, from the file's ``render_*`` attributes."""
    from opir.render import CurveStyle

    with h5py.File(waveform_h5, "r") as handle:
        attrs = dict(handle.attrs)
    values = {}
    for field in dataclasses.fields(CurveStyle):
        key = f"render_{field.name}"
        if key not in attrs:
            raise DataError(f"{waveform_h5}: missing attribute {key!r}; cannot invert the waveform images")
        values[field.name] = type(field.default)(attrs[key])
    return CurveStyle(**values)


def images_to_spectra(images: np.ndarray, n_points: int, style, background_grey: float) -> tuple[np.ndarray, int]:
    """Alg. 1 inverse of decoded images; an image left without ink by the background threshold is read without
    the threshold (counted and logged, never dropped)."""
    from opir.render import waveform_to_spectrum

    spectra = np.empty((len(images), n_points), dtype=np.float32)
    fallbacks = 0
    for i, image in enumerate(images):
        try:
            spectra[i] = waveform_to_spectrum(image, n_points, style, background=background_grey)
        except DataError:
            fallbacks += 1
            spectra[i] = waveform_to_spectrum(image, n_points, style, background=0.0)
    return spectra, fallbacks


def predict_abcc(
    samples_h5: str | Path, latent_h5: str | Path, mixture_h5: str | Path, splits_json: str | Path,
    waveform_h5: str | Path, split: str, model_dir: str | Path, vae_dir: str | Path, out_h5: str | Path,
    predict_cfg: dict[str, Any], device: str = "auto", attrs: dict[str, Any] | None = None,
) -> dict[str, float]:
    """k = ``predict_cfg['draws']`` predicted spectra per test sample of ``split``, written in the predictions
    format (opir.metrics.write_predictions). Returns timings."""
    from opir.latent import load_vae
    from opir.metrics import write_predictions
    from opir.models.vae import decode_latents

    device_ = resolve_device(device)
    model, meta = load_abcc(model_dir, device_)
    data = load_abcc_data(samples_h5, latent_h5, mixture_h5, load_split_samples(splits_json, split, "test"),
                          meta["settings"])
    vae = load_vae(vae_dir)
    scaling = float(vae.config.scaling_factor)
    style = curve_style_of(waveform_h5)
    with h5py.File(samples_h5, "r") as handle:
        wavenumber = handle["wavenumber_cm1"][()]
    draws, batch = int(predict_cfg["draws"]), int(predict_cfg["batch_size"])
    autocast = autocast_factory(device_, meta["settings"]["train"]["precision"])
    prediction = np.empty((len(data.sample_id), draws, len(wavenumber)), dtype=np.float32)
    t0, fallbacks = time.perf_counter(), 0
    for start in range(0, len(data.sample_id), batch):
        idx = torch.arange(start, min(start + batch, len(data.sample_id)))
        cond = data.condition.index(idx).to(device_)
        for k in range(draws):
            generator = torch.Generator().manual_seed(int(predict_cfg["seed"]) * 1_000_003 + start * draws + k)
            with autocast():
                z = model.sample(cond, generator, euler_steps=int(predict_cfg["euler_steps"]))
            images = decode_latents(vae, z.float() / scaling, batch, device_)
            spectra, bad = images_to_spectra(images, len(wavenumber), style, float(predict_cfg["background_grey"]))
            prediction[start : start + len(idx), k] = spectra
            fallbacks += bad
    seconds = time.perf_counter() - t0
    if fallbacks:
        log.warning("%d of %d decoded images had no ink above the background threshold %s; read without it",
                    fallbacks, prediction.shape[0] * draws, predict_cfg["background_grey"])
    file_attrs = dict(attrs or {})
    file_attrs.update({"draws": draws, "sampler": "euler" if predict_cfg["euler_steps"] else "meanflow_one_step",
                       "images_without_ink_above_background": fallbacks})
    write_predictions(out_h5, data.sample_id, wavenumber, prediction, file_attrs, model=meta["model"])
    log.info("%s: %d samples x %d draws in %.1f s", out_h5, len(data.sample_id), draws, seconds)
    return {"seconds": seconds, "spectra_per_second": prediction.shape[0] * draws / max(seconds, 1e-9)}
