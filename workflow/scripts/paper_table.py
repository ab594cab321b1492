# One benchmark table (its Markdown version) as an HTML page for the Snakemake report (opir.figures.paper).
from opir.figures.paper import table_html
from opir.logs import from_snakemake

log = from_snakemake(snakemake)
table_html(snakemake.input[0], snakemake.output[0])
