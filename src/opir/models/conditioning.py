"""The condition C of ABCC and the neural baselines: s(v_0)'s latent, the voltage profile, the mixture embedding, the
electrode's descriptors (optional), and the encoder that maps them to the network's conditioning vector."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


@dataclass
class Condition:
    """A batch of conditions. ``initial_latent`` (B, C, h, w) (the spectral variant: the initial spectrum, (B, 1, L));
    ``profile`` (B, L + 2); ``mixture`` (B, D); ``electrode`` (B, E) descriptor features
    (:data:`opir.core.electrodes.FEATURE_NAMES`) or None for a model that does not read them."""

    initial_latent: torch.Tensor
    profile: torch.Tensor
    mixture: torch.Tensor
    electrode: torch.Tensor | None = None

    def index(self, idx: torch.Tensor) -> Condition:
        electrode = self.electrode[idx] if self.electrode is not None else None
        return Condition(self.initial_latent[idx], self.profile[idx], self.mixture[idx], electrode)

    def to(self, device: torch.device | str) -> Condition:
        electrode = self.electrode.to(device) if self.electrode is not None else None
        return Condition(self.initial_latent.to(device), self.profile.to(device), self.mixture.to(device), electrode)

    def __len__(self) -> int:
        return self.profile.shape[0]


def _mlp(in_dim: int, hidden: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(in_dim, hidden), nn.SiLU(), nn.Linear(hidden, hidden))


class ConditionEncoder(nn.Module):
    """C -> (condition vector (B, hidden), extra latent channels (B, C, h, w)).

    Condition dropout (for classifier-free guidance) replaces the vector by a learned null embedding and the
    initial latent by zeros, so the unconditional model sees no trace of the input spectrum.

    ``electrode_dim`` > 0 adds an encoder of the electrode descriptors. ``scale_mixture`` standardizes the mixture
    embedding with a mean and std per dimension fitted on the training conditions (:meth:`fit_mixture_scale`), kept
    as buffers in the weights so every reader of the model applies them: the raw embedding (UniMol or its 3D
    fallback, 1025-d) has dimensions of very different scales."""

    def __init__(self, latent_channels: int, profile_dim: int, mixture_dim: int, hidden: int, spatial_dims: int = 2,
                 electrode_dim: int = 0, scale_mixture: bool = False):  # fmt: skip
        super().__init__()
        self.profile_encoder = _mlp(profile_dim, hidden)
        self.mixture_encoder = _mlp(mixture_dim, hidden)
        self.electrode_encoder = _mlp(electrode_dim, hidden) if electrode_dim else None
        self.scale_mixture = scale_mixture
        if scale_mixture:
            self.register_buffer("mixture_mean", torch.zeros(mixture_dim))
            self.register_buffer("mixture_std", torch.ones(mixture_dim))
        conv, pool = (nn.Conv2d, nn.AdaptiveAvgPool2d) if spatial_dims == 2 else (nn.Conv1d, nn.AdaptiveAvgPool1d)
        self.latent_encoder = nn.Sequential(
            conv(latent_channels, hidden, 3, padding=1), nn.SiLU(), pool(1), nn.Flatten(), nn.Linear(hidden, hidden),
        )
        self.null_embedding = nn.Parameter(torch.zeros(hidden))

    @torch.no_grad()
    def fit_mixture_scale(self, mixtures: torch.Tensor) -> None:
        """Mean and std per dimension of the training conditions' mixture embeddings (a constant dimension keeps
        std 1, so it stays constant rather than blowing up)."""
        std = mixtures.float().std(dim=0, unbiased=False)
        self.mixture_mean.copy_(mixtures.float().mean(dim=0))
        self.mixture_std.copy_(torch.where(std > 1e-8, std, torch.ones_like(std)))

    def forward(self, cond: Condition, drop: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        mixture = (cond.mixture - self.mixture_mean) / self.mixture_std if self.scale_mixture else cond.mixture
        vector = (
            self.profile_encoder(cond.profile)
            + self.mixture_encoder(mixture)
            + self.latent_encoder(cond.initial_latent)
        )
        if self.electrode_encoder is not None:
            if cond.electrode is None:
                raise ValueError("this model reads the electrode descriptors, but the condition has none")
            vector = vector + self.electrode_encoder(cond.electrode)
        channels = cond.initial_latent
        if drop is not None:
            vector = torch.where(drop[:, None], self.null_embedding.to(vector.dtype).expand_as(vector), vector)
            channels = channels * (~drop).to(channels.dtype).view(-1, *[1] * (channels.dim() - 1))
        return vector, channels
