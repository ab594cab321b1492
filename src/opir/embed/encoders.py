"""Species embeddings: UniMol 512-d (``unimol-tools``, local weights), a 3D-descriptor projection or Morgan
fingerprints."""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path
from typing import Any

import numpy as np

from opir.core.errors import ConfigError, DataError
from opir.embed.molecules import (
    ELEMENTS,
    EMBED_DIM,
    UNIMOL_DICT_FILE,
    UNIMOL_TOOLS_VERSION,
    UNIMOL_WEIGHT_FILE,
    VARIANTS,
    EmbedSettings,
    Species,
    load_or_build_geometry,
)

log = logging.getLogger(__name__)


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
    # rdkit (slow to import) only where molecules are parsed or built
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
    # rdkit (slow to import) only where molecules are parsed or built
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
            # optional: only the UniMol method needs it
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
        installed = version("unimol_tools")
    if installed != UNIMOL_TOOLS_VERSION:
        log.warning("unimol-tools %s installed; embeddings are pinned to %s", installed, UNIMOL_TOOLS_VERSION)
    return unimol_tools


def unimol_embedding(mols: Sequence[Any], settings: EmbedSettings, keys: Sequence[str] = ()) -> np.ndarray:
    """UniMol v1 CLS embeddings (n, 512) of the given structures (their own atoms and coordinates).

    The weights folder is checked first (ConfigError, never a download). Checkpoints written by Uni-Core hold an
    ``argparse.Namespace``; torch >= 2.6 refuses it under ``weights_only=True``, so it is allow-listed.
    """
    # torch only on the UniMol path
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
    # torch only on the UniMol path
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
