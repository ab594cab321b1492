"""The physics losses of ABCC (Ye et al. 2026, Eq. 12 and 13) and the differentiable read-out they need.

- L_mass (Eq. 12): channel-wise mean alignment of the predicted and the true Chemical Flow: the mean of each
  channel over its spatial axes, compared by squared difference. Band areas move between species but the change
  of the total (the channel mean of the flow) is what mass balance fixes, so this term constrains the global
  budget without dictating where the changes sit.
- L_peak (Eq. 13): relative displacement of the peaks of the target. Peaks are found with
  ``scipy.signal.find_peaks`` by prominence on the target spectrum (fixed, not differentiated); on the prediction
  a peak position must be differentiable, so it is a soft-argmax (softmax over a window of points around the target
  peak, temperature in absorbance units). The same operator is applied to the target, so the loss is exactly zero
  when prediction equals target and its bias (the soft-argmax is pulled by the window's asymmetry) cancels.
  Displacement is relative to the window half-width: 1 means "off by a whole window".
- Read-out: decoded waveform images -> spectra, the intensity-weighted centre row of each column (Alg. 1's
  inverse without its refinement steps), linearly interpolated at the spectral points; differentiable in the
  image, so L_peak reaches the latent through the frozen VAE decoder.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from opir.core.errors import DataError
from opir.render.waveform import point_columns


def mass_loss(predicted_flow: torch.Tensor, true_flow: torch.Tensor) -> torch.Tensor:
    """Eq. 12: mean over the batch and the channels of (mean_xy(pred_c) - mean_xy(true_c))^2, for (B, C, ...)."""
    if predicted_flow.shape != true_flow.shape:
        raise ValueError(f"flow shapes differ: {tuple(predicted_flow.shape)} vs {tuple(true_flow.shape)}")
    return (predicted_flow.flatten(2).mean(dim=2) - true_flow.flatten(2).mean(dim=2)).pow(2).mean()


@dataclass
class PeakTargets:
    """Peaks of a batch of target spectra: ``index`` (n, K) point indices, ``valid`` (n, K) bool (padding)."""

    index: torch.Tensor
    valid: torch.Tensor

    def index_rows(self, rows: torch.Tensor) -> PeakTargets:
        return PeakTargets(self.index[rows], self.valid[rows])

    def to(self, device) -> PeakTargets:
        return PeakTargets(self.index.to(device), self.valid.to(device))


def detect_peaks(spectra: np.ndarray, prominence: float, max_peaks: int) -> PeakTargets:
    """The ``max_peaks`` most prominent peaks (scipy prominence >= ``prominence``) of each spectrum (n, N)."""
    # scipy.signal takes about 1 s to import: here, not at the top, so that every prediction job (which imports
    # this module with the model) does not pay it; only training detects peaks
    from scipy.signal import find_peaks

    spectra = np.asarray(spectra, dtype=np.float64)
    if spectra.ndim != 2 or not np.all(np.isfinite(spectra)):
        raise DataError(f"peak detection needs finite spectra (n, N), got shape {spectra.shape} or NaN/inf")
    index = np.zeros((len(spectra), max_peaks), dtype=np.int64)
    valid = np.zeros((len(spectra), max_peaks), dtype=bool)
    for i, spectrum in enumerate(spectra):
        peaks, props = find_peaks(spectrum, prominence=prominence)
        keep = peaks[np.argsort(props["prominences"])[::-1][:max_peaks]]
        index[i, : len(keep)] = np.sort(keep)
        valid[i, : len(keep)] = True
    return PeakTargets(torch.from_numpy(index), torch.from_numpy(valid))


def soft_peak_positions(
    spectra: torch.Tensor, peaks: PeakTargets, half_window: int, temperature: float
) -> torch.Tensor:
    """Differentiable positions (in points) of the peaks near ``peaks.index``: softmax(values / temperature) over
    the window of +- ``half_window`` points, expected index. (B, N) -> (B, K)."""
    offsets = torch.arange(-half_window, half_window + 1, device=spectra.device)
    window = (peaks.index[:, :, None] + offsets).clamp(0, spectra.shape[1] - 1)  # (B, K, 2w + 1)
    values = torch.gather(spectra, 1, window.flatten(1)).view(window.shape)
    weights = torch.softmax(values / temperature, dim=-1)
    return (weights * window.to(spectra.dtype)).sum(dim=-1)


def peak_loss(
    predicted: torch.Tensor, target: torch.Tensor, peaks: PeakTargets, half_window: int, temperature: float
) -> torch.Tensor:
    """Eq. 13: mean |p_pred - p_true| / half_window over the valid target peaks (0 when a batch has none)."""
    valid = peaks.valid.to(predicted.dtype)
    if not bool(peaks.valid.any()):
        return predicted.sum() * 0.0  # keeps the graph, contributes nothing
    p_pred = soft_peak_positions(predicted, peaks, half_window, temperature)
    with torch.no_grad():
        p_true = soft_peak_positions(target, peaks, half_window, temperature)
    displacement = (p_pred - p_true).abs() / half_window
    return (displacement * valid).sum() / valid.sum()


class SoftReadout(torch.nn.Module):
    """Decoded waveform images (B, H, W) on the [0, 255] grey scale -> spectra (B, n_points), differentiably: the
    intensity-weighted centre row of each column (after subtracting ``background`` grey), mapped to a value by the
    style's affine row map and interpolated at the spectral points' columns."""

    def __init__(self, style, n_points: int, background: float):
        super().__init__()
        top, bottom = style.plot_rows
        self.centre, self.clip, self.mid, self.half = style.centre, style.clip, (top + bottom) / 2, (bottom - top) / 2
        self.background = float(background)
        # interpolate between the centres of columns the polyline crosses (the ones holding its end points are
        # the outermost; the column beside them has no ink)
        first, last = (round(c) for c in style.plot_columns)
        x = np.clip(point_columns(n_points, style), first, last)
        left = np.clip(np.floor(x).astype(np.int64), 0, style.width - 2)
        self.register_buffer("left", torch.from_numpy(left), persistent=False)
        self.register_buffer("weight", torch.from_numpy((x - left).astype(np.float32)), persistent=False)
        self.register_buffer("rows", torch.arange(style.height, dtype=torch.float32)[:, None], persistent=False)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        ink = torch.relu(images - self.background)  # (B, H, W)
        centre_row = (ink * self.rows).sum(dim=1) / (ink.sum(dim=1) + 1e-3)  # (B, W); an empty column reads row 0
        values = self.centre + (self.mid - centre_row) * self.clip / self.half
        return values[:, self.left] * (1 - self.weight) + values[:, self.left + 1] * self.weight


def decode_to_grey(vae, latents: torch.Tensor) -> torch.Tensor:
    """Unscaled latents -> decoded images (B, H, W) on the [0, 255] scale, differentiable (channel mean)."""
    out = vae.decode(latents).sample
    return (out.float().mean(dim=1).clamp(-1, 1) + 1.0) * 127.5
