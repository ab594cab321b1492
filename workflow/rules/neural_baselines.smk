# Rules of the neural baselines: the same data, splits, condition and metrics as ABCC, other modelling choices
# (opir.neural_baselines; docs/method.md "Neural baselines"). Two on the VAE latents with ABCC's SiT
# backbone (regression, multi-step flow matching), two on the 1D spectra (a GRU over the voltage profile, a
# whole-trajectory flow-matching generator). Each writes results/models/{split}/{model}/ and
# results/predictions/{split}/{model}.h5 and joins PREDICTION_MODELS, so Tables 2 and 3 get its row.
# Checkpoints go to results/checkpoints/{split}/{model}/ (no output: a killed job resumes).
from opir.core.compute import gpus_requested
from opir.neural_baselines.settings import (
    LATENT_BASELINES,
    SPECTRUM_BASELINES,
    baseline_embedding_variant,
    resolve_baseline_settings,
)

NB_MODELS = list(config["models"]["neural_baselines"]["models"])
# wildcard patterns of the two rule families; "(?!)" matches nothing when a family has no model
NB_LATENT = "|".join(m for m in NB_MODELS if m in LATENT_BASELINES) or "(?!)"
NB_SPECTRUM = "|".join(m for m in NB_MODELS if m in SPECTRUM_BASELINES) or "(?!)"
NB_MODEL_FILES = ["model.safetensors", "model.json", "training_curve.csv"]


rule nb_train_latent:
    input:
        samples="results/dataset/samples.h5",
        splits="results/dataset/splits.json",
        waveform="results/render/waveform.h5",
        latent="results/latent/{split}/waveform.h5",
        mixture=lambda wildcards: MIXTURE_EMBEDDING_FILES[
            baseline_embedding_variant(config, wildcards.model)
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
        model=NB_LATENT,
    conda:
        "../../envs/opir.yaml"
    threads: config["compute"]["threads"]
    resources:
        gpu=gpus_requested(config["compute"]),
        mem_mb=8000,
        runtime=720,
    params:
        settings=lambda wildcards: resolve_baseline_settings(
            config["models"], wildcards.model
        ),
        device=config["compute"]["device"],
        checkpoint_dir=lambda wildcards: f"results/checkpoints/{wildcards.split}/{wildcards.model}",
    script:
        "../scripts/nb_train.py"


rule nb_train_spectrum:
    input:
        samples="results/dataset/samples.h5",
        splits="results/dataset/splits.json",
        mixture=lambda wildcards: MIXTURE_EMBEDDING_FILES[
            baseline_embedding_variant(config, wildcards.model)
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
        model=NB_SPECTRUM,
    conda:
        "../../envs/opir.yaml"
    threads: config["compute"]["threads"]
    resources:
        gpu=gpus_requested(config["compute"]),
        mem_mb=8000,
        runtime=720,
    params:
        settings=lambda wildcards: resolve_baseline_settings(
            config["models"], wildcards.model
        ),
        device=config["compute"]["device"],
        checkpoint_dir=lambda wildcards: f"results/checkpoints/{wildcards.split}/{wildcards.model}",
    script:
        "../scripts/nb_train.py"


rule nb_predict_latent:
    input:
        samples="results/dataset/samples.h5",
        splits="results/dataset/splits.json",
        waveform="results/render/waveform.h5",
        latent="results/latent/{split}/waveform.h5",
        mixture=lambda wildcards: MIXTURE_EMBEDDING_FILES[
            baseline_embedding_variant(config, wildcards.model)
        ],
        vae="results/latent/{split}/vae",
        model="results/models/{split}/{model}/model.safetensors",
        meta="results/models/{split}/{model}/model.json",
    output:
        "results/predictions/{split}/{model}.h5",
    log:
        f"{LOGS}/predict/{{split}}/{{model}}.log",
    benchmark:
        f"{BENCH}/predict/{{split}}/{{model}}.tsv"
    wildcard_constraints:
        model=NB_LATENT,
    conda:
        "../../envs/opir.yaml"
    threads: config["compute"]["threads"]
    resources:
        gpu=gpus_requested(config["compute"]),
        mem_mb=8000,
        runtime=120,
    params:
        predict=lambda wildcards: resolve_baseline_settings(
            config["models"], wildcards.model
        )["predict"],
        device=config["compute"]["device"],
    script:
        "../scripts/nb_predict.py"


rule nb_predict_spectrum:
    input:
        samples="results/dataset/samples.h5",
        splits="results/dataset/splits.json",
        mixture=lambda wildcards: MIXTURE_EMBEDDING_FILES[
            baseline_embedding_variant(config, wildcards.model)
        ],
        model="results/models/{split}/{model}/model.safetensors",
        meta="results/models/{split}/{model}/model.json",
    output:
        "results/predictions/{split}/{model}.h5",
    log:
        f"{LOGS}/predict/{{split}}/{{model}}.log",
    benchmark:
        f"{BENCH}/predict/{{split}}/{{model}}.tsv"
    wildcard_constraints:
        model=NB_SPECTRUM,
    conda:
        "../../envs/opir.yaml"
    threads: config["compute"]["threads"]
    resources:
        gpu=gpus_requested(config["compute"]),
        mem_mb=4000,
        runtime=60,
    params:
        predict=lambda wildcards: resolve_baseline_settings(
            config["models"], wildcards.model
        )["predict"],
        device=config["compute"]["device"],
    script:
        "../scripts/nb_predict.py"


# evaluation scores every model in PREDICTION_MODELS (defined in baselines.smk)
PREDICTION_MODELS.extend(NB_MODELS)
FINAL_TARGETS.extend(
    f"results/models/{split}/{model}/{name}"
    for split in SPLITS
    for model in NB_MODELS
    for name in NB_MODEL_FILES
)
FINAL_TARGETS.extend(
    f"results/predictions/{split}/{model}.h5" for split in SPLITS for model in NB_MODELS
)
