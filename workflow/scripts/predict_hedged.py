# The model's test predictions blended with the partner's at the weight chosen on held-out training systems.
import json

from opir.core.h5io import provenance
from opir.core.logs import from_snakemake
from opir.evaluate.hedge import read_weight, write_hedged_predictions

log = from_snakemake(snakemake)
choice = read_weight(snakemake.input.weight)
write_hedged_predictions(
    snakemake.input.model,
    snakemake.input.partner,
    choice["weight"],
    snakemake.output[0],
    {**provenance("predict_hedged", choice, list(snakemake.input)), "held_out_groups": json.dumps(choice["groups"])},
    model=f"{snakemake.wildcards.model}_hedged",
)
log.info("%s: weight %s", snakemake.output[0], choice["weight"])
