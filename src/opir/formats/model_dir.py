"""The self-contained model directory that ``opir predict`` reads: its layout, format version and check."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Any

from opir import __version__
from opir.core.errors import DataError

#: What makes a folder a self-contained model directory; bumped whenever its layout changes incompatibly.
MODEL_DIR_FORMAT = "opir-model-dir"
MODEL_DIR_FORMAT_VERSION = 1
FORECAST_JSON = "forecast.json"
MOLECULES_H5 = "molecules.h5"
VAE_DIR = "vae"
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
