# One raw run (OPUS files + potentiostat log) -> results/ingest/{system}/{run}.h5 (opir.ingest).
from opir.core.logs import from_snakemake
from opir.ingest.runs import ingest_run_dir

log = from_snakemake(snakemake)
ingest_run_dir(
    snakemake.params.run_dir,
    snakemake.output.h5,
    snakemake.output.rejected,
    snakemake.params.ingest,
    system_id=snakemake.wildcards.system,
    run_id=snakemake.wildcards.run,
    rule=snakemake.rule,
)
