# The held-out groups' validation curves -> the blend weight with the least mean MAE, and the partner it blends
# (opir.evaluate.hedge).
import json
from pathlib import Path

from opir.core.logs import from_snakemake
from opir.evaluate.hedge import write_weight

log = from_snakemake(snakemake)
curves = {
    "+".join(record["held_out"]): record["curve"]
    for record in (json.loads(Path(path).read_text()) for path in snakemake.input)
}
choice = write_weight(curves, snakemake.params.partner, snakemake.params.partner_settings, snakemake.output[0])
log.info("blend weight %s (mean MAE by weight: %s)", choice["weight"], choice["mean_curve"])
