"""The VAE that maps waveform images to latents: ``diffusers.AutoencoderKL``.

Two sources, chosen by ``models.vae.pretrained_dir``:
- a local folder with a downloaded AutoencoderKL (``config.json`` + ``diffusion_pytorch_model.safetensors``, e.g.
  ``stabilityai/sd-vae-ft-ema`` as the paper uses); loaded with ``local_files_only`` and safetensors only, so no hub
  access is attempted and nothing is unpickled; a 3-channel VAE gets the 1-channel image repeated three times;
- otherwise a small AutoencoderKL trained on the training split's waveform images (``train_vae``).

Images are uint8 (n, H, W); the VAE sees them scaled to [-1, 1]. Latents are the posterior mean times the
``scaling_factor`` (1 / std of the training latents for a trained VAE; 0.18215 for the SD VAE), the usual
latent-diffusion normalization, so the flow model sees latents of about unit variance.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch

from opir.core.errors import ConfigError

log = logging.getLogger(__name__)


def _autoencoder_cls():
    # diffusers takes seconds to import; only the stages that use the VAE pay for it
    # diffusers (slow to import) only where a VAE is built or loaded
    from diffusers import AutoencoderKL

    return AutoencoderKL


def load_pretrained_vae(folder: str | Path):
    """AutoencoderKL from a local folder (safetensors weights only); a clear error names what is missing."""
    folder = Path(folder)
    if not (folder / "config.json").exists():
        raise ConfigError(
            f"models.vae.pretrained_dir: {folder} has no config.json; expected a local AutoencoderKL folder "
            "(config.json + diffusion_pytorch_model.safetensors, e.g. a downloaded sd-vae-ft-ema)"
        )
    if not list(folder.glob("*.safetensors")):
        raise ConfigError(
            f"models.vae.pretrained_dir: {folder} has no .safetensors weights (pickled .bin weights are not loaded)"
        )
    try:
        vae = _autoencoder_cls().from_pretrained(folder, local_files_only=True, use_safetensors=True)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"models.vae.pretrained_dir: cannot load an AutoencoderKL from {folder}: {exc}") from exc
    return vae.eval()


def build_small_vae(image_size: int, block_out_channels: list[int], latent_channels: int, layers_per_block: int,
                    norm_num_groups: int, mid_block_attention: bool):
    """A small AutoencoderKL for 1-channel images; it downsamples by 2^(len(block_out_channels) - 1)."""
    n = len(block_out_channels)
    if image_size % 2 ** (n - 1):
        raise ConfigError(f"models.vae: image size {image_size} is not divisible by 2^{n - 1}")
    return _autoencoder_cls()(
        in_channels=1,
        out_channels=1,
        down_block_types=("DownEncoderBlock2D",) * n,
        up_block_types=("UpDecoderBlock2D",) * n,
        block_out_channels=tuple(block_out_channels),
        layers_per_block=layers_per_block,
        latent_channels=latent_channels,
        norm_num_groups=norm_num_groups,
        sample_size=image_size,
        mid_block_add_attention=mid_block_attention,
    )


def images_to_input(images: np.ndarray | torch.Tensor, in_channels: int) -> torch.Tensor:
    """uint8 (n, H, W) -> float (n, in_channels, H, W) in [-1, 1]; a 3-channel VAE gets the image repeated."""
    x = torch.as_tensor(np.asarray(images)).float().div(127.5).sub(1.0)[:, None]
    return x.repeat(1, in_channels, 1, 1) if in_channels > 1 else x


def output_to_images(x: torch.Tensor) -> np.ndarray:
    """VAE output (n, C, H, W) in about [-1, 1] -> float32 (n, H, W) on the uint8 scale [0, 255] (channel mean)."""
    return ((x.float().mean(dim=1).clamp(-1, 1) + 1.0) * 127.5).cpu().numpy().astype(np.float32)


def vae_reconstruction_loss(vae, x: torch.Tensor, kl_weight: float, generator: torch.Generator) -> dict:
    """L1 reconstruction + a small KL to N(0, 1): the usual recipe for a latent-diffusion autoencoder, without the
    perceptual and adversarial terms (waveform images are line drawings; L1 keeps the lines sharp enough)."""
    posterior = vae.encode(x).latent_dist
    z = posterior.mean + posterior.std * torch.randn(posterior.mean.shape, generator=generator).to(x.device)
    reconstruction = vae.decode(z).sample
    l1 = (reconstruction - x).abs().mean()
    kl = posterior.kl().mean() / x[0].numel()
    return {"loss": l1 + kl_weight * kl, "l1": l1.detach(), "kl": kl.detach()}


@torch.no_grad()
def encode_images(vae, images: np.ndarray, batch_size: int, device: torch.device) -> np.ndarray:
    """Posterior means of ``images`` (uint8 (n, H, W)), unscaled, float32 (n, C, h, w)."""
    vae = vae.to(device).eval()
    out = []
    for start in range(0, len(images), batch_size):
        x = images_to_input(images[start : start + batch_size], vae.config.in_channels).to(device)
        out.append(vae.encode(x).latent_dist.mean.float().cpu())
    return torch.cat(out).numpy()


@torch.no_grad()
def decode_latents(vae, latents: torch.Tensor, batch_size: int, device: torch.device) -> np.ndarray:
    """Unscaled latents -> images on the [0, 255] scale, float32 (n, H, W)."""
    vae = vae.to(device).eval()
    out = []
    for start in range(0, len(latents), batch_size):
        out.append(output_to_images(vae.decode(latents[start : start + batch_size].to(device)).sample))
    return np.concatenate(out)


def fit_scaling_factor(latents: np.ndarray) -> float:
    """1 / std of the training latents (Rombach et al. 2022): unit-variance inputs for the flow model."""
    std = float(np.std(latents))
    if not np.isfinite(std) or std <= 0:
        raise ConfigError(f"models.vae: training latents have std {std}; the VAE did not train")
    return 1.0 / std
