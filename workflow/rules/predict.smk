# Rules of the predict stage: k draws per test sample of every ABCC model, one-step MeanFlow -> VAE decoder ->
# Alg. 1 inverse, in the predictions format that evaluation reads (opir.models.pipeline; docs/formats.md).


rule predict_abcc:
    input:
        samples="results/dataset/samples.h5",
        splits="results/dataset/splits.json",
        waveform="results/render/waveform.h5",
        latent="results/latent/{split}/waveform.h5",
        mixture=lambda wildcards: MIXTURE_EMBEDDING_FILES[
            abcc_embedding_variant(config, wildcards.model)
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
        model="|".join(ABCC_MODELS),
    conda:
        "../../envs/opir.yaml"
    threads: config["compute"]["threads"]
    resources:
        gpu=gpus_requested(config["compute"]),
        mem_mb=8000,
        runtime=120,
    params:
        predict=lambda wildcards: resolve_model_config(
            config["models"], wildcards.model
        )["predict"],
        device=config["compute"]["device"],
    script:
        "../scripts/predict_abcc.py"


# evaluation scores every model in PREDICTION_MODELS (defined in baselines.smk)
PREDICTION_MODELS.extend(ABCC_MODELS)
FINAL_TARGETS.extend(
    f"results/predictions/{split}/{model}.h5"
    for split in SPLITS
    for model in ABCC_MODELS
)
