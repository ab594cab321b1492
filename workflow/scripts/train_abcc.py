# Train one ABCC model (conditional MeanFlow on a SiT backbone) on the training samples of a split.
from pathlib import Path

from opir.logs import from_snakemake

log = from_snakemake(snakemake)

import torch  # noqa: E402

from opir.models.pipeline import train_abcc  # noqa: E402

torch.set_num_threads(snakemake.threads)
train_abcc(
    snakemake.input.samples,
    snakemake.input.latent,
    snakemake.input.mixture,
    snakemake.input.splits,
    snakemake.wildcards.split,
    snakemake.wildcards.model,
    snakemake.params.settings,
    Path(snakemake.output.model).parent,
    snakemake.params.checkpoint_dir,
    snakemake.params.device,
    waveform_h5=snakemake.input.waveform,
    metadata={"embedding_file": snakemake.input.mixture},
)
