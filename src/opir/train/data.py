"""ABCC's training data: targets (latents or difference spectra), the condition (s(v_0), voltage profile, mixture
embedding), optional MCR streams, and the settings built from them."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from opir.core.errors import DataError
from opir.formats.electrodes import electrode_features
from opir.formats.embeddings import read_mixture_embeddings
from opir.formats.images import read_latents, read_sample_latents
from opir.formats.samples import read_sample_arrays, read_spectra
from opir.mcr.streams import read_stream_spectra
from opir.models.abcc import STREAMS, ABCCConfig
from opir.models.conditioning import Condition
from opir.models.meanflow import MeanFlowConfig
from opir.preprocess.profile import profile_features
from opir.training import TrainConfig, data_fingerprint


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
    run_key: np.ndarray | None = None  # (n,) str "system/run" of each sample

    def with_run_codes(self, config: ABCCConfig) -> ABCCData:
        """The same data with each sample's run code index for a model of ``config`` in the condition (none where
        the model has no run codes)."""
        run = config.run_index(self.run_key) if config.run_codes else None
        return dataclasses.replace(self, condition=self.condition.with_run(run))

    def with_context(self, channels: torch.Tensor) -> ABCCData:
        """The same data with the within-run context channels (n, 2, L) after s(v_0) in the initial state
        (:mod:`opir.train.context`)."""
        initial = torch.cat([self.condition.initial_latent, channels.to(self.condition.initial_latent)], dim=1)
        return dataclasses.replace(self, condition=dataclasses.replace(self.condition, initial_latent=initial))

    def with_mixture(self, mixture: torch.Tensor) -> ABCCData:
        """The same data with another mixture embedding per sample (n, D) in the condition."""
        return dataclasses.replace(self, condition=dataclasses.replace(self.condition, mixture=mixture))

    def fingerprint(self) -> str:
        """:func:`opir.training.data_fingerprint` of every tensor a trainer can read from this data."""
        condition = self.condition
        tensors = (self.target, condition.initial_latent, condition.profile, condition.mixture, condition.electrode,
                   condition.run, self.initial_spectrum, self.target_spectrum, self.stream_target)  # fmt: skip
        return data_fingerprint(*(t for t in tensors if t is not None))


def read_stream_changes(streams_h5: str | Path, rows: np.ndarray, initial: np.ndarray, n_rows: int) -> np.ndarray:
    """MCR stream changes elec(v_m) - elec(v_0) and sei(v_m) - sei(v_0) of samples (rows, initial): (n, 2, N_f)."""
    spectra = read_stream_spectra(streams_h5, STREAMS, n_rows)
    changes = np.stack([spectra[name][rows] - spectra[name][initial] for name in STREAMS], axis=1).astype(np.float32)
    if not np.all(np.isfinite(changes)):
        raise DataError(f"{streams_h5}: NaN or inf in the stream changes of the requested samples")
    return changes


def pad_points(spectra: np.ndarray, length: int) -> np.ndarray:
    """(n, N) -> (n, length), the last value repeated (the 1D backbone needs a multiple of its patch size)."""
    return np.pad(spectra, ((0, 0), (0, length - spectra.shape[1])), mode="edge")


def spectral_length(n_points: int, patch: int) -> int:
    return -(-n_points // patch) * patch


def load_abcc_data(
    samples_h5: str | Path, latent_h5: str | Path | None, mixture_h5: str | Path, sample_ids: list[str],
    cfg: dict[str, Any], residual_h5: str | Path | None = None, streams_h5: str | Path | None = None,
    spectrum_scale: float | None = None, electrodes_h5: str | Path | None = None,
) -> ABCCData:
    """Targets and conditions of ``sample_ids`` (in that order).

    ``cfg['space']`` ``latent``: the target is the waveform latent of s(v_m), plus the residual latents of
    ``residual_h5`` as extra channels when given (``chemical_flow``); ``spectrum`` (the 1D variant): the target is
    (s(v_m) - s(v_0)) / ``spectrum_scale`` and the initial state is s(v_0), both padded to the patch size.
    ``electrodes_h5`` (results/dataset/electrodes.h5), when given, puts each sample's electrode descriptors in the
    condition."""
    space = cfg.get("space", "latent")
    mixtures = read_mixture_embeddings(mixture_h5)
    table = read_sample_arrays(samples_h5, ["samples/sample_id", "samples/row", "samples/initial_row",
                                            "samples/system_id", "samples/run_id", "samples/elapsed_s",
                                            "rows/voltage_v", "rows/elapsed_s"])
    rows, initial = table["samples/row"], table["samples/initial_row"]
    systems, elapsed = table["samples/system_id"], table["samples/elapsed_s"]
    voltage, row_time = table["rows/voltage_v"], table["rows/elapsed_s"]
    position = {sample: i for i, sample in enumerate(table["samples/sample_id"])}
    missing = [s for s in sample_ids if s not in position]
    if missing:
        raise DataError(f"{samples_h5}: {len(missing)} sample(s) of the split are missing, e.g. {missing[0]}")
    idx = np.array([position[s] for s in sample_ids], dtype=np.int64)
    used = np.unique(np.concatenate([rows[idx], initial[idx]]))
    block = read_spectra(samples_h5, used)
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
    electrode = None
    if electrodes_h5 is not None:
        features = electrode_features(electrodes_h5)
        unknown = sorted(set(systems[idx]) - set(features))
        if unknown:
            raise DataError(f"{electrodes_h5}: no electrode descriptors for system(s) {', '.join(unknown)}")
        electrode = torch.from_numpy(np.stack([features[s] for s in systems[idx]])).float()
    condition = Condition(
        initial_latent=torch.from_numpy(np.ascontiguousarray(initial_state)).float(),
        profile=torch.from_numpy(profiles).float(),
        mixture=torch.from_numpy(np.stack([mixtures[s] for s in systems[idx]])).float(),
        electrode=electrode,
    )
    streams = None
    if streams_h5 is not None:
        streams = torch.from_numpy(read_stream_changes(streams_h5, rows[idx], initial[idx], len(voltage)))
    run_key = np.array([f"{system}/{run}" for system, run in zip(systems[idx], table["samples/run_id"][idx],
                                                                  strict=True)])
    return ABCCData(np.asarray(sample_ids), torch.from_numpy(np.ascontiguousarray(target)).float(), condition,
                    torch.from_numpy(s_0), torch.from_numpy(s_m), streams, run_key)


def training_mixtures(samples_h5: str | Path, mixture_h5: str | Path, sample_ids: list[str]) -> dict[str, np.ndarray]:
    """system_id -> mixture embedding of each system with a sample among ``sample_ids`` (a split's training samples):
    the mixtures a model trained on those samples has seen (:class:`opir.models.domain.MixtureDomain`)."""
    table = read_sample_arrays(samples_h5, ["samples/sample_id", "samples/system_id"])
    systems = sorted(set(table["samples/system_id"][np.isin(table["samples/sample_id"], list(sample_ids))].tolist()))
    if not systems:
        raise DataError(f"{samples_h5}: none of the {len(sample_ids)} training samples is in the sample table")
    mixtures = read_mixture_embeddings(mixture_h5)
    unknown = [s for s in systems if s not in mixtures]
    if unknown:
        raise DataError(f"{mixture_h5}: no mixture embedding for system(s) {', '.join(unknown)}")
    return {system: mixtures[system] for system in systems}


def fit_spectrum_scale(samples_h5: str | Path, sample_ids: list[str]) -> float:
    """Std of the training difference spectra s(v_m) - s(v_0): unit-variance targets for the 1D variant."""
    table = read_sample_arrays(samples_h5, ["samples/sample_id", "samples/row", "samples/initial_row"])
    position = {sample: i for i, sample in enumerate(table["samples/sample_id"])}
    idx = np.array([position[s] for s in sample_ids if s in position], dtype=np.int64)
    rows, initial = table["samples/row"][idx], table["samples/initial_row"][idx]
    spectra = read_spectra(samples_h5, slice(None))
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
        # s(v_0), then the within-run context's two channels where the settings give it
        layout = dict(latent_channels=0, residual_channels=1,
                      condition_channels=int(data.condition.initial_latent.shape[1]), spatial_dims=1,
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
        electrode_dim=int(data.condition.electrode.shape[1]) if data.condition.electrode is not None else 0,
        scale_mixture=bool(cfg.get("scale_condition", False)),
        objective=cfg.get("objective", "meanflow"),
        profile_readout=int(cfg.get("profile_readout", 0)),
        run_ids=tuple(sorted(set(data.run_key.tolist()))) if int(cfg.get("run_code_dim", 0)) else (),
        run_code_dim=int(cfg.get("run_code_dim", 0)),
        run_context=bool(cfg.get("run_context", False)),
        context_anchor=bool(cfg.get("context_anchor", False)),
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
