# Figure 2 (SNR and voltage histograms, RMS spectral change vs voltage) from samples.h5 (opir.figures.data).
from opir.figures.data import figure2
from opir.logs import from_snakemake

log = from_snakemake(snakemake)
figure2(snakemake.input[0], snakemake.output.png, snakemake.output.pdf)
