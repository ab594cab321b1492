"""The VAE read-out bound of the latent models: each test target's own image, encoded by the split's VAE, decoded and
read back to a spectrum. A latent model that generated the true latent exactly would score this, so the row bounds
every model that reads its spectra out of decoded images (the latent ABCC and the latent baselines). Like the noise
floor it reads the test targets, so it is a reference row, never a model."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from opir.core.compute import resolve_device
from opir.core.errors import ConfigError
from opir.formats.images import (
    read_image_sample_ids,
    read_images,
    read_latents,
    read_sample_images,
    read_sample_latents,
)
from opir.formats.predictions import write_predictions
from opir.formats.samples import load_samples, load_split
from opir.latent.vae import load_vae
from opir.models.settings import BOUND_STREAMS
from opir.models.vae import decode_latents
from opir.render.waveform import read_style
from opir.train.readout import images_to_spectra

log = logging.getLogger(__name__)


def vae_readout_bound(
    samples_h5: str | Path, splits_json: str | Path, split: str, stream: str, images_h5: str | Path,
    latent_h5: str | Path, vae_dir: str | Path, out_h5: str | Path, background_grey: float, batch_size: int,
    device: str = "auto", attrs: dict[str, Any] | None = None,
) -> dict[str, float]:
    """Write the read-out of the test targets' own latents of ``stream`` as a predictions file (k = 1). Also measures
    the render round trip alone (the true image read back, no VAE), so the record can tell the two losses apart;
    returns both mean absolute errors."""
    if stream not in BOUND_STREAMS:
        raise ConfigError(f"VAE read-out bound: stream {stream!r} is not one of {', '.join(BOUND_STREAMS)}")
    t0 = time.perf_counter()
    table = load_samples(samples_h5)
    test_ids = load_split(splits_json, split)["test"]
    idx = table.sample_index(test_ids, f"{splits_json} ({split} test)")
    target = table.absorbance[table.samples["row"][idx]]
    n_points = target.shape[1]
    if stream == "waveform":
        rows = table.samples["row"][idx]
        latents, _ = read_latents(latent_h5)
        latents = latents[rows]
        # h5py reads sorted rows; put them back in test order
        order = np.argsort(np.argsort(rows))
        images = read_images(images_h5, rows)[order]
        base = np.zeros_like(target)
    else:
        latents = read_sample_latents(latent_h5, test_ids)
        images = _sample_images_in_order(images_h5, test_ids)
        base = table.absorbance[table.samples["initial_row"][idx]]
    vae = load_vae(vae_dir)
    vae.requires_grad_(False)
    style = read_style(images_h5)
    with torch.no_grad():
        decoded = decode_latents(vae, torch.from_numpy(latents).float() / float(vae.config.scaling_factor),
                                 batch_size, resolve_device(device))
    through_vae, fallbacks = images_to_spectra(decoded, n_points, style, background_grey)
    rendered, _ = images_to_spectra(images.astype(np.float32), n_points, style, 0.0)
    prediction = base + through_vae
    result = {"mae": float(np.abs(prediction - target).mean()),
              "render_roundtrip_mae": float(np.abs(base + rendered - target).mean())}
    file_attrs = dict(attrs or {})
    file_attrs.update({"stream": stream, "draws": 1, "images_without_ink_above_background": fallbacks,
                       "render_roundtrip_mae": result["render_roundtrip_mae"], "vae_readout_mae": result["mae"]})
    write_predictions(out_h5, test_ids, table.wavenumber_cm1, prediction, file_attrs, model=f"vae_readout_{stream}")
    log.info("%s/%s: %d test targets read back through the VAE: MAE %.4g (render round trip alone %.4g; %d images "
             "without ink above the background) in %.1f s", split, stream, len(test_ids), result["mae"],
             result["render_roundtrip_mae"], fallbacks, time.perf_counter() - t0)
    return result


def _sample_images_in_order(images_h5: str | Path, sample_ids: list[str]) -> np.ndarray:
    """The per-sample images of ``sample_ids`` in that order (read_sample_images keeps file order)."""
    wanted = set(sample_ids)
    images = read_sample_images(images_h5, wanted)
    kept = [s for s in read_image_sample_ids(images_h5) if s in wanted]
    position = {s: i for i, s in enumerate(kept)}
    return images[[position[s] for s in sample_ids]]
