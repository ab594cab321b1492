# One benchmark table (its Markdown version) as an HTML page for the Snakemake report (opir.report.paper).
from opir.core.logs import from_snakemake
from opir.report.paper import table_html

log = from_snakemake(snakemake)
table_html(snakemake.input[0], snakemake.output[0])
