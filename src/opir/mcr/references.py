"""MCR step 1: the fixed reference spectra S_elec and S_SEI, learnt from the static calibration set only (so no test
spectrum leaks into them); the calibration files and the references file."""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pandas as pd

from opir.core.config import parse_recipe
from opir.core.errors import ConfigError, DataError, OpirError
from opir.core.h5io import atomic_h5, provenance, read_strings, write_axis, write_nxdata
from opir.formats.opus_reader import read_opus_spectrum
from opir.preprocess.spectra import apply, common_grid

log = logging.getLogger(__name__)


#: Calibration kinds and the stream their species belong to. Binder films are background of the electrolyte
#: stream: they are there from the first spectrum and do not grow.
STREAM_OF_KIND = {"electrolyte": "elec", "binder": "elec", "sei": "sei"}
CALIBRATION_COLUMNS = ("file", "kind", "composition")
FREE, SOLVATED = "free", "solvated"


# ==============================================================================================================
# Calibration set -> design of the reference estimation
# ==============================================================================================================
def anion_of(salt: str) -> str:
    """The IR-active anion of a lithium salt (``LiPF6`` -> ``PF6``): the cation has no band in 800-2000 1/cm."""
    return salt[2:] if salt.startswith("Li") and len(salt) > 2 else salt


@dataclass(frozen=True)
class ReferenceDesign:
    """What is known about every calibration sample, in the order of the component list.

    ``known`` holds the fixed amount of a component in a sample (0 where the species is absent) and NaN where it
    is free; every free entry belongs to exactly one closure group ``(row, (i_free, i_solvated), total)``.
    """

    component_names: list[str]
    stream: list[str]  # "elec" or "sei", per component
    known: np.ndarray  # (n_samples, k)
    closure: list[tuple[int, tuple[int, int], float]]
    salt_molarity: np.ndarray  # (n_samples,)
    anions: list[str] = field(default_factory=list)
    # estimated amounts of free components, e.g. a speciation model's free/solvated split, written as columns
    # named like the components in calibration.tsv: a starting point for the ALS, never imposed (NaN: none)
    estimate: np.ndarray | None = None

    @property
    def elec_index(self) -> list[int]:
        return [i for i, s in enumerate(self.stream) if s == "elec"]

    @property
    def sei_index(self) -> list[int]:
        return [i for i, s in enumerate(self.stream) if s == "sei"]


def read_calibration_table(path: str | Path) -> pd.DataFrame:
    """``calibration.tsv``: one row per calibration spectrum with at least ``file``, ``kind`` and ``composition``
    (the recipe language of :func:`opir.core.config.parse_recipe`; docs/formats.md, "Calibration set")."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: calibration table not found; the MCR references need a calibration set")
    table = pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False, comment="#")
    missing = [c for c in CALIBRATION_COLUMNS if c not in table.columns]
    if missing:
        raise DataError(f"{path}: missing column(s) {', '.join(missing)}; expected {', '.join(CALIBRATION_COLUMNS)}")
    if table.empty:
        raise DataError(f"{path}: no calibration spectra listed")
    bad_kind = table.index[~table["kind"].isin(list(STREAM_OF_KIND))]
    if len(bad_kind):
        row = bad_kind[0]
        raise DataError(
            f"{path}: row {row + 2}: kind {table.at[row, 'kind']!r} is not one of {', '.join(STREAM_OF_KIND)}"
        )
    return table


def design_from_table(table: pd.DataFrame, solvated_species: Sequence[str], source: str = "calibration.tsv"):
    """Component list and constraints from the compositions of the calibration samples.

    A species in ``solvated_species`` (the solvents) gives two components, ``{name}_free`` and
    ``{name}_solvated``, whose sum is the species' amount (closure); with no salt in the sample its solvated
    part is known to be zero. A salt gives its anion with the salt's molarity. Any other species (SEI compounds,
    binder, additives) is one component with the amount written.
    """
    names: list[str] = []
    stream: list[str] = []
    rows: list[dict[str, float]] = []
    pairs: list[list[tuple[str, str, str, float]]] = []
    salt_molarity = np.zeros(len(table))
    solvated = set(solvated_species)

    def add(name: str, kind: str) -> None:
        if name not in names:
            names.append(name)
            stream.append(STREAM_OF_KIND[kind])

    for n, (_, row) in enumerate(table.iterrows()):
        where = f"{source}: row {n + 2} ({row['file']})"
        try:
            recipe = parse_recipe(row["composition"], where=where)
        except ConfigError as err:
            raise DataError(str(err)) from None
        amounts: dict[str, float] = {}
        row_pairs = []
        for salt, molarity in recipe.salts.items():
            add(anion_of(salt), row["kind"])
            amounts[anion_of(salt)] = molarity
            salt_molarity[n] += molarity
        for species, amount in recipe.components.items():
            if species in solvated:
                free, solv = f"{species}_{FREE}", f"{species}_{SOLVATED}"
                add(free, row["kind"])
                add(solv, row["kind"])
                row_pairs.append((species, free, solv, amount))
            else:
                add(species, row["kind"])
                amounts[species] = amount
        rows.append(amounts)
        pairs.append(row_pairs)

    known = np.zeros((len(table), len(names)))
    closure = []
    for n, (amounts, row_pairs) in enumerate(zip(rows, pairs, strict=True)):
        for name, amount in amounts.items():
            known[n, names.index(name)] = amount
        for _, free, solv, amount in row_pairs:
            i, j = names.index(free), names.index(solv)
            if salt_molarity[n] > 0:
                known[n, [i, j]] = np.nan
                closure.append((n, (i, j), amount))
            else:
                known[n, i] = amount
    anions = sorted({anion_of(s) for recipe_row in table["composition"] for s in parse_recipe(recipe_row).salts})
    estimate = np.full(known.shape, np.nan)
    for j, name in enumerate(names):
        if name in table.columns:
            estimate[:, j] = pd.to_numeric(table[name].replace("", np.nan), errors="coerce").to_numpy(float)
    return ReferenceDesign(names, stream, known, closure, salt_molarity, anions, estimate)


# ==============================================================================================================
# Step 1: references by MCR-ALS on the calibration set
# ==============================================================================================================
class ConstraintKnownComposition:
    """pyMCR C-constraint: known amounts are imposed, free/solvated pairs are clipped at zero and rescaled so
    that they add up to the solvent's amount (closure)."""

    def __init__(self, design: ReferenceDesign):
        self.design = design
        self._fixed = ~np.isnan(design.known)

    def transform(self, C: np.ndarray) -> np.ndarray:
        C = np.clip(C, 0.0, None)
        C[self._fixed] = self.design.known[self._fixed]
        for row, (i, j), total in self.design.closure:
            pair = C[row, [i, j]]
            s = pair.sum()
            # both parts clipped to zero: restart from an even split rather than divide by zero
            C[row, [i, j]] = pair * (total / s) if s > 0 else total / 2
        return C


@dataclass
class References:
    wavenumber_cm1: np.ndarray
    component_names: list[str]
    stream: list[str]
    spectra: np.ndarray  # (k, N_f): rows are S^T
    calibration_concentrations: np.ndarray  # (n_cal, k), estimated
    diagnostics: dict[str, Any] = field(default_factory=dict)

    def select(self, which: str) -> tuple[list[str], np.ndarray]:
        index = [i for i, s in enumerate(self.stream) if s == which]
        return [self.component_names[i] for i in index], self.spectra[index]


def initial_concentrations(design: ReferenceDesign, solvated_share_per_molar: float) -> np.ndarray:
    """Start of the ALS: known amounts, and for each free/solvated pair the calibration table's own estimate of
    the split when it gives one (columns named like the components), else a solvated share growing with the salt
    molarity (Li+ binds about four solvent molecules, so the solvated share rises roughly linearly with salt).

    The start matters: the split is only determined up to the ambiguity that :func:`minimal_solvated_share`
    discusses, and ALS moves little along it."""
    C = np.nan_to_num(design.known.copy())
    estimate = design.estimate if design.estimate is not None else np.full(C.shape, np.nan)
    for row, (i, j), total in design.closure:
        share = float(np.clip(solvated_share_per_molar * design.salt_molarity[row], 0.05, 0.95))
        given = estimate[row, [i, j]]
        if np.all(np.isfinite(given)) and given.sum() > 0:
            share = float(np.clip(given[1] / given.sum(), 0.0, 1.0))
        C[row, i], C[row, j] = total * (1 - share), total * share
    return C


def minimal_solvated_share(
    C: np.ndarray, ST: np.ndarray, design: ReferenceDesign, floor_fraction: float
) -> tuple[np.ndarray, np.ndarray]:
    """Resolve the rotational ambiguity of each free/solvated pair.

    With closure, (1 - f) S_free + f S_solv fits equally well for any larger share f' = a f with
    S_solv' = S_free (1 - 1/a) + S_solv / a: non-negativity only bounds the share from below. Of all those
    solutions this picks the one with the smallest solvated share, i.e. the solvated spectrum that holds the
    least of the free spectrum: S_solv'' = (S_solv' - b S_free) / (1 - b), with b the smallest ratio
    S_solv' / S_free where the free spectrum has real intensity (above ``floor_fraction`` of its maximum).
    The fitted calibration spectra do not change; docs/mcr.md discusses the choice."""
    names = design.component_names
    pairs = {pair for _, pair, _ in design.closure}
    for i, j in pairs:
        free, solv = ST[i], ST[j]
        strong = free > floor_fraction * free.max()
        if not strong.any():
            continue
        b = float(np.clip(np.min(solv[strong] / free[strong]), 0.0, 0.95))
        if b <= 0:
            continue
        ST[j] = (solv - b * free) / (1 - b)
        ST[j] = np.clip(ST[j], 0, None)
        # C_free S_free + C_solv S_solv' = (C_free + b C_solv) S_free + (1 - b) C_solv S_solv''
        C[:, i] += b * C[:, j]
        C[:, j] *= 1 - b
        log.info("references: %s/%s ambiguity resolved with b = %.3f", names[i], names[j], b)
    return C, ST


def separate_anion(
    C: np.ndarray,
    ST: np.ndarray,
    design: ReferenceDesign,
    anions: Sequence[str],
    floor_fraction: float,
    tolerance: float = 0.02,
) -> tuple[np.ndarray, np.ndarray]:
    """Resolve the anion/solvated-solvent ambiguity.

    Li+ binds a fixed number of solvent molecules, so in every calibration electrolyte the solvated amounts add
    up to a multiple of the salt: c_anion = sum_X a_X c_solv,X. Then S_anion + w and S_solv,X - a_X w fit the
    calibration equally well for any spectrum w, and ALS lets part of the anion band drift into the solvated
    spectra. Of those solutions this keeps the one whose solvated spectra hold the least of the anion's band
    (w = g S_anion with the largest g that keeps them non-negative where the anion absorbs). Nothing is done when
    the calibration set breaks the proportionality (relative misfit above ``tolerance``)."""
    solvated = [j for _, (_, j), _ in design.closure]
    solvated = sorted(set(solvated))
    for anion in anions:
        if anion not in design.component_names or not solvated:
            continue
        k = design.component_names.index(anion)
        rows = C[:, k] > 0
        if rows.sum() < 2:
            continue
        a, *_ = np.linalg.lstsq(C[rows][:, solvated], C[rows, k], rcond=None)
        misfit = np.linalg.norm(C[rows][:, solvated] @ a - C[rows, k]) / np.linalg.norm(C[rows, k])
        if misfit > tolerance or not (a > 0).any():
            continue
        strong = ST[k] > floor_fraction * ST[k].max()
        ratios = [np.min(ST[j][strong] / (a_j * ST[k][strong])) for j, a_j in zip(solvated, a, strict=True) if a_j > 0]
        g = float(max(min(ratios), 0.0))
        for j, a_j in zip(solvated, a, strict=True):
            ST[j] = np.clip(ST[j] - a_j * g * ST[k], 0, None)
        ST[k] = (1 + g) * ST[k]
        log.info("references: %s separated from the solvated spectra (g = %.3f, misfit %.4f)", anion, g, misfit)
    return C, ST


def learn_references(
    wavenumber_cm1: np.ndarray,
    absorbance: np.ndarray,
    design: ReferenceDesign,
    max_iter: int = 200,
    tol_err_change: float = 1e-10,
    solvated_share_per_molar: float = 0.3,
    solvated_share_floor_fraction: float = 0.1,
) -> References:
    """MCR-ALS (pyMCR) on the calibration spectra: C constrained by :class:`ConstraintKnownComposition`,
    S^T non-negative (absorption bands), least squares in both half-steps."""
    # off the start-up path: the workflow imports this package while it parses the rules
    from pymcr.constraints import ConstraintNonneg
    from pymcr.mcr import McrAR

    D = np.asarray(absorbance, dtype=float)
    if D.shape[0] != design.known.shape[0]:
        raise OpirError(f"{D.shape[0]} calibration spectra but {design.known.shape[0]} compositions")
    free_per_component = np.isnan(design.known).sum(axis=0)
    present = (np.nan_to_num(design.known) > 0).sum(axis=0) + free_per_component
    absent = [name for name, n in zip(design.component_names, present, strict=True) if n == 0]
    if absent:
        raise DataError(f"calibration set: component(s) {', '.join(absent)} occur in no calibration sample")
    C0 = initial_concentrations(design, solvated_share_per_molar)
    mcr = McrAR(
        c_regr="OLS",
        st_regr="NNLS",
        c_constraints=[ConstraintKnownComposition(design)],
        st_constraints=[ConstraintNonneg()],
        max_iter=max_iter,
        tol_err_change=tol_err_change,
        tol_increase=None,  # the closure step may raise the error briefly; the best iterate is kept anyway
        tol_n_above_min=max_iter,
    )
    mcr.fit(D, C=C0)
    C, ST = separate_anion(mcr.C_opt_.copy(), mcr.ST_opt_.copy(), design, design.anions, solvated_share_floor_fraction)
    C, ST = minimal_solvated_share(C, ST, design, solvated_share_floor_fraction)
    fitted = C @ ST
    residual = D - fitted
    lack_of_fit = float(100 * np.sqrt((residual**2).sum() / (D**2).sum()))
    per_sample = np.linalg.norm(residual, axis=1) / np.maximum(np.linalg.norm(D, axis=1), 1e-12)
    diagnostics = {
        "n_calibration_spectra": int(D.shape[0]),
        "n_iter": int(mcr.n_iter),
        "n_iter_opt": int(mcr.n_iter_opt),
        "lack_of_fit_percent": lack_of_fit,
        "explained_variance_percent": float(100 * (1 - (residual**2).sum() / ((D - D.mean(0)) ** 2).sum())),
        "relative_residual_per_spectrum": per_sample,
        "err_history": np.asarray(mcr.err, dtype=float),
    }
    log.info(
        "references: %d components from %d calibration spectra, lack of fit %.3f %% after %d iterations",
        ST.shape[0],
        D.shape[0],
        lack_of_fit,
        mcr.n_iter,
    )
    return References(
        np.asarray(wavenumber_cm1, float), list(design.component_names), list(design.stream), ST, C, diagnostics
    )


# ==============================================================================================================
# Files
# ==============================================================================================================
def preprocess_calibration(
    wavenumber_cm1: np.ndarray, absorbance: np.ndarray, grid_cm1: np.ndarray, preprocess_params: Mapping[str, Any]
) -> np.ndarray:
    """Calibration spectra through exactly the measured spectra's preprocessing (opir.preprocess.spectra.apply:
    truncation, resampling, baseline, clipping) except the per-run normalization (scale 1): concentrations stay
    in the units of the calibration composition."""
    grid, spectra, _ = apply(wavenumber_cm1, absorbance, preprocess_params, scale=1.0)
    if grid.shape != grid_cm1.shape or not np.allclose(grid, grid_cm1):
        raise DataError(
            f"the preprocessing parameters give a {grid.size}-point grid {grid[0]:.1f}..{grid[-1]:.1f} 1/cm, not the "
            f"sample table's {grid_cm1.size} points {grid_cm1[0]:.1f}..{grid_cm1[-1]:.1f}: pass the same preprocess "
            "section to MCR"
        )
    return spectra.astype(float)


def calibration_files(calibration_dir: str | Path, list_spectra: bool = True) -> list[str]:
    """calibration.tsv and, once it exists, every file it lists: the inputs of the references rule (a changed
    calibration spectrum reruns the references). ``list_spectra=False`` gives the table alone: for a simulated
    calibration set, whose files one rule writes together, listing them would change the input set between the
    first run (before they exist) and the next, and rerun the references and everything downstream."""
    table = Path(calibration_dir) / "calibration.tsv"
    files = [str(table)]
    if list_spectra and table.exists():
        listed = pd.read_csv(table, sep="\t", dtype=str, keep_default_na=False, comment="#")
        files += [str(Path(calibration_dir) / name) for name in listed.get("file", [])]
    return files


def load_calibration(calibration_dir: str | Path, grid_cm1: np.ndarray, preprocess_params: Mapping[str, Any]):
    """Table and preprocessed absorbance (n_cal, N_f) of the calibration set."""
    calibration_dir = Path(calibration_dir)
    table_path = calibration_dir / "calibration.tsv"
    table = read_calibration_table(table_path)
    spectra = []
    for _, row in table.iterrows():
        spectrum = read_opus_spectrum(calibration_dir / row["file"], "a")
        spectra.append(preprocess_calibration(spectrum.wavenumber_cm1, spectrum.values, grid_cm1, preprocess_params)[0])
    return table, np.vstack(spectra)


def build_references(
    calibration_dir: str | Path,
    out_h5: str | Path,
    params: Mapping[str, Any],
    preprocess_params: Mapping[str, Any],
    rule: str = "mcr_references",
) -> References:
    """Driver of the ``mcr_references`` rule: calibration set -> results/mcr/references.h5.

    The grid comes from the preprocessing parameters, not from any operando file: the references are a function
    of the calibration set and the config alone, so no operando spectrum (of a held-out system or any other) can
    enter them."""
    grid = common_grid(preprocess_params)
    table, D = load_calibration(calibration_dir, grid, preprocess_params)
    design = design_from_table(table, params["solvated_species"], source=str(Path(calibration_dir, "calibration.tsv")))
    refs = learn_references(grid, D, design, **params["references"])
    inputs = [Path(calibration_dir) / "calibration.tsv", *(Path(calibration_dir) / f for f in table["file"])]
    write_references(out_h5, refs, table, provenance(rule, {"mcr": params, "preprocess": preprocess_params}, inputs))
    return refs


def write_references(path: str | Path, refs: References, table: pd.DataFrame, attrs: Mapping[str, Any]) -> None:
    with atomic_h5(path, attrs) as h5:
        for which, title in (("elec", "S_elec"), ("sei", "S_SEI")):
            names, spectra = refs.select(which)
            group = write_nxdata(
                h5,
                title,
                "spectra",
                spectra,
                [("component", np.array(names, dtype=str)), ("wavenumber_cm1", refs.wavenumber_cm1)],
                units="absorbance per unit amount",
                long_name=f"{title} (rows are S^T)",
            )
            group.attrs["component_names"] = json.dumps(names)
        write_axis(h5, "wavenumber_cm1", refs.wavenumber_cm1)
        write_axis(h5, "component_names", np.array(refs.component_names, dtype=str))
        write_axis(h5, "stream", np.array(refs.stream, dtype=str))
        diag = h5.create_group("diagnostics")
        for key, value in refs.diagnostics.items():
            if np.ndim(value):
                diag.create_dataset(key, data=value)
            else:
                diag.attrs[key] = value
        cal = h5.create_group("calibration")
        write_axis(cal, "file", table["file"].to_numpy(dtype=str))
        write_axis(cal, "kind", table["kind"].to_numpy(dtype=str))
        write_axis(cal, "composition", table["composition"].to_numpy(dtype=str))
        cal.create_dataset("concentrations", data=refs.calibration_concentrations)


def read_references(path: str | Path) -> References:
    with h5py.File(path, "r") as h5:
        names = list(read_strings(h5["component_names"]))
        stream = list(read_strings(h5["stream"]))
        grid = h5["wavenumber_cm1"][()]
        elec, sei = h5["S_elec/spectra"][()], h5["S_SEI/spectra"][()]
        cal_c = h5["calibration/concentrations"][()]
        diagnostics = dict(h5["diagnostics"].attrs)
    spectra = np.empty((len(names), len(grid)))
    spectra[[i for i, s in enumerate(stream) if s == "elec"]] = elec
    spectra[[i for i, s in enumerate(stream) if s == "sei"]] = sei
    return References(grid, names, stream, spectra, cal_c, diagnostics)
