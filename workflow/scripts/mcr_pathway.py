# One run's sequence, measured and predicted -> SEI pathway by MCR-ALS + Fig. 5 (opir.mcr.build_pathway).
from opir.logs import from_snakemake
from opir.mcr import build_pathway

log = from_snakemake(snakemake)
build_pathway(
    snakemake.input.samples,
    snakemake.input.references,
    snakemake.input.streams,
    snakemake.input.get("predictions"),
    snakemake.output.pathway,
    snakemake.output.png,
    snakemake.output.pdf,
    snakemake.params.mcr,
    rule=snakemake.rule,
)
