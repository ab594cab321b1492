# Fig. 1: one run's operando spectra at three voltages, nu(C=O) and Li2CO3 windows, voltage profile
# (opir.figures.paper).
from opir.figures.paper import figure1
from opir.logs import from_snakemake

log = from_snakemake(snakemake)
figure1(snakemake.input.samples, [snakemake.output.png, snakemake.output.pdf], snakemake.params.report)
