"""One model's settings: ``models.abcc`` with ``models.variants[name]`` merged over it. Kept free of torch so the
workflow can resolve settings while it parses the rules."""

from __future__ import annotations

import copy
from typing import Any

from opir.core.errors import ConfigError


def merge_overrides(base: dict, override: dict | None, where: str) -> dict:
    """``override`` merged over ``base``, recursively; a key ``base`` lacks is a ConfigError naming ``where``."""
    merged = copy.deepcopy(base)
    for key, value in (override or {}).items():
        if key not in base:
            raise ConfigError(f"{where}.{key}: unknown key; allowed: {', '.join(sorted(base))}")
        if isinstance(base[key], dict) and isinstance(value, dict):
            merged[key] = merge_overrides(base[key], value, f"{where}.{key}")
        else:
            merged[key] = copy.deepcopy(value)
    return merged


#: What a prediction-only variant (``trained_as``) may set besides ``trained_as``: how it samples, and where.
PREDICTION_ONLY_KEYS = ("predict", "splits")


def resolve_model_config(models: dict[str, Any], name: str) -> dict[str, Any]:
    """``models.abcc`` with ``models.variants[name]`` merged over it; an unknown key is a ConfigError. A variant with
    ``trained_as: other`` is a prediction-only row: ``other``'s settings with its own ``predict`` (and ``splits``)
    merged over them; it trains nothing (:func:`trained_model`)."""
    if name not in models["variants"]:
        raise ConfigError(f"models.variants: no model {name!r} (known: {', '.join(models['variants'])})")
    variant = models["variants"][name] or {}
    other = variant.get("trained_as")
    if not other:
        return merge_overrides(models["abcc"], variant, f"models.variants.{name}")
    where = f"models.variants.{name}"
    trainable = [m for m, v in models["variants"].items() if not (v or {}).get("trained_as")]
    if other not in trainable:
        raise ConfigError(f"{where}.trained_as: {other!r} is not a variant that trains (known: {', '.join(trainable)})")
    extra = sorted(set(variant) - {"trained_as", *PREDICTION_ONLY_KEYS})
    if extra:
        raise ConfigError(f"{where}: {', '.join(extra)}: a variant trained_as {other!r} uses that model as it is "
                          f"trained and may set only {', '.join(PREDICTION_ONLY_KEYS)}")
    base = resolve_model_config(models, other)
    settings = merge_overrides(base, {k: v for k, v in variant.items() if k in PREDICTION_ONLY_KEYS}, where)
    missing = sorted(set(settings["splits"]) - set(base["splits"]))
    if missing:
        raise ConfigError(f"{where}.splits: {other!r} is not trained on {', '.join(missing)}")
    settings["trained_as"] = other
    return settings


def trained_model(models: dict[str, Any], name: str) -> str:
    """The model whose trained folder ``name`` predicts with: its ``trained_as``, or itself."""
    return resolve_model_config(models, name).get("trained_as") or name


#: The keys of a model's ``predict`` settings that its training reads (the fusion fit reads spectra back in batches,
#: above the decoder's haze) or that its model folder keeps for ``opir predict`` (the sampler, the haze): the number
#: of draws and their seed are the predictions' business alone.
TRAIN_PREDICT_KEYS = ("batch_size", "background_grey", "euler_steps")

#: Switches added to ``models.abcc`` after models had been trained, each with the value that trains what was trained
#: before it. At that value a switch is left out of the train rule's ``params`` (training fills it back from the
#: schema's default), so a workspace made before the switch keeps its trained models instead of retraining them all.
LATER_SWITCHES = {"context_anchor": False}


def split_predict_settings(predict: dict[str, Any], split: str) -> dict[str, Any]:
    """A model's ``predict`` settings on ``split``: ``euler_steps_by_split[split]``, where not null, is its sampler
    (one step or N Euler steps, chosen per split on that split's held-out training data), and the per-split mapping
    itself is left out, so that a model without one has the same settings (and rule params) as before it existed."""
    resolved = {key: value for key, value in predict.items() if key != "euler_steps_by_split"}
    chosen = (predict.get("euler_steps_by_split") or {}).get(split)
    if chosen is not None:
        resolved["euler_steps"] = chosen
    return resolved


def abcc_predict_settings(models: dict[str, Any], name: str, split: str) -> dict[str, Any]:
    """How model ``name`` predicts on ``split`` (the predict rule's ``params``): :func:`split_predict_settings` of
    its resolved ``predict`` section."""
    return split_predict_settings(resolve_model_config(models, name)["predict"], split)


def abcc_train_settings(models: dict[str, Any], name: str, split: str) -> dict[str, Any]:
    """What training model ``name`` on ``split`` reads (the train rule's ``params``): :func:`resolve_model_config`
    with only the :data:`TRAIN_PREDICT_KEYS` of its ``predict`` section on that split (model.json keeps the sampler
    for ``opir predict``), so that asking for more draws retrains nothing, and without the :data:`LATER_SWITCHES`
    that are off."""
    settings = resolve_model_config(models, name)
    predict = split_predict_settings(settings["predict"], split)
    settings["predict"] = {key: predict[key] for key in TRAIN_PREDICT_KEYS}
    for key, before in LATER_SWITCHES.items():
        if key in settings and settings[key] == before:
            del settings[key]
    return settings


def embedding_variant(settings: dict[str, Any], embed: dict[str, Any]) -> str:
    """The mixture-embedding variant a model reads: its own setting, else ``embed.variant``."""
    return settings.get("embedding_variant") or embed["variant"]


def abcc_embedding_variant(config: dict[str, Any], name: str) -> str:
    """The embedding variant model ``name`` reads, from the whole workflow config (for the rules' input functions)."""
    return embedding_variant(resolve_model_config(config["models"], name), config["embed"])


def replicate_name(name: str, replicate: int) -> str:
    """The name of model ``name`` retrained with its seed + ``replicate``."""
    return f"{name}_seed{replicate}"


def replicates_of(names: list[str], seeds: int) -> dict[str, tuple[str, int]]:
    """Table 4's seed replicates: ``{replicate name: (model, seed offset)}`` for offsets 1, ..., seeds - 1."""
    if seeds < 1:
        raise ConfigError(f"evaluate.ablation_seeds: {seeds}; at least 1 (the models themselves)")
    return {replicate_name(name, offset): (name, offset) for name in names for offset in range(1, seeds)}


def seed_replicates(models: dict[str, Any], names: list[str], seeds: int) -> dict[str, dict[str, Any]]:
    """Variants that retrain each model of ``names`` with ``train.seed`` + 1, ..., + (seeds - 1), on the system split
    only (Table 4's replicates, :func:`replicates_of`): ``{replicate name: its models.variants entry}``. Everything
    but the seed is the model's own, so the spread between replicates is the seed's alone."""
    out = {}
    for replicate, (name, offset) in replicates_of(names, seeds).items():
        variant = copy.deepcopy(models["variants"][name] or {})
        seed = int(resolve_model_config(models, name)["train"]["seed"]) + offset
        variant["train"] = {**variant.get("train", {}), "seed": seed}
        variant["splits"] = ["system"]
        out[replicate] = variant
    clash = sorted(set(out) & set(models["variants"]))
    if clash:
        raise ConfigError(f"models.variants: {clash[0]!r} is the name of a seed replicate of Table 4; rename it")
    return out


def model_splits(models: dict[str, Any], name: str) -> list[str]:
    """The splits model ``name`` is trained and predicted on."""
    return list(resolve_model_config(models, name).get("splits") or ["random", "system"])


#: The image streams a latent model reads out, each with a read-out bound row (opir.predict.bound): the waveform of
#: s(v_m), and the variation s(v_m) - s(v_0) (Chemical Flow), read back on top of the sample's initial spectrum.
BOUND_STREAMS = ("waveform", "variation")


#: Every input an ABCC model may read, by the name the train and predict scripts give it. Which ones a model reads is
#: decided here (:func:`abcc_input_names`); where each file lies is the workflow's business
#: (``workflow/rules/common.smk``).
ABCC_INPUTS = ("samples", "splits", "mixture", "waveform", "latent", "vae", "variation", "residual", "streams",
               "electrodes", "model", "meta")


def abcc_input_names(models: dict[str, Any], name: str, split: str, prediction: bool = False) -> list[str]:
    """The inputs (names of :data:`ABCC_INPUTS`) model ``name`` reads on ``split``: its settings decide (the
    variation images and latents with ``chemical_flow``, the MCR streams with ``two_stream``, the electrode
    descriptors with ``electrode_descriptors``, no images or latents
    for ``space: spectrum``; the VAE wherever something is decoded; with ``prediction`` the trained model's files).
    ``mixture`` is the embedding variant of :func:`abcc_embedding_variant`. A split the model is not trained on is a
    ConfigError."""
    settings = resolve_model_config(models, name)
    if split not in model_splits(models, name):
        raise ConfigError(f"models.variants.{name}: not trained on split {split!r} (splits: "
                          f"{model_splits(models, name)})")
    names = ["samples", "splits", "mixture"]
    if settings["space"] == "latent":
        names += ["waveform", "latent"]
        if prediction or settings["chemical_flow"] or settings["losses"]["peak_weight"] > 0:
            names.append("vae")
        if settings["chemical_flow"] and not prediction:
            names += ["variation", "residual"]
    if settings["two_stream"] and not prediction:
        names.append("streams")
    if settings.get("electrode_descriptors"):
        names.append("electrodes")
    if prediction:  # the trained model itself (for a prediction-only variant, the one it is trained_as)
        names += ["model", "meta"]
    return names
