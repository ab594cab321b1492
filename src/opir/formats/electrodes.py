"""The electrode file of the dataset stage (``results/dataset/electrodes.h5``): the descriptors of every system's
working electrode, as the systems sheet gives them and in the numeric form models read (docs/formats.md)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import h5py
import numpy as np

from opir.core.electrodes import DESCRIPTOR_COLUMNS, FEATURE_NAMES, ElectrodeDescriptors, descriptors_from_row
from opir.core.errors import DataError
from opir.core.h5io import atomic_h5, read_strings, write_axis, write_nxdata


def write_electrodes(
    path: str | os.PathLike,
    electrodes: Mapping[str, ElectrodeDescriptors],
    names: Mapping[str, str],
    attrs: Mapping[str, Any] | None = None,
) -> None:
    """``electrodes``: system_id -> descriptors; ``names``: system_id -> the sheet's working_electrode."""
    systems = list(electrodes)
    with atomic_h5(path, attrs) as handle:
        group = write_nxdata(
            handle, "electrodes", "features", np.stack([electrodes[s].features() for s in systems]),
            [("system_id", np.array(systems), ""), ("feature_names", np.array(FEATURE_NAMES), "")], units="1",
            long_name="electrode descriptors, numeric (opir.core.electrodes.FEATURE_NAMES)",
        )  # fmt: skip
        write_axis(group, "working_electrode", np.array([names[s] for s in systems]), units="")
        rows = [electrodes[s].as_row() for s in systems]
        for column in DESCRIPTOR_COLUMNS:
            values = np.array([row[column] for row in rows])
            write_axis(group, column, values if values.dtype.kind == "U" else values.astype(np.float64), units="")


def read_electrodes(path: str | os.PathLike) -> dict[str, tuple[str, ElectrodeDescriptors]]:
    """system_id -> (working_electrode, descriptors), checked as the sheet is; a missing dataset or a feature
    layout other than this version's is a DataError naming the file."""
    with h5py.File(path, "r") as handle:
        if "electrodes" not in handle:
            raise DataError(f"{path}: no 'electrodes' group (docs/formats.md, electrode descriptors)")
        group = handle["electrodes"]
        expected = ("system_id", "working_electrode", "feature_names", *DESCRIPTOR_COLUMNS)
        missing = [k for k in expected if k not in group]
        if missing:
            raise DataError(f"{path}: electrodes/{', '.join(missing)} missing; re-run the dataset stage")
        if tuple(read_strings(group["feature_names"])) != FEATURE_NAMES:
            raise DataError(f"{path}: descriptor features of another version of opir; re-run the dataset stage")
        systems = read_strings(group["system_id"])
        names = read_strings(group["working_electrode"])
        columns = {
            c: read_strings(group[c]) if group[c].dtype.kind in "OSU" else group[c][()] for c in DESCRIPTOR_COLUMNS
        }
    return {
        str(system): (str(names[i]), descriptors_from_row({c: columns[c][i] for c in columns}, f"{path}: {system}"))
        for i, system in enumerate(systems)
    }


def electrode_features(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """system_id -> descriptor features (:data:`opir.core.electrodes.FEATURE_NAMES` order)."""
    return {system: descriptors.features() for system, (_, descriptors) in read_electrodes(path).items()}
