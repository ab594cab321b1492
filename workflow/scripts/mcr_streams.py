# samples.h5 + references.h5 -> streams.h5 and flagged.tsv: C_elec, C_SEI, both streams, residual (opir.mcr).
from opir.core.logs import from_snakemake
from opir.mcr.streams import build_streams

log = from_snakemake(snakemake)
build_streams(
    snakemake.input.samples,
    snakemake.input.references,
    snakemake.output.streams,
    snakemake.output.flagged,
    snakemake.params.mcr,
    rule=snakemake.rule,
)
