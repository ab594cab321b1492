"""One model's settings: ``models.abcc`` with ``models.variants[name]`` merged over it. Kept free of torch so the
workflow can resolve settings while it parses the rules."""

from __future__ import annotations

import copy
from typing import Any

from opir.errors import ConfigError


def _merge(base: dict, override: dict, where: str) -> dict:
    merged = copy.deepcopy(base)
    for key, value in override.items():
        if key not in base:
            raise ConfigError(f"{where}.{key}: unknown key; allowed: {', '.join(sorted(base))}")
        if isinstance(base[key], dict) and isinstance(value, dict):
            merged[key] = _merge(base[key], value, f"{where}.{key}")
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def resolve_model_config(models: dict[str, Any], name: str) -> dict[str, Any]:
    """``models.abcc`` with ``models.variants[name]`` merged over it; an unknown key is a ConfigError."""
    if name not in models["variants"]:
        raise ConfigError(f"models.variants: no model {name!r} (known: {', '.join(models['variants'])})")
    return _merge(models["abcc"], models["variants"][name] or {}, f"models.variants.{name}")


def embedding_variant(settings: dict[str, Any], embed: dict[str, Any]) -> str:
    """The mixture-embedding variant a model reads: its own setting, else ``embed.variant``."""
    return settings.get("embedding_variant") or embed["variant"]


def abcc_embedding_variant(config: dict[str, Any], name: str) -> str:
    """The embedding variant model ``name`` reads, from the whole workflow config (for the rules' input functions)."""
    return embedding_variant(resolve_model_config(config["models"], name), config["embed"])
