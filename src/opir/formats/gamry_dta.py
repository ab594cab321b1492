"""Gamry EXPLAIN files (``.DTA``), read with gamry-parser (bcliang/gamry-parser, MIT; docs/decisions.md
"Instrument files (issue 21)").

An EXPLAIN file is a tab-separated header (``TAG`` = the technique: ``CORPOT`` open-circuit potential,
``CHRONOA`` chronoamperometry, ``CHRONOP`` chronopotentiometry, ...; ``DATE`` and ``TIME`` of the start in the PC's
local time) and one or more ``CURVE`` tables with ``T`` (s), ``Vf`` (V vs. reference) and, except on open circuit,
``Im`` (A). Several curves (a technique in stages) are concatenated; their ``T`` runs on.
"""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

import numpy as np

from opir.core.errors import DataError
from opir.formats.potentiostat import PotentiostatLog, from_columns, is_open_circuit_technique

#: EXPLAIN tags of techniques that leave the cell on open circuit.
OPEN_CIRCUIT_TAGS = ("CORPOT", "OCP")


def parse_gamry_start(date: str, time: str, time_zone: dt.tzinfo) -> dt.datetime:
    """Gamry writes DATE in the PC's short-date format: '3/10/2019' (US, month first) or '10-2-2020' / '10.2.2020'
    (day first, as gamry-parser also reads dashes). ValueError when it fits neither."""
    date, time = str(date).strip(), str(time).strip()
    formats = ("%m/%d/%Y",) if "/" in date else ("%d-%m-%Y", "%d.%m.%Y")
    for date_format in formats:
        for time_format in ("%H:%M:%S", "%H:%M:%S.%f"):
            try:
                local = dt.datetime.strptime(f"{date} {time}", f"{date_format} {time_format}")
            except ValueError:
                continue
            return local.replace(tzinfo=time_zone).astimezone(dt.UTC)
    raise ValueError(f"DATE {date!r} / TIME {time!r}")


def read_dta(path: str | Path, time_zone: dt.tzinfo = dt.UTC) -> PotentiostatLog:
    """Read a Gamry ``.DTA``; ``time_zone`` is the zone of the potentiostat PC's clock."""
    import gamry_parser  # imported here: only ingest of .DTA files needs it

    path = Path(path)
    try:
        parser = gamry_parser.GamryParser(str(path))
        parser.load()
        header = parser.get_header()
        curves = parser.get_curves()
    except OSError as exc:
        raise DataError(f"{path}: cannot read potentiostat log: {exc.strerror or exc}") from exc
    except Exception as exc:  # gamry-parser asserts, and pandas raises on a broken table
        raise DataError(f"{path}: unreadable Gamry EXPLAIN file ({type(exc).__name__}: {exc})") from exc
    tag = str(header.get("TAG", "")).strip()
    title = str(header.get("TITLE", "")).strip()
    technique = f"{tag} ({title})" if title else tag or "unknown"
    if not curves:
        raise DataError(f"{path}: Gamry file ({technique}) holds no CURVE table")
    columns = [set(c.columns) for c in curves]
    missing = [name for name in ("T", "Vf") if not all(name in c for c in columns)]
    if missing:
        raise DataError(f"{path}: Gamry CURVE table without {', '.join(missing)}; columns present: "
                        f"{', '.join(curves[0].columns)}")  # fmt: skip
    open_circuit = tag.upper() in OPEN_CIRCUIT_TAGS or is_open_circuit_technique(title)
    has_current = all("Im" in c for c in columns)
    if not has_current and not open_circuit:
        raise DataError(f"{path}: Gamry {technique} without a current column Im; columns present: "
                        f"{', '.join(curves[0].columns)}")  # fmt: skip
    started = None
    if "DATE" in header and "TIME" in header:
        try:
            started = parse_gamry_start(header["DATE"], header["TIME"], time_zone)
        except ValueError as exc:
            raise DataError(
                f"{path}: cannot parse the start {exc}; expected M/D/YYYY or D-M-YYYY and HH:MM:SS"
            ) from exc
    try:
        time_s = np.concatenate([np.asarray(c["T"], dtype=np.float64) for c in curves])
        voltage_v = np.concatenate([np.asarray(c["Vf"], dtype=np.float64) for c in curves])
        current_ma = (
            np.concatenate([np.asarray(c["Im"], dtype=np.float64) for c in curves]) * 1e3 if has_current else None
        )
    except (TypeError, ValueError) as exc:
        raise DataError(f"{path}: a Gamry CURVE value is not a number ({exc})") from exc
    return from_columns(
        path,
        time_s=time_s,
        voltage_v=voltage_v,
        current_ma=current_ma,
        started=started,
        technique=re.sub(r"\s+", " ", technique),
        rest=np.ones(time_s.shape, bool) if open_circuit and has_current else None,
        source_format="Gamry .DTA",
    )
