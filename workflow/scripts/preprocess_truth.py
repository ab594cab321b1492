# Noise-free truth of one simulated run, preprocessed with the measured run's estimates (opir.preprocess.spectra).
from opir.core.logs import from_snakemake
from opir.preprocess.spectra import preprocess_truth_run

log = from_snakemake(snakemake)
preprocess_truth_run(
    snakemake.input.ingest,
    snakemake.input.truth,
    snakemake.output[0],
    snakemake.params.preprocess,
    rule=snakemake.rule,
)
