# streams.h5 vs the simulator's true concentrations -> results/mcr/validation.json (R2 per stream; opir.mcr).
from opir.logs import from_snakemake
from opir.mcr import build_validation

log = from_snakemake(snakemake)
build_validation(
    snakemake.input.streams,
    snakemake.params.truth_dir,
    dict(zip(map(tuple, snakemake.params.runs), snakemake.input.preprocessed, strict=True)),
    snakemake.output[0],
)
