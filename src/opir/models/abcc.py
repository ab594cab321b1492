"""ABCC: a conditional MeanFlow generator with an explicit residual stream, dual-flow disentanglement and physics
losses (Ye et al. 2026; our decisions in docs/method.md, "ABCC complete").

The generated state is a stack of channel groups on one grid:
- the waveform stream: VAE latents of the waveform image of s(v_m) (``latent_channels``; 0 in the 1D variant);
- the residual stream (the paper's Chemical Flow, "explicit residual flow"): VAE latents of the variation image
  s(v_m) - s(v_0) (``residual_channels``; 0 "without Chemical Flow"); in the 1D variant, the scaled difference
  spectrum itself on the wavenumber axis.
u_theta(z_t, r, t | C) = SiT([z_t, initial state], r, t, c(C)). With ``two_stream`` the SiT is the dual-flow
transformer (branches F_elec and F_SEI fused by learned per-channel weights), and each branch has a head that
regresses its MCR stream's change from the branch's mean token: that is how the branches are told apart.

:meth:`ABCC.loss` returns the dict of terms: MeanFlow (``loss`` is the weighted total), ``mass`` (Eq. 12),
``peak`` (Eq. 13), ``stream_elec`` and ``stream_sei``, each present only where its weight is > 0. With
``objective: regression`` the same network is trained with MSE from a zero input at the one-step query instead of
MeanFlow (the "Regression (same backbone)" row), with the same physics and stream terms.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from opir.models.conditioning import Condition, ConditionEncoder
from opir.models.meanflow import MeanFlowConfig, draw_noise, meanflow_loss, sample_euler, sample_one_step
from opir.models.physics import PeakTargets, mass_loss, peak_loss
from opir.models.sit import SiT, SiTConfig

#: The two MCR streams, in the order of the dual-flow branches.
STREAMS = ("elec", "sei")
#: Training objectives of the network: the MeanFlow generator, or a deterministic regression of the same network.
OBJECTIVES = ("meanflow", "regression")


@dataclass(frozen=True)
class ABCCConfig:
    latent_channels: int  # waveform-stream channels of the generated state (0: the 1D variant has none)
    latent_size: int  # grid side (2D) or sequence length (1D)
    profile_dim: int
    mixture_dim: int
    hidden_size: int = 768
    depth: int = 12
    num_heads: int = 12
    patch_size: int = 2
    mlp_ratio: float = 4.0
    attention: str = "sdpa"
    meanflow: MeanFlowConfig = field(default_factory=MeanFlowConfig)
    residual_channels: int = 0  # residual (variation) stream channels; 0: "without Chemical Flow"
    condition_channels: int | None = None  # channels of the initial state (None: latent_channels)
    spatial_dims: int = 2
    two_stream: bool = False  # dual flow: branches F_elec and F_SEI
    branch_depth: int = 0  # blocks per branch (two_stream)
    stream_points: int = 0  # length of the MCR stream targets of the branch heads
    electrode_dim: int = 0  # electrode descriptor features in the condition (0: the paper's condition, none)
    scale_mixture: bool = False  # standardize the mixture embedding (ConditionEncoder.fit_mixture_scale)
    # meanflow: the generator; regression: the same network trained with MSE from a zero input (Tables 2 and 3's
    # "Regression (same backbone)" row: only the objective differs)
    objective: str = "meanflow"
    # K > 0: the output also reads K learned features phi of the voltage profile (an MLP), out = base + sum_k phi_k
    # basis_k (opir.models.sit, readout_features): the form of a per-run ridge on profile features, with the basis
    # spectra made by the network from the whole condition (docs/method.md, "The profile read-out")
    profile_readout: int = 0
    # run codes: the training runs ("system/run") a code was learned for, in code order (code i + 1; 0 is an unseen
    # run), and the codes' size (0: none, the paper's condition)
    run_ids: tuple[str, ...] = ()
    run_code_dim: int = 0
    # the 1D variant's initial state also carries the within-run context (opir.train.context): the mean change of
    # the run's other training samples near the sample in time, and its presence flag (zeros: a cell never seen)
    run_context: bool = False
    # with run_context: the flow generates the sample's change less its context (the within-run estimate, zero
    # where absent or dropped), and the sampler adds the context back, so an untrained network starts at the
    # within-run smoother instead of at noise (docs/method.md, "Within-run context")
    context_anchor: bool = False

    def __post_init__(self):
        if self.latent_channels + self.residual_channels < 1:
            raise ValueError("ABCC generates nothing: latent_channels + residual_channels must be >= 1")
        if self.objective not in OBJECTIVES:
            raise ValueError(f"objective {self.objective!r}: one of {', '.join(OBJECTIVES)}")
        if self.run_context and self.spatial_dims != 1:
            raise ValueError("run_context is a setting of the 1D (spectral) variant only")
        if self.context_anchor and not self.run_context:
            raise ValueError("context_anchor needs run_context: the anchor is the within-run context")

    @property
    def state_channels(self) -> int:
        return self.latent_channels + self.residual_channels

    @property
    def initial_channels(self) -> int:
        return self.latent_channels if self.condition_channels is None else self.condition_channels

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> ABCCConfig:
        values = dict(values)
        values["meanflow"] = MeanFlowConfig(**values.get("meanflow", {}))
        values["run_ids"] = tuple(values.get("run_ids", ()))
        return cls(**values)

    @property
    def run_codes(self) -> bool:
        return bool(self.run_ids) and self.run_code_dim > 0

    def run_index(self, run_keys) -> torch.Tensor:
        """The code index of each run key ("system/run"): 0 for a run this model never trained on."""
        position = {run: i + 1 for i, run in enumerate(self.run_ids)}
        return torch.tensor([position.get(str(run), 0) for run in run_keys], dtype=torch.int64)


@dataclass
class PhysicsBatch:
    """What the physics and stream terms need for one batch. ``spectra_fn(state, rows)`` maps a (predicted or true)
    clean state of the batch's ``rows`` to a list of spectra (B, N) (one per read-out path: waveform, s(v_0) +
    residual), differentiably;
    ``stream_target`` (B, 2, stream_points) are the MCR stream changes (scaled), in :data:`STREAMS` order."""

    mass_weight: float = 0.0
    peak_weight: float = 0.0
    stream_weight: float = 0.0
    spectra_fn: Callable[[torch.Tensor], list[torch.Tensor]] | None = None
    peaks: PeakTargets | None = None
    peak_half_window: int = 4
    peak_temperature: float = 0.01
    peak_samples: int = 0  # L_peak on this many samples of the batch (0: all)
    peak_rows: str = "first"  # which: the first rows, or "random" rows drawn each step (then independent of r != t)
    stream_target: torch.Tensor | None = None
    # MeanFlow: the physics and stream terms on this many rows of the batch, drawn each step (0: all). Their clean
    # state costs a forward and backward pass of its own (the regression objective has it for free)
    physics_samples: int = 0

    @property
    def active(self) -> bool:
        return self.mass_weight > 0 or self.peak_weight > 0 or self.stream_weight > 0

    def index_rows(self, rows: torch.Tensor) -> PhysicsBatch:
        """The same terms for the batch rows ``rows`` only (in the order given)."""
        spectra_fn = self.spectra_fn
        return dataclasses.replace(
            self,
            spectra_fn=(lambda state, sub: spectra_fn(state, rows[sub])) if spectra_fn is not None else None,
            peaks=self.peaks.index_rows(rows) if self.peaks is not None else None,
            stream_target=self.stream_target[rows] if self.stream_target is not None else None,
            physics_samples=0,
        )


def _expand(scalar: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return scalar.view(-1, *[1] * (like.dim() - 1))


class ABCC(nn.Module):
    def __init__(self, config: ABCCConfig):
        super().__init__()
        self.config = config
        self.condition_encoder = ConditionEncoder(
            config.initial_channels, config.profile_dim, config.mixture_dim, config.hidden_size, config.spatial_dims,
            config.electrode_dim, config.scale_mixture, len(config.run_ids), config.run_code_dim,
        )
        self.backbone = SiT(
            SiTConfig(
                input_size=config.latent_size,
                patch_size=config.patch_size,
                in_channels=config.state_channels + config.initial_channels,
                out_channels=config.state_channels,
                hidden_size=config.hidden_size,
                depth=config.depth,
                num_heads=config.num_heads,
                mlp_ratio=config.mlp_ratio,
                cond_dim=config.hidden_size,
                attention=config.attention,
                spatial_dims=config.spatial_dims,
                branches=2 if config.two_stream else 1,
                branch_depth=config.branch_depth if config.two_stream else 0,
                time_scale=config.meanflow.time_scale,
                readout_features=config.profile_readout,
            )
        )
        if config.profile_readout:
            self.profile_readout = nn.Sequential(
                nn.Linear(config.profile_dim, config.hidden_size), nn.SiLU(),
                nn.Linear(config.hidden_size, config.profile_readout),
            )
        if config.two_stream:
            if config.stream_points < 1:
                raise ValueError("two_stream needs stream_points >= 1 (the length of the MCR stream targets)")
            self.stream_heads = nn.ModuleList(nn.Linear(config.hidden_size, config.stream_points) for _ in STREAMS)

    def forward(
        self, z: torch.Tensor, r: torch.Tensor, t: torch.Tensor, cond: Condition, drop: torch.Tensor | None = None,
        return_features: bool = False,
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        vector, channels = self.condition_encoder(cond, drop)
        readout = None
        if self.config.profile_readout:
            readout = self.profile_readout(cond.profile.to(self.profile_readout[0].weight.dtype))
            if drop is not None:  # the unconditional model sees no trace of the profile
                readout = readout * (~drop).to(readout.dtype)[:, None]
        return self.backbone(torch.cat([z, channels.to(z.dtype)], dim=1), r, t, vector, return_features, readout)

    def u_fn(self, cond: Condition) -> Callable:
        """u(z, r, t, drop, rows=None) with the condition bound, as :mod:`opir.models.meanflow` expects (``rows``:
        the batch rows that z holds, when only some)."""
        return lambda z, r, t, drop, rows=None: self(z, r, t, cond if rows is None else cond.index(rows), drop)

    def anchor(self, cond: Condition) -> torch.Tensor | float:
        """What the generated state is relative to: the within-run context's change channel (the second last of
        the initial state, scaled like the state; zero where absent or dropped) with ``context_anchor``, else 0."""
        return cond.initial_latent[:, -2:-1].float() if self.config.context_anchor else 0.0

    def streams_from_features(self, features: torch.Tensor) -> torch.Tensor:
        """Branch mean tokens (B, 2, hidden) -> predicted MCR stream changes (B, 2, stream_points)."""
        return torch.stack([head(features[:, i]) for i, head in enumerate(self.stream_heads)], dim=1)

    def _regression_output(
        self, cond: Condition, zero: torch.Tensor,
        autocast: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The regression's clean state and branch features: the one-step sampler's query (r = 0, t = 1) on a zero
        input, so that the network and its read-out are exactly the generator's."""
        ones = torch.ones(zero.shape[0], device=zero.device)
        with autocast():
            u, features = self(zero, torch.zeros_like(ones), ones, cond, None, return_features=True)
        return zero - u.float() + self.anchor(cond), features

    def _regression_terms(
        self, x: torch.Tensor, cond: Condition, autocast: Callable[[], contextlib.AbstractContextManager],
    ) -> tuple[dict[str, torch.Tensor], torch.Tensor, torch.Tensor]:
        x_hat, features = self._regression_output(cond, torch.zeros_like(x), autocast)
        mse = (x_hat - x.float()).pow(2).mean()
        return {"loss": mse, "mse": mse.detach(), "regression": mse.detach()}, x_hat, features

    def loss(
        self,
        x: torch.Tensor,
        cond: Condition,
        generator: torch.Generator,
        autocast: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext,
        physics: PhysicsBatch | None = None,
    ) -> dict[str, torch.Tensor]:
        if self.config.objective == "regression":
            terms, x_hat, features = self._regression_terms(x, cond, autocast)
            if physics is None or not physics.active:
                return terms
        else:
            extras: dict = {}
            terms = meanflow_loss(self.u_fn(cond), x - self.anchor(cond), self.config.meanflow, generator, autocast,
                                  extras)
            terms["meanflow"] = terms["loss"].detach()
            if physics is None or not physics.active:
                return terms
            # The physics terms judge the clean state the model would produce from the same noisy point:
            # x_hat = z_t - t u(z_t, 0, t | C) (plus the anchor), which at t = 1 is exactly the one-step sampler's
            # output.
            z_t, t = extras["z_t"], extras["t"]
            if 0 < physics.physics_samples < len(x):
                subset = torch.randperm(len(x), generator=generator)[: physics.physics_samples].sort().values
                subset = subset.to(x.device)
                x, cond, z_t, t = x[subset], cond.index(subset), z_t[subset], t[subset]
                physics = physics.index_rows(subset)
            with autocast():
                u0, features = self(z_t, torch.zeros_like(t), t, cond, None, return_features=True)
            x_hat = z_t - _expand(t, z_t) * u0.float() + self.anchor(cond)
        total = terms["loss"]
        cfg = self.config
        if physics.mass_weight > 0:
            # the Chemical Flow channels; without them, the waveform channels (their mean change is the same
            # quantity: the initial state cancels in the difference of the means)
            flow = slice(cfg.latent_channels, None) if cfg.residual_channels else slice(0, cfg.latent_channels)
            terms["mass"] = mass_loss(x_hat[:, flow], x[:, flow])
            total = total + physics.mass_weight * terms["mass"]
        if physics.peak_weight > 0:
            if physics.spectra_fn is None or physics.peaks is None:
                raise ValueError("peak_weight > 0 needs spectra_fn and peaks")
            # Decoding is the costly part of a step (four decoder passes per sample in the latent space), so the term is
            # estimated on peak_samples rows. The first rows of a shuffled batch would be unbiased over samples, but
            # with interval_rows "first" they are always the r != t rows: "random" draws its own rows.
            k = min(physics.peak_samples or len(x), len(x))
            if physics.peak_rows == "random" and k < len(x):
                rows = torch.randperm(len(x), generator=generator)[:k].sort().values.to(x.device)
            else:
                rows = torch.arange(k, device=x.device)
            predicted = physics.spectra_fn(x_hat[rows], rows)
            with torch.no_grad():
                target = physics.spectra_fn(x[rows], rows)
            peaks = physics.peaks.index_rows(rows)
            terms["peak"] = sum(
                peak_loss(p, q, peaks, physics.peak_half_window, physics.peak_temperature)
                for p, q in zip(predicted, target, strict=True)
            ) / len(predicted)
            total = total + physics.peak_weight * terms["peak"]
        if cfg.two_stream and physics.stream_weight > 0:
            if physics.stream_target is None:
                raise ValueError("stream_weight > 0 needs the MCR stream targets")
            streams = self.streams_from_features(features.float())
            for i, name in enumerate(STREAMS):
                terms[f"stream_{name}"] = F.mse_loss(streams[:, i], physics.stream_target[:, i])
                total = total + physics.stream_weight * terms[f"stream_{name}"]
        terms["loss"] = total
        return terms

    @torch.no_grad()
    def sample_state(
        self, cond: Condition, generator: torch.Generator, euler_steps: int = 0, shared_noise: bool = False
    ) -> torch.Tensor:
        """One draw of the whole generated state per condition: one-step MeanFlow, or ``euler_steps`` Euler steps
        of u(z, t, t) when > 0. ``shared_noise``: every condition of the batch starts from the same noise."""
        cfg = self.config
        shape = (len(cond), cfg.state_channels) + (cfg.latent_size,) * cfg.spatial_dims
        if cfg.objective == "regression":  # deterministic: every draw is the same prediction
            return self._regression_output(cond, torch.zeros(shape, device=cond.profile.device))[0]
        eps = draw_noise(shape, generator, shared_noise).to(cond.profile.device)
        if euler_steps > 0:
            return sample_euler(self.u_fn(cond), eps, euler_steps) + self.anchor(cond)
        return sample_one_step(self.u_fn(cond), eps) + self.anchor(cond)

    @torch.no_grad()
    def sample(self, cond: Condition, generator: torch.Generator, euler_steps: int = 0) -> torch.Tensor:
        """The waveform-stream latents of one draw per condition (what a waveform-only reader such as ``opir
        predict`` decodes); :meth:`sample_state` gives the residual stream too."""
        state = self.sample_state(cond, generator, euler_steps)
        return state[:, : self.config.latent_channels] if self.config.latent_channels else state
