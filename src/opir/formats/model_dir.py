"""Model folders: the one a training rule writes (``model.safetensors`` with the EMA weights, ``model.json``,
``training_curve.csv``) and the self-contained model directory that ``opir predict`` reads (its layout, format
version and check)."""

from __future__ import annotations

import contextlib
import csv
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import safe_open
from safetensors.numpy import save_file as save_numpy
from safetensors.torch import load_file, save_file

from opir import __version__
from opir.core.errors import DataError

#: What makes a folder a self-contained model directory; bumped whenever its layout changes incompatibly.
MODEL_DIR_FORMAT = "opir-model-dir"
MODEL_DIR_FORMAT_VERSION = 1
FORECAST_JSON = "forecast.json"
MOLECULES_H5 = "molecules.h5"
#: The training data's electrode descriptors (results/dataset/electrodes.h5), so `opir predict --electrode` can name
#: a systems-sheet row; optional (older model directories lack it, and explicit values work without it).
ELECTRODES_H5 = "electrodes.h5"
VAE_DIR = "vae"
#: The partner of a hedged model (the pooled voltage regression as arrays, opir.baselines.regression
#: .VoltageRegressionMap); present only when forecast.json has a "hedge" entry.
HEDGE_PARTNER = "hedge_partner.safetensors"
#: Files a self-contained model directory must hold (besides ``vae/``).
MODEL_DIR_FILES = ("model.safetensors", "model.json", FORECAST_JSON, MOLECULES_H5)


class IncompatibleModelError(DataError):
    """A model directory from another layout or version than this library reads."""


def model_space(meta: dict[str, Any]) -> str:
    """``latent`` (waveform-image latents, the paper's ABCC) or ``spectrum`` (the 1D variant)."""
    return meta.get("space") or meta.get("settings", {}).get("space") or "latent"


def check_model_dir(model_dir: str | Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """model.json and forecast.json of a self-contained model directory; an :class:`IncompatibleModelError` says
    what is missing or which format/version it has."""
    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        raise DataError(f"{model_dir}: model directory does not exist")
    missing = [name for name in MODEL_DIR_FILES if not (model_dir / name).exists()]
    latent_space = True
    if (model_dir / "model.json").exists():
        with contextlib.suppress(json.JSONDecodeError):
            latent_space = model_space(json.loads((model_dir / "model.json").read_text())) == "latent"
    if latent_space and not (model_dir / VAE_DIR / "config.json").exists():
        missing.append(f"{VAE_DIR}/config.json")
    if missing:
        workflow_folder = (model_dir / "model.json").exists()
        hint = " (a workflow model folder: complete it with `opir package`)" if workflow_folder else ""
        raise IncompatibleModelError(
            f"{model_dir}: not a self-contained model directory; missing {', '.join(missing)}{hint}"
        )
    try:
        meta = json.loads((model_dir / "model.json").read_text())
        forecast = json.loads((model_dir / FORECAST_JSON).read_text())
    except json.JSONDecodeError as exc:
        raise IncompatibleModelError(f"{model_dir}: unreadable JSON ({exc})") from exc
    if forecast.get("format") != MODEL_DIR_FORMAT or forecast.get("format_version") != MODEL_DIR_FORMAT_VERSION:
        raise IncompatibleModelError(
            f"{model_dir / FORECAST_JSON}: model directory format {forecast.get('format')!r} version "
            f"{forecast.get('format_version')!r} (made by opir {forecast.get('opir_version', '?')}); this opir "
            f"{__version__} reads {MODEL_DIR_FORMAT!r} version {MODEL_DIR_FORMAT_VERSION}: re-package or retrain it"
        )
    for key in ("architecture", "settings") + (("render",) if model_space(meta) == "latent" else ()):
        if not meta.get(key):
            raise IncompatibleModelError(f"{model_dir / 'model.json'}: no {key!r} entry")
    return meta, forecast


# --------------------------------------------------------------------------------------------------------------
# The model folder of a training rule
# --------------------------------------------------------------------------------------------------------------
def write_curve(curve: list[dict], path: str | Path) -> None:
    """The training curve as CSV (one row per logged step)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    keys = list(dict.fromkeys(k for row in curve for k in row)) or ["step", "loss"]
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=keys)
        writer.writeheader()
        writer.writerows(curve)


def write_model_folder(
    out_dir: str | Path, weights: dict[str, torch.Tensor], meta: dict[str, Any], curve: list[dict]
) -> Path:
    """A trained model's folder: its (EMA) weights as safetensors, ``model.json`` and the training curve."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous().cpu() for k, v in weights.items()}, out_dir / "model.safetensors",
              metadata={"format": "pt", "weights": "ema"})
    (out_dir / "model.json").write_text(json.dumps(meta, indent=2, default=str))
    write_curve(curve, out_dir / "training_curve.csv")
    return out_dir


def read_model_meta(model_dir: str | Path) -> dict[str, Any]:
    """``model.json`` of a trained model's folder."""
    model_dir = Path(model_dir)
    if not (model_dir / "model.json").exists():
        raise DataError(f"{model_dir}: no model.json")
    return json.loads((model_dir / "model.json").read_text())


def read_model_weights(model_dir: str | Path, device: torch.device | str = "cpu") -> dict[str, torch.Tensor]:
    """The weights of a trained model's folder (safetensors only: nothing is unpickled)."""
    path = Path(model_dir) / "model.safetensors"
    if not path.exists():
        raise DataError(f"{path}: missing (the model's weights)")
    return load_file(path, device=str(device))


# --------------------------------------------------------------------------------------------------------------
# The hedge's partner in a model directory
# --------------------------------------------------------------------------------------------------------------
def write_hedge_partner(path: str | Path, arrays: dict[str, np.ndarray], partner: str) -> None:
    """The partner's fitted arrays as safetensors (float64 kept: the partner predicts in the training data's units)."""
    save_numpy({name: np.ascontiguousarray(value) for name, value in arrays.items()}, Path(path),
               metadata={"partner": partner})


def read_hedge_partner(path: str | Path) -> tuple[dict[str, np.ndarray], str]:
    """The partner's arrays and its name; a missing or unreadable file is an :class:`IncompatibleModelError`."""
    path = Path(path)
    if not path.exists():
        raise IncompatibleModelError(f"{path}: missing (forecast.json names a hedge; re-package the model)")
    try:
        with safe_open(path, framework="numpy") as handle:
            partner = (handle.metadata() or {}).get("partner", "")
            arrays = {name: handle.get_tensor(name) for name in handle.keys()}
    except Exception as exc:  # safetensors raises its own error types for a damaged header
        raise IncompatibleModelError(f"{path}: unreadable ({exc})") from exc
    return arrays, partner
