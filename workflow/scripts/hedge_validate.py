# One held-out group: the model trained without it and the partner fitted without it predict its samples; every
# blend weight is scored there (opir.evaluate.hedge.validate_group).
from pathlib import Path

from opir.core.logs import from_snakemake

log = from_snakemake(snakemake)

import torch  # noqa: E402

from opir.evaluate.hedge import validate_group  # noqa: E402

torch.set_num_threads(snakemake.threads)
given = dict(snakemake.input.items())
record = validate_group(
    given["samples"],
    given["mixture"],
    given["splits"],
    Path(given["model"]).parent,
    snakemake.params.predict,
    snakemake.params.partner,
    snakemake.params.partner_settings,
    snakemake.params.weights,
    snakemake.params.dilate,
    snakemake.output.predictions,
    snakemake.output.partner,
    snakemake.output.curve,
    snakemake.params.device,
    electrodes_h5=given.get("electrodes"),
)
log.info("MAE by weight on %d held-out samples: %s", record["n_validation"],
         {w: round(m["mae"], 5) for w, m in record["curve"].items()})
