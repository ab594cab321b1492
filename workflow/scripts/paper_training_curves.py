# The training curves of every trained model (ABCC variants and the VAEs, per split) in one figure
# (opir.report.paper).
from opir.core.logs import from_snakemake
from opir.report.paper import training_curves

log = from_snakemake(snakemake)
training_curves(
    dict(zip(snakemake.params.names, snakemake.params.curves, strict=True)),
    [snakemake.output.png, snakemake.output.pdf],
    snakemake.params.report,
)
