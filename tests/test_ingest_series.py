"""Ingest of runs whose spectra sit in one time-resolved OPUS series file: a simulated run written both ways gives
the same ingest output, and the manifest's ways of naming a series' spectra, with what each rejects."""

from __future__ import annotations

import datetime as dt
import struct
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest
import yaml
from conftest import REPO
from helpers import AXIS, START, synthetic_absorbance, write_mpt

from opir.core import h5io
from opir.core.config import load_sheets, with_defaults
from opir.core.errors import DataError
from opir.formats.opus_writer import SERIES_HEADER, SERIES_INFO, write_opus_series
from opir.ingest.runs import ingest_run_dir
from opir.simulate.runs import simulate_system_run

INTERVAL_S = 30.0


def ingest(run_dir: Path, tmp_path: Path, **params):
    out, rejected = tmp_path / "out.h5", tmp_path / "out.rejected.tsv"
    result = ingest_run_dir(run_dir, out, rejected, params, "sys", "run01")
    return result, out, pd.read_csv(rejected, sep="\t")


def _contents(path: Path) -> dict[str, np.ndarray]:
    with h5py.File(path, "r") as handle:
        out = {name: handle[name][()] for name in ("spectra/absorbance", "spectra/wavenumber_cm1", "spectra/elapsed_s")}
        for name in ("voltage_v", "current_ma", "open_circuit", "position_in_run"):
            out[name] = handle[name][()]
        for name in ("acquired_utc", "source_file"):
            out[name] = np.array(h5io.read_strings(handle[name]))
        out["instrument"] = dict(handle["instrument"].attrs)
        return out


def test_simulated_run_as_a_series_file_ingests_like_one_file_per_spectrum(tmp_path):
    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    system = load_sheets(config, root=REPO).systems.set_index("system_id", drop=False).loc["cu_lp30_vc"].to_dict()
    settings = with_defaults("simulate", {**config["simulate"], "scale": 0.01, "utc_offset_hours": -4.0})
    settings["wavenumber"]["n_points"] = 600  # small files; the layout does not depend on it
    outputs = {}
    for series in (False, True):
        label = "series" if series else "single"
        run_dir = tmp_path / label / "raw" / "cu_lp30_vc" / "run01"
        run = simulate_system_run(
            system, "run01", ["run01"], {**settings, "opus_series": series}, run_dir, tmp_path / label / "truth.h5"
        )
        files = sorted(p.name for p in (run_dir / "spectra").iterdir())
        manifest = pd.read_csv(run_dir / "manifest.tsv", sep="\t")
        if series:  # one file; the manifest names each spectrum's position in it
            assert files == ["cu_lp30_vc_run01.0"]
            assert list(manifest.columns) == ["file", "index", "spectrum", "acquired_utc"]
            assert list(manifest["spectrum"]) == list(range(len(run.time_s)))
        else:
            assert len(files) == len(run.time_s) and "spectrum" not in manifest.columns
        for time_source in ("opus", "manifest"):
            out = tmp_path / label / f"{time_source}.h5"
            ingest_run_dir(run_dir, out, out.with_suffix(".tsv"), {"time_source": time_source}, "cu_lp30_vc", "run01")
            outputs[label, time_source] = _contents(out)
        # the simulator's times come back from DAT/TIM (+ SRT in a series) exactly
        stamps = [dt.datetime.fromisoformat(t) for t in outputs[label, "opus"]["acquired_utc"]]
        assert stamps == run.acquired_utc
    single, series = outputs["single", "opus"], outputs["series", "opus"]
    for name in single:
        if name == "source_file":  # the only difference: which file, and where in it
            assert list(series[name]) == [f"cu_lp30_vc_run01.0[{k}]" for k in range(len(single[name]))]
        elif name == "instrument":  # the sample name of a series is the run's
            assert series[name] == {**single[name], "snm": "cu_lp30_vc run01"}
        else:
            np.testing.assert_array_equal(series[name], single[name], err_msg=name)
    np.testing.assert_array_equal(outputs["series", "manifest"]["acquired_utc"], single["acquired_utc"])


# --------------------------------------------------------------------------------------------------------------
# A series file written directly, and the manifest's ways of naming its spectra
# --------------------------------------------------------------------------------------------------------------
def write_series_run(run_dir: Path, n: int = 6, manifest: str | None = "explicit") -> Path:
    """spectra/run01.0 holding n spectra 30 s apart (from START + 10 s), potentiostat.mpt, and a manifest:
    'explicit' (a spectrum column), 'implicit' (rows of the file in index order) or None."""
    (run_dir / "spectra").mkdir(parents=True, exist_ok=True)
    times = [START + dt.timedelta(seconds=10 + i * INTERVAL_S) for i in range(n)]
    path = run_dir / "spectra" / "run01.0"
    write_opus_series(
        path,
        {"AB": synthetic_absorbance(n)},
        first_x_cm1=AXIS[0],
        last_x_cm1=AXIS[1],
        acquired=times,
        sample_name="run01",
        utc_offset_hours=1.0,
    )
    write_mpt(run_dir / "potentiostat.mpt", START, 10 + n * INTERVAL_S + 30)
    if manifest:
        rows = {"file": ["spectra/run01.0"] * n, "index": range(n), "acquired_utc": [t.isoformat() for t in times]}
        if manifest == "explicit":
            rows["spectrum"] = range(n)
        pd.DataFrame(rows).to_csv(run_dir / "manifest.tsv", sep="\t", index=False)
    return path


def test_without_a_manifest_or_its_spectrum_column_the_series_order_is_the_acquisition_order(tmp_path):
    results = {}
    for manifest in (None, "implicit", "explicit"):
        run_dir = tmp_path / str(manifest) / "raw" / "sys" / "run01"
        write_series_run(run_dir, manifest=manifest)
        result, out, rejected = ingest(run_dir, tmp_path / str(manifest))
        assert rejected.empty, rejected
        results[manifest] = result
        with h5py.File(out, "r") as handle:
            np.testing.assert_allclose(handle["spectra/elapsed_s"][()], INTERVAL_S * np.arange(6))
            assert handle["spectra/absorbance"].shape == (6, AXIS[2])
            assert list(handle["position_in_run"][()]) == list(range(6))
    assert results[None].acquired_utc == results["implicit"].acquired_utc == results["explicit"].acquired_utc
    np.testing.assert_array_equal(results[None].voltage_v, results["explicit"].voltage_v)
    by_manifest, _, _ = ingest(tmp_path / "explicit" / "raw" / "sys" / "run01", tmp_path, time_source="manifest")
    by_interval, _, _ = ingest(
        tmp_path / "explicit" / "raw" / "sys" / "run01", tmp_path, time_source="interval", interval_s=INTERVAL_S
    )
    assert by_manifest.acquired_utc == by_interval.acquired_utc == results[None].acquired_utc


def test_manifest_naming_too_few_or_wrong_spectra_rejects_each_by_its_place_in_the_file(tmp_path):
    run_dir = tmp_path / "raw" / "sys" / "run01"
    path = write_series_run(run_dir)
    manifest = pd.read_csv(run_dir / "manifest.tsv", sep="\t")
    manifest.loc[3, "spectrum"] = 99  # spectrum 3 unlisted, 99 not in the file
    manifest.drop(index=5).to_csv(run_dir / "manifest.tsv", sep="\t", index=False)  # spectrum 5 unlisted
    with pytest.raises(DataError, match="3 bad file") as info:
        ingest(run_dir, tmp_path)
    message = str(info.value)
    assert f"{path}[99]: {run_dir / 'manifest.tsv'} names spectrum 99, but the file holds 6 spectra" in message
    assert f"{path}[3]: not listed in" in message and f"{path}[5]: not listed in" in message
    result, out, rejected = ingest(run_dir, tmp_path, on_bad_file="skip")
    assert [s.series_index for s in result.spectra] == [0, 1, 2, 4] and len(rejected) == 3
    with h5py.File(out, "r") as handle:
        assert list(handle["position_in_run"][()]) == [0, 1, 2, 4]  # row 3 keeps its place
        assert list(h5io.read_strings(handle["source_file"])) == [
            "run01.0[0]",
            "run01.0[1]",
            "run01.0[2]",
            "run01.0[4]",
        ]


def test_manifest_errors_name_the_row(tmp_path):
    run_dir = tmp_path / "raw" / "sys" / "run01"
    write_series_run(run_dir)
    manifest = pd.read_csv(run_dir / "manifest.tsv", sep="\t")
    manifest.loc[2, "spectrum"] = 1
    manifest.to_csv(run_dir / "manifest.tsv", sep="\t", index=False)
    with pytest.raises(DataError, match=r"manifest.tsv: spectrum 1 of spectra/run01.0 appears more than once"):
        ingest(run_dir, tmp_path)
    manifest["spectrum"] = manifest["spectrum"].astype(object)
    manifest.loc[4, "spectrum"] = "fourth"
    manifest.to_csv(run_dir / "manifest.tsv", sep="\t", index=False)
    with pytest.raises(DataError, match=r"manifest.tsv: row 6: spectrum 'fourth' must be empty or a position in the"):
        ingest(run_dir, tmp_path)


def test_a_bad_spectrum_or_a_backwards_time_in_a_series_rejects_only_that_spectrum(tmp_path):
    run_dir = tmp_path / "raw" / "sys" / "run01"
    path = write_series_run(run_dir, manifest=None)
    raw = bytearray(path.read_bytes())
    at = 24 + 12 * 40  # the AB series block is the first after the directory
    _, _, offset, data_size, info_size, _ = SERIES_HEADER.unpack_from(raw, at)
    stride = data_size + info_size
    struct.pack_into("<f", raw, at + offset + 1 * stride, float("inf"))  # spectrum 1: a non-finite value
    srt = at + offset + 4 * stride + data_size + SERIES_INFO.fields["SRT"][1]
    struct.pack_into("<d", raw, srt, 15.0)  # spectrum 4 claims to start before spectrum 3 (at 90 s)
    path.write_bytes(bytes(raw))
    with pytest.raises(DataError, match="2 bad file") as info:
        ingest(run_dir, tmp_path)
    assert f"{path}[1]: block 'a': 1 non-finite value(s)" in str(info.value)
    assert f"{path}[4]: time stamp earlier than" in str(info.value)
    result, out, rejected = ingest(run_dir, tmp_path, on_bad_file="skip")
    assert set(rejected["file"]) == {f"{path}[1]", f"{path}[4]"}
    assert result.positions == [0, 2, 3, 5]


def test_an_unreadable_series_file_is_one_bad_file(tmp_path):
    run_dir = tmp_path / "raw" / "sys" / "run01"
    path = write_series_run(run_dir)
    path.write_bytes(path.read_bytes()[:3000])
    with pytest.raises(DataError, match=r"1 bad file\(s\)") as info:
        ingest(run_dir, tmp_path)
    assert f"{path}: truncated OPUS file (3000 bytes present," in str(info.value)
