# Rules of the evaluate stage: score every predictions file the same way (opir.evaluate.metrics) and gather the scores
# into the OpIRBench tables (opir.evaluate.tables; docs/benchmark.md, docs/formats.md "Predictions, metrics and tables").
# The rows of Tables 2 and 3 are PREDICTION_MODELS + REFERENCE_MODELS (baselines.smk, extended by the model
# stages); Table 4 lists `evaluate.ablation_models`. The lambdas run at DAG time, after every include appended.
from opir.evaluate.tables import TABLES as BENCHMARK_TABLES, table_models


rule evaluate:
    input:
        predictions="results/predictions/{split}/{model}.h5",
        samples="results/dataset/samples.h5",
        splits="results/dataset/splits.json",
    output:
        "results/metrics/{split}/{model}.json",
    log:
        f"{LOGS}/evaluate/{{split}}/{{model}}.log",
    benchmark:
        f"{BENCH}/evaluate/{{split}}/{{model}}.tsv"
    conda:
        "../../envs/opir.yaml"
    resources:
        mem_mb=4000,
        runtime=30,
    params:
        dilate=config["evaluate"]["dilate"],
    script:
        "../scripts/evaluate.py"


rule benchmark_table:
    input:
        lambda wildcards: expand(
            "results/metrics/{split}/{model}.json",
            split=BENCHMARK_TABLES[wildcards.table][0],
            model=table_models(
                wildcards.table,
                PREDICTION_MODELS,
                REFERENCE_MODELS,
                config["evaluate"]["ablation_models"],
            ),
        ),
    output:
        csv="results/tables/{table}.csv",
        md="results/tables/{table}.md",
        tex="results/tables/{table}.tex",
    log:
        f"{LOGS}/tables/{{table}}.log",
    benchmark:
        f"{BENCH}/tables/{{table}}.tsv"
    wildcard_constraints:
        table="|".join(BENCHMARK_TABLES),
    conda:
        "../../envs/opir.yaml"
    resources:
        mem_mb=1000,
        runtime=10,
    params:
        models=lambda wildcards: table_models(
            wildcards.table,
            PREDICTION_MODELS,
            REFERENCE_MODELS,
            config["evaluate"]["ablation_models"],
        ),
        caption=lambda wildcards: BENCHMARK_TABLES[wildcards.table][1],
        label=lambda wildcards: f"tab:{wildcards.table}",
        labels=config["evaluate"]["labels"],
    script:
        "../scripts/table.py"


# Tables 2 and 3 always; Table 4 once the model stage names its ablations in the config.
FINAL_TARGETS.extend(
    f"results/tables/{table}.{ext}"
    for table in ["table2_random", "table3_system"]
    + (["table4_ablations"] if config["evaluate"]["ablation_models"] else [])
    for ext in ("csv", "md", "tex")
)
