"""The analysis scripts of benchmarks/ that the record's reading of the goals rests on, on the test workspace."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys

import h5py
import numpy as np
import pytest
import yaml
from conftest import REPO

from opir.core.config import load_sheets
from opir.core.electrodes import descriptors_from_row
from opir.core.errors import ConfigError
from opir.formats.samples import load_samples


def _script(name: str):
    spec = importlib.util.spec_from_file_location(name, REPO / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _run(name: str, workdir) -> dict:
    done = subprocess.run([sys.executable, str(REPO / "benchmarks" / f"{name}.py"), str(workdir)],
                          capture_output=True, text=True, check=True, timeout=600)  # fmt: skip
    return json.loads(done.stdout)


def _mae(workdir, split: str, model: str) -> float:
    return json.loads((workdir / f"results/metrics/{split}/{model}.json").read_text())["summary"]["mae"]["mean"]


def test_counterfactual_with_the_runs_own_chemistry_is_its_truth(finished_workspace, tmp_path):
    """The bound's re-simulation and preprocessing path, given the electrode's own chemistry, must give back the
    workflow's preprocessed truth of that run: then its other rows differ by the chemistry alone."""
    results = finished_workspace / "results"
    table = load_samples(results / "dataset/samples.h5")
    run = np.flatnonzero(table.runs["system_id"] == "coosp_lp30_int")[0]
    system_id, run_id = table.runs["system_id"][run], table.runs["run_id"][run]
    first, n_rows = int(table.runs["first_row"][run]), int(table.runs["n_rows"][run])
    with h5py.File(results / "dataset/samples.h5", "r") as handle:
        clip = json.loads(handle.attrs["preprocess_params"]).get("clip")
    with h5py.File(results / "dataset/truth.h5", "r") as handle:
        truth = handle["absorbance"][first : first + n_rows]
    bound = _script("electrode_bound")
    system = bound.provenance_config(results / "truth" / system_id / f"{run_id}.h5")["system"]
    own = bound.counterfactual_block(results, system_id, run_id, descriptors_from_row(system, "own"), "own", clip,
                                     tmp_path)  # fmt: skip
    np.testing.assert_allclose(own, truth, rtol=0, atol=1e-5)
    sheet = load_sheets(yaml.safe_load((REPO / "config/config.yaml").read_text()), root=REPO)
    as_cu = bound.counterfactual_block(results, system_id, run_id, sheet.electrodes["cu_lp30"], "Cu", clip, tmp_path)
    assert np.abs(as_cu - truth).max() > 0.01


def test_electrode_bound_report(finished_workspace):
    report = _run("electrode_bound", finished_workspace)
    assert report["unseen_test_runs"] == {"coosp_lp30_int/run01": "CoO/SuperP"}
    assert report["seen_electrodes"] == ["Cu", "LTO", "LTO/SuperP", "Sn"]
    scores = report["scores"]
    floor = _mae(finished_workspace, "system", "noise_floor")
    assert abs(scores["own truth (noise floor)"]["mae"] - floor) < 1e-4
    # the headline numbers (MAE x1e-2) are the rows', and Persistence is the workflow's own reference row
    assert report["noise_floor"] == round(100 * scores["own truth (noise floor)"]["mae"], 3)
    assert abs(report["persistence"] - 100 * _mae(finished_workspace, "system", "persistence")) < 2e-3
    assert report["hedged_oracle"] <= report["best_donor"] and report["hedged_oracle_dilate"] > 0
    for name, row in scores.items():
        if name != "own truth (noise floor)":
            assert row["mae"] > floor, name
    for donor, factor in report["oracle_shrink"].items():
        # the oracle hedge is chosen on the targets, so it cannot be worse than the unhedged donor
        assert scores[f"{donor}, SEI x {factor:.3f} (oracle)"]["mae"] <= scores[donor]["mae"] + 1e-9


def test_time_interpolation_report(finished_workspace):
    report = _run("time_interpolation", finished_workspace)
    mae = report["time_interpolation"]["mae"]
    assert _mae(finished_workspace, "random", "noise_floor") < mae < _mae(finished_workspace, "random", "persistence")
    assert report["reference_mae"]["persistence"] == round(_mae(finished_workspace, "random", "persistence"), 5)


def test_record_is_regenerated_from_the_tables(finished_workspace, tmp_path):
    """benchmarks/record.py: the JSON holds every row of each table under its label, in the table's units."""
    done = subprocess.run([sys.executable, str(REPO / "benchmarks" / "record.py"), str(finished_workspace),
                           "--flagship", "abcc1d", "--md", str(tmp_path / "r.md"), "--json", str(tmp_path / "r.json"),
                           "--provenance", "one run of the test config"],
                          capture_output=True, text=True, check=True, timeout=120)  # fmt: skip
    assert json.loads(done.stdout)["flagship"] == "ABCC-1D (spectral MeanFlow, run codes, ours)"
    record = json.loads((tmp_path / "r.json").read_text())
    assert {"random", "system", "ablations", "flagship", "wall_s", "commit"} <= set(record)
    assert record["provenance"] == "one run of the test config"
    row = record["random"]["Persistence"]
    assert set(row) == {"mae", "mse", "rmse", "sam", "cossim", "r2", "dilate"}
    assert abs(row["mae"] - 100 * _mae(finished_workspace, "random", "persistence")) < 1e-3
    assert "Within-run smoother" in record["random"] and "Within-run smoother" not in record["system"]
    text = (tmp_path / "r.md").read_text()
    assert "Flagship **ABCC-1D" in text and "## Goals" in text
    assert "How the workspace was made: one run of the test config" in text
    # the test config hedges the flagship: the system split's goals are read for its package's row too
    hedged = record["flagship_as_packaged"]["system"]
    assert hedged in record["system"] and hedged not in record["random"]
    assert f"The flagship as its package forecasts a new cell, hedged (**{hedged}**" in text
    assert "- system split, the flagship as packaged (" in text
    # the latent ABCC's goal, and Table 4's rows by test run (the full model first, the reference rows left out)
    assert "- random split: the latent ABCC (ABCC) MAE" in text
    by_run = text.split("## Table 4 by test run")[1].split("## ")[0]
    assert "| ABCC | " in by_run and "w/o Chemical Flow" in by_run and "Persistence" not in by_run
    # where the time went: every job's benchmark file, summed by stage, the wall-time goal the one given
    seconds = _script("record").job_seconds(finished_workspace)
    assert "train/random/abcc1d" in seconds and all(s > 0 for s in seconds.values())
    assert f"Sum of the {len(seconds)} jobs' snakemake benchmark files" in text
    assert "goal <= 7200 s" in text


def test_record_says_why_from_the_readout_path_diagnosis(tmp_path):
    """benchmarks/record.py --readout-paths: each path of the diagnosed model per test system, and a line for each
    Table 4 row that beats the full model there, read off the evaluate rule's metrics files."""
    readout_path_lines = _script("record").readout_path_lines

    def metrics(model, mae):  # two test samples of one run, MAE in absorbance units
        (tmp_path / f"{model}.json").write_text(json.dumps({
            "per_sample": {"sample_id": ["coosp/run01/0001", "coosp/run01/0002"], "mae": [mae, mae]},
            "per_run": {"coosp/run01": {"dilate": 1.0}}}))  # fmt: skip

    metrics("abcc", 0.0938)
    metrics("abcc_no_cf", 0.082)
    metrics("abcc_no_peak", 0.095)
    models = {"ABCC": "abcc", "w/o Chemical Flow": "abcc_no_cf", "w/o peak": "abcc_no_peak", "Random": "random"}
    diagnosis = {"model": "abcc", "split": "system", "coosp": {"n_samples": 2, "waveform_path": 9.9,
                 "chemical_flow_path": 10.03, "fused": 9.38, "constant_w0.5": 9.26}}  # fmt: skip
    text = "\n".join(readout_path_lines([diagnosis], models, tmp_path, {"Random"}))
    assert "| ABCC (abcc) | coosp | 2 | 9.900 | 10.030 | 9.380 | 9.260 |" in text
    assert ("- coosp: w/o Chemical Flow (8.200) below ABCC's 9.380 (run MAE, mean over seeds); the diagnosed ABCC "
            "model: fused 9.380, paths 9.900 and 10.030: its fusion beats either path, so the paths themselves lose "
            "there") in text
    assert "w/o peak (" not in text  # not below the full model there
    # the full model's own run MAE (mean over seeds) is the yardstick, not the diagnosed seed's fused forecast
    metrics("abcc", 0.0801)
    assert "Where the full model loses" not in "\n".join(readout_path_lines([diagnosis], models, tmp_path, {"Random"}))
    assert readout_path_lines([], models, tmp_path, {"Random"}) == []


def test_record_reads_each_goal_off_the_tables():
    """benchmarks/record.py's goals: ratios and verdicts come from the rows' numbers (no workspace needed)."""
    goal_lines = _script("record").goal_lines

    def row(mae, dilate):
        return dict(mae=mae, mse=1.0, rmse=1.0, sam=1.0, cossim=0.9, r2=0.9, dilate=dilate)

    record = {
        "random": {"Flagship": row(1.2, 0.1), "Noise floor": row(1.0, 0.03)},
        "system": {"Flagship": row(4.4, 0.8), "Persistence": row(10.0, 2.0), "Noise floor": row(0.9, 0.03)},
        "ablations": {"Flagship": row(4.4, 0.8), "w/o A": row(4.6, 0.9), "w/o B": row(4.3, 0.9),
                      "Random": row(12.0, 12.0), "Persistence": row(10.0, 2.0)},
    }  # fmt: skip
    text = "\n".join(goal_lines(record, "Flagship", {"random": 7, "system": 5}, hedged_oracle=4.1,
                                 table4_references={"Random", "Persistence"}))
    assert "random split: the flagship is first on 7 of 7 metrics (goal >= 6): met" in text
    assert "system split: the flagship is first on 5 of 7 metrics (goal >= 6): missed by 1" in text
    assert "MAE 1.200 = 1.20x the noise floor's 1.000 (goal <= 1.4x): met" in text
    assert "DILATE 0.800 = 0.40x Persistence's 2.000 (goal <= 0.5x): met" in text
    assert "1.07x the hedged-oracle bound 4.100 (goal <= 1.1x): met" in text
    # the reference rows are not ablations; "w/o B" is better in MAE
    assert "missed: 1 of 2 rows are not, w/o B (MAE)" in text
    # the latent ABCC against the voltage regression, beside the read-out bounds of its VAE
    record["random"] |= {"ABCC": row(4.5, 1.2), "Voltage regression": row(2.25, 0.4), "Bound (waveform)": row(3.6, 0.9)}
    latent = "\n".join(goal_lines(record, "Flagship", {}, hedged_oracle=None, table4_references=(), random_labels={
        "abcc": "ABCC", "voltage_regression": "Voltage regression", "vae_readout_waveform": "Bound (waveform)"}))
    assert ("the latent ABCC (ABCC) MAE 4.500 against the voltage regression's 2.250 (goal: below it): missed by "
            "2.00x; its VAE's read-out of the test targets' own images: Bound (waveform) 3.600 (1.60x the voltage "
            "regression)") in latent
    assert "latent ABCC" not in text
    unmeasured = "\n".join(goal_lines(record, "Flagship", {}, hedged_oracle=None, table4_references=()))
    assert "hedged-oracle bound: not measured" in unmeasured

    # the demo's goals: Persistence beaten on every metric of both splits; first in MAE among the learned rows
    record["random"] |= {"Persistence": row(8.0, 4.0), "Smoother": row(1.1, 0.05), "Ridge": row(1.3, 0.2)}
    demo = "\n".join(goal_lines(record, "Flagship", {}, hedged_oracle=None, table4_references=(),
                                 learned_random=["Flagship", "Smoother", "Ridge"]))
    # equal rows do not count as beaten: MAE and DILATE only
    assert ("beats Persistence on 2 of 7 metrics (random split), 2 of 7 metrics (system split) (goal: all 7 on "
            "both): missed") in demo
    assert "first in MAE (1.200) among the 3 learned rows (the reference and oracle rows aside): missed, behind " \
           "Smoother (1.100)" in demo
    record["random"]["Smoother"] = row(1.25, 0.05)
    for split in ("random", "system"):
        record[split]["Persistence"] = dict(mae=20.0, mse=20.0, rmse=20.0, sam=40.0, cossim=0.5, r2=0.1, dilate=9.0)
    demo = "\n".join(goal_lines(record, "Flagship", {}, hedged_oracle=None, table4_references=(),
                                 learned_random=["Flagship", "Smoother", "Ridge"]))
    assert "7 of 7 metrics (random split), 7 of 7 metrics (system split) (goal: all 7 on both): met" in demo
    assert "among the 3 learned rows (the reference and oracle rows aside): met" in demo


def test_record_breaks_table4_down_by_test_run(tmp_path):
    """Table 4's rows by test run: each run's MAE is the mean of its samples', each row the mean over its seed
    replicates' metrics files; reference rows and rows without metrics are left out."""
    record = _script("record")

    def metrics(model, maes, dilates):
        ids = [f"sys_a/run01/{i:05d}" for i in range(3)] + ["sys_b/run01/00001"]
        per_run = {"sys_a/run01": {"n": 3, "dilate": dilates[0]}, "sys_b/run01": {"n": 1, "dilate": dilates[1]}}
        per_sample = {"sample_id": ids, "mae": maes}
        (tmp_path / f"{model}.json").write_text(json.dumps({"per_run": per_run, "per_sample": per_sample}))

    metrics("full", [0.01, 0.02, 0.03, 0.10], [1.0, 4.0])
    metrics("full_seed1", [0.03, 0.04, 0.05, 0.20], [3.0, 6.0])
    metrics("wo_a", [0.05, 0.05, 0.05, 0.01], [2.0, 0.5])
    assert record.run_scores(tmp_path, "full") == {
        "sys_a/run01": {"mae": pytest.approx(3.0), "dilate": 2.0, "n": 3},
        "sys_b/run01": {"mae": pytest.approx(15.0), "dilate": 5.0, "n": 1},
    }
    lines = record.table4_run_lines(tmp_path, {"ABCC": "full", "w/o A": "wo_a", "w/o B": "wo_b",
                                               "Persistence": "persistence"}, references={"Persistence"})  # fmt: skip
    assert "| Model | sys_a/run01 (3 samples) | sys_b/run01 (1 samples) |" in lines
    assert "| ABCC | 3.000 / 2.000 | 15.000 / 5.000 |" in lines
    assert "| w/o A | 5.000 / 2.000 | 1.000 / 0.500 |" in lines
    assert not any("w/o B" in line or "Persistence" in line for line in lines)
    assert record.table4_run_lines(tmp_path / "absent", {"ABCC": "full"}, references=()) == []


def test_yardstick_rows_of_the_latent_bound_and_the_regression(finished_workspace, tmp_path):
    """Tables 2 and 3 carry "Regression (same backbone, 1D)" (ABCC-1D's network trained with MSE: one deterministic
    draw) and the latent models' VAE read-out bounds, which the record leaves out of the flagship's standing."""
    from opir.formats.predictions import read_predictions

    results = finished_workspace / "results"
    # the sampler per split (predict.euler_steps_by_split): the flagship samples the system split with Euler steps
    # and keeps them in its model folder for `opir predict`; the other sampler of the same network is a row beside it
    samplers = {"random": {"abcc1d": "meanflow_one_step", "abcc1d_euler4": "euler"},
                "system": {"abcc1d": "euler", "abcc1d_one_step": "meanflow_one_step"}}
    for split, rows in samplers.items():
        for model, sampler in rows.items():
            with h5py.File(results / f"predictions/{split}/{model}.h5", "r") as handle:
                assert handle.attrs["sampler"] == sampler
        meta = json.loads((results / f"models/{split}/abcc1d/model.json").read_text())
        assert meta["settings"]["predict"]["euler_steps"] == (4 if split == "system" else 0)
    assert not (results / "predictions/system/abcc1d_euler4.h5").exists()
    assert not (results / "predictions/random/abcc1d_one_step.h5").exists()
    for split in ("random", "system"):
        # the prediction-only rows sample the flagship's own folder: no model of their own
        assert not (results / f"models/{split}/abcc1d_euler4").exists()
        assert not (results / f"models/{split}/abcc1d_one_step").exists()
        # the flagship reads its run codes where it has them; the withheld row (random split only) forecasts every
        # test run as a cell it never saw, with the same network
        with h5py.File(results / f"predictions/{split}/abcc1d.h5", "r") as handle:
            assert bool(handle.attrs["run_codes"])
        withheld = results / f"predictions/{split}/abcc1d_no_run_codes.h5"
        assert withheld.exists() == (split == "random")
        regression = read_predictions(results / f"predictions/{split}/abcc1d_regression.h5")
        assert regression.prediction.shape[1] == 1
        with h5py.File(results / f"predictions/{split}/abcc1d_regression.h5", "r") as handle:
            assert handle.attrs["sampler"] == "regression"
        for stream in ("waveform", "variation"):
            path = results / f"predictions/{split}/vae_readout_{stream}.h5"
            with h5py.File(path, "r") as handle:
                vae_mae, render_mae = handle.attrs["vae_readout_mae"], handle.attrs["render_roundtrip_mae"]
            # the test config's VAE trains 20 steps: reading the true image back loses less than the VAE does
            assert 0 < render_mae < vae_mae
            assert abs(_mae(finished_workspace, split, f"vae_readout_{stream}") - vae_mae) < 1e-6
    subprocess.run([sys.executable, str(REPO / "benchmarks" / "record.py"), str(finished_workspace), "--flagship",
                    "abcc1d", "--md", str(tmp_path / "r.md"), "--json", str(tmp_path / "r.json")],
                   capture_output=True, text=True, check=True, timeout=120)  # fmt: skip
    record = json.loads((tmp_path / "r.json").read_text())
    other_sampler = {"random": "ABCC-1D, 4 Euler steps", "system": "ABCC-1D, one step"}
    for split in ("random", "system"):
        assert {"Regression (same backbone, 1D)", other_sampler[split], "VAE read-out bound (waveform)",
                "VAE read-out bound (Chemical Flow)"} <= set(record[split])
    standing = (tmp_path / "r.md").read_text()
    assert ("oracle rows aside: Noise floor, VAE read-out bound (waveform), VAE read-out bound (Chemical Flow)"
            in standing)
    with h5py.File(results / "predictions/random/abcc1d_no_run_codes.h5", "r") as handle:
        assert not bool(handle.attrs["run_codes"])
    # a row of its own split's table alone
    assert "ABCC-1D, run codes withheld" in record["random"] and "ABCC-1D, run codes withheld" not in record["system"]
    assert not np.array_equal(read_predictions(results / "predictions/random/abcc1d_no_run_codes.h5").prediction,
                              read_predictions(results / "predictions/random/abcc1d.h5").prediction)


def test_sampling_speed_times_both_samplers_of_one_model(finished_workspace):
    """benchmarks/sampling_speed.py runs one-step and Euler prediction of the same trained flagship (no timing is
    asserted: the numbers are the script's to print)."""
    model = finished_workspace / "results/models/system/abcc1d"
    done = subprocess.run([sys.executable, str(REPO / "benchmarks" / "sampling_speed.py"), str(finished_workspace),
                           str(model), "--euler-steps", "3", "--draws", "2", "--repeats", "1", "--threads", "1"],
                          capture_output=True, text=True, check=True, timeout=300)  # fmt: skip
    report = json.loads(done.stdout)
    assert report["one_step"]["seconds"] > 0 and report["euler_3"]["seconds"] > 0 and report["speedup"] > 0


def test_ensemble_pools_the_draws_of_its_members(finished_workspace):
    """benchmarks/ensemble.py: two predictions files of the same samples pooled; a member scores as the workflow's
    own metrics file says."""
    results = finished_workspace / "results"
    members = [results / "predictions/system/abcc1d.h5", results / "predictions/system/abcc1d_one_step.h5"]
    done = subprocess.run([sys.executable, str(REPO / "benchmarks" / "ensemble.py"), str(finished_workspace),
                           "--split", "system", *map(str, members)],
                          capture_output=True, text=True, check=True, timeout=300)  # fmt: skip
    report = json.loads(done.stdout)
    assert report["draws"] == [2, 2] and set(report["metrics"]) == {*map(str, members), "ensemble"}
    assert abs(report["metrics"][str(members[0])]["mae"] - _mae(finished_workspace, "system", "abcc1d")) < 1e-5


def test_system_holdout_divides_only_the_training_systems():
    holdout = _script("system_holdout")
    splits = {"system": {"train": ["a1", "a2", "b1", "c1"], "test": ["t1"]}}
    system_of = {"a1": "a", "a2": "a", "b1": "b", "c1": "c", "t1": "t"}
    assert holdout.holdout_split(splits, system_of, {"b", "c"}) == {"train": ["a1", "a2"], "test": ["b1", "c1"]}
    with pytest.raises(ConfigError, match="t; every group names training systems"):
        holdout.holdout_split(splits, system_of, {"t"})
    with pytest.raises(ConfigError, match="holds out every training system"):
        holdout.holdout_split(splits, system_of, {"a", "b", "c"})
    assert holdout.layered({"m": {"x": 1, "y": {"z": 2}}}, {"m": {"y": {"z": 3}}}) == {"m": {"x": 1, "y": {"z": 3}}}


def test_system_holdout_chooses_the_weight_on_held_out_training_systems(finished_workspace, tmp_path):
    """benchmarks/system_holdout.py on the test workspace: the flagship's recipe trained without one training
    system, the blend weight chosen there, and the test scores of the two models alone equal the workflow's own."""
    holdout = _script("system_holdout")
    results = finished_workspace / "results"
    train = json.loads((results / "dataset/splits.json").read_text())["system"]["train"]
    table = load_samples(results / "dataset/samples.h5")
    system_of = dict(zip(table.samples["sample_id"], table.samples["system_id"], strict=True))
    held_out = sorted({system_of[s] for s in train})[0]
    done = subprocess.run([sys.executable, str(REPO / "benchmarks" / "system_holdout.py"), str(finished_workspace),
                           "--hold-out", held_out, "--out", str(tmp_path / "holdout"), "--configfile",
                           str(REPO / "tests/config/config.yaml"), "--threads", "1", "--euler-steps", "0"],
                          capture_output=True, text=True, check=True, timeout=600)  # fmt: skip
    report = json.loads(done.stdout)
    validation = json.loads((tmp_path / "holdout/results/dataset/splits.json").read_text())["system"]
    assert {system_of[s] for s in validation["test"]} == {held_out}
    assert held_out not in {system_of[s] for s in validation["train"]}
    best = min(report["validation"], key=lambda w: report["validation"][w]["mae"])
    assert float(best) == report["chosen_weight"] and set(report["test"]["every_weight"]) == set(report["validation"])
    assert abs(report["test"]["model_alone"]["mae"] - 100 * _mae(finished_workspace, "system", "abcc1d")) < 1e-3
    assert abs(report["test"]["regression_alone"]["mae"]
               - 100 * _mae(finished_workspace, "system", "voltage_regression")) < 1e-3  # fmt: skip
    # the sampler choice on the held-out systems, the network alone: its own on the system split (the test config's
    # euler_steps_by_split: 4 Euler steps) and one step (--euler-steps 0)
    assert report["samplers"]["4 Euler steps"] == report["validation"]["1.0"]
    assert set(report["samplers"]) == {"4 Euler steps", "one step"}
    assert report["samplers"]["one step"]["mae"] != report["samplers"]["4 Euler steps"]["mae"]

    # a workspace made only up to the recipe's inputs (no test predictions): the validation runs, the test step not
    inputs_only = tmp_path / "inputs_only" / "results"
    holdout.link_inputs(results, inputs_only)
    (inputs_only / "dataset/splits.json").symlink_to(results / "dataset/splits.json")
    again = subprocess.run([sys.executable, str(REPO / "benchmarks" / "system_holdout.py"), str(inputs_only.parent),
                            "--hold-out", held_out, "--out", str(tmp_path / "holdout"), "--configfile",
                            str(REPO / "tests/config/config.yaml"), "--euler-steps", "0"],
                           capture_output=True, text=True, check=True, timeout=600)  # fmt: skip
    repeated = json.loads(again.stdout)
    assert repeated["test"] is None and repeated["samplers"] == report["samplers"]


def test_sample_holdout_draws_the_validation_test_from_training_samples():
    holdout = _script("sample_holdout")
    assert str(REPO / "benchmarks") not in sys.path  # its scripts would shadow packages by their names
    train = [f"s{i}" for i in range(20)]
    split = holdout.holdout_samples(train, 0.1, 7)
    assert len(split["test"]) == 2 and sorted(split["train"] + split["test"]) == sorted(train)
    assert split == holdout.holdout_samples(train, 0.1, 7) != holdout.holdout_samples(train, 0.1, 8)
    assert split["train"] == [s for s in train if s in split["train"]]  # the order of the split file
    for fraction in (0.0, 0.01, 1.0):
        with pytest.raises(SystemExit, match="--fraction"):
            holdout.holdout_samples(train, fraction, 7)


def test_sample_holdout_scores_a_recipe_beside_the_yardsticks_without_test_samples(finished_workspace, tmp_path):
    """benchmarks/sample_holdout.py on the test workspace: the validation split is made of the random split's
    training samples alone, the yardsticks and the flagship's recipe (with an override) are scored on it."""
    splits = json.loads((finished_workspace / "results/dataset/splits.json").read_text())["random"]
    done = subprocess.run([sys.executable, str(REPO / "benchmarks" / "sample_holdout.py"), str(finished_workspace),
                           "--out", str(tmp_path / "holdout"), "--configfile", str(REPO / "tests/config/config.yaml"),
                           "--overrides", "{train: {seed: 3}}", "--euler-steps", "2"],
                          capture_output=True, text=True, check=True, timeout=600)  # fmt: skip
    report = json.loads(done.stdout)
    validation = json.loads((tmp_path / "holdout/results/dataset/splits.json").read_text())["random"]
    assert set(validation["train"]) | set(validation["test"]) == set(splits["train"])
    assert not set(validation["train"]) & set(validation["test"]) and not set(validation["test"]) & set(splits["test"])
    assert report["n_validation"] == len(validation["test"]) == round(0.1 * len(splits["train"]))
    assert set(report["scores"]) == {"within_run_smoother", "voltage_regression_per_run", "abcc1d",
                                     "abcc1d, 2 Euler steps"}
    assert all(np.isfinite(list(row.values())).all() for row in report["scores"].values())
    trained = json.loads((tmp_path / "holdout/model/model.json").read_text())["settings"]
    assert trained["train"]["seed"] == 3 and trained["run_context"] is True  # the test config's abcc1d, overridden

def test_hedged_row_blends_the_flagship_with_a_weight_from_held_out_training_systems(finished_workspace):
    """evaluate.hedge (the test config: two held-out groups): each group's splits hold out training systems only,
    the weight is the least mean validation MAE, and the Table 3 row is w * each flagship draw + (1 - w) * the
    voltage regression's mean on the test samples."""
    from opir.formats.predictions import read_predictions

    results = finished_workspace / "results"
    hedge = results / "hedge/system/abcc1d"
    splits = json.loads((results / "dataset/splits.json").read_text())["system"]
    train, test = set(splits["train"]), set(splits["test"])
    curves = {}
    for group in ("sn_lp30+cu_emc", "lto_lp30"):
        held = json.loads((hedge / group / "splits.json").read_text())
        assert set(held["system"]["test"]) <= train and not set(held["system"]["train"]) & test
        assert {s.split("/")[0] for s in held["system"]["test"]} == set(group.split("+"))
        record = json.loads((hedge / group / "validation.json").read_text())
        assert record["n_validation"] == len(held["system"]["test"])
        curves[group] = record["curve"]
        # the validation model is a model of its own, trained without the group
        meta = json.loads((hedge / group / "model" / "model.json").read_text())
        assert meta["n_train"] == len(held["system"]["train"])
    choice = json.loads((hedge / "weight.json").read_text())
    mean_mae = {w: np.mean([curve[w]["mae"] for curve in curves.values()]) for w in choice["mean_curve"]}
    assert choice["weight"] == float(min(mean_mae, key=lambda w: (mean_mae[w], -float(w))))
    w = choice["weight"]
    hedged = read_predictions(results / "predictions/system/abcc1d_hedged.h5")
    flagship = read_predictions(results / "predictions/system/abcc1d.h5")
    partner = read_predictions(results / "predictions/system/voltage_regression.h5")
    position = {s: i for i, s in enumerate(partner.sample_id)}
    expected = w * flagship.prediction + (1 - w) * partner.mean[[position[s] for s in flagship.sample_id]][:, None]
    np.testing.assert_allclose(hedged.prediction, expected, rtol=1e-5, atol=1e-6)
    label = "ABCC-1D + voltage regression, weight from held-out systems"
    assert label in (results / "tables/table3_system.md").read_text()
    assert label not in (results / "tables/table2_random.md").read_text()
