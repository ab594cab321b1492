"""EC-Lab binary files (``.mpr``), read with galvani (echemdata/galvani, the field's maintained reader of this
undocumented format; docs/decisions.md "Instrument files (issue 21)").

galvani returns the data module as a numpy record array with EC-Lab's column names (``time/s``, ``Ewe/V``,
``I/mA``, ...) and the packed ``flags`` byte (``mode``: 3 = rest), and the acquisition start from the log module
(the potentiostat PC's local time, like the ``.mpt`` export's ``Acquisition started on``). The technique's name
is not decoded by galvani; the first byte of the settings module is EC-Lab's technique id, and the ids below are
the ones checked against the ``.mpt`` exports of the same files (tests/data/instrument/).
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np

from opir.core.errors import DataError
from opir.formats.potentiostat import (
    CURRENT_COLUMNS,
    ECLAB_REST_MODE,
    TIME_COLUMNS,
    VOLTAGE_COLUMNS,
    PotentiostatLog,
    from_columns,
)

#: EC-Lab technique ids (first byte of the settings module) -> the name its .mpt export writes.
TECHNIQUE_IDS = {
    0x0B: "Open Circuit Voltage",
    0x18: "Chronoamperometry / Chronocoulometry",
    0x19: "Chronopotentiometry",
    0x1C: "Wait",
    0x6C: "Linear Sweep Voltammetry",
}


def read_mpr(path: str | Path, time_zone: dt.tzinfo = dt.UTC) -> PotentiostatLog:
    """Read an EC-Lab ``.mpr``; ``time_zone`` is the zone of the potentiostat PC's clock."""
    from galvani.BioLogic import MPRfile  # imported here: only ingest of .mpr files needs it

    path = Path(path)
    try:
        with open(path, "rb") as handle:
            mpr = MPRfile(handle)
    except OSError as exc:
        raise DataError(f"{path}: cannot read potentiostat log: {exc.strerror or exc}") from exc
    except Exception as exc:  # galvani raises ValueError, AssertionError, NotImplementedError, struct errors...
        raise DataError(f"{path}: unreadable EC-Lab .mpr file ({type(exc).__name__}: {exc})") from exc
    data = mpr.data
    names = [n for n in (data.dtype.names or ()) if n != "flags"]
    time_col = next((c for c in TIME_COLUMNS if c in names), None)
    voltage_col = next((c for c in VOLTAGE_COLUMNS if c in names), None)
    current_col = next((c for c in CURRENT_COLUMNS if c in names), None)
    technique = _technique(mpr)
    if time_col is None or voltage_col is None:
        raise DataError(
            f"{path}: EC-Lab .mpr without a time and a voltage column (expected {TIME_COLUMNS[0]} and one of "
            f"{', '.join(VOLTAGE_COLUMNS)}); columns present: {', '.join(names) or 'none'}"
        )
    rest = mpr.get_flag("mode") == ECLAB_REST_MODE if "mode" in mpr.flags_dict else None
    if current_col is None and not (rest is not None and rest.size and rest.all()) and "Open Circuit" not in technique:
        raise DataError(
            f"{path}: EC-Lab .mpr ({technique}) without a current column ({', '.join(CURRENT_COLUMNS)}) although "
            f"the cell was not on open circuit; columns present: {', '.join(names)}"
        )
    started = None
    stamp = getattr(mpr, "timestamp", None)
    if stamp is not None:
        started = stamp.replace(tzinfo=time_zone).astimezone(dt.UTC)
    return from_columns(
        path,
        time_s=np.asarray(data[time_col], dtype=np.float64),
        voltage_v=np.asarray(data[voltage_col], dtype=np.float64),
        current_ma=None if current_col is None else np.asarray(data[current_col], dtype=np.float64),
        started=started,
        technique=technique,
        rest=rest,
        source_format="EC-Lab .mpr",
    )


def _technique(mpr) -> str:
    settings = next((m for m in mpr.modules if m["shortname"].strip() == b"VMP Set"), None)
    if settings is None or not settings["data"]:
        return "unknown"
    code = settings["data"][0]
    return TECHNIQUE_IDS.get(code, f"EC-Lab technique id {code:#04x}")
