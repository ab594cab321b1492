"""Electrode descriptors: what a user knows about the working electrode, in a few numbers.

The systems sheet gives them per system (columns validated by ``systems.schema.yaml``); the simulator forms the
SEI from them and the electrolyte's reduction pathways (:mod:`opir.simulate.chemistry`); ``results/dataset/
electrodes.h5`` carries them to the models (:mod:`opir.formats.electrodes`); ``opir predict --electrode`` takes a
sheet row's name or the values themselves. docs/simulator.md gives the literature reason of every value.
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import jsonschema
import numpy as np

from opir.core.config import sheet_schema
from opir.core.errors import ConfigError

ELECTRODE_CLASSES = ("collector", "intercalation", "alloying", "conversion")

#: SEI-forming pathways of carbonate electrolytes, named by mechanism (docs/simulator.md). Catalysis factors are
#: given per pathway; the simulator's kinetics (opir.simulate.chemistry.PATHWAYS) use the same names.
PATHWAYS = (
    "vc_polymerization",  # VC -> poly(VC)
    "ec_reduction",  # EC, one-electron -> LEDC
    "semicarbonate",  # ring-opened EC / EMC -> lithium alkyl (semi)carbonates
    "transesterification",  # alkoxide-initiated EC/DMC exchange -> DMDOHC-like esters
    "linear_carbonate_reduction",  # DMC / EMC -> LMC
    "deep_reduction",  # further reduction -> Li2CO3
    "surface_carbonate",  # chemical carbonate formation on a catalytic oxide surface (LTO), at high potential
)

#: Sheet columns that describe the electrode, in the order of the sheet.
DESCRIPTOR_COLUMNS = (
    "electrode_class", "carbon_fraction", "binder_fraction", "surface_area", "volume_change", "film_reversibility",
    "catalysis",
)  # fmt: skip

#: Names of :meth:`ElectrodeDescriptors.features`, the numeric form models read.
FEATURE_NAMES = (
    *(f"class_{c}" for c in ELECTRODE_CLASSES),
    "carbon_fraction", "binder_fraction", "log_surface_area", "volume_change", "film_reversibility",
    *(f"log10_catalysis_{p}" for p in PATHWAYS),
)  # fmt: skip

_CATALYSIS_ITEM = re.compile(r"^\s*(?P<pathway>[a-z_]+)\s*:\s*(?P<factor>\S+)\s*$")


@dataclass(frozen=True)
class ElectrodeDescriptors:
    """One electrode, described as the systems sheet does (see ``systems.schema.yaml`` for each column)."""

    electrode_class: str
    carbon_fraction: float
    binder_fraction: float
    surface_area: float
    volume_change: float
    film_reversibility: float
    catalysis: Mapping[str, float] = field(default_factory=dict)

    def catalysis_of(self, pathway: str) -> float:
        return float(self.catalysis.get(pathway, 1.0))

    def features(self) -> np.ndarray:
        """Numeric form in :data:`FEATURE_NAMES` order: the class one-hot, fractions, log area, and log10 of each
        pathway's catalysis factor (0 where the surface does not catalyse it)."""
        one_hot = [float(self.electrode_class == c) for c in ELECTRODE_CLASSES]
        scalars = [self.carbon_fraction, self.binder_fraction, math.log(self.surface_area), self.volume_change,
                   self.film_reversibility]  # fmt: skip
        catalysis = [math.log10(self.catalysis_of(p)) for p in PATHWAYS]
        return np.array(one_hot + scalars + catalysis, dtype=np.float64)

    def as_row(self) -> dict[str, Any]:
        """The sheet's columns (catalysis written back as text)."""
        return {
            "electrode_class": self.electrode_class,
            "carbon_fraction": self.carbon_fraction,
            "binder_fraction": self.binder_fraction,
            "surface_area": self.surface_area,
            "volume_change": self.volume_change,
            "film_reversibility": self.film_reversibility,
            "catalysis": catalysis_text(self.catalysis),
        }


def catalysis_text(catalysis: Mapping[str, float]) -> str:
    return "; ".join(f"{p}:{catalysis[p]:g}" for p in PATHWAYS if p in catalysis) or "none"


def parse_catalysis(text: str, where: str) -> dict[str, float]:
    """``'transesterification:8; ec_reduction:0.5'`` -> {pathway: factor}; empty or 'none' -> {}."""
    out: dict[str, float] = {}
    body = str(text).strip()
    if body in ("", "none"):
        return out
    for item in filter(None, (part.strip() for part in body.split(";"))):
        match = _CATALYSIS_ITEM.match(item)
        if not match:
            raise ConfigError(f"{where}: catalysis item {item!r} is not 'pathway:factor'")
        pathway, factor_text = match["pathway"], match["factor"]
        if pathway not in PATHWAYS:
            raise ConfigError(f"{where}: catalysis names unknown pathway {pathway!r}; known: {', '.join(PATHWAYS)}")
        try:
            factor = float(factor_text)
        except ValueError:
            factor = float("nan")
        if not (math.isfinite(factor) and factor > 0):
            raise ConfigError(f"{where}: catalysis factor of {pathway} must be a number > 0, got {factor_text!r}")
        if pathway in out:
            raise ConfigError(f"{where}: catalysis names {pathway} twice")
        out[pathway] = factor
    return out


@functools.lru_cache(maxsize=1)
def _descriptor_validator() -> jsonschema.Draft202012Validator:
    """Built once: every sheet row and every simulated run checks its descriptors against it."""
    return jsonschema.Draft202012Validator(_descriptor_schema())


def _descriptor_schema() -> dict[str, Any]:
    """The systems sheet's descriptor columns as a schema of their own (one place for their types and ranges)."""
    systems = sheet_schema("systems.schema.yaml")
    return {
        "type": "object",
        "properties": {c: systems["properties"][c] for c in DESCRIPTOR_COLUMNS},
        "required": list(DESCRIPTOR_COLUMNS),
        "additionalProperties": False,
    }


def descriptors_from_row(row: Mapping[str, Any], where: str) -> ElectrodeDescriptors:
    """Descriptors of a systems-sheet row (or any mapping with the descriptor columns), validated."""
    values = {c: row[c] for c in DESCRIPTOR_COLUMNS if c in row}
    for name in DESCRIPTOR_COLUMNS[1:-1]:  # numbers may arrive as text (command line, untyped sheets)
        if isinstance(values.get(name), str):
            try:
                values[name] = float(values[name])
            except ValueError:
                pass  # the schema names the wrong type
    errors = sorted(_descriptor_validator().iter_errors(values), key=str)
    if errors:
        lines = [f"{where}: {'.'.join(map(str, e.absolute_path)) or 'descriptors'}: {e.message}" for e in errors]
        raise ConfigError("invalid electrode descriptors:\n  " + "\n  ".join(lines))
    if values["carbon_fraction"] + values["binder_fraction"] >= 1.0:
        raise ConfigError(f"{where}: carbon_fraction + binder_fraction must leave room for the active material (< 1)")
    if values["electrode_class"] == "collector" and (values["carbon_fraction"] or values["binder_fraction"]):
        raise ConfigError(f"{where}: a bare current collector ('collector') has no carbon or binder coating")
    return ElectrodeDescriptors(
        electrode_class=str(values["electrode_class"]),
        carbon_fraction=float(values["carbon_fraction"]),
        binder_fraction=float(values["binder_fraction"]),
        surface_area=float(values["surface_area"]),
        volume_change=float(values["volume_change"]),
        film_reversibility=float(values["film_reversibility"]),
        catalysis=parse_catalysis(values["catalysis"], f"{where}, catalysis"),
    )


def parse_descriptors(text: str, where: str = "--electrode") -> ElectrodeDescriptors:
    """Explicit values, ``'electrode_class=conversion, carbon_fraction=0.1, ...'`` (every descriptor column;
    catalysis items separated by ';' as in the sheet)."""
    values: dict[str, Any] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        key, sep, value = item.partition("=")
        if not sep:
            raise ConfigError(f"{where}: {item!r} is not 'name=value' (names: {', '.join(DESCRIPTOR_COLUMNS)})")
        values[key.strip()] = value.strip()
    unknown = sorted(set(values) - set(DESCRIPTOR_COLUMNS))
    missing = [c for c in DESCRIPTOR_COLUMNS if c not in values]
    if unknown or missing:
        raise ConfigError(
            f"{where}: " + "; ".join(filter(None, [unknown and f"unknown name(s) {', '.join(unknown)}",
                                                   missing and f"missing {', '.join(missing)}"]))
            + f"; expected every one of {', '.join(DESCRIPTOR_COLUMNS)}"
        )  # fmt: skip
    return descriptors_from_row(values, where)
