# The rendering illustration: a spectrum, its waveform image and reconstruction, its Chemical Flow and
# variation images (opir.figures.render).
from opir.figures.render import render_illustration
from opir.logs import from_snakemake

log = from_snakemake(snakemake)
render_illustration(snakemake.input.samples, snakemake.output.png, snakemake.params.render)
