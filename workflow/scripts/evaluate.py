# results/predictions/{split}/{model}.h5 -> results/metrics/{split}/{model}.json: per-sample metrics and per-run
# DILATE on the split's test samples (opir.evaluate.metrics; docs/benchmark.md).
from opir.core.logs import from_snakemake
from opir.evaluate.metrics import evaluate_file

log = from_snakemake(snakemake)
evaluate_file(
    snakemake.input.predictions,
    snakemake.input.samples,
    snakemake.input.splits,
    snakemake.wildcards.split,
    snakemake.wildcards.model,
    snakemake.output[0],
    snakemake.params.dilate,
    rule=snakemake.rule,
)
