# Rules of the baselines stage: OpIRBench reference rows (random, persistence, noise floor) and the non-neural
# baselines (nearest training trajectory, per-wavenumber voltage regression), each written as a predictions file
# results/predictions/{split}/{model}.h5 (opir.baselines; docs/benchmark.md, docs/formats.md "Predictions").
# Their names are the library's (opir.baselines), in REFERENCE_MODELS and PREDICTION_MODELS (common.smk).
DATASET_FILES = {
    "samples": SAMPLES_H5,
    "splits": SPLITS_JSON,
}
# the nearest trajectory's embedding picks its input file; the job reads the rest of its section
NEAREST_TRAJECTORY = config["evaluate"]["nearest_trajectory"]


rule baseline_reference:
    input:
        **DATASET_FILES,
    output:
        PREDICTIONS_H5.format(split="{split}", model="{reference}"),
    log:
        f"{LOGS}/baselines/{{split}}/{{reference}}.log",
    benchmark:
        f"{BENCH}/baselines/{{split}}/{{reference}}.tsv"
    wildcard_constraints:
        reference="random|persistence",
    conda:
        "../../envs/opir.yaml"
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        model=lambda wildcards: wildcards.reference,
        settings=lambda wildcards: config["evaluate"].get(wildcards.reference, {}),
    script:
        "../scripts/baseline.py"


rule baseline_noise_floor:
    input:
        **DATASET_FILES,
        truth=TRUTH_H5,
    output:
        PREDICTIONS_H5.format(split="{split}", model="noise_floor"),
    log:
        f"{LOGS}/baselines/{{split}}/noise_floor.log",
    benchmark:
        f"{BENCH}/baselines/{{split}}/noise_floor.tsv"
    conda:
        "../../envs/opir.yaml"
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        model="noise_floor",
        settings={},
    script:
        "../scripts/baseline.py"


rule baseline_nearest_trajectory:
    input:
        **DATASET_FILES,
        embedding=MIXTURE_EMBEDDING_FILES[NEAREST_TRAJECTORY["embedding"]],
    output:
        PREDICTIONS_H5.format(split="{split}", model="nearest_trajectory"),
    log:
        f"{LOGS}/baselines/{{split}}/nearest_trajectory.log",
    benchmark:
        f"{BENCH}/baselines/{{split}}/nearest_trajectory.tsv"
    conda:
        "../../envs/opir.yaml"
    resources:
        mem_mb=4000,
        runtime=30,
    params:
        model="nearest_trajectory",
        settings=config_slice("evaluate.nearest_trajectory", exclude=["embedding"]),
    script:
        "../scripts/baseline.py"


# the pooled fit and the per-run fit (random split only) share their settings
rule baseline_voltage_regression:
    input:
        **DATASET_FILES,
    output:
        PREDICTIONS_H5.format(split="{split}", model="{regression}"),
    log:
        f"{LOGS}/baselines/{{split}}/{{regression}}.log",
    benchmark:
        f"{BENCH}/baselines/{{split}}/{{regression}}.tsv"
    wildcard_constraints:
        regression="voltage_regression|voltage_regression_per_run",
    conda:
        "../../envs/opir.yaml"
    resources:
        mem_mb=4000,
        runtime=30,
    params:
        model=lambda wildcards: wildcards.regression,
        settings=config["evaluate"]["voltage_regression"],
    script:
        "../scripts/baseline.py"


rule baseline_within_run_smoother:
    input:
        **DATASET_FILES,
    output:
        PREDICTIONS_H5.format(split="{split}", model="within_run_smoother"),
    log:
        f"{LOGS}/baselines/{{split}}/within_run_smoother.log",
    benchmark:
        f"{BENCH}/baselines/{{split}}/within_run_smoother.tsv"
    wildcard_constraints:
        # a row of the random split only (opir.baselines.regression.baseline_splits)
        split="random",
    conda:
        "../../envs/opir.yaml"
    resources:
        mem_mb=4000,
        runtime=30,
    params:
        model="within_run_smoother",
        settings=config["evaluate"]["within_run_smoother"],
    script:
        "../scripts/baseline.py"
