# Train one neural baseline (opir.neural_baselines) on the training samples of a split.
from pathlib import Path

from opir.core.logs import from_snakemake

log = from_snakemake(snakemake)

import torch  # noqa: E402

from opir.neural_baselines.train import train_neural_baseline  # noqa: E402

torch.set_num_threads(snakemake.threads)
train_neural_baseline(
    snakemake.input.samples,
    snakemake.input.splits,
    snakemake.input.mixture,
    snakemake.wildcards.split,
    snakemake.wildcards.model,
    snakemake.params.settings,
    Path(snakemake.output.model).parent,
    snakemake.params.checkpoint_dir,
    snakemake.params.device,
    latent_h5=snakemake.input.get("latent"),
    waveform_h5=snakemake.input.get("waveform"),
)
