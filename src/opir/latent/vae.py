"""The VAE of the latent models: trained on the training images of a split (or loaded from a local pretrained folder)
and used to encode the image files."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import torch

from opir.core.compute import resolve_device
from opir.core.errors import DataError
from opir.core.h5io import atomic_h5, provenance, write_nxdata
from opir.formats.images import read_image_sample_ids, read_images, read_sample_images
from opir.formats.model_dir import write_curve
from opir.formats.samples import read_sample_arrays
from opir.models import vae as vae_lib
from opir.training import TrainConfig, batch_indices, data_fingerprint, train

log = logging.getLogger(__name__)


def training_rows(samples_h5: str | Path, splits_json: str | Path, split: str) -> np.ndarray:
    """Rows of samples.h5 that belong to the training samples of ``split``: targets and their initial spectra."""
    splits = json.loads(Path(splits_json).read_text())
    if split not in splits or "train" not in splits[split]:
        raise DataError(f"{splits_json}: no '{split}' split with a 'train' list")
    train_ids = set(splits[split]["train"])
    table = read_sample_arrays(samples_h5, ["samples/sample_id", "samples/row", "samples/initial_row"])
    sample_id, rows, initial = table["samples/sample_id"], table["samples/row"], table["samples/initial_row"]
    known = set(sample_id)
    missing = sorted(train_ids - known)
    if missing:
        raise DataError(f"{splits_json}: {len(missing)} training sample(s) of split '{split}' are not in "
                        f"{samples_h5}, e.g. {missing[0]}")
    keep = np.isin(sample_id, list(train_ids))
    return np.unique(np.concatenate([rows[keep], initial[keep]]))


def training_sample_images(image_h5: str | Path, splits_json: str | Path, split: str) -> np.ndarray:
    """The images of a per-sample stream (variation, chemical_flow) that belong to the training samples of ``split``."""
    return read_sample_images(image_h5, set(json.loads(Path(splits_json).read_text())[split]["train"]))


def build_or_train_vae(
    waveform_h5: str | Path, samples_h5: str | Path, splits_json: str | Path, split: str, out_dir: str | Path,
    vae_config: dict[str, Any], checkpoint_dir: str | Path, device: str = "auto", progress: bool = True,
    extra_images_h5: list[str | Path] | None = None,
) -> Path:
    """Write the split's VAE as a diffusers folder (``config.json`` + safetensors) to ``out_dir``. The small VAE
    also sees the training samples' images of ``extra_images_h5`` (the variation stream that ABCC generates too),
    so one decoder serves every generated stream."""
    out_dir, device_ = Path(out_dir), resolve_device(device)
    if vae_config.get("pretrained_dir"):
        vae = vae_lib.load_pretrained_vae(vae_config["pretrained_dir"])
        log.info("using the pretrained VAE of %s (scaling factor %s)", vae_config["pretrained_dir"],
                 vae.config.scaling_factor)
        vae.save_pretrained(out_dir, safe_serialization=True)
        write_curve([], out_dir / "training_curve.csv")
        return out_dir

    rows = training_rows(samples_h5, splits_json, split)
    images = read_images(waveform_h5, rows)
    for extra in extra_images_h5 or []:
        more = training_sample_images(extra, splits_json, split)
        if more.shape[1:] != images.shape[1:]:
            raise DataError(f"{extra}: images are {more.shape[1:]}, the waveform images {images.shape[1:]}")
        images = np.concatenate([images, more])
    images = torch.from_numpy(images)
    size = images.shape[-1]
    torch.manual_seed(int(vae_config["seed"]))  # the initial weights
    vae = vae_lib.build_small_vae(size, vae_config["block_out_channels"], vae_config["latent_channels"],
                                  vae_config["layers_per_block"], vae_config["norm_num_groups"],
                                  vae_config["mid_block_attention"])
    train_config = TrainConfig(
        steps=int(vae_config["steps"]), batch_size=int(vae_config["batch_size"]), lr=float(vae_config["lr"]),
        ema_decay=0.0, grad_clip=1.0, checkpoint_every=max(1, int(vae_config["steps"]) // 4),
        seed=int(vae_config["seed"]), log_every=max(1, int(vae_config["steps"]) // 50), precision="fp32",
    )
    log.info("training a VAE on %d images %dx%d of split '%s' for %d steps", len(images), size, size, split,
             train_config.steps)

    def loss_fn(step, generator, autocast):
        idx = batch_indices(len(images), train_config.batch_size, step, train_config.seed)
        x = vae_lib.images_to_input(images[idx], 1).to(device_)
        return vae_lib.vae_reconstruction_loss(vae, x, float(vae_config["kl_weight"]), generator)

    weights, result = train(vae, loss_fn, train_config, checkpoint_dir, device_, run_settings=vae_config,
                            progress=progress, desc=f"vae/{split}", data=data_fingerprint(images))
    vae.load_state_dict(weights)  # ema_decay 0: these are the final weights
    latents = vae_lib.encode_images(vae, images.numpy(), int(vae_config["encode_batch_size"]), device_)
    vae.register_to_config(scaling_factor=vae_lib.fit_scaling_factor(latents))
    vae.save_pretrained(out_dir, safe_serialization=True)
    write_curve(result.curve, out_dir / "training_curve.csv")
    return out_dir


def load_vae(vae_dir: str | Path):
    """The VAE a split's latents were made with (a folder written by :func:`build_or_train_vae`)."""
    return vae_lib.load_pretrained_vae(vae_dir)


def encode_waveforms(
    waveform_h5: str | Path, vae_dir: str | Path, out_h5: str | Path, batch_size: int, device: str = "auto",
    rule: str = "latent", config_slice: Any = None,
) -> int:
    """Latents (scaled by the VAE's scaling factor) of every image of a render file: row-aligned with samples.h5
    for the waveform stream; for a per-sample stream (variation, chemical_flow) the file's ``sample_id`` is copied
    to ``latent/sample_id``."""
    vae = load_vae(vae_dir)
    images = read_images(waveform_h5)
    sample_id = read_image_sample_ids(waveform_h5)
    if vae.config.sample_size and images.shape[-1] != vae.config.sample_size and vae.config.in_channels == 1:
        raise DataError(f"{waveform_h5}: images are {images.shape[-1]} px but the VAE in {vae_dir} was trained "
                        f"on {vae.config.sample_size} px")
    latents = vae_lib.encode_images(vae, images, batch_size, resolve_device(device))
    latents *= float(vae.config.scaling_factor)
    attrs = provenance(rule, config_slice, [waveform_h5, vae_dir])
    with atomic_h5(out_h5, attrs) as handle:
        group = write_nxdata(handle, "latent", "latent", latents.astype(np.float32),
                             [("row", np.arange(len(latents), dtype=np.int64)), ".", ".", "."],
                             chunks=(min(256, len(latents)), *latents.shape[1:]))
        group.attrs["scaling_factor"] = float(vae.config.scaling_factor)
        if sample_id is not None:
            group.create_dataset("sample_id", data=np.asarray(sample_id, dtype=object), dtype=h5py.string_dtype())
        group.attrs["vae_dir"] = str(vae_dir)
    log.info("encoded %d images to latents %s", len(latents), latents.shape[1:])
    return len(latents)
