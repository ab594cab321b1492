# results/dataset/samples.h5 -> results/dataset/splits.json: random and system splits (opir.preprocess.dataset).
from opir.core.logs import from_snakemake
from opir.preprocess.dataset import write_splits

log = from_snakemake(snakemake)
write_splits(snakemake.input[0], snakemake.output[0], snakemake.params.dataset, snakemake.params.test_systems)
