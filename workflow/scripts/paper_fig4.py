# Fig. 4: ground truth, ABCC and the baselines as wavenumber x voltage maps on one held-out run of the system
# split, one colour scale (opir.report.paper).
from opir.core.logs import from_snakemake
from opir.report.paper import figure4

log = from_snakemake(snakemake)
figure4(
    snakemake.input.samples,
    snakemake.input.splits,
    dict(zip(snakemake.params.models, snakemake.input.predictions, strict=True)),
    [snakemake.output.png, snakemake.output.pdf],
    snakemake.params.report,
    split=snakemake.params.split,
    labels=snakemake.params.labels,
)
