"""Settings of the neural baselines (``models.neural_baselines``), resolved per model. Kept free of torch so the
workflow can resolve them while it parses the rules.

The two latent baselines share ABCC's backbone and condition settings (``models.abcc``) so that the comparison
isolates the training objective: their own section holds only what differs (the sampler) and ``overrides`` of
``models.abcc``. The two 1D baselines have their own networks but read the voltage-profile normalization and the
embedding variant from ``models.abcc`` too, so every model sees the same inputs scaled the same way.
"""

from __future__ import annotations

import copy
from typing import Any

from opir.core.errors import ConfigError
from opir.models.settings import merge_overrides

#: Baselines on the VAE latents of waveform images (same SiT backbone and condition encoder as ABCC).
LATENT_BASELINES = ("sit_regression", "sit_flow_matching")
#: Baselines on the 1D spectra directly.
SPECTRUM_BASELINES = ("gru_forecaster", "trajectory_flow")
NEURAL_BASELINES = LATENT_BASELINES + SPECTRUM_BASELINES

#: The keys of ``models.abcc`` a latent baseline uses (backbone, condition encoder, training, prediction).
LATENT_KEYS = (
    "hidden_size", "depth", "num_heads", "patch_size", "mlp_ratio", "attention", "profile_length",
    "voltage_center_v", "voltage_scale_v", "time_scale_s", "exposure_thresholds_v", "embedding_variant", "train",
    "predict",
)
#: The condition settings of ``models.abcc`` the 1D baselines use.
CONDITION_KEYS = ("voltage_center_v", "voltage_scale_v", "time_scale_s", "embedding_variant")


def resolve_baseline_settings(models: dict[str, Any], name: str) -> dict[str, Any]:
    """Everything baseline ``name`` reads, as one dict (the rule's ``params``: a change reruns only that model)."""
    if name not in NEURAL_BASELINES:
        raise ConfigError(f"models.neural_baselines: unknown baseline {name!r} (known: {', '.join(NEURAL_BASELINES)})")
    section = models["neural_baselines"][name]
    abcc = {key: models["abcc"][key] for key in LATENT_KEYS}
    if name in LATENT_BASELINES:
        settings = merge_overrides(abcc, section.get("overrides") or {}, f"models.neural_baselines.{name}.overrides")
        settings.update({k: copy.deepcopy(v) for k, v in section.items() if k != "overrides"})
    else:
        settings = copy.deepcopy(section)
        settings["condition"] = {key: abcc[key] for key in CONDITION_KEYS}
    settings["kind"] = name
    return settings


def baseline_embedding_variant(config: dict[str, Any], name: str) -> str:
    """The mixture-embedding variant baseline ``name`` reads (for the rules' input functions)."""
    settings = resolve_baseline_settings(config["models"], name)
    variant = settings.get("embedding_variant") or settings.get("condition", {}).get("embedding_variant")
    return variant or config["embed"]["variant"]


def baseline_train_settings(models: dict[str, Any], name: str) -> dict[str, Any]:
    """What training baseline ``name`` reads (the train rule's ``params``): :func:`resolve_baseline_settings` without
    the ``predict`` section, so that a prediction setting never retrains a model."""
    return {key: value for key, value in resolve_baseline_settings(models, name).items() if key != "predict"}


#: The keys of a baseline's ``predict`` settings that its prediction reads (opir.neural_baselines.predict): the
#: deterministic models draw once and need no seed; the latent ones decode in batches through the VAE. The sampler
#: of the flow models (``euler_steps``) is a setting of the model folder (model.json), not of the prediction.
PREDICT_KEYS = {
    "sit_regression": ("batch_size", "background_grey", "mixture_domain"),
    "sit_flow_matching": ("draws", "batch_size", "seed", "noise", "background_grey", "mixture_domain"),
    "gru_forecaster": ("mixture_domain",),
    "trajectory_flow": ("draws", "seed", "mixture_domain"),
}


def baseline_predict_settings(models: dict[str, Any], name: str) -> dict[str, Any]:
    """What predicting with baseline ``name`` reads (the predict rule's ``params``): the keys of :data:`PREDICT_KEYS`
    of its resolved ``predict`` section."""
    predict = resolve_baseline_settings(models, name)["predict"]
    return {key: predict[key] for key in PREDICT_KEYS[name]}


def baseline_input_names(name: str, prediction: bool = False) -> list[str]:
    """The inputs baseline ``name`` reads, by the names the train and predict scripts give them (those of
    :data:`opir.models.settings.ABCC_INPUTS`; ``mixture`` is the variant of :func:`baseline_embedding_variant`):
    the latent baselines read the waveform images and their latents (and the VAE to decode a prediction), the 1D
    ones the sample table alone; with ``prediction`` the trained model's files too."""
    if name not in NEURAL_BASELINES:
        raise ConfigError(f"models.neural_baselines: unknown baseline {name!r} (known: {', '.join(NEURAL_BASELINES)})")
    names = ["samples", "splits"]
    if name in LATENT_BASELINES:
        names += ["waveform", "latent"]
    names.append("mixture")
    if prediction:
        names += (["vae"] if name in LATENT_BASELINES else []) + ["model", "meta"]
    return names
