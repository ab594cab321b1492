# One image stream (waveform, chemical_flow or variation) of results/dataset/samples.h5 (opir.render).
from opir.core.logs import from_snakemake
from opir.render.images import render_stream

log = from_snakemake(snakemake)
render_stream(
    snakemake.wildcards.stream,
    snakemake.input.samples,
    snakemake.output[0],
    snakemake.params.render,
    rule=snakemake.rule,
)
