# Fig. 1: one run's operando spectra at three voltages, nu(C=O) and Li2CO3 windows, voltage profile
# (opir.report.paper).
from opir.core.logs import from_snakemake
from opir.report.paper import figure1

log = from_snakemake(snakemake)
figure1(snakemake.input.samples, [snakemake.output.png, snakemake.output.pdf], snakemake.params.report)
