"""The image files of the render stage and the latent files of the latent stage."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np


def read_images(waveform_h5: str | Path, rows: np.ndarray | None = None) -> np.ndarray:
    with h5py.File(waveform_h5, "r") as handle:
        images = handle["images"]
        if rows is None:
            return images[()]
        return images[np.sort(rows)]


def read_latents(latent_h5: str | Path) -> tuple[np.ndarray, float]:
    with h5py.File(latent_h5, "r") as handle:
        group = handle["latent"]
        return group["latent"][()], float(group.attrs["scaling_factor"])
