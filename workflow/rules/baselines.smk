# Rules of the baselines stage: OpIRBench reference rows (random, persistence, noise floor) and the non-neural
# baselines (nearest training trajectory, per-wavenumber voltage regression), each written as a predictions file
# results/predictions/{split}/{model}.h5 (opir.baselines; docs/benchmark.md, docs/formats.md "Predictions").
#
# PREDICTION_MODELS lists every model that writes results/predictions/{split}/{model}.h5 for both splits; the
# evaluate stage scores each one and gathers them into Tables 2 and 3, so adding a model adds a row. It is
# defined here because this file is included before latent/train/predict/evaluate: a model's rule file appends
# its name (`PREDICTION_MODELS.append("abcc")`) and provides a rule that makes its predictions file.
PREDICTION_MODELS = ["nearest_trajectory", "voltage_regression"]
# Reference rows close every table; the noise floor exists only where the simulator's truth does (WITH_TRUTH,
# preprocess.smk).
REFERENCE_MODELS = ["random", "persistence"] + (["noise_floor"] if WITH_TRUTH else [])
DATASET_FILES = {
    "samples": "results/dataset/samples.h5",
    "splits": "results/dataset/splits.json",
}


rule baseline_reference:
    input:
        **DATASET_FILES,
    output:
        "results/predictions/{split}/{reference}.h5",
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
        truth="results/dataset/truth.h5",
    output:
        "results/predictions/{split}/noise_floor.h5",
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
        embedding=mixture_embedding_file(
            config["evaluate"]["nearest_trajectory"]["embedding"]
        ),
    output:
        "results/predictions/{split}/nearest_trajectory.h5",
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
        settings=config["evaluate"]["nearest_trajectory"],
    script:
        "../scripts/baseline.py"


rule baseline_voltage_regression:
    input:
        **DATASET_FILES,
    output:
        "results/predictions/{split}/voltage_regression.h5",
    log:
        f"{LOGS}/baselines/{{split}}/voltage_regression.log",
    benchmark:
        f"{BENCH}/baselines/{{split}}/voltage_regression.tsv"
    conda:
        "../../envs/opir.yaml"
    resources:
        mem_mb=4000,
        runtime=30,
    params:
        model="voltage_regression",
        settings=config["evaluate"]["voltage_regression"],
    script:
        "../scripts/baseline.py"
