# The test targets' own latents of one stream, decoded and read back: the latent models' read-out bound.
from opir.core.logs import from_snakemake

log = from_snakemake(snakemake)

import torch  # noqa: E402

from opir.core.h5io import provenance  # noqa: E402
from opir.predict.bound import vae_readout_bound  # noqa: E402

torch.set_num_threads(snakemake.threads)
vae_readout_bound(
    snakemake.input.samples,
    snakemake.input.splits,
    snakemake.wildcards.split,
    snakemake.wildcards.stream,
    snakemake.input.images,
    snakemake.input.latent,
    snakemake.input.vae,
    snakemake.output[0],
    snakemake.params.background_grey,
    snakemake.params.batch_size,
    snakemake.params.device,
    attrs=provenance("vae_readout_bound", dict(snakemake.params), list(snakemake.input)),
)
