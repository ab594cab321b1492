# Fig. 5: the SEI pathway of one run, measured and predicted, from the mcr_pathway rule's file
# (opir.report.mcr.figure5).
from opir.core.logs import from_snakemake
from opir.report.mcr import figure5

log = from_snakemake(snakemake)
figure5(snakemake.input.pathway, snakemake.input.references, [snakemake.output.png, snakemake.output.pdf])
