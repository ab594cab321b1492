# Predictions of one neural baseline for the test samples of a split, in the predictions format.
from pathlib import Path

from opir.core.logs import from_snakemake

log = from_snakemake(snakemake)

import torch  # noqa: E402

from opir.core.h5io import provenance  # noqa: E402
from opir.neural_baselines.predict import predict_neural_baseline  # noqa: E402

torch.set_num_threads(snakemake.threads)
predict_neural_baseline(
    snakemake.input.samples,
    snakemake.input.splits,
    snakemake.input.mixture,
    snakemake.wildcards.split,
    Path(snakemake.input.model).parent,
    snakemake.output[0],
    snakemake.params.predict,
    snakemake.params.device,
    latent_h5=snakemake.input.get("latent"),
    waveform_h5=snakemake.input.get("waveform"),
    vae_dir=snakemake.input.get("vae"),
    attrs=provenance(
        snakemake.rule,
        snakemake.params.predict,
        list(snakemake.input),
    ),
)
