"""The mixture-embedding file of the embed stage (``results/embed/mixture_{variant}.h5``): one embedding per system,
and the molecules and method it was made with."""

from __future__ import annotations

import os
from typing import Any

import h5py
import numpy as np

from opir.core.errors import DataError
from opir.core.h5io import read_strings


def read_mixture_embeddings(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """system_id -> mixture embedding (as stored); a missing dataset or a shape that does not match the system ids is
    a DataError naming the file."""
    with h5py.File(path, "r") as handle:
        for key in ("system_id", "mixture_embedding"):
            if key not in handle:
                raise DataError(f"{path}: dataset '{key}' is missing (docs/formats.md, mixture embeddings)")
        systems = read_strings(handle["system_id"])
        embedding = handle["mixture_embedding"][()]
    if embedding.ndim != 2 or embedding.shape[0] != systems.size:
        raise DataError(f"{path}: mixture_embedding {embedding.shape} does not match {systems.size} system ids")
    return {str(system): embedding[i] for i, system in enumerate(systems)}


def read_molecule_embeddings(path: str | os.PathLike) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """The file's attributes (variant, method, settings) and its ``molecules`` group: name, smiles, role and the
    embedding of every molecule, so a recipe outside the systems sheet can be embedded the same way."""
    with h5py.File(path, "r") as handle:
        attrs = dict(handle.attrs)
        if "molecules" not in handle:
            raise DataError(f"{path}: no 'molecules' group; re-run the embed stage")
        molecules = {key: read_strings(handle[f"molecules/{key}"]) for key in ("name", "smiles", "role")}
        molecules["embedding"] = handle["molecules/embedding"][()]
    return attrs, molecules
