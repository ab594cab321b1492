"""The inputs of ``opir predict``: the static spectrum (OPUS or CSV), the voltage profile (CSV or EC-Lab text), the
electrolyte recipe and the electrode."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from opir.core.config import Recipe, parse_recipe
from opir.core.electrodes import DESCRIPTOR_COLUMNS, ElectrodeDescriptors, parse_descriptors
from opir.core.errors import ConfigError, DataError, OpusReadError
from opir.core.h5io import sha256_file
from opir.embed.encoders import embed_species, molecule_embeddings
from opir.embed.mixture import mixture_embedding, molecule_table
from opir.embed.molecules import EmbedSettings, check_molecules, check_recipe
from opir.forecast.model import ForecastModel
from opir.formats.electrodes import read_electrodes
from opir.formats.model_dir import ELECTRODES_H5
from opir.formats.opus_reader import read_opus_spectrum

log = logging.getLogger(__name__)


OPUS_MAGIC = bytes.fromhex("0a0afefe")


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
    # rdkit (slow to import) only where molecules are parsed or built
    from rdkit import Chem, RDLogger

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
# The electrode: a systems-sheet row by name, or the descriptor values
# --------------------------------------------------------------------------------------------------------------
def resolve_electrode(text: str, model_dir: str | Path) -> tuple[str, ElectrodeDescriptors]:
    """``--electrode``: explicit descriptor values (``'electrode_class=conversion, carbon_fraction=0.1, ...'``), or
    the name of a systems-sheet row of the model's training data, as its system_id or working_electrode (the
    descriptors come with the model directory, ``electrodes.h5``). Returns a label and the descriptors."""
    if "=" in text:
        return text, parse_descriptors(text, f"--electrode {text!r}")
    path = Path(model_dir) / ELECTRODES_H5
    explicit = f"or give the values: --electrode '{', '.join(f'{c}=...' for c in DESCRIPTOR_COLUMNS)}'"
    if not path.exists():
        raise ConfigError(f"--electrode {text!r}: {model_dir} holds no electrode descriptors ({ELECTRODES_H5}; "
                          f"package the model again) {explicit}")  # fmt: skip
    known = read_electrodes(path)
    matches = [descriptors for system, (name, descriptors) in known.items() if text in (system, name)]
    if not matches:
        names = sorted({n for pair in ((s, name) for s, (name, _) in known.items()) for n in pair})
        raise ConfigError(f"--electrode {text!r}: not a system or working electrode of the model's systems sheet "
                          f"(known: {', '.join(names)}); {explicit}")  # fmt: skip
    if any(other != matches[0] for other in matches):
        raise ConfigError(f"--electrode {text!r}: names electrodes with different descriptors in the model's sheet; "
                          f"name the system_id instead")  # fmt: skip
    return text, matches[0]
