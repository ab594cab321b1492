"""Ingest: real OPUS files against expected_facts.json, bad input of every kind, fuzzing, and whole runs."""

from __future__ import annotations

import datetime as dt
import json
import random
import shutil
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest
from conftest import REALDATA
from helpers import AXIS, START, synthetic_absorbance, write_mpt, write_run
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from opir.core import h5io
from opir.core.errors import DataError, OpusReadError
from opir.formats.opus_reader import parse_opus_datetime, parse_time_zone, read_opus_spectrum
from opir.formats.opus_writer import write_opus
from opir.ingest.runs import ingest_run_dir


def ingest(run_dir: Path, tmp_path: Path, **params):
    out, rejected = tmp_path / "out.h5", tmp_path / "out.rejected.tsv"
    result = ingest_run_dir(run_dir, out, rejected, params, "sys", "run01")
    return result, out, pd.read_csv(rejected, sep="\t")


# --------------------------------------------------------------------------------------------------------------
# Real files
# --------------------------------------------------------------------------------------------------------------
def test_real_files_match_expected_facts_or_are_rejected(realdata):
    facts = json.loads((realdata / "opus" / "expected_facts.json").read_text())["files"]
    assert len(facts) == 12
    read, rejected = 0, 0
    for relative, expected in facts.items():
        path = realdata / "opus" / relative
        if "a" not in expected["blocks"]:
            with pytest.raises(OpusReadError, match="no AB block") as info:
                read_opus_spectrum(path)
            assert str(path) in str(info.value)
            rejected += 1
            continue
        block = expected["blocks"]["a"]
        spectrum = read_opus_spectrum(path)
        assert spectrum.values.size == block["npt"]
        assert spectrum.wavenumber_cm1[0] == pytest.approx(block["x_first"], abs=1e-6)
        assert spectrum.wavenumber_cm1[-1] == pytest.approx(block["x_last"], abs=1e-6)
        for stat, value in (
            ("y_min", spectrum.values.min()),
            ("y_max", spectrum.values.max()),
            ("y_mean", spectrum.values.mean()),
            ("y_first", spectrum.values[0]),
            ("y_last", spectrum.values[-1]),
        ):
            assert value == pytest.approx(block[stat], rel=1e-5, abs=1e-9), (relative, stat)
        assert spectrum.sha256 == expected["sha256"]
        # the lean path (only the wanted blocks parsed) and brukeropus' full reader agree
        full = read_opus_spectrum(path, instrument=True)
        np.testing.assert_array_equal(full.values, spectrum.values)
        assert full.acquired_utc == spectrum.acquired_utc and full.instrument["ins"] == expected["params"]["ins"]
        day, month, year = block["dat"].split("/")
        local = spectrum.acquired_utc.astimezone(parse_time_zone(block["tim"].split("(GMT")[1].rstrip(")")))
        assert (local.day, local.month, local.year) == (int(day), int(month), int(year))
        assert local.strftime("%H:%M:%S") == block["tim"][:8]
        read += 1
    assert (read, rejected) == (10, 2)


def test_opus_time_zone_is_applied():
    assert parse_opus_datetime("03/05/2019", "13:34:44.641 (GMT-4)") == dt.datetime(
        2019, 5, 3, 17, 34, 44, 641000, tzinfo=dt.UTC
    )
    assert parse_opus_datetime("24/04/2014", "08:44:51.193 (GMT+2)").hour == 6
    assert parse_opus_datetime("24/04/2014", "08:44:51 (GMT+5:30)").minute == 14
    with pytest.raises(OpusReadError, match="no time zone"):
        parse_opus_datetime("24/04/2014", "08:44:51.193")
    zone = parse_time_zone("Europe/Paris")
    assert parse_opus_datetime("24/04/2014", "08:44:51.193", zone).hour == 6
    with pytest.raises(OpusReadError, match="not a valid date"):
        parse_opus_datetime("31/02/2014", "08:44:51.193 (GMT+0)")


# --------------------------------------------------------------------------------------------------------------
# Bad single files
# --------------------------------------------------------------------------------------------------------------
@pytest.fixture
def good_file(tmp_path) -> Path:
    path = tmp_path / "good.0"
    write_opus(
        path,
        {"AB": synthetic_absorbance(1)[0]},
        first_x_cm1=AXIS[0],
        last_x_cm1=AXIS[1],
        acquired=START,
        sample_name="x",
    )
    return path


def test_bad_files_are_named_with_their_reason(tmp_path, good_file):
    raw = good_file.read_bytes()
    cases = {
        "empty.0": (b"", "empty file"),
        "text.0": (b"time/s\tEwe/V\n0\t3.0\n", "not an OPUS file"),
        "short.0": (raw[:16], "truncated OPUS file"),
        "truncated.0": (raw[: len(raw) - 2000], "truncated|no AB block|corrupted"),
    }
    for name, (payload, reason) in cases.items():
        path = tmp_path / name
        path.write_bytes(payload)
        with pytest.raises(OpusReadError, match=reason) as info:
            read_opus_spectrum(path)
        assert name in str(info.value)
    with pytest.raises(OpusReadError, match="cannot read file"):
        read_opus_spectrum(tmp_path / "missing.0")
    with pytest.raises(OpusReadError, match="not a spectral block"):
        read_opus_spectrum(good_file, block="igsm")


def test_truncated_files_say_so_with_bytes_present_and_expected(tmp_path, good_file):
    raw = good_file.read_bytes()
    # inside the header, the directory, a data block and the last (sample-origin) block: all "truncated"
    for cut in (20, 300, 1000, len(raw) - 3):
        path = tmp_path / f"cut_{cut}.0"
        path.write_bytes(raw[:cut])
        with pytest.raises(OpusReadError) as info:
            read_opus_spectrum(path)
        expected = 24 if cut < 24 else 504 if cut < 100 else len(raw)
        assert str(info.value) == f"{path}: truncated OPUS file ({cut} bytes present, {expected} expected)"


def test_truncated_real_file_is_reported_as_truncated(tmp_path, realdata):
    raw = (realdata / "opus" / "opusreader2" / "issue81_A1.1.0").read_bytes()
    path = tmp_path / "issue81_cut.0"
    half = len(raw) // 2
    path.write_bytes(raw[:half])
    with pytest.raises(OpusReadError, match=rf"issue81_cut.0: truncated OPUS file \({half} bytes present, {len(raw)} "):
        read_opus_spectrum(path)


def test_block_names_ignore_case_and_bad_names_name_the_file(good_file):
    reference = read_opus_spectrum(good_file, block="AB").values
    for name in ("ab", "Ab", "A", " a "):
        np.testing.assert_array_equal(read_opus_spectrum(good_file, block=name).values, reference)
    with pytest.raises(OpusReadError, match="'igsm' is not a spectral block") as info:
        read_opus_spectrum(good_file, block="igsm")
    assert str(info.value).startswith(f"{good_file}: ")


def test_corrupted_header_is_named(tmp_path, good_file):
    raw = bytearray(good_file.read_bytes())
    raw[16:20] = (10**6).to_bytes(4, "little")  # a million directory entries
    path = tmp_path / "header.0"
    path.write_bytes(bytes(raw))
    with pytest.raises(OpusReadError, match=r"header.0: corrupted OPUS header \(directory at byte 24 with 1000000"):
        read_opus_spectrum(path)


def test_other_block_types_can_be_configured(tmp_path):
    path = tmp_path / "sc.0"
    single = np.linspace(0.1, 1.0, 50, dtype=np.float32)
    write_opus(path, {"ScSm": single}, first_x_cm1=2000.0, last_x_cm1=800.0, acquired=START, sample_name="x")
    with pytest.raises(OpusReadError, match="no AB block"):
        read_opus_spectrum(path)
    np.testing.assert_array_equal(read_opus_spectrum(path, block="ScSm").values, single)


def _mutations(raw: bytes):
    n = len(raw)
    return st.one_of(
        st.integers(0, n - 1).map(lambda cut: raw[:cut]),
        st.lists(st.tuples(st.integers(0, n - 1), st.integers(0, 255)), min_size=1, max_size=16).map(
            lambda edits: _edit(raw, edits)
        ),
        # header and directory fields (offsets, sizes, counts) are where a reader can be led astray
        st.tuples(st.sampled_from([12, 16, 20, *range(24, 24 + 12 * 8, 4)]), st.integers(0, 2**32 - 1)).map(
            lambda edit: raw[: edit[0]] + edit[1].to_bytes(4, "little") + raw[edit[0] + 4 :]
        ),
    )


def _edit(raw: bytes, edits) -> bytes:
    out = bytearray(raw)
    for position, value in edits:
        out[position] = value
    return bytes(out)


def test_fuzzed_opus_files_raise_only_opus_read_error(tmp_path_factory):
    """A few thousand mutated files (a generated one and, when ../shared is there, a small real one): only
    OpusReadError, never another exception or a hang (hypothesis' deadline)."""
    folder = tmp_path_factory.mktemp("fuzz")
    real = REALDATA / "opus" / "opusreader2" / "issue81_A1.1.0"
    sources = [real] if real.exists() else []
    generated = folder / "generated.0"
    write_opus(
        generated,
        {"AB": synthetic_absorbance(1)[0], "ScSm": synthetic_absorbance(1, 1)[0]},
        first_x_cm1=AXIS[0],
        last_x_cm1=AXIS[1],
        acquired=START,
        sample_name="fuzz",
    )
    sources.append(generated)
    target = folder / "mutant.0"
    outcomes = {"read": 0, "rejected": 0}
    for source in sources:

        @settings(
            max_examples=1000, deadline=1000, derandomize=True, database=None, suppress_health_check=list(HealthCheck)
        )
        @given(_mutations(source.read_bytes()))
        def check(payload):
            target.write_bytes(payload)
            try:
                spectrum = read_opus_spectrum(target)
            except OpusReadError as exc:
                assert str(target) in str(exc)
                outcomes["rejected"] += 1
            else:
                assert spectrum.values.size == spectrum.wavenumber_cm1.size >= 2
                assert np.all(np.isfinite(spectrum.values))
                outcomes["read"] += 1

        check()
    assert outcomes["rejected"] > 100 * len(sources) and outcomes["read"] > 0, outcomes


# --------------------------------------------------------------------------------------------------------------
# Whole runs
# --------------------------------------------------------------------------------------------------------------
def test_run_is_ingested_with_voltage_at_acquisition_time(tmp_path):
    run_dir = tmp_path / "raw" / "sys" / "run01"
    paths = write_run(run_dir, n=5)
    result, out, rejected = ingest(run_dir, tmp_path)
    assert rejected.empty
    with h5py.File(out, "r") as handle:
        assert handle["spectra"].attrs["signal"] == "absorbance"
        assert handle["spectra/absorbance"].shape == (5, AXIS[2])
        assert handle["spectra/wavenumber_cm1"].attrs["units"] == "1/cm"
        assert handle["spectra/wavenumber_cm1"][0] == AXIS[0]  # raw axes stay as the file has them
        np.testing.assert_allclose(handle["spectra/elapsed_s"][()], [0, 30, 60, 90, 120])
        voltage = handle["voltage_v"][()]
        assert handle["voltage_v"].attrs["units"] == "V"
        sources = h5io.read_strings(handle["source_file"])
        assert list(sources) == [p.name for p in paths]
        assert h5io.read_strings(handle["source_sha256"])[0] == h5io.sha256_file(paths[0])
        assert handle.attrs["producer_rule"] == "ingest"
    # the log ramps 3.0 V -> 0.1 V linearly over its span; the spectra sit 10 s + 30 s * i after its start
    duration = 10 + 5 * 30 + 30
    expected = 3.0 - 2.9 * (10 + 30 * np.arange(5)) / duration
    np.testing.assert_allclose(voltage, expected, atol=1e-3)
    np.testing.assert_allclose(result.current_ma, -0.1)


def test_time_sources_agree_and_interval_can_replace_opus_times(tmp_path):
    run_dir = tmp_path / "raw" / "sys" / "run01"
    write_run(run_dir, n=4)
    by_opus, _, _ = ingest(run_dir, tmp_path, time_source="opus")
    by_manifest, _, _ = ingest(run_dir, tmp_path, time_source="manifest")
    by_interval, _, _ = ingest(run_dir, tmp_path, time_source="interval", interval_s=30.0)
    assert by_opus.acquired_utc == by_manifest.acquired_utc == by_interval.acquired_utc
    from_log, _, _ = ingest(
        run_dir, tmp_path, time_source="interval", interval_s=30.0, interval_start="log_start", interval_offset_s=10.0
    )
    assert from_log.acquired_utc == by_opus.acquired_utc


def test_bad_files_of_a_run_fail_or_are_skipped_with_reasons(tmp_path):
    run_dir = tmp_path / "raw" / "sys" / "run01"
    paths = write_run(run_dir, n=8, manifest=False)
    paths[2].write_bytes(b"")
    paths[3].write_bytes(b"not opus at all")
    paths[4].write_bytes(paths[4].read_bytes()[:700])
    write_opus(
        paths[5],
        {"AB": synthetic_absorbance(1, axis=(2400.0, 600.0, 500))[0]},
        first_x_cm1=2400.0,
        last_x_cm1=600.0,
        acquired=START + dt.timedelta(seconds=160),
        sample_name="other axis",
    )
    write_opus(
        paths[6],
        {"AB": synthetic_absorbance(1)[0]},
        first_x_cm1=AXIS[0],
        last_x_cm1=AXIS[1],
        acquired=START + dt.timedelta(seconds=40),
        sample_name="duplicate time",
        utc_offset_hours=1.0,
    )
    with pytest.raises(DataError) as info:
        ingest(run_dir, tmp_path)
    message = str(info.value)
    for index, reason in (
        (2, "empty file"),
        (3, "not an OPUS file"),
        (4, "spec_00004.0"),
        (5, "differs from"),
        (6, "time stamp"),
    ):
        assert paths[index].name in message and reason in message, (index, message)
    assert "5 bad file(s)" in message
    result, out, rejected = ingest(run_dir, tmp_path, on_bad_file="skip")
    assert len(result.spectra) == 3 and len(rejected) == 5
    assert set(rejected["file"].map(lambda p: Path(p).name)) == {paths[i].name for i in range(2, 7)}
    assert rejected["reason"].str.len().min() > 10
    with h5py.File(out, "r") as handle:
        assert list(handle["position_in_run"][()]) == [0, 1, 7]
        assert handle.attrs["n_rejected"] == 5


def test_log_that_does_not_cover_the_spectra_is_reported(tmp_path):
    run_dir = tmp_path / "raw" / "sys" / "run01"
    paths = write_run(run_dir, n=6)
    write_mpt(run_dir / "potentiostat.mpt", START, 100.0)  # covers only the first 4 spectra (10..100 s)
    with pytest.raises(DataError, match="outside the potentiostat log") as info:
        ingest(run_dir, tmp_path)
    assert paths[4].name in str(info.value) and paths[3].name not in str(info.value)
    result, _, rejected = ingest(run_dir, tmp_path, on_bad_file="skip")
    assert len(result.spectra) == 4 and len(rejected) == 2


def test_backwards_time_stamps_in_lexical_order_are_rejected(tmp_path):
    run_dir = tmp_path / "raw" / "sys" / "run01"
    paths = write_run(run_dir, n=4, manifest=False)
    # spectrum 2 claims to be older than spectrum 1
    write_opus(
        paths[2],
        {"AB": synthetic_absorbance(1)[0]},
        first_x_cm1=AXIS[0],
        last_x_cm1=AXIS[1],
        acquired=START,
        sample_name="x",
    )
    with pytest.raises(DataError, match="earlier than"):
        ingest(run_dir, tmp_path)


def test_manifest_order_and_unlisted_files(tmp_path):
    run_dir = tmp_path / "raw" / "sys" / "run01"
    paths = write_run(run_dir, n=4)
    shutil.copy(paths[0], run_dir / "spectra" / "stray.0")
    with pytest.raises(DataError, match="stray.0: not listed in"):
        ingest(run_dir, tmp_path)
    (run_dir / "spectra" / "stray.0").unlink()
    manifest = pd.read_csv(run_dir / "manifest.tsv", sep="\t")
    manifest.loc[1, "index"] = 0
    manifest.to_csv(run_dir / "manifest.tsv", sep="\t", index=False)
    with pytest.raises(DataError, match="index 0 appears more than once"):
        ingest(run_dir, tmp_path)


def test_run_without_spectra_or_log_is_an_error(tmp_path):
    with pytest.raises(DataError, match="no spectra"):
        ingest(tmp_path / "nothing", tmp_path)
    run_dir = tmp_path / "raw" / "sys" / "run01"
    write_run(run_dir, n=3)
    (run_dir / "potentiostat.mpt").unlink()
    with pytest.raises(DataError, match="no potentiostat log"):
        ingest(run_dir, tmp_path)


def test_fuzz_is_repeatable_without_real_data(tmp_path, good_file):
    """The same guarantee on random byte soups and random truncations, independent of ../shared."""
    rng = random.Random(1)
    raw = good_file.read_bytes()
    target = tmp_path / "m.0"
    read = refused = 0
    for _ in range(300):
        payload = bytearray(raw[: rng.randrange(len(raw))]) if rng.random() < 0.3 else bytearray(raw)
        for _ in range(rng.randrange(0, 30)):
            if payload:
                payload[rng.randrange(len(payload))] = rng.randrange(256)
        target.write_bytes(bytes(payload))
        try:
            spectrum = read_opus_spectrum(target)
        except OpusReadError as err:
            refused += 1
            assert str(target) in str(err), f"the error does not name the file: {err}"
        else:  # a mutation that leaves the file readable must still give a whole, finite spectrum
            read += 1
            assert spectrum.values.shape == spectrum.wavenumber_cm1.shape and spectrum.values.size > 0
            assert np.isfinite(spectrum.wavenumber_cm1).all()
    assert read > 0 and refused > 0, f"the fuzzer exercised only one path ({read} read, {refused} refused)"
