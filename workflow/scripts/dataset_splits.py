# results/dataset/samples.h5 -> results/dataset/splits.json: random and system splits (opir.dataset).
from opir.dataset import write_splits
from opir.logs import from_snakemake

log = from_snakemake(snakemake)
write_splits(snakemake.input[0], snakemake.output[0], snakemake.params.dataset, snakemake.params.test_systems)
