"""Neware cycler files (``.nda`` binary, ``.ndax`` zip archive), read with NewareNDA (d-cogswell/NewareNDA,
BSD-3-Clause, the maintained reader of both; docs/decisions.md "Instrument files (issue 21)").

NewareNDA gives one row per record: ``Step_Index``, ``Status`` (``Rest``, ``CC_Chg``, ``CC_DChg``, ``CV_Chg``...),
``Time`` (s since the step started), ``Voltage`` (V), ``Current(mA)`` (negative on discharge) and ``Timestamp``
(the cycler PC's clock; time-zone aware in .ndax, local in .nda). Time since the log's start is the step's start
stamp plus the time within the step: stamps alone have 1 s resolution in old .nda files.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pandas as pd

from opir.core.errors import DataError
from opir.formats.potentiostat import PotentiostatLog, from_columns

COLUMNS = ("Step_Index", "Status", "Time", "Voltage", "Current(mA)", "Timestamp")


def read_neware(path: str | Path, time_zone: dt.tzinfo = dt.UTC) -> PotentiostatLog:
    """Read a Neware ``.nda``/``.ndax``; ``time_zone`` is the zone of naive (``.nda``) time stamps."""
    import NewareNDA  # imported here: only ingest of Neware files needs it

    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: cannot read potentiostat log: no such file")
    try:
        table = NewareNDA.read(str(path))
    except Exception as exc:  # NewareNDA raises struct errors, KeyError, zipfile errors, ...
        raise DataError(f"{path}: unreadable Neware file ({type(exc).__name__}: {exc})") from exc
    missing = [c for c in COLUMNS if c not in table.columns]
    if missing:
        raise DataError(f"{path}: Neware record without {', '.join(missing)}; columns present: "
                        f"{', '.join(map(str, table.columns))}")  # fmt: skip
    if len(table) < 2:
        raise DataError(f"{path}: {len(table)} data record(s); at least 2 are needed to interpolate")
    try:
        stamps = pd.to_datetime(table["Timestamp"])
        stamps = stamps.dt.tz_localize(time_zone) if stamps.dt.tz is None else stamps
        stamps = stamps.dt.tz_convert("UTC")
        step_time = np.asarray(table["Time"], dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise DataError(f"{path}: Neware time stamps unusable ({exc})") from exc
    first_of_step = np.flatnonzero(np.r_[True, np.diff(np.asarray(table["Step_Index"])) != 0])
    step_of_row = np.cumsum(np.isin(np.arange(len(table)), first_of_step)) - 1
    step_start_s = (stamps.iloc[first_of_step] - stamps.iloc[0]).dt.total_seconds().to_numpy()
    time_s = step_start_s[step_of_row] + step_time - step_time[first_of_step][step_of_row]
    status = table["Status"].astype(str)
    steps = ", ".join(dict.fromkeys(status))
    return from_columns(
        path,
        time_s=time_s,
        voltage_v=np.asarray(table["Voltage"], dtype=np.float64),
        current_ma=np.asarray(table["Current(mA)"], dtype=np.float64),
        started=stamps.iloc[0].to_pydatetime(),
        technique=f"Neware cycling ({steps})",
        rest=(status == "Rest").to_numpy(),
        source_format=f"Neware {path.suffix.lower() or '.nda'}",
    )
