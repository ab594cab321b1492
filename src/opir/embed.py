"""Electrolyte mixture embeddings: the condition c = [e_salt, sum_i p_i e_i] of the paper, plus the molarity.

Pipeline (docs/method.md, "Electrolyte embedding"):

1. every molecule of the molecule sheet is split into *species*: a solvent or additive is one species, a salt is
   split into its ions (``[Li+].F[P-](F)(F)(F)(F)F`` -> ``[Li+]`` and ``F[P-](F)(F)(F)(F)F``);
2. each species gets one 3D structure, cached as an SDF file: ETKDGv3 with a fixed seed + MMFF for ordinary
   molecules, a rigid template for the highly symmetric inorganic anions (distance geometry does not make PF6-
   octahedral), the origin for a single-atom ion such as Li+;
3. each species is embedded in 512 dimensions: UniMol (``unimol-tools`` 0.1.6, weights from a local folder) fed
   with those atoms and coordinates, or, without weights, a deterministic projection of RDKit 3D descriptors;
   the SMILES variant (Table 4 ablation) uses Morgan count fingerprints instead;
4. a salt's embedding is the stoichiometry-weighted mean of its ions' embeddings; a system's mixture embedding is
   ``[e_salt, sum_i p_i e_i, molarity_mol_per_l]`` with the proportions normalized to sum to one.

Everything the embedding depends on (sheets, seeds, the weights folder) is checked before any embedding work, and
bad input raises :class:`~opir.errors.ConfigError` naming the sheet row.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import logging
import os
import sys
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from opir.config import Recipe, parse_recipe, read_sheet
from opir.errors import ConfigError, DataError
from opir.h5io import atomic_h5, atomic_path, provenance, write_axis, write_nxdata

log = logging.getLogger("opir.embed")

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
    """The ``embed`` config section (workflow/schemas/config/embed.schema.yaml documents every key)."""

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


# --------------------------------------------------------------------------------------------------------------
# Species embeddings: descriptor3d (offline fallback), morgan (SMILES variant), unimol
# --------------------------------------------------------------------------------------------------------------
DESCRIPTOR_BLOCKS = (
    ("MORSE", 224),
    ("RDF", 210),
    ("WHIM", 114),
    ("AUTOCORR3D", 80),
    ("GETAWAY", 273),
    ("USR", 12),
    ("USRCAT", 60),
    ("shape", 11),
    ("composition", len(ELEMENTS) + 2),
)
N_DESCRIPTORS = sum(size for _, size in DESCRIPTOR_BLOCKS)


def descriptors_3d(mol) -> np.ndarray:
    """The raw 3D descriptor vector of one structure (``N_DESCRIPTORS`` values, see :data:`DESCRIPTOR_BLOCKS`).

    Descriptors that are undefined for tiny structures are zero: WHIM/AUTOCORR3D give NaN for one atom and
    USR/USRCAT need three atoms. The composition block (element counts in UniMol's vocabulary, net charge, heavy
    atom count) is what separates a Li+ from a Na+ once every geometric descriptor is zero.
    """
    from rdkit import Chem
    from rdkit.Chem import Descriptors3D, rdMolDescriptors

    blocks = {
        "MORSE": rdMolDescriptors.CalcMORSE(mol),
        "RDF": rdMolDescriptors.CalcRDF(mol),
        "WHIM": rdMolDescriptors.CalcWHIM(mol),
        "AUTOCORR3D": rdMolDescriptors.CalcAUTOCORR3D(mol),
        "GETAWAY": rdMolDescriptors.CalcGETAWAY(mol),
        "USR": rdMolDescriptors.GetUSR(mol) if mol.GetNumAtoms() >= 3 else [],
        "USRCAT": rdMolDescriptors.GetUSRCAT(mol) if mol.GetNumAtoms() >= 3 else [],
        "shape": list(Descriptors3D.CalcMolDescriptors3D(mol).values()) if mol.GetNumAtoms() >= 2 else [],
    }
    symbols = [atom.GetSymbol() for atom in mol.GetAtoms()]
    unknown = sorted(set(symbols) - set(ELEMENTS))
    if unknown:
        log.warning("elements %s are outside the composition block; counted only in the 3D descriptors", unknown)
    blocks["composition"] = [symbols.count(e) for e in ELEMENTS] + [
        Chem.GetFormalCharge(mol),
        mol.GetNumHeavyAtoms(),
    ]
    parts = []
    for name, size in DESCRIPTOR_BLOCKS:
        values = np.asarray(blocks[name], dtype=float)
        if values.size == 0:
            values = np.zeros(size)
        if values.size != size:
            raise DataError(f"RDKit returned {values.size} {name} descriptors, expected {size}")
        parts.append(values)
    vector = np.concatenate(parts)
    return np.where(np.isfinite(vector), vector, 0.0)


def descriptor_projection(seed: int, n_in: int = N_DESCRIPTORS, n_out: int = EMBED_DIM) -> np.ndarray:
    """The fixed Gaussian random projection (n_in, n_out), entries N(0, 1/n_out): Johnson-Lindenstrauss, so
    distances between descriptor vectors are kept up to a small distortion. numpy's PCG64 stream is reproducible
    for a given seed, so the matrix never needs to be stored."""
    rng = np.random.Generator(np.random.PCG64(seed))
    return rng.standard_normal((n_in, n_out)) / np.sqrt(n_out)


def descriptor3d_embedding(mols: Sequence[Any], settings: EmbedSettings) -> tuple[np.ndarray, np.ndarray]:
    """Fallback embeddings (n, 512) and the raw descriptors (n, N_DESCRIPTORS).

    The raw values span six orders of magnitude (GETAWAY and RDF sums against 0-1 shape ratios); ``arcsinh``
    compresses them without constants fitted to any data set (it is linear near 0 and logarithmic for large
    values, and keeps signs), then the fixed projection maps them to 512 dimensions.
    """
    raw = np.stack([descriptors_3d(mol) for mol in mols]) if len(mols) else np.zeros((0, N_DESCRIPTORS))
    projected = np.arcsinh(raw) @ descriptor_projection(settings.projection_seed)
    return projected.astype(np.float32), raw.astype(np.float32)


def morgan_embedding(smiles: Sequence[str], settings: EmbedSettings) -> np.ndarray:
    """SMILES (2D) variant: Morgan count fingerprints folded to 512 bits (radius ``morgan_radius``)."""
    from rdkit import Chem
    from rdkit.Chem import rdFingerprintGenerator

    generator = rdFingerprintGenerator.GetMorganGenerator(radius=settings.morgan_radius, fpSize=EMBED_DIM)
    rows = [generator.GetCountFingerprintAsNumPy(Chem.MolFromSmiles(s)) for s in smiles]
    return np.asarray(rows, dtype=np.float32).reshape(len(rows), EMBED_DIM)


def unimol_weight_files(weight_dir: str | Path) -> tuple[Path, Path]:
    """Model and dictionary paths in a ``UNIMOL_WEIGHT_DIR``-style folder; ConfigError if either is missing,
    so that unimol-tools never gets to its hub download."""
    folder = Path(weight_dir)
    model, dictionary = folder / UNIMOL_WEIGHT_FILE, folder / UNIMOL_DICT_FILE
    missing = [p.name for p in (model, dictionary) if not p.is_file()]
    if missing:
        raise ConfigError(
            f"embed.unimol_weight_dir: {folder} lacks {', '.join(missing)} (expected {UNIMOL_WEIGHT_FILE} and "
            f"{UNIMOL_DICT_FILE}, the UNIMOL_WEIGHT_DIR layout of unimol-tools); set it to null to use the "
            "offline descriptor fallback"
        )
    return model, dictionary


def import_unimol():
    """Import unimol_tools without its side effects on the caller: it creates ``./logs/`` in the working directory
    on import and lowers the root logger's level. Import it from a temporary directory and undo both."""
    if "unimol_tools" in sys.modules:
        return sys.modules["unimol_tools"]
    os.environ["HF_HUB_OFFLINE"] = "1"  # belt and braces: we never call the hub, and neither may it
    cwd, root_level = os.getcwd(), logging.root.level
    with tempfile.TemporaryDirectory(prefix="opir-unimol-") as tmp:
        os.chdir(tmp)
        try:
            import unimol_tools
        finally:
            os.chdir(cwd)
            logging.root.setLevel(root_level)
            for handler in list(logging.getLogger("Uni-Mol Tools").handlers):
                if isinstance(handler, logging.FileHandler):  # points into the deleted temp dir
                    logging.getLogger("Uni-Mol Tools").removeHandler(handler)
                    handler.close()
    installed = getattr(unimol_tools, "__version__", None)
    if installed is None:
        from importlib.metadata import version

        installed = version("unimol_tools")
    if installed != UNIMOL_TOOLS_VERSION:
        log.warning("unimol-tools %s installed; embeddings are pinned to %s", installed, UNIMOL_TOOLS_VERSION)
    return unimol_tools


def unimol_embedding(mols: Sequence[Any], settings: EmbedSettings, keys: Sequence[str] = ()) -> np.ndarray:
    """UniMol v1 CLS embeddings (n, 512) of the given structures (their own atoms and coordinates).

    The weights folder is checked first (ConfigError, never a download). Checkpoints written by Uni-Core hold an
    ``argparse.Namespace``; torch >= 2.6 refuses it under ``weights_only=True``, so it is allow-listed.
    """
    import torch

    model_path, dict_path = unimol_weight_files(settings.unimol_weight_dir)
    vocabulary = set(Path(dict_path).read_text().split())
    atoms = [[atom.GetSymbol() for atom in mol.GetAtoms()] for mol in mols]
    for key, symbols in zip(keys or [str(i) for i in range(len(mols))], atoms, strict=True):
        outside = sorted(set(symbols) - vocabulary)
        if outside:  # unimol-tools would silently map them to [UNK]
            raise ConfigError(f"species {key}: element(s) {', '.join(outside)} not in UniMol's vocabulary {dict_path}")
    model = _unimol_model(str(model_path), str(dict_path), settings.unimol_batch_size, settings.unimol_seed)
    coordinates = [mol.GetConformer().GetPositions().astype(np.float32) for mol in mols]
    with torch.random.fork_rng(devices=[]):
        reprs = model.get_repr({"atoms": atoms, "coordinates": coordinates})
    embedding = np.asarray(reprs, dtype=np.float32).reshape(len(mols), -1)
    if embedding.shape[1] != EMBED_DIM:
        raise DataError(f"UniMol returned {embedding.shape[1]}-d embeddings, expected {EMBED_DIM}")
    return embedding


_UNIMOL_CACHE: dict[tuple, Any] = {}


def _unimol_model(model_path: str, dict_path: str, batch_size: int, seed: int):
    """A UniMolRepr for these files, built once per process (47 M parameters: ~1 s; `opir predict` embeds often).
    The cache key includes the files' size and mtime, so replaced weights are reloaded."""
    import torch

    key = (
        model_path,
        dict_path,
        batch_size,
        seed,
        *((os.stat(p).st_size, os.stat(p).st_mtime_ns) for p in (model_path, dict_path)),
    )
    if key not in _UNIMOL_CACHE:
        unimol_tools = import_unimol()
        torch.serialization.add_safe_globals([argparse.Namespace])
        # parameters missing from a checkpoint keep their initialization: seed it, so the result is reproducible
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = unimol_tools.UniMolRepr(
                data_type="molecule",
                remove_hs=False,
                use_cuda=torch.cuda.is_available(),
                batch_size=batch_size,
                pretrained_model_path=model_path,
                pretrained_dict_path=dict_path,
            )
        _UNIMOL_CACHE.clear()  # one model at a time: each holds ~190 MB
        _UNIMOL_CACHE[key] = model
    return _UNIMOL_CACHE[key]


def resolve_method(variant: str, settings: EmbedSettings) -> tuple[str, str]:
    """The method a variant uses with these settings, and the sentence that says so in logs and attributes."""
    if variant not in VARIANTS:
        raise ConfigError(f"embedding variant {variant!r} is not one of {', '.join(VARIANTS)}")
    if variant == "smiles":
        return "morgan", (
            f"SMILES variant: Morgan count fingerprints (radius {settings.morgan_radius}, {EMBED_DIM} bits); "
            "no 3D information, no UniMol"
        )
    if settings.unimol_weight_dir is None:
        return "descriptor3d", (
            "UniMol weights NOT used: embed.unimol_weight_dir is null, so the offline fallback (RDKit 3D "
            f"descriptors, fixed random projection to {EMBED_DIM}, seed {settings.projection_seed}) was used"
        )
    unimol_weight_files(settings.unimol_weight_dir)
    return "unimol", (
        f"UniMol weights used: {Path(settings.unimol_weight_dir) / UNIMOL_WEIGHT_FILE} "
        f"(unimol-tools {UNIMOL_TOOLS_VERSION}, all-H model, RDKit geometries)"
    )


@dataclass
class SpeciesEmbeddings:
    species: list[Species]
    embedding: np.ndarray  # (n_species, 512)
    geometry_source: list[str]
    descriptors: np.ndarray | None  # raw 3D descriptors (descriptor3d only)


def embed_species(
    species: Sequence[Species], variant: str, settings: EmbedSettings, geometry_dir: str | Path | None
) -> SpeciesEmbeddings:
    """Embed each species with the variant's method (3D structures come from / go to ``geometry_dir``)."""
    method, _ = resolve_method(variant, settings)
    species = list(species)
    if method == "morgan":
        return SpeciesEmbeddings(
            species, morgan_embedding([s.smiles for s in species], settings), ["2d"] * len(species), None
        )
    built = [load_or_build_geometry(s, settings, geometry_dir) for s in species]
    mols, sources = [m for m, _ in built], [src for _, src in built]
    if method == "unimol":
        return SpeciesEmbeddings(species, unimol_embedding(mols, settings, [s.key for s in species]), sources, None)
    embedding, raw = descriptor3d_embedding(mols, settings)
    return SpeciesEmbeddings(species, embedding, sources, raw)


def molecule_embeddings(species_embeddings: SpeciesEmbeddings) -> dict[str, np.ndarray]:
    """Molecule name -> 512-d embedding: a solvent's own; a salt's is the stoichiometry-weighted mean of its ions
    (LiPF6 = (e_Li+ + e_PF6-)/2; Li2SO4 = (2 e_Li+ + e_SO4--)/3), an order-free summary of the dissolved ions."""
    sums: dict[str, np.ndarray] = {}
    counts: dict[str, int] = {}
    for species, vector in zip(species_embeddings.species, species_embeddings.embedding, strict=True):
        sums[species.molecule] = sums.get(species.molecule, 0.0) + species.count * vector.astype(np.float64)
        counts[species.molecule] = counts.get(species.molecule, 0) + species.count
    return {name: (sums[name] / counts[name]).astype(np.float32) for name in sums}


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


def read_mixture_embeddings(path: str | Path) -> dict[str, np.ndarray]:
    """system_id -> mixture embedding, as the models read them."""
    import h5py

    with h5py.File(path, "r") as h5:
        ids = h5["system_id"].asstr()[()]
        values = h5["mixture_embedding"][()]
    return {str(system): values[i] for i, system in enumerate(ids)}


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
