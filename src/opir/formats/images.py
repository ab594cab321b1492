"""The image files of the render stage and the latent files of the latent stage."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np

from opir.core.errors import DataError
from opir.core.h5io import read_strings


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


def read_image_sample_ids(image_h5: str | Path) -> np.ndarray | None:
    """``sample_id`` of a per-sample image stream (variation, chemical_flow); None for the waveform stream, whose
    images are rows of samples.h5."""
    with h5py.File(image_h5, "r") as handle:
        return read_strings(handle["sample_id"]) if "initial_row" in handle and "sample_id" in handle else None


def read_sample_images(image_h5: str | Path, sample_ids) -> np.ndarray:
    """The images of a per-sample stream whose sample is one of ``sample_ids``, in file order."""
    with h5py.File(image_h5, "r") as handle:
        if "sample_id" not in handle:
            raise DataError(f"{image_h5}: no sample_id; not a per-sample image stream")
        keep = np.flatnonzero(np.isin(read_strings(handle["sample_id"]), list(sample_ids)))
        return handle["images"][keep] if len(keep) else np.zeros((0, *handle["images"].shape[1:]), np.uint8)


def read_sample_latents(latent_h5: str | Path, sample_ids: list[str]) -> np.ndarray:
    """Latents of a per-sample image stream (variation, chemical_flow) in the order of ``sample_ids``."""
    latents, _ = read_latents(latent_h5)
    with h5py.File(latent_h5, "r") as handle:
        if "latent/sample_id" not in handle:
            raise DataError(f"{latent_h5}: no latent/sample_id; not the latents of a per-sample image stream")
        ids = read_strings(handle["latent/sample_id"])
    position = {sample: i for i, sample in enumerate(ids)}
    missing = [s for s in sample_ids if s not in position]
    if missing:
        raise DataError(f"{latent_h5}: no latent for {len(missing)} sample(s), e.g. {missing[0]}")
    return latents[[position[s] for s in sample_ids]]
