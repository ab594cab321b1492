"""Reading one Bruker OPUS file with ``brukeropus``: the spectral block, its axis, DAT/TIM time stamp and instrument
parameters; every failure is an :class:`~opir.core.errors.OpusReadError` naming the file and the reason, so a run
never silently loses a spectrum."""

from __future__ import annotations

import datetime as dt
import hashlib
import re
import struct
import zoneinfo
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from opir.core.errors import DataError, OpusReadError

OPUS_MAGIC = b"\n\n\xfe\xfe"

#: OPUS block names as users know them (the OPUS program's names) -> brukeropus attribute keys.
BLOCK_ALIASES = {
    "AB": "a",
    "TR": "t",
    "REFL": "r",
    "ScSm": "sm",
    "ScRf": "rf",
    "KM": "km",
    "ATR": "atr",
}
#: brukeropus keys of spectral (wavenumber-axis) blocks that ingest accepts.
SPECTRAL_BLOCKS = ("a", "t", "r", "sm", "rf", "km", "atr", "logr", "pas", "e", "ra")

#: Instrument parameters copied from the OPUS file into the ingest file (when present).
INSTRUMENT_KEYS = ("ins", "snm", "src", "bms", "dtc", "apt", "res", "nss", "lwn", "hfw", "lfw", "apf", "zff", "exp")


# --------------------------------------------------------------------------------------------------------------
# One OPUS file
# --------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class OpusSpectrum:
    """One spectral block of one OPUS file, x as the file has it (usually descending wavenumber)."""

    path: str
    block: str
    wavenumber_cm1: np.ndarray
    values: np.ndarray
    acquired_utc: dt.datetime | None
    sha256: str
    instrument: dict[str, Any] = field(default_factory=dict)


#: Every accepted block name, lower-cased -> brukeropus key: users type 'ab', 'AB' or 'Ab' alike.
_BLOCK_NAMES = {**{key: key for key in SPECTRAL_BLOCKS}, **{name.lower(): key for name, key in BLOCK_ALIASES.items()}}


def block_key(block: str) -> str:
    """Accept OPUS names (AB, ScSm, ...) and brukeropus keys (a, sm, ...), in any letter case."""
    key = _BLOCK_NAMES.get(str(block).strip().lower())
    if key is None:
        raise OpusReadError(
            f"block {block!r} is not a spectral block; use one of {', '.join([*BLOCK_ALIASES, *SPECTRAL_BLOCKS])} "
            "(any letter case)"
        )
    return key


_TIM = re.compile(
    r"^\s*(?P<h>\d{1,2}):(?P<m>\d{2}):(?P<s>\d{2})(?:\.(?P<frac>\d{1,6}))?"
    r"\s*(?:\(\s*(?:GMT|UTC)\s*(?P<sign>[+-])?\s*(?P<oh>\d{1,2})?(?::?(?P<om>\d{2}))?\s*\))?\s*$"
)
_DAT = re.compile(r"^\s*(?P<d>\d{1,2})[/.](?P<mo>\d{1,2})[/.](?P<y>\d{4})\s*$")


def parse_time_zone(text: str | None) -> dt.tzinfo | None:
    """'UTC', an IANA name ('Europe/Paris') or a fixed offset ('+01:00', '-4'); None stays None."""
    if text is None:
        return None
    match = re.fullmatch(r"\s*([+-])(\d{1,2})(?::?(\d{2}))?\s*", str(text))
    if match:
        sign = -1 if match[1] == "-" else 1
        return dt.timezone(sign * dt.timedelta(hours=int(match[2]), minutes=int(match[3] or 0)))
    try:
        return zoneinfo.ZoneInfo(str(text))
    except (zoneinfo.ZoneInfoNotFoundError, ValueError) as exc:
        raise DataError(f"unknown time zone {text!r}; expected 'UTC', an IANA name or an offset like '+01:00'") from exc


def parse_opus_datetime(dat: str, tim: str, default_zone: dt.tzinfo | None = None) -> dt.datetime:
    """OPUS DAT ('dd/mm/yyyy') + TIM ('HH:MM:SS.mmm (GMT+1)') -> an aware datetime in UTC.

    'GMT+1' is the instrument's local time being one hour ahead of UTC, so UTC = local - 1 h.
    """
    date_match, time_match = _DAT.match(str(dat)), _TIM.match(str(tim))
    if not date_match or not time_match:
        raise OpusReadError(f"cannot parse DAT {dat!r} / TIM {tim!r}; expected 'dd/mm/yyyy' and 'HH:MM:SS.mmm (GMT+1)'")
    frac = (time_match["frac"] or "0").ljust(6, "0")
    try:
        naive = dt.datetime(
            int(date_match["y"]),
            int(date_match["mo"]),
            int(date_match["d"]),
            int(time_match["h"]),
            int(time_match["m"]),
            int(time_match["s"]),
            int(frac),
        )
    except ValueError as exc:
        raise OpusReadError(f"DAT {dat!r} / TIM {tim!r} is not a valid date and time: {exc}") from exc
    if "(" in str(tim):
        sign = -1 if time_match["sign"] == "-" else 1
        offset = dt.timedelta(hours=int(time_match["oh"] or 0), minutes=int(time_match["om"] or 0))
        zone: dt.tzinfo = dt.timezone(sign * offset)
    elif default_zone is not None:
        zone = default_zone
    else:
        raise OpusReadError(f"TIM {tim!r} carries no time zone and ingest.opus_time_zone is not set")
    return naive.replace(tzinfo=zone).astimezone(dt.UTC)


def _describe_blocks(opus: Any) -> str:
    keys = [f"{key} ({getattr(opus, key).label})" for key in getattr(opus, "all_data_keys", [])]
    broken = len(getattr(opus, "parse_error_blocks", []) or []) + len(getattr(opus, "unmatched_data_blocks", []) or [])
    text = ", ".join(keys) if keys else "none"
    return text + (f"; {broken} block(s) unreadable or without parameters" if broken else "")


def _block_fast(raw: bytes, key: str) -> Any:
    """The wanted data block via brukeropus' own directory, block and pairing code, parsing only the blocks of
    that spectrum type (an OPUS file from a spectrometer holds 6-25 blocks; operando runs have thousands of
    files). Returns a brukeropus ``Data`` or None; anything unusual is left to the full reader."""
    # off the start-up path: the workflow imports this package while it parses the rules
    from brukeropus.file.block import FileBlock, pair_data_and_status_blocks
    from brukeropus.file.data import Data
    from brukeropus.file.parse import parse_directory, parse_header

    _, start, max_blocks, _ = parse_header(raw)
    if not (0 < start < len(raw)) or not (0 < max_blocks <= 4096):
        return None
    blocks = [
        FileBlock(raw, kind, size, offset)
        for kind, size, offset in parse_directory(raw[start : start + 12 * max_blocks])
    ]
    data = [b for b in blocks if b.is_data() and b.get_data_key() == key]
    if not data:
        return None
    kinds = {(b.type[:2], b.type[3:]) for b in data}
    status = [b for b in blocks if b.is_data_status() and (b.type[:2], b.type[3:]) in kinds]
    for candidate in (*data, *status):
        candidate.parse()
        if candidate.parse_error:
            return None
    matches = pair_data_and_status_blocks([*data, *status])
    if not matches:
        return None
    return Data(matches[0][0], matches[0][1], key=key, vel=0)


HEADER_BYTES = 24
#: Directory entries a sane header may announce (OPUS reserves 40; more would be a corrupted header).
MAX_DIRECTORY_ENTRIES = 4096


def expected_size(raw: bytes) -> int:
    """The byte count an OPUS file must have: the end of its directory and of the furthest block it lists.

    Real files end exactly at their last block (checked on the 12 real files of ../shared/realdata), so a shorter
    file was cut off in transfer or by a full disk. Raises ValueError for a header no file could have.
    """
    if len(raw) < HEADER_BYTES:
        return HEADER_BYTES
    start, max_entries = struct.unpack_from("<ii", raw, 12)
    if start < HEADER_BYTES or not (0 < max_entries <= MAX_DIRECTORY_ENTRIES):
        raise ValueError(f"directory at byte {start} with {max_entries} entries")
    end = start + 12 * max_entries
    # entries are read as far as the file goes; like OPUS readers, the first with offset 0 ends the list
    for entry in range(max_entries):
        at = start + 12 * entry
        if at + 12 > len(raw):
            break
        _, words, offset = struct.unpack_from("<iii", raw, at)
        if offset <= 0:
            break
        end = max(end, offset + 4 * max(words, 0))
    return end


def _check_complete(raw: bytes, path: Path) -> None:
    """Truncation is the commonest damage (a copy interrupted, a disk full): name it, with the bytes missing."""
    try:
        expected = expected_size(raw)
    except ValueError as exc:
        raise OpusReadError(f"{path}: corrupted OPUS header ({exc})") from exc
    if len(raw) < expected:
        raise OpusReadError(f"{path}: truncated OPUS file ({len(raw)} bytes present, {expected} expected)")


def read_opus_spectrum(
    path: str | Path, block: str = "AB", default_zone: dt.tzinfo | None = None, instrument: bool = False
) -> OpusSpectrum:
    """Read one spectral block of one OPUS file; every failure is an :class:`OpusReadError` naming the file.

    ``instrument=True`` also collects the instrument parameters (a full read of every block; ingest does it for
    a run's first file only). Without it, only the blocks of the wanted spectrum type are parsed, and a file
    where that finds nothing goes through the full reader, whose view of the file names what is there.
    """
    from brukeropus import read_opus  # imported here: only ingest needs it

    path = Path(path)
    try:
        key = block_key(block)
    except OpusReadError as exc:
        raise OpusReadError(f"{path}: {exc}") from exc
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise OpusReadError(f"{path}: cannot read file: {exc.strerror or exc}") from exc
    if not raw:
        raise OpusReadError(f"{path}: empty file (0 bytes)")
    if raw[:4] != OPUS_MAGIC:
        raise OpusReadError(f"{path}: not an OPUS file (first bytes {raw[:4].hex()}, expected 0a0afefe)")
    _check_complete(raw, path)
    try:
        data = None if instrument else _block_fast(raw, key)
        opus = None
        if data is None:
            opus = read_opus(str(path))
            data = getattr(opus, key) if key in opus.all_data_keys else None
        if data is None:
            wanted = next((name for name, k in BLOCK_ALIASES.items() if k == key), key)
            raise OpusReadError(
                f"{path}: no {wanted} block ({key!r}) with its data-status parameters; blocks present: "
                f"{_describe_blocks(opus)}"
            )
        npt, fxv, lxv = int(data.params.npt), float(data.params.fxv), float(data.params.lxv)
        values = np.asarray(data.y, dtype=np.float64)
        dxu = str(getattr(data.params, "dxu", "WN")) if "dxu" in data.params.keys() else "WN"
        dat = data.params.dat if "dat" in data.params.keys() else None
        tim = data.params.tim if "tim" in data.params.keys() else None
        parameters = {}
        if opus is not None and instrument:
            parameters = {k: _plain(opus.params[k]) for k in INSTRUMENT_KEYS if k in opus.params.keys()}
    except OpusReadError:
        raise
    except Exception as exc:  # brukeropus raises many kinds (struct.error, IndexError, ValueError, ...)
        raise OpusReadError(f"{path}: corrupted OPUS structure ({type(exc).__name__}: {exc})") from exc
    if npt < 2:
        raise OpusReadError(f"{path}: block {key!r} has NPT={npt}; at least 2 points are needed")
    if values.shape != (npt,):
        raise OpusReadError(f"{path}: block {key!r} holds {values.size} values but NPT says {npt} (truncated file?)")
    if not (np.isfinite(fxv) and np.isfinite(lxv)) or fxv == lxv:
        raise OpusReadError(f"{path}: block {key!r} has an unusable axis FXV={fxv}, LXV={lxv}")
    if dxu != "WN":
        raise OpusReadError(f"{path}: block {key!r} x unit DXU={dxu!r}; ingest expects wavenumbers (WN)")
    if not np.all(np.isfinite(values)):
        bad = int(np.count_nonzero(~np.isfinite(values)))
        raise OpusReadError(f"{path}: block {key!r} has {bad} non-finite value(s)")
    acquired = None
    if dat is not None and tim is not None:
        try:
            acquired = parse_opus_datetime(dat, tim, default_zone)
        except OpusReadError as exc:
            raise OpusReadError(f"{path}: block {key!r}: {exc}") from exc
    return OpusSpectrum(
        path=str(path),
        block=key,
        wavenumber_cm1=np.linspace(fxv, lxv, npt),
        values=values,
        acquired_utc=acquired,
        sha256=hashlib.sha256(raw).hexdigest(),
        instrument=parameters,
    )


def _plain(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, str | int | float | bool):
        return value
    return str(value)
