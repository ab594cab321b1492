"""Config and sheet validation, and the electrolyte recipe language.

The workflow calls :func:`load_and_validate` at start-up, before any job: a wrong type, an unknown key, a missing
sheet column, a system whose molecules are not in the molecule sheet or a proportion that does not parse stops the
run with a :class:`~opir.core.errors.ConfigError` naming the file, the key or row, and what was expected.

The config schema is split by stage: ``opir/core/schemas/config.schema.yaml`` (package data) refers to one file
per section under ``schemas/config/`` (``$ref: config/<section>.schema.yaml``), so each stage owns its slice.
"""

from __future__ import annotations

import copy
import functools
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import urljoin

import jsonschema
import pandas as pd
import yaml
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from opir.core.errors import ConfigError

#: The schemas ship inside the package (package data), so an installed library validates without the repository.
SCHEMA_DIR = Path(str(resources.files("opir.core") / "schemas"))


# --------------------------------------------------------------------------------------------------------------
# JSON schema with file references
# --------------------------------------------------------------------------------------------------------------
# libyaml's loader where PyYAML was built with it: the schemas are read at every snakemake start, i.e. per job
_SAFE_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def _load_yaml(path: Path) -> Any:
    with open(path) as handle:
        return yaml.load(handle, Loader=_SAFE_LOADER)


_BASE_URI = "https://opir.invalid/schemas/"


@functools.lru_cache(maxsize=4)
def _registry(schema_dir: Path) -> Registry:
    """Every schema file under ``schema_dir``, addressable by its path relative to that folder (so a ``$ref``
    is relative to the file it appears in, as in any JSON-schema tool)."""
    resources = []
    for path in sorted(schema_dir.rglob("*.schema.yaml")):
        contents = _load_yaml(path)
        contents.setdefault("$schema", "https://json-schema.org/draft/2020-12/schema")
        uri = _BASE_URI + path.relative_to(schema_dir).as_posix()
        resources.append((uri, Resource.from_contents(contents, DRAFT202012)))
    return Registry().with_resources(resources)


def _load_schema(name: str, schema_dir: Path) -> tuple[dict, Registry]:
    registry = _registry(schema_dir)
    uri = _BASE_URI + name
    schema = dict(registry[uri].contents)
    schema["$id"] = uri
    return schema, registry


def _error_path(error: jsonschema.ValidationError) -> str:
    return ".".join(str(p) for p in error.absolute_path) or "<top level>"


def _explain(error: jsonschema.ValidationError) -> str:
    if error.validator == "additionalProperties":
        allowed = sorted(error.schema.get("properties", {}))
        return f"{error.message}; allowed keys here: {', '.join(allowed)}"
    description = error.schema.get("description") if isinstance(error.schema, dict) else None
    return f"{error.message}" + (f" (expected: {description})" if description else "")


def validate_with_schema(
    data: Any, schema_name: str, source: str, schema_dir: Path = SCHEMA_DIR, set_defaults: bool = True
) -> Any:
    """Validate ``data`` against ``schema_dir/schema_name``; fill in schema defaults; raise ConfigError."""
    schema, registry = _load_schema(schema_name, schema_dir)
    validator_cls = jsonschema.Draft202012Validator
    validator = validator_cls(schema, registry=registry)
    errors = sorted(validator.iter_errors(data), key=lambda e: (len(e.absolute_path), _error_path(e)))
    if errors:
        lines = [f"{source}: {_error_path(e)}: {_explain(e)}" for e in errors[:20]]
        more = f"\n... and {len(errors) - 20} more" if len(errors) > 20 else ""
        raise ConfigError("invalid configuration:\n  " + "\n  ".join(lines) + more)
    if set_defaults:
        _fill_defaults(data, schema, registry, schema["$id"])
    return data


def _resolve(schema: Any, registry: Registry, base: str) -> tuple[Any, str]:
    """Follow ``$ref`` chains; returns the schema reached and the URI of the file it sits in."""
    while isinstance(schema, dict) and "$ref" in schema:
        target = urljoin(base, schema["$ref"])
        uri, _, pointer = target.partition("#")
        contents = registry[uri].contents
        for part in [p for p in pointer.split("/") if p]:
            contents = contents[part]
        schema, base = contents, uri
    return schema, base


def _fill_defaults(data: Any, schema: Any, registry: Registry, base: str = _BASE_URI + "config.schema.yaml") -> None:
    """Fill ``default`` values of object properties that are missing (jsonschema does not do it)."""
    schema, base = _resolve(schema, registry, base)
    if not isinstance(data, dict) or not isinstance(schema, dict):
        return
    for key, sub in schema.get("properties", {}).items():
        sub_resolved, sub_base = _resolve(sub, registry, base)
        if key not in data and isinstance(sub_resolved, dict) and "default" in sub_resolved:
            data[key] = copy.deepcopy(sub_resolved["default"])
        if key in data:
            _fill_defaults(data[key], sub_resolved, registry, sub_base)


def with_defaults(section: str, values: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """``values`` (a config section, e.g. ``"ingest"`` or ``"models.abcc.losses"``) with every missing key filled
    with its schema default, nested sections included: the schema is the one place a default is written, so a
    library function called without the workflow (a test, a notebook) sees the same defaults as a rule."""
    registry = _registry(SCHEMA_DIR)
    base = _BASE_URI + "config.schema.yaml"
    schema, base = _resolve(registry[base].contents, registry, base)
    for key in section.split("."):
        if key not in schema.get("properties", {}):
            raise ConfigError(f"config schema: no section {section!r} ({key!r} unknown)")
        schema, base = _resolve(schema["properties"][key], registry, base)
    data = copy.deepcopy(dict(values or {}))
    _fill_defaults(data, schema, registry, base)
    return data


# --------------------------------------------------------------------------------------------------------------
# Electrolyte recipes: "LiPF6:1.0M; EC:0.5; DMC:0.5"
# --------------------------------------------------------------------------------------------------------------
_RECIPE_ITEM = re.compile(r"^\s*(?P<name>[^:;]+?)\s*:\s*(?P<amount>[^:;]+?)\s*$")
_NUMBER = re.compile(r"^[+]?(\d+(\.\d*)?|\.\d+)([eE][-+]?\d+)?$")


@dataclass(frozen=True)
class Recipe:
    """An electrolyte: salts with molarities (mol/L) and the other components with proportions.

    Proportions are as written (w/w or volume fractions, as the sheet says); :meth:`fractions` normalizes them.
    """

    salts: dict[str, float] = field(default_factory=dict)
    components: dict[str, float] = field(default_factory=dict)

    def fractions(self) -> dict[str, float]:
        total = sum(self.components.values())
        return {name: value / total for name, value in self.components.items()}

    @property
    def molecules(self) -> list[str]:
        return [*self.salts, *self.components]


def parse_recipe(text: str, where: str = "electrolyte") -> Recipe:
    """Parse ``"LiPF6:1.0M; EC:0.5; DMC:0.5"``: an amount ending in ``M`` is a salt molarity, a plain number a
    proportion (a trailing ``%`` divides by 100). Proportions must add up to a positive number."""
    if not isinstance(text, str) or not text.strip():
        raise ConfigError(f"{where}: empty electrolyte recipe; expected e.g. 'LiPF6:1.0M; EC:0.5; DMC:0.5'")
    salts: dict[str, float] = {}
    components: dict[str, float] = {}
    for item in [part for part in text.split(";") if part.strip()]:
        match = _RECIPE_ITEM.match(item)
        if not match:
            raise ConfigError(
                f"{where}: cannot parse {item.strip()!r}; expected NAME:AMOUNT such as 'EC:0.5' or 'LiPF6:1.0M'"
            )
        name, amount = match["name"], match["amount"].replace(" ", "")
        target, scale = components, 1.0
        if amount.upper().endswith("M"):
            target, amount = salts, amount[:-1]
        elif amount.endswith("%"):
            amount, scale = amount[:-1], 0.01
        if not _NUMBER.match(amount):
            raise ConfigError(f"{where}: amount {match['amount']!r} of {name!r} is not a non-negative number")
        if name in salts or name in components:
            raise ConfigError(f"{where}: {name!r} appears twice")
        target[name] = float(amount) * scale
    if not components:
        raise ConfigError(f"{where}: no solvent proportions in {text!r}")
    if sum(components.values()) <= 0:
        raise ConfigError(f"{where}: proportions {components} do not add up to a positive number")
    return Recipe(salts=salts, components=components)


# --------------------------------------------------------------------------------------------------------------
# Sheets
# --------------------------------------------------------------------------------------------------------------
def read_sheet(path: str | Path, schema_name: str, schema_dir: Path = SCHEMA_DIR) -> pd.DataFrame:
    """Read a TSV sheet and validate every row against its schema (columns are the schema's properties)."""
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"{path}: sheet not found")
    try:
        sheet = pd.read_csv(path, sep="\t", dtype=str, comment="#", keep_default_na=False)
    except Exception as exc:  # pandas raises several types for malformed text
        raise ConfigError(f"{path}: cannot read as a tab-separated sheet: {exc}") from exc
    schema, registry = _load_schema(schema_name, schema_dir)
    required = schema.get("required", [])
    missing = [column for column in required if column not in sheet.columns]
    if missing:
        raise ConfigError(
            f"{path}: missing column(s) {', '.join(missing)}; expected columns: {', '.join(schema['properties'])}"
        )
    validator = jsonschema.Draft202012Validator(schema, registry=registry)
    typed = sheet.apply(lambda column: column.map(lambda v: _coerce(v, schema["properties"].get(column.name, {}))))
    problems = []
    for row_number, row in enumerate(typed.to_dict("records"), start=2):  # line 1 is the header
        for error in validator.iter_errors(row):
            problems.append(f"{path}: row {row_number}, column {_error_path(error)}: {_explain(error)}")
    if problems:
        raise ConfigError("invalid sheet:\n  " + "\n  ".join(problems))
    return typed


def sheet_schema(name: str) -> dict[str, Any]:
    """The schema of a sheet (``systems.schema.yaml``, ...), for checks of values that do not come from a sheet."""
    return _load_schema(name, SCHEMA_DIR)[0]


def _coerce(value: str, column_schema: Mapping[str, Any]) -> Any:
    kind = column_schema.get("type")
    try:
        if kind == "integer":
            return int(value)
        if kind == "number":
            return float(value)
    except ValueError:
        return value  # left as a string so the schema reports the wrong type with its row
    return value


@dataclass(frozen=True)
class Sheets:
    systems: pd.DataFrame
    molecules: pd.DataFrame
    runs: pd.DataFrame
    recipes: dict[str, Recipe]
    electrodes: dict[str, Any] = field(default_factory=dict)  # system_id -> opir.core.electrodes descriptors


def resolve_path(path: str | Path, root: Path = Path("."), fallback_root: Path | None = None) -> Path:
    """A relative path is taken from ``root`` (the working directory); when nothing is there, from
    ``fallback_root`` (the workflow's folder, which ships the default sheets and resources)."""
    path = Path(path)
    if path.is_absolute() or (root / path).exists() or fallback_root is None:
        return root / path
    return fallback_root / path


def load_sheets(config: Mapping[str, Any], root: Path = Path("."), fallback_root: Path | None = None) -> Sheets:
    """Read and cross-check the systems, molecules and runs sheets named in ``config['sheets']``."""
    # electrodes.py reads the systems schema through this module, so it is imported here, not at the top
    from opir.core.electrodes import descriptors_from_row

    paths = {
        name: resolve_path(config["sheets"][name], root, fallback_root) for name in ("systems", "molecules", "runs")
    }
    systems = read_sheet(paths["systems"], "systems.schema.yaml")
    molecules = read_sheet(paths["molecules"], "molecules.schema.yaml")
    runs = read_sheet(paths["runs"], "runs.schema.yaml")
    _check_unique(systems, "system_id", paths["systems"])
    _check_unique(molecules, "name", paths["molecules"])
    if runs.duplicated(["system_id", "run_id"]).any():
        dup = runs[runs.duplicated(["system_id", "run_id"])].iloc[0]
        raise ConfigError(f"{paths['runs']}: run {dup.system_id}/{dup.run_id} is listed twice")

    known_molecules = set(molecules["name"])
    roles = dict(zip(molecules["name"], molecules["role"], strict=True))
    recipes = {}
    for row_number, row in enumerate(systems.itertuples(), start=2):
        where = f"{paths['systems']}: row {row_number} ({row.system_id}), column electrolyte"
        recipe = parse_recipe(row.electrolyte, where)
        unknown = [name for name in recipe.molecules if name not in known_molecules]
        if unknown:
            raise ConfigError(
                f"{where}: molecule(s) {', '.join(unknown)} not in {paths['molecules']} "
                f"(known: {', '.join(sorted(known_molecules))})"
            )
        wrong_role = [name for name in recipe.salts if roles[name] != "salt"]
        if wrong_role:
            raise ConfigError(
                f"{where}: {', '.join(wrong_role)} given a molarity but is not a salt in the molecule sheet"
            )
        recipes[row.system_id] = recipe
    electrodes = {
        row["system_id"]: descriptors_from_row(row, f"{paths['systems']}: row {row_number} ({row['system_id']})")
        for row_number, row in enumerate(systems.to_dict("records"), start=2)
    }
    unknown_systems = sorted(set(runs["system_id"]) - set(systems["system_id"]))
    if unknown_systems:
        raise ConfigError(f"{paths['runs']}: system(s) {', '.join(unknown_systems)} not in {paths['systems']}")
    without_runs = sorted(set(systems["system_id"]) - set(runs["system_id"]))
    if without_runs:
        raise ConfigError(f"{paths['runs']}: system(s) {', '.join(without_runs)} have no run")
    return Sheets(systems=systems, molecules=molecules, runs=runs, recipes=recipes, electrodes=electrodes)


def _check_unique(sheet: pd.DataFrame, column: str, path: Path) -> None:
    duplicated = sheet[column][sheet[column].duplicated()].tolist()
    if duplicated:
        raise ConfigError(f"{path}: {column} {duplicated[0]!r} appears more than once")


def load_and_validate(
    config: dict, root: Path = Path("."), fallback_root: Path | None = None, schema_dir: Path = SCHEMA_DIR
) -> Sheets:
    """What the workflow runs at start-up: the config against its schema (defaults filled in), then the sheets."""
    validate_with_schema(config, "config.schema.yaml", "config", schema_dir)
    return load_sheets(config, root, fallback_root)
