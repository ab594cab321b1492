"""ABCC (core): a conditional MeanFlow generator of waveform-image latents.

u_theta(z_t, r, t | C) = SiT([z_t, initial latent], r, t, c(C)). The backbone's input channels are the target
latent's channels plus the conditioning channels; a second stream (the next issue's Chemical Flow branch) adds
channels or a second backbone without changing this interface, and :meth:`ABCC.loss` returns a dict of terms
that extra losses join.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import torch
from torch import nn

from opir.models.conditioning import Condition, ConditionEncoder
from opir.models.meanflow import MeanFlowConfig, meanflow_loss, sample_euler, sample_one_step
from opir.models.sit import SiT, SiTConfig


@dataclass(frozen=True)
class ABCCConfig:
    latent_channels: int
    latent_size: int
    profile_dim: int
    mixture_dim: int
    hidden_size: int = 768
    depth: int = 12
    num_heads: int = 12
    patch_size: int = 2
    mlp_ratio: float = 4.0
    attention: str = "sdpa"
    meanflow: MeanFlowConfig = field(default_factory=MeanFlowConfig)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> ABCCConfig:
        values = dict(values)
        values["meanflow"] = MeanFlowConfig(**values.get("meanflow", {}))
        return cls(**values)


class ABCC(nn.Module):
    def __init__(self, config: ABCCConfig):
        super().__init__()
        self.config = config
        self.condition_encoder = ConditionEncoder(
            config.latent_channels, config.profile_dim, config.mixture_dim, config.hidden_size
        )
        self.backbone = SiT(
            SiTConfig(
                input_size=config.latent_size,
                patch_size=config.patch_size,
                in_channels=2 * config.latent_channels,
                out_channels=config.latent_channels,
                hidden_size=config.hidden_size,
                depth=config.depth,
                num_heads=config.num_heads,
                mlp_ratio=config.mlp_ratio,
                cond_dim=config.hidden_size,
                attention=config.attention,
            )
        )

    def forward(
        self, z: torch.Tensor, r: torch.Tensor, t: torch.Tensor, cond: Condition, drop: torch.Tensor | None = None
    ) -> torch.Tensor:
        vector, channels = self.condition_encoder(cond, drop)
        return self.backbone(torch.cat([z, channels.to(z.dtype)], dim=1), r, t, vector)

    def u_fn(self, cond: Condition) -> Callable:
        """u(z, r, t, drop) with the condition bound, as :mod:`opir.models.meanflow` expects."""
        return lambda z, r, t, drop: self(z, r, t, cond, drop)

    def loss(
        self,
        x: torch.Tensor,
        cond: Condition,
        generator: torch.Generator,
        autocast: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext,
    ) -> dict[str, torch.Tensor]:
        return meanflow_loss(self.u_fn(cond), x, self.config.meanflow, generator, autocast)

    @torch.no_grad()
    def sample(
        self, cond: Condition, generator: torch.Generator, euler_steps: int = 0
    ) -> torch.Tensor:
        """One draw per condition: one-step MeanFlow, or ``euler_steps`` Euler steps of u(z, t, t) when > 0."""
        shape = (len(cond), self.config.latent_channels, self.config.latent_size, self.config.latent_size)
        device = cond.profile.device
        eps = torch.randn(shape, generator=generator).to(device)
        if euler_steps > 0:
            return sample_euler(self.u_fn(cond), eps, euler_steps)
        return sample_one_step(self.u_fn(cond), eps)
