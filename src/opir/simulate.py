"""OpIRSpec-7K-sim: a physics-based simulator of operando ATR-IR spectra of Li-ion interphases.

What it models (docs/simulator.md explains each choice and its sources):

- component spectra: sums of pseudo-Voigt bands (positions from ``shared/realdata/reference/bands.csv``) for the
  free and Li+-solvated forms of each solvent, PF6-, the PVDF binder and the SEI products (:data:`BANDS`);
- the voltage protocol of each electrode (:data:`ELECTRODES`): galvanostatic discharge from OCV to the cut-off and
  back, or intermittent (GITT-like) pulses and rests during which the overpotential relaxes;
- the solvent stream: a reversible, current-driven change of the local salt concentration near the electrode,
  which moves the free/solvated balance of every solvent (:func:`solvation`);
- the SEI stream: irreversible, self-limiting growth of each product above an onset potential that depends on
  electrode and electrolyte (:data:`SEI_PRODUCTS`, :data:`ELECTRODES`), with sparse jump-like growth on alloying
  and conversion electrodes; products consume the electrolyte they form from (mass conservation);
- the measurement: white noise with a log-normal SNR per spectrum (median ~88, mean ~102), a slow baseline drift
  and a tiny wavenumber jitter; a spectrum every fixed interval; a potentiostat log at a higher rate.

The noise-free truth (everything except the white noise) and the true concentrations are written apart, for the
benchmark's noise floor and for MCR validation; nothing in training reads them.

Units: concentrations of dissolved species in mol/L of the probed electrolyte; SEI products and binder in film
units (1 = the pure-compound film of the calibration set); absorbance in absorbance units; time in s; voltage in
V vs Li/Li+; current in mA (negative = reduction of the working electrode, EC-Lab's sign).
"""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from opir import h5io
from opir.config import Recipe, parse_recipe
from opir.errors import ConfigError
from opir.opus import opus_bytes

log = logging.getLogger(__name__)

# ==============================================================================================================
# Physics tables (cited by docs/simulator.md)
# ==============================================================================================================

#: Solvents: molar mass (g/mol), density (g/mL), Li+ solvation preference (relative weight in the first shell;
#: cyclic carbonates win over linear ones, Seo 2015, Borodin 2017) and the half-saturation concentration (mol/L)
#: of its reduction (small for VC: 2 % suffices to make poly(VC), Aurbach 2002).
SOLVENTS: dict[str, dict[str, float]] = {
    "EC": {"molar_mass": 88.06, "density": 1.32, "preference": 4.0, "half_saturation_m": 1.0},
    "DMC": {"molar_mass": 90.08, "density": 1.07, "preference": 1.0, "half_saturation_m": 1.0},
    "EMC": {"molar_mass": 104.10, "density": 1.01, "preference": 0.9, "half_saturation_m": 1.0},
    "VC": {"molar_mass": 86.05, "density": 1.36, "preference": 0.0, "half_saturation_m": 0.05},
}
#: Solvents modelled without a Li+-solvated form (an additive at 2 % barely enters the first shell; one component).
UNSOLVATED = ("VC",)
#: Li+ coordination number (solvent molecules in the first shell; 4 is the consensus for carbonates).
COORDINATION_NUMBER = 4.0
#: Partial molar volume of LiPF6 (L/mol): the salt takes room from the solvents.
SALT_MOLAR_VOLUME_L = 0.07
SALTS = {"LiPF6": "PF6"}

#: Species, in the order of every concentration vector, truth file and calibration column.
ELECTROLYTE_SPECIES = (
    "EC_free", "EC_solvated", "DMC_free", "DMC_solvated", "EMC_free", "EMC_solvated", "VC", "PF6",
)  # fmt: skip
BINDER_SPECIES = ("PVDF",)
SEI_SPECIES = ("LEDC", "LMC", "Li2CO3", "DMDOHC", "semicarbonate", "polyVC")
SPECIES = ELECTROLYTE_SPECIES + BINDER_SPECIES + SEI_SPECIES
SPECIES_KIND = {
    **{s: "electrolyte" for s in ELECTROLYTE_SPECIES},
    **{s: "binder" for s in BINDER_SPECIES},
    **{s: "sei" for s in SEI_SPECIES},
}

# Bands: (center 1/cm, FWHM 1/cm, peak absorbance per unit concentration, Lorentzian fraction eta).
# Liquids are more Lorentzian (eta 0.6), solids broader and more Gaussian (eta 0.3).
Band = tuple[float, float, float, float]
BANDS: dict[str, list[Band]] = {
    "EC_free": [(1800, 14, 0.042, 0.6), (1773, 16, 0.030, 0.6), (1480, 10, 0.006, 0.6), (1390, 10, 0.008, 0.6),
                (1160, 20, 0.020, 0.6), (1070, 14, 0.012, 0.6), (970, 10, 0.006, 0.6), (893, 8, 0.012, 0.6),
                (3000, 25, 0.003, 0.6), (2930, 25, 0.003, 0.6)],
    "EC_solvated": [(1770, 18, 0.058, 0.6), (1800, 14, 0.012, 0.6), (1482, 10, 0.006, 0.6), (1400, 10, 0.008, 0.6),
                    (1200, 22, 0.022, 0.6), (1075, 14, 0.012, 0.6), (972, 10, 0.006, 0.6), (904, 8, 0.014, 0.6),
                    (3005, 25, 0.003, 0.6), (2935, 25, 0.003, 0.6)],
    "DMC_free": [(1752, 16, 0.060, 0.6), (1450, 14, 0.010, 0.6), (1275, 22, 0.070, 0.6), (1195, 10, 0.005, 0.6),
                 (970, 10, 0.012, 0.6), (915, 10, 0.012, 0.6), (2960, 25, 0.004, 0.6)],
    "DMC_solvated": [(1720, 20, 0.060, 0.6), (1452, 14, 0.010, 0.6), (1310, 24, 0.060, 0.6),
                     (975, 10, 0.010, 0.6), (932, 10, 0.014, 0.6), (2965, 25, 0.004, 0.6)],
    "EMC_free": [(1745, 16, 0.055, 0.6), (1450, 14, 0.010, 0.6), (1375, 10, 0.006, 0.6), (1265, 22, 0.065, 0.6),
                 (1015, 14, 0.010, 0.6), (2985, 25, 0.004, 0.6)],
    "EMC_solvated": [(1715, 20, 0.055, 0.6), (1452, 14, 0.010, 0.6), (1377, 10, 0.006, 0.6),
                     (1300, 24, 0.055, 0.6), (1020, 14, 0.010, 0.6), (2990, 25, 0.004, 0.6)],
    "VC": [(1830, 12, 0.070, 0.6), (1800, 10, 0.020, 0.6), (1110, 30, 0.030, 0.6), (3170, 20, 0.003, 0.6)],
    "PF6": [(842, 18, 0.250, 0.6), (870, 12, 0.030, 0.6)],
    "PVDF": [(1400, 14, 0.050, 0.3), (1180, 30, 0.080, 0.3), (1070, 16, 0.040, 0.3), (975, 10, 0.020, 0.3),
             (875, 12, 0.040, 0.3), (840, 12, 0.050, 0.3)],
    "LEDC": [(1650, 30, 0.30, 0.3), (1400, 30, 0.18, 0.3), (1310, 25, 0.22, 0.3), (1085, 30, 0.10, 0.3),
             (825, 12, 0.12, 0.3)],
    "LMC": [(1665, 30, 0.25, 0.3), (1465, 25, 0.06, 0.3), (1380, 30, 0.12, 0.3), (1095, 25, 0.10, 0.3),
            (830, 12, 0.08, 0.3)],
    "Li2CO3": [(1500, 40, 0.22, 0.3), (1430, 45, 0.25, 0.3), (1090, 10, 0.02, 0.3), (867, 10, 0.10, 0.3)],
    "DMDOHC": [(1745, 20, 0.20, 0.3), (1455, 20, 0.06, 0.3), (1270, 30, 0.20, 0.3), (1060, 25, 0.06, 0.3),
               (960, 15, 0.06, 0.3)],
    "semicarbonate": [(1640, 30, 0.25, 0.3), (1350, 40, 0.12, 0.3), (1100, 30, 0.08, 0.3), (820, 15, 0.05, 0.3)],
    "polyVC": [(1810, 25, 0.25, 0.3), (1245, 35, 0.20, 0.3), (1070, 30, 0.08, 0.3)],
}  # fmt: skip


@dataclass(frozen=True)
class SeiProduct:
    """Reduction product: onset potential (V vs Li/Li+, Cu reference), onset width (V), rate (film units per hour
    well below onset), precursors (solvent -> solvent mol/L consumed per film unit), salt consumed (mol/L per
    film unit, LiF/LixPOyFz from PF6-)."""

    onset_v: float
    width_v: float
    rate_per_h: float
    precursors: Mapping[str, float]
    salt_consumed_m: float = 0.05


#: Onsets order VC > EC > DMC (Aurbach 2002, Zhuang 2005/2006, Xu 2004); Li2CO3 forms by deeper reduction.
SEI_PRODUCTS: dict[str, SeiProduct] = {
    "polyVC": SeiProduct(1.40, 0.06, 0.60, {"VC": 0.35}),
    "LEDC": SeiProduct(0.90, 0.06, 0.35, {"EC": 0.60}),
    "semicarbonate": SeiProduct(0.80, 0.06, 0.12, {"EC": 0.30, "EMC": 0.30}),
    "DMDOHC": SeiProduct(0.70, 0.06, 0.08, {"EC": 0.25, "DMC": 0.25}),
    "LMC": SeiProduct(0.60, 0.06, 0.30, {"DMC": 0.60, "EMC": 0.60}),
    "Li2CO3": SeiProduct(0.40, 0.08, 0.15, {"EC": 0.30, "DMC": 0.30, "EMC": 0.30}),
}


@dataclass(frozen=True)
class Electrode:
    """Working-electrode model.

    ``lithiation`` / ``delithiation``: open-circuit voltage (V) vs state of charge q (0 = pristine, 1 = cut-off),
    as (q, V) knots; ``overpotential_v`` at the protocol current and its time constant ``overpotential_tau_s``;
    ``half_cycle_h``: duration of one discharge (or charge) at the protocol current; ``cycles``; ``capacity_mah``
    sets the current. SEI: per-product onset shifts (V) and rate factors, the film capacity that passivates the
    surface (film units), and sparse growth jumps (events per hour below ``jump_below_v``, each adding
    ``jump_film`` film units split as ``jump_products``; a jump also exposes fresh surface).
    """

    lithiation: Sequence[tuple[float, float]]
    delithiation: Sequence[tuple[float, float]]
    overpotential_v: float
    overpotential_tau_s: float
    half_cycle_h: float
    cycles: int
    capacity_mah: float
    onset_shift_v: Mapping[str, float]
    rate_factor: Mapping[str, float]
    film_capacity: float
    jumps_per_h: float = 0.0
    jump_below_v: float = 0.0
    jump_film: float = 0.0
    jump_products: Mapping[str, float] | None = None


ELECTRODES: dict[str, Electrode] = {
    # Blocking Cu: the charge goes into the double layer, electrolyte reduction and finally Li plating.
    "Cu": Electrode(
        lithiation=[(0, 3.05), (0.04, 2.2), (0.12, 1.5), (0.3, 1.0), (0.55, 0.75), (0.8, 0.45), (0.95, 0.2), (1, 0.05)],
        delithiation=[(1, 0.15), (0.9, 0.6), (0.6, 1.2), (0.3, 1.8), (0.1, 2.4), (0, 3.0)],
        overpotential_v=0.03, overpotential_tau_s=120, half_cycle_h=6.0, cycles=1, capacity_mah=0.3,
        onset_shift_v={}, rate_factor={}, film_capacity=1.6,
    ),
    # LTO: flat 1.55 V plateau; the cut-off (1.0 V) stays above EC reduction, but the LTO surface keeps forming
    # carbonate at high potential (gassing, He 2012; Li2CO3 onset raised above the plateau, weak passivation).
    "LTO": Electrode(
        lithiation=[(0, 2.6), (0.03, 2.0), (0.08, 1.65), (0.15, 1.57), (0.85, 1.54), (0.93, 1.35), (1, 1.0)],
        delithiation=[(1, 1.1), (0.95, 1.5), (0.88, 1.58), (0.15, 1.6), (0.07, 1.75), (0, 2.5)],
        overpotential_v=0.02, overpotential_tau_s=180, half_cycle_h=5.0, cycles=2, capacity_mah=1.0,
        onset_shift_v={"Li2CO3": 1.65, "LEDC": 0.05}, rate_factor={"Li2CO3": 0.35, "LEDC": 0.5},
        film_capacity=6.0,
    ),
    # Sn: alloying plateaus below 0.8 V; 250 % volume change cracks the film -> sparse growth jumps.
    "Sn": Electrode(
        lithiation=[(0, 2.8), (0.03, 1.8), (0.1, 1.0), (0.25, 0.75), (0.4, 0.6), (0.6, 0.45), (0.8, 0.38),
                    (0.95, 0.2), (1, 0.02)],
        delithiation=[(1, 0.3), (0.9, 0.5), (0.7, 0.6), (0.5, 0.72), (0.3, 0.8), (0.1, 1.2), (0, 1.8)],
        overpotential_v=0.04, overpotential_tau_s=240, half_cycle_h=5.0, cycles=2, capacity_mah=1.5,
        onset_shift_v={"LEDC": 0.1, "LMC": 0.1, "Li2CO3": 0.1}, rate_factor={}, film_capacity=1.4,
        jumps_per_h=0.35, jump_below_v=0.65, jump_film=0.35,
        jump_products={"LEDC": 0.45, "Li2CO3": 0.35, "LMC": 0.2},
    ),  # fmt: skip
    # CoO conversion (CoO + 2 Li -> Co + Li2O at ~0.8 V): large hysteresis; the Co nanoparticles catalyse an early
    # ester/semi-carbonate film (DMDOHC-like, ~1640 1/cm) and later LMC (Grugeon 2001; Tarascon group).
    "CoO": Electrode(
        lithiation=[(0, 2.7), (0.03, 1.6), (0.1, 1.0), (0.2, 0.92), (0.7, 0.85), (0.85, 0.6), (0.95, 0.35), (1, 0.17)],
        delithiation=[(1, 0.3), (0.95, 1.2), (0.85, 1.8), (0.4, 2.05), (0.15, 2.2), (0.05, 2.6), (0, 3.0)],
        overpotential_v=0.15, overpotential_tau_s=600, half_cycle_h=8.0, cycles=1, capacity_mah=1.2,
        onset_shift_v={"DMDOHC": 0.55, "semicarbonate": 0.35, "LMC": -0.1},
        rate_factor={"DMDOHC": 2.5, "semicarbonate": 2.0, "LEDC": 0.3, "LMC": 1.5}, film_capacity=1.3,
        jumps_per_h=0.4, jump_below_v=0.9, jump_film=0.15,
        jump_products={"DMDOHC": 0.3, "semicarbonate": 0.3, "LMC": 0.4},
    ),
}  # fmt: skip

#: Composite electrodes ("LTO/SuperP"): the carbon adds a sloping background, the binder its bands.
COMPOSITE_BINDER_FILM = 1.0
CARBON_BACKGROUND_ABSORBANCE = 0.05

#: Intermittent (GITT-like) protocol: pulses per half cycle, rest/pulse duration ratio, and the relaxation time
#: constant of the overpotential during rests (longer than under load: diffusion relaxes slowly).
GITT_PULSES_PER_HALF_CYCLE = 14
GITT_REST_RATIO = 2.0
GITT_RELAXATION_TAU_S = 1500.0

#: Solvent stream: the local salt concentration moves by this fraction under the protocol current (depletion
#: under reduction), with this time constant (diffusion across the thin-layer gap of an operando ATR cell).
SALT_POLARIZATION_FRACTION = 0.18
SALT_POLARIZATION_TAU_S = 400.0
#: Volume fraction of the probed electrolyte that a unit film displaces from the evanescent field.
FILM_DISPLACEMENT = 0.08
#: Film units -> mol/L of the probed layer, for the mass balance (products consume their precursors).
FILM_TO_MOLAR = 1.0
#: Time step (s) of the SEI kinetics, independent of the sampling so that every scale simulates the same physics.
SEI_STEP_S = 60.0
#: Per-run variability: log-normal spread of rates and film capacity, normal spread of onsets (V).
RUN_RATE_SPREAD, RUN_ONSET_SPREAD_V = 0.12, 0.02


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-np.clip(x, -60.0, 60.0)))


# ==============================================================================================================
# Spectra
# ==============================================================================================================
def pseudo_voigt(wavenumber_cm1: np.ndarray, center: float, fwhm: float, eta: float) -> np.ndarray:
    """Unit-height pseudo-Voigt: eta * Lorentzian + (1 - eta) * Gaussian with the same FWHM."""
    x = (wavenumber_cm1 - center) / (fwhm / 2.0)
    return eta / (1.0 + x * x) + (1.0 - eta) * np.exp(-np.log(2.0) * x * x)


def component_spectra(
    wavenumber_cm1: np.ndarray, species: Sequence[str] = SPECIES, shift_cm1: Mapping[str, np.ndarray] | None = None
) -> np.ndarray:
    """Absorbance per unit concentration of each species (k, n_points); ``shift_cm1[species]`` moves its bands
    (one value per band), which the calibration set uses for its small band shifts."""
    spectra = np.zeros((len(species), wavenumber_cm1.size))
    for i, name in enumerate(species):
        shifts = (shift_cm1 or {}).get(name)
        for j, (center, fwhm, height, eta) in enumerate(BANDS[name]):
            moved = center + (float(shifts[j]) if shifts is not None else 0.0)
            spectra[i] += height * pseudo_voigt(wavenumber_cm1, moved, fwhm, eta)
    return spectra


def instrument_axis_cm1(settings: Mapping[str, Any]) -> np.ndarray:
    axis = settings["wavenumber"]
    return np.linspace(axis["first_cm1"], axis["last_cm1"], axis["n_points"])


def reference_single_channel(wavenumber_cm1: np.ndarray) -> np.ndarray:
    """Smooth background single channel of a globar + DTGS + diamond ATR: a broad hump near 2000 1/cm with the
    diamond phonon dip near 2000-2300 1/cm (why SNR is poor there)."""
    hump = np.exp(-(((wavenumber_cm1 - 1900.0) / 1500.0) ** 2))
    diamond = 1.0 - 0.6 * np.exp(-(((wavenumber_cm1 - 2150.0) / 150.0) ** 2))
    return 0.2 + 0.8 * hump * diamond


# ==============================================================================================================
# Electrolyte
# ==============================================================================================================
def solvent_molarities(recipe: Recipe, where: str = "electrolyte") -> dict[str, float]:
    """mol/L of each solvent from w/w proportions (ideal mixing; the salt takes its partial molar volume)."""
    unknown = [name for name in recipe.components if name not in SOLVENTS]
    if unknown:
        known = ", ".join(SOLVENTS)
        raise ConfigError(f"{where}: solvent(s) {', '.join(unknown)} have no simulator data; known: {known}")
    fractions = recipe.fractions()
    litres_per_gram = sum(w / SOLVENTS[s]["density"] / 1000.0 for s, w in fractions.items())
    salt_m = sum(recipe.salts.values())
    room = max(0.0, 1.0 - SALT_MOLAR_VOLUME_L * salt_m)
    return {s: room * w / SOLVENTS[s]["molar_mass"] / litres_per_gram for s, w in fractions.items()}


def salt_molarity(recipe: Recipe, where: str = "electrolyte") -> float:
    unknown = [name for name in recipe.salts if name not in SALTS]
    if unknown:
        raise ConfigError(f"{where}: salt(s) {', '.join(unknown)} have no simulator data; known: {', '.join(SALTS)}")
    return float(sum(recipe.salts.values()))


def solvation(solvent_m: Mapping[str, np.ndarray], li_m: np.ndarray) -> dict[str, np.ndarray]:
    """Free and Li+-solvated concentration of each solvent: Li+ holds COORDINATION_NUMBER solvent molecules,
    shared by preference-weighted availability; at most 90 % of a solvent can be bound. Solvents in
    :data:`UNSOLVATED` come back as one species under their own name."""
    weights = {s: SOLVENTS[s]["preference"] * np.asarray(c, dtype=float) for s, c in solvent_m.items()}
    total = sum(weights.values())
    out = {}
    for s, c in solvent_m.items():
        c = np.asarray(c, dtype=float)
        share = np.divide(weights[s], total, out=np.zeros_like(c), where=np.asarray(total) > 0)
        bound = np.minimum(0.9 * c, COORDINATION_NUMBER * np.asarray(li_m) * share)
        if s in UNSOLVATED:
            out[s] = c
        else:
            out[f"{s}_free"] = c - bound
            out[f"{s}_solvated"] = bound
    return out


# ==============================================================================================================
# Protocol and electrochemistry
# ==============================================================================================================
@dataclass
class Electrochemistry:
    """Time series on the potentiostat grid."""

    time_s: np.ndarray
    voltage_v: np.ndarray
    current_ma: np.ndarray
    soc: np.ndarray


def electrode_of(name: str, where: str) -> tuple[Electrode, bool]:
    """Model of a working electrode named like 'Cu', 'Sn' or 'LTO/SuperP' (composite with carbon + PVDF)."""
    base, _, additive = name.partition("/")
    if base not in ELECTRODES:
        raise ConfigError(f"{where}: working electrode {name!r} has no simulator model; known: {', '.join(ELECTRODES)}")
    return ELECTRODES[base], bool(additive)


#: ``sei_chemistry_of`` value for a surface on which no film grows at all.
NO_SEI = "none"


def with_sei_chemistry_of(electrode: Electrode, donor: Electrode | None) -> Electrode:
    """``electrode`` with the SEI chemistry of ``donor`` (onset shifts, rate factors, film capacity, what growth
    jumps produce), or with no film growth at all for None: its voltage curve and its crack events stay, so the
    run's electrochemistry and random draws are unchanged. A counterfactual for benchmarks/electrode_bound.py: what
    the SEI would have been had the surface reacted like another electrode's."""
    if donor is None:
        return replace(electrode, rate_factor={p: 0.0 for p in SEI_PRODUCTS}, jump_products=None)
    return replace(
        electrode,
        onset_shift_v=donor.onset_shift_v,
        rate_factor=donor.rate_factor,
        film_capacity=donor.film_capacity,
        jump_products=donor.jump_products,
    )


def protocol_segments(electrode: Electrode, protocol: str) -> list[tuple[float, int]]:
    """(duration s, direction) segments: -1 lithiation (reduction current), +1 delithiation, 0 rest."""
    half = electrode.half_cycle_h * 3600.0
    segments: list[tuple[float, int]] = []
    for _ in range(electrode.cycles):
        for direction in (-1, 1):
            if protocol == "galvanostatic":
                segments.append((half, direction))
            elif protocol == "intermittent":
                pulse = half / GITT_PULSES_PER_HALF_CYCLE
                for _ in range(GITT_PULSES_PER_HALF_CYCLE):
                    segments += [(pulse, direction), (pulse * GITT_REST_RATIO, 0)]
            else:
                raise ConfigError(f"protocol {protocol!r}: expected 'galvanostatic' or 'intermittent'")
    return segments


def electrochemistry(
    electrode: Electrode, protocol: str, time_s: np.ndarray, rng: np.random.Generator
) -> Electrochemistry:
    """Current, state of charge and voltage on the time grid ``time_s``."""
    segments = protocol_segments(electrode, protocol)
    ends = np.cumsum([d for d, _ in segments])
    index = np.clip(np.searchsorted(ends, time_s, side="right"), 0, len(segments) - 1)
    direction = np.array([d for _, d in segments])[index]
    current_ma = electrode.capacity_mah / electrode.half_cycle_h * direction.astype(float)
    # state of charge: integral of the lithiation current, capacity-normalized
    dt_s = np.diff(time_s, prepend=time_s[0])
    soc = np.clip(np.cumsum(-direction * dt_s) / (electrode.half_cycle_h * 3600.0), 0.0, 1.0)
    # branch: the last non-zero direction (hysteresis between lithiation and delithiation curves)
    last = np.where(direction != 0, direction, 0)
    filled = np.maximum.accumulate(np.where(last != 0, np.arange(last.size), 0))
    branch = np.where(last[filled] == 0, -1, last[filled])
    lith_q, lith_v = np.array(electrode.lithiation).T
    deli_q, deli_v = np.array(electrode.delithiation).T[:, ::-1]
    ocv = np.where(branch < 0, np.interp(soc, lith_q, lith_v), np.interp(soc, deli_q, deli_v))
    # overpotential: first-order response to the current; slower relaxation at rest (diffusion)
    eta = np.zeros_like(time_s)
    target = electrode.overpotential_v * direction
    tau = np.where(direction == 0, GITT_RELAXATION_TAU_S, electrode.overpotential_tau_s)
    decay = np.exp(-dt_s / tau)
    for i in range(1, time_s.size):
        eta[i] = target[i] + (eta[i - 1] - target[i]) * decay[i]
    # the potentiostat's lower potential limit (0 V vs Li: no plating is simulated)
    voltage_v = np.maximum(ocv + eta, 0.0)
    return Electrochemistry(time_s=time_s, voltage_v=voltage_v, current_ma=current_ma, soc=soc)


def protocol_duration_s(electrode: Electrode, protocol: str) -> float:
    return float(sum(d for d, _ in protocol_segments(electrode, protocol)))


# ==============================================================================================================
# Concentrations: solvent stream + SEI stream
# ==============================================================================================================
def concentrations(
    echem: Electrochemistry,
    electrode: Electrode,
    composite: bool,
    recipe: Recipe,
    rng: np.random.Generator,
    where: str = "electrolyte",
) -> np.ndarray:
    """True concentration of every species in :data:`SPECIES` on the potentiostat grid (n_time, k)."""
    n = echem.time_s.size
    dt_s = np.diff(echem.time_s, prepend=echem.time_s[0])
    solvent0 = solvent_molarities(recipe, where)
    salt0 = salt_molarity(recipe, where)
    names = list(solvent0)
    c_solvent = np.array([solvent0[s] for s in names])
    half_sat = np.array([SOLVENTS[s]["half_saturation_m"] for s in names])

    # per-run variability of the SEI kinetics (same electrode + electrolyte, a different cell)
    products = list(SEI_SPECIES)
    onset = np.array(
        [SEI_PRODUCTS[p].onset_v + electrode.onset_shift_v.get(p, 0.0) for p in products]
    ) + rng.normal(0, RUN_ONSET_SPREAD_V, len(products))
    width = np.array([SEI_PRODUCTS[p].width_v for p in products])
    rate = np.array([SEI_PRODUCTS[p].rate_per_h * electrode.rate_factor.get(p, 1.0) for p in products])
    rate = rate * np.exp(rng.normal(0, RUN_RATE_SPREAD, len(products))) / 3600.0
    capacity = electrode.film_capacity * float(np.exp(rng.normal(0, RUN_RATE_SPREAD)))
    # stoichiometry: product x solvent (mol/L consumed per film unit) and salt
    nu = np.array([[SEI_PRODUCTS[p].precursors.get(s, 0.0) for s in names] for p in products]) * FILM_TO_MOLAR
    nu_salt = np.array([SEI_PRODUCTS[p].salt_consumed_m for p in products]) * FILM_TO_MOLAR

    # the SEI stream evolves on its own fixed grid (hours-long kinetics), the same whatever the sampling
    grid = np.arange(echem.time_s[0], echem.time_s[-1] + SEI_STEP_S, SEI_STEP_S)
    voltage = np.interp(grid, echem.time_s, echem.voltage_v)
    m = grid.size
    # sparse growth jumps (cracking of the film on alloying / conversion electrodes): Poisson events in time,
    # effective only while the potential is below the electrode's threshold
    jump = np.zeros(m)
    if electrode.jumps_per_h > 0:
        duration_h = (grid[-1] - grid[0]) / 3600.0
        n_events = rng.poisson(electrode.jumps_per_h * duration_h)
        at = np.searchsorted(grid, np.sort(rng.uniform(grid[0], grid[-1], n_events)))
        sizes = electrode.jump_film * np.exp(rng.normal(0, 0.3, at.size))
        keep = (at < m) & (voltage[np.minimum(at, m - 1)] < electrode.jump_below_v)
        np.add.at(jump, at[keep], sizes[keep])
    jump_split = np.array([(electrode.jump_products or {}).get(p, 0.0) for p in products])

    drive = _sigmoid((onset[None, :] - voltage[:, None]) / width[None, :])  # (m, products)
    step_rate = rate * SEI_STEP_S
    nu_sum = nu.sum(1)
    has_precursor = nu_sum > 0
    theta = np.zeros((m, len(products)))
    solvent = np.zeros((m, len(names)))
    salt = np.zeros(m)
    film, fresh = np.zeros(len(products)), 0.0
    c_s, c_salt = c_solvent.copy(), salt0
    for i in range(m):
        precursor = nu * (c_s / (c_s + half_sat))  # (products, solvents): what each product can draw on
        available = precursor.sum(1)
        supply = np.where(has_precursor, available / np.where(has_precursor, nu_sum, 1.0), 0.0)
        passivation = max(0.0, 1.0 - max(film.sum() - fresh, 0.0) / capacity) ** 2
        growth = step_rate * drive[i] * supply * passivation
        if jump[i] > 0:
            # fresh surface reacts with what is reducible at this potential
            growth = growth + jump[i] * jump_split * drive[i] * supply
            fresh += jump[i]  # cracks expose fresh electrode: the passivation restarts in part
        # mass balance: a product takes its precursors in proportion to what is there
        use = (growth * nu_sum / np.where(available > 0, available, 1.0)) @ precursor
        over = use > c_s
        if over.any():
            scale = float(np.min(c_s[over] / use[over]))
            growth, use = growth * scale, use * scale
        film = film + growth
        c_s = np.maximum(c_s - use, 0.0)
        c_salt = max(c_salt - float(nu_salt @ growth), 0.0)
        theta[i], solvent[i], salt[i] = film, c_s, c_salt
    theta = np.stack([np.interp(echem.time_s, grid, col) for col in theta.T], axis=1)
    solvent = np.stack([np.interp(echem.time_s, grid, col) for col in solvent.T], axis=1)
    salt = np.interp(echem.time_s, grid, salt)

    # solvent stream: current-driven local salt polarization (depletion near the electrode under reduction)
    target = SALT_POLARIZATION_FRACTION * echem.current_ma / max(np.abs(echem.current_ma).max(), 1e-12)
    decay = np.exp(-dt_s / SALT_POLARIZATION_TAU_S)
    delta = np.zeros(n)
    for i in range(1, n):
        delta[i] = target[i] + (delta[i - 1] - target[i]) * decay[i]
    li_local = salt * (1.0 + delta)
    # the film pushes electrolyte out of the evanescent field
    probed = 1.0 - FILM_DISPLACEMENT * theta.sum(1)
    speciation = solvation({s: solvent[:, j] for j, s in enumerate(names)}, li_local)
    out = np.zeros((n, len(SPECIES)))
    for name, values in speciation.items():
        out[:, SPECIES.index(name)] = values * probed
    out[:, SPECIES.index("PF6")] = li_local * probed
    out[:, SPECIES.index("PVDF")] = COMPOSITE_BINDER_FILM if composite else 0.0
    for j, p in enumerate(products):
        out[:, SPECIES.index(p)] = theta[:, j]
    return out


# ==============================================================================================================
# Measurement
# ==============================================================================================================
def snr_lognormal_sigma(median: float, mean: float) -> float:
    """Log-normal shape parameter with the given median and mean: mean = median * exp(sigma^2 / 2)."""
    if not mean > median > 0:
        raise ConfigError(f"simulate.snr: mean ({mean}) must exceed median ({median}) > 0 for a log-normal SNR")
    return float(np.sqrt(2.0 * np.log(mean / median)))


def baseline_drift(wavenumber_cm1: np.ndarray, n: int, amplitude: float, rng: np.random.Generator) -> np.ndarray:
    """Slow drift: offset, slope and curvature follow smoothed random walks, scaled to ``amplitude`` at the end."""
    x = (wavenumber_cm1 - wavenumber_cm1.mean()) / (np.ptp(wavenumber_cm1) / 2.0)
    steps = rng.normal(0, 1, (n, 3))
    walk = np.cumsum(steps, axis=0) / np.sqrt(max(n, 1))
    kernel = np.ones(min(25, n)) / min(25, n)
    walk = np.stack([np.convolve(walk[:, j], kernel, mode="same") for j in range(3)], axis=1)
    walk -= walk[:1]
    weights = amplitude * np.array([1.0, 0.6, 0.3])
    return (walk * weights) @ np.stack([np.ones_like(x), x, x * x - 1.0 / 3.0])


def analysis_window(wavenumber_cm1: np.ndarray, settings: Mapping[str, Any]) -> np.ndarray:
    low, high = settings["snr_window_cm1"]
    return (wavenumber_cm1 >= low) & (wavenumber_cm1 <= high)


# ==============================================================================================================
# Runs
# ==============================================================================================================
def run_seed(seed: int, *names: str) -> np.random.SeedSequence:
    """A seed per system/run from the global seed and the names, never from the order of the sheets."""
    digest = hashlib.sha256("/".join(names).encode()).digest()
    return np.random.SeedSequence([int(seed), *np.frombuffer(digest[:16], dtype="<u4").tolist()])


def samples_per_run(sim_samples: int, n_runs: int, settings: Mapping[str, Any], where: str) -> list[int]:
    """Samples of a system at the configured scale, split among its runs (earlier runs take the remainder)."""
    total = max(int(settings["min_samples_per_system"]), int(round(sim_samples * float(settings["scale"]))))
    total = min(total, sim_samples)
    if total < n_runs:
        raise ConfigError(f"{where}: {total} samples cannot be split among {n_runs} runs; raise simulate.scale")
    base, extra = divmod(total, n_runs)
    return [base + (1 if i < extra else 0) for i in range(n_runs)]


@dataclass
class SimulatedRun:
    time_s: np.ndarray  # acquisition times of the spectra, s from the run start
    acquired_utc: list[dt.datetime]
    voltage_v: np.ndarray
    current_ma: np.ndarray
    concentrations: np.ndarray  # (n_spectra, k)
    truth: np.ndarray  # noise-free absorbance (n_spectra, n_points), slow drift included
    measured: np.ndarray  # truth + wavenumber jitter + white noise
    snr: np.ndarray
    noise_sigma: np.ndarray
    log: Electrochemistry  # the potentiostat grid (noise-free)
    log_voltage_v: np.ndarray  # what the potentiostat writes (with its own small noise)
    log_current_ma: np.ndarray
    started_utc: dt.datetime
    wavenumber_cm1: np.ndarray
    references: np.ndarray  # (k, n_points) component spectra used


def simulate_run(
    system: Mapping[str, Any],
    run_id: str,
    n_samples: int,
    settings: Mapping[str, Any],
    sei_chemistry_of: str | None = None,
) -> SimulatedRun:
    """Simulate one run of ``system`` (a row of the systems sheet) with ``n_samples`` + 1 spectra.

    ``sei_chemistry_of`` (an electrode model name, or :data:`NO_SEI`) simulates the same run with that electrode's
    SEI chemistry (:func:`with_sei_chemistry_of`); the workflow never sets it."""
    system_id = system["system_id"]
    where = f"system {system_id}"
    recipe = parse_recipe(system["electrolyte"], f"{where}, electrolyte")
    electrode, composite = electrode_of(system["working_electrode"], where)
    if sei_chemistry_of is not None:
        donor = None if sei_chemistry_of == NO_SEI else electrode_of(sei_chemistry_of, f"{where}, counterfactual")[0]
        electrode = with_sei_chemistry_of(electrode, donor)
    protocol = system["protocol"]
    rng = np.random.default_rng(run_seed(settings["seed"], system_id, run_id))

    # time grid: the protocol fixes the physics; the number of spectra only sets the interval (so a smaller
    # dataset samples the same experiment more sparsely)
    duration_s = protocol_duration_s(electrode, protocol)
    n_spectra = n_samples + 1
    interval_ms = int(round(duration_s * 1000.0 / n_samples))
    spectrum_ms = np.arange(n_spectra, dtype=np.int64) * interval_ms
    log_step_ms = int(min(settings["potentiostat_interval_s"] * 1000.0, interval_ms / 4.0))
    log_ms = np.arange(0, spectrum_ms[-1] + log_step_ms, max(log_step_ms, 1), dtype=np.int64)
    grid_s = np.union1d(log_ms, spectrum_ms) / 1000.0

    echem = electrochemistry(electrode, protocol, grid_s, rng)
    conc = concentrations(echem, electrode, composite, recipe, rng, where)
    at = np.searchsorted(grid_s, spectrum_ms / 1000.0)
    on_log = np.searchsorted(grid_s, log_ms / 1000.0)

    wn = instrument_axis_cm1(settings)
    references = component_spectra(wn)
    truth = conc[at] @ references
    if composite:  # carbon black: a broad, rising background that does not change with time
        truth += CARBON_BACKGROUND_ABSORBANCE * (0.5 + 0.5 * (wn - wn.min()) / np.ptp(wn))[None, :]
    truth += baseline_drift(wn, n_spectra, settings["baseline_drift"], rng)

    # random per-spectrum measurement errors (left out of the truth, so the noise floor measures them): a tiny
    # wavenumber jitter, first order A(nu - e) = A(nu) - e dA/dnu, and white noise at the drawn SNR
    jitter = rng.normal(0, settings["jitter_cm1"], n_spectra)
    measured = truth - jitter[:, None] * np.gradient(truth, wn, axis=1)
    window = analysis_window(wn, settings)
    sigma_ln = snr_lognormal_sigma(settings["snr"]["median"], settings["snr"]["mean"])
    snr = settings["snr"]["median"] * np.exp(rng.normal(0, sigma_ln, n_spectra))
    signal = np.abs(truth[:, window]).max(1)
    noise_sigma = signal / snr
    measured += rng.normal(0, 1, truth.shape) * noise_sigma[:, None]

    start = dt.datetime.fromisoformat(settings["start_utc"]).astimezone(dt.UTC)
    start += dt.timedelta(days=int(rng.integers(0, 365)), seconds=int(rng.integers(0, 86400)))
    acquired = [start + dt.timedelta(milliseconds=int(ms)) for ms in spectrum_ms]
    log_v = echem.voltage_v[on_log] + rng.normal(0, 0.0005, on_log.size)
    log_i = echem.current_ma[on_log] * (1.0 + rng.normal(0, 0.001, on_log.size))
    log_grid = Electrochemistry(echem.time_s[on_log], echem.voltage_v[on_log], echem.current_ma[on_log],
                                echem.soc[on_log])  # fmt: skip
    return SimulatedRun(
        time_s=spectrum_ms / 1000.0, acquired_utc=acquired, voltage_v=echem.voltage_v[at],
        current_ma=echem.current_ma[at], concentrations=conc[at], truth=truth, measured=measured, snr=snr,
        noise_sigma=noise_sigma, log=log_grid, log_voltage_v=log_v, log_current_ma=log_i, started_utc=start,
        wavenumber_cm1=wn, references=references,
    )  # fmt: skip


# ==============================================================================================================
# Writers
# ==============================================================================================================
def _iso_ms(stamp: dt.datetime) -> str:
    return stamp.astimezone(dt.UTC).isoformat(timespec="milliseconds")


def _opus_extras(settings: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "instrument": {"INS": "OpIR simulator (OpIRSpec-7K-sim)", "LWN": 15798.0},
        "acquisition": {"RES": 4.0, "NSS": 32, "PLF": "AB"},
        "utc_offset_hours": float(settings["utc_offset_hours"]),
    }


def write_spectra(
    folder: Path, stem: str, measured: np.ndarray, acquired: Sequence[dt.datetime], wavenumber_cm1: np.ndarray,
    sample_names: Sequence[str], settings: Mapping[str, Any], single_channel: bool = True,
) -> list[str]:
    """One OPUS file per spectrum, ``{stem}_{index:05d}.0``; returns the file names in order."""
    folder.mkdir(parents=True, exist_ok=True)
    for stale in folder.glob(f"{stem}_*.0"):  # a rerun with fewer spectra must not leave old ones behind
        stale.unlink()
    reference = reference_single_channel(wavenumber_cm1)
    extras = _opus_extras(settings)
    names = []
    for index, absorbance in enumerate(measured):
        blocks = {"AB": absorbance}
        if single_channel:
            blocks = {"ScSm": reference * np.power(10.0, -absorbance), "AB": absorbance}
        name = f"{stem}_{index:05d}.0"
        payload = opus_bytes(
            blocks, first_x_cm1=float(wavenumber_cm1[0]), last_x_cm1=float(wavenumber_cm1[-1]),
            acquired=acquired[index], sample_name=sample_names[index], **extras,
        )  # fmt: skip
        with open(folder / name, "wb") as handle:
            handle.write(payload)
        names.append(name)
    return names


def write_mpt(path: Path, run: SimulatedRun, system: Mapping[str, Any], run_id: str) -> None:
    """EC-Lab ASCII export: header lines, then time/s, Ewe/V, <I>/mA (tab-separated)."""
    technique = "Galvanostatic Cycling with Potential Limitation" if system["protocol"] == "galvanostatic" else (
        "Galvanostatic Intermittent Titration Technique")  # fmt: skip
    header = [
        "EC-Lab ASCII FILE",
        "Nb header lines : {n}",
        "",
        technique,
        "",
        f"Acquisition started on : {run.started_utc.strftime('%m/%d/%Y %H:%M:%S.%f')[:-3]}",
        f"Saved on : {system['system_id']}_{run_id}.mpr",
        f"Electrode material : {system['working_electrode']}",
        f"Electrolyte : {system['electrolyte']}",
        f"Reference electrode : {system.get('counter_electrode', 'Li')}",
        "Comments : written by the OpIR simulator (OpIRSpec-7K-sim); times in UTC",
        "time/s\tEwe/V\t<I>/mA",
    ]
    header[1] = header[1].format(n=len(header))
    rows = np.column_stack([run.log.time_s, run.log_voltage_v, run.log_current_ma])
    with open(path, "w", encoding="latin-1", newline="\n") as handle:
        handle.write("\n".join(header) + "\n")
        np.savetxt(handle, rows, fmt=["%.3f", "%.6f", "%.6e"], delimiter="\t")


def write_manifest(path: Path, files: Sequence[str], acquired: Sequence[dt.datetime]) -> None:
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle, delimiter="\t", lineterminator="\n")
        writer.writerow(["file", "index", "acquired_utc"])
        for index, (name, stamp) in enumerate(zip(files, acquired, strict=True)):
            writer.writerow([f"spectra/{name}", index, _iso_ms(stamp)])


def write_truth(path: Path, run: SimulatedRun, files: Sequence[str], attrs: Mapping[str, Any]) -> None:
    """Noise-free absorbance (the slow drift included; the random per-spectrum jitter and white noise left out),
    concentrations, voltage and the reference spectra, on the instrument axis of the OPUS files."""
    with h5io.atomic_h5(path, attrs) as h5:
        h5.attrs["truth_excludes"] = "random per-spectrum errors: white noise and wavenumber jitter (drift included)"
        spectra = h5io.write_nxdata(
            h5, "spectra", "absorbance", run.truth.astype(np.float32),
            [("time_s", run.time_s), ("wavenumber_cm1", run.wavenumber_cm1)], units="1",
            long_name="noise-free absorbance", compression="gzip", shuffle=True,
        )  # fmt: skip
        h5io.write_axis(spectra, "file", np.array([f"spectra/{f}" for f in files]))
        h5io.write_axis(spectra, "index", np.arange(len(files)))
        h5io.write_axis(spectra, "acquired_utc", np.array([_iso_ms(t) for t in run.acquired_utc]))
        h5io.write_axis(spectra, "voltage_v", run.voltage_v)
        h5io.write_axis(spectra, "current_ma", run.current_ma)
        h5io.write_axis(spectra, "snr", run.snr)
        h5io.write_axis(spectra, "noise_sigma", run.noise_sigma, units="1")
        composition = h5io.write_nxdata(
            h5, "composition", "concentrations", run.concentrations,
            [("time_s", run.time_s), ("component_names", np.array(SPECIES), "")],
            long_name="true concentration: mol/L for electrolyte species, film units for binder and SEI",
        )  # fmt: skip
        h5io.write_axis(composition, "component_kinds", np.array([SPECIES_KIND[s] for s in SPECIES]), units="")
        # the names other stages read at the root (as in dataset/truth.h5)
        for name in ("concentrations", "component_names", "component_kinds"):
            h5[name] = h5py.SoftLink(f"/composition/{name}")
        h5io.write_nxdata(h5, "electrochemistry", "voltage_v", run.voltage_v, [("time_s", run.time_s)], units="V")
        h5io.write_axis(h5["electrochemistry"], "current_ma", run.current_ma)
        h5io.write_nxdata(
            h5, "references", "absorbance", run.references.astype(np.float32),
            [("component_names", np.array(SPECIES), ""), ("wavenumber_cm1", run.wavenumber_cm1)], units="1",
            long_name="absorbance per unit concentration",
        )  # fmt: skip


def simulate_system_run(
    system: Mapping[str, Any], run_id: str, runs: Sequence[str], settings: Mapping[str, Any],
    run_dir: str | os.PathLike, truth_path: str | os.PathLike, rule: str = "simulate",
) -> SimulatedRun:
    """Simulate and write one run: spectra/*.0, potentiostat.mpt, manifest.tsv (last: the run's marker file)
    and the truth file. ``runs`` lists the system's runs in sheet order (they share its samples)."""
    system = dict(system)
    where = f"system {system['system_id']}"
    if run_id not in runs:
        raise ConfigError(f"{where}: run {run_id!r} is not in the runs sheet (runs: {', '.join(runs)})")
    counts = samples_per_run(int(system["sim_samples"]), len(runs), settings, where)
    n_samples = counts[list(runs).index(run_id)]
    run = simulate_run(system, run_id, n_samples, settings)
    run_dir = Path(run_dir)
    stem = f"{system['system_id']}_{run_id}"
    names = [f"{system['system_id']} {run_id} #{i:05d}" for i in range(n_samples + 1)]
    files = write_spectra(run_dir / "spectra", stem, run.measured, run.acquired_utc, run.wavenumber_cm1, names,
                          settings, settings["single_channel"])  # fmt: skip
    write_mpt(run_dir / "potentiostat.mpt", run, system, run_id)
    slice_ = {"simulate": dict(settings), "system": system, "runs": list(runs)}
    write_truth(Path(truth_path), run, files, h5io.provenance(rule, slice_, input_hashes={}))
    write_manifest(run_dir / "manifest.tsv", files, run.acquired_utc)
    log.info("%s/%s: %d spectra, %.1f h, SNR median %.1f", system["system_id"], run_id, n_samples + 1,
             run.time_s[-1] / 3600.0, float(np.median(run.snr)))  # fmt: skip
    return run


# ==============================================================================================================
# Calibration set
# ==============================================================================================================
def calibration_electrolytes(recipes: Sequence[str], solvents: Sequence[str], molarities: Sequence[float]) -> list[str]:
    """Recipes measured for calibration: every solvent mixture of the systems and every pure solvent, each at
    every salt molarity in ``molarities`` (so free and solvated forms can be told apart)."""
    mixtures: dict[tuple, dict[str, float]] = {}
    for text in [*recipes, *(f"LiPF6:0M; {s}:1" for s in solvents)]:
        recipe = parse_recipe(text, "calibration electrolyte")
        fractions = recipe.fractions()
        mixtures.setdefault(tuple(sorted((k, round(v, 6)) for k, v in fractions.items())), recipe.components)
    out = []
    for components in mixtures.values():
        body = "; ".join(f"{name}:{value:g}" for name, value in components.items())
        out += [f"LiPF6:{m:g}M; {body}" for m in molarities]
    return out


CALIBRATION_COLUMNS = ["file", "kind", "name", "composition", "recipe", "salt_molarity_m", "compound", "replicate",
                       "acquired_utc", *SPECIES]  # fmt: skip


def simulate_calibration(
    recipes: Sequence[str], solvents: Sequence[str], settings: Mapping[str, Any], out_dir: str | os.PathLike,
) -> list[dict[str, Any]]:
    """Write the static calibration set: electrolytes at several salt concentrations and pure films (SEI
    compounds, binder), each measured with its own noise and small band shifts. ``calibration.tsv`` (written
    last) lists every file with the nominal concentration of each species."""
    cal = settings["calibration"]
    out_dir = Path(out_dir)
    rng = np.random.default_rng(run_seed(settings["seed"], "calibration"))
    wn = instrument_axis_cm1(settings)
    start = dt.datetime.fromisoformat(settings["start_utc"]).astimezone(dt.UTC) - dt.timedelta(days=7)
    measurements: list[tuple[str, str, str, str, float | str, str, np.ndarray]] = []
    for text in calibration_electrolytes(recipes, solvents, cal["molarities_m"]):
        recipe = parse_recipe(text, "calibration electrolyte")
        solvent_m = solvent_molarities(recipe)
        li = salt_molarity(recipe)
        conc = np.zeros(len(SPECIES))
        for name, value in solvation({s: np.array(c) for s, c in solvent_m.items()}, np.array(li)).items():
            conc[SPECIES.index(name)] = float(value)
        conc[SPECIES.index("PF6")] = li
        label = " ".join(f"{k}:{v:g}" for k, v in recipe.components.items())
        # composition in mol/L (salt and every solvent), the units of the truth's concentrations
        molar = "; ".join([*([f"LiPF6:{li:g}M"] if li > 0 else []), *(f"{k}:{v:.5g}" for k, v in solvent_m.items())])
        measurements.append(("electrolyte", f"LiPF6 {li:g} M in {label}", molar, text, li, "", conc))
    for compound in (*SEI_SPECIES, *BINDER_SPECIES):
        conc = np.zeros(len(SPECIES))
        conc[SPECIES.index(compound)] = 1.0
        kind = "sei" if compound in SEI_SPECIES else "binder"
        measurements.append((kind, compound, f"{compound}:1", "", "", compound, conc))

    rows = []
    spectra_dir = out_dir / "spectra"
    spectra_dir.mkdir(parents=True, exist_ok=True)
    extras = _opus_extras(settings)
    reference = reference_single_channel(wn)
    window = analysis_window(wn, settings)
    index = 0
    for kind, name, composition, recipe_text, molarity, compound, conc in measurements:
        for replicate in range(1, int(cal["replicates"]) + 1):
            shifts = {s: rng.normal(0, cal["band_shift_cm1"], len(BANDS[s])) for s in SPECIES if conc[SPECIES.index(s)]}
            truth = conc @ component_spectra(wn, shift_cm1=shifts)
            sigma = np.abs(truth[window]).max() / cal["snr"]
            measured = truth + rng.normal(0, sigma, wn.size)
            acquired = start + dt.timedelta(minutes=5 * index)
            file = f"calibration_{index:04d}.0"
            payload = opus_bytes(
                {"ScSm": reference * np.power(10.0, -measured), "AB": measured}, first_x_cm1=float(wn[0]),
                last_x_cm1=float(wn[-1]), acquired=acquired, sample_name=f"{name} (replicate {replicate})", **extras,
            )  # fmt: skip
            (spectra_dir / file).write_bytes(payload)
            row = {"file": f"spectra/{file}", "kind": kind, "name": name, "composition": composition,
                   "recipe": recipe_text, "salt_molarity_m": molarity, "compound": compound, "replicate": replicate,
                   "acquired_utc": _iso_ms(acquired)}  # fmt: skip
            row.update({s: f"{conc[j]:.6g}" for j, s in enumerate(SPECIES)})
            rows.append(row)
            index += 1
    with h5io.atomic_path(out_dir / "calibration.tsv") as tmp:
        with open(tmp, "w", newline="") as handle:
            writer = csv.DictWriter(handle, CALIBRATION_COLUMNS, delimiter="\t", lineterminator="\n")
            writer.writeheader()
            writer.writerows(rows)
    log.info("calibration: %d spectra (%d conditions x %d replicates)", len(rows), len(measurements),
             cal["replicates"])  # fmt: skip
    return rows
