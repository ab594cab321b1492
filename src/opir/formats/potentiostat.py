"""Potentiostat and cycler logs: one time/voltage/current record whatever the instrument, and its values at
acquisition times.

Formats (docs/formats.md, "Potentiostat and cycler logs"), chosen by content, not by extension (a ``.txt`` may be
an EC-Lab export or a Maccor one, a ``.csv`` any cycler's export):

- EC-Lab ASCII export (``.mpt``, read here): ``EC-Lab ASCII FILE``, ``Nb header lines : N`` (N counts every header
  line, the column-name line included), the technique's name, ``Acquisition started on : MM/DD/YYYY HH:MM:SS.fff``
  in the potentiostat PC's local time, and tab-separated columns (``time/s``, ``Ewe/V``, ``<I>/mA`` or ``I/mA``,
  often ``mode``), each line ended by a tab. Locales with a decimal comma write ``0,123``. Latin-1.
- EC-Lab binary (``.mpr``): :mod:`opir.formats.eclab_mpr` (galvani).
- Gamry EXPLAIN (``.DTA``): :mod:`opir.formats.gamry_dta` (gamry-parser).
- Neware (``.nda``, ``.ndax``): :mod:`opir.formats.neware` (NewareNDA).
- Any other text table (CSV, TSV, a Maccor or Arbin text export, Battery Data Format CSV): read here through a
  column mapping (``ingest.potentiostat_csv``: name and unit of time, voltage and current, preamble lines to skip).
  The default mapping is OpIR's own CSV: ``time_s``, ``voltage_v``, ``current_ma``, with an optional line
  ``# started_utc: <ISO 8601>`` above the header that anchors ``time_s`` in absolute time. Without a start time,
  ``time_s = 0`` is taken as the first spectrum's acquisition (ingest logs it).

Open circuit: a technique that leaves the cell on open circuit (EC-Lab OCV, Gamry CORPOT) writes no current
column; its rows get zero current and ``open_circuit`` True. Rows that a technique marks as rest (EC-Lab ``mode``
3, Neware ``Rest``) are flagged as open circuit too, with the current as recorded.
"""

from __future__ import annotations

import datetime as dt
import io
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from opir.core.errors import DataError

TIME_COLUMNS = ("time/s",)
VOLTAGE_COLUMNS = ("Ewe/V", "Ecell/V", "<Ewe>/V", "<Ewe/V>")
CURRENT_COLUMNS = ("<I>/mA", "I/mA", "control/mA")
#: EC-Lab's ``mode`` column: 1 galvanostatic, 2 potentiostatic, 3 rest (open circuit).
ECLAB_REST_MODE = 3

#: What read_log can read, for messages that must say what a user could give instead.
SUPPORTED_FORMATS = (
    "EC-Lab .mpt (text export) or .mpr (binary), Gamry .DTA, Neware .nda/.ndax, or a text table (CSV, TSV, "
    "Maccor/Arbin text export, Battery Data Format CSV) described by ingest.potentiostat_csv"
)

#: Extensions that name one instrument format (a .csv or .txt may be anything).
CLAIMED_BY_EXTENSION = {".mpt": "mpt", ".mpr": "mpr", ".dta": "dta", ".nda": "nda", ".ndax": "ndax"}

#: Units a column mapping may name, as factors to s, V and mA.
TIME_UNITS = {"s": 1.0, "ms": 1e-3, "min": 60.0, "h": 3600.0}
VOLTAGE_UNITS = {"V": 1.0, "mV": 1e-3}
CURRENT_UNITS = {"A": 1e3, "mA": 1.0, "uA": 1e-3, "µA": 1e-3}

#: OpIR's own CSV; ``ingest.potentiostat_csv`` in the config has the same keys (schema: config/ingest).
DEFAULT_CSV_FORMAT: dict[str, Any] = {
    "time": {"column": "time_s", "unit": "s"},
    "voltage": {"column": "voltage_v", "unit": "V"},
    "current": {"column": "current_ma", "unit": "mA"},
    "skip_lines": 0,
    "separator": "auto",
}


@dataclass(frozen=True)
class PotentiostatLog:
    """Time (s from ``started_utc``, or from the first spectrum when that is None), voltage and current, per row
    whether the cell was on open circuit, and the technique as the instrument names it."""

    path: str
    time_s: np.ndarray
    voltage_v: np.ndarray
    current_ma: np.ndarray
    started_utc: dt.datetime | None
    technique: str = ""
    open_circuit: np.ndarray | None = None
    source_format: str = ""


_STARTED = re.compile(r"Acquisition started on\s*:\s*(?P<stamp>.+?)\s*$")
_NB_HEADER = re.compile(r"Nb header lines\s*:\s*(?P<n>\d+)")


# --------------------------------------------------------------------------------------------------------------
# Which format a file is
# --------------------------------------------------------------------------------------------------------------
def sniff_format(path: str | Path) -> str:
    """'mpt', 'mpr', 'dta', 'nda', 'ndax', 'arbin_res', 'text' or 'binary', from the first bytes of the file."""
    path = Path(path)
    try:
        with open(path, "rb") as handle:
            head = handle.read(4096)
    except OSError as exc:
        raise DataError(f"{path}: cannot read potentiostat log: {exc.strerror or exc}") from exc
    if head.startswith(b"BIO-LOGIC MODULAR FILE"):
        return "mpr"
    if head.lstrip().startswith(b"EC-Lab ASCII FILE"):
        return "mpt"
    if head.startswith(b"EXPLAIN"):
        return "dta"
    if head.startswith(b"NEWARE"):
        return "nda"
    if head.startswith(b"PK\x03\x04"):
        return "ndax" if path.suffix.lower() == ".ndax" or b"data.ndc" in head or b"Step.xml" in head else "binary"
    if head[4:19] == b"Standard Jet DB":
        return "arbin_res"
    if b"\x00" in head:
        return "binary"
    return "text"


def read_log(
    path: str | Path, time_zone: dt.tzinfo | None = dt.UTC, csv_format: Mapping[str, Any] | None = None
) -> PotentiostatLog:
    """Read any supported log (format by content, see :func:`sniff_format`); ``time_zone`` is the zone of the
    instrument PC's clock, ``csv_format`` the column mapping of text tables (default: OpIR's CSV)."""
    path = Path(path)
    zone = time_zone or dt.UTC
    kind = sniff_format(path)
    if kind in ("text", "binary") and path.suffix.lower() in CLAIMED_BY_EXTENSION:
        # an instrument extension whose content does not match: that format's reader says what is wrong
        kind = CLAIMED_BY_EXTENSION[path.suffix.lower()]
    if kind == "mpt":
        return read_mpt(path, zone)
    if kind == "mpr":
        from opir.formats.eclab_mpr import read_mpr

        return read_mpr(path, zone)
    if kind == "dta":
        from opir.formats.gamry_dta import read_dta

        return read_dta(path, zone)
    if kind in ("nda", "ndax"):
        from opir.formats.neware import read_neware

        return read_neware(path, zone)
    if kind == "arbin_res":
        raise DataError(
            f"{path}: an Arbin .res file (an MS Access database) cannot be read here; export it as CSV or Excel "
            f"text from Arbin's software and map its columns with ingest.potentiostat_csv. Readable: "
            f"{SUPPORTED_FORMATS}"
        )
    if kind == "binary":
        raise DataError(f"{path}: unknown binary potentiostat log ({path.suffix or 'no extension'}); readable: "
                        f"{SUPPORTED_FORMATS}")  # fmt: skip
    return read_csv_log(path, csv_format, zone)


# --------------------------------------------------------------------------------------------------------------
# EC-Lab text export
# --------------------------------------------------------------------------------------------------------------
def eclab_technique(header_lines: list[str]) -> str:
    """The technique names of an EC-Lab header: the line after each ``Technique : N`` of a linked experiment, or
    the first free-text line after ``Nb header lines`` (``Open Circuit Voltage``, ``Chronopotentiometry``)."""
    names = [
        header_lines[i + 1].strip()
        for i, line in enumerate(header_lines[:-1])
        if re.match(r"\s*Technique\s*:\s*\d+\s*$", line)
    ]
    if names:
        return "; ".join(names)
    return next((line.strip() for line in header_lines[2:] if line.strip() and ":" not in line), "")


def is_open_circuit_technique(technique: str) -> bool:
    """EC-Lab 'Open Circuit Voltage' (OCV), Gamry 'CORPOT'/'Open Circuit Potential' (OCP), 'Rest'."""
    return bool(re.search(r"open circuit|\bOC[VP]\b|corpot|^rest$", technique, re.IGNORECASE))


def read_mpt(path: str | Path, time_zone: dt.tzinfo = dt.UTC) -> PotentiostatLog:
    """Read an EC-Lab ASCII export; ``time_zone`` is the zone of the potentiostat PC's clock."""
    path = Path(path)
    try:
        text = path.read_text(encoding="latin-1")
    except OSError as exc:
        raise DataError(f"{path}: cannot read potentiostat log: {exc.strerror or exc}") from exc
    lines = text.splitlines()
    if not lines or not lines[0].strip().startswith("EC-Lab ASCII FILE"):
        raise DataError(f"{path}: not an EC-Lab ASCII export (first line should be 'EC-Lab ASCII FILE')")
    n_header = next((int(m["n"]) for line in lines[:5] if (m := _NB_HEADER.search(line))), None)
    if n_header is None or n_header < 2 or n_header > len(lines):
        raise DataError(f"{path}: missing or wrong 'Nb header lines : N' line")
    started = None
    for line in lines[: n_header - 1]:
        if match := _STARTED.search(line):
            started = _eclab_start(match["stamp"], time_zone, path)
    technique = eclab_technique(lines[: n_header - 1])
    # EC-Lab ends every line with a tab: the empty name after it is no column
    names = [c.strip() for c in lines[n_header - 1].split("\t")]
    present = [c for c in names if c]
    time_col = _pick(present, TIME_COLUMNS, path)
    voltage_col = _pick(present, VOLTAGE_COLUMNS, path)
    current_col = next((c for c in CURRENT_COLUMNS if c in present), None)
    if current_col is None and not is_open_circuit_technique(technique):
        _pick(present, CURRENT_COLUMNS, path, technique)  # raises, listing the columns present
    columns = [c for c in (time_col, voltage_col, current_col, "mode" if "mode" in present else None) if c]
    first_data = lines[n_header] if len(lines) > n_header else ""
    decimal = "," if "," in first_data and "." not in first_data else "."
    body = "\n".join(lines[n_header - 1 :])
    positions = [names.index(c) for c in columns]
    try:
        # fast path: the C parser reads numbers directly (a log has ~10^5 lines); on any doubt, the slow path
        # below finds the offending line for the message
        fast = pd.read_csv(io.StringIO(body), sep="\t", decimal=decimal, usecols=positions, dtype=np.float64,
                           engine="c")  # fmt: skip
        values = fast.to_numpy()
        if values.shape[0] < 2 or not np.all(np.isfinite(values)):
            raise ValueError("not finite")
        values = values[:, np.argsort(np.argsort(positions))]
    except (ValueError, TypeError, pd.errors.ParserError):
        try:
            table = pd.read_csv(io.StringIO(body), sep="\t", dtype=str, keep_default_na=False)
        except Exception as exc:
            raise DataError(f"{path}: cannot read the data table after {n_header - 1} header lines: {exc}") from exc
        table.columns = [c.strip() for c in table.columns]
        values = _numeric(table[columns], path, first_line=n_header + 1)
    table = dict(zip(columns, values.T, strict=True))
    return from_columns(
        path,
        time_s=table[time_col],
        voltage_v=table[voltage_col],
        current_ma=table.get(current_col) if current_col else None,
        started=started,
        technique=technique,
        rest=table["mode"] == ECLAB_REST_MODE if "mode" in table else None,
        source_format="EC-Lab .mpt",
        first_line=n_header + 1,
    )


def _eclab_start(stamp: str, time_zone: dt.tzinfo, path: Path) -> dt.datetime:
    for fmt in ("%m/%d/%Y %H:%M:%S.%f", "%m/%d/%Y %H:%M:%S"):
        try:
            return dt.datetime.strptime(stamp, fmt).replace(tzinfo=time_zone).astimezone(dt.UTC)
        except ValueError:
            continue
    raise DataError(f"{path}: cannot parse 'Acquisition started on : {stamp}' (expected MM/DD/YYYY HH:MM:SS.fff)")


# --------------------------------------------------------------------------------------------------------------
# Text tables through a column mapping
# --------------------------------------------------------------------------------------------------------------
def describe_mapping(csv_format: Mapping[str, Any]) -> str:
    """'time 'time_s' [s], voltage 'voltage_v' [V], current 'current_ma' [mA], 0 preamble line(s) skipped'."""
    parts = []
    for quantity in ("time", "voltage", "current"):
        spec = csv_format[quantity]
        column = "none (open circuit)" if spec.get("column") is None else repr(spec["column"])
        parts.append(f"{quantity} {column} [{spec['unit']}]")
    return ", ".join(parts) + f", {csv_format.get('skip_lines', 0)} preamble line(s) skipped"


def _merged_format(csv_format: Mapping[str, Any] | None) -> dict[str, Any]:
    merged = {**DEFAULT_CSV_FORMAT, **(csv_format or {})}
    for quantity in ("time", "voltage", "current"):
        merged[quantity] = {**DEFAULT_CSV_FORMAT[quantity], **(merged.get(quantity) or {})}
    return merged


def _separator(header: str, wanted: str) -> str:
    if wanted != "auto":
        return "\t" if wanted in ("tab", "\\t") else wanted
    if "\t" in header:
        return "\t"
    if ";" in header and "," not in header:
        return ";"
    return ","


def read_csv_log(
    path: str | Path, csv_format: Mapping[str, Any] | None = None, time_zone: dt.tzinfo = dt.UTC
) -> PotentiostatLog:
    """Read a text table through a column mapping (default: OpIR's CSV, ``time_s``, ``voltage_v``, ``current_ma``,
    an optional ``# started_utc: ...`` line above the header).

    ``csv_format``: ``{"time": {"column", "unit"}, "voltage": {...}, "current": {...}, "skip_lines": n,
    "separator": "auto"|","|";"|"tab"}``; a current column of None reads an open-circuit log (zero current).
    Units: time s, ms, min, h; voltage V, mV; current A, mA, uA.
    """
    path = Path(path)
    fmt = _merged_format(csv_format)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise DataError(f"{path}: cannot read potentiostat log: {exc.strerror or exc}") from exc
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        text = raw.decode("latin-1")  # Windows exports (Maccor, Arbin) are often cp1252/latin-1
    lines = text.splitlines()
    skip = int(fmt["skip_lines"])
    started, header_at = None, skip
    # lines starting with '#' above the header are comments; one may anchor the log in absolute time
    while header_at < len(lines) and lines[header_at].lstrip().startswith("#"):
        if match := re.match(r"\s*#\s*started_utc\s*:\s*(\S+)", lines[header_at]):
            started = _iso_start(match[1], path, header_at + 1, time_zone)
        header_at += 1
    if header_at >= len(lines):
        raise DataError(f"{path}: no header line after {skip} preamble line(s) (ingest.potentiostat_csv.skip_lines)")
    sep = _separator(lines[header_at], str(fmt["separator"]))
    try:
        table = pd.read_csv(io.StringIO("\n".join(lines[header_at:])), sep=sep, dtype=str, keep_default_na=False,
                            engine="python")  # fmt: skip
    except Exception as exc:
        raise DataError(
            f"{path}: cannot read as a table after {header_at} line(s) (separator {sep!r}): {exc}; if the file "
            "has a preamble, set ingest.potentiostat_csv.skip_lines"
        ) from exc
    table.columns = [str(c).strip() for c in table.columns]
    table = table[[c for c in table.columns if c and not c.startswith("Unnamed:")]]
    wanted = {q: fmt[q]["column"] for q in ("time", "voltage", "current") if fmt[q]["column"] is not None}
    missing = [name for name in wanted.values() if name not in table.columns]
    if missing:
        raise DataError(
            f"{path}: line {header_at + 1}: missing column(s) {', '.join(map(repr, missing))}; columns present: "
            f"{', '.join(map(repr, table.columns)) or 'none'}; mapping expected (ingest.potentiostat_csv): "
            f"{describe_mapping(fmt)}"
        )
    units = {"time": TIME_UNITS, "voltage": VOLTAGE_UNITS, "current": CURRENT_UNITS}
    factors = {}
    for quantity, known in units.items():
        unit = fmt[quantity]["unit"]
        if unit not in known:
            raise DataError(
                f"{path}: ingest.potentiostat_csv.{quantity}.unit {unit!r} is not one of {', '.join(known)}"
            )
        factors[quantity] = known[unit]
    values = _numeric(table[list(wanted.values())], path, first_line=header_at + 2, decimal_comma=sep != ",")
    columns = dict(zip(wanted, values.T, strict=True))
    current = columns.get("current")
    return from_columns(
        path,
        time_s=columns["time"] * factors["time"],
        voltage_v=columns["voltage"] * factors["voltage"],
        current_ma=None if current is None else current * factors["current"],
        started=started,
        technique="open circuit (no current column mapped)" if current is None else "",
        source_format="text table",
        first_line=header_at + 2,
    )


def _iso_start(text: str, path: Path, line: int, time_zone: dt.tzinfo) -> dt.datetime:
    try:
        started = dt.datetime.fromisoformat(text)
    except ValueError as exc:
        raise DataError(f"{path}: line {line}: started_utc {text!r} is not an ISO 8601 time") from exc
    return started.replace(tzinfo=dt.UTC) if started.tzinfo is None else started.astimezone(dt.UTC)


# --------------------------------------------------------------------------------------------------------------
# The common record
# --------------------------------------------------------------------------------------------------------------
def from_columns(
    path: str | Path,
    *,
    time_s: np.ndarray,
    voltage_v: np.ndarray,
    current_ma: np.ndarray | None,
    started: dt.datetime | None,
    technique: str,
    source_format: str,
    rest: np.ndarray | None = None,
    first_line: int = 1,
) -> PotentiostatLog:
    """The record every reader returns. No current column means the cell was on open circuit: zero current,
    every row flagged. ``rest`` flags rows a technique marks as rest (EC-Lab mode 3, Neware 'Rest')."""
    time_s = np.asarray(time_s, dtype=np.float64)
    voltage_v = np.asarray(voltage_v, dtype=np.float64)
    if time_s.size < 2:
        raise DataError(f"{path}: {time_s.size} data line(s); at least 2 are needed to interpolate")
    if current_ma is None:
        current_ma, open_circuit = np.zeros_like(time_s), np.ones(time_s.shape, dtype=bool)
    else:
        current_ma = np.asarray(current_ma, dtype=np.float64)
        open_circuit = np.zeros(time_s.shape, dtype=bool) if rest is None else np.asarray(rest, dtype=bool)
    for name, values in (("time", time_s), ("voltage", voltage_v), ("current", current_ma)):
        bad = np.flatnonzero(~np.isfinite(values))
        if bad.size:
            raise DataError(f"{path}: line {first_line + bad[0]}: {name} {values[bad[0]]} is not a finite number")
    steps = np.diff(time_s)
    if np.any(steps < 0):
        row = int(np.argmax(steps < 0)) + 1
        raise DataError(
            f"{path}: line {first_line + row}: time {time_s[row]} s is earlier than the line before "
            f"({time_s[row - 1]} s); the log must be in time order"
        )
    return PotentiostatLog(
        str(path), time_s, voltage_v, current_ma, started, technique, open_circuit, source_format=source_format
    )


def _pick(present: list[str], names: tuple[str, ...], path: Path, technique: str = "") -> str:
    for name in names:
        if name in present:
            return name
    what = f" (technique {technique!r} is not open circuit, so a current column is needed)" if technique else ""
    raise DataError(f"{path}: none of the columns {', '.join(names)}{what}; columns present: {', '.join(present)}")


def _numeric(table: pd.DataFrame, path: Path, first_line: int, decimal_comma: bool = True) -> np.ndarray:
    text = table.apply(lambda column: column.str.strip())
    if decimal_comma:
        text = text.apply(lambda column: column.str.replace(",", ".", regex=False))
    values = text.apply(pd.to_numeric, errors="coerce").to_numpy(dtype=np.float64)
    bad = np.argwhere(~np.isfinite(values))
    if bad.size:
        row, col = bad[0]
        raise DataError(
            f"{path}: line {first_line + row}: column {table.columns[col]!r} value {table.iat[row, col]!r} "
            "is not a finite number"
        )
    if len(values) < 2:
        raise DataError(f"{path}: {len(values)} data line(s); at least 2 are needed to interpolate")
    return values


# --------------------------------------------------------------------------------------------------------------
# Values at acquisition times
# --------------------------------------------------------------------------------------------------------------
def covers(log: PotentiostatLog, times_s: np.ndarray, tolerance_s: float = 1.0) -> np.ndarray:
    """True where a time lies inside the log's span (widened by ``tolerance_s`` at both ends)."""
    times_s = np.asarray(times_s, dtype=np.float64)
    return (times_s >= log.time_s[0] - tolerance_s) & (times_s <= log.time_s[-1] + tolerance_s)


def _last_rows(log: PotentiostatLog) -> tuple[np.ndarray, np.ndarray]:
    """Unique times and, for each, the last row at that time (EC-Lab repeats a time at a technique change)."""
    time_s, order = np.unique(log.time_s[::-1], return_index=True)
    return time_s, len(log.time_s) - 1 - order


def at_times(log: PotentiostatLog, times_s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Voltage and current at the given times (linear interpolation; the log is sampled faster than spectra).

    Rows with equal times (EC-Lab repeats a time at a technique change) keep the later value, so the value
    after a step is used from that instant on.
    """
    time_s, last = _last_rows(log)
    times_s = np.asarray(times_s, dtype=np.float64)
    return (np.interp(times_s, time_s, log.voltage_v[last]), np.interp(times_s, time_s, log.current_ma[last]))


def open_circuit_at(log: PotentiostatLog, times_s: np.ndarray) -> np.ndarray:
    """Whether the cell was on open circuit at each time: the state of the last row at or before it (a state is
    not interpolated); times before the log take its first row."""
    time_s, last = _last_rows(log)
    flags = np.zeros(log.time_s.shape, bool) if log.open_circuit is None else log.open_circuit
    index = np.clip(np.searchsorted(time_s, np.asarray(times_s, dtype=np.float64), side="right") - 1, 0, None)
    return flags[last][index]
