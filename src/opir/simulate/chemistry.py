"""The physics of the simulated operando cell: component spectra, electrolyte solvation, electrode protocols,
electrochemistry and the concentrations of every species over a run."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from opir.core.config import Recipe
from opir.core.electrodes import PATHWAYS as ELECTRODE_PATHWAYS
from opir.core.electrodes import ElectrodeDescriptors
from opir.core.errors import ConfigError

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
class Pathway:
    """One SEI-forming reaction of the electrolyte: its product, onset potential (V vs Li/Li+ on a reference metal
    surface, Cu), onset width (V), rate (film units per hour per unit area well below onset), precursors
    (solvent -> solvent mol/L consumed per film unit), salt consumed (mol/L per film unit, LiF/LixPOyFz from PF6-),
    whether the film it makes passivates (blocks electron transfer, so it slows down as the film grows), and whether
    it needs every precursor at once (an exchange between two solvents) or any of them (one solvent reduced)."""

    product: str
    onset_v: float
    width_v: float
    rate_per_h: float
    precursors: Mapping[str, float]
    salt_consumed_m: float = 0.05
    passivated: bool = True
    needs_every_precursor: bool = False


#: The pathways of :data:`opir.core.electrodes.PATHWAYS`: the electrolyte decides which can run (its precursors),
#: the potential when, the electrode's surfaces and descriptors how fast. Onsets order VC > EC > DMC (Aurbach 2002,
#: Zhuang 2005/2006, Xu 2004); transesterification follows EC reduction (it is initiated by the alkoxides that EC
#: reduction makes, Gachot 2008); Li2CO3 forms by deeper reduction; the surface carbonate of oxide surfaces is a
#: chemical reaction (not electron-transfer limited, so not passivated) that is negligible without a catalyst.
PATHWAYS: dict[str, Pathway] = {
    "vc_polymerization": Pathway("polyVC", 1.40, 0.06, 0.60, {"VC": 0.35}),
    "ec_reduction": Pathway("LEDC", 0.90, 0.06, 0.35, {"EC": 0.60}),
    "semicarbonate": Pathway("semicarbonate", 0.80, 0.06, 0.12, {"EC": 0.30, "EMC": 0.30}),
    "transesterification": Pathway("DMDOHC", 0.85, 0.06, 0.05, {"EC": 0.25, "DMC": 0.25}, needs_every_precursor=True),
    "linear_carbonate_reduction": Pathway("LMC", 0.60, 0.06, 0.30, {"DMC": 0.60, "EMC": 0.60}),
    "deep_reduction": Pathway("Li2CO3", 0.40, 0.08, 0.15, {"EC": 0.30, "DMC": 0.30, "EMC": 0.30}),
    "surface_carbonate": Pathway("Li2CO3", 1.60, 0.08, 0.002, {"EC": 0.30, "DMC": 0.30, "EMC": 0.30},
                                 passivated=False),
}  # fmt: skip
assert tuple(PATHWAYS) == ELECTRODE_PATHWAYS, "the simulator's pathways are those the descriptors name"
#: Organic products: what a reversible (polymeric, gel-like) film on the active material is made of.
ORGANIC_PRODUCTS = ("LEDC", "semicarbonate", "DMDOHC", "LMC", "polyVC")

#: Catalysis: a surface that runs a pathway k times faster also starts it earlier, by one Tafel slope per decade
#: (2.303 RT / (alpha F) = 0.12 V for a one-electron transfer with alpha 0.5 at 25 C).
TAFEL_V_PER_DECADE = 0.12
#: Carbon black: specific area about ten times that of micron-sized active particles (Super P about 60 m2/g), so
#: a 10 % carbon composite has as much carbon surface as active surface; electrolyte reduction on carbon starts
#: about 0.1 V lower than on Cu (EC reduction below about 0.8 V on carbons, Aurbach 1999, Xu 2004).
CARBON_AREA_PER_FRACTION = 10.0
CARBON_ONSET_SHIFT_V = -0.10
#: Film units that passivate a unit of surface (the self-limiting thickness of an electron-blocking film).
FILM_CAPACITY_PER_AREA = 1.5
#: Cracking of materials that change volume: candidate crack events per unit of state of charge traversed and unit
#: of fractional volume change; each exposes this share of the active area as fresh surface, which at once forms
#: this share of a passivating film from what is reducible at that potential (a sparse jump of the film).
CRACKS_PER_SOC_PER_VOLUME = 1.0
MAX_VOLUME_CHANGE = 5.0
CRACK_AREA_SHARE = 0.08
CRACK_FILM_SHARE = 0.6
#: Reducibility (film units per hour) at which fresh surface passivates fully at once.
CRACK_SATURATING_RATE_PER_H = 0.3
#: The reversible share of the organic film on the active material decomposes as the material delithiates:
#: e-fold per this much state of charge given back (Grugeon/Laruelle 2002: the polymeric film of conversion oxides
#: disappears on charge).
FILM_DECOMPOSITION_PER_SOC = 3.0

#: Composite coatings: the binder's film (film units per mass fraction) and the carbon's broad background
#: (absorbance per mass fraction); both static.
BINDER_FILM_PER_FRACTION = 10.0
CARBON_BACKGROUND_PER_FRACTION = 0.5


@dataclass(frozen=True)
class Electrode:
    """Electrochemistry of a working-electrode material (the SEI comes from its descriptors, not from here).

    ``lithiation`` / ``delithiation``: open-circuit voltage (V) vs state of charge q (0 = pristine, 1 = cut-off),
    as (q, V) knots; ``overpotential_v`` at the protocol current and its time constant ``overpotential_tau_s``;
    ``half_cycle_h``: duration of one discharge (or charge) at the protocol current; ``cycles``; ``capacity_mah``
    sets the current."""

    lithiation: Sequence[tuple[float, float]]
    delithiation: Sequence[tuple[float, float]]
    overpotential_v: float
    overpotential_tau_s: float
    half_cycle_h: float
    cycles: int
    capacity_mah: float


#: Voltage curves by active material: the name before '/' in the sheet's working_electrode ('CoO/SuperP' -> CoO).
ELECTRODES: dict[str, Electrode] = {
    # Blocking Cu: the charge goes into the double layer, electrolyte reduction and finally Li plating.
    "Cu": Electrode(
        lithiation=[(0, 3.05), (0.04, 2.2), (0.12, 1.5), (0.3, 1.0), (0.55, 0.75), (0.8, 0.45), (0.95, 0.2), (1, 0.05)],
        delithiation=[(1, 0.15), (0.9, 0.6), (0.6, 1.2), (0.3, 1.8), (0.1, 2.4), (0, 3.0)],
        overpotential_v=0.03, overpotential_tau_s=120, half_cycle_h=6.0, cycles=1, capacity_mah=0.3,
    ),
    # LTO: flat 1.55 V plateau; the cut-off (1.0 V) stays above EC reduction on Cu.
    "LTO": Electrode(
        lithiation=[(0, 2.6), (0.03, 2.0), (0.08, 1.65), (0.15, 1.57), (0.85, 1.54), (0.93, 1.35), (1, 1.0)],
        delithiation=[(1, 1.1), (0.95, 1.5), (0.88, 1.58), (0.15, 1.6), (0.07, 1.75), (0, 2.5)],
        overpotential_v=0.02, overpotential_tau_s=180, half_cycle_h=5.0, cycles=2, capacity_mah=1.0,
    ),
    # Sn: alloying plateaus below 0.8 V.
    "Sn": Electrode(
        lithiation=[(0, 2.8), (0.03, 1.8), (0.1, 1.0), (0.25, 0.75), (0.4, 0.6), (0.6, 0.45), (0.8, 0.38),
                    (0.95, 0.2), (1, 0.02)],
        delithiation=[(1, 0.3), (0.9, 0.5), (0.7, 0.6), (0.5, 0.72), (0.3, 0.8), (0.1, 1.2), (0, 1.8)],
        overpotential_v=0.04, overpotential_tau_s=240, half_cycle_h=5.0, cycles=2, capacity_mah=1.5,
    ),
    # CoO conversion (CoO + 2 Li -> Co + Li2O at ~0.8 V): large hysteresis.
    "CoO": Electrode(
        lithiation=[(0, 2.7), (0.03, 1.6), (0.1, 1.0), (0.2, 0.92), (0.7, 0.85), (0.85, 0.6), (0.95, 0.35), (1, 0.17)],
        delithiation=[(1, 0.3), (0.95, 1.2), (0.85, 1.8), (0.4, 2.05), (0.15, 2.2), (0.05, 2.6), (0, 3.0)],
        overpotential_v=0.15, overpotential_tau_s=600, half_cycle_h=8.0, cycles=1, capacity_mah=1.2,
    ),
}  # fmt: skip


@dataclass(frozen=True)
class Surface:
    """A surface the electrolyte touches: its area per projected area, catalysis factor per pathway, the shift of
    every onset on it, and the share of its organic film that decomposes on delithiation."""

    name: str
    area: float
    catalysis: Mapping[str, float]
    onset_shift_v: float = 0.0
    reversibility: float = 0.0


def electrode_surfaces(descriptors: ElectrodeDescriptors) -> list[Surface]:
    """The surfaces of an electrode: its active material (or bare collector), and the carbon additive if any.
    A surface of zero area is left out, so a carbon fraction of 0 is exactly the bare electrode."""
    active_share = 1.0 - descriptors.carbon_fraction - descriptors.binder_fraction
    surfaces = [Surface("active", active_share * descriptors.surface_area, dict(descriptors.catalysis),
                        reversibility=descriptors.film_reversibility)]  # fmt: skip
    if descriptors.carbon_fraction > 0:
        surfaces.append(Surface("carbon", descriptors.carbon_fraction * CARBON_AREA_PER_FRACTION, {},
                                onset_shift_v=CARBON_ONSET_SHIFT_V))  # fmt: skip
    return surfaces


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


def electrode_of(name: str, where: str) -> Electrode:
    """Electrochemistry of a working electrode named like 'Cu', 'Sn' or 'CoO/SuperP' (its active material, the name
    before '/'; the coating's carbon and binder are descriptors of the systems sheet)."""
    material = name.partition("/")[0].strip()
    if material not in ELECTRODES:
        raise ConfigError(
            f"{where}: working electrode {name!r}: no voltage curve for active material {material!r}; "
            f"known: {', '.join(ELECTRODES)}"
        )
    return ELECTRODES[material]


#: ``sei_descriptors`` value of :func:`opir.simulate.runs.simulate_run` for a surface on which no film grows.
NO_SEI = "none"


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
def _pathway_arrays(surfaces: Sequence[Surface], solvents: Sequence[str]) -> dict[str, np.ndarray]:
    """Per-surface onsets and rates of every pathway (catalysis applied), and the pathways' stoichiometry."""
    pathways = list(PATHWAYS.values())
    factor = np.array([[s.catalysis.get(name, 1.0) for name in PATHWAYS] for s in surfaces]).reshape(-1, len(PATHWAYS))
    shift = np.array([s.onset_shift_v for s in surfaces]).reshape(-1, 1)
    return {
        "onset": np.array([p.onset_v for p in pathways])[None, :] + shift + TAFEL_V_PER_DECADE * np.log10(factor),
        "rate": np.array([p.rate_per_h for p in pathways])[None, :] * factor / 3600.0,
        "width": np.array([p.width_v for p in pathways]),
        "nu": np.array([[p.precursors.get(s, 0.0) for s in solvents] for p in pathways]) * FILM_TO_MOLAR,
        "nu_salt": np.array([p.salt_consumed_m for p in pathways]) * FILM_TO_MOLAR,
        "passivated": np.array([p.passivated for p in pathways]),
        # an exchange whose partner solvent is not in the electrolyte cannot run at all
        "needs_every": np.array([p.needs_every_precursor for p in pathways]),
        "complete": np.array([all(s in solvents for s in p.precursors) for p in pathways]),
        "organic": np.array([p.product in ORGANIC_PRODUCTS for p in pathways]),
        "product": np.array([[float(p.product == q) for q in SEI_SPECIES] for p in pathways]),
    }


def crack_events(grid_soc: np.ndarray, volume_change: float, rng: np.random.Generator) -> np.ndarray:
    """Crack sizes on the SEI grid: Poisson events spread over the state of charge the material traverses (it cracks
    while it swells or shrinks), at a rate proportional to its volume change. The random draws do not depend on
    ``volume_change`` (candidates are thinned), so two electrodes on the same voltage curve see the same numbers."""
    traversed = np.cumsum(np.abs(np.diff(grid_soc, prepend=grid_soc[0])))
    total = float(traversed[-1])
    n = rng.poisson(CRACKS_PER_SOC_PER_VOLUME * MAX_VOLUME_CHANGE * total)
    at = np.minimum(np.searchsorted(traversed, rng.uniform(0.0, total, n)), grid_soc.size - 1)
    sizes = np.exp(rng.normal(0.0, 0.3, n))
    keep = rng.uniform(0.0, 1.0, n) < volume_change / MAX_VOLUME_CHANGE
    cracks = np.zeros(grid_soc.size)
    np.add.at(cracks, at[keep], sizes[keep])
    return cracks


def concentrations(
    echem: Electrochemistry,
    descriptors: ElectrodeDescriptors | None,
    recipe: Recipe,
    rng: np.random.Generator,
    where: str = "electrolyte",
    binder_film: float = 0.0,
) -> np.ndarray:
    """True concentration of every species in :data:`SPECIES` on the potentiostat grid (n_time, k).

    The SEI forms on every surface of the electrode (:func:`electrode_surfaces`) by every pathway of
    :data:`PATHWAYS` that the electrolyte can feed, below the pathway's onset on that surface; ``descriptors`` None
    grows no film (the same random draws are made). ``binder_film``: the static PVDF film of a composite coating."""
    n = echem.time_s.size
    dt_s = np.diff(echem.time_s, prepend=echem.time_s[0])
    solvent0 = solvent_molarities(recipe, where)
    salt0 = salt_molarity(recipe, where)
    names = list(solvent0)
    c_solvent = np.array([solvent0[s] for s in names])
    half_sat = np.array([SOLVENTS[s]["half_saturation_m"] for s in names])

    # per-run variability of the kinetics (same electrode and electrolyte, another cell); drawn first and whatever
    # the descriptors, so a counterfactual electrode (benchmarks/electrode_bound.py) sees the same numbers
    n_paths = len(PATHWAYS)
    onset_noise = rng.normal(0, RUN_ONSET_SPREAD_V, n_paths)
    rate_noise = np.exp(rng.normal(0, RUN_RATE_SPREAD, n_paths))
    capacity = FILM_CAPACITY_PER_AREA * float(np.exp(rng.normal(0, RUN_RATE_SPREAD)))
    surfaces = electrode_surfaces(descriptors) if descriptors is not None else []
    arrays = _pathway_arrays(surfaces, names)
    onset = arrays["onset"] + onset_noise[None, :]
    rate = arrays["rate"] * rate_noise[None, :]
    nu, nu_salt = arrays["nu"], arrays["nu_salt"]
    area = np.array([s.area for s in surfaces])
    reversible = np.array([s.reversibility for s in surfaces])[:, None] * arrays["organic"][None, :]

    # the SEI stream evolves on its own fixed grid (hours-long kinetics), the same whatever the sampling
    grid = np.arange(echem.time_s[0], echem.time_s[-1] + SEI_STEP_S, SEI_STEP_S)
    voltage = np.interp(grid, echem.time_s, echem.voltage_v)
    soc = np.interp(grid, echem.time_s, echem.soc)
    delithiated = np.maximum(-np.diff(soc, prepend=soc[0]), 0.0)
    m = grid.size
    cracks = crack_events(soc, descriptors.volume_change if descriptors is not None else 0.0, rng)

    drive = _sigmoid((onset[None, :, :] - voltage[:, None, None]) / arrays["width"][None, None, :])  # (m, S, P)
    nu_sum = nu.sum(1)
    has_precursor = nu_sum > 0
    film = np.zeros((len(surfaces), n_paths))  # film units per surface and pathway
    pool = np.zeros_like(film)  # the part of it that decomposes on delithiation
    theta = np.zeros((m, len(SEI_SPECIES)))
    solvent = np.zeros((m, len(names)))
    salt = np.zeros(m)
    c_s, c_salt = c_solvent.copy(), salt0
    for i in range(m if surfaces else 0):
        precursor = nu * (c_s / (c_s + half_sat))  # (pathways, solvents): what each pathway can draw on
        available = precursor.sum(1)
        supply = np.where(has_precursor, available / np.where(has_precursor, nu_sum, 1.0), 0.0)
        # an exchange between two solvents runs only as fast as its scarcer one allows
        scarcest = np.where(nu > 0, c_s / (c_s + half_sat), np.inf).min(1)
        supply = np.where(arrays["needs_every"], np.where(arrays["complete"], scarcest, 0.0), supply)
        blocking = (film * arrays["passivated"]).sum(1)
        passivation = np.maximum(0.0, 1.0 - blocking / (capacity * area)) ** 2
        per_area = rate * drive[i] * supply  # (surfaces, pathways), film units per second
        growth = SEI_STEP_S * area[:, None] * per_area * np.where(arrays["passivated"], passivation[:, None], 1.0)
        if cracks[i] > 0:
            # a crack exposes fresh active surface, which at once forms part of a passivating film from what is
            # reducible at this potential; the new area also takes part in the passivation from now on
            fresh = CRACK_AREA_SHARE * cracks[i] * area[0]
            reducible = per_area[0] * 3600.0
            total = float(reducible.sum())
            if total > 0:
                formed = fresh * capacity * CRACK_FILM_SHARE * min(1.0, total / CRACK_SATURATING_RATE_PER_H)
                growth[0] += formed * reducible / total
            area = area.copy()
            area[0] += fresh
        # mass balance: a pathway takes its precursors in proportion to what is there
        total_growth = growth.sum(0)
        use = (total_growth * nu_sum / np.where(available > 0, available, 1.0)) @ precursor
        over = use > c_s
        if over.any():
            scale = float(np.min(c_s[over] / use[over]))
            growth, total_growth, use = growth * scale, total_growth * scale, use * scale
        film = film + growth
        pool = pool + growth * reversible
        if delithiated[i] > 0:
            lost = pool * -np.expm1(-FILM_DECOMPOSITION_PER_SOC * delithiated[i])
            pool, film = pool - lost, film - lost
        c_s = np.maximum(c_s - use, 0.0)
        c_salt = max(c_salt - float(nu_salt @ total_growth), 0.0)
        theta[i], solvent[i], salt[i] = film.sum(0) @ arrays["product"], c_s, c_salt
    if not surfaces:
        solvent[:], salt[:] = c_solvent, salt0
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
    out[:, SPECIES.index("PVDF")] = binder_film
    for j, p in enumerate(SEI_SPECIES):
        out[:, SPECIES.index(p)] = theta[:, j]
    return out
