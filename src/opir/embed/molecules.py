"""Molecules of the electrolyte: settings, SMILES parsing and validation, species (ions split from salts) and their 3D
geometries."""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from opir.core.config import Recipe, parse_recipe, read_sheet
from opir.core.errors import ConfigError, DataError
from opir.core.h5io import atomic_path

log = logging.getLogger(__name__)


#: Size of one molecule embedding (UniMol v1's CLS representation; the fallbacks are made the same size).
EMBED_DIM = 512
#: Size of a mixture embedding: e_salt, sum_i p_i e_i, and the total salt molarity.
MIXTURE_DIM = 2 * EMBED_DIM + 1
VARIANTS = ("3d", "smiles")
METHODS = ("unimol", "descriptor3d", "morgan")

#: unimol-tools' file names for the all-hydrogen molecule model (its ``UNIMOL_WEIGHT_DIR`` layout).
UNIMOL_WEIGHT_FILE = "mol_pre_all_h_220816.pt"
UNIMOL_DICT_FILE = "mol.dict.txt"
#: The embeddings depend on the package version (its token dictionary order changed in 2025): pinned in the Makefile.
UNIMOL_TOOLS_VERSION = "0.1.6"

#: Elements of UniMol's molecule vocabulary, in its order; also the composition block of the descriptor fallback,
#: so that structures the 3D descriptors cannot tell apart (single atoms: Li+ vs Na+) still differ.
ELEMENTS = (
    "C", "N", "O", "S", "H", "Cl", "F", "Br", "I", "Si", "P", "B", "Na", "K", "Al", "Ca", "Sn", "As", "Hg", "Fe",
    "Zn", "Cr", "Se", "Gd", "Au", "Li",
)  # fmt: skip

#: Rigid templates for symmetric inorganic anions: canonical SMILES -> (shape, central-ligand distance in Å).
#: Distance geometry gives PF6- F-P-F angles of 41-157 degrees with no trans pairs (docs/method.md); the bond
#: lengths are typical crystal values (P-F 1.58-1.60 Å in KPF6/LiPF6, B-F 1.39 Å, As-F 1.72 Å).
ANION_TEMPLATES = {
    "F[P-](F)(F)(F)(F)F": ("octahedral", 1.60),
    "F[As-](F)(F)(F)(F)F": ("octahedral", 1.72),
    "F[Sb-](F)(F)(F)(F)F": ("octahedral", 1.88),
    "F[B-](F)(F)F": ("tetrahedral", 1.39),
}

_OCTAHEDRON = np.array([[1, 0, 0], [-1, 0, 0], [0, 1, 0], [0, -1, 0], [0, 0, 1], [0, 0, -1]], dtype=float)
_TETRAHEDRON = np.array([[1, 1, 1], [1, -1, -1], [-1, 1, -1], [-1, -1, 1]], dtype=float) / np.sqrt(3.0)


# --------------------------------------------------------------------------------------------------------------
# Settings
# --------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class EmbedSettings:
    """The ``embed`` config section (opir/core/schemas/config/embed.schema.yaml documents every key)."""

    unimol_weight_dir: str | None = None
    variant: str = "3d"
    conformer_seed: int = 42
    mmff_max_iters: int = 2000
    projection_seed: int = 20260211
    morgan_radius: int = 2
    unimol_batch_size: int = 32
    unimol_seed: int = 0

    @classmethod
    def from_config(cls, section: Mapping[str, Any] | None) -> EmbedSettings:
        section = dict(section or {})
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(section) - known)
        if unknown:
            raise ConfigError(f"embed: unknown key(s) {', '.join(unknown)}; allowed: {', '.join(sorted(known))}")
        settings = cls(**section)
        if settings.variant not in VARIANTS:
            raise ConfigError(f"embed.variant: {settings.variant!r} is not one of {', '.join(VARIANTS)}")
        return settings

    def geometry_key(self) -> str:
        """Hash of what a cached geometry depends on: a change of seed or optimizer invalidates the cache."""
        text = json.dumps({"conformer_seed": self.conformer_seed, "mmff_max_iters": self.mmff_max_iters})
        return hashlib.sha256(text.encode()).hexdigest()[:16]


# --------------------------------------------------------------------------------------------------------------
# Molecules, species and validation (all before any embedding work)
# --------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Species:
    """One structure that gets its own geometry and embedding: a solvent molecule or one ion of a salt."""

    key: str  # file stem of the cached geometry, e.g. "EC" or "LiPF6__F6P-"
    molecule: str  # name in the molecule sheet
    smiles: str  # canonical SMILES of this structure
    count: int  # how many of it one formula unit of the molecule holds (1 for solvents; ions of a salt)


def parse_smiles(smiles: str, where: str):
    """RDKit molecule from ``smiles``; ConfigError naming ``where`` when it does not parse."""
    # rdkit (slow to import) only where molecules are parsed or built
    from rdkit import Chem, RDLogger

    RDLogger.DisableLog("rdApp.*")  # RDKit prints parse errors on stderr; ours names the row instead
    try:
        mol = Chem.MolFromSmiles(smiles) if isinstance(smiles, str) and smiles.strip() else None
    finally:
        RDLogger.EnableLog("rdApp.*")
    if mol is None:
        raise ConfigError(f"{where}: SMILES {smiles!r} does not parse (RDKit)")
    return mol


def split_species(name: str, smiles: str, role: str, where: str) -> list[Species]:
    """The structures a molecule is embedded as. A salt must be written as charge-balanced, dot-separated ions."""
    # rdkit (slow to import) only where molecules are parsed or built
    from rdkit import Chem
    from rdkit.Chem import rdMolDescriptors

    mol = parse_smiles(smiles, where)
    fragments = Chem.GetMolFrags(mol, asMols=True, sanitizeFrags=True)
    if role != "salt":
        if len(fragments) != 1:
            raise ConfigError(
                f"{where}: {name} ({role}) has {len(fragments)} dot-separated fragments; only a salt may "
                "(list the components of a mixture as separate molecules in the recipe)"
            )
        return [Species(key=_safe_key(name), molecule=name, smiles=Chem.MolToSmiles(mol), count=1)]
    charge = Chem.GetFormalCharge(mol)
    if len(fragments) < 2 or charge != 0:
        raise ConfigError(
            f"{where}: salt {name} must be written as charge-balanced, dot-separated ions, e.g. "
            f"[Li+].F[P-](F)(F)(F)(F)F; got {len(fragments)} fragment(s) with net charge {charge:+d}"
        )
    counts: dict[str, int] = {}
    for fragment in fragments:
        canonical = Chem.MolToSmiles(fragment)
        counts[canonical] = counts.get(canonical, 0) + 1
    species = []
    for canonical, count in counts.items():
        formula = rdMolDescriptors.CalcMolFormula(Chem.MolFromSmiles(canonical))
        species.append(Species(key=_safe_key(f"{name}__{formula}"), molecule=name, smiles=canonical, count=count))
    return species


def _safe_key(text: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "+-_." else "_" for ch in text)


@dataclass(frozen=True)
class EmbeddingInputs:
    """The validated molecule table and recipes, with every molecule split into species."""

    molecules: pd.DataFrame  # name, smiles, role (sheet order)
    recipes: dict[str, Recipe]  # system_id -> recipe (sheet order); empty when only molecules are embedded
    species: dict[str, list[Species]]  # molecule name -> its species


def check_molecules(molecules: pd.DataFrame, source: str = "molecule table") -> dict[str, list[Species]]:
    """Parse every molecule's SMILES and split it into species; ConfigError naming the row of the first problem."""
    for column in ("name", "smiles", "role"):
        if column not in molecules.columns:
            raise ConfigError(f"{source}: missing column {column!r}")
    species: dict[str, list[Species]] = {}
    for row_number, row in enumerate(molecules.itertuples(index=False), start=2):  # line 1 is the header
        where = f"{source}: row {row_number} ({row.name}), column smiles"
        if row.name in species:
            raise ConfigError(f"{source}: row {row_number}: molecule {row.name!r} appears twice")
        species[row.name] = split_species(row.name, row.smiles, row.role, where)
    return species


def check_recipe(recipe: Recipe, molecules: pd.DataFrame, where: str) -> None:
    """Every molecule known, salts given molarities and solvents proportions, proportions adding up to > 0."""
    roles = dict(zip(molecules["name"], molecules["role"], strict=True))
    unknown = [name for name in recipe.molecules if name not in roles]
    if unknown:
        raise ConfigError(
            f"{where}: molecule(s) {', '.join(unknown)} not in the molecule sheet (known: {', '.join(roles)})"
        )
    not_salts = [name for name in recipe.salts if roles[name] != "salt"]
    if not_salts:
        raise ConfigError(f"{where}: {', '.join(not_salts)} given a molarity (M) but not a salt in the molecule sheet")
    salts_as_solvent = [name for name in recipe.components if roles[name] == "salt"]
    if salts_as_solvent:
        raise ConfigError(f"{where}: salt(s) {', '.join(salts_as_solvent)} need a molarity such as 'LiPF6:1.0M'")
    values = list(recipe.components.values())
    if not values or not all(np.isfinite(values)) or min(values) < 0 or sum(values) <= 0:
        raise ConfigError(f"{where}: proportions {recipe.components} do not add up to a positive number")
    if any(not np.isfinite(m) or m < 0 for m in recipe.salts.values()):
        raise ConfigError(f"{where}: salt molarities {recipe.salts} must be finite and non-negative")


def load_embedding_inputs(systems_path: str | Path | None, molecules_path: str | Path) -> EmbeddingInputs:
    """Read and check the molecule sheet (and the systems sheet's electrolyte recipes) before embedding anything."""
    molecules = read_sheet(molecules_path, "molecules.schema.yaml")
    species = check_molecules(molecules, str(molecules_path))
    recipes: dict[str, Recipe] = {}
    if systems_path is not None:
        systems = read_sheet(systems_path, "systems.schema.yaml")
        for row_number, row in enumerate(systems.itertuples(index=False), start=2):
            where = f"{systems_path}: row {row_number} ({row.system_id}), column electrolyte"
            if row.system_id in recipes:
                raise ConfigError(f"{systems_path}: row {row_number}: system {row.system_id!r} appears twice")
            recipe = parse_recipe(row.electrolyte, where)
            check_recipe(recipe, molecules, where)
            recipes[row.system_id] = recipe
    return EmbeddingInputs(molecules=molecules, recipes=recipes, species=species)


# --------------------------------------------------------------------------------------------------------------
# 3D structures
# --------------------------------------------------------------------------------------------------------------
def anion_template(smiles: str):
    """A rigid AX6 (octahedral) or AX4 (tetrahedral) structure for the anions in :data:`ANION_TEMPLATES`."""
    # rdkit (slow to import) only where molecules are parsed or built
    from rdkit import Chem
    from rdkit.Geometry import Point3D

    shape, bond_a = ANION_TEMPLATES[smiles]
    mol = Chem.AddHs(Chem.MolFromSmiles(smiles))
    centre = max(mol.GetAtoms(), key=lambda atom: atom.GetDegree()).GetIdx()
    directions = iter(_OCTAHEDRON if shape == "octahedral" else _TETRAHEDRON)
    conformer = Chem.Conformer(mol.GetNumAtoms())
    for atom in mol.GetAtoms():
        xyz = np.zeros(3) if atom.GetIdx() == centre else bond_a * next(directions)
        conformer.SetAtomPosition(atom.GetIdx(), Point3D(*map(float, xyz)))
    mol.AddConformer(conformer, assignId=True)
    return mol


def build_geometry(smiles: str, settings: EmbedSettings, where: str = "structure") -> tuple[Any, str]:
    """One 3D structure (with explicit H) for a species, and how it was made.

    - a single atom (Li+, Na+) is put at the origin: there is nothing to place it against once the salt is split
      into ions, and the embedding of a lone atom must not depend on an arbitrary position;
    - the anions of :data:`ANION_TEMPLATES` get their ideal polyhedron;
    - everything else: ETKDGv3 with ``conformer_seed`` (single-threaded, so it is reproducible), then MMFF94
      (UFF where MMFF has no parameters; the raw ETKDG structure where neither has).
    """
    # rdkit (slow to import) only where molecules are parsed or built
    from rdkit import Chem
    from rdkit.Chem import AllChem, rdDistGeom
    from rdkit.Geometry import Point3D

    if smiles in ANION_TEMPLATES:
        return anion_template(smiles), f"template:{ANION_TEMPLATES[smiles][0]}"
    mol = Chem.AddHs(Chem.MolFromSmiles(smiles))
    if mol.GetNumAtoms() == 1:
        conformer = Chem.Conformer(1)
        conformer.SetAtomPosition(0, Point3D(0.0, 0.0, 0.0))
        mol.AddConformer(conformer, assignId=True)
        return mol, "single_atom:origin"
    params = rdDistGeom.ETKDGv3()
    params.randomSeed = settings.conformer_seed
    params.numThreads = 1
    if rdDistGeom.EmbedMolecule(mol, params) != 0:
        params.useRandomCoords = True  # the documented retry for molecules whose eigenvalue embedding fails
        if rdDistGeom.EmbedMolecule(mol, params) != 0:
            raise DataError(f"{where}: RDKit ETKDG could not embed {smiles!r} in 3D (seed {settings.conformer_seed})")
    if AllChem.MMFFHasAllMoleculeParams(mol):
        AllChem.MMFFOptimizeMolecule(mol, maxIters=settings.mmff_max_iters)
        return mol, "etkdg_v3+mmff94"
    if AllChem.UFFHasAllMoleculeParams(mol):
        AllChem.UFFOptimizeMolecule(mol, maxIters=settings.mmff_max_iters)
        log.warning("%s: no MMFF parameters for %s; optimized with UFF", where, smiles)
        return mol, "etkdg_v3+uff"
    log.warning("%s: neither MMFF nor UFF parameters for %s; raw ETKDG geometry kept", where, smiles)
    return mol, "etkdg_v3"


def geometry_path(cache_dir: str | Path, species: Species) -> Path:
    return Path(cache_dir) / f"{species.key}.sdf"


def load_or_build_geometry(species: Species, settings: EmbedSettings, cache_dir: str | Path | None):
    """The species' structure from ``cache_dir`` when a file made from the same SMILES and settings is there,
    else built and written there (SDF, atomically). Returns (mol, source)."""
    # rdkit (slow to import) only where molecules are parsed or built
    from rdkit import Chem

    where = f"molecule {species.molecule} ({species.smiles})"
    path = geometry_path(cache_dir, species) if cache_dir is not None else None
    if path is not None and path.exists():
        supplier = Chem.SDMolSupplier(str(path), removeHs=False)
        mol = supplier[0] if len(supplier) else None
        if (
            mol is not None
            and mol.HasProp("smiles")
            and mol.GetProp("smiles") == species.smiles
            and mol.GetProp("geometry_settings") == settings.geometry_key()
        ):
            return mol, mol.GetProp("geometry_source")
        log.info("%s: cached geometry %s is stale; rebuilding", where, path)
    mol, source = build_geometry(species.smiles, settings, where)
    # round to the SDF's 4 decimals now, so a structure read back from the cache embeds exactly like a fresh one
    mol = Chem.MolFromMolBlock(Chem.MolToMolBlock(mol), removeHs=False, sanitize=True)
    if path is not None:
        mol.SetProp("_Name", species.key)
        mol.SetProp("smiles", species.smiles)
        mol.SetProp("molecule", species.molecule)
        mol.SetProp("geometry_source", source)
        mol.SetProp("geometry_settings", settings.geometry_key())
        mol.SetProp("conformer_seed", str(settings.conformer_seed))
        with atomic_path(path) as tmp:
            with Chem.SDWriter(str(tmp)) as writer:
                writer.write(mol)
    return mol, source


def build_geometries(molecules_path: str | Path, out_dir: str | Path, settings: EmbedSettings) -> pd.DataFrame:
    """Geometry of every species of the molecule sheet under ``out_dir`` (one SDF each) plus ``index.tsv``."""
    inputs = load_embedding_inputs(None, molecules_path)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    rows = []
    for species_list in inputs.species.values():
        for species in species_list:
            mol, source = load_or_build_geometry(species, settings, out_dir)
            rows.append(
                {
                    "species": species.key,
                    "molecule": species.molecule,
                    "smiles": species.smiles,
                    "count": species.count,
                    "n_atoms": mol.GetNumAtoms(),
                    "source": source,
                    "file": geometry_path(out_dir, species).name,
                }
            )
            log.info("geometry %s (%s, %d atoms): %s", species.key, species.smiles, mol.GetNumAtoms(), source)
    index = pd.DataFrame(rows)
    index.to_csv(out_dir / "index.tsv", sep="\t", index=False)
    return index
