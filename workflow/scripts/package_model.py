# A trained model folder made self-contained for `opir predict`, from the rule's inputs
# (opir.package.packaging.package_trained_model).
from pathlib import Path

from opir.core.logs import from_snakemake
from opir.package.packaging import package_trained_model

log = from_snakemake(snakemake)
settings = snakemake.params.package
package_trained_model(
    Path(snakemake.input.meta).parent,
    snakemake.input.samples,
    snakemake.input.splits,
    snakemake.input.get("vae"),
    snakemake.input.mixture,
    snakemake.output[0],
    calibration_draws=settings["calibration_draws"],
    calibration_samples=settings["calibration_samples"],
    device=snakemake.params.device,
    electrodes_h5=snakemake.input.electrodes,
    hedge_json=snakemake.input.get("hedge"),
    held_out=list(
        zip(
            snakemake.input.get("held_out_predictions", []),
            snakemake.input.get("held_out_partner", []),
            strict=True,
        )
    ),
)
