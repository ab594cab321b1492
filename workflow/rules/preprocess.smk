# Rules of the preprocess stage: per-run preprocessing, the sample table, the OpIRBench splits and Fig. 2
# (opir.preprocess.spectra, opir.preprocess.dataset, opir.report.data; docs/preprocessing.md, docs/formats.md).
# the per-run jobs never read the clip quantiles (global, applied by the dataset rule): changing them must not
# rerun every run
PER_RUN_PREPROCESS = config_slice("preprocess", exclude=["clip_quantiles"])


rule preprocess:
    input:
        rules.ingest.output.h5,
    output:
        PREPROCESSED_H5,
    log:
        f"{LOGS}/preprocess/{{system}}/{{run}}.log",
    benchmark:
        f"{BENCH}/preprocess/{{system}}/{{run}}.tsv"
    conda:
        "../../envs/opir.yaml"
    resources:
        mem_mb=1000,
        runtime=30,
    params:
        preprocess=PER_RUN_PREPROCESS,
    script:
        "../scripts/preprocess.py"


rule preprocess_truth:
    input:
        ingest=rules.ingest.output.h5,
        truth=TRUTH_RUN_H5,
    output:
        "results/preprocessed_truth/{system}/{run}.h5",
    log:
        f"{LOGS}/preprocess_truth/{{system}}/{{run}}.log",
    benchmark:
        f"{BENCH}/preprocess_truth/{{system}}/{{run}}.tsv"
    conda:
        "../../envs/opir.yaml"
    resources:
        mem_mb=1000,
        runtime=30,
    params:
        preprocess=PER_RUN_PREPROCESS,
    script:
        "../scripts/preprocess_truth.py"


rule dataset:
    input:
        per_run(PREPROCESSED_H5),
    output:
        SAMPLES_H5,
    log:
        f"{LOGS}/dataset/samples.log",
    benchmark:
        f"{BENCH}/dataset/samples.tsv"
    conda:
        "../../envs/opir.yaml"
    resources:
        mem_mb=2000,
        runtime=30,
    params:
        preprocess=config["preprocess"],
        train_systems=TRAIN_SYSTEMS,
    script:
        "../scripts/dataset.py"


rule dataset_truth:
    input:
        truth=per_run(rules.preprocess_truth.output[0]),
        samples=SAMPLES_H5,
    output:
        TRUTH_H5,
    log:
        f"{LOGS}/dataset/truth.log",
    benchmark:
        f"{BENCH}/dataset/truth.tsv"
    conda:
        "../../envs/opir.yaml"
    resources:
        mem_mb=2000,
        runtime=30,
    script:
        "../scripts/dataset_truth.py"


rule splits:
    input:
        SAMPLES_H5,
    output:
        SPLITS_JSON,
    log:
        f"{LOGS}/dataset/splits.log",
    benchmark:
        f"{BENCH}/dataset/splits.tsv"
    conda:
        "../../envs/opir.yaml"
    resources:
        mem_mb=1000,
        runtime=10,
    params:
        dataset=config["dataset"],
        test_systems=TEST_SYSTEMS,
    script:
        "../scripts/dataset_splits.py"


rule electrodes:
    output:
        ELECTRODES_H5,
    log:
        f"{LOGS}/dataset/electrodes.log",
    benchmark:
        f"{BENCH}/dataset/electrodes.tsv"
    conda:
        "../../envs/opir.yaml"
    resources:
        mem_mb=500,
        runtime=5,
    params:
        # the sheet's descriptor columns: a change there rewrites only this file (and what reads it)
        systems=SYSTEMS[
            ["system_id", "working_electrode", *DESCRIPTOR_COLUMNS]
        ].to_dict("records"),
    script:
        "../scripts/dataset_electrodes.py"


rule fig2_data:
    input:
        SAMPLES_H5,
    output:
        png=report(
            "results/figures/fig2_data.png",
            caption="../report/fig2_data.rst",
            category="Data",
        ),
        pdf="results/figures/fig2_data.pdf",
    log:
        f"{LOGS}/figures/fig2_data.log",
    benchmark:
        f"{BENCH}/figures/fig2_data.tsv"
    conda:
        "../../envs/opir.yaml"
    resources:
        mem_mb=1000,
        runtime=10,
    script:
        "../scripts/fig2_data.py"


FINAL_TARGETS.extend(
    [
        SAMPLES_H5,
        SPLITS_JSON,
        ELECTRODES_H5,
        "results/figures/fig2_data.png",
        "results/figures/fig2_data.pdf",
    ]
)
if WITH_TRUTH:
    FINAL_TARGETS.append(TRUTH_H5)
