"""Hedging under shift: a model blended with a partner on the system split, the weight chosen by holding out
training systems (never by test targets; docs/benchmark.md, "Hedging under shift").

For each group of held-out training systems, the model's recipe is trained on the other training systems and the
partner (the pooled voltage regression) fitted there; both predict the held-out systems' samples, and every blend
w * model + (1 - w) * partner is scored there. The weight with the least MAE averaged over the groups is applied to
the model's and the partner's test predictions: each of the model's draws is blended with the partner's mean, so the
band keeps its shape and moves with the blend.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from opir.baselines.regression import predict_baseline
from opir.core.errors import DataError
from opir.core.h5io import provenance
from opir.evaluate.metrics import evaluate_predictions
from opir.evaluate.settings import HEDGE_SPLIT
from opir.formats.predictions import Predictions, read_predictions, write_predictions
from opir.formats.samples import load_samples, load_split, read_sample_arrays
from opir.predict.abcc import predict_abcc


def held_out_split(train_ids: list[str], system_of: dict[str, str], held_out: list[str]) -> dict[str, list[str]]:
    """The system split's training samples, divided: train on the systems not held out, test on the held-out ones."""
    held = set(held_out)
    split = {"train": [s for s in train_ids if system_of[s] not in held],
             "test": [s for s in train_ids if system_of[s] in held]}  # fmt: skip
    if not split["test"]:
        raise DataError(f"held-out systems {', '.join(held_out)}: no training samples of the system split")
    return split


def write_held_out_splits(samples_h5: str | Path, splits_json: str | Path, held_out: list[str],
                          out_json: str | Path) -> dict[str, int]:  # fmt: skip
    """A splits file whose ``system`` split is :func:`held_out_split` of ``splits_json``'s (the other splits are
    left out: nothing reads them there). Returns the sample counts."""
    table = read_sample_arrays(samples_h5, ["samples/sample_id", "samples/system_id"])
    system_of = dict(zip(table["samples/sample_id"], table["samples/system_id"], strict=True))
    splits = json.loads(Path(splits_json).read_text())
    split = held_out_split(splits[HEDGE_SPLIT]["train"], system_of, held_out)
    Path(out_json).parent.mkdir(parents=True, exist_ok=True)
    Path(out_json).write_text(json.dumps({HEDGE_SPLIT: split, "held_out": list(held_out)}, indent=1))
    return {"train": len(split["train"]), "test": len(split["test"])}


def blend(model: Predictions, partner: Predictions, weight: float) -> np.ndarray:
    """w * each of the model's draws + (1 - w) * the partner's mean, on the model's samples: (n, k, N_f)."""
    position = {sample: i for i, sample in enumerate(partner.sample_id)}
    missing = [s for s in model.sample_id if s not in position]
    if missing:
        raise DataError(f"the partner has no prediction for {len(missing)} of the model's samples, e.g. {missing[0]}")
    if not np.array_equal(model.wavenumber_cm1, partner.wavenumber_cm1):
        raise DataError("the model and its partner predict on different wavenumber axes")
    return blend_draws(model.prediction, partner.mean[[position[s] for s in model.sample_id]], weight)


def blend_draws(draws: np.ndarray, partner_mean: np.ndarray, weight: float) -> np.ndarray:
    """w * each draw (n, k, N_f) + (1 - w) * the partner's mean (n, N_f): the band keeps its shape, scaled by w."""
    if not 0.0 <= weight <= 1.0:
        raise ValueError(f"blend weight {weight}: must lie in [0, 1]")
    return (weight * np.asarray(draws) + (1.0 - weight) * np.asarray(partner_mean)[:, None, :]).astype(np.float32)


def validation_curve(model_h5: str | Path, partner_h5: str | Path, samples_h5: str | Path, splits_json: str | Path,
                     weights: list[float], dilate: dict[str, Any]) -> dict[str, dict[str, float]]:  # fmt: skip
    """The metrics' means of every blend weight on the held-out samples of ``splits_json``: {str(w): summary}."""
    model, partner = read_predictions(model_h5), read_predictions(partner_h5)
    table, test_ids = load_samples(samples_h5), load_split(splits_json, HEDGE_SPLIT)["test"]
    curve = {}
    for weight in weights:
        # the metrics score the mean of the draws: the blended mean is the blend of the means
        mixed = Predictions(model.sample_id, model.wavenumber_cm1, blend(model, partner, weight).mean(axis=1)[:, None])
        result = evaluate_predictions(mixed, table, test_ids, dilate["alpha"], dilate["gamma"], where=str(model_h5))
        curve[str(float(weight))] = {k: float(v["mean"]) for k, v in result["summary"].items()}
    return curve


def validate_group(samples_h5: str | Path, mixture_h5: str | Path, splits_json: str | Path, model_dir: str | Path,
                   predict_cfg: dict[str, Any], partner: str, partner_settings: dict[str, Any], weights: list[float],
                   dilate: dict[str, Any], predictions_h5: str | Path, partner_h5: str | Path, curve_json: str | Path,
                   device: str = "auto", electrodes_h5: str | Path | None = None,
                   rule: str = "hedge_validate") -> dict[str, Any]:  # fmt: skip
    """One held-out group (the ``system`` split of ``splits_json``, :func:`write_held_out_splits`): the model of
    ``model_dir`` (trained there) and the partner (fitted there) predict the held-out samples, and every blend is
    scored on them. Writes both predictions (with the provenance of ``rule``) and the curve (JSON); returns the
    curve's record."""
    inputs = [samples_h5, mixture_h5, splits_json, Path(model_dir) / "model.safetensors",
              *([electrodes_h5] if electrodes_h5 else [])]  # fmt: skip
    predict_abcc(samples_h5, None, mixture_h5, splits_json, None, HEDGE_SPLIT, model_dir, None, predictions_h5,
                 predict_cfg, device, attrs=provenance(rule, predict_cfg, inputs), electrodes_h5=electrodes_h5)
    predict_baseline(partner, samples_h5, splits_json, HEDGE_SPLIT, partner_h5, partner_settings, rule=rule)
    curve = validation_curve(predictions_h5, partner_h5, samples_h5, splits_json, weights, dilate)
    split = json.loads(Path(splits_json).read_text())
    record = {"held_out": split["held_out"], "n_validation": len(split[HEDGE_SPLIT]["test"]),
              "n_train": len(split[HEDGE_SPLIT]["train"]), "partner": partner, "curve": curve}
    Path(curve_json).write_text(json.dumps(record, indent=1))
    return record


def choose_weight(curves: dict[str, dict[str, dict[str, float]]], metric: str = "mae") -> dict[str, Any]:
    """The weight with the least ``metric`` averaged over the held-out groups' curves (each group counts once,
    whatever its size); ties go to the larger weight (the model itself)."""
    if not curves:
        raise DataError("no validation curve to choose a blend weight from")
    weight_sets = {tuple(sorted(curve)) for curve in curves.values()}
    if len(weight_sets) != 1:
        raise DataError("the held-out groups were scored on different weight grids")
    weights = sorted(next(iter(weight_sets)), key=float)
    mean = {w: float(np.mean([curve[w][metric] for curve in curves.values()])) for w in weights}
    chosen = min(reversed(weights), key=lambda w: mean[w])
    return {"weight": float(chosen), "metric": metric, "mean_curve": mean, "groups": sorted(curves)}


def write_weight(curves: dict[str, dict[str, dict[str, float]]], partner: str, partner_settings: dict[str, Any],
                 out_json: str | Path) -> dict[str, Any]:  # fmt: skip
    """The hedge as one file: the weight :func:`choose_weight` picks, and the partner with the settings it is fitted
    with (what ``opir package`` needs to carry the hedge into a model directory)."""
    choice = {**choose_weight(curves), "partner": partner, "partner_settings": partner_settings}
    Path(out_json).write_text(json.dumps(choice, indent=1))
    return choice


def read_weight(path: str | Path) -> dict[str, Any]:
    """A hedge file of :func:`write_weight`; one without the partner's settings was made before they were recorded."""
    path = Path(path)
    try:
        choice = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise DataError(f"{path}: cannot read the hedge's weight file ({exc})") from exc
    missing = [key for key in ("weight", "partner", "partner_settings") if key not in choice]
    if missing:
        raise DataError(f"{path}: no {', '.join(missing)}; re-run the hedge_weight rule")
    return choice


def write_hedged_predictions(model_h5: str | Path, partner_h5: str | Path, weight: float, out_h5: str | Path,
                             attrs: dict[str, Any], model: str) -> None:  # fmt: skip
    """The model's test predictions blended with its partner's at ``weight`` (:func:`blend`), every draw kept."""
    predictions, partner = read_predictions(model_h5), read_predictions(partner_h5)
    write_predictions(out_h5, predictions.sample_id, predictions.wavenumber_cm1, blend(predictions, partner, weight),
                      {**attrs, "blend_weight": float(weight)}, model=model)
