"""Networks of the neural baselines (docs/method.md, "Neural baselines").

- :class:`LatentSiT`: ABCC's condition encoder and SiT backbone, used without MeanFlow: as a deterministic
  regressor of the target latent (r = t = 0, input = the initial latent) or as the velocity field v(z_t, t | C) of
  plain flow matching (input = [z_t, initial latent], r = t).
- :class:`VoltageGRU`: a recurrent forecaster that reads the voltage profile step by step from v_0, its state
  initialised from s(v_0) and the mixture embedding, and emits s(v_m) - s(v_0) at every step.
- :class:`TrajectoryTransformer`: the velocity field of a flow-matching generator of a whole run's trajectory
  (F frames of s - s(v_0), each frame one token, SiT blocks over time), conditioned per frame on the voltage
  and elapsed time and globally on s(v_0) and the mixture.
"""

from __future__ import annotations

import torch
from torch import nn

from opir.models.conditioning import Condition, ConditionEncoder
from opir.models.sit import FinalLayer, SiT, SiTBlock, SiTConfig, TimestepEmbedder, sincos_pos_embed_1d


def _mlp(in_dim: int, hidden: int, out_dim: int | None = None) -> nn.Sequential:
    return nn.Sequential(nn.Linear(in_dim, hidden), nn.SiLU(), nn.Linear(hidden, out_dim or hidden))


# --------------------------------------------------------------------------------------------------------------
# Same backbone as ABCC, other objectives
# --------------------------------------------------------------------------------------------------------------
class LatentSiT(nn.Module):
    """SiT over latents with ABCC's condition encoder. ``with_noise_input``: the input is [z_t, initial latent]
    (flow matching); otherwise the initial latent alone (regression)."""

    def __init__(self, sit: SiTConfig, latent_channels: int, profile_dim: int, mixture_dim: int,
                 with_noise_input: bool):
        super().__init__()
        self.with_noise_input = with_noise_input
        self.condition_encoder = ConditionEncoder(latent_channels, profile_dim, mixture_dim, sit.hidden_size)
        self.backbone = SiT(sit)

    def forward(self, z: torch.Tensor | None, t: torch.Tensor, cond: Condition) -> torch.Tensor:
        vector, channels = self.condition_encoder(cond)
        x = torch.cat([z, channels], dim=1) if self.with_noise_input else channels
        return self.backbone(x, t, t, vector)

    def regress(self, cond: Condition) -> torch.Tensor:
        """The target latent as the initial latent plus a learned edit (adaLN-Zero: training starts from
        persistence, the baseline any regressor must beat)."""
        zeros = torch.zeros(len(cond), device=cond.profile.device)
        return cond.initial_latent + self(None, zeros, cond)


# --------------------------------------------------------------------------------------------------------------
# Sequence forecaster driven by the voltage profile
# --------------------------------------------------------------------------------------------------------------
class VoltageGRU(nn.Module):
    """(s(v_0), mixture, per-step features of v_0..v_L) -> s(v_m) - s(v_0) for every m <= L. Shapes: initial
    (B, N_f), mixture (B, D), steps (B, L, S) -> (B, L, N_f).

    The recurrence runs over chunks of ``stride`` rows (a chunk's features concatenated), so a run of thousands of
    spectra costs thousands / stride sequential steps on a CPU; row m is read from the state after the chunks
    before its own, plus its own features. So the output at m sees only v_0..v_m (causal; tested); ``stride`` 1 is
    the plain GRU (the state after m - 1 and the features of m)."""

    def __init__(self, n_points: int, mixture_dim: int, step_features: int, hidden: int, layers: int,
                 dropout: float, delta_scale: float, stride: int = 1):
        super().__init__()
        self.layers, self.hidden, self.stride = layers, hidden, stride
        self.spectrum_encoder = _mlp(n_points, hidden)
        self.mixture_encoder = _mlp(mixture_dim, hidden)
        self.initial_state = nn.Linear(2 * hidden, layers * hidden)
        self.gru = nn.GRU(stride * step_features + 2 * hidden, hidden, num_layers=layers, batch_first=True,
                          dropout=dropout if layers > 1 else 0.0)
        self.head = _mlp(3 * hidden + step_features, 2 * hidden, n_points)
        nn.init.zeros_(self.head[-1].weight)  # start at persistence (zero change)
        nn.init.zeros_(self.head[-1].bias)
        # the change is small next to the absorbance: predict it in units of its training spread
        self.register_buffer("delta_scale", torch.tensor(float(delta_scale)))

    def forward(self, initial: torch.Tensor, mixture: torch.Tensor, steps: torch.Tensor) -> torch.Tensor:
        batch, length, _ = steps.shape
        context = torch.cat([self.spectrum_encoder(initial), self.mixture_encoder(mixture)], dim=-1)  # (B, 2H)
        h0 = torch.tanh(self.initial_state(context)).view(-1, self.layers, self.hidden).transpose(0, 1).contiguous()
        padded = nn.functional.pad(steps, (0, 0, 0, (-length) % self.stride))
        chunks = padded.reshape(batch, -1, self.stride * steps.shape[-1])  # (B, C, stride * S)
        states, _ = self.gru(torch.cat([chunks, context[:, None].expand(-1, chunks.shape[1], -1)], dim=-1), h0)
        before = torch.cat([h0[-1][:, None], states[:, :-1]], dim=1)  # state before each chunk (B, C, H)
        before = before.repeat_interleave(self.stride, dim=1)[:, :length]  # (B, L, H)
        features = torch.cat([before, steps, context[:, None].expand(-1, length, -1)], dim=-1)
        return self.delta_scale * self.head(features)


# --------------------------------------------------------------------------------------------------------------
# Whole-trajectory ("video-style") flow matching
# --------------------------------------------------------------------------------------------------------------
class TrajectoryTransformer(nn.Module):
    """x_hat(x_t, t | C), the clean clip, for a noisy clip x_t (B, F, N_f) (x-prediction: see
    :func:`flow_matching_loss`); frame conditions (B, F, P); initial spectrum (B, N_f); mixture
    (B, D); clip features (B, G). Frames are tokens (attention runs over time); the spectral axis is embedded
    linearly, the way latent video generators embed each frame before temporal attention."""

    def __init__(self, n_points: int, frames: int, mixture_dim: int, frame_features: int, clip_features: int,
                 hidden: int, depth: int, num_heads: int, mlp_ratio: float):
        super().__init__()
        if hidden % 2:
            raise ValueError(f"hidden size {hidden} must be even for 1D sin-cos positions")
        self.frame_embedder = nn.Linear(n_points, hidden)
        self.frame_condition = _mlp(frame_features, hidden)
        self.initial_embedder = nn.Linear(n_points, hidden)  # s(v_0) as a per-token input as well
        self.register_buffer("pos_embed", torch.from_numpy(sincos_pos_embed_1d(hidden, frames))[None],
                             persistent=False)
        self.t_embedder = TimestepEmbedder(hidden)
        self.spectrum_encoder = _mlp(n_points, hidden)
        self.mixture_encoder = _mlp(mixture_dim, hidden)
        self.clip_encoder = _mlp(clip_features, hidden)
        self.blocks = nn.ModuleList(SiTBlock(hidden, num_heads, mlp_ratio, False) for _ in range(depth))
        self.final_layer = FinalLayer(hidden, 1, n_points)
        for block in self.blocks:  # adaLN-Zero, as the SiT backbone
            nn.init.zeros_(block.adaLN_modulation[-1].weight)
            nn.init.zeros_(block.adaLN_modulation[-1].bias)
        for layer in (self.final_layer.adaLN_modulation[-1], self.final_layer.linear):
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)

    def forward(self, x: torch.Tensor, t: torch.Tensor, frame_cond: torch.Tensor, initial: torch.Tensor,
                mixture: torch.Tensor, clip: torch.Tensor) -> torch.Tensor:
        tokens = (self.frame_embedder(x) + self.frame_condition(frame_cond)
                  + self.initial_embedder(initial)[:, None] + self.pos_embed[:, : x.shape[1]])  # (B, F, H)
        cond = (self.t_embedder(t) + self.spectrum_encoder(initial) + self.mixture_encoder(mixture)
                + self.clip_encoder(clip))
        for block in self.blocks:
            tokens = block(tokens, cond)
        return self.final_layer(tokens, cond)  # (B, F, N_f)


def logit_normal_times(batch: int, mu: float, sigma: float, generator: torch.Generator) -> torch.Tensor:
    """t ~ sigmoid(N(mu, sigma)) (rectified-flow practice; the same family ABCC's MeanFlow draws from)."""
    return torch.sigmoid(torch.randn(batch, generator=generator) * sigma + mu)


def flow_matching_loss(network_fn, x: torch.Tensor, mu: float, sigma: float, generator: torch.Generator,
                       prediction: str = "velocity") -> dict[str, torch.Tensor]:
    """Conditional flow matching on the path z_t = (1 - t) x + t eps. ``prediction`` "velocity": the network
    regresses v = eps - x (the instantaneous velocity, the r = t case of MeanFlow's identity); "data": it regresses
    x itself (x-prediction, Li & He 2025: a network whose tokens are narrower than its inputs cannot carry the
    noise through, but it can output the clean, low-dimensional data); the velocity is then (z_t - x_hat) / t."""
    t = logit_normal_times(x.shape[0], mu, sigma, generator).to(x.device)
    eps = torch.randn(x.shape, generator=generator).to(device=x.device, dtype=x.dtype)
    t_ = t.view(-1, *[1] * (x.dim() - 1))
    z_t = (1 - t_) * x + t_ * eps
    target = eps - x if prediction == "velocity" else x
    mse = (network_fn(z_t, t).float() - target.float()).pow(2).mean()
    return {"loss": mse, "mse": mse.detach()}


def velocity_from_data_prediction(data_fn, min_t: float = 1e-3):
    """v(z, t) = (z - x_hat(z, t)) / t for a network that predicts the clean data (Euler never evaluates t = 0)."""
    return lambda z, t: (z - data_fn(z, t)) / t.clamp_min(min_t).view(-1, *[1] * (z.dim() - 1))


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())
