"""The static calibration set (electrolytes at several salt concentrations, pure SEI compounds) from which MCR learns
its fixed references."""

from __future__ import annotations

import csv
import datetime as dt
import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from opir.core import h5io
from opir.core.config import parse_recipe
from opir.formats.opus_writer import opus_bytes
from opir.simulate.chemistry import (
    BANDS,
    BINDER_SPECIES,
    SEI_SPECIES,
    SPECIES,
    component_spectra,
    instrument_axis_cm1,
    reference_single_channel,
    salt_molarity,
    solvation,
    solvent_molarities,
)
from opir.simulate.runs import analysis_window, iso_ms, opus_extras, run_seed

log = logging.getLogger(__name__)


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
    extras = opus_extras(settings)
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
                   "acquired_utc": iso_ms(acquired)}  # fmt: skip
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
