# Rules of the predict stage: k draws per test sample of every ABCC model, one-step MeanFlow -> VAE decoder ->
# Alg. 1 inverse of each generated stream -> fused spectrum (the 1D variant: the difference spectrum directly), in
# the predictions format that evaluation reads (opir.train; docs/formats.md).


rule predict_abcc:
    input:
        unpack(
            lambda wildcards: abcc_model_inputs(
                config,
                wildcards.model,
                wildcards.split,
                MIXTURE_EMBEDDING_FILES,
                prediction=True,
            )
        ),
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


# evaluation scores every model in PREDICTION_MODELS (defined in baselines.smk): the models on both splits;
# the ablations are read by Table 4 (evaluate.ablation_models)
PREDICTION_MODELS.extend(ABCC_BENCHMARK_MODELS)
FINAL_TARGETS.extend(
    f"results/predictions/{split}/{model}.h5"
    for model in ABCC_MODELS
    for split in model_splits(config["models"], model)
)
