"""ABCC's physics losses (L_mass, Eq. 12; L_peak, Eq. 13), the differentiable read-out, the fusion fit and the
dual-flow backbone."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from opir.core.errors import DataError
from opir.models.physics import (
    PeakTargets,
    SoftReadout,
    detect_peaks,
    mass_loss,
    peak_loss,
    soft_peak_positions,
)

# tiny networks: one torch thread is as fast, and much faster when other jobs share the cores (conftest.py)
pytestmark = pytest.mark.usefixtures("torch_one_thread")


def gaussians(centres, n=64, width=2.0, heights=None):
    x = np.arange(n, dtype=np.float64)
    heights = heights or [1.0] * len(centres)
    return sum(h * np.exp(-0.5 * ((x - c) / width) ** 2) for c, h in zip(centres, heights, strict=True))


def test_mass_loss_matches_a_hand_computation():
    pred = torch.zeros(2, 2, 2, 2)
    true = torch.zeros(2, 2, 2, 2)
    pred[0, 0] = torch.tensor([[1.0, 2.0], [3.0, 4.0]])  # channel mean 2.5
    true[0, 0] = 1.0  # channel mean 1.0 -> (1.5)^2
    pred[1, 1, 0, 0] = 4.0  # channel mean 1.0 -> (1.0)^2
    expected = (1.5**2 + 0 + 0 + 1.0**2) / 4  # mean over batch x channels
    assert mass_loss(pred, true).item() == pytest.approx(expected)
    # only the channel means count: moving mass inside a channel costs nothing
    assert mass_loss(true.flip(-1), true).item() == 0.0
    with pytest.raises(ValueError, match="shapes differ"):
        mass_loss(pred, true[:, :1])


def test_detect_peaks_by_prominence():
    spectrum = gaussians([15, 40], heights=[1.0, 0.3]) + gaussians([55], heights=[0.01])  # last: below prominence
    peaks = detect_peaks(spectrum[None], prominence=0.05, max_peaks=4)
    assert peaks.index[0, peaks.valid[0]].tolist() == [15, 40]
    top = detect_peaks(spectrum[None], prominence=0.05, max_peaks=1)
    assert top.index[0, top.valid[0]].tolist() == [15]  # the most prominent first
    with pytest.raises(DataError, match="finite"):
        detect_peaks(np.array([[0.0, np.nan, 0.0]]), 0.1, 2)


def test_peak_loss_is_zero_for_the_target_and_its_gradient_flows():
    target = torch.tensor(gaussians([20, 44]))[None].float()
    peaks = detect_peaks(target.numpy(), prominence=0.1, max_peaks=4)
    same = target.clone().requires_grad_(True)
    loss = peak_loss(same, target, peaks, half_window=5, temperature=0.05)
    assert loss.item() == 0.0
    shifted = torch.tensor(gaussians([22, 44]))[None].float().requires_grad_(True)
    loss = peak_loss(shifted, target, peaks, half_window=5, temperature=0.05)
    assert loss.item() > 0.1  # the first peak moved by 2 points of a 5-point half window
    loss.backward()
    assert shifted.grad is not None and torch.count_nonzero(shifted.grad) > 0
    # a gradient step moves the predicted peak back towards the target
    with torch.no_grad():
        stepped = shifted - 0.5 * shifted.grad / shifted.grad.abs().max()
    assert peak_loss(stepped, target, peaks, 5, 0.05) < loss


def test_soft_peak_position_tracks_a_moving_peak():
    peaks = PeakTargets(torch.tensor([[30]]), torch.tensor([[True]]))
    positions = [soft_peak_positions(torch.tensor(gaussians([c]))[None].float(), peaks, 6, 0.02).item()
                 for c in (28.0, 30.0, 32.0)]
    assert positions[0] < positions[1] < positions[2]
    assert positions[1] == pytest.approx(30.0, abs=0.05)


def test_peak_loss_without_peaks_is_zero_and_keeps_the_graph():
    pred = torch.zeros(2, 16, requires_grad=True)
    empty = PeakTargets(torch.zeros(2, 3, dtype=torch.long), torch.zeros(2, 3, dtype=torch.bool))
    loss = peak_loss(pred, pred.detach(), empty, 3, 0.1)
    loss.backward()
    assert loss.item() == 0.0 and pred.grad is not None


def test_soft_readout_reads_rendered_spectra_back_differentiably():
    from opir.render.waveform import CurveStyle, spectrum_to_waveform, waveform_to_spectrum

    style = CurveStyle(height=48, width=48, centre=0.5, clip=0.6)
    spectra = (0.2 + 0.6 * gaussians([20, 40], n=96, width=4.0) / 1.0)[None].astype(np.float32)
    images = spectrum_to_waveform(spectra, style).astype(np.float32)
    readout = SoftReadout(style, 96, background=0.0)
    x = torch.from_numpy(images).requires_grad_(True)
    soft = readout(x)
    hard = waveform_to_spectrum(images.astype(np.uint8), 96, style, refine_iterations=0)
    np.testing.assert_allclose(soft.detach().numpy(), hard, atol=0.02)  # same centre-row read-out, no refinement
    assert np.abs(soft.detach().numpy() - spectra).mean() < 0.03
    soft.sum().backward()
    assert torch.count_nonzero(x.grad) > 0


def test_fusion_weight_is_the_least_squares_optimum():
    from opir.train.readout import fit_fusion_weight

    rng = np.random.default_rng(0)
    y = rng.normal(size=(50, 3))
    a = y + np.array([0.01, 0.5, 0.2]) * rng.normal(size=(50, 3))  # waveform path: good, bad, middling
    b = y + np.array([0.5, 0.01, 0.2]) * rng.normal(size=(50, 3))
    w = fit_fusion_weight(a, b, y)
    assert w[0] > 0.9 and w[1] < 0.1 and 0.2 < w[2] < 0.8
    for k in range(3):  # the closed form beats a grid of alternatives
        grid = np.linspace(0, 1, 101)
        errors = [((g * a[:, k] + (1 - g) * b[:, k] - y[:, k]) ** 2).sum() for g in grid]
        assert abs(grid[int(np.argmin(errors))] - w[k]) <= 0.011
    assert fit_fusion_weight(y, y, y).tolist() == [0.5, 0.5, 0.5]  # the paths agree: no preference


def test_dual_flow_backbone_fuses_two_branches_with_learned_weights():
    from opir.models.sit import SiT, SiTConfig

    torch.manual_seed(0)
    config = SiTConfig(input_size=4, patch_size=2, in_channels=3, out_channels=2, hidden_size=16, depth=3,
                       num_heads=2, cond_dim=4, branches=2, branch_depth=2)
    model = SiT(config)
    assert len(model.blocks) == 1 and [len(b) for b in model.branch_blocks] == [2, 2]
    torch.testing.assert_close(model.fusion_weights(), torch.full((2, 2), 0.5))
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, 0.2)
    args = (torch.randn(2, 3, 4, 4), torch.rand(2), torch.rand(2), torch.randn(2, 4))
    out, features = model(*args, return_features=True)
    assert out.shape == (2, 2, 4, 4) and features.shape == (2, 2, 16)
    # the fused output is the weighted sum of the branch outputs
    weights = model.fusion_weights()
    with torch.no_grad():
        model.fusion_logits[:] = torch.tensor([[50.0, 50.0], [-50.0, -50.0]])  # all weight on branch 0
        only_first = model(*args)
        model.fusion_logits[:] = -model.fusion_logits
        only_second = model(*args)
        model.fusion_logits[:] = weights.log()
    expected = weights[0].view(1, -1, 1, 1) * only_first + weights[1].view(1, -1, 1, 1) * only_second
    torch.testing.assert_close(model(*args), expected, rtol=1e-4, atol=1e-5)


def test_one_dimensional_backbone_shapes():
    from opir.models.sit import SiT, SiTConfig

    model = SiT(SiTConfig(input_size=24, patch_size=8, in_channels=2, out_channels=1, hidden_size=16, depth=1,
                          num_heads=2, cond_dim=4, spatial_dims=1))
    out = model(torch.randn(3, 2, 24), torch.rand(3), torch.rand(3), torch.randn(3, 4))
    assert out.shape == (3, 1, 24) and torch.count_nonzero(out) == 0  # adaLN-Zero start, as in 2D
