# A trained model folder made self-contained for `opir predict` (opir.forecast.package_workspace_model).
from opir.core.logs import from_snakemake
from opir.package.packaging import package_workspace_model

log = from_snakemake(snakemake)
settings = snakemake.params.package
package_workspace_model(
    ".",
    snakemake.wildcards.split,
    snakemake.wildcards.model,
    snakemake.output[0],
    calibration_draws=settings["calibration_draws"],
    calibration_samples=settings["calibration_samples"],
    device=snakemake.params.device,
)
