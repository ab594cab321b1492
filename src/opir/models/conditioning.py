"""The condition C of ABCC and the neural baselines: s(v_0)'s latent, the voltage profile, the mixture embedding, the
electrode's descriptors (optional), the run's code (optional), and the encoder that maps them to the network's
conditioning vector."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn


@dataclass
class Condition:
    """A batch of conditions. ``initial_latent`` (B, C, h, w) (the spectral variant: the initial spectrum, (B, 1, L));
    ``profile`` (B, L + 2); ``mixture`` (B, D); ``electrode`` (B, E) descriptor features
    (:data:`opir.core.electrodes.FEATURE_NAMES`) or None for a model that does not read them; ``run`` (B,) int64, the
    index of the sample's run among the runs a model learned a code for (0: a run it has never seen), or None: every
    sample from an unseen cell (what ``opir predict`` forecasts)."""

    initial_latent: torch.Tensor
    profile: torch.Tensor
    mixture: torch.Tensor
    electrode: torch.Tensor | None = None
    run: torch.Tensor | None = None

    def index(self, idx: torch.Tensor) -> Condition:
        return Condition(*(None if value is None else value[idx] for value in self._fields()))

    def to(self, device: torch.device | str) -> Condition:
        return Condition(*(None if value is None else value.to(device) for value in self._fields()))

    def with_run(self, run: torch.Tensor | None) -> Condition:
        return Condition(self.initial_latent, self.profile, self.mixture, self.electrode, run)

    def _fields(self) -> tuple[torch.Tensor | None, ...]:
        return self.initial_latent, self.profile, self.mixture, self.electrode, self.run

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
    fallback, 1025-d) has dimensions of very different scales.

    ``n_runs`` > 0 with ``run_code_dim`` > 0 adds a learned code per training run (an auto-decoder's latent code,
    fitted with the network): what the voltage profile and s(v_0) cannot tell, such as one cell's pathway rates. Row 0
    is a run never seen and stays zero, so an unseen cell is conditioned on everything else alone."""

    def __init__(self, latent_channels: int, profile_dim: int, mixture_dim: int, hidden: int, spatial_dims: int = 2,
                 electrode_dim: int = 0, scale_mixture: bool = False, n_runs: int = 0,
                 run_code_dim: int = 0):  # fmt: skip
        super().__init__()
        self.profile_encoder = _mlp(profile_dim, hidden)
        self.mixture_encoder = _mlp(mixture_dim, hidden)
        self.electrode_encoder = _mlp(electrode_dim, hidden) if electrode_dim else None
        self.run_codes = None
        if n_runs and run_code_dim:
            self.run_codes = nn.Embedding(n_runs + 1, run_code_dim, padding_idx=0)
            nn.init.normal_(self.run_codes.weight, std=0.01)
            with torch.no_grad():
                self.run_codes.weight[0].zero_()
            self.run_encoder = nn.Linear(run_code_dim, hidden, bias=False)  # so an unseen run adds exactly 0
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

    def mixture_standardization(self) -> tuple[np.ndarray | None, np.ndarray | None]:
        """The mean and std the encoder standardizes the mixture embedding with (None, None: it reads it raw)."""
        if not self.scale_mixture:
            return None, None
        return self.mixture_mean.detach().cpu().double().numpy(), self.mixture_std.detach().cpu().double().numpy()

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
        if self.run_codes is not None and cond.run is not None:
            vector = vector + self.run_encoder(self.run_codes(cond.run))
        channels = cond.initial_latent
        if drop is not None:
            vector = torch.where(drop[:, None], self.null_embedding.to(vector.dtype).expand_as(vector), vector)
            channels = channels * (~drop).to(channels.dtype).view(-1, *[1] * (channels.dim() - 1))
        return vector, channels
