# Rules of the predict stage: k draws per test sample of every ABCC model, one-step MeanFlow -> VAE decoder ->
# Alg. 1 inverse of each generated stream -> fused spectrum (the 1D variant: the difference spectrum directly), in
# the predictions format that evaluation reads (opir.train; docs/formats.md). Inputs: abcc_predict_inputs
# (common.smk).
from opir.core.compute import gpus_requested
from opir.models.settings import abcc_predict_settings


rule predict_abcc:
    input:
        unpack(abcc_predict_inputs),
    output:
        PREDICTIONS_H5,
    log:
        f"{LOGS}/predict/{{split}}/{{model}}.log",
    benchmark:
        f"{BENCH}/predict/{{split}}/{{model}}.tsv"
    wildcard_constraints:
        model="|".join(ABCC_MODELS),
    conda:
        "../../envs/opir.yaml"
    threads: config["compute"]["threads"]
    resources:
        gpu=gpus_requested(config["compute"]),
        mem_mb=8000,
        runtime=120,
    params:
        predict=lambda wildcards: abcc_predict_settings(
            config["models"], wildcards.model, wildcards.split
        ),
        device=config["compute"]["device"],
    script:
        "../scripts/predict_abcc.py"


# the models on both splits are rows of Tables 2 and 3 (PREDICTION_MODELS, common.smk); the ablations are read by
# Table 4 (evaluate.ablation_models)
FINAL_TARGETS.extend(
    PREDICTIONS_H5.format(split=split, model=model)
    for model in ABCC_MODELS
    for split in model_splits(config["models"], model)
)


# The latent models' read-out bound: the test targets' own latents decoded and read back (opir.predict.bound), a
# reference row of Tables 2 and 3 (VAE_BOUND_MODELS, common.smk) wherever a latent model is in them.
rule vae_readout_bound:
    input:
        samples=SAMPLES_H5,
        splits=SPLITS_JSON,
        images=IMAGES_H5,
        latent=LATENTS_H5,
        vae=VAE_DIR,
    output:
        PREDICTIONS_H5.format(split="{split}", model="vae_readout_{stream}"),
    log:
        f"{LOGS}/predict/{{split}}/vae_readout_{{stream}}.log",
    benchmark:
        f"{BENCH}/predict/{{split}}/vae_readout_{{stream}}.tsv"
    wildcard_constraints:
        stream="|".join(BOUND_STREAMS),
    conda:
        "../../envs/opir.yaml"
    threads: config["compute"]["threads"]
    resources:
        mem_mb=4000,
        runtime=30,
    params:
        background_grey=config["models"]["abcc"]["predict"]["background_grey"],
        batch_size=config["models"]["vae"]["encode_batch_size"],
        device=config["compute"]["device"],
    script:
        "../scripts/vae_readout_bound.py"
