# results/metrics/{split}/{model}.json of every model -> one OpIRBench table as CSV, Markdown and LaTeX
# (opir.evaluate.tables; docs/benchmark.md).
from opir.core.logs import from_snakemake
from opir.evaluate.tables import write_benchmark_table

log = from_snakemake(snakemake)
write_benchmark_table(
    dict(zip(snakemake.params.models, snakemake.input, strict=True)),
    [snakemake.output.csv, snakemake.output.md, snakemake.output.tex],
    snakemake.params.caption,
    snakemake.params.label,
    snakemake.params.labels,
    snakemake.params.replicates,
)
