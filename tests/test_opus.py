"""The OPUS writer, checked with an independent reader (brukeropus) and against a real OPUS file's bytes."""

from __future__ import annotations

import datetime as dt
import struct

import numpy as np
import pytest
from brukeropus import read_opus
from brukeropus.file.parse import parse_directory, parse_header, parse_params

from opir.core.errors import DataError
from opir.formats.opus_writer import (
    MAX_DIRECTORY_ENTRIES,
    block_type_code,
    encode_parameters,
    format_opus_time,
    opus_bytes,
    write_opus,
)

ACQUIRED = dt.datetime(2026, 3, 4, 5, 6, 7, 891000, tzinfo=dt.UTC)


def _spectra(n=1764, seed=0):
    rng = np.random.default_rng(seed)
    return rng.uniform(-0.1, 1.9, n).astype(np.float32), rng.uniform(0.0, 1.0, n).astype(np.float32)


def _write(path, **overrides):
    absorbance, single_channel = _spectra()
    params = dict(
        first_x_cm1=4000.0,
        last_x_cm1=600.0,
        acquired=ACQUIRED,
        sample_name="cu_dmc run01 #00000",
        instrument={"INS": "OpIR simulator"},
        acquisition={"RES": 4.0, "NSS": 32, "PLF": "AB"},
    )
    params.update(overrides)
    write_opus(path, {"AB": absorbance, "ScSm": single_channel}, **params)
    return absorbance, single_channel


def test_brukeropus_reads_back_exact_values(tmp_path):
    path = tmp_path / "cu_dmc_run01_00000.0"
    absorbance, single_channel = _write(path)
    opus = read_opus(path)
    assert np.array_equal(opus.a.y, absorbance)  # bit-exact float32 round trip
    assert np.array_equal(opus.sm.y, single_channel)
    assert np.array_equal(opus.a.x, np.linspace(4000.0, 600.0, absorbance.size))
    assert opus.a.x[0] > opus.a.x[-1]  # descending, as instruments write it
    assert opus.a.dxu == "WN" and np.array_equal(opus.a.wn, opus.a.x)
    assert opus.a.datetime == dt.datetime(2026, 3, 4, 5, 6, 7, 891000)
    assert opus.a.tim == "05:06:07.891 (GMT+0)" and opus.a.dat == "04/03/2026"
    assert opus.params.snm == "cu_dmc run01 #00000"
    assert opus.params.ins == "OpIR simulator" and opus.params.nss == 32 and opus.params.res == 4.0
    assert opus.unknown_blocks == [] and opus.parse_error_blocks == []
    assert opus.unmatched_data_blocks == [] and opus.unmatched_data_status_blocks == []


def test_time_offset_is_applied_and_written(tmp_path):
    path = tmp_path / "x.0"
    _write(path, utc_offset_hours=2)
    opus = read_opus(path)
    assert opus.a.tim == "07:06:07.891 (GMT+2)"
    assert opus.a.datetime == dt.datetime(2026, 3, 4, 7, 6, 7, 891000)
    assert format_opus_time(ACQUIRED, -4) == ("04/03/2026", "01:06:07.891 (GMT-4)")


def test_layout_header_directory_and_block_order(tmp_path):
    path = tmp_path / "x.0"
    absorbance, _ = _write(path)
    raw = path.read_bytes()
    assert raw[:4] == b"\x0a\x0a\xfe\xfe"
    version, directory_start, max_blocks, n_blocks = parse_header(raw)
    assert (version, directory_start, max_blocks) == (920622.0, 24, MAX_DIRECTORY_ENTRIES)
    blocks = parse_directory(raw[24 : 24 + 12 * max_blocks])
    assert len(blocks) == n_blocks
    types = [b[0] for b in blocks]
    # directory, ScSm data + status, AB data + status, instrument, acquisition, sample origin
    assert types == [
        (0, 0, 0, 13, 0, 0),
        (3, 1, 0, 1, 0, 0),
        (3, 1, 1, 1, 0, 0),
        (3, 3, 0, 4, 0, 0),
        (3, 3, 1, 4, 0, 0),
        (0, 0, 2, 0, 0, 0),
        (0, 0, 3, 0, 0, 0),
        (0, 0, 10, 0, 0, 0),
    ]
    # blocks are contiguous and the last one ends at EOF (exactly NPT floats, no padding)
    for (_, size, start), (_, _, next_start) in zip(blocks[1:], blocks[2:], strict=False):
        assert start + size == next_start
    assert blocks[-1][2] + blocks[-1][1] == len(raw)
    assert blocks[3][1] == 4 * absorbance.size
    status = parse_params(raw[blocks[4][2] : blocks[4][2] + blocks[4][1]])
    assert list(status) == ["dpf", "npt", "fxv", "lxv", "csf", "mxy", "mny", "dat", "tim", "dxu"]
    assert status["npt"] == absorbance.size and status["csf"] == 1.0
    assert status["mxy"] == pytest.approx(absorbance.max()) and status["mny"] == pytest.approx(absorbance.min())


def test_block_type_codes_match_real_files():
    assert block_type_code(3, 3, 0, 4) == 4111  # AB data
    assert block_type_code(3, 3, 1, 4) == 4127  # AB data status
    assert block_type_code(3, 1, 0, 1) == 1031  # ScSm
    assert block_type_code(0, 0, 10, 0) == 160  # sample origin


def test_data_status_block_is_byte_identical_to_a_real_file(realdata):
    raw = (realdata / "opus" / "brukeropus" / "file.0").read_bytes()
    blocks = parse_directory(raw[24 : 24 + 12 * 40])
    _, size, start = next(b for b in blocks if b[0] == (3, 3, 1, 4, 0, 0))
    real = raw[start : start + size]
    p = parse_params(real)
    keys = ["dpf", "npt", "fxv", "lxv", "csf", "mxy", "mny", "dat", "tim", "dxu"]
    assert encode_parameters([(k.upper(), p[k]) for k in keys]) == real


def test_same_inputs_same_bytes():
    absorbance, _ = _spectra()
    kwargs = dict(first_x_cm1=4000.0, last_x_cm1=600.0, acquired=ACQUIRED, sample_name="s")
    assert opus_bytes({"AB": absorbance}, **kwargs) == opus_bytes({"AB": absorbance.copy()}, **kwargs)
    other = absorbance.copy()
    other[5] += 1e-3
    assert opus_bytes({"AB": absorbance}, **kwargs) != opus_bytes({"AB": other}, **kwargs)


@pytest.mark.parametrize(
    ("spectra", "message"),
    [
        ({}, "no spectra"),
        ({"XX": np.zeros(10)}, "unknown spectrum block 'XX'"),
        ({"AB": np.zeros((2, 10))}, "must be 1-d"),
        ({"AB": np.array([0.0, np.nan, 1.0])}, "NaN"),
    ],
)
def test_bad_input_names_the_file_and_the_problem(tmp_path, spectra, message):
    path = tmp_path / "bad.0"
    with pytest.raises(DataError, match=message) as info:
        write_opus(path, spectra, first_x_cm1=4000.0, last_x_cm1=600.0, acquired=ACQUIRED, sample_name="s")
    assert str(path) in str(info.value)
    assert not path.exists()


def test_parameter_encoding_rejects_bad_keys_and_values():
    with pytest.raises(ValueError, match="three ASCII"):
        encode_parameters([("TOOLONG", 1)])
    with pytest.raises(ValueError, match="unsupported value"):
        encode_parameters([("ABC", [1, 2])])
    # strings are NUL-terminated and padded to 4 bytes; the size field counts 16-bit words
    encoded = encode_parameters([("SNM", "abc")])
    assert encoded[:4] == b"SNM\x00" and struct.unpack("<hh", encoded[4:8]) == (2, 2)
    assert encoded[8:12] == b"abc\x00"
