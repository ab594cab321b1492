"""Real instrument files (tests/data/instrument/, SOURCES.md there): EC-Lab .mpr and its .mpt export, open-circuit
logs, decimal-comma exports, Gamry .DTA, Neware .nda/.ndax, text tables through the column mapping, run folders
with a log that cannot be read, and mutated files that must raise only the project's own error."""

from __future__ import annotations

import datetime as dt
import random
import shutil
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest
from helpers import write_run

from opir.core.config import with_defaults
from opir.core.errors import DataError
from opir.formats.potentiostat import at_times, open_circuit_at, read_log, sniff_format
from opir.ingest.runs import ingest_run_dir

DATA = Path(__file__).parent / "data" / "instrument"
CSV_DEFAULT = with_defaults("ingest", {})["potentiostat_csv"]


def _mapping(**changes):
    mapping = {key: (dict(value) if isinstance(value, dict) else value) for key, value in CSV_DEFAULT.items()}
    for key, value in changes.items():
        mapping[key] = {**mapping[key], **value} if isinstance(value, dict) else value
    return mapping


# --------------------------------------------------------------------------------------------------------------
# EC-Lab
# --------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["eclab_ocv", "eclab_cp"])
def test_mpr_and_its_mpt_export_give_the_same_record(name):
    binary, text = read_log(DATA / f"{name}.mpr"), read_log(DATA / f"{name}.mpt")
    assert (binary.source_format, text.source_format) == ("EC-Lab .mpr", "EC-Lab .mpt")
    assert binary.technique == text.technique and binary.started_utc == text.started_utc
    # the export writes float32 values with 8 significant digits and times with 16
    np.testing.assert_allclose(binary.time_s, text.time_s, rtol=1e-12)
    np.testing.assert_allclose(binary.current_ma, text.current_ma, rtol=1e-7)
    np.testing.assert_array_equal(binary.open_circuit, text.open_circuit)
    # eclab_cp.mpt has <Ewe>/V = 0 from its 5th row on, while its P/W column (= Ewe x I) shows the .mpr's values
    exported = text.voltage_v != 0
    assert exported.sum() == (4 if name == "eclab_cp" else binary.time_s.size)
    np.testing.assert_allclose(binary.voltage_v[exported], text.voltage_v[exported], rtol=1e-7)
    if name == "eclab_cp":
        power_w = pd.read_csv(DATA / "eclab_cp.mpt", sep="\t", skiprows=56, encoding="latin-1")["P/W"]
        np.testing.assert_allclose(binary.voltage_v * binary.current_ma / 1e3, power_w, rtol=1e-5)


def test_open_circuit_log_has_zero_current_flagged_and_its_technique():
    log = read_log(DATA / "eclab_ocv.mpr", dt.timezone(dt.timedelta(hours=1)))
    assert log.technique == "Open Circuit Voltage" and log.time_s.size == 602
    assert log.started_utc == dt.datetime(2020, 1, 16, 13, 13, 34, tzinfo=dt.UTC)  # PC clock at GMT+1
    assert np.all(log.current_ma == 0) and np.all(log.open_circuit)
    assert log.voltage_v[0] == pytest.approx(0.25594452)
    working = read_log(DATA / "eclab_cp.mpt")
    assert working.technique == "Chronopotentiometry" and not working.open_circuit.any()
    assert working.current_ma[0] == pytest.approx(-99.888) and working.time_s[0] == pytest.approx(328.3641917)


def test_decimal_comma_export_reads_like_the_original(tmp_path):
    lines = (DATA / "eclab_ocv.mpt").read_text(encoding="latin-1").splitlines()
    n_header = 49
    comma = lines[:n_header] + [line.replace(".", ",") for line in lines[n_header:]]
    path = tmp_path / "ocv_fr.mpt"
    path.write_text("\n".join(comma) + "\n", encoding="latin-1")
    original, converted = read_log(DATA / "eclab_ocv.mpt"), read_log(path)
    np.testing.assert_array_equal(converted.voltage_v, original.voltage_v)
    np.testing.assert_array_equal(converted.time_s, original.time_s)


def test_missing_current_of_a_working_technique_lists_columns_without_trailing_separator(tmp_path):
    text = (DATA / "eclab_cp.mpt").read_text(encoding="latin-1")
    for name in ("\tI/mA\t", "\tcontrol/mA\t"):
        text = text.replace(name, name.replace("mA", "A"), 1)
    path = tmp_path / "cp.mpt"
    path.write_text(text, encoding="latin-1")
    with pytest.raises(DataError, match="technique 'Chronopotentiometry' is not open circuit") as info:
        read_log(path)
    message = str(info.value)
    assert message.startswith(str(path)) and message.endswith("Ewe-Ece/V")  # no ', ' left by the trailing tab


def test_format_is_chosen_by_content_not_extension(tmp_path):
    for source, kind in (("eclab_ocv.mpr", "mpr"), ("eclab_ocv.mpt", "mpt"), ("gamry_ocp_data.DTA", "dta")):
        renamed = tmp_path / f"log_{kind}.txt"
        shutil.copy(DATA / source, renamed)
        assert sniff_format(renamed) == kind
        np.testing.assert_array_equal(read_log(renamed).voltage_v, read_log(DATA / source).voltage_v)


# --------------------------------------------------------------------------------------------------------------
# Gamry and Neware
# --------------------------------------------------------------------------------------------------------------
def test_gamry_open_circuit_and_chronoamperometry():
    ocp = read_log(DATA / "gamry_ocp_data.DTA")
    assert ocp.technique.startswith("CORPOT") and np.all(ocp.open_circuit) and np.all(ocp.current_ma == 0)
    assert ocp.started_utc == dt.datetime(2020, 2, 10, 17, 18, tzinfo=dt.UTC)  # '10-2-2020': day first
    assert ocp.time_s.size == 21 and ocp.voltage_v[0] == pytest.approx(0.0205436)
    chrono = read_log(DATA / "gamry_chronoa_data.DTA")
    assert chrono.technique.startswith("CHRONOA") and not chrono.open_circuit.any()
    assert chrono.started_utc == dt.datetime(2019, 3, 10, 12, tzinfo=dt.UTC)  # '3/10/2019': month first
    assert chrono.current_ma[0] == pytest.approx(-2.34197e-05)  # Im is in A


@pytest.mark.parametrize(
    ("name", "rows", "started"),
    [
        ("neware_46_1_5_60_ZZZZZZZZTEST_20250924092922.ndax", 84, dt.datetime(2025, 9, 24, 9, 29, 55, 74000)),
        ("neware_new_nda_file.nda", 439, dt.datetime(2020, 3, 25, 11, 16, 50)),
    ],
)
def test_neware_cycling_with_rest_steps(name, rows, started):
    log = read_log(DATA / name)
    assert log.time_s.size == rows and np.all(np.diff(log.time_s) >= 0)
    assert log.started_utc == started.replace(tzinfo=dt.UTC)
    assert 0 < log.open_circuit.sum() < rows  # rest steps flagged, charge and discharge not
    assert "Rest" in log.technique and "CC_Chg" in log.technique
    np.testing.assert_array_equal(log.current_ma[log.open_circuit], 0.0)


# --------------------------------------------------------------------------------------------------------------
# Text tables through the column mapping
# --------------------------------------------------------------------------------------------------------------
MACCOR = (
    "Today's Date 03/02/2026  Date of Test: 03/02/2026\n"
    "Filename: C:\\Data\\cell01.001  Procedure: formation.000\n"
    "Rec#\tCycle P\tCycle C\tStep\tTest (Min)\tStep (Min)\tAmp-hr\tWatt-hr\tAmps\tVolts\tState\tES\tDPt Time\n"
    "1\t0\t1\t1\t0.0000\t0.0000\t0.0000\t0.0000\t0.0000\t3.0012\tR\t0\t03/02/2026 09:00:00\n"
    "2\t0\t1\t2\t0.5000\t0.0000\t0.0000\t0.0000\t-0.0005\t2.9000\tD\t0\t03/02/2026 09:00:30\n"
    "3\t0\t1\t2\t1.0000\t0.5000\t0.0000\t0.0000\t-0.0005\t2.8500\tD\t0\t03/02/2026 09:01:00\n"
)
BDF = "Test Time / s,Voltage / V,Current / A,Cycle Count / 1\n0,3.001,0,0\n30,2.9,-0.0005,0\n60,2.85,-0.0005,0\n"
ARBIN = (
    "Data_Point;Test_Time(s);Step_Time(s);Step_Index;Current(A);Voltage(V);\n"
    "1;0,0;0,0;1;0;3,0012;\n2;30,0;0,0;2;-0,0005;2,9000;\n3;60,0;30,0;2;-0,0005;2,8500;\n"
)


@pytest.mark.parametrize(
    ("text", "mapping"),
    [
        (
            MACCOR,
            _mapping(
                time={"column": "Test (Min)", "unit": "min"},
                voltage={"column": "Volts"},
                current={"column": "Amps", "unit": "A"},
                skip_lines=2,
            ),
        ),  # fmt: skip
        (
            BDF,
            _mapping(
                time={"column": "Test Time / s"},
                voltage={"column": "Voltage / V"},
                current={"column": "Current / A", "unit": "A"},
            ),
        ),  # fmt: skip
        (
            ARBIN,
            _mapping(
                time={"column": "Test_Time(s)"},
                voltage={"column": "Voltage(V)"},
                current={"column": "Current(A)", "unit": "A"},
            ),
        ),  # fmt: skip
    ],
    ids=["maccor_text_export", "battery_data_format_csv", "arbin_csv_decimal_comma"],
)
def test_text_exports_read_through_the_column_mapping(tmp_path, text, mapping):
    path = tmp_path / "potentiostat.txt"
    path.write_text(text, encoding="latin-1")
    log = read_log(path, csv_format=mapping)
    np.testing.assert_allclose(log.time_s, [0, 30, 60])
    np.testing.assert_allclose(log.voltage_v[1:], [2.9, 2.85])
    np.testing.assert_allclose(log.current_ma, [0, -0.5, -0.5])


def test_open_circuit_text_log_and_mapping_errors(tmp_path):
    path = tmp_path / "potentiostat.csv"
    path.write_text("t_min;U_mV\n0;3001,5\n1;3000,5\n")
    mapping = _mapping(
        time={"column": "t_min", "unit": "min"}, voltage={"column": "U_mV", "unit": "mV"}, current={"column": None}
    )
    log = read_log(path, csv_format=mapping)
    np.testing.assert_allclose(log.voltage_v, [3.0015, 3.0005])
    np.testing.assert_allclose(log.time_s, [0, 60])
    assert log.open_circuit.all() and not log.current_ma.any()
    path.write_text("t,v,i,\n0,1,0,\n1,1,0,\n")
    with pytest.raises(DataError) as info:
        read_log(path)
    assert str(info.value) == (
        f"{path}: line 1: missing column(s) 'time_s', 'voltage_v', 'current_ma'; columns present: 't', 'v', 'i'; "
        "mapping expected (ingest.potentiostat_csv): time 'time_s' [s], voltage 'voltage_v' [V], current "
        "'current_ma' [mA], 0 preamble line(s) skipped"
    )
    path.write_text("Instrument: X\nSample: Y\ntime_s,voltage_v,current_ma\n0,3,0\n1,3,0\n")
    preamble = "potentiostat.csv: cannot read as a table .* ingest.potentiostat_csv.skip_lines"
    with pytest.raises(DataError, match=preamble):
        read_log(path)
    assert read_log(path, csv_format=_mapping(skip_lines=2)).time_s.size == 2


# --------------------------------------------------------------------------------------------------------------
# Run folders
# --------------------------------------------------------------------------------------------------------------
def _ingest(run_dir, tmp_path, **params):
    return ingest_run_dir(run_dir, tmp_path / "out.h5", tmp_path / "rejected.tsv", params, "sys", "run01")


def test_run_with_a_real_mpr_log_records_technique_and_open_circuit(tmp_path):
    log = read_log(DATA / "eclab_ocv.mpr")
    run_dir = tmp_path / "raw" / "sys" / "run01"
    write_run(run_dir, n=4, started=log.started_utc)
    (run_dir / "potentiostat.mpt").unlink()
    shutil.copy(DATA / "eclab_ocv.mpr", run_dir / "potentiostat.mpr")
    result = _ingest(run_dir, tmp_path)
    offsets = 10 + 30 * np.arange(4)
    np.testing.assert_allclose(result.voltage_v, at_times(log, offsets)[0])
    assert result.open_circuit.all() and not result.current_ma.any()
    with h5py.File(tmp_path / "out.h5", "r") as handle:
        assert handle.attrs["potentiostat_technique"] == "Open Circuit Voltage"
        assert handle.attrs["potentiostat_format"] == "EC-Lab .mpr"
        assert handle["open_circuit"][()].tolist() == [True] * 4
    assert open_circuit_at(log, np.array([-5.0, 1e9])).tolist() == [True, True]


def test_run_folder_names_the_log_it_cannot_read_and_the_readable_formats(tmp_path):
    run_dir = tmp_path / "raw" / "sys" / "run01"
    write_run(run_dir, n=3)
    (run_dir / "potentiostat.mpt").unlink()
    (run_dir / "potentiostat.xyz").write_bytes(b"\x00\x01\x02 binary")
    with pytest.raises(DataError, match=r"potentiostat.xyz: the run's potentiostat log cannot be read: unknown binary"
                       r".*readable: EC-Lab .mpt"):  # fmt: skip
        _ingest(run_dir, tmp_path)
    (run_dir / "potentiostat.xyz").unlink()
    shutil.copy(DATA / "eclab_cp.mpr", run_dir / "cell01_C01.mpr")
    with pytest.raises(DataError, match=r"no potentiostat log named potentiostat.<ext>; found cell01_C01.mpr"):
        _ingest(run_dir, tmp_path)
    shutil.copy(DATA / "eclab_cp.mpr", run_dir / "potentiostat.mpr")
    shutil.copy(DATA / "eclab_cp.mpt", run_dir / "potentiostat.mpt")
    with pytest.raises(DataError, match=r"several potentiostat logs \(potentiostat.mpr, potentiostat.mpt\)"):
        _ingest(run_dir, tmp_path)


# --------------------------------------------------------------------------------------------------------------
# Fuzzing
# --------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "name",
    [
        "eclab_cp.mpr",
        "eclab_ocv.mpt",
        "gamry_chronoa_data.DTA",
        "neware_46_1_5_60_ZZZZZZZZTEST_20250924092922.ndax",
        "neware_new_nda_file.nda",
    ],  # fmt: skip
)
def test_mutated_instrument_files_raise_only_data_error_naming_the_file(tmp_path, name):
    rng = random.Random(name)
    raw = (DATA / name).read_bytes()
    target = tmp_path / f"mutant{Path(name).suffix}"
    read = refused = 0
    for _ in range(60):
        payload = bytearray(raw[: rng.randrange(1, len(raw))]) if rng.random() < 0.4 else bytearray(raw)
        for _ in range(rng.randrange(1, 12)):
            payload[rng.randrange(len(payload))] = rng.randrange(256)
        target.write_bytes(bytes(payload))
        try:
            log = read_log(target)
        except DataError as err:
            refused += 1
            assert str(target) in str(err), f"the error does not name the file: {err}"
        else:
            read += 1
            assert log.time_s.size == log.voltage_v.size == log.current_ma.size >= 2
            assert np.all(np.isfinite(log.voltage_v)) and np.all(np.diff(log.time_s) >= 0)
    assert refused > 0, f"the fuzzer never hit a refusal ({read} read)"
