# calibration set -> results/mcr/references.h5: S_elec and S_SEI by MCR-ALS (opir.mcr.references.build_references).
from opir.core.logs import from_snakemake
from opir.mcr.references import build_references

log = from_snakemake(snakemake)
build_references(
    snakemake.params.calibration_dir,
    snakemake.output[0],
    snakemake.params.mcr,
    snakemake.params.preprocess,
    rule=snakemake.rule,
)
