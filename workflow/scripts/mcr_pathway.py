# One run's sequence, measured and predicted -> SEI pathway by MCR-ALS (opir.mcr.pathway.build_pathway).
from opir.core.logs import from_snakemake
from opir.mcr.pathway import build_pathway

log = from_snakemake(snakemake)
build_pathway(
    snakemake.input.samples,
    snakemake.input.references,
    snakemake.input.streams,
    snakemake.input.get("predictions"),
    snakemake.output.pathway,
    snakemake.params.mcr,
    rule=snakemake.rule,
)
