# Simulate one operando run of OpIRSpec-7K-sim (OPUS files, potentiostat log, manifest, truth).
from opir.core.logs import from_snakemake
from opir.simulate.runs import simulate_system_run

log = from_snakemake(snakemake)
simulate_system_run(
    system=snakemake.params.system,
    run_id=snakemake.wildcards.run,
    runs=snakemake.params.runs,
    settings=snakemake.params.simulate,
    run_dir=snakemake.params.run_dir,
    truth_path=snakemake.output.truth,
    rule=snakemake.rule,
)
