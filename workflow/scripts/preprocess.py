# results/ingest/{system}/{run}.h5 -> results/preprocessed/{system}/{run}.h5 (opir.preprocess.spectra).
from opir.core.logs import from_snakemake
from opir.preprocess.spectra import preprocess_run

log = from_snakemake(snakemake)
preprocess_run(snakemake.input[0], snakemake.output[0], snakemake.params.preprocess, rule=snakemake.rule)
