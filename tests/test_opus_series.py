"""Time-resolved OPUS series files: the writer checked with brukeropus' independent parser and with OpIR's reader,
their layout, bad input, per-spectrum problems, truncation and fuzzing."""

from __future__ import annotations

import datetime as dt
import random
import struct

import numpy as np
import pytest
from brukeropus import read_opus
from brukeropus.file.parse import parse_directory, parse_header, parse_params

from opir.core.errors import DataError, OpusReadError
from opir.formats.opus_reader import read_opus_file, read_opus_series, read_opus_spectrum
from opir.formats.opus_writer import (
    SERIES_HEADER,
    SERIES_INFO,
    block_type_code,
    opus_series_bytes,
    write_opus,
    write_opus_series,
)

START = dt.datetime(2026, 3, 4, 5, 6, 7, 891000, tzinfo=dt.UTC)
# irregular steps with sub-millisecond parts: the times must come back to the microsecond
TIMES = [START + dt.timedelta(seconds=s) for s in (0.0, 30.25, 60.5, 95.000125, 3600.0, 86400.75)]
AXIS = (4000.0, 600.0, 64)


def _spectra(n=6, npt=AXIS[2], seed=0):
    rng = np.random.default_rng(seed)
    return rng.uniform(-0.1, 1.9, (n, npt)).astype(np.float32), rng.uniform(0.0, 1.0, (n, npt)).astype(np.float32)


def _write(path, times=TIMES, **overrides):
    absorbance, single_channel = _spectra(len(times))
    params = dict(
        first_x_cm1=AXIS[0],
        last_x_cm1=AXIS[1],
        acquired=times,
        sample_name="cu_dmc run01",
        instrument={"INS": "OpIR simulator"},
        acquisition={"RES": 4.0, "NSS": 32, "PLF": "AB"},
        utc_offset_hours=2.0,
    )
    params.update(overrides)
    write_opus_series(path, {"AB": absorbance, "ScSm": single_channel}, **params)
    return absorbance, single_channel


def _blocks(raw):
    _, start, max_blocks, _ = parse_header(raw)
    return parse_directory(raw[start : start + 12 * max_blocks])


def _series_block_at(raw, key=(3, 3, 0, 4, 0, 2)):
    """Byte offset of the AB series block."""
    return next(offset for kind, _, offset in _blocks(raw) if kind == key)


def test_brukeropus_reads_the_series_back_exactly(tmp_path):
    path = tmp_path / "run01.0"
    absorbance, single_channel = _write(path)
    opus = read_opus(path)
    assert opus.series_keys == ["a", "sm"] and opus.data_keys == []
    assert np.array_equal(opus.a.y, absorbance) and np.array_equal(opus.sm.y, single_channel)
    assert np.array_equal(opus.a.x, np.linspace(*AXIS))
    assert opus.a.num_spectra == len(TIMES) and list(opus.a.nsn) == list(range(1, len(TIMES) + 1))
    offsets = [(t - START).total_seconds() for t in TIMES]
    np.testing.assert_allclose(opus.a.srt, offsets, rtol=0, atol=1e-9)
    assert opus.a.datetime == dt.datetime(2026, 3, 4, 7, 6, 7, 891000)  # local time at GMT+2
    assert opus.a.tim == "07:06:07.891 (GMT+2)" and opus.a.dat == "04/03/2026"
    assert opus.params.snm == "cu_dmc run01" and opus.params.ins == "OpIR simulator" and opus.params.nss == 32
    assert opus.unknown_blocks == [] and opus.parse_error_blocks == []
    assert opus.unmatched_data_blocks == [] and opus.unmatched_data_status_blocks == []


def test_opir_reads_every_spectrum_with_its_own_utc_time(tmp_path):
    path = tmp_path / "run01.0"
    absorbance, single_channel = _write(path)
    contents = read_opus_series(path, instrument=True)
    assert contents.series and contents.stored == len(TIMES) and contents.bad == {}
    assert [s.acquired_utc for s in contents.spectra] == TIMES  # DAT/TIM + SRT, in UTC, to the microsecond
    assert [s.series_index for s in contents.spectra] == list(range(len(TIMES)))
    assert contents.spectra[3].source == f"{path}[3]" and contents.spectra[3].path == str(path)
    for row, spectrum in zip(absorbance, contents.spectra, strict=True):
        assert np.array_equal(spectrum.values, row.astype(np.float64)) and spectrum.block == "a"
        assert np.array_equal(spectrum.wavenumber_cm1, np.linspace(*AXIS))
    assert contents.spectra[0].instrument == {"ins": "OpIR simulator", "snm": "cu_dmc run01", "res": 4.0, "nss": 32}
    single = read_opus_series(path, block="ScSm")
    assert np.array_equal(np.stack([s.values for s in single.spectra]), single_channel.astype(np.float64))
    # read_opus_file reads either kind of file
    assert [s.acquired_utc for s in read_opus_file(path).spectra] == TIMES
    one = tmp_path / "one.0"
    write_opus(one, {"AB": absorbance[0]}, first_x_cm1=AXIS[0], last_x_cm1=AXIS[1], acquired=START, sample_name="x")
    contents = read_opus_file(one)
    assert not contents.series and contents.stored == 1 and contents.spectra[0].series_index is None
    assert contents.spectra[0].source == str(one)


def test_the_wrong_reader_says_which_one_to_use(tmp_path):
    path = tmp_path / "run01.0"
    _write(path)
    with pytest.raises(OpusReadError, match=r"run01.0: block 'a' is a time-resolved series of 6 spectra; read it"):
        read_opus_spectrum(path)
    one = tmp_path / "one.0"
    write_opus(one, {"AB": _spectra(1)[0][0]}, first_x_cm1=4000.0, last_x_cm1=600.0, acquired=START, sample_name="x")
    with pytest.raises(OpusReadError, match=r"one.0: no AB series block \('a'\); data blocks present: a \(Absorbance"):
        read_opus_series(one)
    with pytest.raises(OpusReadError, match="run01.0: no TR series block"):
        read_opus_series(path, block="TR")


def test_layout_header_records_and_block_types(tmp_path):
    path = tmp_path / "run01.0"
    absorbance, _ = _write(path)
    raw = path.read_bytes()
    kinds = [kind for kind, _, _ in _blocks(raw)]
    # ScSm series and status, then AB, each with c5 = 2; then the parameter blocks
    assert kinds[1:5] == [(3, 1, 0, 1, 0, 2), (3, 1, 1, 1, 0, 2), (3, 3, 0, 4, 0, 2), (3, 3, 1, 4, 0, 2)]
    assert block_type_code(3, 3, 0, 4, 0, 2) == 4111 | (2 << 19)
    at = _series_block_at(raw)
    version, n, offset, data_size, info_size, n_store = SERIES_HEADER.unpack_from(raw, at)
    assert (version, n, offset, data_size, info_size, n_store) == (0, 6, 32, 4 * AXIS[2], 152, 1)
    assert SERIES_INFO.itemsize == 152 and struct.unpack_from("<ii", raw, at + 24) == (1, 6)
    record = np.frombuffer(raw, SERIES_INFO, count=1, offset=at + offset + data_size)[0]
    assert record["NPT"] == AXIS[2] and record["FXV"] == AXIS[0] and record["LXV"] == AXIS[1]
    assert record["CSF"] == 1.0 and record["MNY"] == absorbance[0].min() and record["MXY"] == absorbance[0].max()
    status_at = next(o for kind, _, o in _blocks(raw) if kind == (3, 3, 1, 4, 0, 2))
    status = parse_params(raw[status_at:])
    assert list(status) == ["dpf", "npt", "fxv", "lxv", "csf", "mxy", "mny", "dat", "tim", "dxu"]
    assert status["npt"] == AXIS[2] and status["mxy"] == absorbance.max() and status["dxu"] == "WN"


def test_same_inputs_same_bytes():
    absorbance, _ = _spectra()
    kwargs = dict(first_x_cm1=4000.0, last_x_cm1=600.0, acquired=TIMES, sample_name="x")
    assert opus_series_bytes({"AB": absorbance}, **kwargs) == opus_series_bytes({"AB": absorbance}, **kwargs)


@pytest.mark.parametrize(
    ("spectra", "times", "message"),
    [
        ({"AB": np.zeros(10)}, TIMES, r"must be 2-d \(spectra, points\) with at least 2 points, got shape \(10,\)"),
        ({"AB": np.zeros((5, 10))}, TIMES, "has 5 rows but 6 acquisition times"),
        ({"AB": np.full((6, 10), np.nan)}, TIMES, "NaN or infinite"),
        ({"XX": np.zeros((6, 10))}, TIMES, "unknown spectrum block 'XX'"),
        ({"AB": np.zeros((2, 10))}, [START, START - dt.timedelta(seconds=1)], r"acquired\[1\] .* is before"),
        ({"AB": np.zeros((2, 10))}, [START, START.replace(tzinfo=None)], "all be aware or all naive"),
        ({}, TIMES, "no spectra given"),
    ],
)
def test_bad_input_names_the_file_and_the_problem(tmp_path, spectra, times, message):
    path = tmp_path / "bad.0"
    with pytest.raises(DataError, match=message) as info:
        write_opus_series(path, spectra, first_x_cm1=4000.0, last_x_cm1=600.0, acquired=times, sample_name="x")
    assert str(path) in str(info.value) and not path.exists()


def test_a_bad_spectrum_is_left_out_and_named_the_others_are_read(tmp_path):
    path = tmp_path / "run01.0"
    _write(path)
    raw = bytearray(path.read_bytes())
    at = _series_block_at(bytes(raw))
    _, _, offset, data_size, info_size, _ = SERIES_HEADER.unpack_from(raw, at)
    stride = data_size + info_size
    struct.pack_into("<f", raw, at + offset + 2 * stride + 8, float("nan"))  # a value of spectrum 2
    srt = SERIES_INFO.fields["SRT"][1]
    struct.pack_into("<d", raw, at + offset + 4 * stride + data_size + srt, -5.0)  # spectrum 4 starts before DAT/TIM
    path.write_bytes(bytes(raw))
    contents = read_opus_series(path)
    assert contents.stored == 6 and [s.series_index for s in contents.spectra] == [0, 1, 3, 5]
    assert contents.bad == {
        2: "block 'a': 1 non-finite value(s)",
        4: "block 'a': unusable start time SRT=-5.0 s after the series' DAT/TIM",
    }


def test_truncated_and_corrupted_series_files_say_so(tmp_path):
    path = tmp_path / "run01.0"
    _write(path)
    raw = path.read_bytes()
    cut = tmp_path / "cut.0"
    cut.write_bytes(raw[:2000])
    with pytest.raises(OpusReadError, match=rf"cut.0: truncated OPUS file \(2000 bytes present, {len(raw)} expected\)"):
        read_opus_file(cut)
    at = _series_block_at(raw)
    bad = tmp_path / "bad.0"
    for field, value, message in (
        (4, 0, "announces 0 spectra"),
        (4, 2**31 - 1, "announces 2147483647 spectra"),
        (12, 4 * AXIS[2] + 4, "ends inside spectrum 5 of the 6 announced"),  # sizes that do not add up
        (12, -4, "-4 bytes per spectrum"),
        (16, 8, "a 8-byte record per spectrum"),
        (8, 10**6, "spectra from byte 1000000"),
    ):
        bad.write_bytes(raw[: at + field] + struct.pack("<i", value) + raw[at + field + 4 :])
        with pytest.raises(OpusReadError, match=rf"bad.0: corrupted series block \(directory entry \d+: .*{message}"):
            read_opus_file(bad)
    # fewer whole spectra than announced and nothing partial: OPUS skipped some (store table); the stored are read
    fewer = raw[: at + 4] + struct.pack("<i", 7) + raw[at + 8 :]
    bad.write_bytes(fewer)
    assert read_opus_file(bad).stored == 6
    # a negative parameter size would send brukeropus' parameter loop backwards for ever
    status_at = next(o for kind, _, o in _blocks(raw) if kind == (3, 3, 1, 4, 0, 2))
    bad.write_bytes(raw[: status_at + 6] + struct.pack("<h", -4) + raw[status_at + 8 :])
    with pytest.raises(OpusReadError, match=r"bad.0: corrupted parameter block .*negative size \(-4 words\)"):
        read_opus_file(bad)


def _mutants(raw: bytes, block_at: int, rng: random.Random, n: int):
    """Truncations, byte soups and edits of the series header and directory: where a reader can be led astray."""
    fields = [12, 16, 20, *range(24, 24 + 12 * 8, 4), *range(block_at, block_at + 32, 4)]
    for _ in range(n):
        roll = rng.random()
        if roll < 0.25:
            yield raw[: rng.randrange(len(raw))]
        elif roll < 0.6:
            at = rng.choice(fields)
            value = rng.choice([0, 1, -1, 7, 152, 2**31 - 1, -(2**31), rng.randrange(-(2**31), 2**31)])
            yield raw[:at] + struct.pack("<i", value) + raw[at + 4 :]
        else:
            out = bytearray(raw)
            for _ in range(rng.randrange(1, 24)):
                out[rng.randrange(len(out))] = rng.randrange(256)
            yield bytes(out)


def test_mutated_series_files_raise_only_opus_read_error_naming_the_file(tmp_path):
    path = tmp_path / "run01.0"
    _write(path)
    raw = path.read_bytes()
    target = tmp_path / "mutant.0"
    outcomes = {"read": 0, "refused": 0, "bad spectra": 0}
    for payload in _mutants(raw, _series_block_at(raw), random.Random(21), 1200):
        target.write_bytes(payload)
        try:
            contents = read_opus_file(target, default_zone=dt.UTC)
        except OpusReadError as err:
            outcomes["refused"] += 1
            assert str(target) in str(err), f"the error does not name the file: {err}"
        else:  # whatever is read is whole, finite and timed, or left out with its reason
            outcomes["read"] += 1
            outcomes["bad spectra"] += len(contents.bad)
            assert len(contents.spectra) + len(contents.bad) == contents.stored >= 1
            for spectrum in contents.spectra:
                assert spectrum.values.shape == spectrum.wavenumber_cm1.shape and spectrum.values.size >= 2
                assert np.all(np.isfinite(spectrum.values)) and np.all(np.isfinite(spectrum.wavenumber_cm1))
    assert outcomes["refused"] > 300 and outcomes["read"] > 50, outcomes
