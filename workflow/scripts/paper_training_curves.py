# The training curves of every trained model (ABCC variants and the VAEs, per split) in one figure
# (opir.figures.paper).
from opir.figures.paper import training_curves
from opir.logs import from_snakemake

log = from_snakemake(snakemake)
training_curves(
    dict(zip(snakemake.params.names, snakemake.params.curves, strict=True)),
    [snakemake.output.png, snakemake.output.pdf],
    snakemake.params.report,
)
