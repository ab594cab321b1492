"""Potentiostat logs: EC-Lab ASCII exports (.mpt) and plain CSV, and the voltage/current at acquisition times.

EC-Lab's text export starts with ``EC-Lab ASCII FILE``, then ``Nb header lines : N`` (N counts every header line,
the column-name line included), an ``Acquisition started on : MM/DD/YYYY HH:MM:SS.fff`` line in the potentiostat
PC's local time, and tab-separated columns (``time/s``, ``Ewe/V``, ``<I>/mA`` or ``I/mA``). Locales with a decimal
comma write ``0,123``; both are accepted. Files are Latin-1 (EC-Lab writes degree signs in the header).

A plain CSV has columns ``time_s``, ``voltage_v``, ``current_ma``; an optional first line ``# started_utc: <ISO
8601>`` anchors ``time_s`` in absolute time. Without it, ``time_s = 0`` is taken as the first spectrum's
acquisition (documented in docs/formats.md; ingest logs it).
"""

from __future__ import annotations

import datetime as dt
import io
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from opir.core.errors import DataError

TIME_COLUMNS = ("time/s",)
VOLTAGE_COLUMNS = ("Ewe/V", "Ecell/V", "<Ewe>/V", "<Ewe/V>")
CURRENT_COLUMNS = ("<I>/mA", "I/mA", "control/mA")


@dataclass(frozen=True)
class PotentiostatLog:
    """Time (s from ``started_utc``, or from the first spectrum when that is None), voltage and current."""

    path: str
    time_s: np.ndarray
    voltage_v: np.ndarray
    current_ma: np.ndarray
    started_utc: dt.datetime | None


_STARTED = re.compile(r"Acquisition started on\s*:\s*(?P<stamp>.+?)\s*$")
_NB_HEADER = re.compile(r"Nb header lines\s*:\s*(?P<n>\d+)")


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
            stamp = match["stamp"]
            for fmt in ("%m/%d/%Y %H:%M:%S.%f", "%m/%d/%Y %H:%M:%S"):
                try:
                    started = dt.datetime.strptime(stamp, fmt).replace(tzinfo=time_zone).astimezone(dt.UTC)
                    break
                except ValueError:
                    continue
            if started is None:
                raise DataError(
                    f"{path}: cannot parse 'Acquisition started on : {stamp}' (expected MM/DD/YYYY HH:MM:SS.fff)"
                )
    body = "\n".join(lines[n_header - 1 :])
    names = [c.strip() for c in lines[n_header - 1].split("\t")]
    header = pd.DataFrame(columns=names)
    columns = [
        _pick(header, TIME_COLUMNS, path),
        _pick(header, VOLTAGE_COLUMNS, path),
        _pick(header, CURRENT_COLUMNS, path),
    ]
    first_data = lines[n_header] if len(lines) > n_header else ""
    decimal = "," if "," in first_data and "." not in first_data else "."
    try:
        # fast path: the C parser reads numbers directly (a log has ~10^5 lines); on any doubt, the slow path
        # below finds the offending line for the message
        fast = pd.read_csv(io.StringIO(body), sep="\t", decimal=decimal, usecols=[names.index(c) for c in columns],
                           dtype=np.float64, engine="c")  # fmt: skip
        values = fast.to_numpy()
        if values.shape[0] < 2 or not np.all(np.isfinite(values)):
            raise ValueError("not finite")
        values = values[:, np.argsort(np.argsort([names.index(c) for c in columns]))]
    except (ValueError, TypeError, pd.errors.ParserError):
        try:
            table = pd.read_csv(io.StringIO(body), sep="\t", dtype=str, keep_default_na=False)
        except Exception as exc:
            raise DataError(f"{path}: cannot read the data table after {n_header - 1} header lines: {exc}") from exc
        table.columns = [c.strip() for c in table.columns]
        values = _numeric(table[columns], path, first_line=n_header + 1)
    return _checked(path, values[:, 0], values[:, 1], values[:, 2], started, first_line=n_header + 1)


def read_csv_log(path: str | Path) -> PotentiostatLog:
    """Read a plain CSV log (time_s, voltage_v, current_ma; optional '# started_utc: ...' first line)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: cannot read potentiostat log: {exc}") from exc
    started = None
    first = text.split("\n", 1)[0]
    if match := re.match(r"#\s*started_utc\s*:\s*(\S+)", first):
        try:
            started = dt.datetime.fromisoformat(match[1])
        except ValueError as exc:
            raise DataError(f"{path}: line 1: started_utc {match[1]!r} is not an ISO 8601 time") from exc
        started = started.replace(tzinfo=dt.UTC) if started.tzinfo is None else started.astimezone(dt.UTC)
    try:
        table = pd.read_csv(io.StringIO(text), comment="#", dtype=str, keep_default_na=False)
    except Exception as exc:
        raise DataError(f"{path}: cannot read as CSV: {exc}") from exc
    table.columns = [c.strip() for c in table.columns]
    missing = [c for c in ("time_s", "voltage_v", "current_ma") if c not in table.columns]
    if missing:
        raise DataError(f"{path}: missing column(s) {', '.join(missing)}; expected time_s, voltage_v, current_ma")
    header_lines = 2 if started is not None else 1
    values = _numeric(table[["time_s", "voltage_v", "current_ma"]], path, first_line=header_lines + 1)
    return _checked(path, values[:, 0], values[:, 1], values[:, 2], started, first_line=header_lines + 1)


def read_log(path: str | Path, time_zone: dt.tzinfo | None = dt.UTC) -> PotentiostatLog:
    """Dispatch on the extension: .mpt (EC-Lab) or .csv."""
    suffix = Path(path).suffix.lower()
    if suffix == ".mpt":
        return read_mpt(path, time_zone or dt.UTC)
    if suffix == ".csv":
        return read_csv_log(path)
    raise DataError(f"{path}: unknown potentiostat log type {suffix!r}; expected .mpt (EC-Lab export) or .csv")


def _pick(table: pd.DataFrame, names: tuple[str, ...], path: Path) -> str:
    for name in names:
        if name in table.columns:
            return name
    raise DataError(f"{path}: none of the columns {', '.join(names)}; columns present: {', '.join(table.columns)}")


def _numeric(table: pd.DataFrame, path: Path, first_line: int) -> np.ndarray:
    text = table.apply(lambda column: column.str.strip().str.replace(",", ".", regex=False))
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


def _checked(path, time_s, voltage_v, current_ma, started, first_line) -> PotentiostatLog:
    steps = np.diff(time_s)
    if np.any(steps < 0):
        row = int(np.argmax(steps < 0)) + 1
        raise DataError(
            f"{path}: line {first_line + row}: time {time_s[row]} s is earlier than the line before "
            f"({time_s[row - 1]} s); the log must be in time order"
        )
    return PotentiostatLog(str(path), time_s, voltage_v, current_ma, started)


def covers(log: PotentiostatLog, times_s: np.ndarray, tolerance_s: float = 1.0) -> np.ndarray:
    """True where a time lies inside the log's span (widened by ``tolerance_s`` at both ends)."""
    times_s = np.asarray(times_s, dtype=np.float64)
    return (times_s >= log.time_s[0] - tolerance_s) & (times_s <= log.time_s[-1] + tolerance_s)


def at_times(log: PotentiostatLog, times_s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Voltage and current at the given times (linear interpolation; the log is sampled faster than spectra).

    Rows with equal times (EC-Lab repeats a time at a technique change) keep the later value, so the value
    after a step is used from that instant on.
    """
    time_s, order = np.unique(log.time_s[::-1], return_index=True)
    last = len(log.time_s) - 1 - order
    times_s = np.asarray(times_s, dtype=np.float64)
    return (np.interp(times_s, time_s, log.voltage_v[last]), np.interp(times_s, time_s, log.current_ma[last]))
