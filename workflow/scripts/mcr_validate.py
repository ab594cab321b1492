# streams.h5 vs the simulator's true concentrations -> results/mcr/validation.json (R2 per stream; opir.mcr).
from opir.core.logs import from_snakemake
from opir.mcr.validate import build_validation

log = from_snakemake(snakemake)
runs = [tuple(run) for run in snakemake.params.runs]
build_validation(
    snakemake.input.streams,
    dict(zip(runs, snakemake.input.truth, strict=True)),
    dict(zip(runs, snakemake.input.preprocessed, strict=True)),
    snakemake.output[0],
)
