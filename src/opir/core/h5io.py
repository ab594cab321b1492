"""The one way OpIR writes HDF5.

Conventions (docs/formats.md):
- arrays with axes are NeXus NXdata groups: attributes ``NX_class="NXdata"``, ``signal`` and ``axes``; every axis
  dataset carries ``units`` (``1/cm``, ``V``, ``s``) and so does the signal when it has a unit;
- the root records provenance: the producing rule, the library version, a hash of the config slice the rule used,
  and the SHA-256 of every input file;
- one writer per file, and a file appears under its final name only once it is complete: it is written to a
  temporary sibling and renamed, so a killed job never leaves a file that looks finished.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import hashlib
import json
import os
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from opir import __version__

#: Units used across the project, by axis name.
AXIS_UNITS = {
    "wavenumber_cm1": "1/cm",
    "voltage_v": "V",
    "time_s": "s",
    "elapsed_s": "s",
    "current_ma": "mA",
}


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def config_hash(config_slice: Any) -> str:
    """Stable hash of a (JSON-serializable) config slice: key order does not matter."""
    text = json.dumps(config_slice, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def _expand_inputs(inputs: Iterable[str | os.PathLike]) -> list[Path]:
    files: list[Path] = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            files.extend(sorted(p for p in path.rglob("*") if p.is_file()))
        elif path.exists():
            files.append(path)
    return files


def inputs_digest(inputs: Iterable[str | os.PathLike]) -> dict[str, str]:
    """SHA-256 of every input file (folders are expanded to the files they hold)."""
    return {str(path): sha256_file(path) for path in _expand_inputs(inputs)}


def provenance(
    rule: str,
    config_slice: Any = None,
    inputs: Iterable[str | os.PathLike] = (),
    input_hashes: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """Root attributes that make every number in a file traceable.

    ``input_hashes`` may be given when the caller already hashed its inputs (ingest hashes every OPUS file
    anyway); otherwise the files named in ``inputs`` are hashed here.
    """
    hashes = dict(input_hashes) if input_hashes is not None else inputs_digest(inputs)
    return {
        "producer_rule": rule,
        "opir_version": __version__,
        "config_sha256": config_hash(config_slice),
        "config": json.dumps(config_slice, sort_keys=True, default=str),
        "input_sha256": json.dumps(hashes, sort_keys=True),
        "created_utc": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
    }


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary sibling of ``path``; rename it to ``path`` only if the block completes."""
    final = Path(path)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.with_name(f".{final.name}.tmp-{os.getpid()}")
    try:
        yield tmp
        with open(tmp, "rb+") as handle:  # the data must be on disk before the name says it is complete
            os.fsync(handle.fileno())
        os.replace(tmp, final)
    finally:
        if tmp.exists():
            tmp.unlink()


@contextlib.contextmanager
def atomic_h5(path: str | os.PathLike, attrs: Mapping[str, Any] | None = None) -> Iterator[h5py.File]:
    """Open a new HDF5 file for writing under a temporary name; it is renamed into place when the block ends.

    ``attrs`` (usually :func:`provenance`) go on the root group.
    """
    with atomic_path(path) as tmp:
        with h5py.File(tmp, "w", track_order=True) as handle:
            for key, value in (attrs or {}).items():
                handle.attrs[key] = value
            yield handle


def write_axis(group: h5py.Group, name: str, values: Any, units: str | None = None, **kwargs) -> h5py.Dataset:
    units = units or AXIS_UNITS.get(name)
    data = np.asarray(values)
    if data.dtype.kind == "U":
        data = data.astype(h5py.string_dtype())
    dataset = group.create_dataset(name, data=data, **kwargs)
    if units:
        dataset.attrs["units"] = units
    return dataset


def write_nxdata(
    parent: h5py.Group,
    name: str,
    signal_name: str,
    signal: Any,
    axes: Mapping[str, Any] | list[tuple[str, Any]] | list[str],
    units: str | None = None,
    long_name: str | None = None,
    **dataset_kwargs,
) -> h5py.Group:
    """Write an NXdata group ``name`` holding ``signal`` and its axes.

    ``axes`` lists one entry per signal dimension, in order. An entry is either ``(axis_name, values)``,
    ``(axis_name, values, units)``, or ``"."`` for a dimension without a coordinate (NeXus' placeholder).
    Axis units default to :data:`AXIS_UNITS`. ``dataset_kwargs`` (chunks, compression) apply to the signal.
    """
    items = list(axes.items()) if isinstance(axes, Mapping) else list(axes)
    data = np.asarray(signal) if not isinstance(signal, h5py.Dataset) else signal
    if len(items) != np.ndim(data):
        raise ValueError(f"NXdata {name!r}: {len(items)} axes for a {np.ndim(data)}-d signal")
    group = parent.create_group(name)
    group.attrs["NX_class"] = "NXdata"
    group.attrs["signal"] = signal_name
    axis_names = []
    for item in items:
        if isinstance(item, str):
            axis_names.append(item)
            continue
        axis_name, values, *rest = item
        write_axis(group, axis_name, values, rest[0] if rest else None)
        axis_names.append(axis_name)
    group.attrs["axes"] = np.array(axis_names, dtype=h5py.string_dtype())
    dataset = group.create_dataset(signal_name, data=data, **dataset_kwargs)
    if units:
        dataset.attrs["units"] = units
    if long_name:
        dataset.attrs["long_name"] = long_name
    return group


def read_strings(dataset: h5py.Dataset) -> np.ndarray:
    """Variable-length strings as a numpy array of ``str``."""
    return np.asarray(dataset.asstr()[()], dtype=str)


def read_provenance(path: str | os.PathLike) -> dict[str, Any]:
    with h5py.File(path, "r") as handle:
        attrs = dict(handle.attrs)
    for key in ("config", "input_sha256"):
        if key in attrs:
            attrs[key] = json.loads(attrs[key])
    return attrs
