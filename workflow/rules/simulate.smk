# Rules of the simulate stage: OpIRSpec-7K-sim, one job per run (a system's runs share its samples) and one for
# the static calibration set (opir.simulate, opir.formats.opus_writer; docs/simulator.md, docs/formats.md "Raw operando runs").
# With data.source 'opus' the raw data are the user's, and these rules do not exist.
RAW_DIR = config["data"]["raw_dir"]
CALIBRATION_DIR = config["data"]["calibration_dir"]
SIMULATED = config["data"]["source"] == "simulated"

if SIMULATED and config["data"]["truth_dir"] is None:
    raise WorkflowError(
        "config data.truth_dir is null, but data.source is 'simulated': the simulator writes its truth there"
    )


if SIMULATED:

    rule simulate:
        output:
            spectra=directory(f"{RAW_DIR}/{{system}}/{{run}}/spectra"),
            potentiostat=f"{RAW_DIR}/{{system}}/{{run}}/potentiostat.mpt",
            manifest=f"{RAW_DIR}/{{system}}/{{run}}/manifest.tsv",
            truth=f"{config['data']['truth_dir']}/{{system}}/{{run}}.h5",
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
            simulate=config["simulate"],
            # the system's sheet row: a change there reruns only this system's runs
            system=lambda wildcards: SYSTEMS.loc[wildcards.system].to_dict(),
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
            simulate=config["simulate"],
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

    FINAL_TARGETS.extend(per_run(f"{RAW_DIR}/{{system}}/{{run}}/manifest.tsv"))
    FINAL_TARGETS.extend(
        per_run(f"{config['data']['truth_dir']}/{{system}}/{{run}}.h5")
    )
    FINAL_TARGETS.append(f"{CALIBRATION_DIR}/calibration.tsv")
