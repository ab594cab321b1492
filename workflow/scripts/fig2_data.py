# Figure 2 (SNR and voltage histograms, RMS spectral change vs voltage) from samples.h5 (opir.report.data).
from opir.core.logs import from_snakemake
from opir.report.data import figure2

log = from_snakemake(snakemake)
figure2(snakemake.input[0], snakemake.output.png, snakemake.output.pdf)
