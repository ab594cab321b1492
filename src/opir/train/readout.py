"""The read-out of a generated state to spectra (latents through the VAE and Alg. 1 inverse, or the 1D scale), with the
fused waveform/variation weight."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from opir.core.errors import DataError
from opir.latent.vae import load_vae
from opir.models.abcc import ABCCConfig
from opir.models.physics import SoftReadout, decode_to_grey
from opir.models.vae import decode_latents
from opir.render.waveform import read_style, waveform_to_spectrum


# --------------------------------------------------------------------------------------------------------------
# Read-out: generated state -> spectra
# --------------------------------------------------------------------------------------------------------------
@dataclass
class Readout:
    """How a generated state becomes spectra: the model's space, the VAE and styles (latent space), the scale
    (spectral variant) and the fusion weight of the waveform path per wavenumber (the residual path gets 1 - w)."""

    space: str
    n_points: int
    latent_channels: int = 0
    residual_channels: int = 0
    vae: Any = None
    scaling: float = 1.0
    style: Any = None
    residual_style: Any = None
    background_grey: float = 0.0
    spectrum_scale: float = 1.0
    fusion_weight: np.ndarray | None = None

    def paths(self, state: torch.Tensor, initial_spectrum: np.ndarray, device) -> tuple[list[np.ndarray], int]:
        """Spectra (n, N_f) of each read-out path (waveform; s(v_0) + residual), and the count of decoded images
        read without the background threshold."""
        if self.space == "spectrum":
            diff = state[:, 0, : self.n_points].float().cpu().numpy() * self.spectrum_scale
            return [initial_spectrum + diff], 0
        out, fallbacks = [], 0
        groups = [(slice(0, self.latent_channels), self.style, None)]
        if self.residual_channels:
            groups.append((slice(self.latent_channels, None), self.residual_style, initial_spectrum))
        for channels, style, base in groups:
            images = decode_latents(self.vae, state[:, channels].float() / self.scaling, len(state), device)
            spectra, bad = images_to_spectra(images, self.n_points, style, self.background_grey)
            out.append(spectra if base is None else base + spectra)
            fallbacks += bad
        return out, fallbacks

    def fuse(self, paths: list[np.ndarray]) -> np.ndarray:
        if len(paths) == 1:
            return paths[0]
        w = self.fusion_weight if self.fusion_weight is not None else np.full(self.n_points, 0.5, np.float32)
        return (w * paths[0] + (1 - w) * paths[1]).astype(np.float32)


def fit_fusion_weight(waveform: np.ndarray, residual: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Per wavenumber, the w in [0, 1] minimizing sum_i (w a_i + (1 - w) b_i - y_i)^2 over training samples
    (closed form: w = sum (y - b)(a - b) / sum (a - b)^2); 0.5 where the two paths agree everywhere."""
    diff = waveform - residual
    denom = (diff**2).sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        w = ((target - residual) * diff).sum(axis=0) / denom
    return np.clip(np.where(denom > 1e-12, w, 0.5), 0.0, 1.0).astype(np.float32)


def soft_spectra_fn(readout: Readout, device) -> Callable:
    """Differentiable counterpart of :meth:`Readout.paths` for the training losses: spectra_fn(state, s0)."""
    if readout.space == "spectrum":
        return lambda state, s0: [s0 + state[:, 0, : readout.n_points] * readout.spectrum_scale]
    soft = SoftReadout(readout.style, readout.n_points, readout.background_grey).to(device)
    soft_residual = (SoftReadout(readout.residual_style, readout.n_points, readout.background_grey).to(device)
                     if readout.residual_channels else None)
    c = readout.latent_channels

    def spectra_fn(state: torch.Tensor, s0: torch.Tensor) -> list[torch.Tensor]:
        out = [soft(decode_to_grey(readout.vae, state[:, :c] / readout.scaling))]
        if soft_residual is not None:
            out.append(s0 + soft_residual(decode_to_grey(readout.vae, state[:, c:] / readout.scaling)))
        return out

    return spectra_fn


def images_to_spectra(images: np.ndarray, n_points: int, style, background_grey: float) -> tuple[np.ndarray, int]:
    """Alg. 1 inverse of decoded images; an image left without ink by the background threshold is read without
    the threshold (counted and logged, never dropped)."""
    spectra = np.empty((len(images), n_points), dtype=np.float32)
    fallbacks = 0
    for i, image in enumerate(images):
        try:
            spectra[i] = waveform_to_spectrum(image, n_points, style, background=background_grey)
        except DataError:
            fallbacks += 1
            spectra[i] = waveform_to_spectrum(image, n_points, style, background=0.0)
    return spectra, fallbacks


def readout_for(space, config: ABCCConfig, n_points: int, cfg, vae_dir, waveform_h5, variation_h5, spectrum_scale,
                device, styles: tuple | None = None, decode: bool = False) -> Readout:
    """The read-out of a model; the VAE is loaded where something decodes: always at prediction (``decode``), in
    training for the peak loss and the fusion fit."""
    background = float(cfg["predict"]["background_grey"])
    if space == "spectrum":
        return Readout("spectrum", n_points, spectrum_scale=float(spectrum_scale))
    if not (decode or config.residual_channels > 0 or float(cfg.get("losses", {}).get("peak_weight", 0)) > 0):
        return Readout("latent", n_points, config.latent_channels, 0)
    if vae_dir is None or waveform_h5 is None and styles is None:
        raise DataError("the peak loss and the residual stream need the VAE and the waveform render geometry")
    vae = load_vae(vae_dir).to(device)
    vae.requires_grad_(False)
    if styles is None:
        if config.residual_channels and variation_h5 is None:
            raise DataError("the residual stream needs the variation images' render geometry (variation.h5)")
        styles = (read_style(waveform_h5), read_style(variation_h5) if config.residual_channels else None)
    return Readout("latent", n_points, config.latent_channels, config.residual_channels, vae,
                   float(vae.config.scaling_factor), styles[0], styles[1], background)
