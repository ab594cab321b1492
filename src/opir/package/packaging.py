"""A trained model folder packaged with its VAE, preprocessing parameters, molecule embeddings and calibrated band."""

from __future__ import annotations

import json
import logging
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from opir import __version__
from opir.baselines.regression import fit_voltage_regression
from opir.core.errors import ConfigError, DataError
from opir.core.h5io import atomic_h5, atomic_path, inputs_digest, provenance, write_axis, write_nxdata
from opir.evaluate.hedge import blend, read_weight
from opir.forecast.band import BAND_QUANTILES, band_coverage, conformal_offsets
from opir.forecast.model import load_forecast_model
from opir.forecast.sampling import forecast_samples, hedge_dataset_draws
from opir.formats.electrodes import electrode_features, read_electrodes
from opir.formats.embeddings import read_mixture_embeddings, read_molecule_embeddings
from opir.formats.model_dir import (
    ELECTRODES_H5,
    FORECAST_JSON,
    HEDGE_PARTNER,
    MODEL_DIR_FORMAT,
    MODEL_DIR_FORMAT_VERSION,
    MOLECULES_H5,
    VAE_DIR,
    model_space,
    write_hedge_partner,
)
from opir.formats.predictions import read_predictions
from opir.formats.samples import load_samples, load_split, read_preprocess_params, read_sample_arrays, read_spectra
from opir.preprocess.spectra import common_grid
from opir.train.data import training_mixtures

log = logging.getLogger(__name__)


# --------------------------------------------------------------------------------------------------------------
# The model directory: packaging (from a workflow's results) and loading
# --------------------------------------------------------------------------------------------------------------
def _training_voltage_range(samples_h5: Path, splits_json: Path | None, split: str | None) -> list[float]:
    """Voltages the model saw in training: the rows of the split's training samples (all rows without splits)."""
    table = read_sample_arrays(
        samples_h5, ["rows/voltage_v", "samples/sample_id", "samples/row", "samples/initial_row"]
    )
    voltage = table["rows/voltage_v"]
    rows = None
    if splits_json is not None and splits_json.exists() and split:
        train = set(json.loads(splits_json.read_text()).get(split, {}).get("train", []))
        keep = np.isin(table["samples/sample_id"], list(train))
        rows = np.unique(np.concatenate([table["samples/row"][keep], table["samples/initial_row"][keep]]))
    values = voltage[rows] if rows is not None and rows.size else voltage
    return [float(np.min(values)), float(np.max(values))]


def _training_elapsed_max(samples_h5: Path) -> float:
    return float(np.max(read_sample_arrays(samples_h5, ["samples/elapsed_s"])["samples/elapsed_s"]))


def package_model(
    model_dir: str | Path,
    samples_h5: str | Path,
    vae_dir: str | Path | None,
    mixture_h5: str | Path,
    splits_json: str | Path | None = None,
    out_dir: str | Path | None = None,
    electrodes_h5: str | Path | None = None,
    hedge_json: str | Path | None = None,
) -> Path:
    """Make a trained model directory self-contained: add the VAE, the preprocessing parameters (clip bounds
    included), the embedding variant/method/settings with the stored per-molecule embeddings, and the voltage
    range seen in training. ``out_dir`` None completes ``model_dir`` in place; otherwise a copy is written there.

    Everything is read through the producing stages' own files: ``samples.h5``'s ``preprocess_params`` attribute
    (opir.preprocess.dataset), the VAE folder (opir.latent), the mixture file's attributes and ``molecules`` group
    (opir.embed) and ``model.json`` (opir.train), whose render geometry is taken as is. ``vae_dir`` may be None
    for a model of the spectral variant, which decodes nothing. ``electrodes_h5`` (the dataset's electrode
    descriptors, opir.formats.electrodes) is copied in when given, so ``opir predict --electrode`` can name a sheet
    row. ``hedge_json`` (the hedge's weight file, opir.evaluate.hedge.write_weight) carries the hedge along: its
    partner is fitted on the split's training samples, as the workflow's row fitted it (:func:`package_hedge`).
    """
    model_dir, samples_h5, mixture_h5 = (Path(p) for p in (model_dir, samples_h5, mixture_h5))
    vae_dir = Path(vae_dir) if vae_dir is not None else None
    for path, what in ((model_dir / "model.json", "model.json"), (model_dir / "model.safetensors", "weights"),
                       (samples_h5, "sample table"), (mixture_h5, "mixtures")):
        if not path.exists():
            raise DataError(f"{path}: missing ({what}); cannot package the model directory {model_dir}")
    meta = json.loads((model_dir / "model.json").read_text())
    latent_space = model_space(meta) == "latent"
    if latent_space and (vae_dir is None or not (vae_dir / "config.json").exists()):
        where = "no VAE folder given" if vae_dir is None else f"{vae_dir / 'config.json'}: missing (VAE)"
        raise DataError(f"{where}; cannot package the model directory {model_dir}")
    if latent_space and not meta.get("render"):
        raise DataError(f"{model_dir / 'model.json'}: no 'render' geometry; the waveform images cannot be redrawn")
    preprocess_params = read_preprocess_params(samples_h5)
    wavenumber = read_sample_arrays(samples_h5, ["wavenumber_cm1"])["wavenumber_cm1"]
    attrs, molecules = read_molecule_embeddings(mixture_h5)
    for key in ("variant", "method", "settings"):
        if key not in attrs:
            raise DataError(f"{mixture_h5}: missing attribute {key!r}; re-run the embed stage")

    target = Path(out_dir) if out_dir is not None else model_dir
    target.mkdir(parents=True, exist_ok=True)
    if target.resolve() != model_dir.resolve():
        for name in ("model.safetensors", "model.json", "training_curve.csv"):
            if (model_dir / name).exists():
                shutil.copy2(model_dir / name, target / name)
    vae_target = target / VAE_DIR
    if vae_target.exists():
        shutil.rmtree(vae_target)
    if latent_space:  # the spectral variant decodes nothing
        vae_target.mkdir()
        for path in [vae_dir / "config.json", *sorted(vae_dir.glob("*.safetensors"))]:
            shutil.copy2(path, vae_target / path.name)

    if electrodes_h5 is None and meta.get("architecture", {}).get("electrode_dim"):
        raise DataError(f"{model_dir}: the model reads the electrode descriptors; give results/dataset/electrodes.h5")
    if electrodes_h5 is not None:
        read_electrodes(electrodes_h5)  # a file that does not read stops packaging here, not a forecast later
        shutil.copy2(electrodes_h5, target / ELECTRODES_H5)
    split = meta.get("split")
    trained_on = {}
    if splits_json is not None and Path(splits_json).exists() and split:
        trained_on = training_mixtures(samples_h5, mixture_h5, load_split(splits_json, split)["train"])
    with atomic_h5(target / MOLECULES_H5, provenance("opir package", None, [mixture_h5])) as handle:
        group = write_nxdata(handle, "molecules", "embedding", molecules["embedding"],
                             [("name", molecules["name"]), "."],
                             long_name=f"{attrs['method']} embedding per molecule, as in training")
        write_axis(group, "smiles", molecules["smiles"])
        write_axis(group, "role", molecules["role"])
        if trained_on:
            write_nxdata(handle, "training_mixtures", "mixture_embedding", np.stack(list(trained_on.values())),
                         [("system_id", np.array(list(trained_on))), "."],
                         long_name="mixture embedding of each training system: the domain opir predict places "
                                   "an unseen electrolyte in (opir.models.domain)")

    forecast = {
        "format": MODEL_DIR_FORMAT,
        "format_version": MODEL_DIR_FORMAT_VERSION,
        "opir_version": __version__,
        "preprocess_params": preprocess_params,
        "wavenumber_cm1": {"first": float(wavenumber[0]), "last": float(wavenumber[-1]), "n": int(wavenumber.size)},
        "embedding": {
            "variant": str(attrs["variant"]),
            "method": str(attrs["method"]),
            "settings": json.loads(attrs["settings"]),
            "statement": str(attrs.get("embedding_statement", "")),
        },
        "voltage_range_v": _training_voltage_range(samples_h5, Path(splits_json) if splits_json else None, split),
        "elapsed_max_s": _training_elapsed_max(samples_h5),
        "sources": inputs_digest([samples_h5, mixture_h5] + ([vae_dir / "config.json"] if latent_space else [])),
    }
    hedge_file = target / HEDGE_PARTNER
    hedge_file.unlink(missing_ok=True)  # a re-packaged directory keeps no hedge it was not given again
    if hedge_json is not None:
        if not (splits_json is not None and Path(splits_json).exists() and split):
            raise DataError(f"{hedge_json}: the hedge's partner is fitted on the split's training samples; give the "
                            "splits file")
        forecast["hedge"] = package_hedge(target, hedge_json, samples_h5, splits_json, split)
    with atomic_path(target / FORECAST_JSON) as tmp:
        tmp.write_text(json.dumps(forecast, indent=2))
    log.info("packaged %s -> %s (VAE, preprocessing, %s embeddings of %d molecules)", model_dir, target,
             attrs["method"], len(molecules["name"]))
    return target


def package_hedge(target: Path, hedge_json: str | Path, samples_h5: str | Path, splits_json: str | Path,
                  split: str) -> dict[str, Any]:  # fmt: skip
    """Fit the hedge's partner (the pooled voltage regression, with the settings of ``hedge_json``) on the split's
    training samples and write it into the model directory; returns forecast.json's ``hedge`` entry."""
    choice = read_weight(hedge_json)
    if choice["partner"] != "voltage_regression":
        raise DataError(f"{hedge_json}: partner {choice['partner']!r}; a model directory can carry only the "
                        "voltage regression")
    settings = choice["partner_settings"]
    table = load_samples(samples_h5)
    train = table.sample_index(load_split(splits_json, split)["train"], f"{splits_json} ({split}/train)")
    partner = fit_voltage_regression(table, train, settings["ridge_alpha"], settings["degree"],
                                     settings["exposure_thresholds_v"])
    write_hedge_partner(target / HEDGE_PARTNER, partner.arrays(), choice["partner"])
    log.info("hedge packaged: weight %s of the model, %s fitted on %d training samples", choice["weight"],
             choice["partner"], train.size)
    return {"weight": float(choice["weight"]), "partner": choice["partner"], "partner_settings": settings,
            "partner_file": HEDGE_PARTNER, "n_partner_samples": int(train.size),
            "chosen_by": {key: choice[key] for key in ("metric", "mean_curve", "groups") if key in choice},
            "statement": "each draw = weight * the model's draw + (1 - weight) * the partner's forecast; the weight "
                         "has the least mean MAE over held-out training systems (opir.evaluate.hedge)"}


def calibrate_band(
    model_dir: str | Path, samples_h5: str | Path, splits_json: str | Path, mixture_h5: str | Path, draws: int = 32,
    max_samples: int = 256, seed: int = 0, device: str = "auto",
) -> dict[str, Any]:
    """Estimate the conformal offsets of a packaged model on (up to ``max_samples`` of) its split's *training*
    samples, with the measured targets, and store them in forecast.json. Test samples are never used: the offsets
    are part of the model, and the coverage reported on the test sets stays an honest out-of-sample number."""
    fm = load_forecast_model(model_dir, device)
    ids = load_split(splits_json, fm.meta["split"])["train"]
    if len(ids) > max_samples:
        ids = sorted(np.random.default_rng(seed).choice(ids, max_samples, replace=False))
    electrodes = electrode_features(Path(model_dir) / ELECTRODES_H5) if fm.model.config.electrode_dim else None
    sampled = forecast_samples(fm, samples_h5, ids, read_mixture_embeddings(mixture_h5), draws, seed + 1,
                               electrodes=electrodes)
    table = read_sample_arrays(samples_h5, ["samples/sample_id", "samples/row"])
    position = {s: i for i, s in enumerate(table["samples/sample_id"])}
    targets = read_spectra(samples_h5, table["samples/row"][[position[s] for s in ids]])
    forecast_json = Path(model_dir) / FORECAST_JSON
    meta = json.loads(forecast_json.read_text())
    meta["band_calibration"] = _calibration(sampled, targets, TRAINING_CALIBRATION, seed=seed)
    meta.pop("band_calibration_model_alone", None)
    if fm.hedge is not None:  # what opir predict forecasts by default, and with --no-hedge
        meta["band_calibration_model_alone"] = meta["band_calibration"]
        hedged = hedge_dataset_draws(fm, samples_h5, ids, sampled)
        meta["band_calibration"] = {**_calibration(hedged, targets, TRAINING_CALIBRATION, seed=seed), "hedged": True}
    with atomic_path(forecast_json) as tmp:
        tmp.write_text(json.dumps(meta, indent=2))
    calibration = meta["band_calibration"]
    log.info("band calibrated on %d training samples x %d draws%s: raw coverage %.3f, median offset %.4g", len(ids),
             draws, " (hedged)" if fm.hedge is not None else "", calibration["raw_coverage_on_calibration"],
             float(np.median(calibration["offsets"])))
    return calibration


def _calibration(draws: np.ndarray, targets: np.ndarray, method: str, groups: np.ndarray | None = None,
                 **record: Any) -> dict[str, Any]:  # fmt: skip
    offsets = conformal_offsets(draws, targets, BAND_QUANTILES[1] - BAND_QUANTILES[0], groups)
    return {
        "method": method,
        "nominal_coverage": round(BAND_QUANTILES[1] - BAND_QUANTILES[0], 6),
        "n_samples": len(targets), "draws": int(draws.shape[1]), **record,
        "raw_coverage_on_calibration": band_coverage(draws, targets)["coverage"],
        "offsets": [float(v) for v in offsets],
    }


TRAINING_CALIBRATION = "split-conformal (CQR) offsets per wavenumber, from training samples of the split"
HELD_OUT_CALIBRATION = ("split-conformal (CQR) offsets per wavenumber, each system weighing alike, from the hedge's "
                        "held-out training systems: the predictions of the model's recipe trained without them")


def calibrate_band_held_out(model_dir: str | Path, held_out: Sequence[tuple[str | Path, str | Path]],
                            samples_h5: str | Path) -> dict[str, Any]:  # fmt: skip
    """Conformal offsets of a hedged package from the hedge's held-out groups instead of training samples: each
    group's predictions (``held_out``: pairs of the model's and the partner's predictions files, written by the
    hedge's validation, opir.evaluate.hedge) are forecasts of systems their model never saw, as a forecast of a new
    cell is; offsets fitted on training samples, which the model has learnt, leave the band too narrow there. The
    hedged draws are blended with the package's weight; the model's own draws give ``band_calibration_model_alone``.
    Each held-out system weighs alike (:func:`opir.forecast.band.conformal_offsets`). Nothing reads test samples."""
    forecast_json = Path(model_dir) / FORECAST_JSON
    meta = json.loads(forecast_json.read_text())
    if not meta.get("hedge"):
        raise DataError(f"{forecast_json}: no hedge packaged; held-out calibration needs the hedge's weight")
    grid = common_grid(meta["preprocess_params"])
    model_draws, hedged, sample_ids = [], [], []
    for model_h5, partner_h5 in held_out:
        model = read_predictions(model_h5)
        if model.wavenumber_cm1.shape != grid.shape or not np.allclose(model.wavenumber_cm1, grid):
            raise DataError(f"{model_h5}: its wavenumber axis is not the packaged model's ({len(grid)} points)")
        model_draws.append(model.prediction)
        hedged.append(blend(model, read_predictions(partner_h5), float(meta["hedge"]["weight"])))
        sample_ids.extend(model.sample_id)
    if not sample_ids:
        raise DataError(f"{model_dir}: no held-out predictions to calibrate the band with")
    table = load_samples(samples_h5)
    index = table.sample_index(sample_ids, "the hedge's held-out predictions")
    targets = table.absorbance[table.samples["row"][index]]
    systems = table.samples["system_id"][index]
    record = {"systems": {str(k): int(v) for k, v in zip(*np.unique(systems, return_counts=True), strict=True)},
              "held_out_groups": len(held_out)}
    meta["band_calibration_model_alone"] = _calibration(np.concatenate(model_draws), targets, HELD_OUT_CALIBRATION,
                                                        systems, **record)
    meta["band_calibration"] = {**_calibration(np.concatenate(hedged), targets, HELD_OUT_CALIBRATION, systems,
                                               **record), "hedged": True}
    with atomic_path(forecast_json) as tmp:
        tmp.write_text(json.dumps(meta, indent=2))
    calibration = meta["band_calibration"]
    log.info("band calibrated on %d samples of %d held-out training systems x %d draws (hedged): raw coverage %.3f, "
             "median offset %.4g", calibration["n_samples"], len(record["systems"]), calibration["draws"],
             calibration["raw_coverage_on_calibration"], float(np.median(calibration["offsets"])))
    return calibration


def package_trained_model(
    model_dir: str | Path, samples_h5: str | Path, splits_json: str | Path, vae_dir: str | Path | None,
    mixture_h5: str | Path, out_dir: str | Path | None = None, calibration_draws: int = 32,
    calibration_samples: int = 256, device: str = "auto", electrodes_h5: str | Path | None = None,
    hedge_json: str | Path | None = None, held_out: Sequence[tuple[str | Path, str | Path]] = (),
) -> Path:
    """Package a trained model folder (``model.json``, ``model.safetensors``, ``training_curve.csv``) with the files
    it was trained on, each given by its path (the workflow's ``package_model`` rule passes its inputs, ``opir
    package`` finds them in a workspace): the self-contained folder of :func:`package_model`, with its band
    calibrated unless ``calibration_draws`` is 0: on the hedge's held-out predictions (``held_out``, pairs of the
    model's and the partner's files, :func:`calibrate_band_held_out`) when the package carries a hedge and they are
    given, otherwise on training samples (:func:`calibrate_band`). ``mixture_h5`` must be the embedding file the
    model was trained with (``embedding_file`` of its model.json, compared by name)."""
    model_dir = Path(model_dir)
    if not (model_dir / "model.json").exists():
        raise ConfigError(f"{model_dir}: no trained model (model.json); train it with the workflow first")
    if calibration_draws and calibration_draws < 2:
        raise ConfigError(f"calibration draws {calibration_draws}: 0 (off) or at least 2")
    trained_with = json.loads((model_dir / "model.json").read_text()).get("embedding_file")
    if trained_with and Path(trained_with).name != Path(mixture_h5).name:
        raise DataError(f"{mixture_h5}: not the embeddings {model_dir} was trained with ({trained_with})")
    if held_out and not hedge_json:
        raise ConfigError("held-out predictions calibrate a hedged package's band: give the hedge's weight file too")
    target = package_model(model_dir, samples_h5, vae_dir, mixture_h5, splits_json, out_dir, electrodes_h5,
                           hedge_json)
    if calibration_draws and held_out:
        calibrate_band_held_out(target, held_out, samples_h5)
    elif calibration_draws:
        calibrate_band(target, samples_h5, splits_json, mixture_h5, calibration_draws, calibration_samples,
                       device=device)
    return target
