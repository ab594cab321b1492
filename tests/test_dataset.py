"""Sample table, truth and splits: layout, no leakage of test systems into global statistics, split sizes."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pandas as pd
import pytest
from conftest import REPO
from helpers import write_run

from opir.core import h5io
from opir.core.errors import DataError
from opir.ingest.runs import ingest_run_dir
from opir.preprocess import dataset
from opir.preprocess import spectra as preprocess

RUNS = [("sys_a", "run01", 5), ("sys_a", "run02", 3), ("sys_b", "run01", 4), ("sys_test", "run01", 4)]
TRAIN = ["sys_a", "sys_b"]
PARAMS = {"n_points": 64, "clip_quantiles": [0.001, 0.999]}


@pytest.fixture(scope="module")
def preprocessed(tmp_path_factory):
    root = tmp_path_factory.mktemp("dataset")
    paths = []
    for seed, (system, run, n) in enumerate(RUNS):
        run_dir = root / "raw" / system / run
        write_run(run_dir, n=n, seed=seed)
        ingest_run_dir(run_dir, root / f"{system}_{run}.ingest.h5", root / f"{system}_{run}.tsv", {}, system, run)
        out = root / f"{system}_{run}.h5"
        preprocess.preprocess_run(root / f"{system}_{run}.ingest.h5", out, PARAMS)
        paths.append(out)
    return root, paths


def test_samples_layout(preprocessed, tmp_path):
    _, paths = preprocessed
    params = dataset.assemble(paths, tmp_path / "samples.h5", PARAMS, TRAIN)
    n_rows = sum(n for *_, n in RUNS)
    with h5py.File(tmp_path / "samples.h5", "r") as handle:
        grid = handle["wavenumber_cm1"][()]
        assert grid.size == 64 and np.all(np.diff(grid) > 0) and handle["wavenumber_cm1"].attrs["units"] == "1/cm"
        assert handle["spectra/absorbance"].shape == (n_rows, 64)
        assert handle["spectra/absorbance"].dtype == np.float32
        samples = {k: handle[f"samples/{k}"][()] for k in ("row", "initial_row", "m")}
        sample_ids = h5io.read_strings(handle["samples/sample_id"])
        assert len(sample_ids) == n_rows - len(RUNS)
        assert sample_ids[0] == "sys_a/run01/00001" and sample_ids[4] == "sys_a/run02/00001"
        assert list(h5io.read_strings(handle["runs/run_id"])) == [r for _, r, _ in RUNS]
        assert list(handle["runs/first_row"][()]) == [0, 5, 8, 12]
        # target row, input row and the voltage profile v_0..v_m of sample sys_a/run02/00002
        i = list(sample_ids).index("sys_a/run02/00002")
        assert (samples["row"][i], samples["initial_row"][i], samples["m"][i]) == (7, 5, 2)
        profile = handle["rows/voltage_v"][samples["initial_row"][i] : samples["row"][i] + 1]
        assert profile.size == 3 and profile[-1] == handle["samples/voltage_v"][i]
        assert handle["rows/elapsed_s"][5] == 0.0 and handle["rows/index_in_run"][7] == 2
        stored = json.loads(handle.attrs["preprocess_params"])
    assert stored == params and stored["n_points"] == 64 and len(stored["clip"]) == 2


def test_global_statistics_never_see_test_systems(preprocessed, tmp_path):
    """Blow up the held-out system's spectra: clip bounds and every training row stay bit-identical."""
    root, paths = preprocessed
    dataset.assemble(paths, tmp_path / "a.h5", PARAMS, TRAIN)
    poisoned = tmp_path / "poisoned.h5"
    with h5py.File(paths[-1], "r") as src, h5py.File(poisoned, "w") as dst:
        for key in src:
            src.copy(key, dst)
        for key, value in src.attrs.items():
            dst.attrs[key] = value
        dst["spectra/absorbance"][...] = src["spectra/absorbance"][()] * 1000 + 50
    dataset.assemble([*paths[:-1], poisoned], tmp_path / "b.h5", PARAMS, TRAIN)
    with h5py.File(tmp_path / "a.h5", "r") as a, h5py.File(tmp_path / "b.h5", "r") as b:
        assert a.attrs["preprocess_params"] == b.attrs["preprocess_params"]
        n_train = 12
        np.testing.assert_array_equal(a["spectra/absorbance"][:n_train], b["spectra/absorbance"][:n_train])
        assert json.loads(a.attrs["clip_estimated_on"]) == TRAIN
    # and the per-run preprocessing of a training run does not read any other run at all
    again = tmp_path / "again.h5"
    preprocess.preprocess_run(root / "sys_a_run01.ingest.h5", again, PARAMS)
    with h5py.File(again, "r") as x, h5py.File(paths[0], "r") as y:
        np.testing.assert_array_equal(x["spectra/absorbance"][()], y["spectra/absorbance"][()])
    with pytest.raises(DataError, match="none of the runs belongs to a training system"):
        dataset.assemble(paths[-1:], tmp_path / "c.h5", PARAMS, TRAIN)


def test_truth_is_row_aligned_and_clipped_alike(preprocessed, tmp_path):
    root, paths = preprocessed
    dataset.assemble(paths, tmp_path / "samples.h5", PARAMS, TRAIN)
    truth_paths = []
    for system, run, n in RUNS:
        # noise-free truth on the OPUS axis, as the simulator writes it
        from test_ingest import AXIS, synthetic_absorbance

        raw_truth = tmp_path / f"{system}_{run}.truth_raw.h5"
        with h5py.File(raw_truth, "w") as handle:
            handle["wavenumber_cm1"] = np.linspace(*AXIS)
            handle["absorbance"] = synthetic_absorbance(n, seed=RUNS.index((system, run, n)), noise=0.0)
        out = tmp_path / f"{system}_{run}.truth.h5"
        preprocess.preprocess_truth_run(root / f"{system}_{run}.ingest.h5", raw_truth, out, PARAMS, "preprocess_truth")
        truth_paths.append(out)
    dataset.assemble_truth(truth_paths, tmp_path / "samples.h5", tmp_path / "truth.h5")
    with h5py.File(tmp_path / "truth.h5", "r") as truth, h5py.File(tmp_path / "samples.h5", "r") as samples:
        measured = samples["spectra/absorbance"][()]
        clean = truth["absorbance"][()]
        assert clean.shape == measured.shape
        assert np.abs(clean - measured).mean() < 0.02  # only the noise differs
        low, high = json.loads(samples.attrs["preprocess_params"])["clip"]
        assert clean.min() >= low and clean.max() <= high
    with pytest.raises(DataError, match="truth of another run"):
        dataset.assemble_truth(truth_paths[::-1], tmp_path / "samples.h5", tmp_path / "bad.h5")


def test_split_sizes_on_the_full_simulated_dataset():
    """OpIRSpec-7K-sim sizes from the systems sheet: random 6,407 / 711, system 5,796 / 1,322."""
    systems = pd.read_csv(REPO / "config" / "systems.tsv", sep="\t")
    sample_ids, system_ids = [], []
    for row in systems.itertuples():
        sample_ids += [f"{row.system_id}/run01/{m:05d}" for m in range(1, row.sim_samples + 1)]
        system_ids += [row.system_id] * row.sim_samples
    assert len(sample_ids) == 7118
    random = dataset.random_split(sample_ids, 0.1, seed=0)
    assert (len(random["train"]), len(random["test"])) == (6407, 711)
    assert set(random["train"]).isdisjoint(random["test"])
    assert dataset.random_split(sample_ids, 0.1, seed=0) == random
    assert dataset.random_split(sample_ids, 0.1, seed=1)["test"] != random["test"]
    held_out = systems.system_id[systems.system_split == "test"].tolist()
    assert sorted(held_out) == ["coosp_lp30_int", "cu_ec12"]
    by_system = dataset.system_split(sample_ids, system_ids, held_out)
    assert (len(by_system["train"]), len(by_system["test"])) == (5796, 1322)


def test_write_splits(preprocessed, tmp_path):
    _, paths = preprocessed
    dataset.assemble(paths, tmp_path / "samples.h5", PARAMS, TRAIN)
    splits = dataset.write_splits(tmp_path / "samples.h5", tmp_path / "splits.json", {"seed": 3}, ["sys_test"])
    assert json.loads((tmp_path / "splits.json").read_text()) == splits
    assert splits["system"]["test"] == ["sys_test/run01/00001", "sys_test/run01/00002", "sys_test/run01/00003"]
    assert len(splits["random"]["test"]) == 1  # floor(0.1 * 12)


def test_figure2_from_the_sample_table(preprocessed, tmp_path):
    from opir.report.data import figure2, rms_change

    _, paths = preprocessed
    dataset.assemble(paths, tmp_path / "samples.h5", PARAMS, TRAIN)
    data = rms_change(tmp_path / "samples.h5")
    assert data["rms_change"].shape == (12,) and np.all(data["rms_change"] > 0)
    summary = figure2(tmp_path / "samples.h5", tmp_path / "fig2.png", tmp_path / "fig2.pdf")
    assert (tmp_path / "fig2.png").read_bytes()[:4] == b"\x89PNG"
    assert (tmp_path / "fig2.pdf").read_bytes()[:4] == b"%PDF"
    assert summary["n_samples"] == 12 and summary["snr_median"] > 10
