# Self-contained model folders for `opir predict` (opir.package.packaging.package_trained_model): the trained
# weights with the VAE, the preprocessing parameters, the embedding data and the calibrated uncertainty band, so
# that a model folder can leave the workflow's results (docs/method.md, "opir predict"). Its inputs are the model
# folder and what the model was trained with (package_inputs, common.smk); the script hands each path to the
# library.


rule package_model:
    input:
        unpack(package_inputs),
    output:
        directory("results/packages/{split}/{model}"),
    log:
        f"{LOGS}/package/{{split}}/{{model}}.log",
    benchmark:
        f"{BENCH}/package/{{split}}/{{model}}.tsv"
    wildcard_constraints:
        model="|".join(TRAINED_ABCC_MODELS),
    conda:
        "../../envs/opir.yaml"
    threads: config["compute"]["threads"]
    resources:
        mem_mb=4000,
        runtime=60,
    params:
        package=config_slice(
            "models.package", "calibration_draws", "calibration_samples"
        ),
        device=config["compute"]["device"],
    script:
        "../scripts/package_model.py"


# a package is a trained folder: say so now if the config names a model that trains nothing or does not exist
NOT_PACKABLE = sorted(
    set(config["models"]["package"]["models"]) - set(TRAINED_ABCC_MODELS)
)
if NOT_PACKABLE:
    raise WorkflowError(
        f"config models.package.models: {', '.join(NOT_PACKABLE)} is not a trained variant of models.variants "
        f"(trained: {', '.join(TRAINED_ABCC_MODELS)})"
    )

FINAL_TARGETS.extend(
    rules.package_model.output[0].format(split=split, model=model)
    for model in config["models"]["package"]["models"]
    for split in SPLITS
)
