# Every preprocessed run -> results/dataset/samples.h5 (opir.dataset).
from opir.dataset import assemble
from opir.logs import from_snakemake

log = from_snakemake(snakemake)
assemble(
    list(snakemake.input),
    snakemake.output[0],
    snakemake.params.preprocess,
    snakemake.params.train_systems,
    rule=snakemake.rule,
)
