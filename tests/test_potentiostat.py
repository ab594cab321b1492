"""Potentiostat logs: EC-Lab .mpt and plain CSV, interpolation at acquisition times, coverage and bad logs."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest

from opir.core.errors import DataError
from opir.formats.potentiostat import at_times, covers, read_log, read_mpt

MPT = """EC-Lab ASCII FILE
Nb header lines : 7

Galvanostatic Cycling with Potential Limitation
Acquisition started on : 03/02/2026 10:00:00.500
Electrode surface area : 0.001 cm\xb2
mode\ttime/s\tEwe/V\t<I>/mA\tcycle number
1\t0,0\t3,000\t-0,100\t0
1\t10,0\t2,500\t-0,100\t0
1\t20,0\t2,000\t-0,100\t0
2\t20,0\t2,000\t0,100\t0
2\t30,0\t2,200\t0,100\t0
"""


def test_mpt_header_time_zone_decimal_comma_and_latin1(tmp_path):
    path = tmp_path / "potentiostat.mpt"
    path.write_bytes(MPT.encode("latin-1"))
    log = read_mpt(path, dt.timezone(dt.timedelta(hours=1)))
    assert log.started_utc == dt.datetime(2026, 3, 2, 9, 0, 0, 500000, tzinfo=dt.UTC)  # March 2, local GMT+1
    np.testing.assert_allclose(log.time_s, [0, 10, 20, 20, 30])
    voltage, current = at_times(log, np.array([5.0, 20.0, 25.0]))
    np.testing.assert_allclose(voltage, [2.75, 2.0, 2.1])
    # at the technique change (two rows at 20 s) the value after the step holds from that instant on
    np.testing.assert_allclose(current, [-0.1, 0.1, 0.1])
    assert covers(log, np.array([-0.5, 0.0, 30.9, 31.5]), tolerance_s=1.0).tolist() == [True, True, True, False]


def test_csv_with_and_without_start(tmp_path):
    path = tmp_path / "potentiostat.csv"
    path.write_text("# started_utc: 2026-03-02T09:00:00+00:00\ntime_s,voltage_v,current_ma\n0,3.0,-0.1\n60,2.0,-0.1\n")
    log = read_log(path)
    assert log.started_utc == dt.datetime(2026, 3, 2, 9, tzinfo=dt.UTC)
    assert at_times(log, np.array([30.0]))[0][0] == pytest.approx(2.5)
    path.write_text("time_s,voltage_v,current_ma\n0,3.0,-0.1\n60,2.0,-0.1\n")
    assert read_log(path).started_utc is None


@pytest.mark.parametrize(
    ("name", "text", "reason"),
    [
        ("potentiostat.mpt", "some other export\n", "not an EC-Lab ASCII export"),
        ("potentiostat.mpt", "EC-Lab ASCII FILE\nNb header lines : 99\n", "Nb header lines"),
        ("potentiostat.mpt", MPT.replace("<I>/mA", "I_A"), "none of the columns"),
        ("potentiostat.mpt", MPT.replace("30,0\t2,200", "15,0\t2,200"), "line 12: time 15.0 s is earlier"),
        ("potentiostat.mpt", MPT.replace("2,500", "n/a"), "line 9: column 'Ewe/V' value 'n/a'"),
        ("potentiostat.mpt", MPT.replace("03/02/2026 10:00:00.500", "yesterday"), "cannot parse 'Acquisition"),
        ("potentiostat.csv", "t,v\n0,1\n", "missing column"),
        ("potentiostat.csv", "time_s,voltage_v,current_ma\n0,3.0,-0.1\n", "at least 2"),
        ("potentiostat.bin", "\x00\x01 not a log", "unknown binary potentiostat log"),
        ("potentiostat.res", "\x00\x01\x00\x00Standard Jet DB", "Arbin .res file"),
    ],
)
def test_bad_logs_are_named_with_line_and_reason(tmp_path, name, text, reason):
    path = tmp_path / name
    path.write_bytes(text.encode("latin-1"))
    with pytest.raises(DataError, match=reason) as info:
        read_log(path)
    assert name in str(info.value)
