# results/dataset/{samples.h5,splits.json} (+ truth.h5 or mixture embeddings) -> results/predictions/{split}/{model}.h5
# for a reference row or a non-neural baseline, fitted on the training split only (opir.baselines).
from opir.baselines.regression import predict_baseline
from opir.core.logs import from_snakemake

log = from_snakemake(snakemake)
predict_baseline(
    snakemake.params.model,
    snakemake.input.samples,
    snakemake.input.splits,
    snakemake.wildcards.split,
    snakemake.output[0],
    snakemake.params.settings,
    truth_path=snakemake.input.get("truth"),
    embedding_path=snakemake.input.get("embedding"),
    rule=snakemake.rule,
)
