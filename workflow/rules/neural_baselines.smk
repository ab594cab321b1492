# Rules of the neural baselines: the same data, splits, condition and metrics as ABCC, other modelling choices
# (opir.neural_baselines; docs/method.md "Neural baselines"). Two on the VAE latents with ABCC's SiT
# backbone (regression, multi-step flow matching), two on the 1D spectra (a GRU over the voltage profile, a
# whole-trajectory flow-matching generator): one train and one predict rule for all four, whose inputs follow the
# model (nb_inputs, common.smk). Each writes results/models/{split}/{model}/ and
# results/predictions/{split}/{model}.h5 and is one of PREDICTION_MODELS (common.smk), so Tables 2 and 3 get its
# row. Checkpoints go to results/checkpoints/{split}/{model}/ (no output: a killed job resumes).
from opir.core.compute import gpus_requested
from opir.neural_baselines.settings import (
    baseline_predict_settings,
    baseline_train_settings,
)


rule nb_train:
    input:
        unpack(nb_inputs),
    output:
        **MODEL_FILES,
    log:
        f"{LOGS}/train/{{split}}/{{model}}.log",
    benchmark:
        f"{BENCH}/train/{{split}}/{{model}}.tsv"
    wildcard_constraints:
        model="|".join(NEURAL_BASELINES),
    conda:
        "../../envs/opir.yaml"
    threads: config["compute"]["threads"]
    resources:
        gpu=gpus_requested(config["compute"]),
        mem_mb=8000,
        runtime=720,
    params:
        settings=lambda wildcards: baseline_train_settings(
            config["models"], wildcards.model
        ),
        device=config["compute"]["device"],
        checkpoint_dir=lambda wildcards: f"results/checkpoints/{wildcards.split}/{wildcards.model}",
    script:
        "../scripts/nb_train.py"


rule nb_predict:
    input:
        unpack(nb_predict_inputs),
    output:
        PREDICTIONS_H5,
    log:
        f"{LOGS}/predict/{{split}}/{{model}}.log",
    benchmark:
        f"{BENCH}/predict/{{split}}/{{model}}.tsv"
    wildcard_constraints:
        model="|".join(NEURAL_BASELINES),
    conda:
        "../../envs/opir.yaml"
    threads: config["compute"]["threads"]
    resources:
        gpu=gpus_requested(config["compute"]),
        # the latent baselines decode their draws through the VAE
        mem_mb=lambda wildcards: 8000 if wildcards.model in LATENT_BASELINES else 4000,
        runtime=lambda wildcards: 120 if wildcards.model in LATENT_BASELINES else 60,
    params:
        predict=lambda wildcards: baseline_predict_settings(
            config["models"], wildcards.model
        ),
        device=config["compute"]["device"],
    script:
        "../scripts/nb_predict.py"


FINAL_TARGETS.extend(
    pattern.format(split=split, model=model)
    for split in SPLITS
    for model in NB_MODELS
    for pattern in [*MODEL_FILES.values(), PREDICTIONS_H5]
)
