"""MeanFlow (Geng et al. 2025, "Mean Flows for One-step Generative Modeling"): loss and samplers.

Notation as in the paper. Path z_t = (1 - t) x + t eps (t = 0 data, t = 1 noise), velocity v = eps - x.
The network predicts the average velocity u(z_t, r, t) over [r, t]; the MeanFlow identity
    u(z_t, r, t) = v(z_t, t) - (t - r) d/dt u(z_t, r, t),
with the total derivative d/dt u = v dz u + dt u, i.e. the JVP of u along the tangent (v, 0, 1) in the
argument order (z, r, t), gives the regression target (with stop-gradient). One step: z_0 = eps - u(eps, 0, 1).

``u_fn(z, r, t, drop, rows=None)`` is any callable with the batch's condition already bound (see
:class:`opir.models.abcc.ABCC`); ``drop`` is a boolean mask of samples whose condition is dropped (classifier-free
guidance); ``rows`` (an index tensor), when given, says which rows of the batch z, r and t are (the condition's
rows to use), so that the loss can evaluate parts of a batch.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch.nn.attention import SDPBackend, sdpa_kernel

UFn = Callable[..., torch.Tensor]


@dataclass(frozen=True)
class MeanFlowConfig:
    time_mu: float = -0.4  # logit-normal location of t and r
    time_sigma: float = 1.0  # logit-normal scale
    fraction_r_neq_t: float = 0.25  # share of each batch with r != t (the rest trains the instantaneous velocity)
    adaptive_p: float = 0.75  # adaptive loss weight 1 / (||delta||^2 + c)^p
    adaptive_c: float = 1e-3
    cfg_omega: float = 1.0  # guidance folded into the target (MeanFlow appendix: omega, kappa)
    cfg_kappa: float = 0.5
    cond_dropout: float = 0.1  # share of samples trained without condition
    jvp_dtype: str = "float32"  # "float32": JVP outside autocast; "bfloat16": JVP under the autocast as well
    # The defaults below keep what models trained before these switches existed did (their model.json lacks them);
    # the config schema's defaults are the reference code's choices (docs/method.md, "MeanFlow as the reference").
    time_scale: float = 1000.0  # t and t - r are multiplied by this before the sinusoidal embedding (reference: 1)
    interval_rows: str = "first"  # which rows of a batch get r != t: "first" (a fixed block) or "random"

    def __post_init__(self):
        if self.interval_rows not in ("first", "random"):
            raise ValueError(f"meanflow.interval_rows {self.interval_rows!r}: 'first' or 'random'")


def sample_time_pairs(
    batch: int, config: MeanFlowConfig, generator: torch.Generator, device: torch.device | str = "cpu"
) -> tuple[torch.Tensor, torch.Tensor]:
    """(r, t) with r <= t: two logit-normal draws sorted; then r = t for all but ``fraction_r_neq_t`` of the batch,
    whose rows are the first ones or, with ``interval_rows: random``, drawn anew each step (the reference code's
    choice: no fixed block of the batch, which later terms may single out, is always an interval)."""
    normal = torch.randn(2, batch, generator=generator) * config.time_sigma + config.time_mu
    r, t = torch.sort(torch.sigmoid(normal), dim=0).values
    n_interval = round(config.fraction_r_neq_t * batch)
    if config.interval_rows == "random":
        keep_interval = torch.zeros(batch, dtype=torch.bool)
        keep_interval[torch.randperm(batch, generator=generator)[:n_interval]] = True
    else:
        keep_interval = torch.arange(batch) < n_interval
    r = torch.where(keep_interval, r, t)
    return r.to(device), t.to(device)


def adaptive_weighted_loss(delta_sq: torch.Tensor, p: float, c: float) -> torch.Tensor:
    """sg(w) * ||delta||^2 with w = 1 / (||delta||^2 + c)^p (per sample); p = 0.5 is a pseudo-Huber loss, p = 1 a
    robust log-like loss; the paper uses 0.75."""
    return (delta_sq / (delta_sq.detach() + c) ** p).mean()


def _expand(scalar: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return scalar.view(-1, *[1] * (like.dim() - 1))


def meanflow_loss(
    u_fn: UFn,
    x: torch.Tensor,
    config: MeanFlowConfig,
    generator: torch.Generator,
    autocast: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext,
    extras: dict | None = None,
) -> dict[str, torch.Tensor]:
    """MeanFlow loss for a batch of clean latents ``x``; returns a dict of terms (``loss`` is what is minimized,
    ``mse`` the unweighted squared error per element, for the training curve). Extra loss terms of later models
    are added to this dict by their callers; ``extras``, when given, receives the batch's z_t, r, t and drop mask
    so that those terms see the same noisy points."""
    batch, device = x.shape[0], x.device
    r, t = sample_time_pairs(batch, config, generator, device)
    eps = torch.randn(x.shape, generator=generator).to(device=device, dtype=x.dtype)
    drop = (torch.rand(batch, generator=generator) < config.cond_dropout).to(device)
    z_t = (1 - _expand(t, x)) * x + _expand(t, x) * eps
    v = eps - x
    if extras is not None:
        extras.update(z_t=z_t, r=r, t=t, drop=drop)

    # Classifier-free guidance folded into the target (MeanFlow, appendix "improved CFG"):
    # v~ = omega v + kappa u(z_t, t, t | c) + (1 - omega - kappa) u(z_t, t, t | null), for conditioned samples.
    if config.cfg_omega != 1.0 or config.cfg_kappa != 0.0:
        with torch.no_grad(), autocast():
            u_cond = u_fn(z_t, t, t, torch.zeros_like(drop)).float()
            u_uncond = u_fn(z_t, t, t, torch.ones_like(drop)).float()
        omega, kappa = config.cfg_omega, config.cfg_kappa
        v_guided = omega * v + kappa * u_cond + (1 - omega - kappa) * u_uncond
        v = torch.where(_expand(drop, x), v, v_guided.to(v.dtype))

    # Only the r != t rows need du/dt (the target of an r = t row is v: its factor t - r is 0), so the JVP, which
    # costs about two forward passes, runs on those rows alone and the rest take a plain forward pass: the same
    # loss for a quarter of the JVP's cost (the network treats the samples of a batch independently).
    interval = torch.nonzero(r != t).squeeze(1)
    instant = torch.nonzero(r == t).squeeze(1)

    def u_of(rows: torch.Tensor) -> Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]:
        return lambda z, r_, t_: u_fn(z, r_, t_, drop[rows], rows)

    # Fused attention kernels have no forward-mode AD: the JVP runs on the MATH SDPA backend.
    jvp_context = autocast() if config.jvp_dtype == "bfloat16" else contextlib.nullcontext()
    u_parts, target_parts = [], []
    if interval.numel():
        with sdpa_kernel(SDPBackend.MATH), jvp_context:
            tangents = (v[interval], torch.zeros_like(r[interval]), torch.ones_like(t[interval]))
            u_interval, dudt = torch.func.jvp(u_of(interval), (z_t[interval], r[interval], t[interval]), tangents)
        u_parts.append(u_interval.float())
        target_parts.append(v[interval].float() - _expand(t[interval] - r[interval], x) * dudt.float())
    if instant.numel():
        with jvp_context:
            u_parts.append(u_of(instant)(z_t[instant], r[instant], t[instant]).float())
        target_parts.append(v[instant].float())
    order = torch.argsort(torch.cat([interval, instant]))
    u, u_target = torch.cat(u_parts)[order], torch.cat(target_parts)[order].detach()
    delta_sq = (u - u_target).pow(2).flatten(1).sum(dim=1)
    return {
        "loss": adaptive_weighted_loss(delta_sq, config.adaptive_p, config.adaptive_c),
        "mse": delta_sq.detach().mean() / x[0].numel(),
    }


@torch.no_grad()
def sample_one_step(u_fn: UFn, eps: torch.Tensor) -> torch.Tensor:
    """z_0 = eps - u(eps, 0, 1): the whole path in one network evaluation."""
    ones = torch.ones(eps.shape[0], device=eps.device)
    return eps - u_fn(eps, torch.zeros_like(ones), ones, None)


def draw_noise(shape: tuple[int, ...], generator: torch.Generator, shared: bool = False) -> torch.Tensor:
    """Standard normal noise of ``shape`` (batch first). ``shared``: one draw repeated over the batch (common random
    numbers), so that the samples of a batch differ only through their conditions."""
    if not shared:
        return torch.randn(shape, generator=generator)
    return torch.randn((1, *shape[1:]), generator=generator).expand(shape).contiguous()


def noise_seed(seed: int, start: int, draws: int, k: int, shared: bool = False) -> int:
    """The generator seed of draw ``k`` of the batch that begins at test input ``start``: independent noise seeds
    each (batch, draw); shared noise seeds each draw alone, so every batch of that draw starts from the same noise."""
    return int(seed) * 1_000_003 + (k if shared else start * draws + k)


@torch.no_grad()
def sample_euler(u_fn: UFn, eps: torch.Tensor, steps: int) -> torch.Tensor:
    """Euler integration of the instantaneous velocity v(z, t) = u(z, t, t) from t = 1 to 0 in ``steps`` steps:
    what a flow-matching model of the same network would need (the comparison point for one-step sampling)."""
    z = eps
    times = torch.linspace(1.0, 0.0, steps + 1, device=eps.device)
    for t_now, t_next in zip(times[:-1], times[1:], strict=True):
        t = torch.full((eps.shape[0],), float(t_now), device=eps.device)
        z = z - (t_now - t_next) * u_fn(z, t, t, None)
    return z
