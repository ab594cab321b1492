# Self-contained model folders for `opir predict` (opir.forecast.package_workspace_model): the trained weights with
# the VAE, the preprocessing parameters, the embedding data and the calibrated uncertainty band, so that a model
# folder can leave the workflow's results (docs/method.md, "opir predict").


rule package_model:
    input:
        model="results/models/{split}/{model}/model.safetensors",
        meta="results/models/{split}/{model}/model.json",
        samples="results/dataset/samples.h5",
        splits="results/dataset/splits.json",
        vae="results/latent/{split}/vae",
        mixtures=list(MIXTURE_EMBEDDING_FILES.values()),
    output:
        directory("results/packages/{split}/{model}"),
    log:
        f"{LOGS}/package/{{split}}/{{model}}.log",
    benchmark:
        f"{BENCH}/package/{{split}}/{{model}}.tsv"
    wildcard_constraints:
        model="|".join(ABCC_MODELS),
    conda:
        "../../envs/opir.yaml"
    threads: config["compute"]["threads"]
    resources:
        mem_mb=4000,
        runtime=60,
    params:
        package=config["models"]["package"],
        device=config["compute"]["device"],
    script:
        "../scripts/package_model.py"


FINAL_TARGETS.extend(
    f"results/packages/{split}/{model}"
    for model in config["models"]["package"]["models"]
    for split in SPLITS
)
