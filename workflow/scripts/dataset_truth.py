# Preprocessed noise-free truth of every run -> results/dataset/truth.h5, row-aligned with samples.h5.
from opir.dataset import assemble_truth
from opir.logs import from_snakemake

log = from_snakemake(snakemake)
assemble_truth(list(snakemake.input.truth), snakemake.input.samples, snakemake.output[0], rule=snakemake.rule)
