# Everything but the rules themselves: config and sheet validation at start-up, wildcard values from the sheets,
# the files that several stages share, the model lists, and the input functions shared by several stages.
from pathlib import Path

from snakemake.exceptions import WorkflowError

try:
    from opir.baselines.references import REFERENCE_MODELS as LIBRARY_REFERENCE_MODELS
    from opir.baselines.regression import BASELINE_MODELS, baseline_splits
    from opir.core.config import load_and_validate
    from opir.core.electrodes import DESCRIPTOR_COLUMNS
    from opir.core.errors import ConfigError
    from opir.evaluate.settings import HEDGE_SPLIT, check_hedge_models, hedged_name
    from opir.models.settings import (
        BOUND_STREAMS,
        abcc_embedding_variant,
        abcc_input_names,
        model_splits,
        replicates_of,
        resolve_model_config,
        seed_replicates,
        trained_model,
    )
    from opir.neural_baselines.settings import (
        LATENT_BASELINES,
        NEURAL_BASELINES,
        baseline_embedding_variant,
        baseline_input_names,
    )
except ImportError as err:  # the library must be installed: `make install` (README)
    raise WorkflowError(
        f"cannot import the opir library ({err}); run `make install` first"
    ) from err

try:
    SHEETS = load_and_validate(config, fallback_root=Path(workflow.basedir))
except ConfigError as err:
    raise WorkflowError(str(err)) from None

SYSTEMS = SHEETS.systems.set_index("system_id", drop=False)
RUNS = list(SHEETS.runs[["system_id", "run_id"]].itertuples(index=False, name=None))
TRAIN_SYSTEMS = SYSTEMS.index[SYSTEMS.system_split == "train"].tolist()
TEST_SYSTEMS = SYSTEMS.index[SYSTEMS.system_split == "test"].tolist()
SPLITS = ["random", "system"]
LOGS = "results/logs"
BENCH = "results/benchmarks"
# Wildcard values come only from the sheets: the constraints are set in the Snakefile (the linter wants rules and
# functions apart), built from SYSTEMS, RUNS and SPLITS.

# The simulator's noise-free truth: it exists for simulated data (the simulate rules write it) or when a given
# truth folder exists. It adds the truth files of the dataset, the MCR validation and the noise-floor row.
TRUTH_DIR = config["data"]["truth_dir"]
WITH_TRUTH = TRUTH_DIR is not None and (
    config["data"]["source"] == "simulated" or Path(TRUTH_DIR).exists()
)

# ---- files that several stages read -----------------------------------------------------------------------------
# Each is named here once: the rule that writes it declares this name as its output, the rules and input functions
# that read it use the same name (patterns are filled with the reader's wildcards).
TRUTH_RUN_H5 = f"{TRUTH_DIR}/{{system}}/{{run}}.h5"
PREPROCESSED_H5 = "results/preprocessed/{system}/{run}.h5"
SAMPLES_H5 = "results/dataset/samples.h5"
SPLITS_JSON = "results/dataset/splits.json"
TRUTH_H5 = "results/dataset/truth.h5"
ELECTRODES_H5 = "results/dataset/electrodes.h5"
IMAGES_H5 = "results/render/{stream}.h5"
VAE_DIR = "results/latent/{split}/vae"
LATENTS_H5 = "results/latent/{split}/{stream}.h5"
MCR_REFERENCES_H5 = "results/mcr/references.h5"
MCR_STREAMS_H5 = "results/mcr/streams.h5"
MODEL_DIR = "results/models/{split}/{model}"
PREDICTIONS_H5 = "results/predictions/{split}/{model}.h5"
# one held-out group of the hedged row (evaluate.hedge): its splits, validation model and curve
HEDGE_DIR = "results/hedge/{split}/{model}/{group}"
# the weight the held-out groups chose, with the partner it blends (opir.evaluate.hedge.write_weight)
HEDGE_WEIGHT_JSON = "results/hedge/{split}/{model}/weight.json"
# the mixture embeddings by variant (`embed.variant` picks the one the models read; `smiles` is the Table 4 ablation)
EMBED_VARIANTS = ["3d", "smiles"]
MIXTURE_H5 = "results/embed/mixture_{variant}.h5"
MIXTURE_EMBEDDING_FILES = {
    variant: MIXTURE_H5.format(variant=variant) for variant in EMBED_VARIANTS
}
# the files of a trained model folder (ABCC and the neural baselines alike), by the names the scripts give them
MODEL_FILES = {
    "model": f"{MODEL_DIR}/model.safetensors",
    "meta": f"{MODEL_DIR}/model.json",
    "curve": f"{MODEL_DIR}/training_curve.csv",
}

# ---- the models -------------------------------------------------------------------------------------------------
# ABCC: every variant of models.variants; those trained on both splits are rows of Tables 2 and 3, the others
# (the ablations) only of Table 4 (evaluate.ablation_models).
# Table 4's seed replicates (evaluate.ablation_seeds > 1: {name}_seed1, ...) join the variants here, before any
# list of models is made, so they are trained and predicted like any variant of the config.
ABLATION_REPLICATES = seed_replicates(
    config["models"],
    config["evaluate"]["ablation_models"],
    config["evaluate"]["ablation_seeds"],
)
config["models"]["variants"].update(ABLATION_REPLICATES)
# {replicate: the model it retrains}, for Table 4's pooling
REPLICATE_OF = {
    replicate: name
    for replicate, (name, _) in replicates_of(
        config["evaluate"]["ablation_models"], config["evaluate"]["ablation_seeds"]
    ).items()
}
ABCC_MODELS = list(config["models"]["variants"])
# the variants that train (a prediction-only variant, `trained_as`, samples another's trained folder)
TRAINED_ABCC_MODELS = [
    m for m in ABCC_MODELS if trained_model(config["models"], m) == m
]
# the ABCC rows of Tables 2 and 3: every variant but the Table 4 ablations trained on the system split alone (and
# their seed replicates); a row sits in the tables of its own splits (row_splits), so a prediction-only row may be
# one split's alone
ABLATION_ONLY_MODELS = {
    m
    for m in [*config["evaluate"]["ablation_models"], *REPLICATE_OF]
    if set(model_splits(config["models"], m)) != set(SPLITS)
}
ABCC_BENCHMARK_MODELS = [m for m in ABCC_MODELS if m not in ABLATION_ONLY_MODELS]
# the neural baselines the config trains (opir.neural_baselines)
NB_MODELS = list(config["models"]["neural_baselines"]["models"])
# Hedged rows (evaluate.hedge; Table 3): {row: the ABCC model it blends with the partner}
try:
    check_hedge_models(config["models"], config["evaluate"]["hedge"]["models"])
except ConfigError as err:
    raise WorkflowError(str(err)) from None
HEDGED_MODELS = {
    hedged_name(model): model for model in config["evaluate"]["hedge"]["models"]
}
# Every model that writes results/predictions/{split}/{model}.h5 (for the splits of row_splits below): the evaluate
# stage scores each and Tables 2 and 3 list them in this order (adding a model adds a row), then the reference rows
# close every table (the noise floor only where the simulator's truth exists).
PREDICTION_MODELS = (
    list(BASELINE_MODELS) + ABCC_BENCHMARK_MODELS + NB_MODELS + list(HEDGED_MODELS)
)


def row_splits(model):
    """The splits whose table lists ``model``: an ABCC variant's own splits, a baseline's
    (opir.baselines.regression.baseline_splits), a hedged row's split, both for the others.
    """
    if model in HEDGED_MODELS:
        return (HEDGE_SPLIT,)
    if model in ABCC_MODELS:
        return model_splits(config["models"], model)
    return baseline_splits(model)


# The latent models' read-out bound (opir.predict.bound): a reference row per image stream that a model of Tables 2
# and 3 reads out of decoded images (the waveform for every latent model, the variation with Chemical Flow).
LATENT_ROW_SETTINGS = [
    resolve_model_config(config["models"], m) for m in ABCC_BENCHMARK_MODELS
]
VAE_BOUND_MODELS = [
    f"vae_readout_{stream}"
    for stream in BOUND_STREAMS
    if any(
        s["space"] == "latent" and (stream == "waveform" or s["chemical_flow"])
        for s in LATENT_ROW_SETTINGS
    )
    or (stream == "waveform" and any(m in LATENT_BASELINES for m in NB_MODELS))
]
REFERENCE_MODELS = [
    m for m in LIBRARY_REFERENCE_MODELS if m != "noise_floor" or WITH_TRUTH
] + VAE_BOUND_MODELS


def runs_of(system):
    return [run for sys_id, run in RUNS if sys_id == system]


def per_run(pattern):
    """Expand a pattern with {system} and {run} over every run of the runs sheet."""
    return [pattern.format(system=system, run=run) for system, run in RUNS]


def config_slice(section, *keys, exclude=()):
    """The part of config section ``section`` (dotted for a sub-section, e.g. "models.package") that a job reads,
    for `params:`, so that a change of any other key reruns nothing: the ``keys`` named, or every key but
    ``exclude``."""
    node = config
    for part in section.split("."):
        node = node[part]
    return {key: node[key] for key in keys or node if key not in exclude}


def model_inputs(names, split, model, variant):
    """The files of the model inputs ``names`` (opir.models.settings.ABCC_INPUTS) of ``model`` on ``split``, with the
    mixture embeddings of ``variant``."""
    files = {
        "samples": SAMPLES_H5,
        "splits": SPLITS_JSON,
        "mixture": MIXTURE_EMBEDDING_FILES[variant],
        "waveform": IMAGES_H5.format(stream="waveform"),
        "latent": LATENTS_H5.format(split=split, stream="waveform"),
        "vae": VAE_DIR.format(split=split),
        "variation": IMAGES_H5.format(stream="variation"),
        "residual": LATENTS_H5.format(split=split, stream="variation"),
        "streams": MCR_STREAMS_H5,
        "electrodes": ELECTRODES_H5,
        **{
            name: pattern.format(split=split, model=model)
            for name, pattern in MODEL_FILES.items()
        },
    }
    return {name: files[name] for name in names}


def abcc_inputs(wildcards, prediction=False):
    """What ABCC model {model} reads on {split}: the library decides which inputs (its settings), this workflow
    where they are."""
    names = abcc_input_names(
        config["models"], wildcards.model, wildcards.split, prediction
    )
    variant = abcc_embedding_variant(config, wildcards.model)
    trained = trained_model(config["models"], wildcards.model)
    return model_inputs(names, wildcards.split, trained, variant)


def abcc_predict_inputs(wildcards):
    return abcc_inputs(wildcards, prediction=True)


def hedge_train_inputs(wildcards):
    """A hedge validation training: what the model reads on the system split, with the held-out group's splits."""
    return {
        **abcc_inputs(wildcards),
        "splits": f"{HEDGE_DIR.format(**wildcards)}/splits.json",
    }


def hedge_validate_inputs(wildcards):
    """What a hedge validation training's model needs to predict its held-out samples."""
    group = HEDGE_DIR.format(**wildcards)
    names = abcc_input_names(
        config["models"], wildcards.model, wildcards.split, prediction=True
    )
    files = model_inputs(
        [n for n in names if n not in ("model", "meta")],
        wildcards.split,
        wildcards.model,
        abcc_embedding_variant(config, wildcards.model),
    )
    return {
        **files,
        "splits": f"{group}/splits.json",
        "model": f"{group}/model/model.safetensors",
        "meta": f"{group}/model/model.json",
    }


def package_inputs(wildcards):
    """A packaged ABCC model: the trained folder and what it was trained with (the VAE only where it decodes)."""
    names = [
        name
        for name in abcc_input_names(
            config["models"], wildcards.model, wildcards.split, prediction=True
        )
        if name in ("samples", "splits", "mixture", "vae", "model", "meta")
    ] + ["curve", "electrodes"]
    variant = abcc_embedding_variant(config, wildcards.model)
    inputs = model_inputs(names, wildcards.split, wildcards.model, variant)
    if wildcards.split == HEDGE_SPLIT and wildcards.model in HEDGED_MODELS.values():
        # the package carries the hedge of Table 3's row: opir predict forecasts as that row does; its band is
        # calibrated on the hedge's held-out systems, which the group's model never saw, as a new cell's
        inputs["hedge"] = HEDGE_WEIGHT_JSON.format(**wildcards)
        for name in ("predictions", "partner"):
            inputs[f"held_out_{name}"] = expand(
                f"{HEDGE_DIR}/{name}.h5", group=HEDGE_GROUPS, **wildcards
            )
    return inputs


def nb_inputs(wildcards, prediction=False):
    """What neural baseline {model} reads on {split}: latents and images for the latent baselines, the sample table
    alone for the 1D ones (opir.neural_baselines.settings.baseline_input_names)."""
    names = baseline_input_names(wildcards.model, prediction)
    variant = baseline_embedding_variant(config, wildcards.model)
    return model_inputs(names, wildcards.split, wildcards.model, variant)


def nb_predict_inputs(wildcards):
    return nb_inputs(wildcards, prediction=True)


# Each stage file appends the targets it contributes to `rule all`.
FINAL_TARGETS = []


def all_targets():
    return FINAL_TARGETS
