# Rules of the train stage: one ABCC model per split and name in models.variants (opir.train,
# opir.training; docs/method.md "ABCC core" and "ABCC complete"). A model's inputs follow its settings: the variation
# latents with chemical_flow, the MCR streams with two_stream, no latents at all for the 1D variant (space:
# spectrum). Each model trains on the splits it names (`splits`; the Table 4 ablations only on the system split).
# Checkpoints go to results/checkpoints/{split}/{model}/, which is no output: a job killed by a time limit and
# started again resumes from the newest one.
from opir.core.compute import gpus_requested
from opir.models.settings import (
    abcc_model_inputs,
    model_splits,
    resolve_model_config,
)

ABCC_MODELS = list(config["models"]["variants"])
ABCC_MODEL_FILES = ["model.safetensors", "model.json", "training_curve.csv"]
# models trained on both splits are rows of Tables 2 and 3; the others (ablations) only of Table 4
ABCC_BENCHMARK_MODELS = [
    m for m in ABCC_MODELS if set(model_splits(config["models"], m)) == set(SPLITS)
]


rule train_abcc:
    input:
        unpack(
            lambda wildcards: abcc_model_inputs(
                config, wildcards.model, wildcards.split, MIXTURE_EMBEDDING_FILES
            )
        ),
    output:
        model="results/models/{split}/{model}/model.safetensors",
        meta="results/models/{split}/{model}/model.json",
        curve="results/models/{split}/{model}/training_curve.csv",
    log:
        f"{LOGS}/train/{{split}}/{{model}}.log",
    benchmark:
        f"{BENCH}/train/{{split}}/{{model}}.tsv"
    wildcard_constraints:
        model="|".join(ABCC_MODELS),
    conda:
        "../../envs/opir.yaml"
    threads: config["compute"]["threads"]
    resources:
        gpu=gpus_requested(config["compute"]),
        mem_mb=8000,
        runtime=720,
    params:
        settings=lambda wildcards: resolve_model_config(
            config["models"], wildcards.model
        ),
        device=config["compute"]["device"],
        checkpoint_dir=lambda wildcards: f"results/checkpoints/{wildcards.split}/{wildcards.model}",
    script:
        "../scripts/train_abcc.py"


FINAL_TARGETS.extend(
    f"results/models/{split}/{model}/{name}"
    for model in ABCC_MODELS
    for split in model_splits(config["models"], model)
    for name in ABCC_MODEL_FILES
)
