"""MeanFlow: time sampling, the JVP against finite differences, the target, CFG folding, samplers, and a tiny
problem whose loss must go down."""

from __future__ import annotations

import pytest
import torch
from torch.nn.attention import SDPBackend, sdpa_kernel

from opir.models.abcc import ABCC, ABCCConfig
from opir.models.conditioning import Condition
from opir.models.meanflow import (
    MeanFlowConfig,
    adaptive_weighted_loss,
    meanflow_loss,
    sample_euler,
    sample_one_step,
    sample_time_pairs,
)
from opir.models.sit import SiT, SiTConfig

# tiny networks: one torch thread is as fast, and much faster when other jobs share the cores (conftest.py)
pytestmark = pytest.mark.usefixtures("torch_one_thread")



def tiny_sit(attention: str, dtype=torch.float64) -> SiT:
    torch.manual_seed(0)
    model = SiT(SiTConfig(input_size=4, patch_size=2, in_channels=2, out_channels=2, hidden_size=16, depth=2,
                          num_heads=2, cond_dim=3, attention=attention)).to(dtype)
    # adaLN-Zero makes the fresh network output zero; perturb every weight so the derivative is non-trivial
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return model


def test_time_pairs_follow_logit_normal_and_fraction():
    config = MeanFlowConfig()
    r, t = sample_time_pairs(20_000, config, torch.Generator().manual_seed(0))
    assert torch.all(r <= t) and torch.all((t > 0) & (t < 1))
    assert (r != t).float().mean().item() == pytest.approx(0.25, abs=1e-3)
    # as in the reference implementation, (r, t) are two sorted logit-normal draws, then r = t for 75%: so both
    # ends of the unequal pairs together are logit-normal(-0.4, 1), and t is the max of two draws
    unequal = r != t
    both = torch.logit(torch.cat([r[unequal], t[unequal]]).double())
    assert both.mean().item() == pytest.approx(-0.4, abs=0.06)
    assert both.std().item() == pytest.approx(1.0, abs=0.05)
    expected_max = -0.4 + 1.0 / torch.pi**0.5  # E[max of two standard normals] = 1 / sqrt(pi)
    assert torch.logit(t.double()).mean().item() == pytest.approx(expected_max, abs=0.04)


@pytest.mark.parametrize("attention", ["explicit", "sdpa"])
def test_jvp_matches_finite_differences(attention):
    """torch.func.jvp with tangents (v, 0, 1) equals d/dh u(z + h v, r, t + h) at h = 0 (central differences)."""
    from torch.nn.attention import SDPBackend, sdpa_kernel

    model = tiny_sit(attention)
    gen = torch.Generator().manual_seed(1)
    z = torch.randn(3, 2, 4, 4, generator=gen, dtype=torch.float64)
    v = torch.randn(3, 2, 4, 4, generator=gen, dtype=torch.float64)
    r = torch.tensor([0.1, 0.3, 0.5], dtype=torch.float64)
    t = torch.tensor([0.4, 0.3, 0.9], dtype=torch.float64)
    c = torch.randn(3, 3, generator=gen, dtype=torch.float64)

    def u(z_, r_, t_):
        return model(z_, r_, t_, c)

    with sdpa_kernel(SDPBackend.MATH):
        _, dudt = torch.func.jvp(u, (z, r, t), (v, torch.zeros_like(r), torch.ones_like(t)))
    h = 1e-6  # float64: truncation error ~h^2 and rounding ~1e-16/h both far below the tolerance
    with torch.no_grad():
        finite = (u(z + h * v, r, t + h) - u(z - h * v, r, t - h)) / (2 * h)
    scale = dudt.abs().max()
    assert scale > 1e-2
    assert (dudt - finite).abs().max() < 1e-6 * scale
    # and the tangent really carries dt: dropping it changes the result
    with sdpa_kernel(SDPBackend.MATH):
        _, dudz_only = torch.func.jvp(u, (z, r, t), (v, torch.zeros_like(r), torch.zeros_like(t)))
    assert (dudz_only - dudt).abs().max() > 1e-3 * scale


def test_meanflow_target_of_known_fields():
    """The loss' target through fields whose error we know: zero for an exact solution, |v|^2 for u = 0."""
    config = MeanFlowConfig(cfg_kappa=0.0, cond_dropout=0.0, fraction_r_neq_t=1.0)
    x = torch.zeros(64, 1, 8, 8, dtype=torch.float64)

    # With x = 0: z_t = t eps and v = eps. For u(z, r, t) = z / t the total derivative along (v, 0, 1) is
    # v / t - z / t^2 = 0, so u_tgt = v = eps = u: the loss is zero for every (r, t).
    def u_fn(z, r, t, drop, rows=None):
        return z / t.view(-1, 1, 1, 1)

    terms = meanflow_loss(u_fn, x, config, torch.Generator().manual_seed(0))
    assert terms["mse"].item() < 1e-20

    # A wrong field (u = 0) has error equal to the target v = eps: mse about 1
    terms = meanflow_loss(lambda z, r, t, d, rows=None: torch.zeros_like(z), x, config,
                          torch.Generator().manual_seed(0))
    assert terms["mse"].item() == pytest.approx(1.0, rel=0.1)


def test_cfg_is_folded_into_the_target():
    """With omega = 1, kappa = 0.5 the tangent and target use v + 0.5 (u(c) - u(null)) for kept samples."""
    calls = []

    def u_fn(z, r, t, drop, rows=None):
        calls.append(None if drop is None else drop.clone())
        base = torch.zeros_like(z)
        if drop is not None:
            base = base + (~drop).to(z.dtype).view(-1, 1, 1, 1) * 2.0  # u(c) - u(null) = 2 everywhere
        return base

    config = MeanFlowConfig(cfg_omega=1.0, cfg_kappa=0.5, cond_dropout=0.5, fraction_r_neq_t=0.0)
    x = torch.zeros(256, 1, 2, 2)
    gen = torch.Generator().manual_seed(3)
    terms = meanflow_loss(u_fn, x, config, gen)
    # first two calls are the no-grad guidance evaluations: all conditioned, then all dropped
    assert not calls[0].any() and calls[1].all()
    # r = t everywhere: u_tgt = v~ = eps + 1 for kept samples, eps for dropped; u = 2 for kept, 0 for dropped
    assert torch.isfinite(terms["loss"])
    no_cfg = meanflow_loss(u_fn, x, MeanFlowConfig(cfg_kappa=0.0, cond_dropout=0.5, fraction_r_neq_t=0.0),
                           torch.Generator().manual_seed(3))
    assert terms["mse"] < no_cfg["mse"]  # the guided target moves towards the model's own conditional offset


def test_adaptive_weight():
    delta_sq = torch.tensor([0.0, 1.0, 100.0], requires_grad=True)
    loss = adaptive_weighted_loss(delta_sq, p=0.75, c=1e-3)
    loss.backward()
    expected = (delta_sq.detach() + 1e-3) ** -0.75 / 3
    torch.testing.assert_close(delta_sq.grad, expected)


def test_one_step_and_euler_samplers():
    # u(z, r, t) = z - x0 is the exact average velocity of the straight path to a fixed point x0
    x0 = torch.full((2, 1, 2, 2), 3.0)

    def u_fn(z, r, t, drop):
        return (z - x0) / t.view(-1, 1, 1, 1).clamp_min(1e-6)

    eps = torch.randn(2, 1, 2, 2)
    torch.testing.assert_close(sample_one_step(u_fn, eps), x0)
    torch.testing.assert_close(sample_euler(u_fn, eps, 10), x0, atol=1e-4, rtol=0)


def test_training_a_tiny_problem_drives_the_loss_down():
    """A tiny ABCC learns to map the condition's initial latent to a target (x = 2 * initial): the MeanFlow loss
    falls and the one-step samples approach the targets."""
    torch.manual_seed(0)
    n, size = 64, 4
    config = ABCCConfig(latent_channels=2, latent_size=size, profile_dim=4, mixture_dim=3, hidden_size=32, depth=2,
                        num_heads=2, attention="sdpa", meanflow=MeanFlowConfig(cond_dropout=0.0, cfg_kappa=0.0))
    model = ABCC(config)
    initial = torch.randn(n, 2, size, size)
    target = 2.0 * initial
    cond = Condition(initial, torch.randn(n, 4), torch.randn(n, 3))
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    losses = []
    for step in range(150):
        gen = torch.Generator().manual_seed(step)
        idx = torch.randint(0, n, (32,), generator=gen)
        terms = model.loss(target[idx], cond.index(idx), gen)
        optimizer.zero_grad()
        terms["loss"].backward()
        optimizer.step()
        losses.append(terms["loss"].item())
    # the minimized (adaptively weighted) loss falls; the raw error against the target need not, because the
    # target's -(t - r) du/dt term grows as the network learns
    assert sum(losses[-20:]) / 20 < 0.75 * sum(losses[:20]) / 20
    model.eval()
    sample = model.sample(cond, torch.Generator().manual_seed(0))
    error = (sample - target).pow(2).mean().item()
    assert error < 0.25 * target.pow(2).mean().item()  # an untrained network (u = 0) scores 1.0 here


@pytest.mark.parametrize("interval_rows", ["first", "random"])
def test_the_jvp_on_interval_rows_alone_gives_the_whole_batch_loss(interval_rows):
    """The loss takes du/dt only on the r != t rows and a plain forward pass on the others: its value and its
    gradient equal those of one JVP over the whole batch (the target of an r = t row is v whatever du/dt is)."""
    torch.manual_seed(0)
    n = 16
    config = ABCCConfig(latent_channels=0, residual_channels=1, condition_channels=1, spatial_dims=1, latent_size=16,
                        patch_size=4, profile_dim=3, mixture_dim=2, hidden_size=16, depth=1, num_heads=2,
                        profile_readout=2,
                        meanflow=MeanFlowConfig(cond_dropout=0.25, cfg_kappa=0.0, interval_rows=interval_rows))
    model = ABCC(config).double()
    for p in model.parameters():  # adaLN-Zero starts at zero output: give every weight a value
        torch.nn.init.normal_(p, std=0.2)
    cond = Condition(torch.randn(n, 1, 16, dtype=torch.float64), torch.randn(n, 3, dtype=torch.float64),
                     torch.randn(n, 2, dtype=torch.float64))
    x = torch.randn(n, 1, 16, dtype=torch.float64)
    split = meanflow_loss(model.u_fn(cond), x, config.meanflow, torch.Generator().manual_seed(5))
    split_grad = torch.autograd.grad(split["loss"], list(model.parameters()))

    # reference: the JVP of the whole batch, with the same random draws
    gen = torch.Generator().manual_seed(5)
    r, t = sample_time_pairs(n, config.meanflow, gen)
    assert 0 < int((r != t).sum()) < n
    eps = torch.randn(x.shape, generator=gen).to(x.dtype)
    drop = torch.rand(n, generator=gen) < config.meanflow.cond_dropout
    z = (1 - t.view(-1, 1, 1)) * x + t.view(-1, 1, 1) * eps
    with sdpa_kernel(SDPBackend.MATH):
        u, dudt = torch.func.jvp(lambda z_, r_, t_: model(z_, r_, t_, cond, drop), (z, r.double(), t.double()),
                                 (eps - x, torch.zeros_like(r).double(), torch.ones_like(t).double()))
    target = (eps - x - (t - r).view(-1, 1, 1) * dudt).detach()
    reference = adaptive_weighted_loss((u - target).pow(2).flatten(1).sum(1), config.meanflow.adaptive_p,
                                       config.meanflow.adaptive_c)
    # the loss computes in float32 (as in training): compare at its precision
    torch.testing.assert_close(split["loss"].double(), reference, rtol=1e-5, atol=1e-8)
    got = torch.cat([g.flatten() for g in split_grad])
    expected = torch.cat([g.flatten() for g in torch.autograd.grad(reference, list(model.parameters()))])
    assert (got - expected).norm() < 1e-4 * expected.norm()  # float32 rounding; a wrong term is off by O(1)
