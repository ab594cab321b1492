"""SiT-style transformer backbone for the average velocity u(z_t, r, t | C) (after DiT / SiT, Peebles & Xie 2023;
Ma et al. 2024), written for MeanFlow.

What differs from a class-conditional SiT:
- two time embedders, one for t and one for the interval t - r; their sum plus the condition vector drives the
  adaLN modulation of every block (MeanFlow, Geng et al. 2025, "(t, t - r)" positional variant);
- the condition is a vector (built by :mod:`opir.models.conditioning`), and extra latent channels (the initial
  spectrum's latent; later a second stream) are concatenated to z_t along the channel axis, so the input has
  ``in_channels`` and the output ``out_channels`` channels;
- attention is either ``F.scaled_dot_product_attention`` (fast; under the JVP the caller selects the MATH
  backend, because fused kernels have no forward-mode AD) or written out explicitly (works everywhere).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class SiTConfig:
    input_size: int = 32  # latent height = width
    patch_size: int = 2
    in_channels: int = 8  # z_t channels + conditioning channels
    out_channels: int = 4
    hidden_size: int = 768
    depth: int = 12
    num_heads: int = 12
    mlp_ratio: float = 4.0
    cond_dim: int = 768
    attention: str = "sdpa"  # "sdpa" or "explicit"
    spatial_dims: int = 2  # 2: latent images (input_size x input_size); 1: sequences of input_size points
    branches: int = 1  # 2: dual flow, two branches (F_elec, F_SEI) after a shared trunk, fused by learned weights
    branch_depth: int = 0  # blocks of each branch (the trunk has depth - branch_depth); used when branches > 1
    time_scale: float = 1000.0  # factor on t and t - r before their sinusoidal embedding (timestep_frequencies)
    # K > 0: a linear read-out of K profile features: each output layer also emits K basis maps per channel, and
    # the output is base + sum_k phi_k basis_k with phi (B, K) given to forward (ABCC: a projection of the profile)
    readout_features: int = 0

    def to_dict(self) -> dict:
        return asdict(self)


#: Named sizes (SiT paper, Table 1) for 32x32 latents; CPU presets pass their own numbers.
SIT_SIZES = {
    "S/2": dict(hidden_size=384, depth=12, num_heads=6, patch_size=2),
    "B/2": dict(hidden_size=768, depth=12, num_heads=12, patch_size=2),
    "L/2": dict(hidden_size=1024, depth=24, num_heads=16, patch_size=2),
    "XL/2": dict(hidden_size=1152, depth=28, num_heads=16, patch_size=2),
}


def sincos_pos_embed_2d(embed_dim: int, grid_size: int) -> np.ndarray:
    """Fixed 2D sine-cosine positions (MAE / DiT): half the channels encode the row, half the column."""
    if embed_dim % 4:
        raise ValueError(f"hidden size {embed_dim} must be divisible by 4 for 2D sin-cos positions")
    omega = 1.0 / 10000 ** (np.arange(embed_dim // 4, dtype=np.float64) / (embed_dim / 4.0))
    coords = np.arange(grid_size, dtype=np.float64)
    rows, cols = np.meshgrid(coords, coords, indexing="ij")

    def encode(pos: np.ndarray) -> np.ndarray:
        angles = np.outer(pos.reshape(-1), omega)
        return np.concatenate([np.sin(angles), np.cos(angles)], axis=1)

    return np.concatenate([encode(rows), encode(cols)], axis=1).astype(np.float32)  # (grid^2, D)


def sincos_pos_embed_1d(embed_dim: int, length: int) -> np.ndarray:
    """Fixed 1D sine-cosine positions of ``length`` tokens (patches of a spectrum)."""
    if embed_dim % 2:
        raise ValueError(f"hidden size {embed_dim} must be even for 1D sin-cos positions")
    omega = 1.0 / 10000 ** (np.arange(embed_dim // 2, dtype=np.float64) / (embed_dim / 2.0))
    angles = np.outer(np.arange(length, dtype=np.float64), omega)
    return np.concatenate([np.sin(angles), np.cos(angles)], axis=1).astype(np.float32)  # (length, D)


def timestep_frequencies(
    t: torch.Tensor, dim: int, max_period: float = 10000.0, scale: float = 1000.0
) -> torch.Tensor:
    """Sinusoidal features of scalar times (DiT). ``scale`` 1000 is DiT's convention for integer diffusion steps;
    MeanFlow's reference code feeds t in [0, 1] as it is (scale 1), which keeps du/dt, hence the JVP target, small
    and the one-step query (t = 1, t - r = 1) inside the range the embedding saw in training."""
    half = dim // 2
    dtype = torch.promote_types(t.dtype, torch.float32)  # never below fp32: 1000 t needs the mantissa
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=dtype, device=t.device) / half)
    args = scale * t.to(dtype)[:, None] * freqs[None]
    return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)


class TimestepEmbedder(nn.Module):
    def __init__(self, hidden_size: int, frequency_dim: int = 256, time_scale: float = 1000.0):
        super().__init__()
        self.frequency_dim, self.time_scale = frequency_dim, time_scale
        self.mlp = nn.Sequential(nn.Linear(frequency_dim, hidden_size), nn.SiLU(), nn.Linear(hidden_size, hidden_size))

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        return self.mlp(timestep_frequencies(t, self.frequency_dim, scale=self.time_scale).to(self.mlp[0].weight.dtype))


def modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    return x * (1 + scale[:, None]) + shift[:, None]


class Attention(nn.Module):
    def __init__(self, dim: int, num_heads: int, explicit: bool = False):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"hidden size {dim} is not divisible by {num_heads} heads")
        self.num_heads, self.explicit = num_heads, explicit
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, tokens, dim = x.shape
        qkv = self.qkv(x).reshape(batch, tokens, 3, self.num_heads, dim // self.num_heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)  # each (B, heads, T, head_dim)
        if self.explicit:
            weights = (q @ k.transpose(-2, -1) * q.shape[-1] ** -0.5).softmax(dim=-1)
            out = weights @ v
        else:
            out = F.scaled_dot_product_attention(q, k, v)
        return self.proj(out.transpose(1, 2).reshape(batch, tokens, dim))


class SiTBlock(nn.Module):
    """Transformer block with adaLN-Zero: the condition sets shift, scale and a gate for attention and MLP; the gate
    starts at zero, so every block starts as the identity."""

    def __init__(self, hidden_size: int, num_heads: int, mlp_ratio: float, explicit_attention: bool):
        super().__init__()
        self.norm1 = nn.LayerNorm(hidden_size, elementwise_affine=False, eps=1e-6)
        self.attn = Attention(hidden_size, num_heads, explicit_attention)
        self.norm2 = nn.LayerNorm(hidden_size, elementwise_affine=False, eps=1e-6)
        hidden_mlp = int(hidden_size * mlp_ratio)
        self.mlp = nn.Sequential(
            nn.Linear(hidden_size, hidden_mlp), nn.GELU(approximate="tanh"), nn.Linear(hidden_mlp, hidden_size)
        )
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(hidden_size, 6 * hidden_size))

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        shift_a, scale_a, gate_a, shift_m, scale_m, gate_m = self.adaLN_modulation(c).chunk(6, dim=-1)
        x = x + gate_a[:, None] * self.attn(modulate(self.norm1(x), shift_a, scale_a))
        return x + gate_m[:, None] * self.mlp(modulate(self.norm2(x), shift_m, scale_m))


class FinalLayer(nn.Module):
    def __init__(self, hidden_size: int, patch_size: int, out_channels: int, spatial_dims: int = 2):
        super().__init__()
        self.norm = nn.LayerNorm(hidden_size, elementwise_affine=False, eps=1e-6)
        self.linear = nn.Linear(hidden_size, patch_size**spatial_dims * out_channels)
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(hidden_size, 2 * hidden_size))

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        shift, scale = self.adaLN_modulation(c).chunk(2, dim=-1)
        return self.linear(modulate(self.norm(x), shift, scale))


class SiT(nn.Module):
    """u_theta(x, r, t, c): x (B, in_channels, H, W) (or (B, in_channels, L) with ``spatial_dims`` 1), r and t (B,),
    c (B, cond_dim) -> (B, out_channels, H, W).

    With ``branches`` 2 it is the dual-flow transformer: a shared trunk of ``depth - branch_depth`` blocks, then two
    branches of ``branch_depth`` blocks, each with its own output layer; the outputs are fused per channel with
    learned weights (softmax over the branches, equal at the start). ``return_features`` also returns each
    branch's mean token (B, branches, hidden), which the caller supervises (ABCC: by the MCR streams)."""

    def __init__(self, config: SiTConfig):
        super().__init__()
        if config.spatial_dims not in (1, 2):
            raise ValueError(f"spatial_dims must be 1 or 2, got {config.spatial_dims}")
        if config.input_size % config.patch_size:
            raise ValueError(f"input size {config.input_size} is not a multiple of patch size {config.patch_size}")
        if config.branches < 1 or (config.branches > 1 and not 1 <= config.branch_depth <= config.depth):
            raise ValueError(f"{config.branches} branches need 1 <= branch_depth <= depth ({config.depth}), got "
                             f"{config.branch_depth}")
        self.config = config
        hidden = config.hidden_size
        self.grid = config.input_size // config.patch_size
        conv = nn.Conv2d if config.spatial_dims == 2 else nn.Conv1d
        self.x_embedder = conv(config.in_channels, hidden, config.patch_size, stride=config.patch_size)
        positions = (sincos_pos_embed_2d(hidden, self.grid) if config.spatial_dims == 2
                     else sincos_pos_embed_1d(hidden, self.grid))
        self.register_buffer("pos_embed", torch.from_numpy(positions)[None], persistent=False)
        self.t_embedder = TimestepEmbedder(hidden, time_scale=config.time_scale)
        self.h_embedder = TimestepEmbedder(hidden, time_scale=config.time_scale)  # embeds the interval h = t - r
        self.c_embedder = nn.Linear(config.cond_dim, hidden)
        explicit = config.attention == "explicit"

        def stack(n: int) -> nn.ModuleList:
            return nn.ModuleList(SiTBlock(hidden, config.num_heads, config.mlp_ratio, explicit) for _ in range(n))

        if config.branches == 1:
            self.blocks = stack(config.depth)
            self.final_layer = FinalLayer(hidden, config.patch_size, self.emitted_channels, config.spatial_dims)
        else:
            self.blocks = stack(config.depth - config.branch_depth)
            self.branch_blocks = nn.ModuleList(stack(config.branch_depth) for _ in range(config.branches))
            self.branch_final_layers = nn.ModuleList(
                FinalLayer(hidden, config.patch_size, self.emitted_channels, config.spatial_dims)
                for _ in range(config.branches)
            )
            # per output channel, softmax over branches: equal weights at the start
            self.fusion_logits = nn.Parameter(torch.zeros(config.branches, config.out_channels))
        self.initialize_weights()

    def initialize_weights(self) -> None:
        """DiT's initialisation: Xavier for linear layers, the patch embedding like a linear layer, N(0, 0.02) for
        the time-embedding MLPs, and zeros for every adaLN modulation and the output layer (adaLN-Zero), so the
        untrained network outputs exactly zero and each block starts as the identity."""

        def basic(module: nn.Module) -> None:
            if isinstance(module, nn.Linear):
                nn.init.xavier_uniform_(module.weight)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)

        self.apply(basic)
        weight = self.x_embedder.weight.data
        nn.init.xavier_uniform_(weight.view(weight.shape[0], -1))
        nn.init.zeros_(self.x_embedder.bias)
        for embedder in (self.t_embedder, self.h_embedder):
            nn.init.normal_(embedder.mlp[0].weight, std=0.02)
            nn.init.normal_(embedder.mlp[2].weight, std=0.02)
        blocks = list(self.blocks)
        finals = [self.final_layer] if self.config.branches == 1 else list(self.branch_final_layers)
        if self.config.branches > 1:
            blocks += [block for branch in self.branch_blocks for block in branch]
        for block in blocks:
            nn.init.zeros_(block.adaLN_modulation[-1].weight)
            nn.init.zeros_(block.adaLN_modulation[-1].bias)
        for final in finals:
            for layer in (final.adaLN_modulation[-1], final.linear):
                nn.init.zeros_(layer.weight)
                nn.init.zeros_(layer.bias)

    @property
    def emitted_channels(self) -> int:
        """Channels an output layer emits: the output's, and K basis maps of each with the linear read-out."""
        return self.config.out_channels * (1 + self.config.readout_features)

    def unpatchify(self, x: torch.Tensor) -> torch.Tensor:
        p, c, g = self.config.patch_size, x.shape[-1] // self.config.patch_size**self.config.spatial_dims, self.grid
        if self.config.spatial_dims == 1:
            # (B, T, p*C) -> (B, C, T*p)
            return x.reshape(x.shape[0], g, p, c).permute(0, 3, 1, 2).reshape(x.shape[0], c, g * p)
        # (B, T, p*p*C) -> (B, C, H, W)
        x = x.reshape(x.shape[0], g, g, p, p, c)
        return torch.einsum("nhwpqc->nchpwq", x).reshape(x.shape[0], c, g * p, g * p)

    def fusion_weights(self) -> torch.Tensor:
        """(branches, out_channels) weights of the branch outputs in the fused output (ones for one branch)."""
        if self.config.branches == 1:
            return torch.ones(1, self.config.out_channels)
        return self.fusion_logits.softmax(dim=0)

    def read_out(self, emitted: torch.Tensor, readout: torch.Tensor | None) -> torch.Tensor:
        """An output layer's tokens -> the output: unpatchified, plus sum_k readout_k basis_k when K > 0."""
        out = self.unpatchify(emitted)
        k = self.config.readout_features
        if not k:
            return out
        if readout is None or readout.shape != (out.shape[0], k):
            raise ValueError(f"this SiT has a linear read-out of {k} features: forward needs readout (B, {k}), got "
                             f"{None if readout is None else tuple(readout.shape)}")
        parts = out.reshape(out.shape[0], 1 + k, self.config.out_channels, *out.shape[2:])
        weights = readout.to(out.dtype).view(out.shape[0], k, *[1] * (out.dim() - 1))
        return parts[:, 0] + (weights * parts[:, 1:]).sum(dim=1)

    def forward(
        self, x: torch.Tensor, r: torch.Tensor, t: torch.Tensor, c: torch.Tensor, return_features: bool = False,
        readout: torch.Tensor | None = None,
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        tokens = self.x_embedder(x).flatten(2).transpose(1, 2) + self.pos_embed  # (B, T, D)
        cond = self.t_embedder(t) + self.h_embedder(t - r) + self.c_embedder(c)
        for block in self.blocks:
            tokens = block(tokens, cond)
        if self.config.branches == 1:
            out = self.read_out(self.final_layer(tokens, cond), readout)
            return (out, tokens.mean(dim=1)[:, None]) if return_features else out
        outputs, features = [], []
        for blocks, final in zip(self.branch_blocks, self.branch_final_layers, strict=True):
            branch = tokens
            for block in blocks:
                branch = block(branch, cond)
            outputs.append(self.read_out(final(branch, cond), readout))
            features.append(branch.mean(dim=1))
        weights = self.fusion_weights().to(outputs[0].dtype)
        shape = (1, -1) + (1,) * self.config.spatial_dims
        out = sum(w.view(shape) * u for w, u in zip(weights, outputs, strict=True))
        return (out, torch.stack(features, dim=1)) if return_features else out
