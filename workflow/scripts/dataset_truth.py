# Preprocessed noise-free truth of every run -> results/dataset/truth.h5, row-aligned with samples.h5.
from opir.core.logs import from_snakemake
from opir.preprocess.dataset import assemble_truth

log = from_snakemake(snakemake)
assemble_truth(list(snakemake.input.truth), snakemake.input.samples, snakemake.output[0], rule=snakemake.rule)
