"""What the workflow reads about the evaluation stage when it starts: the hedge's split, its rows' names, its groups
of held-out systems and which models can be hedged. Kept apart from :mod:`opir.evaluate.hedge` (which predicts with
torch) because Snakemake parses the workflow, and so imports this, once for every job it starts."""

from __future__ import annotations

from typing import Any

from opir.core.errors import ConfigError
from opir.models.settings import model_splits, resolve_model_config, trained_model

#: The split the hedge is defined on: the test systems are electrodes or electrolytes the model never saw.
HEDGE_SPLIT = "system"


def hedged_name(model: str) -> str:
    """The row (and predictions file) of ``model`` hedged with its partner."""
    return f"{model}_hedged"


def held_out_groups(hold_out: list[list[str]] | None, train_systems: list[str]) -> dict[str, list[str]]:
    """{group name: systems held out together}: ``hold_out`` as given, or each training system alone (leave one
    system out) when it is None. A group name joins its systems with '+'."""
    groups = [[system] for system in train_systems] if hold_out is None else [list(g) for g in hold_out]
    known = set(train_systems)
    for group in groups:
        unknown = sorted(set(group) - known)
        if not group or unknown:
            raise ConfigError(f"evaluate.hedge.hold_out: {group}: {', '.join(unknown) or 'empty group'}; every "
                              f"group names training systems of the system split ({', '.join(train_systems)})")
        if set(group) == known:
            raise ConfigError(f"evaluate.hedge.hold_out: {group} holds out every training system; none is left "
                              "to train on")
    if len(groups) < 1:
        raise ConfigError("evaluate.hedge.hold_out: no group of held-out systems")
    return {"+".join(group): group for group in groups}


def check_hedge_models(models: dict[str, Any], names: list[str]) -> None:
    """Every model of ``evaluate.hedge.models`` must be a 1D ABCC variant that trains on the system split: the
    validation trainings retrain its recipe, and a latent model's VAE has already seen the held-out systems."""
    for name in names:
        where = f"evaluate.hedge.models: {name!r}"
        if name not in models["variants"]:
            raise ConfigError(f"{where} is not a variant of models.variants ({', '.join(models['variants'])})")
        if trained_model(models, name) != name:
            raise ConfigError(f"{where} is a prediction-only variant; name the model it is trained_as")
        if HEDGE_SPLIT not in model_splits(models, name):
            raise ConfigError(f"{where} is not trained on the {HEDGE_SPLIT} split")
        if resolve_model_config(models, name)["space"] != "spectrum":
            raise ConfigError(f"{where}: only 1D variants (space: spectrum) can be hedged; a latent model's VAE "
                              "was trained on the held-out systems' images")
