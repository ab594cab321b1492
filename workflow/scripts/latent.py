# Latents of every image of one stream (waveform or variation) with the split's VAE.
from opir.core.logs import from_snakemake

log = from_snakemake(snakemake)

import torch  # noqa: E402

from opir.latent.vae import encode_waveforms  # noqa: E402

torch.set_num_threads(snakemake.threads)
encode_waveforms(
    snakemake.input.images,
    snakemake.input.vae,
    snakemake.output[0],
    snakemake.params.batch_size,
    snakemake.params.device,
    rule="latent",
    config_slice={"batch_size": snakemake.params.batch_size},
)
