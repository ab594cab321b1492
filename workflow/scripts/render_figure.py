# The rendering illustration: a spectrum, its waveform image and reconstruction, its Chemical Flow and
# variation images (opir.report.render).
from opir.core.logs import from_snakemake
from opir.report.render import render_illustration

log = from_snakemake(snakemake)
render_illustration(snakemake.input.samples, snakemake.output.png, snakemake.params.render)
