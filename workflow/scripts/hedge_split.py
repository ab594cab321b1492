# results/dataset/{samples.h5,splits.json} -> results/hedge/system/{model}/{group}/splits.json: the system split's
# training samples, the group's systems held out as the test (opir.evaluate.hedge).
from opir.core.logs import from_snakemake
from opir.evaluate.hedge import write_held_out_splits

log = from_snakemake(snakemake)
counts = write_held_out_splits(
    snakemake.input.samples,
    snakemake.input.splits,
    snakemake.params.held_out,
    snakemake.output[0],
)
log.info("held out %s: %s", ", ".join(snakemake.params.held_out), counts)
