# Train one ABCC model (conditional MeanFlow on a SiT backbone) on the training samples of a split.
from pathlib import Path

from opir.core.logs import from_snakemake

log = from_snakemake(snakemake)

import torch  # noqa: E402

from opir.train.abcc import train_abcc  # noqa: E402

torch.set_num_threads(snakemake.threads)
given = dict(snakemake.input.items())
train_abcc(
    given["samples"],
    given.get("latent"),
    given["mixture"],
    given["splits"],
    snakemake.wildcards.split,
    snakemake.wildcards.model,
    snakemake.params.settings,
    Path(snakemake.output.model).parent,
    snakemake.params.checkpoint_dir,
    snakemake.params.device,
    waveform_h5=given.get("waveform"),
    metadata={"embedding_file": given["mixture"]},
    residual_h5=given.get("residual"),
    streams_h5=given.get("streams"),
    vae_dir=given.get("vae"),
    variation_h5=given.get("variation"),
    electrodes_h5=given.get("electrodes"),
)
