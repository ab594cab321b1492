# Rules of the train stage: one ABCC model per split and name in models.variants (opir.train,
# opir.training; docs/method.md "ABCC core" and "ABCC complete"). A model's inputs follow its settings: the variation
# latents with chemical_flow, the MCR streams with two_stream, no latents at all for the 1D variant (space:
# spectrum); the library says which (opir.models.settings.abcc_input_names), common.smk where they are
# (abcc_inputs). A prediction-only variant (`trained_as`) has no train job: it predicts with another's folder.
# Each model trains on the splits it names (`splits`; the Table 4 ablations only on the system
# split). Checkpoints go to results/checkpoints/{split}/{model}/, which is no output: a job killed by a time limit
# and started again resumes from the newest one.
from opir.core.compute import gpus_requested
from opir.models.settings import abcc_train_settings


rule train_abcc:
    input:
        unpack(abcc_inputs),
    output:
        **MODEL_FILES,
    log:
        f"{LOGS}/train/{{split}}/{{model}}.log",
    benchmark:
        f"{BENCH}/train/{{split}}/{{model}}.tsv"
    wildcard_constraints:
        model="|".join(TRAINED_ABCC_MODELS),
    conda:
        "../../envs/opir.yaml"
    threads: config["compute"]["threads"]
    resources:
        gpu=gpus_requested(config["compute"]),
        mem_mb=8000,
        runtime=720,
    params:
        # everything the model is: the training reads it, and model.json keeps it for prediction and `opir predict`
        settings=lambda wildcards: abcc_train_settings(
            config["models"], wildcards.model, wildcards.split
        ),
        device=config["compute"]["device"],
        checkpoint_dir=lambda wildcards: f"results/checkpoints/{wildcards.split}/{wildcards.model}",
    script:
        "../scripts/train_abcc.py"


FINAL_TARGETS.extend(
    pattern.format(split=split, model=model)
    for model in TRAINED_ABCC_MODELS
    for split in model_splits(config["models"], model)
    for pattern in MODEL_FILES.values()
)
