# Rules of the evaluate stage: score every predictions file the same way (opir.evaluate.metrics) and gather the
# scores into the OpIRBench tables (opir.evaluate.tables; docs/benchmark.md, docs/formats.md "Predictions, metrics
# and tables").
# The rows of Tables 2 and 3 are PREDICTION_MODELS + REFERENCE_MODELS (common.smk); Table 4 lists
# `evaluate.ablation_models`.
import re

from opir.core.compute import gpus_requested
from opir.evaluate.settings import held_out_groups
from opir.evaluate.tables import TABLES as BENCHMARK_TABLES, table_caption, table_models
from opir.models.settings import abcc_predict_settings, abcc_train_settings

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


# ---- hedging under shift (evaluate.hedge; opir.evaluate.hedge; docs/benchmark.md "Hedging under shift") ----------
# Each group of held-out training systems: a splits file, the model's recipe trained on the other training systems,
# its predictions and the partner's on the held-out samples, and the blend curve there. The weight with the least
# MAE averaged over the groups blends the model's test predictions with the partner's: the row {model}_hedged.
HEDGE_GROUPS = (
    held_out_groups(config["evaluate"]["hedge"]["hold_out"], TRAIN_SYSTEMS)
    if HEDGED_MODELS
    else {}
)
# "(?!)" matches nothing: without hedged rows these rules make no job
HEDGE_MODEL_PATTERN = "|".join(map(re.escape, HEDGED_MODELS.values())) or "(?!)"
HEDGE_GROUP_PATTERN = "|".join(map(re.escape, HEDGE_GROUPS)) or "(?!)"


rule hedge_split:
    input:
        samples=SAMPLES_H5,
        splits=SPLITS_JSON,
    output:
        f"{HEDGE_DIR}/splits.json",
    log:
        f"{LOGS}/hedge/{{split}}/{{model}}/{{group}}/splits.log",
    wildcard_constraints:
        split=HEDGE_SPLIT,
        model=HEDGE_MODEL_PATTERN,
        group=HEDGE_GROUP_PATTERN,
    conda:
        "../../envs/opir.yaml"
    resources:
        mem_mb=1000,
        runtime=10,
    params:
        held_out=lambda wildcards: HEDGE_GROUPS[wildcards.group],
    script:
        "../scripts/hedge_split.py"


rule hedge_train:
    input:
        unpack(hedge_train_inputs),
    output:
        **{
            name: f"{HEDGE_DIR}/model/{Path(path).name}"
            for name, path in MODEL_FILES.items()
        },
    log:
        f"{LOGS}/hedge/{{split}}/{{model}}/{{group}}/train.log",
    benchmark:
        f"{BENCH}/hedge/{{split}}/{{model}}/{{group}}/train.tsv"
    wildcard_constraints:
        split=HEDGE_SPLIT,
        model=HEDGE_MODEL_PATTERN,
        group=HEDGE_GROUP_PATTERN,
    conda:
        "../../envs/opir.yaml"
    threads: config["compute"]["threads"]
    resources:
        gpu=gpus_requested(config["compute"]),
        mem_mb=8000,
        runtime=720,
    params:
        settings=lambda wildcards: abcc_train_settings(
            config["models"], wildcards.model, wildcards.split
        ),
        device=config["compute"]["device"],
        checkpoint_dir=lambda wildcards: f"results/checkpoints/hedge/{wildcards.model}/{wildcards.group}",
    script:
        "../scripts/train_abcc.py"


rule hedge_validate:
    input:
        unpack(hedge_validate_inputs),
    output:
        predictions=f"{HEDGE_DIR}/predictions.h5",
        partner=f"{HEDGE_DIR}/partner.h5",
        curve=f"{HEDGE_DIR}/validation.json",
    log:
        f"{LOGS}/hedge/{{split}}/{{model}}/{{group}}/validate.log",
    wildcard_constraints:
        split=HEDGE_SPLIT,
        model=HEDGE_MODEL_PATTERN,
        group=HEDGE_GROUP_PATTERN,
    conda:
        "../../envs/opir.yaml"
    threads: config["compute"]["threads"]
    resources:
        mem_mb=8000,
        runtime=120,
    params:
        predict=lambda wildcards: abcc_predict_settings(
            config["models"], wildcards.model, wildcards.split
        ),
        partner=config["evaluate"]["hedge"]["partner"],
        partner_settings=config["evaluate"]["voltage_regression"],
        weights=config["evaluate"]["hedge"]["weights"],
        dilate=config["evaluate"]["dilate"],
        device=config["compute"]["device"],
    script:
        "../scripts/hedge_validate.py"


rule hedge_weight:
    input:
        lambda wildcards: expand(
            f"{HEDGE_DIR}/validation.json",
            split=wildcards.split,
            model=wildcards.model,
            group=HEDGE_GROUPS,
        ),
    output:
        HEDGE_WEIGHT_JSON,
    log:
        f"{LOGS}/hedge/{{split}}/{{model}}/weight.log",
    wildcard_constraints:
        split=HEDGE_SPLIT,
        model=HEDGE_MODEL_PATTERN,
    conda:
        "../../envs/opir.yaml"
    resources:
        mem_mb=1000,
        runtime=10,
    params:
        partner=config["evaluate"]["hedge"]["partner"],
        partner_settings=config["evaluate"]["voltage_regression"],
    script:
        "../scripts/hedge_weight.py"


rule predict_hedged:
    input:
        model=PREDICTIONS_H5,
        partner=PREDICTIONS_H5.replace(
            "{model}", config["evaluate"]["hedge"]["partner"]
        ),
        weight=HEDGE_WEIGHT_JSON,
    output:
        "results/predictions/{split}/{model}_hedged.h5",
    log:
        f"{LOGS}/predict/{{split}}/{{model}}_hedged.log",
    wildcard_constraints:
        split=HEDGE_SPLIT,
        model=HEDGE_MODEL_PATTERN,
    conda:
        "../../envs/opir.yaml"
    resources:
        mem_mb=4000,
        runtime=10,
    script:
        "../scripts/predict_hedged.py"
