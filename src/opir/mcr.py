"""Two-stream multivariate curve resolution (MCR), Eq. 11 of Ye et al. (2026):

    D(v) = C_elec(v) S_elec^T + C_SEI(v) S_SEI^T + E

Three steps, each a small function here and a file-level driver below it (docs/mcr.md gives the reasons):

1. :func:`learn_references` estimates the pure-component spectra S = [S_elec; S_SEI] from the static calibration
   set only, by MCR-ALS (pyMCR) with non-negativity, the known composition of every calibration sample (absent
   species are zero, the salt's anion and the SEI compounds have their known amounts) and closure of each
   solvent's free + Li+-solvated pair to the solvent's amount. Only the free/solvated split is unknown.
2. :func:`decompose_streams` holds S fixed and solves one non-negative least-squares problem per spectrum, which
   gives C_elec, C_SEI, the two reconstructed streams and the residual E; spectra the references explain badly
   are flagged (:func:`flag_poorly_explained`), never dropped.
3. :func:`recover_pathway` (paper Fig. 5) runs MCR-ALS on one run's sequence with the electrolyte references fixed
   and the SEI components free, so the SEI spectra and their growth with voltage are recovered from the
   sequence itself: from measured spectra or from a model's prediction, with the same code.

Concentrations of operando spectra are in the units of the calibration composition divided by the run's
normalization scale (preprocessing divides every run by its own scale); :func:`validate_against_truth` undoes
that scale before it compares with the simulator's true concentrations.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pandas as pd
from scipy.optimize import nnls

from opir.config import parse_recipe
from opir.errors import ConfigError, DataError, OpirError
from opir.h5io import atomic_h5, atomic_path, provenance, read_strings, write_axis, write_nxdata
from opir.ingest import read_opus_spectrum

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
    (the recipe language of :func:`opir.config.parse_recipe`; docs/formats.md, "Calibration set")."""
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
# Step 2: streams with the references held fixed
# ==============================================================================================================
def baseline_basis(n_points: int, order: int) -> np.ndarray:
    """Legendre polynomials 0..order on [-1, 1]: a slow baseline that neither stream should absorb.
    (order < 0: none)."""
    if order < 0:
        return np.zeros((0, n_points))
    x = np.linspace(-1.0, 1.0, n_points)
    return np.polynomial.legendre.legvander(x, order).T


def fit_concentrations(
    D: np.ndarray, ST: np.ndarray, baseline: np.ndarray | None = None, solver: str = "scipy_nnls"
) -> tuple[np.ndarray, np.ndarray]:
    """Non-negative concentrations C (n, k) with D ~ C ST + B baseline, ST fixed; baseline coefficients
    (n, n_b) may have either sign.

    ``scipy_nnls`` solves one Lawson-Hanson NNLS per spectrum; a signed baseline term enters as a +/- pair of
    columns, which keeps the problem an NNLS. ``pymcr`` does the same through ``McrAR(st_fix=all)`` (one
    iteration; the result does not change after it), kept to compare (benchmarks/mcr.py).
    """
    D = np.asarray(D, dtype=float)
    ST = np.asarray(ST, dtype=float)
    B = np.zeros((0, ST.shape[1])) if baseline is None else np.asarray(baseline, float)
    design = np.vstack([ST, B, -B])
    if solver == "scipy_nnls":
        A = design.T
        coef = np.empty((D.shape[0], design.shape[0]))
        for n, d in enumerate(D):
            coef[n] = nnls(A, d, maxiter=50 * A.shape[1])[0]
    elif solver == "pymcr":
        from pymcr.constraints import ConstraintNonneg
        from pymcr.mcr import McrAR

        mcr = McrAR(c_regr="NNLS", st_regr="OLS", c_constraints=[ConstraintNonneg()], max_iter=1)
        mcr.fit(D, ST=design.copy(), st_fix=list(range(design.shape[0])))
        coef = mcr.C_opt_
    else:
        raise ConfigError(f"mcr.solver: unknown solver {solver!r}; expected scipy_nnls or pymcr")
    k, nb = ST.shape[0], B.shape[0]
    return coef[:, :k], coef[:, k : k + nb] - coef[:, k + nb :]


@dataclass
class Streams:
    c_elec: np.ndarray
    c_sei: np.ndarray
    elec: np.ndarray
    sei: np.ndarray
    baseline: np.ndarray
    residual: np.ndarray
    residual_norm: np.ndarray  # ||E|| / ||D|| per spectrum
    flagged: np.ndarray


def decompose_streams(D: np.ndarray, refs: References, baseline_order: int = 1, solver: str = "scipy_nnls") -> Streams:
    """Eq. 11 with S fixed: D = C_elec S_elec^T + C_SEI S_SEI^T (+ slow baseline) + E."""
    D = np.asarray(D, dtype=float)
    if D.shape[1] != refs.spectra.shape[1]:
        raise DataError(
            f"spectra have {D.shape[1]} points but the references {refs.spectra.shape[1]}: both must be on the "
            "same preprocessed grid"
        )
    _, S_elec = refs.select("elec")
    _, S_sei = refs.select("sei")
    basis = baseline_basis(D.shape[1], baseline_order)
    C, b = fit_concentrations(D, np.vstack([S_elec, S_sei]), basis, solver)
    c_elec, c_sei = C[:, : len(S_elec)], C[:, len(S_elec) :]
    elec, sei, baseline = c_elec @ S_elec, c_sei @ S_sei, b @ basis
    residual = D - elec - sei - baseline
    norm = np.linalg.norm(residual, axis=1) / np.maximum(np.linalg.norm(D, axis=1), 1e-12)
    return Streams(c_elec, c_sei, elec, sei, baseline, residual, norm, np.zeros(len(D), bool))


def flag_poorly_explained(
    residual_norm: np.ndarray, max_relative: float, robust_z: float, snr: np.ndarray | None = None
) -> np.ndarray:
    """A spectrum is flagged when its relative residual exceeds ``max_relative`` (the references miss something
    big) or when its residual is an outlier: more than ``robust_z`` robust SDs (1.4826 MAD) above the median
    (a bubble, a contaminant, a shifted baseline in one spectrum).

    With the SNR of every spectrum, the outlier test is on ``residual_norm * snr``: a residual that is only
    noise has ||E|| / ||D|| proportional to 1 / SNR, so the product is the residual in units of what the noise
    explains, and low-SNR spectra are not flagged for being noisy."""
    r = np.asarray(residual_norm, float)
    statistic = r if snr is None else r * np.asarray(snr, float)
    finite = np.isfinite(statistic)
    median = np.median(statistic[finite])
    mad = 1.4826 * np.median(np.abs(statistic[finite] - median))
    outlier = np.zeros_like(r, bool)
    if mad > 0:
        outlier[finite] = (statistic[finite] - median) > robust_z * mad
    return (r > max_relative) | outlier


# ==============================================================================================================
# Validation against the simulator's truth
# ==============================================================================================================
def r2_score(true: np.ndarray, predicted: np.ndarray) -> float:
    """Coefficient of determination of ``predicted`` as an estimate of ``true`` (1 - SS_res / SS_tot)."""
    true, predicted = np.asarray(true, float), np.asarray(predicted, float)
    ss_tot = ((true - true.mean()) ** 2).sum()
    if ss_tot == 0:
        return float("nan")
    return float(1 - ((true - predicted) ** 2).sum() / ss_tot)


def per_run_gain(recovered: np.ndarray, true: np.ndarray) -> float:
    """One least-squares factor g with true ~ g * recovered, common to all components of a run: the normalization
    scale of that run when preprocessing did not record it."""
    num = float((recovered * true).sum())
    den = float((recovered * recovered).sum())
    return num / den if den > 0 else 1.0


def concentration_r2(
    recovered: np.ndarray, true: np.ndarray, names: Sequence[str], run_of_row: np.ndarray, scale: np.ndarray | None
) -> dict[str, Any]:
    """R2 per component of recovered vs true concentrations, pooled over all spectra.

    The per-run normalization divides every concentration of a run by that run's scale; ``scale`` (per row)
    undoes it. Without it, one gain per run is fitted over all components of the stream together (it cannot
    rescue a wrong split between components, only the run's overall scale)."""
    recovered = np.asarray(recovered, float).copy()
    if scale is not None:
        recovered *= np.asarray(scale, float)[:, None]
        method = "stored per-run scale"
    else:
        for run in np.unique(run_of_row):
            rows = run_of_row == run
            recovered[rows] *= per_run_gain(recovered[rows], true[rows])
        method = "fitted per-run gain"
    per_component = {name: r2_score(true[:, i], recovered[:, i]) for i, name in enumerate(names)}
    valid = [v for v in per_component.values() if np.isfinite(v)]
    return {
        "r2_per_component": per_component,
        "r2_mean": float(np.mean(valid)) if valid else float("nan"),
        "r2_pooled": r2_score(true.ravel(), recovered.ravel()),
        "scale_method": method,
    }


# ==============================================================================================================
# Step 3: SEI pathway (Fig. 5)
# ==============================================================================================================
@dataclass
class Pathway:
    component_names: list[str]
    spectra: np.ndarray  # (k_s, N_f), recovered SEI spectra
    concentrations: np.ndarray  # (n, k_s)
    c_elec: np.ndarray
    lack_of_fit_percent: float
    n_iter: int


def select_pathway_components(c_sei: np.ndarray, names: Sequence[str], min_share: float) -> list[int]:
    """SEI components worth resolving in a run: those whose amount (90th percentile over the run, so that a few
    noisy spectra do not count) reaches ``min_share`` of the largest SEI component's. Components that never
    appear have no information in the sequence; left in, MCR-ALS would let them absorb noise."""
    peak = np.quantile(np.asarray(c_sei), 0.9, axis=0)
    if peak.max() <= 0:
        raise DataError("no SEI component is present in this run's sequence; nothing to resolve")
    return [i for i in range(len(names)) if peak[i] >= min_share * peak.max()]


def recover_pathway(
    D: np.ndarray,
    refs: References,
    components: Sequence[int],
    baseline_order: int = 1,
    max_iter: int = 100,
    tol_err_change: float = 1e-10,
) -> Pathway:
    """MCR-ALS on one run's sequence: the electrolyte references and the baseline are fixed, the chosen SEI
    components are free (non-negative spectra and concentrations), initialized from their references so that
    each recovered component keeps its name. The scale ambiguity of MCR is removed by giving every recovered
    spectrum the norm of its reference."""
    from pymcr.constraints import ConstraintNonneg
    from pymcr.mcr import McrAR

    D = np.asarray(D, float)
    _, S_elec = refs.select("elec")
    sei_names, S_sei = refs.select("sei")
    S_free = S_sei[list(components)]
    basis = baseline_basis(D.shape[1], baseline_order)
    ST0 = np.vstack([S_elec, basis, -basis, S_free])
    n_fixed = ST0.shape[0] - len(S_free)
    mcr = McrAR(
        c_regr="NNLS",
        st_regr="NNLS",
        c_constraints=[ConstraintNonneg()],
        st_constraints=[ConstraintNonneg()],
        max_iter=max_iter,
        tol_err_change=tol_err_change,
        tol_increase=None,
    )
    # the baseline rows of ST may be negative; NNLS on ST would clip them, so they are held fixed with st_fix
    mcr.fit(D, ST=ST0.copy(), st_fix=list(range(n_fixed)))
    C, ST = mcr.C_opt_, mcr.ST_opt_
    residual = D - C @ ST
    spectra, conc = ST[n_fixed:].copy(), C[:, n_fixed:].copy()
    for i in range(len(spectra)):
        norm, ref_norm = np.linalg.norm(spectra[i]), np.linalg.norm(S_free[i])
        if norm > 0:
            spectra[i] *= ref_norm / norm
            conc[:, i] *= norm / ref_norm
    return Pathway(
        [sei_names[i] for i in components],
        spectra,
        conc,
        C[:, : len(S_elec)],
        float(100 * np.sqrt((residual**2).sum() / (D**2).sum())),
        int(mcr.n_iter),
    )


def cosine_similarity_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a, b = np.asarray(a, float), np.asarray(b, float)
    den = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    return np.where(den > 0, (a * b).sum(1) / np.where(den > 0, den, 1), np.nan)


# ==============================================================================================================
# Files
# ==============================================================================================================
def preprocess_calibration(
    wavenumber_cm1: np.ndarray, absorbance: np.ndarray, grid_cm1: np.ndarray, preprocess_params: Mapping[str, Any]
) -> np.ndarray:
    """Calibration spectra through exactly the measured spectra's preprocessing (opir.preprocess.apply:
    truncation, resampling, baseline, clipping) except the per-run normalization (scale 1): concentrations stay
    in the units of the calibration composition."""
    from opir.preprocess import apply

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
    from opir.preprocess import common_grid

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


def read_samples(samples_h5: str | Path) -> dict[str, np.ndarray]:
    need = [
        "wavenumber_cm1",
        "spectra/absorbance",
        "rows/system_id",
        "rows/run_id",
        "rows/index_in_run",
        "rows/voltage_v",
    ]
    with h5py.File(samples_h5, "r") as h5:
        missing = [k for k in need if k not in h5]
        if missing:
            raise DataError(f"{samples_h5}: missing {', '.join(missing)} (docs/formats.md, sample table)")
        out = {
            "wavenumber_cm1": h5["wavenumber_cm1"][()],
            "absorbance": h5["spectra/absorbance"][()],
            "system_id": read_strings(h5["rows/system_id"]),
            "run_id": read_strings(h5["rows/run_id"]),
            "index_in_run": h5["rows/index_in_run"][()],
            "voltage_v": h5["rows/voltage_v"][()],
        }
        if "rows/snr" in h5:
            out["snr"] = h5["rows/snr"][()]
        if "samples/sample_id" in h5:
            out["sample_id"] = read_strings(h5["samples/sample_id"])
            out["sample_row"] = h5["samples/row"][()]
    return out


def build_streams(
    samples_h5: str | Path,
    references_h5: str | Path,
    out_h5: str | Path,
    out_flagged_tsv: str | Path,
    params: Mapping[str, Any],
    rule: str = "mcr_streams",
) -> Streams:
    """Driver of the ``mcr_streams`` rule: every row of samples.h5 -> results/mcr/streams.h5 + flagged.tsv."""
    samples = read_samples(samples_h5)
    refs = read_references(references_h5)
    if not np.allclose(samples["wavenumber_cm1"], refs.wavenumber_cm1):
        raise DataError(f"{references_h5}: wavenumber grid differs from {samples_h5}; rerun mcr_references")
    start = time.perf_counter()
    streams = decompose_streams(samples["absorbance"], refs, params["baseline_order"], params["solver"])
    streams.flagged = flag_poorly_explained(
        streams.residual_norm, params["flag"]["max_relative_residual"], params["flag"]["robust_z"], samples.get("snr")
    )
    log.info("streams: %d spectra in %.2f s", len(streams.residual_norm), time.perf_counter() - start)
    flagged = flagged_table(samples, streams)
    for _, row in flagged.iterrows():
        log.warning(
            "poorly explained by the references: %s/%s spectrum %d (relative residual %.4f, SNR %.0f)",
            row.system_id,
            row.run_id,
            row.index_in_run,
            row.relative_residual,
            row.snr,
        )
    log.info("flagged %d of %d spectra", len(flagged), len(streams.flagged))
    write_streams(out_h5, samples, refs, streams, provenance(rule, params, [samples_h5, references_h5]))
    with atomic_path(out_flagged_tsv) as tmp:
        flagged.to_csv(tmp, sep="\t", index=False, float_format="%.6g")
    return streams


def flagged_table(samples: Mapping[str, np.ndarray], streams: Streams) -> pd.DataFrame:
    rows = np.flatnonzero(streams.flagged)
    return pd.DataFrame(
        {
            "row": rows,
            "system_id": samples["system_id"][rows],
            "run_id": samples["run_id"][rows],
            "index_in_run": samples["index_in_run"][rows],
            "voltage_v": samples["voltage_v"][rows],
            "relative_residual": streams.residual_norm[rows],
            "snr": samples["snr"][rows] if "snr" in samples else np.full(rows.size, np.nan),
        }
    )


def write_streams(path, samples, refs: References, streams: Streams, attrs) -> None:
    elec_names, _ = refs.select("elec")
    sei_names, _ = refs.select("sei")
    grid = refs.wavenumber_cm1
    row_axis = ("row", np.arange(len(streams.residual_norm)))
    f32 = {"dtype": "float32", "compression": "gzip", "compression_opts": 4, "shuffle": True}
    with atomic_h5(path, attrs) as h5:
        write_axis(h5, "wavenumber_cm1", grid)
        write_nxdata(
            h5,
            "c_elec",
            "c_elec",
            streams.c_elec,
            [row_axis, ("component", np.array(elec_names, dtype=str))],
            units="calibration amount / run scale",
        )
        write_nxdata(
            h5,
            "c_sei",
            "c_sei",
            streams.c_sei,
            [row_axis, ("component", np.array(sei_names, dtype=str))],
            units="calibration amount / run scale",
        )
        for name, values in (
            ("elec", streams.elec),
            ("sei", streams.sei),
            ("baseline", streams.baseline),
            ("residual", streams.residual),
        ):
            write_nxdata(h5, name, name, values, [row_axis, ("wavenumber_cm1", grid)], **f32)
        h5.create_dataset("residual_norm", data=streams.residual_norm).attrs["long_name"] = "||E|| / ||D||"
        h5.create_dataset("flagged", data=streams.flagged)
        rows = h5.create_group("rows")
        for key in ("system_id", "run_id", "index_in_run", "voltage_v"):
            write_axis(rows, key, samples[key] if samples[key].dtype.kind != "U" else samples[key].astype(str))


def read_streams(path: str | Path) -> dict[str, Any]:
    with h5py.File(path, "r") as h5:
        return {
            "c_elec": h5["c_elec/c_elec"][()],
            "c_sei": h5["c_sei/c_sei"][()],
            "elec_names": list(read_strings(h5["c_elec/component"])),
            "sei_names": list(read_strings(h5["c_sei/component"])),
            "residual_norm": h5["residual_norm"][()],
            "flagged": h5["flagged"][()],
            "system_id": read_strings(h5["rows/system_id"]),
            "run_id": read_strings(h5["rows/run_id"]),
            "index_in_run": h5["rows/index_in_run"][()],
        }


def read_run_scale(preprocessed_h5: str | Path) -> float | None:
    """The per-run normalization scale preprocessing recorded, or None when the file does not hold one."""
    with h5py.File(preprocessed_h5, "r") as h5:
        for key in ("scale", "normalization/scale", "per_run_scale"):
            if key in h5:
                return float(np.ravel(h5[key][()])[0])
        for key in ("scale", "per_run_scale"):
            if key in h5.attrs:
                return float(h5.attrs[key])
    return None


def truth_files(truth_dir: str | Path, runs: Sequence[tuple[str, str]]) -> dict[tuple[str, str], Path]:
    """The simulator's truth file of every run: ``{truth_dir}/{system}/{run}.h5``."""
    return {(system, run): Path(truth_dir) / system / f"{run}.h5" for system, run in runs}


def true_concentrations(
    truth: Mapping[tuple[str, str], str | Path], streams: Mapping[str, Any], names: Sequence[str]
) -> np.ndarray:
    """Rows of the simulator's true concentrations aligned with streams.h5 (NaN columns for unknown names);
    ``truth`` maps (system, run) to the run's truth file."""
    out = np.full((len(streams["run_id"]), len(names)), np.nan)
    keys = list(zip(streams["system_id"], streams["run_id"], strict=True))
    for system, run in dict.fromkeys(keys):
        if (system, run) not in truth:
            raise DataError(f"no truth file given for run {system}/{run}")
        path = Path(truth[(system, run)])
        if not path.is_file():
            raise DataError(f"{path}: truth file of run {system}/{run} not found")
        with h5py.File(path, "r") as h5:
            if "concentrations" not in h5 or "component_names" not in h5:
                raise DataError(f"{path}: needs 'concentrations' and 'component_names'")
            conc, truth_names = h5["concentrations"][()], list(read_strings(h5["component_names"]))
        rows = np.flatnonzero((streams["system_id"] == system) & (streams["run_id"] == run))
        index = streams["index_in_run"][rows]
        if index.max() >= len(conc):
            raise DataError(f"{path}: {len(conc)} truth rows, but spectrum index {index.max()} is used")
        for j, name in enumerate(names):
            if name in truth_names:
                out[rows, j] = conc[index, truth_names.index(name)]
    return out


def validate_against_truth(
    streams_h5: str | Path,
    truth: Mapping[tuple[str, str], str | Path],
    preprocessed: Mapping[tuple[str, str], str | Path] | None = None,
) -> dict[str, Any]:
    """R2 of recovered vs true concentrations per stream (the scale handling is in :func:`concentration_r2`)."""
    streams = read_streams(streams_h5)
    run_key = np.char.add(np.char.add(streams["system_id"].astype(str), "/"), streams["run_id"].astype(str))
    scale = None
    if preprocessed:
        per_run = {f"{s}/{r}": read_run_scale(p) for (s, r), p in preprocessed.items()}
        if all(v is not None for v in per_run.values()) and set(run_key) <= set(per_run):
            scale = np.array([per_run[k] for k in run_key])
    report: dict[str, Any] = {}
    for stream in ("sei", "elec"):
        names = streams[f"{stream}_names"]
        true = true_concentrations(truth, streams, names)
        known = ~np.isnan(true).any(axis=0)
        missing = [n for n, k in zip(names, known, strict=True) if not k]
        if missing:
            log.warning("no true concentration for %s: left out of R2", ", ".join(missing))
        kept = [n for n, k in zip(names, known, strict=True) if k]
        result = concentration_r2(streams[f"c_{stream}"][:, known], true[:, known], kept, run_key, scale)
        result["not_in_truth"] = missing
        report[stream] = result
    report["n_spectra"] = len(run_key)
    report["n_flagged"] = int(streams["flagged"].sum())
    report["median_relative_residual"] = float(np.median(streams["residual_norm"]))
    return report


def build_validation(streams_h5, truth, preprocessed, out_json) -> dict[str, Any]:
    """Driver of the ``mcr_validate`` rule: ``truth`` and ``preprocessed`` map (system, run) to files."""
    report = validate_against_truth(streams_h5, truth, preprocessed)
    log.info("R2 SEI %.4f, electrolyte %.4f", report["sei"]["r2_mean"], report["elec"]["r2_mean"])
    with atomic_path(out_json) as tmp:
        tmp.write_text(json.dumps(report, indent=2, default=float))
    return report


# ---- pathway files -------------------------------------------------------------------------------------------
def read_prediction_sequence(predictions_h5: str | Path, sample_ids: Sequence[str]) -> np.ndarray:
    """Mean over draws of the predicted spectra of ``sample_ids`` (predictions format, docs/formats.md)."""
    with h5py.File(predictions_h5, "r") as h5:
        ids = list(read_strings(h5["sample_id"]))
        where = {s: i for i, s in enumerate(ids)}
        missing = [s for s in sample_ids if s not in where]
        if missing:
            raise DataError(f"{predictions_h5}: no prediction for {len(missing)} sample(s), e.g. {missing[0]}")
        index = [where[s] for s in sample_ids]
        order = np.argsort(index)
        pred = h5["prediction"][np.asarray(index)[order]]
    out = np.empty_like(pred)
    out[order] = pred
    return out.mean(axis=1)


def perturbed_copy(D: np.ndarray, noise_fraction: float, seed: int) -> np.ndarray:
    """A stand-in for a model's prediction: the sequence with white noise of ``noise_fraction`` x its RMS and a
    small smooth multiplicative error per spectrum, so the figure can show how robust the recovery is."""
    rng = np.random.default_rng(seed)
    rms = np.sqrt(np.mean(D**2))
    gain = 1 + noise_fraction * rng.standard_normal((len(D), 1))
    return D * gain + noise_fraction * rms * rng.standard_normal(D.shape)


def build_pathway(
    samples_h5, references_h5, streams_h5, predictions_h5, out_h5, out_png, out_pdf, params, rule="mcr_pathway"
) -> dict[str, Pathway]:
    """Driver of the ``mcr_pathway`` rule (paper Fig. 5)."""
    import matplotlib.pyplot as plt

    from opir.figures.mcr import plot_sei_pathway

    p = params["pathway"]
    system, run = p["run"].split("/")
    samples = read_samples(samples_h5)
    refs = read_references(references_h5)
    streams = read_streams(streams_h5)
    rows = np.flatnonzero((samples["system_id"] == system) & (samples["run_id"] == run))
    if rows.size == 0:
        raise DataError(f"mcr.pathway.run: run {p['run']!r} is not in {samples_h5}")
    rows = rows[samples["index_in_run"][rows] > 0]  # targets only: m >= 1, as the models predict them
    sample_of_row = dict(zip(samples["sample_row"], samples["sample_id"], strict=True))
    if predictions_h5:
        with h5py.File(predictions_h5, "r") as h5:
            predicted_ids = set(read_strings(h5["sample_id"]))
        rows = np.array([r for r in rows if sample_of_row.get(r) in predicted_ids])
        if rows.size < 3:
            raise DataError(f"{predictions_h5}: fewer than 3 predicted spectra of run {p['run']}")
        predicted = read_prediction_sequence(predictions_h5, [sample_of_row[r] for r in rows])
        label = p.get("label") or Path(predictions_h5).stem
    else:
        predicted = perturbed_copy(samples["absorbance"][rows], p["perturb_noise"], p["seed"])
        label = f"perturbed copy (noise {p['perturb_noise']:g})"
    measured = samples["absorbance"][rows]
    components = select_pathway_components(streams["c_sei"][rows], streams["sei_names"], p["min_share"])
    kwargs = {"baseline_order": params["baseline_order"], "max_iter": p["max_iter"]}
    result = {
        "measured": recover_pathway(measured, refs, components, **kwargs),
        "predicted": recover_pathway(predicted, refs, components, **kwargs),
    }
    voltage = samples["voltage_v"][rows]
    similarity = cosine_similarity_rows(result["measured"].spectra, result["predicted"].spectra)
    attrs = provenance(rule, params, [x for x in (samples_h5, references_h5, streams_h5, predictions_h5) if x])
    with atomic_h5(out_h5, attrs) as h5:
        h5.attrs["run"] = p["run"]
        h5.attrs["prediction_label"] = label
        write_axis(h5, "voltage_v", voltage)
        write_axis(h5, "row", rows)
        for key, pw in result.items():
            g = h5.create_group(key)
            names = np.array(pw.component_names, dtype=str)
            write_nxdata(
                g, "spectra", "spectra", pw.spectra, [("component", names), ("wavenumber_cm1", refs.wavenumber_cm1)]
            )
            write_nxdata(
                g, "concentrations", "concentrations", pw.concentrations, [("voltage_v", voltage), ("component", names)]
            )
            g.attrs["lack_of_fit_percent"] = pw.lack_of_fit_percent
            g.attrs["n_iter"] = pw.n_iter
        h5.create_dataset("cosine_similarity", data=similarity)
        reference_spectra = refs.select("sei")[1][components]
        for key, pw in result.items():
            to_reference = cosine_similarity_rows(pw.spectra, reference_spectra)
            h5[key].create_dataset("cosine_to_reference", data=to_reference)
            log.info("pathway %s: cosine to the references %s", key, np.round(to_reference, 3).tolist())
    figure = plot_sei_pathway(
        refs.wavenumber_cm1,
        voltage,
        result["measured"].component_names,
        result["measured"].spectra,
        result["measured"].concentrations,
        result["predicted"].spectra,
        result["predicted"].concentrations,
        [out_png, out_pdf],
        title=f"SEI pathway, {p['run']}",
        prediction_label=label,
        references=refs.select("sei")[1][components],
    )
    plt.close(figure)
    log.info(
        "pathway %s: %s; cosine similarity measured vs %s: %s",
        p["run"],
        ", ".join(result["measured"].component_names),
        label,
        np.round(similarity, 3).tolist(),
    )
    return result
