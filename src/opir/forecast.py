"""``opir predict``: one measured static spectrum + a voltage profile + an electrolyte recipe -> the predicted operando
sequence, with an uncertainty band (docs/method.md, "opir predict").

The steps mirror training exactly, with everything read from a self-contained model directory
(docs/formats.md, "Models, latents and checkpoints"):

1. the spectrum (OPUS ``AB`` block through :func:`opir.ingest.read_opus_spectrum`, or a two-column CSV) goes through
   :func:`opir.preprocess.apply` with the parameters the training set was made with, clip bounds included; it is
   its own run's s(v_0), so the per-run scale comes from it, as in training;
2. it is drawn as a waveform image (Alg. 1, the model's render geometry) and encoded by the model's VAE;
3. the recipe is embedded in the model's embedding space: molecules the model was trained with reuse their stored
   embeddings, any other molecule (given as SMILES) is embedded with the model's embedding method and settings;
4. each row m >= 1 of the profile is one target: the condition is (initial latent, v_0..v_m and t_m - t_0, mixture);
   ``draws`` one-step MeanFlow samples per target, decoded and read back (Alg. 1 inverse);
5. the draws are summarized as their mean and the per-wavenumber 5-95 % band, written as HDF5 + CSV + PNG.
"""

from __future__ import annotations

import contextlib
import json
import logging
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pandas as pd

from opir import __version__
from opir.errors import ConfigError, DataError, OpusReadError
from opir.h5io import atomic_h5, atomic_path, inputs_digest, provenance, read_strings, write_axis, write_nxdata

log = logging.getLogger(__name__)

#: What makes a folder a self-contained model directory; bumped whenever its layout changes incompatibly.
MODEL_DIR_FORMAT = "opir-model-dir"
MODEL_DIR_FORMAT_VERSION = 1
FORECAST_JSON = "forecast.json"
MOLECULES_H5 = "molecules.h5"
VAE_DIR = "vae"
#: Files a self-contained model directory must hold (besides ``vae/``).
MODEL_DIR_FILES = ("model.safetensors", "model.json", FORECAST_JSON, MOLECULES_H5)
#: The uncertainty band: per-wavenumber quantiles of the draws.
BAND_QUANTILES = (0.05, 0.95)
OPUS_MAGIC = bytes.fromhex("0a0afefe")


class IncompatibleModelError(DataError):
    """A model directory from another layout or version than this library reads."""


# --------------------------------------------------------------------------------------------------------------
# The model directory: packaging (from a workflow's results) and loading
# --------------------------------------------------------------------------------------------------------------
def _training_voltage_range(samples_h5: Path, splits_json: Path | None, split: str | None) -> list[float]:
    """Voltages the model saw in training: the rows of the split's training samples (all rows without splits)."""
    with h5py.File(samples_h5, "r") as handle:
        voltage = handle["rows/voltage_v"][()]
        rows = None
        if splits_json is not None and splits_json.exists() and split:
            train = set(json.loads(splits_json.read_text()).get(split, {}).get("train", []))
            sample_id = read_strings(handle["samples/sample_id"])
            keep = np.isin(sample_id, list(train))
            rows = np.unique(np.concatenate([handle["samples/row"][()][keep], handle["samples/initial_row"][()][keep]]))
    values = voltage[rows] if rows is not None and rows.size else voltage
    return [float(np.min(values)), float(np.max(values))]


def _training_elapsed_max(samples_h5: Path) -> float:
    with h5py.File(samples_h5, "r") as handle:
        return float(np.max(handle["samples/elapsed_s"][()]))


def package_model(
    model_dir: str | Path,
    samples_h5: str | Path,
    vae_dir: str | Path,
    mixture_h5: str | Path,
    splits_json: str | Path | None = None,
    out_dir: str | Path | None = None,
) -> Path:
    """Make a trained model directory self-contained: add the VAE, the preprocessing parameters (clip bounds
    included), the embedding variant/method/settings with the stored per-molecule embeddings, and the voltage
    range seen in training. ``out_dir`` None completes ``model_dir`` in place; otherwise a copy is written there.

    Everything is read through the producing stages' own files: ``samples.h5``'s ``preprocess_params`` attribute
    (opir.dataset), the VAE folder (opir.latent), the mixture file's attributes and ``molecules`` group (opir.embed)
    and ``model.json`` (opir.models.pipeline), whose render geometry is taken as is.
    """
    model_dir, samples_h5, vae_dir, mixture_h5 = (Path(p) for p in (model_dir, samples_h5, vae_dir, mixture_h5))
    for path, what in ((model_dir / "model.json", "model.json"), (model_dir / "model.safetensors", "weights"),
                       (samples_h5, "sample table"), (mixture_h5, "mixtures")):
        if not path.exists():
            raise DataError(f"{path}: missing ({what}); cannot package the model directory {model_dir}")
    meta = json.loads((model_dir / "model.json").read_text())
    latent_space = model_space(meta) == "latent"
    if latent_space and not (vae_dir / "config.json").exists():
        raise DataError(f"{vae_dir / 'config.json'}: missing (VAE); cannot package the model directory {model_dir}")
    if latent_space and not meta.get("render"):
        raise DataError(f"{model_dir / 'model.json'}: no 'render' geometry; the waveform images cannot be redrawn")
    with h5py.File(samples_h5, "r") as handle:
        if "preprocess_params" not in handle.attrs:
            raise DataError(f"{samples_h5}: no 'preprocess_params' attribute (made by an older dataset stage?)")
        preprocess_params = json.loads(handle.attrs["preprocess_params"])
        wavenumber = handle["wavenumber_cm1"][()]
    with h5py.File(mixture_h5, "r") as handle:
        attrs = dict(handle.attrs)
        if "molecules" not in handle:
            raise DataError(f"{mixture_h5}: no 'molecules' group; re-run the embed stage")
        molecules = {
            "name": read_strings(handle["molecules/name"]),
            "smiles": read_strings(handle["molecules/smiles"]),
            "role": read_strings(handle["molecules/role"]),
            "embedding": handle["molecules/embedding"][()],
        }
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

    with atomic_h5(target / MOLECULES_H5, provenance("opir package", None, [mixture_h5])) as handle:
        group = write_nxdata(handle, "molecules", "embedding", molecules["embedding"],
                             [("name", molecules["name"]), "."],
                             long_name=f"{attrs['method']} embedding per molecule, as in training")
        write_axis(group, "smiles", molecules["smiles"])
        write_axis(group, "role", molecules["role"])

    split = meta.get("split")
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
    with atomic_path(target / FORECAST_JSON) as tmp:
        tmp.write_text(json.dumps(forecast, indent=2))
    log.info("packaged %s -> %s (VAE, preprocessing, %s embeddings of %d molecules)", model_dir, target,
             attrs["method"], len(molecules["name"]))
    return target


def model_space(meta: dict[str, Any]) -> str:
    """``latent`` (waveform-image latents, the paper's ABCC) or ``spectrum`` (the 1D variant)."""
    return meta.get("space") or meta.get("settings", {}).get("space") or "latent"


@dataclass
class ForecastModel:
    """Everything ``opir predict`` needs, loaded from one model directory."""

    path: Path
    model: Any  # opir.models.abcc.ABCC
    meta: dict[str, Any]  # model.json
    forecast: dict[str, Any]  # forecast.json
    vae: Any  # diffusers AutoencoderKL (None for the spectral variant)
    readout: Any  # opir.models.pipeline.Readout: generated state -> spectra, as the workflow's predict does
    molecules: pd.DataFrame  # name, smiles, role
    molecule_embeddings: dict[str, np.ndarray]
    device: Any

    @property
    def wavenumber_cm1(self) -> np.ndarray:
        from opir.preprocess import common_grid

        return common_grid(self.forecast["preprocess_params"])


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


def load_forecast_model(model_dir: str | Path, device: str = "auto") -> ForecastModel:
    """Load a self-contained model directory (weights as safetensors only; nothing is unpickled)."""
    from opir.compute import resolve_device
    from opir.latent import load_vae
    from opir.models.pipeline import Readout, load_abcc
    from opir.render import CurveStyle

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
    return ForecastModel(model_dir, model, meta, forecast, vae, readout, table, embeddings, device_)


# --------------------------------------------------------------------------------------------------------------
# Inputs: the static spectrum, the voltage profile, the recipe
# --------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class StaticSpectrum:
    path: str
    wavenumber_cm1: np.ndarray  # as the file has it
    absorbance: np.ndarray
    sha256: str


def read_spectrum_csv(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """A CSV with columns ``wavenumber_cm1, absorbance`` (or any two numeric columns in that order, header
    optional); lines starting with ``#`` are comments."""
    try:
        table = pd.read_csv(path, comment="#", header=None, skipinitialspace=True)
    except (OSError, UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise DataError(f"{path}: cannot read the spectrum as CSV: {str(exc).splitlines()[0]}") from exc
    first = table.iloc[0].astype(str).str.strip().tolist() if len(table) else []
    if first and not _is_number(first[0]):  # a header line
        table = table.iloc[1:]
    if table.shape[1] != 2:
        raise DataError(f"{path}: expected 2 columns (wavenumber_cm1, absorbance), found {table.shape[1]}")
    values = table.apply(pd.to_numeric, errors="coerce").to_numpy(dtype=np.float64)
    bad = np.flatnonzero(~np.isfinite(values).all(axis=1))
    if bad.size:
        raise DataError(f"{path}: row {int(bad[0]) + 1} of the data is not two finite numbers")
    if len(values) < 2:
        raise DataError(f"{path}: a spectrum needs at least 2 points, found {len(values)}")
    return values[:, 0], values[:, 1]


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def read_static_spectrum(path: str | Path, block: str = "AB") -> StaticSpectrum:
    """The measured spectrum: an OPUS file (recognized by its magic bytes, whatever its name) or a CSV."""
    from opir.h5io import sha256_file
    from opir.ingest import read_opus_spectrum

    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: spectrum file does not exist")
    with open(path, "rb") as handle:
        magic = handle.read(4)
    if magic == OPUS_MAGIC:
        spectrum = read_opus_spectrum(path, block)
        return StaticSpectrum(str(path), spectrum.wavenumber_cm1, spectrum.values, spectrum.sha256)
    if path.suffix.lower() not in (".csv", ".txt", ".tsv", ".dpt"):
        raise OpusReadError(f"{path}: neither an OPUS file (first bytes {magic.hex()}, expected 0a0afefe) nor a "
                            ".csv/.txt/.dpt table")
    wavenumber, absorbance = read_spectrum_csv(path)
    return StaticSpectrum(str(path), wavenumber, absorbance, sha256_file(path))


@dataclass(frozen=True)
class VoltageProfile:
    """The times (s, from the static spectrum) at which spectra are wanted and the cell voltage then; row 0 is the
    static spectrum's own state v_0."""

    path: str
    time_s: np.ndarray
    voltage_v: np.ndarray


_TIME_NAMES = ("time_s", "time/s", "time", "t_s")
_VOLTAGE_NAMES = ("voltage_v", "ewe/v", "voltage", "v", "e_v")


def read_voltage_profile(path: str | Path) -> VoltageProfile:
    """A CSV with columns ``time_s`` and ``voltage_v`` (EC-Lab's ``time/s`` and ``Ewe/V`` are accepted), one row
    per wanted spectrum, the first row being the static spectrum; time strictly increasing."""
    path = Path(path)
    try:
        table = pd.read_csv(path, comment="#", sep=None, engine="python")
    except (OSError, UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise DataError(f"{path}: cannot read the voltage profile: {str(exc).splitlines()[0]}") from exc
    columns = {str(c).strip().lower(): c for c in table.columns}
    time_col = next((columns[n] for n in _TIME_NAMES if n in columns), None)
    volt_col = next((columns[n] for n in _VOLTAGE_NAMES if n in columns), None)
    if time_col is None or volt_col is None:
        raise DataError(f"{path}: expected columns time_s and voltage_v, found {', '.join(map(str, table.columns))}")
    time_s = pd.to_numeric(table[time_col], errors="coerce").to_numpy(dtype=np.float64)
    voltage_v = pd.to_numeric(table[volt_col], errors="coerce").to_numpy(dtype=np.float64)
    bad = np.flatnonzero(~(np.isfinite(time_s) & np.isfinite(voltage_v)))
    if bad.size:
        raise DataError(f"{path}: data row {int(bad[0]) + 1}: time_s and voltage_v must be finite numbers")
    if len(time_s) < 2:
        raise DataError(f"{path}: need at least 2 rows (the static spectrum's state and one target), found "
                        f"{len(time_s)}")
    steps = np.diff(time_s)
    if np.any(steps <= 0):
        row = int(np.flatnonzero(steps <= 0)[0]) + 2
        raise DataError(f"{path}: time is not strictly increasing at data row {row} "
                        f"({time_s[row - 2]:g} s then {time_s[row - 1]:g} s)")
    return VoltageProfile(str(path), time_s, voltage_v)


def check_voltage_range(profile: VoltageProfile, range_v: Sequence[float], tolerance_v: float) -> None:
    """Every voltage within the range the model was trained on (widened by ``tolerance_v``): beyond it the model
    would extrapolate, and a forecast there is not one we can stand behind."""
    low, high = float(range_v[0]) - tolerance_v, float(range_v[1]) + tolerance_v
    outside = np.flatnonzero((profile.voltage_v < low) | (profile.voltage_v > high))
    if outside.size:
        row = int(outside[0])
        raise DataError(
            f"{profile.path}: data row {row + 1}: voltage {profile.voltage_v[row]:g} V is outside the model's "
            f"training range {range_v[0]:.3f}..{range_v[1]:.3f} V (tolerance {tolerance_v:g} V)"
        )


def embed_electrolyte(recipe_text: str, fm: ForecastModel) -> np.ndarray:
    """The recipe's mixture embedding in the model's space. Names known to the model reuse its stored embeddings
    (identical to training, and no UniMol weights needed); a SMILES of a known molecule counts as that molecule;
    anything else is embedded with the model's method and settings (opir.embed)."""
    from rdkit import Chem, RDLogger

    from opir.config import Recipe, parse_recipe
    from opir.embed import (
        EmbedSettings,
        check_molecules,
        check_recipe,
        embed_species,
        mixture_embedding,
        molecule_embeddings,
        molecule_table,
    )

    recipe = parse_recipe(recipe_text, "--electrolyte")
    canonical = {}
    for name, smiles in zip(fm.molecules["name"], fm.molecules["smiles"], strict=True):
        mol = Chem.MolFromSmiles(smiles)
        if mol is not None:
            canonical[Chem.MolToSmiles(mol)] = name

    def known(name: str) -> str:
        if name in fm.molecule_embeddings:
            return name
        RDLogger.DisableLog("rdApp.*")  # a name that is no SMILES is reported below, naming the recipe
        try:
            mol = Chem.MolFromSmiles(name)
        finally:
            RDLogger.EnableLog("rdApp.*")
        return canonical.get(Chem.MolToSmiles(mol), name) if mol is not None else name

    recipe = Recipe(salts={known(k): v for k, v in recipe.salts.items()},
                    components={known(k): v for k, v in recipe.components.items()})
    table = molecule_table(fm.molecules, recipe)
    check_recipe(recipe, table, f"--electrolyte {recipe_text!r}")
    embeddings = {name: fm.molecule_embeddings[name] for name in recipe.molecules if name in fm.molecule_embeddings}
    new = table[~table["name"].isin(list(embeddings))].reset_index(drop=True)
    if len(new):
        settings = EmbedSettings.from_config(fm.forecast["embedding"]["settings"])
        species = check_molecules(new, "--electrolyte molecules")
        all_species = [s for name in new["name"] for s in species[name]]
        log.info("embedding %d molecule(s) the model has not seen: %s", len(new), ", ".join(new["name"]))
        try:
            embeddings |= molecule_embeddings(embed_species(all_species, fm.forecast["embedding"]["variant"],
                                                            settings, None))
        except ConfigError as exc:
            raise ConfigError(f"--electrolyte: cannot embed {', '.join(new['name'])} the way the model was "
                              f"trained ({fm.forecast['embedding']['method']}): {exc}") from exc
    return mixture_embedding(recipe, embeddings)


# --------------------------------------------------------------------------------------------------------------
# Forecast
# --------------------------------------------------------------------------------------------------------------
def preprocess_static(spectrum: StaticSpectrum, fm: ForecastModel) -> tuple[np.ndarray, float]:
    """The spectrum on the model's grid, preprocessed as training did (it is its own run's s(v_0)); and its scale."""
    from opir.preprocess import apply

    try:
        _, processed, info = apply(spectrum.wavenumber_cm1, spectrum.absorbance, fm.forecast["preprocess_params"])
    except DataError as exc:
        raise DataError(f"{spectrum.path}: {exc}") from exc
    return processed[0], float(info["scale"])


def initial_state(spectrum: np.ndarray, fm: ForecastModel):
    """The condition's initial state, made as in training: the Alg. 1 image of the preprocessed spectrum encoded
    exactly as opir.latent encodes the training images (1, C, h, w); for the spectral variant the spectrum itself,
    padded to the patch size (1, 1, L)."""
    import torch

    from opir.models.pipeline import pad_points, spectral_length
    from opir.models.vae import encode_images
    from opir.render import spectrum_to_waveform

    spectrum = np.asarray(spectrum, dtype=np.float32)[None]
    if model_space(fm.meta) == "spectrum":
        length = spectral_length(spectrum.shape[1], int(fm.meta["settings"]["spectral_patch_size"]))
        return torch.from_numpy(pad_points(spectrum, length)[:, None]).float()
    image = spectrum_to_waveform(spectrum, fm.readout.style)
    latent = encode_images(fm.vae, image, 1, fm.device) * float(fm.vae.config.scaling_factor)
    return torch.from_numpy(latent).float()


def build_conditions(latent, profile: VoltageProfile, mixture: np.ndarray, settings: dict[str, Any]):
    """One condition per target row m >= 1: profile v_0..v_m and elapsed t_m - t_0, as in training."""
    import torch

    from opir.models.conditioning import Condition, profile_features

    features = np.stack([
        profile_features(profile.voltage_v[: m + 1], float(profile.time_s[m] - profile.time_s[0]),
                         int(settings["profile_length"]), float(settings["voltage_center_v"]),
                         float(settings["voltage_scale_v"]), float(settings["time_scale_s"]),
                         profile.time_s[: m + 1], settings.get("exposure_thresholds_v") or ())
        for m in range(1, len(profile.time_s))
    ])
    n = len(features)
    return Condition(
        initial_latent=latent.expand(n, *latent.shape[1:]).contiguous(),
        profile=torch.from_numpy(features).float(),
        mixture=torch.from_numpy(np.asarray(mixture, dtype=np.float32)).expand(n, -1).contiguous(),
    )


def sample_sequence(
    fm: ForecastModel, condition, initial_spectra: np.ndarray, draws: int, seed: int, batch_size: int
) -> np.ndarray:
    """``draws`` one-step samples per condition -> spectra (n, draws, N_f) float32, read out and fused exactly as
    the workflow's predict (opir.models.pipeline.Readout); ``initial_spectra`` (n, N_f) are the s(v_0) the
    residual path adds its change to."""
    import torch

    from opir.train import autocast_factory

    settings = fm.meta["settings"]
    euler_steps = int(settings.get("predict", {}).get("euler_steps", 0))
    n_points = int(fm.forecast["preprocess_params"]["n_points"])
    autocast = autocast_factory(fm.device, settings.get("train", {}).get("precision", "fp32"))
    n = len(condition)
    # all (target, draw) pairs in one flat batch: draw k of target i is row i * draws + k
    flat = torch.arange(n).repeat_interleave(draws)
    out = np.empty((n * draws, n_points), dtype=np.float32)
    fallbacks = 0
    for start in range(0, len(flat), batch_size):
        idx = flat[start : start + batch_size]
        generator = torch.Generator().manual_seed(int(seed) * 1_000_003 + start)
        with autocast():
            state = fm.model.sample_state(condition.index(idx).to(fm.device), generator, euler_steps=euler_steps)
        paths, bad = fm.readout.paths(state, initial_spectra[idx.numpy()], fm.device)
        out[start : start + len(idx)] = fm.readout.fuse(paths)
        fallbacks += bad
    if fallbacks:
        log.warning("%d of %d decoded images had no ink above the background threshold; read without it",
                    fallbacks, len(flat))
    return out.reshape(n, draws, n_points)


def band(draws: np.ndarray, quantiles: Sequence[float] = BAND_QUANTILES) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean and the per-wavenumber quantile band over the draws axis (axis 1 of (n, k, N_f))."""
    draws = np.asarray(draws, dtype=np.float64)
    if draws.ndim != 3 or draws.shape[1] < 1:
        raise DataError(f"draws must be (n, k >= 1, N_f), got {draws.shape}")
    low, high = np.quantile(draws, list(quantiles), axis=1)
    return draws.mean(axis=1), low, high


def band_coverage(
    draws: np.ndarray, target: np.ndarray, quantiles: Sequence[float] = BAND_QUANTILES,
    offsets: np.ndarray | None = None,
) -> dict:
    """Share of target values inside the per-wavenumber band of the draws (n, k, N_f) vs targets (n, N_f): the
    empirical coverage of the nominal (q_high - q_low) interval (widened by conformal ``offsets`` (N_f,) when
    given); also per sample and the mean band width."""
    _, low, high = band(draws, quantiles)
    low, high = widen(low, high, offsets)
    target = np.asarray(target, dtype=np.float64)
    if target.shape != low.shape:
        raise DataError(f"targets {target.shape} do not match the draws' band {low.shape}")
    inside = (target >= low) & (target <= high)
    return {
        "coverage": float(inside.mean()),
        "nominal": float(quantiles[1] - quantiles[0]),
        "per_sample": inside.mean(axis=1),
        "mean_band_width": float((high - low).mean()),
        "below": float((target < low).mean()),
        "above": float((target > high).mean()),
    }


def forecast_samples(
    fm: ForecastModel, samples_h5: str | Path, sample_ids: Sequence[str], mixtures: dict[str, np.ndarray],
    draws: int, seed: int = 0, batch_size: int = 64,
) -> np.ndarray:
    """``opir predict``'s path on dataset samples (for measuring the band's coverage): each sample's initial
    spectrum (already preprocessed in samples.h5) is drawn, encoded and forecast at the sample's voltage profile.
    Returns (n, draws, N_f)."""
    import torch

    from opir.models.conditioning import Condition

    with h5py.File(samples_h5, "r") as handle:
        ids = read_strings(handle["samples/sample_id"])
        position = {s: i for i, s in enumerate(ids)}
        missing = [s for s in sample_ids if s not in position]
        if missing:
            raise DataError(f"{samples_h5}: {len(missing)} sample(s) not in the table, e.g. {missing[0]}")
        idx = np.array([position[s] for s in sample_ids], dtype=np.int64)
        rows, initial = handle["samples/row"][()][idx], handle["samples/initial_row"][()][idx]
        systems = read_strings(handle["samples/system_id"])[idx]
        voltage, elapsed = handle["rows/voltage_v"][()], handle["rows/elapsed_s"][()]
        spectra = handle["spectra/absorbance"]
        starts = np.unique(initial)
        initial_spectra = {int(r): spectra[int(r)] for r in starts}
    unknown = sorted(set(systems) - set(mixtures))
    if unknown:
        raise DataError(f"no mixture embedding for system(s) {', '.join(unknown)}")
    parts = []
    with torch.no_grad():
        latents = {r: initial_state(s, fm) for r, s in initial_spectra.items()}
        for r in starts:
            chosen = np.flatnonzero(initial == r)
            profile = VoltageProfile(str(samples_h5), elapsed[r : rows[chosen].max() + 1],
                                     voltage[r : rows[chosen].max() + 1])
            run_conditions = build_conditions(latents[int(r)], profile, mixtures[systems[chosen[0]]],
                                              fm.meta["settings"])
            parts.append((chosen, run_conditions.index(torch.as_tensor(rows[chosen] - r - 1))))
        order = np.concatenate([c for c, _ in parts])
        condition = Condition(*(torch.cat([getattr(p, f) for _, p in parts]) for f in
                                ("initial_latent", "profile", "mixture")))
        s0 = np.stack([initial_spectra[int(r)] for r in initial[order]])
        sampled = sample_sequence(fm, condition, s0, draws, seed, batch_size)
    out = np.empty_like(sampled)
    out[order] = sampled
    return out


def conformal_offsets(draws: np.ndarray, target: np.ndarray, coverage: float = 0.9) -> np.ndarray:
    """Split-conformal widening of the draws' band (conformalized quantile regression, Romano et al. 2019, NeurIPS):
    per wavenumber, the score of a calibration sample is how far its target lies outside the band
    (max(q_low - y, y - q_high), negative inside), and the offset is the ceil((n + 1) coverage)-th smallest score.
    The band [q_low - offset, q_high + offset] then covers a new exchangeable sample with probability >= coverage.
    Returns (N_f,) offsets (negative ones narrow a band that was too wide)."""
    _, low, high = band(draws)
    target = np.asarray(target, dtype=np.float64)
    if target.shape != low.shape:
        raise DataError(f"calibration targets {target.shape} do not match the draws' band {low.shape}")
    n = len(target)
    if n < 2:
        raise DataError(f"band calibration needs at least 2 samples, got {n}")
    scores = np.maximum(low - target, target - high)
    level = min(1.0, np.ceil((n + 1) * coverage) / n)
    return np.quantile(scores, level, axis=0, method="higher")


def widen(low: np.ndarray, high: np.ndarray, offsets: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """[low - offset, high + offset]; a negative offset narrows the band at most to its midpoint (never inverts)."""
    if offsets is None:
        return low, high
    middle = 0.5 * (low + high)
    return np.minimum(low - offsets, middle), np.maximum(high + offsets, middle)


def calibrated_band(draws: np.ndarray, offsets: np.ndarray | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean and the 5-95 % band of the draws, widened by the model's conformal offsets when it has them."""
    mean, low, high = band(draws)
    return (mean, *widen(low, high, offsets))


def band_offsets(fm: ForecastModel) -> np.ndarray | None:
    calibration = fm.forecast.get("band_calibration")
    return None if not calibration else np.asarray(calibration["offsets"], dtype=np.float64)


def calibrate_band(
    model_dir: str | Path, samples_h5: str | Path, splits_json: str | Path, mixture_h5: str | Path, draws: int = 32,
    max_samples: int = 256, seed: int = 0, device: str = "auto",
) -> dict[str, Any]:
    """Estimate the conformal offsets of a packaged model on (up to ``max_samples`` of) its split's *training*
    samples, with the measured targets, and store them in forecast.json. Test samples are never used: the offsets
    are part of the model, and the coverage reported on the test sets stays an honest out-of-sample number."""
    from opir.models.pipeline import load_split_samples, read_mixtures

    fm = load_forecast_model(model_dir, device)
    ids = load_split_samples(splits_json, fm.meta["split"], "train")
    if len(ids) > max_samples:
        ids = sorted(np.random.default_rng(seed).choice(ids, max_samples, replace=False))
    sampled = forecast_samples(fm, samples_h5, ids, read_mixtures(mixture_h5), draws, seed + 1)
    with h5py.File(samples_h5, "r") as handle:
        position = {s: i for i, s in enumerate(read_strings(handle["samples/sample_id"]))}
        rows = handle["samples/row"][()][[position[s] for s in ids]]
        targets = handle["spectra/absorbance"][()][rows]
    offsets = conformal_offsets(sampled, targets, BAND_QUANTILES[1] - BAND_QUANTILES[0])
    calibration = {
        "method": "split-conformal (CQR) offsets per wavenumber, from training samples of the split",
        "nominal_coverage": round(BAND_QUANTILES[1] - BAND_QUANTILES[0], 6),
        "n_samples": len(ids), "draws": draws, "seed": seed,
        "raw_coverage_on_calibration": band_coverage(sampled, targets)["coverage"],
        "offsets": [float(v) for v in offsets],
    }
    forecast_json = Path(model_dir) / FORECAST_JSON
    meta = json.loads(forecast_json.read_text())
    meta["band_calibration"] = calibration
    with atomic_path(forecast_json) as tmp:
        tmp.write_text(json.dumps(meta, indent=2))
    log.info("band calibrated on %d training samples x %d draws: raw coverage %.3f, median offset %.4g", len(ids),
             draws, calibration["raw_coverage_on_calibration"], float(np.median(offsets)))
    return calibration


def package_workspace_model(
    workdir: str | Path, split: str, model: str, out_dir: str | Path | None = None, calibration_draws: int = 32,
    calibration_samples: int = 256, device: str = "auto",
) -> Path:
    """Package ``results/models/{split}/{model}`` of a workflow working directory (``opir package`` and the
    workflow's ``package_model`` rule): the self-contained folder, with its band calibrated unless
    ``calibration_draws`` is 0."""
    workdir = Path(workdir)
    results = workdir / "results"
    model_dir = results / "models" / split / model
    if not (model_dir / "model.json").exists():
        raise ConfigError(f"{model_dir}: no trained model (model.json); train it with the workflow first")
    meta = json.loads((model_dir / "model.json").read_text())
    mixture = meta.get("embedding_file")
    if not mixture:
        raise ConfigError(f"{model_dir / 'model.json'}: no 'embedding_file'; cannot tell which embeddings it used")
    samples, splits = results / "dataset" / "samples.h5", results / "dataset" / "splits.json"
    target = package_model(model_dir, samples, results / "latent" / split / "vae", workdir / mixture, splits, out_dir)
    if calibration_draws:
        if calibration_draws < 2:
            raise ConfigError(f"calibration draws {calibration_draws}: 0 (off) or at least 2")
        calibrate_band(
            target, samples, splits, workdir / mixture, calibration_draws, calibration_samples, device=device
        )
    return target


@dataclass
class Forecast:
    wavenumber_cm1: np.ndarray
    input_spectrum: np.ndarray  # preprocessed s(v_0)
    input_scale: float
    input_voltage_v: float  # v_0, the static spectrum's state
    time_s: np.ndarray  # of the targets (rows 1..M of the profile), from the static spectrum
    voltage_v: np.ndarray
    draws: np.ndarray  # (M, k, N_f)
    band_offsets: np.ndarray | None = None  # conformal widening of the band (N_f,), None: raw quantiles

    @property
    def summary(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return calibrated_band(self.draws, self.band_offsets)


def forecast(
    fm: ForecastModel, spectrum: StaticSpectrum, profile: VoltageProfile, electrolyte: str, draws: int, seed: int = 0,
    batch_size: int = 64, voltage_tolerance_v: float = 0.05,
) -> Forecast:
    """The whole forecast of one static spectrum (see the module docstring)."""
    import torch

    if draws < 2:
        raise ConfigError(f"--draws {draws}: at least 2 draws are needed for an uncertainty band")
    check_voltage_range(profile, fm.forecast["voltage_range_v"], voltage_tolerance_v)
    elapsed = profile.time_s[-1] - profile.time_s[0]
    if elapsed > fm.forecast.get("elapsed_max_s", np.inf):
        log.warning("the profile lasts %.0f s, beyond the longest training sequence (%.0f s): extrapolation in time",
                    elapsed, fm.forecast["elapsed_max_s"])
    mixture = embed_electrolyte(electrolyte, fm)
    processed, scale = preprocess_static(spectrum, fm)
    with torch.no_grad():
        latent = initial_state(processed, fm)
        condition = build_conditions(latent, profile, mixture, fm.meta["settings"])
        s0 = np.repeat(processed[None], len(condition), axis=0)
        sampled = sample_sequence(fm, condition, s0, draws, seed, batch_size)
    return Forecast(fm.wavenumber_cm1, processed, scale, float(profile.voltage_v[0]),
                    profile.time_s[1:] - profile.time_s[0], profile.voltage_v[1:], sampled, band_offsets(fm))


# --------------------------------------------------------------------------------------------------------------
# Output: HDF5 + CSV + PNG
# --------------------------------------------------------------------------------------------------------------
def write_forecast_h5(path: Path, result: Forecast, attrs: dict[str, Any]) -> None:
    mean, low, high = result.summary
    with atomic_h5(path, attrs) as handle:
        write_nxdata(handle, "input", "absorbance", result.input_spectrum, [("wavenumber_cm1", result.wavenumber_cm1)],
                     long_name="static spectrum, preprocessed as in training (baseline removed, / input_scale)")
        handle["input"].attrs["input_scale"] = result.input_scale
        handle["input"].attrs["voltage_v"] = result.input_voltage_v
        group = write_nxdata(handle, "forecast", "mean", mean.astype(np.float32),
                             [("elapsed_s", result.time_s), ("wavenumber_cm1", result.wavenumber_cm1)],
                             long_name="mean of the draws (normalized absorbance)")
        group.attrs["auxiliary_signals"] = np.array(["band_q05", "band_q95"], dtype=h5py.string_dtype())
        widened = "" if result.band_offsets is None else " - conformal offset"
        group.create_dataset("band_q05", data=low.astype(np.float32)).attrs["long_name"] = f"5 % quantile{widened}"
        widened = "" if result.band_offsets is None else " + conformal offset"
        group.create_dataset("band_q95", data=high.astype(np.float32)).attrs["long_name"] = f"95 % quantile{widened}"
        if result.band_offsets is not None:
            write_axis(group, "band_offset", result.band_offsets.astype(np.float32))
        write_axis(group, "voltage_v", result.voltage_v)
        write_nxdata(handle, "draws", "absorbance", result.draws,
                     [("elapsed_s", result.time_s), ".", ("wavenumber_cm1", result.wavenumber_cm1)],
                     long_name="one-step MeanFlow draws (normalized absorbance)")


def write_forecast_csv(path: Path, result: Forecast) -> None:
    """Long format: one line per (spectrum, wavenumber)."""
    mean, low, high = result.summary
    m, n = mean.shape
    table = pd.DataFrame({
        "step": np.repeat(np.arange(1, m + 1), n),
        "elapsed_s": np.repeat(result.time_s, n),
        "voltage_v": np.repeat(result.voltage_v, n),
        "wavenumber_cm1": np.tile(result.wavenumber_cm1, m),
        "mean": mean.ravel(),
        "band_q05": low.ravel(),
        "band_q95": high.ravel(),
    })
    with atomic_path(path) as tmp:
        table.to_csv(tmp, index=False, float_format="%.6g")


def plot_steps(voltage_v: np.ndarray, at_voltages: Sequence[float] | None, n_default: int = 4) -> list[int]:
    """Steps to draw as spectra: the first step nearest each requested voltage, or evenly spread steps."""
    if at_voltages:
        return sorted({int(np.argmin(np.abs(voltage_v - v))) for v in at_voltages})
    return sorted({int(i) for i in np.linspace(0, len(voltage_v) - 1, min(n_default, len(voltage_v)))})


def plot_forecast(path: Path, result: Forecast, title: str, at_voltages: Sequence[float] | None = None) -> None:
    """Voltage profile | 2D map of the mean | spectra at chosen voltages with their 5-95 % band."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    mean, low, high = result.summary
    steps = plot_steps(result.voltage_v, at_voltages)
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.8), gridspec_kw={"width_ratios": [1, 2, 2]}, constrained_layout=True)
    hours = result.time_s / 3600.0
    axes[0].plot(np.r_[result.input_voltage_v, result.voltage_v], np.r_[0.0, hours], "k.-", ms=3)
    axes[0].plot([result.input_voltage_v], [0.0], "o", color="0.4", label="static spectrum")
    axes[0].legend(fontsize=8)
    axes[0].set(xlabel="voltage (V)", ylabel="time (h)", title="voltage profile")
    axes[0].invert_yaxis()
    limit = float(np.max(np.abs(mean - result.input_spectrum))) or 1.0
    image = axes[1].pcolormesh(result.wavenumber_cm1, hours, mean - result.input_spectrum, cmap="RdBu_r",
                               vmin=-limit, vmax=limit, shading="nearest")
    axes[1].set(xlabel="wavenumber (1/cm)", title="predicted change from the static spectrum (mean)")
    axes[1].invert_xaxis()
    axes[1].invert_yaxis()
    fig.colorbar(image, ax=axes[1], label="Δ normalized absorbance")
    axes[2].plot(result.wavenumber_cm1, result.input_spectrum, color="0.4", lw=1, ls="--", label="static input")
    colors = plt.cm.viridis(np.linspace(0, 0.9, len(steps)))
    for color, i in zip(colors, steps, strict=True):
        axes[2].fill_between(result.wavenumber_cm1, low[i], high[i], color=color, alpha=0.25, lw=0)
        axes[2].plot(result.wavenumber_cm1, mean[i], color=color, lw=1.2,
                     label=f"{result.voltage_v[i]:.2f} V, {hours[i]:.2f} h")
    for i in steps:
        axes[1].axhline(hours[i], color="k", lw=0.5, ls=":")
    axes[2].set(xlabel="wavenumber (1/cm)", ylabel="normalized absorbance",
                title=f"mean and 5-95 % band of {result.draws.shape[1]} draws")
    axes[2].invert_xaxis()
    axes[2].legend(fontsize=8)
    fig.suptitle(title, fontsize=10)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=120, format="png")
    plt.close(fig)


def predict(
    model_dir: str | Path, spectrum_path: str | Path, profile_path: str | Path, electrolyte: str, out_dir: str | Path,
    electrode: str | None = None, draws: int = 32, seed: int = 0, device: str = "auto", batch_size: int = 64,
    voltage_tolerance_v: float = 0.05, plot_voltages: Sequence[float] | None = None, block: str = "AB",
) -> dict[str, Path]:
    """``opir predict``: read and check every input before any model work, forecast, write forecast.{h5,csv,png}."""
    profile = read_voltage_profile(profile_path)
    spectrum = read_static_spectrum(spectrum_path, block)
    fm = load_forecast_model(model_dir, device)
    result = forecast(fm, spectrum, profile, electrolyte, draws, seed, batch_size, voltage_tolerance_v)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    settings = {"model_dir": str(Path(model_dir).resolve()), "electrolyte": electrolyte, "electrode": electrode,
                "draws": draws, "seed": seed, "voltage_tolerance_v": voltage_tolerance_v, "block": block}
    attrs = provenance("opir predict", settings, [spectrum_path, profile_path, Path(model_dir) / "model.safetensors",
                                                  Path(model_dir) / FORECAST_JSON])
    attrs |= {"model": str(fm.meta.get("model")), "split": str(fm.meta.get("split")), "electrolyte": electrolyte,
              "electrode": electrode or "", "draws": draws,
              "sampler": "euler" if fm.meta["settings"].get("predict", {}).get("euler_steps") else "meanflow_one_step",
              "band_quantiles": list(BAND_QUANTILES),
              "band_calibration": "none (raw quantiles of the draws)" if result.band_offsets is None else
              fm.forecast["band_calibration"]["method"]}
    paths = {"h5": out_dir / "forecast.h5", "csv": out_dir / "forecast.csv", "png": out_dir / "forecast.png"}
    write_forecast_h5(paths["h5"], result, attrs)
    write_forecast_csv(paths["csv"], result)
    title = (f"{Path(spectrum_path).name} | {electrolyte}" + (f" | {electrode}" if electrode else "")
             + f" | model {fm.meta.get('split')}/{fm.meta.get('model')}")
    plot_forecast(paths["png"], result, title, plot_voltages)
    log.info("forecast of %d spectra x %d draws written to %s", len(result.time_s), draws, out_dir)
    return paths

