"""Bruker OPUS files: the binary layout and a writer (reading: :mod:`opir.formats.opus_reader`, through
the independent ``brukeropus`` reader).

Layout (little-endian; docs/formats.md "Raw operando runs and OPUS files"):

- a 24-byte header: magic ``0A 0A FE FE``, float64 program version, int32 offset of the directory (24), int32
  maximum number of directory entries (40), int32 number of blocks used;
- the directory: ``max`` entries of three int32 (block type, size in 4-byte words, offset in bytes); it lists
  itself first;
- blocks: parameter blocks (``KEY\\0``, int16 type, int16 size in 16-bit words, value; ended by ``END``) and data
  blocks (float32 y values; x is implicit, ``linspace(FXV, LXV, NPT)``).

A block type packs six codes ``c0 | c1 << 2 | c2 << 4 | c3 << 10 | c4 << 17 | c5 << 19``: c0 complex/amplitude
(3 = amplitude), c1 channel (1 sample, 2 reference, 3 ratioed), c2 block kind (0 data, 1 data status, 2
instrument, 3 acquisition, 4 FT, 6 optics, 10 sample origin), c3 spectrum kind (1 single channel, 4 absorbance,
5 transmittance, 13 directory).

Only numpy and struct are used: writing thousands of files must be fast and deterministic (no clock, no host
name, no random number enters a file unless the caller passes it).
"""

from __future__ import annotations

import datetime as _dt
import os
import struct
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from opir.core.errors import DataError

MAGIC = b"\x0a\x0a\xfe\xfe"
#: OPUS program version written in the header (the value real OPUS 7-8 files carry).
OPUS_VERSION = 920622.0
DIRECTORY_OFFSET = 24
#: Directory entries reserved; 40 is what OPUS writes and what brukeropusreader assumes (it reads 24..504).
MAX_DIRECTORY_ENTRIES = 40
DATA_START = DIRECTORY_OFFSET + 12 * MAX_DIRECTORY_ENTRIES

# Block kinds (c2) and spectrum kinds (c3).
DATA, DATA_STATUS, INSTRUMENT, ACQUISITION, FOURIER_TRANSFORM, OPTICS, SAMPLE_ORIGIN = 0, 1, 2, 3, 4, 6, 10
SINGLE_CHANNEL, ABSORBANCE, TRANSMITTANCE, DIRECTORY = 1, 4, 5, 13

#: The spectra the writer knows, by the name OPUS gives them: (c0 amplitude, c1 channel, c3 spectrum kind).
SPECTRUM_BLOCKS: dict[str, tuple[int, int, int]] = {
    "AB": (3, 3, ABSORBANCE),  # absorbance, ratioed; brukeropus key `a`
    "TR": (3, 3, TRANSMITTANCE),  # transmittance, ratioed; brukeropus key `t`
    "ScSm": (3, 1, SINGLE_CHANNEL),  # sample single channel; brukeropus key `sm`
    "ScRf": (3, 2, SINGLE_CHANNEL),  # reference single channel; brukeropus key `rf`
}

# Parameter value types.
PARAM_INT32, PARAM_FLOAT64, PARAM_STRING, PARAM_ENUM, PARAM_SENUM = 0, 1, 2, 3, 4
#: Keys OPUS stores as enumerations rather than free strings (DXU 'WN', PLF 'AB', ...).
ENUM_KEYS = frozenset({"DXU", "PLF", "APF", "PHZ", "AQM", "BMS", "SRC", "DTC", "CHN", "APT", "ZFF", "SPZ"})
#: Data-point format in the data-status block: 1 = float32.
DPF_FLOAT32 = 1


def block_type_code(c0: int, c1: int, c2: int, c3: int, c4: int = 0, c5: int = 0) -> int:
    """Pack the six block-type codes into the int32 of a directory entry."""
    return c0 | (c1 << 2) | (c2 << 4) | (c3 << 10) | (c4 << 17) | (c5 << 19)


def _pad4(raw: bytes) -> bytes:
    """NUL-terminate and pad to a multiple of 4 bytes (so every value keeps the block 4-byte aligned)."""
    size = (len(raw) // 4 + 1) * 4
    return raw.ljust(size, b"\x00")


def encode_parameters(items: Iterable[tuple[str, Any]]) -> bytes:
    """A parameter block: ``KEY\\0``, int16 type, int16 size (16-bit words), value, ..., ``END``.

    ``int`` becomes int32, ``float`` float64, ``str`` a NUL-padded string (an enumeration for :data:`ENUM_KEYS`).
    """
    out = bytearray()
    for key, value in items:
        if len(key) != 3 or not key.isascii() or not key.isalnum():
            raise ValueError(f"OPUS parameter key {key!r}: must be three ASCII letters or digits")
        if isinstance(value, bool | np.bool_):
            raise ValueError(f"OPUS parameter {key}: booleans have no OPUS type; pass 0/1")
        if isinstance(value, int | np.integer):
            kind, raw = PARAM_INT32, struct.pack("<i", int(value))
        elif isinstance(value, float | np.floating):
            kind, raw = PARAM_FLOAT64, struct.pack("<d", float(value))
        elif isinstance(value, str):
            kind = PARAM_ENUM if key.upper() in ENUM_KEYS else PARAM_STRING
            raw = _pad4(value.encode("latin-1"))
        else:
            raise ValueError(f"OPUS parameter {key}: unsupported value {value!r} ({type(value).__name__})")
        out += key.upper().encode("ascii") + b"\x00" + struct.pack("<hh", kind, len(raw) // 2) + raw
    out += b"END\x00" + struct.pack("<hh", 0, 0)
    return bytes(out)


def format_opus_time(acquired: _dt.datetime, utc_offset_hours: float = 0.0) -> tuple[str, str]:
    """DAT and TIM as OPUS writes them: local time 'dd/mm/yyyy' and 'HH:MM:SS.mmm (GMT+h)'.

    A timezone-aware ``acquired`` is converted to the offset; a naive one is taken as already local.
    """
    offset = _dt.timedelta(hours=utc_offset_hours)
    if acquired.tzinfo is not None:
        acquired = acquired.astimezone(_dt.timezone(offset)).replace(tzinfo=None)
    hours = int(utc_offset_hours) if float(utc_offset_hours).is_integer() else utc_offset_hours
    zone = f"GMT{'+' if utc_offset_hours >= 0 else '-'}{abs(hours)}"
    millis = acquired.microsecond // 1000
    return acquired.strftime("%d/%m/%Y"), f"{acquired.strftime('%H:%M:%S')}.{millis:03d} ({zone})"


def data_status_parameters(
    y: np.ndarray,
    first_x: float,
    last_x: float,
    acquired: _dt.datetime,
    utc_offset_hours: float = 0.0,
    x_units: str = "WN",
) -> list[tuple[str, Any]]:
    """The data-status block of a spectrum, with the keys (and order) of real OPUS files."""
    date, time = format_opus_time(acquired, utc_offset_hours)
    return [
        ("DPF", DPF_FLOAT32),
        ("NPT", int(y.shape[-1])),  # points per spectrum, also for a series (n, NPT)
        ("FXV", float(first_x)),
        ("LXV", float(last_x)),
        ("CSF", 1.0),  # y is stored unscaled, so readers multiply by 1
        ("MXY", float(y.max())),
        ("MNY", float(y.min())),
        ("DAT", date),
        ("TIM", time),
        ("DXU", x_units),
    ]


def _ordered_names(spectra: Mapping[str, Any]) -> list[str]:
    """Single channels first, then the ratioed spectra: the order real files have."""
    first = [n for n in ("ScSm", "ScRf") if n in spectra]
    return [*first, *[n for n in spectra if n not in ("ScSm", "ScRf")]]


def _checked(name: str, values: Any, ndim: int, what: str, writer: str) -> np.ndarray:
    """``values`` as little-endian float32 of ``ndim`` dimensions, finite, at least 2 points per spectrum."""
    if name not in SPECTRUM_BLOCKS:
        raise ValueError(f"{writer}: unknown spectrum block {name!r}; known: {', '.join(SPECTRUM_BLOCKS)}")
    y = np.ascontiguousarray(values, dtype="<f4")
    if y.ndim != ndim or y.shape[-1] < 2 or y.size == 0:
        raise ValueError(f"{writer}: spectrum {name!r} must be {what} with at least 2 points, got shape {y.shape}")
    if not np.all(np.isfinite(y)):
        raise ValueError(f"{writer}: spectrum {name!r} holds NaN or infinite values")
    return y


def _parameter_blocks(
    sample_name: str,
    sample_origin: Mapping[str, Any] | None,
    instrument: Mapping[str, Any] | None,
    acquisition: Mapping[str, Any] | None,
) -> list[tuple[int, bytes]]:
    """The instrument and acquisition blocks (when given) and the sample-origin block, after the data blocks."""
    blocks: list[tuple[int, bytes]] = []
    if instrument:
        blocks.append((block_type_code(0, 0, INSTRUMENT, 0), encode_parameters(instrument.items())))
    if acquisition:
        blocks.append((block_type_code(0, 0, ACQUISITION, 0), encode_parameters(acquisition.items())))
    origin = {"SNM": sample_name, **(sample_origin or {})}
    blocks.append((block_type_code(0, 0, SAMPLE_ORIGIN, 0), encode_parameters(origin.items())))
    return blocks


def _assemble(blocks: list[tuple[int, bytes]], writer: str) -> bytes:
    """Header, directory (listing itself first) and the blocks in directory order."""
    n_entries = len(blocks) + 1
    if n_entries > MAX_DIRECTORY_ENTRIES:
        raise ValueError(f"{writer}: {n_entries} blocks exceed the {MAX_DIRECTORY_ENTRIES} directory entries")
    directory = [(block_type_code(0, 0, 0, DIRECTORY), 3 * MAX_DIRECTORY_ENTRIES, DIRECTORY_OFFSET)]
    offset = DATA_START
    for type_code, payload in blocks:
        if len(payload) // 4 > 2**31 - 1:  # the directory counts 4-byte words in an int32
            raise ValueError(f"{writer}: a block of {len(payload)} bytes is too large for an OPUS directory")
        directory.append((type_code, len(payload) // 4, offset))
        offset += len(payload)
    header = MAGIC + struct.pack("<diii", OPUS_VERSION, DIRECTORY_OFFSET, MAX_DIRECTORY_ENTRIES, n_entries)
    table = b"".join(struct.pack("<iii", *entry) for entry in directory)
    table = table.ljust(12 * MAX_DIRECTORY_ENTRIES, b"\x00")
    return b"".join([header, table, *(payload for _, payload in blocks)])


def opus_bytes(
    spectra: Mapping[str, Any],
    *,
    first_x_cm1: float,
    last_x_cm1: float,
    acquired: _dt.datetime,
    sample_name: str,
    utc_offset_hours: float = 0.0,
    sample_origin: Mapping[str, Any] | None = None,
    instrument: Mapping[str, Any] | None = None,
    acquisition: Mapping[str, Any] | None = None,
) -> bytes:
    """The bytes of an OPUS file holding ``spectra`` (name in :data:`SPECTRUM_BLOCKS` -> y values on the x axis
    ``linspace(first_x_cm1, last_x_cm1, npt)``; OPUS axes usually descend), with their data-status blocks, a
    sample-origin block (SNM = ``sample_name``) and, when given, instrument and acquisition parameter blocks.

    Extra parameters are ``{KEY: value}`` with three-letter keys (see :func:`encode_parameters`).
    """
    if not spectra:
        raise ValueError("write_opus: no spectra given; expected e.g. {'AB': absorbance}")
    blocks: list[tuple[int, bytes]] = []
    for name in _ordered_names(spectra):
        y = _checked(name, spectra[name], 1, "1-d", "write_opus")
        c0, c1, c3 = SPECTRUM_BLOCKS[name]
        # data block then its status block, the order real files and brukeropusreader expect
        blocks.append((block_type_code(c0, c1, DATA, c3), y.tobytes()))
        status = data_status_parameters(y, first_x_cm1, last_x_cm1, acquired, utc_offset_hours)
        blocks.append((block_type_code(c0, c1, DATA_STATUS, c3), encode_parameters(status)))
    blocks += _parameter_blocks(sample_name, sample_origin, instrument, acquisition)
    return _assemble(blocks, "write_opus")


def write_opus(path: str | os.PathLike, spectra: Mapping[str, Any], **params: Any) -> None:
    """Write an OPUS file; see :func:`opus_bytes` for ``spectra`` and the keyword parameters.

    Example: ``write_opus("run_00000.0", {"AB": absorbance, "ScSm": single_channel}, first_x_cm1=4000.0,
    last_x_cm1=600.0, acquired=datetime(...), sample_name="cu_dmc run01 #0")``.
    """
    _write_payload(path, opus_bytes, spectra, params)


# --------------------------------------------------------------------------------------------------------------
# Time-resolved series: one file, one data-series block per spectrum type
# --------------------------------------------------------------------------------------------------------------
#: c5 of a data-series block (and of its data-status block): OPUS' "3D" time-resolved or repeated measurement.
SERIES = 2
#: The series block's header: int32 format version (0), spectra announced, byte offset of the first spectrum,
#: bytes per spectrum, bytes of the record after each spectrum, entries of the store table (int32 pairs: the first
#: and last spectrum number of each stored stretch; OPUS may skip spectra). brukeropus' ``parse_data_series``.
SERIES_HEADER = struct.Struct("<6i")
#: The record after each spectrum's float32 values, packed, 152 bytes: scan counts, the spectrum number (NSN),
#: folding limits, its own axis and y range (NPT, FXV, LXV, MNY, MXY, CSF), interferogram peaks, and SRT / ERT,
#: the start and end of its acquisition in seconds after the series' DAT/TIM.
SERIES_INFO = np.dtype(
    [
        *[(key, "<i4") for key in ("NSS", "NSR", "NSN", "NPT", "GFW", "GBW", "BFW", "BBW")],
        *[(key, "<f8") for key in ("HFL", "LFL", "HFF", "LFF")],
        ("filter_size", "<i4"),
        ("filter_type", "<i4"),
        *[(key, "<f8") for key in ("FXV", "LXV", "MNY", "MXY", "CSF", "PKA", "PRA")],
        ("PKL", "<i4"),
        ("PRL", "<i4"),
        ("SRT", "<f8"),
        ("ERT", "<f8"),
    ]
)


def series_offsets_s(acquired: Sequence[_dt.datetime]) -> tuple[_dt.datetime, np.ndarray]:
    """The series' DAT/TIM (the first time, cut to the millisecond as TIM writes it) and each spectrum's SRT, in
    s after it, so that DAT/TIM + SRT gives every time back to the microsecond."""
    if len(acquired) == 0:
        raise ValueError("write_opus_series: no acquisition times given")
    first = acquired[0]
    start = first.replace(microsecond=first.microsecond // 1000 * 1000)
    try:
        offsets = np.array([(stamp - start).total_seconds() for stamp in acquired])
    except TypeError as exc:  # naive and aware times mixed
        raise ValueError(f"write_opus_series: acquisition times must all be aware or all naive ({exc})") from exc
    if np.any(offsets < 0):
        late = int(np.argmax(offsets < 0))
        raise ValueError(f"write_opus_series: acquired[{late}] ({acquired[late]}) is before acquired[0] ({first})")
    return start, offsets


def series_block(y: np.ndarray, first_x: float, last_x: float, start_s: np.ndarray, scans: int = 0) -> bytes:
    """A data-series block: header, one store-table entry (spectra 1..n, none skipped), then per spectrum its
    float32 values and its :data:`SERIES_INFO` record (ERT = SRT: the scan duration is not known here)."""
    n, npt = y.shape
    record = np.zeros(n, dtype=np.dtype([("y", "<f4", (npt,)), ("info", SERIES_INFO)]))
    record["y"] = y
    info = record["info"]
    info["NSS"], info["NSN"], info["NPT"] = scans, np.arange(1, n + 1), npt
    info["FXV"], info["LXV"], info["CSF"] = first_x, last_x, 1.0
    info["MNY"], info["MXY"] = y.min(axis=1), y.max(axis=1)
    info["SRT"], info["ERT"] = start_s, start_s
    store = [(1, n)]
    offset = SERIES_HEADER.size + 8 * len(store)
    header = SERIES_HEADER.pack(0, n, offset, 4 * npt, SERIES_INFO.itemsize, len(store))
    return header + b"".join(struct.pack("<ii", *entry) for entry in store) + record.tobytes()


def opus_series_bytes(
    spectra: Mapping[str, Any],
    *,
    first_x_cm1: float,
    last_x_cm1: float,
    acquired: Sequence[_dt.datetime],
    sample_name: str,
    utc_offset_hours: float = 0.0,
    sample_origin: Mapping[str, Any] | None = None,
    instrument: Mapping[str, Any] | None = None,
    acquisition: Mapping[str, Any] | None = None,
) -> bytes:
    """The bytes of a time-resolved OPUS series file: ``spectra`` maps block names (:data:`SPECTRUM_BLOCKS`) to
    (n, npt) arrays, one row per spectrum, taken at ``acquired`` (n times). Each becomes a data-series block and
    its data-status block (DAT/TIM = the first time; NPT, FXV, LXV shared by all rows), followed by the parameter
    blocks of :func:`opus_bytes`. Each row's time is its record's SRT after DAT/TIM (:func:`series_offsets_s`).
    """
    if not spectra:
        raise ValueError("write_opus_series: no spectra given; expected e.g. {'AB': absorbance (n, npt)}")
    start, offsets = series_offsets_s(acquired)
    scans = acquisition.get("NSS", 0) if acquisition else 0
    scans = int(scans) if isinstance(scans, int | np.integer) else 0  # NSS of each record: the scans averaged
    blocks: list[tuple[int, bytes]] = []
    for name in _ordered_names(spectra):
        y = _checked(name, spectra[name], 2, "2-d (spectra, points)", "write_opus_series")
        if y.shape[0] != offsets.size:
            raise ValueError(
                f"write_opus_series: spectrum {name!r} has {y.shape[0]} rows but {offsets.size} acquisition times"
            )
        c0, c1, c3 = SPECTRUM_BLOCKS[name]
        block = series_block(y, first_x_cm1, last_x_cm1, offsets, scans)
        blocks.append((block_type_code(c0, c1, DATA, c3, 0, SERIES), block))
        status = data_status_parameters(y, first_x_cm1, last_x_cm1, start, utc_offset_hours)
        blocks.append((block_type_code(c0, c1, DATA_STATUS, c3, 0, SERIES), encode_parameters(status)))
    blocks += _parameter_blocks(sample_name, sample_origin, instrument, acquisition)
    return _assemble(blocks, "write_opus_series")


def write_opus_series(path: str | os.PathLike, spectra: Mapping[str, Any], **params: Any) -> None:
    """Write a time-resolved OPUS series file; see :func:`opus_series_bytes`.

    Example: ``write_opus_series("run01.0", {"AB": absorbance_n_by_npt}, first_x_cm1=4000.0, last_x_cm1=600.0,
    acquired=[datetime(...), ...], sample_name="cu_dmc run01")``.
    """
    _write_payload(path, opus_series_bytes, spectra, params)


def _write_payload(path: str | os.PathLike, encode, spectra: Mapping[str, Any], params: dict[str, Any]) -> None:
    """``encode(spectra, **params)`` written to ``path``; a ValueError about the input becomes a DataError naming the
    file."""
    path = Path(path)
    try:
        payload = encode(spectra, **params)
    except ValueError as err:
        raise DataError(f"{path}: {err}") from err
    with open(path, "wb") as handle:
        handle.write(payload)


def wavenumber_axis_cm1(first_x_cm1: float, last_x_cm1: float, n_points: int) -> np.ndarray:
    """The x values readers reconstruct from FXV, LXV and NPT (float64, in file order)."""
    return np.linspace(first_x_cm1, last_x_cm1, n_points)
