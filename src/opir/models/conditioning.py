"""The condition C of ABCC and the neural baselines: s(v_0)'s latent, the voltage profile, the mixture embedding, and
the encoder that maps them to the network's conditioning vector."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


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
