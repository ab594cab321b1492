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


def resolve_model_config(models: dict[str, Any], name: str) -> dict[str, Any]:
    """``models.abcc`` with ``models.variants[name]`` merged over it; an unknown key is a ConfigError."""
    if name not in models["variants"]:
        raise ConfigError(f"models.variants: no model {name!r} (known: {', '.join(models['variants'])})")
    return merge_overrides(models["abcc"], models["variants"][name] or {}, f"models.variants.{name}")


def embedding_variant(settings: dict[str, Any], embed: dict[str, Any]) -> str:
    """The mixture-embedding variant a model reads: its own setting, else ``embed.variant``."""
    return settings.get("embedding_variant") or embed["variant"]


def abcc_embedding_variant(config: dict[str, Any], name: str) -> str:
    """The embedding variant model ``name`` reads, from the whole workflow config (for the rules' input functions)."""
    return embedding_variant(resolve_model_config(config["models"], name), config["embed"])


def model_splits(models: dict[str, Any], name: str) -> list[str]:
    """The splits model ``name`` is trained and predicted on."""
    return list(resolve_model_config(models, name).get("splits") or ["random", "system"])


def abcc_model_inputs(
    config: dict[str, Any], name: str, split: str, mixture_files: dict[str, str], prediction: bool = False
) -> dict[str, str]:
    """The files model ``name`` reads on ``split``, named as the train/predict scripts expect: its settings decide
    (variation latents with ``chemical_flow``, MCR streams with ``two_stream``, no latents for ``space:
    spectrum``; the VAE wherever something is decoded; with ``prediction`` the trained model's files). A split the
    model is not trained on is a ConfigError."""
    settings = resolve_model_config(config["models"], name)
    if split not in model_splits(config["models"], name):
        raise ConfigError(f"models.variants.{name}: not trained on split {split!r} (splits: "
                          f"{model_splits(config['models'], name)})")
    inputs = {
        "samples": "results/dataset/samples.h5",
        "splits": "results/dataset/splits.json",
        "mixture": mixture_files[embedding_variant(settings, config["embed"])],
    }
    if settings["space"] == "latent":
        inputs.update(waveform="results/render/waveform.h5", latent=f"results/latent/{split}/waveform.h5")
        if prediction or settings["chemical_flow"] or settings["losses"]["peak_weight"] > 0:
            inputs["vae"] = f"results/latent/{split}/vae"
        if settings["chemical_flow"] and not prediction:
            inputs.update(variation="results/render/variation.h5",
                          residual=f"results/latent/{split}/variation.h5")
    if settings["two_stream"] and not prediction:
        inputs["streams"] = "results/mcr/streams.h5"
    if prediction:  # the trained model itself
        folder = f"results/models/{split}/{name}"
        inputs.update(model=f"{folder}/model.safetensors", meta=f"{folder}/model.json")
    return inputs
