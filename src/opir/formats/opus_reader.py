"""Reading one Bruker OPUS file with ``brukeropus``: the spectral block, its axis, DAT/TIM time stamp and instrument
parameters; every failure is an :class:`~opir.core.errors.OpusReadError` naming the file and the reason, so a run
never silently loses a spectrum.

A time-resolved series file (one file, a data-series block of many spectra) is read by :func:`read_opus_series`,
and :func:`read_opus_file` reads either kind; the series block's layout is checked here before any parser walks it
(a corrupted count or size must give an error, not a hang or a huge allocation)."""

from __future__ import annotations

import datetime as dt
import hashlib
import re
import struct
import zoneinfo
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from opir.core.errors import DataError, OpusReadError
from opir.formats.opus_writer import SERIES_HEADER, SERIES_INFO

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
    #: position in a series file's data-series block (0-based); None for a single-spectrum file
    series_index: int | None = None

    @property
    def source(self) -> str:
        """The file, or for a spectrum of a series file the file and its position: ``spectra/run01.0[12]``."""
        return self.path if self.series_index is None else f"{self.path}[{self.series_index}]"


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


def _file_blocks(raw: bytes) -> list[Any]:
    """The blocks the directory lists, as brukeropus ``FileBlock`` (unparsed); the header was checked before."""
    from brukeropus.file.block import FileBlock
    from brukeropus.file.parse import parse_directory, parse_header

    _, start, max_blocks, _ = parse_header(raw)
    return [
        FileBlock(raw, kind, size, offset)
        for kind, size, offset in parse_directory(raw[start : start + 12 * max_blocks])
    ]


def parameter_problem(block: bytes | memoryview) -> str | None:
    """What in a parameter block would send a reader backwards: a negative value size (brukeropus' loop would never
    end). Walks the block as readers do: ``KEY\\0``, int16 type, int16 size in 16-bit words, value, until ``END``."""
    at = 0
    while at + 8 <= len(block) and bytes(block[at : at + 3]) != b"END":
        (words,) = struct.unpack_from("<h", block, at + 6)
        if words < 0:
            return f"parameter {bytes(block[at : at + 3])!r} at byte {at} has a negative size ({words} words)"
        at += 8 + 2 * words
    return None


def _directory(raw: bytes) -> Iterator[tuple[int, tuple[int, ...], int, int]]:
    """(entry, six codes, byte offset, size in 4-byte words) of each directory entry up to the first with offset 0,
    as brukeropus and :func:`expected_size` walk it (its own decoding of the type, so a negative type means to
    this check what it means to brukeropus); the header was checked before."""
    from brukeropus.file.parse import get_block_type

    start, max_entries = struct.unpack_from("<ii", raw, 12)
    for entry in range(max_entries):
        if start + 12 * entry + 12 > len(raw):
            return
        type_int, words, offset = struct.unpack_from("<iii", raw, start + 12 * entry)
        if offset <= 0:
            return
        yield entry, get_block_type(type_int), offset, words


def _is_series(codes: tuple[int, ...]) -> bool:
    """A data-series block, as brukeropus' ``FileBlock.is_data_series`` tells it."""
    return codes[2] == 0 and codes[3] not in (0, 13) and codes[5] == 2


def _check_blocks(raw: bytes, path: Path) -> None:
    """Before brukeropus parses anything: the parameter and series blocks that would make it loop without end or
    allocate for billions of spectra are named here (the kinds as brukeropus tells them apart, without copying)."""
    view = memoryview(raw)
    for entry, codes, offset, words in _directory(raw):
        block = view[offset : offset + 4 * max(words, 0)]
        if _is_series(codes):
            try:
                series_layout(block)
            except ValueError as exc:
                raise OpusReadError(f"{path}: corrupted series block (directory entry {entry}: {exc})") from exc
        elif codes[2] > 0 or codes == (0, 0, 0, 0, 0, 1):  # a parameter block, for brukeropus
            problem = parameter_problem(block)
            if problem:
                raise OpusReadError(f"{path}: corrupted parameter block (directory entry {entry}: {problem})")


def _key_for(path: Path, block: str) -> str:
    try:
        return block_key(block)
    except OpusReadError as exc:
        raise OpusReadError(f"{path}: {exc}") from exc


def _load(path: Path) -> bytes:
    """The bytes of an OPUS file that is there, whole, and safe for brukeropus to walk."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise OpusReadError(f"{path}: cannot read file: {exc.strerror or exc}") from exc
    if not raw:
        raise OpusReadError(f"{path}: empty file (0 bytes)")
    if raw[:4] != OPUS_MAGIC:
        raise OpusReadError(f"{path}: not an OPUS file (first bytes {raw[:4].hex()}, expected 0a0afefe)")
    _check_complete(raw, path)
    _check_blocks(raw, path)
    return raw


def _check_axis(path: Path, key: str, fxv: float, lxv: float, dxu: str) -> None:
    if not (np.isfinite(fxv) and np.isfinite(lxv)) or fxv == lxv:
        raise OpusReadError(f"{path}: block {key!r} has an unusable axis FXV={fxv}, LXV={lxv}")
    if dxu != "WN":
        raise OpusReadError(f"{path}: block {key!r} x unit DXU={dxu!r}; ingest expects wavenumbers (WN)")


def _acquired(path: Path, key: str, dat: Any, tim: Any, default_zone: dt.tzinfo | None) -> dt.datetime | None:
    if dat is None or tim is None:
        return None
    try:
        return parse_opus_datetime(dat, tim, default_zone)
    except OpusReadError as exc:
        raise OpusReadError(f"{path}: block {key!r}: {exc}") from exc


def read_opus_spectrum(
    path: str | Path, block: str = "AB", default_zone: dt.tzinfo | None = None, instrument: bool = False
) -> OpusSpectrum:
    """Read one spectral block of one OPUS file; every failure is an :class:`OpusReadError` naming the file.

    ``instrument=True`` also collects the instrument parameters (a full read of every block; ingest does it for
    a run's first file only). Without it, only the blocks of the wanted spectrum type are parsed, and a file
    where that finds nothing goes through the full reader, whose view of the file names what is there. A series
    file is refused with a pointer to :func:`read_opus_file` (one spectrum of many is not what the caller meant).
    """
    path = Path(path)
    key = _key_for(path, block)
    return _single_spectrum(path, _load(path), key, default_zone, instrument)


def _single_spectrum(
    path: Path, raw: bytes, key: str, default_zone: dt.tzinfo | None, instrument: bool
) -> OpusSpectrum:
    from brukeropus import read_opus  # imported here: only ingest needs it

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
        if np.ndim(data.y) == 2:
            raise OpusReadError(
                f"{path}: block {key!r} is a time-resolved series of {len(data.y)} spectra; read it with "
                "read_opus_file or read_opus_series"
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
    _check_axis(path, key, fxv, lxv, dxu)
    if not np.all(np.isfinite(values)):
        bad = int(np.count_nonzero(~np.isfinite(values)))
        raise OpusReadError(f"{path}: block {key!r} has {bad} non-finite value(s)")
    return OpusSpectrum(
        path=str(path),
        block=key,
        wavenumber_cm1=np.linspace(fxv, lxv, npt),
        values=values,
        acquired_utc=_acquired(path, key, dat, tim, default_zone),
        sha256=hashlib.sha256(raw).hexdigest(),
        instrument=parameters,
    )


def _plain(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, str | int | float | bool):
        return value
    return str(value)


# --------------------------------------------------------------------------------------------------------------
# Time-resolved series files
# --------------------------------------------------------------------------------------------------------------
#: Spectra a series block may announce: far above any operando run, low enough that a corrupted count cannot make
#: a reader allocate for billions of spectra.
MAX_SERIES_SPECTRA = 1_000_000
#: An SRT beyond this many seconds after DAT/TIM (ten years) is a corrupted record, not a long experiment.
MAX_SERIES_SECONDS = 10 * 365.25 * 86400.0


@dataclass(frozen=True)
class SeriesLayout:
    """Where the spectra of a data-series block lie (layout: :mod:`opir.formats.opus_writer`, ``SERIES_HEADER``)."""

    announced: int  # spectra the header announces
    stored: int  # whole spectra the block holds: all announced, or fewer where OPUS skipped some (store table)
    offset: int  # byte of the first spectrum in the block
    data_size: int  # bytes of each spectrum's values
    info_size: int  # bytes of the record after each spectrum


def series_layout(block: bytes | memoryview) -> SeriesLayout:
    """The layout of a data-series block; ValueError says what no series block could have."""
    if len(block) < SERIES_HEADER.size:
        raise ValueError(f"{len(block)} bytes, shorter than its {SERIES_HEADER.size}-byte header")
    _, announced, offset, data_size, info_size, n_store = SERIES_HEADER.unpack_from(block)
    if not 0 < announced <= MAX_SERIES_SPECTRA:
        raise ValueError(f"it announces {announced} spectra; expected 1 to {MAX_SERIES_SPECTRA}")
    if data_size < 8 or data_size % 4:
        raise ValueError(f"{data_size} bytes per spectrum; expected a multiple of 4 of at least 8 (2 points)")
    if info_size < SERIES_INFO.itemsize:
        raise ValueError(f"a {info_size}-byte record per spectrum; at least {SERIES_INFO.itemsize} expected")
    if n_store < 0 or not SERIES_HEADER.size + 8 * n_store <= offset <= len(block):
        raise ValueError(f"spectra from byte {offset} after {n_store} store-table entries in a {len(block)}-byte block")
    whole, rest = divmod(len(block) - offset, data_size + info_size)
    if whole < announced and rest:
        raise ValueError(f"the block ends inside spectrum {whole} of the {announced} announced (truncated?)")
    if whole == 0:
        raise ValueError(f"it holds no whole spectrum ({len(block) - offset} bytes after byte {offset})")
    return SeriesLayout(announced, min(announced, whole), offset, data_size, info_size)


def series_arrays(block: bytes, layout: SeriesLayout) -> tuple[np.ndarray, np.ndarray]:
    """The stored spectra's values as written, (stored, data_size / 4) float32, and their ``SERIES_INFO`` records."""
    fields = [("y", "<f4", (layout.data_size // 4,)), ("info", SERIES_INFO)]
    if layout.info_size > SERIES_INFO.itemsize:  # a longer record than the fields known: skip the rest
        fields.append(("rest", f"V{layout.info_size - SERIES_INFO.itemsize}"))
    rows = np.frombuffer(block, dtype=np.dtype(fields), count=layout.stored, offset=layout.offset)
    return rows["y"], rows["info"]


@dataclass(frozen=True)
class OpusFileContents:
    """Every spectrum of one OPUS file: one for a single-spectrum file, the series' spectra for a series file."""

    path: str
    spectra: list[OpusSpectrum]  # usable spectra, in file order
    series: bool = False
    stored: int = 1  # spectra in the file (usable or not)
    bad: dict[int, str] = field(default_factory=dict)  # series position -> why that spectrum cannot be used


def _series_pair(blocks: list[Any], key: str, path: Path) -> tuple[Any, Any] | None:
    """The ``key`` series block and its data-status block, paired as brukeropus pairs them; None: no such series."""
    from brukeropus.file.block import pair_data_and_status_blocks

    series = [b for b in blocks if b.is_data_series() and b.get_data_key() == key]
    if not series:
        return None
    kinds = {(b.type[:2], b.type[3:]) for b in series}
    status = [b for b in blocks if b.is_data_status() and (b.type[:2], b.type[3:]) in kinds]
    for candidate in status:  # the series block itself is read here, never by brukeropus' parser
        candidate.parse()
    status = [b for b in status if isinstance(b.data, dict)]
    matches = pair_data_and_status_blocks([*series, *status])
    if not matches:
        raise OpusReadError(f"{path}: series block {key!r} without its data-status parameters (NPT, FXV, LXV, ...)")
    return matches[0]


def _status(params: dict[str, Any], name: str, kind: type, path: Path, key: str) -> Any:
    if name not in params:
        raise OpusReadError(f"{path}: series block {key!r}: its data-status parameters lack {name.upper()}")
    try:
        return kind(params[name])
    except (TypeError, ValueError) as exc:
        raise OpusReadError(f"{path}: series block {key!r}: {name.upper()}={params[name]!r} is not a number") from exc


def _row_problem(values: np.ndarray, srt: float, timed: bool) -> str | None:
    """Why one spectrum of a series cannot be used (the others can)."""
    bad = int(np.count_nonzero(~np.isfinite(values)))
    if bad:
        return f"{bad} non-finite value(s)"
    if timed and not (np.isfinite(srt) and 0.0 <= srt <= MAX_SERIES_SECONDS):
        return f"unusable start time SRT={srt!r} s after the series' DAT/TIM"
    return None


def _instrument(blocks: list[Any]) -> dict[str, Any]:
    """The instrument parameters of the sample's parameter blocks (brukeropus' ``params`` of a full read)."""
    found: dict[str, Any] = {}
    for block in blocks:
        if block.is_sm_param():
            block.parse()
            if isinstance(block.data, dict):
                found.update(block.data)
    return {k: _plain(found[k]) for k in INSTRUMENT_KEYS if k in found}


def _series_contents(
    path: Path,
    raw: bytes,
    key: str,
    blocks: list[Any],
    pair: tuple[Any, Any],
    default_zone: dt.tzinfo | None,
    instrument: bool,
) -> OpusFileContents:
    """The spectra of the paired series block: checks of the file as a whole raise, a bad spectrum goes to ``bad``."""
    data_block, status_block = pair
    params = status_block.data
    layout = series_layout(data_block.bytes)  # checked by _load: cannot fail here
    npt = _status(params, "npt", int, path, key)
    fxv, lxv = _status(params, "fxv", float, path, key), _status(params, "lxv", float, path, key)
    csf = _status(params, "csf", float, path, key) if "csf" in params else 1.0
    if npt < 2:
        raise OpusReadError(f"{path}: block {key!r} has NPT={npt}; at least 2 points are needed")
    if layout.data_size // 4 < npt:
        raise OpusReadError(
            f"{path}: series block {key!r} holds {layout.data_size // 4} values per spectrum but NPT says {npt}"
        )
    _check_axis(path, key, fxv, lxv, str(params.get("dxu", "WN")))
    if not np.isfinite(csf) or csf == 0.0:
        raise OpusReadError(f"{path}: series block {key!r} has an unusable scale CSF={csf}")
    # DAT/TIM is the series' start; each spectrum's SRT is its start in seconds after it
    start = _acquired(path, key, params.get("dat"), params.get("tim"), default_zone)
    y, info = series_arrays(data_block.bytes, layout)
    axis = np.linspace(fxv, lxv, npt)
    digest = hashlib.sha256(raw).hexdigest()
    parameters = _instrument(blocks) if instrument else {}
    spectra, bad = [], {}
    for k in range(layout.stored):
        values = y[k, :npt].astype(np.float64) * csf  # the stored values times CSF, as for a single spectrum
        srt = float(info["SRT"][k])
        problem = _row_problem(values, srt, start is not None)
        if problem:
            bad[k] = f"block {key!r}: {problem}"
            continue
        acquired = None if start is None else start + dt.timedelta(seconds=srt)
        spectra.append(OpusSpectrum(str(path), key, axis, values, acquired, digest, parameters, series_index=k))
    return OpusFileContents(str(path), spectra, series=True, stored=layout.stored, bad=bad)


def read_opus_series(
    path: str | Path, block: str = "AB", default_zone: dt.tzinfo | None = None, instrument: bool = False
) -> OpusFileContents:
    """Read the ``block`` data series of a time-resolved OPUS series file: every stored spectrum, each timed at
    the series' DAT/TIM plus its SRT (UTC). A file without that series is an :class:`OpusReadError`, as is
    anything wrong with the file as a whole; a spectrum of its own that cannot be used (non-finite values, an
    impossible SRT) is left out and listed in ``bad`` with the reason."""
    path = Path(path)
    key = _key_for(path, block)
    raw = _load(path)
    contents = _read_series(path, raw, key, default_zone, instrument)
    if contents is None:
        wanted = next((name for name, k in BLOCK_ALIASES.items() if k == key), key)
        present = ", ".join(
            f"{b.get_data_key()} ({b.get_label()})" for b in _file_blocks(raw) if b.is_data() or b.is_data_series()
        )
        raise OpusReadError(f"{path}: no {wanted} series block ({key!r}); data blocks present: {present or 'none'}")
    return contents


def _read_series(
    path: Path, raw: bytes, key: str, default_zone: dt.tzinfo | None, instrument: bool
) -> OpusFileContents | None:
    if not any(_is_series(codes) for _, codes, _, _ in _directory(raw)):
        return None  # the common case, decided without copying a block
    try:
        blocks = _file_blocks(raw)
        pair = _series_pair(blocks, key, path)
        if pair is None:
            return None
        return _series_contents(path, raw, key, blocks, pair, default_zone, instrument)
    except OpusReadError:
        raise
    except Exception as exc:  # brukeropus' block and parameter code raises many kinds
        raise OpusReadError(f"{path}: corrupted OPUS structure ({type(exc).__name__}: {exc})") from exc


def read_opus_file(
    path: str | Path, block: str = "AB", default_zone: dt.tzinfo | None = None, instrument: bool = False
) -> OpusFileContents:
    """Every spectrum of one OPUS file: a series file's ``block`` series (:func:`read_opus_series`; it wins over a
    1-d ``block`` in the same file), otherwise the file's one spectrum (:func:`read_opus_spectrum`)."""
    path = Path(path)
    key = _key_for(path, block)
    raw = _load(path)
    contents = _read_series(path, raw, key, default_zone, instrument)
    if contents is not None:
        return contents
    return OpusFileContents(str(path), [_single_spectrum(path, raw, key, default_zone, instrument)])
