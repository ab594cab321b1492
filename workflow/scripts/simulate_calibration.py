# The static calibration set of OpIRSpec-7K-sim (electrolytes at several salt concentrations, pure films).
from opir.core.logs import from_snakemake
from opir.simulate.calibration import simulate_calibration

log = from_snakemake(snakemake)
simulate_calibration(
    recipes=snakemake.params.electrolytes,
    solvents=snakemake.params.solvents,
    settings=snakemake.params.simulate,
    out_dir=snakemake.params.calibration_dir,
)
