# Rules of the train stage: one ABCC model per split and name in models.variants (opir.models.pipeline,
# opir.train; docs/method.md "ABCC core"). Checkpoints go to results/checkpoints/{split}/{model}/, which is no
# output: a job killed by a time limit and started again resumes from the newest one.
from opir.compute import gpus_requested
from opir.models.settings import abcc_embedding_variant, resolve_model_config

ABCC_MODELS = list(config["models"]["variants"])
ABCC_MODEL_FILES = ["model.safetensors", "model.json", "training_curve.csv"]


rule train_abcc:
    input:
        samples="results/dataset/samples.h5",
        splits="results/dataset/splits.json",
        waveform="results/render/waveform.h5",
        latent="results/latent/{split}/waveform.h5",
        mixture=lambda wildcards: MIXTURE_EMBEDDING_FILES[
            abcc_embedding_variant(config, wildcards.model)
        ],
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
    for split in SPLITS
    for model in ABCC_MODELS
    for name in ABCC_MODEL_FILES
)
