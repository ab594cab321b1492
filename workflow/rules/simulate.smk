# Rules of the simulate stage: OpIRSpec-7K-sim, one job per run (a system's runs share its samples) and one for
# the static calibration set (opir.simulate, opir.formats.opus_writer; docs/simulator.md, docs/formats.md "Raw
# operando runs").
# With data.source 'opus' the raw data are the user's, and these rules do not exist.
RAW_DIR = config["data"]["raw_dir"]
CALIBRATION_DIR = config["data"]["calibration_dir"]
SIMULATED = config["data"]["source"] == "simulated"

if SIMULATED and config["data"]["truth_dir"] is None:
    raise WorkflowError(
        "config data.truth_dir is null, but data.source is 'simulated': the simulator writes its truth there"
    )
# what each job reads (opir.simulate): a run every key but the calibration set's; the calibration set its own
# section, the instrument axis, the SNR window, the seed and the clock; a run the columns of its system's sheet row
# that describe the cell (not its role in the system split)
SIMULATE_RUN_PARAMS = config_slice("simulate", exclude=["calibration"])
SIMULATE_CALIBRATION_PARAMS = config_slice(
    "simulate",
    "seed",
    "wavenumber",
    "snr_window_cm1",
    "start_utc",
    "utc_offset_hours",
    "calibration",
)
SIMULATED_SYSTEM_COLUMNS = [
    "system_id",
    "working_electrode",
    "counter_electrode",
    "electrolyte",
    "protocol",
    "sim_samples",
    *DESCRIPTOR_COLUMNS,
]


if SIMULATED:

    rule simulate:
        output:
            spectra=directory(f"{RAW_DIR}/{{system}}/{{run}}/spectra"),
            potentiostat=f"{RAW_DIR}/{{system}}/{{run}}/potentiostat.mpt",
            manifest=f"{RAW_DIR}/{{system}}/{{run}}/manifest.tsv",
            truth=TRUTH_RUN_H5,
        log:
            f"{LOGS}/simulate/{{system}}/{{run}}.log",
        benchmark:
            f"{BENCH}/simulate/{{system}}/{{run}}.tsv"
        conda:
            "../../envs/opir.yaml"
        resources:
            mem_mb=3000,
            runtime=20,
        params:
            simulate=SIMULATE_RUN_PARAMS,
            # the system's sheet row: a change there reruns only this system's runs
            system=lambda wildcards: SYSTEMS.loc[
                wildcards.system, SIMULATED_SYSTEM_COLUMNS
            ].to_dict(),
            runs=lambda wildcards: runs_of(wildcards.system),
            run_dir=lambda wildcards, output: str(Path(output.manifest).parent),
        script:
            "../scripts/simulate_run.py"

    rule simulate_calibration:
        output:
            table=f"{CALIBRATION_DIR}/calibration.tsv",
            spectra=directory(f"{CALIBRATION_DIR}/spectra"),
        log:
            f"{LOGS}/simulate/calibration.log",
        benchmark:
            f"{BENCH}/simulate/calibration.tsv"
        conda:
            "../../envs/opir.yaml"
        resources:
            mem_mb=1000,
            runtime=10,
        params:
            simulate=SIMULATE_CALIBRATION_PARAMS,
            electrolytes=sorted(set(SYSTEMS.electrolyte)),
            solvents=sorted(
                {
                    name
                    for recipe in SHEETS.recipes.values()
                    for name in recipe.components
                }
            ),
            calibration_dir=lambda wildcards, output: str(Path(output.table).parent),
        script:
            "../scripts/simulate_calibration.py"

    FINAL_TARGETS.extend(per_run(rules.simulate.output.manifest))
    FINAL_TARGETS.extend(per_run(rules.simulate.output.truth))
    FINAL_TARGETS.append(rules.simulate_calibration.output.table)
