"""Mixture embeddings c = [e_salt, sum_i p_i e_i, molarity] per system, and for one recipe (``opir predict``)."""

from __future__ import annotations

import contextlib
import json
import logging
import tempfile
from collections.abc import Mapping
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from opir.core.config import Recipe, parse_recipe
from opir.core.errors import ConfigError
from opir.core.h5io import atomic_h5, provenance, write_axis, write_nxdata
from opir.embed.encoders import (
    DESCRIPTOR_BLOCKS,
    embed_species,
    molecule_embeddings,
    resolve_method,
    unimol_weight_files,
)
from opir.embed.molecules import (
    EMBED_DIM,
    MIXTURE_DIM,
    UNIMOL_TOOLS_VERSION,
    EmbedSettings,
    check_molecules,
    check_recipe,
    load_embedding_inputs,
    parse_smiles,
)

log = logging.getLogger(__name__)


# --------------------------------------------------------------------------------------------------------------
# Mixture embeddings
# --------------------------------------------------------------------------------------------------------------
def mixture_embedding(recipe: Recipe, embeddings: Mapping[str, np.ndarray]) -> np.ndarray:
    """c = [e_salt, sum_i p_i e_i, molarity_mol_per_l] (MIXTURE_DIM,), float32.

    - e_salt: the salt's embedding; with several salts their molarity-weighted mean; zeros without salt;
    - sum_i p_i e_i: the non-salt components with proportions normalized to sum to one (Recipe.fractions);
    - molarity: the total salt molarity in mol/L. The paper's c carries no concentration, so 1 M and 1.2 M
      LiPF6 in EC would be the same condition; this one extra number tells them apart.
    """
    molarity = float(sum(recipe.salts.values()))
    e_salt = np.zeros(EMBED_DIM)
    if molarity > 0:
        e_salt = sum(m * embeddings[name].astype(np.float64) for name, m in recipe.salts.items()) / molarity
    e_solvent = sum(p * embeddings[name].astype(np.float64) for name, p in recipe.fractions().items())
    return np.concatenate([e_salt, e_solvent, [molarity]]).astype(np.float32)


def feature_layout() -> dict[str, list[int]]:
    """Column ranges [start, stop) of the blocks of a mixture embedding (written as an attribute)."""
    return {
        "e_salt": [0, EMBED_DIM],
        "sum_p_e_solvent": [EMBED_DIM, 2 * EMBED_DIM],
        "salt_molarity_mol_per_l": [2 * EMBED_DIM, MIXTURE_DIM],
    }


def embed_systems(
    systems_path: str | Path,
    molecules_path: str | Path,
    out_path: str | Path,
    variant: str,
    settings: EmbedSettings,
    geometry_dir: str | Path | None = None,
    rule: str = "embed_mixture",
    config_slice: Any = None,
) -> Path:
    """Write ``results/embed/mixture_{variant}.h5`` for every system of the systems sheet (docs/formats.md)."""
    inputs = load_embedding_inputs(systems_path, molecules_path)  # all checks before any embedding work
    method, statement = resolve_method(variant, settings)
    (log.warning if method == "descriptor3d" else log.info)("embedding variant %s: %s", variant, statement)

    all_species = [s for name in inputs.molecules["name"] for s in inputs.species[name]]
    species_emb = embed_species(all_species, variant, settings, geometry_dir)
    per_molecule = molecule_embeddings(species_emb)
    system_ids = list(inputs.recipes)
    mixtures = np.stack([mixture_embedding(inputs.recipes[s], per_molecule) for s in system_ids])
    names = list(inputs.molecules["name"])
    fractions = np.array([[inputs.recipes[s].fractions().get(n, 0.0) for n in names] for s in system_ids])
    molarities = np.array([[inputs.recipes[s].salts.get(n, 0.0) for n in names] for s in system_ids])

    inputs_list = [systems_path, molecules_path] + ([geometry_dir] if method != "morgan" and geometry_dir else [])
    if method == "unimol":
        inputs_list += list(unimol_weight_files(settings.unimol_weight_dir))
    attrs = provenance(rule, config_slice, inputs_list)
    attrs |= {
        "variant": variant,
        "method": method,
        "unimol_weights_used": method == "unimol",
        "embedding_statement": statement,
        "embedding_dim": EMBED_DIM,
        "feature_layout": json.dumps(feature_layout()),
        "settings": json.dumps(asdict(settings), sort_keys=True),
    }
    if method == "unimol":
        attrs["unimol_tools_version"] = UNIMOL_TOOLS_VERSION
    with atomic_h5(out_path, attrs) as h5:
        write_axis(h5, "system_id", np.array(system_ids, dtype=str))
        dataset = h5.create_dataset("mixture_embedding", data=mixtures)
        dataset.attrs["feature_layout"] = json.dumps(feature_layout())
        dataset.attrs["long_name"] = "[e_salt, sum_i p_i e_i, salt molarity (mol/L)] per system"
        write_nxdata(
            h5,
            "composition",
            "fraction",
            fractions,
            [("system_id", np.array(system_ids, dtype=str)), ("molecule", np.array(names, dtype=str))],
            long_name="normalized proportion of each non-salt component",
        )
        h5["composition"].create_dataset("salt_molarity", data=molarities).attrs["units"] = "mol/L"
        group = write_nxdata(
            h5,
            "molecules",
            "embedding",
            np.stack([per_molecule[n] for n in names]),
            [("name", np.array(names, dtype=str)), "."],
            long_name=f"{method} embedding per molecule (salts: stoichiometric mean of ions)",
        )
        write_axis(group, "smiles", np.array(inputs.molecules["smiles"], dtype=str))
        write_axis(group, "role", np.array(inputs.molecules["role"], dtype=str))
        group = write_nxdata(
            h5,
            "species",
            "embedding",
            species_emb.embedding,
            [("key", np.array([s.key for s in all_species], dtype=str)), "."],
            long_name=f"{method} embedding per structure (solvent molecule or ion)",
        )
        write_axis(group, "molecule", np.array([s.molecule for s in all_species], dtype=str))
        write_axis(group, "smiles", np.array([s.smiles for s in all_species], dtype=str))
        group.create_dataset("count", data=np.array([s.count for s in all_species], dtype=np.int32))
        write_axis(group, "geometry_source", np.array(species_emb.geometry_source, dtype=str))
        if species_emb.descriptors is not None:
            group.create_dataset("descriptors_3d", data=species_emb.descriptors)
            group["descriptors_3d"].attrs["blocks"] = json.dumps(dict(DESCRIPTOR_BLOCKS))
    log.info("wrote %s: %d systems x %d features (%s)", out_path, len(system_ids), MIXTURE_DIM, method)
    return Path(out_path)


# --------------------------------------------------------------------------------------------------------------
# One recipe (opir predict)
# --------------------------------------------------------------------------------------------------------------
def molecule_table(molecules: pd.DataFrame | Mapping[str, str] | None, recipe: Recipe) -> pd.DataFrame:
    """A molecule table for ``recipe``: rows of ``molecules`` (a sheet, or name -> SMILES), and for names not in
    it, the name itself read as a SMILES (``"[Li+].[B-](F)(F)(F)F:1M; C1COC(=O)O1:1"``)."""
    if molecules is None:
        table = pd.DataFrame(columns=["name", "smiles", "role"])
    elif isinstance(molecules, pd.DataFrame):
        missing = [column for column in ("name", "smiles", "role") if column not in molecules.columns]
        if missing:
            raise ConfigError(f"molecule table: missing column(s) {', '.join(missing)} (expected name, smiles, role)")
        table = molecules[["name", "smiles", "role"]].copy()
    else:
        table = pd.DataFrame({"name": list(molecules), "smiles": list(molecules.values()), "role": "solvent"})
    known = set(table["name"])
    extra = []
    for name in recipe.molecules:
        role = "salt" if name in recipe.salts else "solvent"
        if name not in known:
            parse_smiles(name, f"recipe: {name!r} is neither a known molecule ({', '.join(sorted(known))}) nor")
            extra.append({"name": name, "smiles": name, "role": role})
        elif not isinstance(molecules, pd.DataFrame):
            table.loc[table["name"] == name, "role"] = role
    table = pd.concat([table, pd.DataFrame(extra, columns=["name", "smiles", "role"])], ignore_index=True)
    return table[table["name"].isin(recipe.molecules)].reset_index(drop=True)


def embed_recipe(
    recipe: str | Recipe,
    molecules: pd.DataFrame | Mapping[str, str] | None,
    settings: EmbedSettings,
    variant: str | None = None,
    geometry_dir: str | Path | None = None,
) -> np.ndarray:
    """Mixture embedding (MIXTURE_DIM,) of one electrolyte recipe, in the same space as ``mixture_{variant}.h5``
    made with the same settings: same geometries (reused from ``geometry_dir`` when cached there), same method."""
    variant = variant or settings.variant
    parsed = parse_recipe(recipe, "recipe") if isinstance(recipe, str) else recipe
    table = molecule_table(molecules, parsed)
    species = check_molecules(table, "recipe molecules")
    check_recipe(parsed, table, f"recipe {recipe!r}" if isinstance(recipe, str) else "recipe")
    all_species = [s for name in table["name"] for s in species[name]]
    with contextlib.ExitStack() as stack:
        if geometry_dir is None and variant == "3d":
            geometry_dir = stack.enter_context(tempfile.TemporaryDirectory(prefix="opir-geometries-"))
        per_molecule = molecule_embeddings(embed_species(all_species, variant, settings, geometry_dir))
    return mixture_embedding(parsed, per_molecule)
