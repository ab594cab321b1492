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
from collections.abc import Callable
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
from opir.render import read_style
from opir.train import TrainConfig, autocast_factory, batch_indices, data_fingerprint, train, write_curve

log = logging.getLogger(__name__)


# --------------------------------------------------------------------------------------------------------------
# Data
# --------------------------------------------------------------------------------------------------------------
@dataclass
class ABCCData:
    sample_id: np.ndarray  # (n,) str
    target: torch.Tensor  # (n, C_state, h, w) scaled latents (1D variant: (n, 1, L) scaled difference spectra)
    condition: Condition
    initial_spectrum: torch.Tensor | None = None  # (n, N_f) s(v_0)
    target_spectrum: torch.Tensor | None = None  # (n, N_f) s(v_m)
    stream_target: torch.Tensor | None = None  # (n, 2, N_f) MCR stream changes, elec then sei (unscaled)

    def fingerprint(self) -> str:
        """:func:`opir.train.data_fingerprint` of every tensor a trainer can read from this data."""
        tensors = (self.target, self.condition.initial_latent, self.condition.profile, self.condition.mixture,
                   self.initial_spectrum, self.target_spectrum, self.stream_target)  # fmt: skip
        return data_fingerprint(*(t for t in tensors if t is not None))


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


def read_stream_changes(streams_h5: str | Path, rows: np.ndarray, initial: np.ndarray, n_rows: int) -> np.ndarray:
    """MCR stream changes elec(v_m) - elec(v_0) and sei(v_m) - sei(v_0) of samples (rows, initial): (n, 2, N_f)."""
    from opir.models.abcc import STREAMS

    out = []
    with h5py.File(streams_h5, "r") as handle:
        for name in STREAMS:
            key = f"{name}/{name}"
            if key not in handle:
                raise DataError(f"{streams_h5}: missing dataset {key!r} (docs/formats.md, MCR streams)")
            stream = handle[key][()]
            if len(stream) != n_rows:
                raise DataError(f"{streams_h5}: {key} has {len(stream)} rows, samples.h5 has {n_rows}")
            out.append(stream[rows] - stream[initial])
    changes = np.stack(out, axis=1).astype(np.float32)
    if not np.all(np.isfinite(changes)):
        raise DataError(f"{streams_h5}: NaN or inf in the stream changes of the requested samples")
    return changes


def read_sample_latents(latent_h5: str | Path, sample_ids: list[str]) -> np.ndarray:
    """Latents of a per-sample image stream (variation, chemical_flow) in the order of ``sample_ids``."""
    from opir.latent import read_latents

    latents, _ = read_latents(latent_h5)
    with h5py.File(latent_h5, "r") as handle:
        if "latent/sample_id" not in handle:
            raise DataError(f"{latent_h5}: no latent/sample_id; not the latents of a per-sample image stream")
        ids = read_strings(handle["latent/sample_id"])
    position = {sample: i for i, sample in enumerate(ids)}
    missing = [s for s in sample_ids if s not in position]
    if missing:
        raise DataError(f"{latent_h5}: no latent for {len(missing)} sample(s), e.g. {missing[0]}")
    return latents[[position[s] for s in sample_ids]]


def pad_points(spectra: np.ndarray, length: int) -> np.ndarray:
    """(n, N) -> (n, length), the last value repeated (the 1D backbone needs a multiple of its patch size)."""
    return np.pad(spectra, ((0, 0), (0, length - spectra.shape[1])), mode="edge")


def spectral_length(n_points: int, patch: int) -> int:
    return -(-n_points // patch) * patch


def load_abcc_data(
    samples_h5: str | Path, latent_h5: str | Path | None, mixture_h5: str | Path, sample_ids: list[str],
    cfg: dict[str, Any], residual_h5: str | Path | None = None, streams_h5: str | Path | None = None,
    spectrum_scale: float | None = None,
) -> ABCCData:
    """Targets and conditions of ``sample_ids`` (in that order).

    ``cfg['space']`` ``latent``: the target is the waveform latent of s(v_m), plus the residual latents of
    ``residual_h5`` as extra channels when given (``chemical_flow``); ``spectrum`` (the 1D variant): the target is
    (s(v_m) - s(v_0)) / ``spectrum_scale`` and the initial state is s(v_0), both padded to the patch size."""
    space = cfg.get("space", "latent")
    mixtures = read_mixtures(mixture_h5)
    with h5py.File(samples_h5, "r") as handle:
        group = handle["samples"]
        all_ids = read_strings(group["sample_id"])
        rows, initial = group["row"][()], group["initial_row"][()]
        systems = read_strings(group["system_id"])
        elapsed = group["elapsed_s"][()]
        voltage = handle["rows/voltage_v"][()]
        row_time = handle["rows/elapsed_s"][()]
        spectra = handle["spectra/absorbance"]
        position = {sample: i for i, sample in enumerate(all_ids)}
        missing = [s for s in sample_ids if s not in position]
        if missing:
            raise DataError(f"{samples_h5}: {len(missing)} sample(s) of the split are missing, e.g. {missing[0]}")
        idx = np.array([position[s] for s in sample_ids], dtype=np.int64)
        used = np.unique(np.concatenate([rows[idx], initial[idx]]))
        block = spectra[used] if len(used) else np.zeros((0, spectra.shape[1]), np.float32)
    lookup = {row: i for i, row in enumerate(used)}
    s_m = block[[lookup[r] for r in rows[idx]]].astype(np.float32)
    s_0 = block[[lookup[r] for r in initial[idx]]].astype(np.float32)
    unknown = sorted(set(systems[idx]) - set(mixtures))
    if unknown:
        raise DataError(f"{mixture_h5}: no mixture embedding for system(s) {', '.join(unknown)}")
    profiles = np.stack([
        profile_features(voltage[initial[i] : rows[i] + 1], float(elapsed[i]), int(cfg["profile_length"]),
                         float(cfg["voltage_center_v"]), float(cfg["voltage_scale_v"]), float(cfg["time_scale_s"]),
                         row_time[initial[i] : rows[i] + 1], cfg.get("exposure_thresholds_v") or ())
        for i in idx
    ])
    if space == "latent":
        from opir.latent import read_latents

        latents, _ = read_latents(latent_h5)
        if len(voltage) != len(latents):
            raise DataError(f"{latent_h5} has {len(latents)} latents but {samples_h5} has {len(voltage)} rows")
        target = latents[rows[idx]]
        if residual_h5 is not None:
            target = np.concatenate([target, read_sample_latents(residual_h5, list(sample_ids))], axis=1)
        initial_state = latents[initial[idx]]
    elif space == "spectrum":
        if spectrum_scale is None:
            raise DataError("the spectral variant needs the scale of the difference spectra (fitted on training)")
        length = spectral_length(s_m.shape[1], int(cfg["spectral_patch_size"]))
        target = pad_points((s_m - s_0) / spectrum_scale, length)[:, None]
        initial_state = pad_points(s_0, length)[:, None]
    else:
        raise DataError(f"models: unknown space {space!r} (latent or spectrum)")
    condition = Condition(
        initial_latent=torch.from_numpy(np.ascontiguousarray(initial_state)).float(),
        profile=torch.from_numpy(profiles).float(),
        mixture=torch.from_numpy(np.stack([mixtures[s] for s in systems[idx]])).float(),
    )
    streams = None
    if streams_h5 is not None:
        streams = torch.from_numpy(read_stream_changes(streams_h5, rows[idx], initial[idx], len(voltage)))
    return ABCCData(np.asarray(sample_ids), torch.from_numpy(np.ascontiguousarray(target)).float(), condition,
                    torch.from_numpy(s_0), torch.from_numpy(s_m), streams)


def fit_spectrum_scale(samples_h5: str | Path, sample_ids: list[str]) -> float:
    """Std of the training difference spectra s(v_m) - s(v_0): unit-variance targets for the 1D variant."""
    with h5py.File(samples_h5, "r") as handle:
        all_ids = read_strings(handle["samples/sample_id"])
        position = {sample: i for i, sample in enumerate(all_ids)}
        idx = np.array([position[s] for s in sample_ids if s in position], dtype=np.int64)
        rows, initial = handle["samples/row"][()][idx], handle["samples/initial_row"][()][idx]
        spectra = handle["spectra/absorbance"][()]
    scale = float(np.std(spectra[rows] - spectra[initial]))
    if not np.isfinite(scale) or scale <= 0:
        raise DataError(f"{samples_h5}: the training spectra do not change (std of s(v_m) - s(v_0) is {scale})")
    return scale


def abcc_config_for(cfg: dict[str, Any], data: ABCCData) -> ABCCConfig:
    target = data.target
    space = cfg.get("space", "latent")
    two_stream = bool(cfg.get("two_stream", False))
    if space == "latent":
        if target.shape[-1] != target.shape[-2]:
            raise DataError(f"latents must be square, got {tuple(target.shape[1:])}")
        waveform = data.condition.initial_latent.shape[1]
        layout = dict(latent_channels=waveform, residual_channels=target.shape[1] - waveform, spatial_dims=2,
                      patch_size=int(cfg["patch_size"]))
    else:
        layout = dict(latent_channels=0, residual_channels=1, condition_channels=1, spatial_dims=1,
                      patch_size=int(cfg["spectral_patch_size"]))
    stream_points = int(data.stream_target.shape[-1]) if two_stream and data.stream_target is not None else 0
    if two_stream and not stream_points:
        raise DataError("models: two_stream needs the MCR streams (results/mcr/streams.h5)")
    return ABCCConfig(
        latent_size=target.shape[-1],
        profile_dim=data.condition.profile.shape[1],
        mixture_dim=data.condition.mixture.shape[1],
        hidden_size=int(cfg["hidden_size"]),
        depth=int(cfg["depth"]),
        num_heads=int(cfg["num_heads"]),
        mlp_ratio=float(cfg["mlp_ratio"]),
        attention=cfg["attention"],
        meanflow=MeanFlowConfig(**cfg["meanflow"]),
        two_stream=two_stream,
        branch_depth=min(int(cfg.get("branch_depth", 1)), int(cfg["depth"])) if two_stream else 0,
        stream_points=stream_points,
        **layout,
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
# Read-out: generated state -> spectra
# --------------------------------------------------------------------------------------------------------------
@dataclass
class Readout:
    """How a generated state becomes spectra: the model's space, the VAE and styles (latent space), the scale
    (spectral variant) and the fusion weight of the waveform path per wavenumber (the residual path gets 1 - w)."""

    space: str
    n_points: int
    latent_channels: int = 0
    residual_channels: int = 0
    vae: Any = None
    scaling: float = 1.0
    style: Any = None
    residual_style: Any = None
    background_grey: float = 0.0
    spectrum_scale: float = 1.0
    fusion_weight: np.ndarray | None = None

    def paths(self, state: torch.Tensor, initial_spectrum: np.ndarray, device) -> tuple[list[np.ndarray], int]:
        """Spectra (n, N_f) of each read-out path (waveform; s(v_0) + residual), and the count of decoded images
        read without the background threshold."""
        from opir.models.vae import decode_latents

        if self.space == "spectrum":
            diff = state[:, 0, : self.n_points].float().cpu().numpy() * self.spectrum_scale
            return [initial_spectrum + diff], 0
        out, fallbacks = [], 0
        groups = [(slice(0, self.latent_channels), self.style, None)]
        if self.residual_channels:
            groups.append((slice(self.latent_channels, None), self.residual_style, initial_spectrum))
        for channels, style, base in groups:
            images = decode_latents(self.vae, state[:, channels].float() / self.scaling, len(state), device)
            spectra, bad = images_to_spectra(images, self.n_points, style, self.background_grey)
            out.append(spectra if base is None else base + spectra)
            fallbacks += bad
        return out, fallbacks

    def fuse(self, paths: list[np.ndarray]) -> np.ndarray:
        if len(paths) == 1:
            return paths[0]
        w = self.fusion_weight if self.fusion_weight is not None else np.full(self.n_points, 0.5, np.float32)
        return (w * paths[0] + (1 - w) * paths[1]).astype(np.float32)


def fit_fusion_weight(waveform: np.ndarray, residual: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Per wavenumber, the w in [0, 1] minimizing sum_i (w a_i + (1 - w) b_i - y_i)^2 over training samples
    (closed form: w = sum (y - b)(a - b) / sum (a - b)^2); 0.5 where the two paths agree everywhere."""
    diff = waveform - residual
    denom = (diff**2).sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        w = ((target - residual) * diff).sum(axis=0) / denom
    return np.clip(np.where(denom > 1e-12, w, 0.5), 0.0, 1.0).astype(np.float32)


def _soft_spectra_fn(readout: Readout, device) -> Callable:
    """Differentiable counterpart of :meth:`Readout.paths` for the training losses: spectra_fn(state, s0)."""
    from opir.models.physics import SoftReadout, decode_to_grey

    if readout.space == "spectrum":
        return lambda state, s0: [s0 + state[:, 0, : readout.n_points] * readout.spectrum_scale]
    soft = SoftReadout(readout.style, readout.n_points, readout.background_grey).to(device)
    soft_residual = (SoftReadout(readout.residual_style, readout.n_points, readout.background_grey).to(device)
                     if readout.residual_channels else None)
    c = readout.latent_channels

    def spectra_fn(state: torch.Tensor, s0: torch.Tensor) -> list[torch.Tensor]:
        out = [soft(decode_to_grey(readout.vae, state[:, :c] / readout.scaling))]
        if soft_residual is not None:
            out.append(s0 + soft_residual(decode_to_grey(readout.vae, state[:, c:] / readout.scaling)))
        return out

    return spectra_fn


# --------------------------------------------------------------------------------------------------------------
# Train
# --------------------------------------------------------------------------------------------------------------
#: Settings without a ``losses`` section train the ABCC core: MeanFlow alone.
NO_PHYSICS_LOSSES = {"mass_weight": 0.0, "peak_weight": 0.0, "stream_weight": 0.0, "peak_prominence": 0.02,
                     "peak_max_peaks": 8, "peak_half_window_points": 4, "peak_temperature": 0.01, "peak_samples": 0}


def train_abcc(
    samples_h5: str | Path, latent_h5: str | Path | None, mixture_h5: str | Path, splits_json: str | Path, split: str,
    model_name: str, cfg: dict[str, Any], out_dir: str | Path, checkpoint_dir: str | Path, device: str = "auto",
    waveform_h5: str | Path | None = None, metadata: dict[str, Any] | None = None, progress: bool = True,
    residual_h5: str | Path | None = None, streams_h5: str | Path | None = None, vae_dir: str | Path | None = None,
    variation_h5: str | Path | None = None,
) -> Path:
    """Train one ABCC model on the training samples of ``split``; write model.safetensors (EMA weights),
    model.json and training_curve.csv to ``out_dir``.

    ``residual_h5`` (latents of the variation images) adds the residual stream, ``streams_h5`` (MCR) the stream
    targets of the dual flow, ``vae_dir`` the decoder the peak loss and the fusion fit read spectra through,
    ``variation_h5`` the style of the variation images; each is needed only where the settings use it."""
    from opir.models.abcc import PhysicsBatch
    from opir.models.physics import detect_peaks

    device_ = resolve_device(device)
    space, losses = cfg.get("space", "latent"), {**NO_PHYSICS_LOSSES, **cfg.get("losses", {})}
    train_ids = load_split_samples(splits_json, split, "train")
    spectrum_scale = fit_spectrum_scale(samples_h5, train_ids) if space == "spectrum" else None
    use_residual = space == "latent" and bool(cfg.get("chemical_flow"))
    two_stream = bool(cfg.get("two_stream"))
    for flag, path, what in ((use_residual, residual_h5, "the variation latents (chemical_flow)"),
                             (two_stream, streams_h5, "the MCR streams (two_stream)")):
        if flag and path is None:
            raise DataError(f"{split}/{model_name}: settings need {what}, but no file was given")
    data = load_abcc_data(samples_h5, latent_h5, mixture_h5, train_ids, cfg,
                          residual_h5=residual_h5 if use_residual else None,
                          streams_h5=streams_h5 if two_stream else None, spectrum_scale=spectrum_scale)
    config = abcc_config_for(cfg, data)
    train_config = train_config_for(cfg["train"], len(data.sample_id))
    torch.manual_seed(train_config.seed)  # the initial weights
    model = ABCC(config)
    n_params = sum(p.numel() for p in model.parameters())
    log.info("%s/%s: %d training samples, state %s (%s space, residual stream %s, two streams %s), %.2f M "
             "parameters, %d steps on %s", split, model_name, len(data.sample_id), tuple(data.target.shape[1:]),
             space, use_residual, two_stream, n_params / 1e6, train_config.steps, device_)

    readout = _readout_for(space, config, data.initial_spectrum.shape[1], cfg, vae_dir, waveform_h5, variation_h5,
                           spectrum_scale, device_)
    weights = dict(mass=float(losses["mass_weight"]), peak=float(losses["peak_weight"]),
                   stream=float(losses["stream_weight"]) if two_stream else 0.0)
    spectra_fn = _soft_spectra_fn(readout, device_) if weights["peak"] > 0 else None
    peaks = (detect_peaks(data.target_spectrum.numpy(), float(losses["peak_prominence"]),
                          int(losses["peak_max_peaks"])).to(device_) if weights["peak"] > 0 else None)
    stream_scale = None
    if data.stream_target is not None:
        stream_scale = data.stream_target.std(dim=(0, 2), keepdim=True).clamp_min(1e-6)
        stream_target = (data.stream_target / stream_scale).to(device_)
    target, condition = data.target.to(device_), data.condition.to(device_)
    initial_spectrum = data.initial_spectrum.to(device_)

    def loss_fn(step, generator, autocast):
        idx = batch_indices(len(target), train_config.batch_size, step, train_config.seed).to(device_)
        s0 = initial_spectrum[idx]
        physics = PhysicsBatch(
            mass_weight=weights["mass"], peak_weight=weights["peak"], stream_weight=weights["stream"],
            spectra_fn=(lambda state: spectra_fn(state, s0[: len(state)])) if spectra_fn else None,
            peaks=peaks.index_rows(idx) if peaks is not None else None,
            peak_half_window=int(losses["peak_half_window_points"]),
            peak_temperature=float(losses["peak_temperature"]),
            peak_samples=int(losses["peak_samples"]),
            stream_target=stream_target[idx] if stream_scale is not None else None,
        )
        return model.loss(target[idx], condition.index(idx), generator, autocast, physics)

    fingerprint = data.fingerprint()
    ema, result = train(model, loss_fn, train_config, checkpoint_dir, device_, run_settings=cfg,
                        progress=progress, desc=f"{split}/{model_name}", data=fingerprint)
    fusion = None
    if use_residual:
        model.load_state_dict(ema)
        fusion = _fit_fusion(model, data, readout, cfg, device_)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous().cpu() for k, v in ema.items()}, out_dir / "model.safetensors",
              metadata={"format": "pt", "weights": "ema"})
    meta = {
        "model": model_name, "split": split, "opir_version": __version__, "architecture": config.to_dict(),
        "settings": cfg, "train_steps": train_config.steps, "n_train": len(data.sample_id),
        "n_parameters": n_params, "train_seconds": result.seconds, "resumed_from_step": result.resumed_from,
        "training_data_sha256": fingerprint,
        "device": str(device_), "space": space, "n_points": int(data.initial_spectrum.shape[1]),
        "spectrum_scale": spectrum_scale,
        "stream_scale": stream_scale.flatten().tolist() if stream_scale is not None else None,
        "fusion": fusion,
        # how the inputs were made, so predictions with this model can be reproduced from raw spectra
        "dataset_config": read_provenance(samples_h5).get("config"),
        "render": dataclasses.asdict(read_style(waveform_h5)) if waveform_h5 else None,
        "render_variation": dataclasses.asdict(read_style(variation_h5)) if variation_h5 and use_residual
        else None,
        **(metadata or {}),
    }
    (out_dir / "model.json").write_text(json.dumps(meta, indent=2, default=str))
    write_curve(result.curve, out_dir / "training_curve.csv")
    return out_dir


def _readout_for(space, config: ABCCConfig, n_points: int, cfg, vae_dir, waveform_h5, variation_h5, spectrum_scale,
                 device, styles: tuple | None = None, decode: bool = False) -> Readout:
    """The read-out of a model; the VAE is loaded where something decodes: always at prediction (``decode``), in
    training for the peak loss and the fusion fit."""
    background = float(cfg["predict"]["background_grey"])
    if space == "spectrum":
        return Readout("spectrum", n_points, spectrum_scale=float(spectrum_scale))
    if not (decode or config.residual_channels > 0 or float(cfg.get("losses", {}).get("peak_weight", 0)) > 0):
        return Readout("latent", n_points, config.latent_channels, 0)
    if vae_dir is None or waveform_h5 is None and styles is None:
        raise DataError("the peak loss and the residual stream need the VAE and the waveform render geometry")
    from opir.latent import load_vae

    vae = load_vae(vae_dir).to(device)
    vae.requires_grad_(False)
    if styles is None:
        if config.residual_channels and variation_h5 is None:
            raise DataError("the residual stream needs the variation images' render geometry (variation.h5)")
        styles = (read_style(waveform_h5), read_style(variation_h5) if config.residual_channels else None)
    return Readout("latent", n_points, config.latent_channels, config.residual_channels, vae,
                   float(vae.config.scaling_factor), styles[0], styles[1], background)


@torch.no_grad()
def _fit_fusion(model: ABCC, data: ABCCData, readout: Readout, cfg: dict[str, Any], device) -> dict[str, Any]:
    """Fusion weights of the waveform and the residual read-out, fitted on one-step samples of (a seeded subset
    of) the training samples: the model's own errors decide which path to trust at each wavenumber."""
    model.eval()
    n = len(data.sample_id)
    count = min(n, int(cfg.get("fusion_fit_samples", 256)))
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
    samples_h5: str | Path, latent_h5: str | Path | None, mixture_h5: str | Path, splits_json: str | Path,
    waveform_h5: str | Path | None, split: str, model_dir: str | Path, vae_dir: str | Path | None, out_h5: str | Path,
    predict_cfg: dict[str, Any], device: str = "auto", attrs: dict[str, Any] | None = None,
) -> dict[str, float]:
    """k = ``predict_cfg['draws']`` predicted spectra per test sample of ``split``, written in the predictions
    format (opir.metrics.write_predictions): one-step samples of the whole state, read out through each path
    (waveform image; s(v_0) + variation image; the spectral variant's difference) and fused. Returns timings."""
    from opir.metrics import write_predictions
    from opir.render import CurveStyle

    device_ = resolve_device(device)
    model, meta = load_abcc(model_dir, device_)
    settings, space = meta["settings"], meta.get("space", "latent")
    data = load_abcc_data(samples_h5, latent_h5, mixture_h5, load_split_samples(splits_json, split, "test"),
                          settings, spectrum_scale=meta.get("spectrum_scale"))
    config = model.config
    styles = None
    if space == "latent":
        styles = (CurveStyle(**meta["render"]) if meta.get("render") else read_style(waveform_h5),
                  CurveStyle(**meta["render_variation"]) if meta.get("render_variation") else None)
    readout = _readout_for(space, config, data.initial_spectrum.shape[1], {**settings, "predict": predict_cfg},
                           vae_dir, waveform_h5, None, meta.get("spectrum_scale"), device_, styles, decode=True)
    if meta.get("fusion"):
        readout.fusion_weight = np.asarray(meta["fusion"]["waveform_weight"], dtype=np.float32)
    with h5py.File(samples_h5, "r") as handle:
        wavenumber = handle["wavenumber_cm1"][()]
    draws, batch = int(predict_cfg["draws"]), int(predict_cfg["batch_size"])
    autocast = autocast_factory(device_, settings["train"]["precision"])
    prediction = np.empty((len(data.sample_id), draws, len(wavenumber)), dtype=np.float32)
    t0, fallbacks = time.perf_counter(), 0
    for start in range(0, len(data.sample_id), batch):
        idx = torch.arange(start, min(start + batch, len(data.sample_id)))
        cond = data.condition.index(idx).to(device_)
        s0 = data.initial_spectrum[idx].numpy()
        for k in range(draws):
            generator = torch.Generator().manual_seed(int(predict_cfg["seed"]) * 1_000_003 + start * draws + k)
            with autocast():
                state = model.sample_state(cond, generator, euler_steps=int(predict_cfg["euler_steps"]))
            paths, bad = readout.paths(state, s0, device_)
            prediction[start : start + len(idx), k] = readout.fuse(paths)
            fallbacks += bad
    seconds = time.perf_counter() - t0
    if fallbacks:
        log.warning("%d decoded images had no ink above the background threshold %s; read without it",
                    fallbacks, predict_cfg["background_grey"])
    file_attrs = dict(attrs or {})
    file_attrs.update({"draws": draws, "sampler": "euler" if predict_cfg["euler_steps"] else "meanflow_one_step",
                       "images_without_ink_above_background": fallbacks, "space": space,
                       "residual_stream": bool(config.residual_channels), "two_stream": bool(config.two_stream)})
    write_predictions(out_h5, data.sample_id, wavenumber, prediction, file_attrs, model=meta["model"])
    log.info("%s: %d samples x %d draws in %.1f s", out_h5, len(data.sample_id), draws, seconds)
    return {"seconds": seconds, "spectra_per_second": prediction.shape[0] * draws / max(seconds, 1e-9)}
