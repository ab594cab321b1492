# Every preprocessed run -> results/dataset/samples.h5 (opir.preprocess.dataset).
from opir.core.logs import from_snakemake
from opir.preprocess.dataset import assemble

log = from_snakemake(snakemake)
assemble(
    list(snakemake.input),
    snakemake.output[0],
    snakemake.params.preprocess,
    snakemake.params.train_systems,
    rule=snakemake.rule,
)
