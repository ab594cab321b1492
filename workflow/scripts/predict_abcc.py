# k draws per test sample of one ABCC model, in the predictions format.
from pathlib import Path

from opir.core.logs import from_snakemake

log = from_snakemake(snakemake)

import torch  # noqa: E402

from opir.core.h5io import provenance  # noqa: E402
from opir.predict.abcc import predict_abcc  # noqa: E402

torch.set_num_threads(snakemake.threads)
given = dict(snakemake.input.items())
predict_abcc(
    given["samples"],
    given.get("latent"),
    given["mixture"],
    given["splits"],
    given.get("waveform"),
    snakemake.wildcards.split,
    Path(given["model"]).parent,
    given.get("vae"),
    snakemake.output[0],
    snakemake.params.predict,
    snakemake.params.device,
    attrs=provenance("predict_abcc", snakemake.params.predict, list(snakemake.input)),
    electrodes_h5=given.get("electrodes"),
)
