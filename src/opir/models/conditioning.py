"""The condition C of ABCC: the initial spectrum's latent, the voltage profile and the electrolyte mixture embedding.

The paper names the three ingredients but not how the voltage profile is encoded. Our choice (docs/method.md,
"ABCC core"): the profile v_0..v_m is resampled to a fixed length on a normalized index axis (so runs with
different sampling densities give comparable vectors), and two scalars are appended that the resampling hides:
the current voltage v_m and the elapsed time (log-scaled). Optionally (``exposure_thresholds_v``, on by default) the
physics the resampling blurs is appended too: the running extremes and the time-integrated exposure below SEI onset
potentials, int max(0, U - v) dt, the same features the voltage-regression baseline reads (opir.baselines), so
every model starts from the same knowledge of the profile. A small MLP maps these to the hidden size; the mixture
embedding has its own MLP; the initial latent enters twice: concatenated to z_t as extra channels (spatially
aligned with the target, which is what the model mostly edits) and pooled into the condition vector.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from opir.errors import DataError


def resample_voltage_profile(voltage_v: np.ndarray, length: int) -> np.ndarray:
    """v_0..v_m on ``length`` points equally spaced in the normalized index m'/m in [0, 1]; a profile with a single
    point (m = 0) is constant."""
    voltage_v = np.asarray(voltage_v, dtype=np.float64)
    if voltage_v.ndim != 1 or voltage_v.size == 0:
        raise DataError(f"voltage profile must be a non-empty 1D array, got shape {voltage_v.shape}")
    if not np.all(np.isfinite(voltage_v)):
        raise DataError("voltage profile contains NaN or inf")
    if voltage_v.size == 1:
        return np.full(length, voltage_v[0], dtype=np.float32)
    source = np.linspace(0.0, 1.0, voltage_v.size)
    return np.interp(np.linspace(0.0, 1.0, length), source, voltage_v).astype(np.float32)


def profile_features(
    voltage_v: np.ndarray, elapsed_s: float, length: int, voltage_center_v: float, voltage_scale_v: float,
    time_scale_s: float, time_s: np.ndarray | None = None, exposure_thresholds_v=(),
) -> np.ndarray:
    """One sample's voltage-profile features: the resampled profile, then v_m, then log1p(elapsed / time scale);
    voltages are centred and scaled so that the usual 0-3 V window maps to about [-1, 1].

    With ``exposure_thresholds_v`` (needs ``time_s``, the acquisition time of each profile point in s), then the
    running minimum and maximum (scaled like the voltages), the recovery v_m - min (scaled) and, per threshold U,
    log1p of the exposure int max(0, U - v) dt in V h."""
    profile = (resample_voltage_profile(voltage_v, length) - voltage_center_v) / voltage_scale_v
    last = (float(np.asarray(voltage_v)[-1]) - voltage_center_v) / voltage_scale_v
    if not np.isfinite(elapsed_s) or elapsed_s < 0:
        raise DataError(f"elapsed time must be a finite non-negative number of seconds, got {elapsed_s}")
    elapsed = np.log1p(elapsed_s / time_scale_s)
    parts = [profile, np.array([last, elapsed], dtype=np.float32)]
    if len(exposure_thresholds_v):
        parts.append(exposure_features(voltage_v, time_s, exposure_thresholds_v, voltage_center_v, voltage_scale_v))
    return np.concatenate(parts).astype(np.float32)


def exposure_features(
    voltage_v: np.ndarray, time_s: np.ndarray | None, exposure_thresholds_v, voltage_center_v: float,
    voltage_scale_v: float,
) -> np.ndarray:
    """Running extremes, recovery and log1p(exposure below each threshold, V h) at the last point of the profile."""
    from opir.baselines import run_profile_features

    voltage_v = np.asarray(voltage_v, dtype=np.float64)
    if time_s is None or len(time_s) != len(voltage_v):
        raise DataError("exposure features need the acquisition time of every point of the voltage profile")
    time_s = np.asarray(time_s, dtype=np.float64)
    if not np.all(np.isfinite(time_s)) or np.any(np.diff(time_s) < 0):
        raise DataError("the profile's acquisition times must be finite and non-decreasing")
    last = run_profile_features(voltage_v, time_s, tuple(exposure_thresholds_v))[-1]
    # columns of run_profile_features: v, v_0, min, max, recovery, elapsed_h, exposures...
    extremes = (last[[2, 3]] - voltage_center_v) / voltage_scale_v
    recovery = last[4] / voltage_scale_v
    return np.concatenate([extremes, [recovery], np.log1p(last[6:])]).astype(np.float32)


@dataclass
class Condition:
    """A batch of conditions. ``initial_latent`` (B, C, h, w) (the spectral variant: the initial spectrum, (B, 1, L));
    ``profile`` (B, L + 2); ``mixture`` (B, D)."""

    initial_latent: torch.Tensor
    profile: torch.Tensor
    mixture: torch.Tensor

    def index(self, idx: torch.Tensor) -> Condition:
        return Condition(self.initial_latent[idx], self.profile[idx], self.mixture[idx])

    def to(self, device: torch.device | str) -> Condition:
        return Condition(self.initial_latent.to(device), self.profile.to(device), self.mixture.to(device))

    def __len__(self) -> int:
        return self.profile.shape[0]


def _mlp(in_dim: int, hidden: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(in_dim, hidden), nn.SiLU(), nn.Linear(hidden, hidden))


class ConditionEncoder(nn.Module):
    """C -> (condition vector (B, hidden), extra latent channels (B, C, h, w)).

    Condition dropout (for classifier-free guidance) replaces the vector by a learned null embedding and the
    initial latent by zeros, so the unconditional model sees no trace of the input spectrum."""

    def __init__(self, latent_channels: int, profile_dim: int, mixture_dim: int, hidden: int, spatial_dims: int = 2):
        super().__init__()
        self.profile_encoder = _mlp(profile_dim, hidden)
        self.mixture_encoder = _mlp(mixture_dim, hidden)
        conv, pool = (nn.Conv2d, nn.AdaptiveAvgPool2d) if spatial_dims == 2 else (nn.Conv1d, nn.AdaptiveAvgPool1d)
        self.latent_encoder = nn.Sequential(
            conv(latent_channels, hidden, 3, padding=1), nn.SiLU(), pool(1), nn.Flatten(), nn.Linear(hidden, hidden),
        )
        self.null_embedding = nn.Parameter(torch.zeros(hidden))

    def forward(self, cond: Condition, drop: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        vector = (
            self.profile_encoder(cond.profile)
            + self.mixture_encoder(cond.mixture)
            + self.latent_encoder(cond.initial_latent)
        )
        channels = cond.initial_latent
        if drop is not None:
            vector = torch.where(drop[:, None], self.null_embedding.to(vector.dtype).expand_as(vector), vector)
            channels = channels * (~drop).to(channels.dtype).view(-1, *[1] * (channels.dim() - 1))
        return vector, channels
