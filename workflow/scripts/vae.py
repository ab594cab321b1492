# The split's VAE: a local pretrained AutoencoderKL, or a small one trained on its training images.
from opir.core.logs import from_snakemake

log = from_snakemake(snakemake)

import torch  # noqa: E402

from opir.latent.vae import build_or_train_vae  # noqa: E402

torch.set_num_threads(snakemake.threads)
build_or_train_vae(
    snakemake.input.waveform,
    snakemake.input.samples,
    snakemake.input.splits,
    snakemake.wildcards.split,
    snakemake.output[0],
    snakemake.params.vae,
    snakemake.params.checkpoint_dir,
    snakemake.params.device,
    extra_images_h5=[snakemake.input[key] for key in ("variation",) if key in snakemake.input.keys()],
)
