# Rules of the evaluate stage: score every predictions file the same way (opir.evaluate.metrics) and gather the
# scores into the OpIRBench tables (opir.evaluate.tables; docs/benchmark.md, docs/formats.md "Predictions, metrics
# and tables").
# The rows of Tables 2 and 3 are PREDICTION_MODELS + REFERENCE_MODELS (common.smk); Table 4 lists
# `evaluate.ablation_models`.
from opir.evaluate.tables import TABLES as BENCHMARK_TABLES, table_caption, table_models

# the models of each table, in row order (a baseline only in the tables of its splits: the per-run yardsticks are
# rows of the random split alone); Table 4 also reads its rows' seed replicates, which it pools into their rows
BENCHMARK_TABLE_MODELS = {
    table: table_models(
        table,
        [m for m in PREDICTION_MODELS if split in row_splits(m)],
        REFERENCE_MODELS,
        config["evaluate"]["ablation_models"],
    )
    + (list(REPLICATE_OF) if table == "table4_ablations" else [])
    for table, (split, _) in BENCHMARK_TABLES.items()
}
METRICS_JSON = "results/metrics/{split}/{model}.json"


rule evaluate:
    input:
        predictions=PREDICTIONS_H5,
        samples=SAMPLES_H5,
        splits=SPLITS_JSON,
    output:
        METRICS_JSON,
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
            METRICS_JSON,
            split=BENCHMARK_TABLES[wildcards.table][0],
            model=BENCHMARK_TABLE_MODELS[wildcards.table],
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
        models=lambda wildcards: BENCHMARK_TABLE_MODELS[wildcards.table],
        caption=lambda wildcards: table_caption(
            wildcards.table, config["evaluate"]["ablation_seeds"]
        ),
        replicates=lambda wildcards: (
            REPLICATE_OF if wildcards.table == "table4_ablations" else {}
        ),
        label=lambda wildcards: f"tab:{wildcards.table}",
        # the display names of this table's models: renaming another model reruns nothing here
        labels=lambda wildcards: {
            model: label
            for model, label in config["evaluate"]["labels"].items()
            if model in BENCHMARK_TABLE_MODELS[wildcards.table]
        },
    script:
        "../scripts/table.py"


# Tables 2 and 3 always; Table 4 once the model stage names its ablations in the config.
FINAL_TARGETS.extend(
    f"results/tables/{table}.{ext}"
    for table in ["table2_random", "table3_system"]
    + (["table4_ablations"] if config["evaluate"]["ablation_models"] else [])
    for ext in ("csv", "md", "tex")
)
