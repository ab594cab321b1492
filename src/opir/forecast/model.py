"""A packaged model loaded for ``opir predict``: weights, read-out, VAE, molecule embeddings."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pandas as pd

from opir import __version__
from opir.baselines.regression import VoltageRegressionMap
from opir.core.compute import resolve_device
from opir.core.h5io import read_strings
from opir.formats.model_dir import (
    FORECAST_JSON,
    HEDGE_PARTNER,
    MOLECULES_H5,
    VAE_DIR,
    IncompatibleModelError,
    check_model_dir,
    model_space,
    read_hedge_partner,
)
from opir.latent.vae import load_vae
from opir.predict.abcc import load_abcc
from opir.preprocess.spectra import common_grid
from opir.render.waveform import CurveStyle
from opir.train.readout import Readout


@dataclass
class ForecastModel:
    """Everything ``opir predict`` needs, loaded from one model directory."""

    path: Path
    model: Any  # opir.models.abcc.ABCC
    meta: dict[str, Any]  # model.json
    forecast: dict[str, Any]  # forecast.json
    vae: Any  # diffusers AutoencoderKL (None for the spectral variant)
    readout: Any  # opir.train.Readout: generated state -> spectra, as the workflow's predict does
    molecules: pd.DataFrame  # name, smiles, role
    molecule_embeddings: dict[str, np.ndarray]
    device: Any
    # system_id -> mixture embedding of the training systems (opir.models.domain); empty for a directory packaged
    # before they were recorded
    training_mixtures: dict[str, np.ndarray] = field(default_factory=dict)
    # the partner a hedged model's draws are blended with (forecast.json "hedge"); None: no hedge packaged
    hedge_partner: VoltageRegressionMap | None = None

    @property
    def hedge(self) -> dict[str, Any] | None:
        """forecast.json's hedge entry (weight, partner, its settings), None when the directory carries none."""
        return self.forecast.get("hedge") if self.hedge_partner is not None else None

    def without_hedge(self) -> ForecastModel:
        """The model alone: no blend, and the band calibrated for its own draws (``band_calibration_model_alone``,
        which a hedged directory records beside the hedged band's)."""
        if self.hedge is None:
            return self
        forecast = {key: value for key, value in self.forecast.items()
                    if key not in ("hedge", "band_calibration", "band_calibration_model_alone")}
        if self.forecast.get("band_calibration_model_alone"):
            forecast["band_calibration"] = self.forecast["band_calibration_model_alone"]
        return replace(self, forecast=forecast, hedge_partner=None)

    @property
    def wavenumber_cm1(self) -> np.ndarray:
        return common_grid(self.forecast["preprocess_params"])


def load_forecast_model(model_dir: str | Path, device: str = "auto") -> ForecastModel:
    """Load a self-contained model directory (weights as safetensors only; nothing is unpickled)."""
    model_dir = Path(model_dir)
    _, forecast = check_model_dir(model_dir)
    device_ = resolve_device(device)
    try:
        model, meta = load_abcc(model_dir, device_)
    except (TypeError, KeyError, RuntimeError, ValueError) as exc:  # architecture or weights of another version
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise IncompatibleModelError(f"{model_dir}: the weights do not fit this opir {__version__}: {first}") from exc
    n_points = int(forecast["preprocess_params"]["n_points"])
    vae = None
    if model_space(meta) == "spectrum":
        readout = Readout("spectrum", n_points, spectrum_scale=float(meta["spectrum_scale"]))
    else:
        try:
            style = CurveStyle(**meta["render"])
            residual_style = CurveStyle(**meta["render_variation"]) if meta.get("render_variation") else None
        except (TypeError, ValueError) as exc:
            raise IncompatibleModelError(f"{model_dir / 'model.json'}: render geometry not understood: {exc}") from exc
        if model.config.residual_channels and residual_style is None:
            raise IncompatibleModelError(f"{model_dir / 'model.json'}: a residual stream but no 'render_variation'")
        vae = load_vae(model_dir / VAE_DIR).to(device_)
        background = float(meta["settings"].get("predict", {}).get("background_grey", 0.0))
        readout = Readout("latent", n_points, model.config.latent_channels, model.config.residual_channels, vae,
                          float(vae.config.scaling_factor), style, residual_style, background)
    if meta.get("fusion"):
        readout.fusion_weight = np.asarray(meta["fusion"]["waveform_weight"], dtype=np.float32)
    with h5py.File(model_dir / MOLECULES_H5, "r") as handle:
        group = handle["molecules"]
        names = read_strings(group["name"])
        table = pd.DataFrame({"name": names, "smiles": read_strings(group["smiles"]),
                              "role": read_strings(group["role"])})
        embeddings = dict(zip(names, group["embedding"][()], strict=True))
        trained_on = {}
        if "training_mixtures" in handle:
            mixtures = handle["training_mixtures"]
            trained_on = dict(zip(read_strings(mixtures["system_id"]), mixtures["mixture_embedding"][()], strict=True))
    return ForecastModel(model_dir, model, meta, forecast, vae, readout, table, embeddings, device_, trained_on,
                         load_hedge_partner(model_dir, forecast))


def load_hedge_partner(model_dir: Path, forecast: dict[str, Any]) -> VoltageRegressionMap | None:
    """The hedge's partner when forecast.json names one; its file must then be there and fit the model's grid."""
    hedge = forecast.get("hedge")
    if not hedge:
        return None
    path = model_dir / hedge.get("partner_file", HEDGE_PARTNER)
    arrays, partner = read_hedge_partner(path)
    if partner != "voltage_regression" or not 0.0 <= float(hedge.get("weight", -1.0)) <= 1.0:
        raise IncompatibleModelError(f"{model_dir / FORECAST_JSON}: hedge {hedge.get('partner')!r} at weight "
                                     f"{hedge.get('weight')!r} not understood by this opir {__version__}")
    fitted = VoltageRegressionMap.from_arrays(arrays, str(path))
    if fitted.coef.shape[0] != int(forecast["preprocess_params"]["n_points"]):
        raise IncompatibleModelError(f"{path}: the partner predicts {fitted.coef.shape[0]} points, the model "
                                     f"{forecast['preprocess_params']['n_points']}")
    return fitted
