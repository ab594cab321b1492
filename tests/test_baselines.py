"""opir.baselines: reference rows, nearest training trajectory and the voltage regression, on the toy dataset of
tests/test_metrics.py. The key property: baselines see the training split only (test targets are poisoned here)."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest
from helpers import write_toy_dataset

from opir.baselines.references import noise_floor_reference, persistence_reference, random_reference
from opir.baselines.regression import (
    VoltageRegressionMap,
    _ridge,
    fit_voltage_regression,
    nearest_trajectory,
    predict_baseline,
    voltage_regression,
    voltage_regression_per_run,
    within_run_smoother,
)
from opir.core.errors import DataError
from opir.core.h5io import read_provenance
from opir.evaluate.metrics import evaluate_file
from opir.evaluate.tables import write_benchmark_table
from opir.formats.embeddings import read_mixture_embeddings
from opir.formats.predictions import read_predictions
from opir.formats.samples import load_samples
from opir.preprocess.profile import run_profile_features

PARAMS = {
    "random": {"seed": 0, "draws": 3},
    "persistence": {},
    "noise_floor": {},
    "nearest_trajectory": {"profile_points": 16, "transfer": "delta"},
    "voltage_regression": {"ridge_alpha": 1e-3, "degree": 2, "exposure_thresholds_v": [1.0, 0.5]},
}


@pytest.fixture
def toy(tmp_path):
    paths = write_toy_dataset(tmp_path)
    table = load_samples(paths["samples"])
    splits = json.loads(paths["splits"].read_text())
    return paths, table, splits


def _indices(table, splits, split):
    return (table.sample_index(splits[split]["train"], "train"), table.sample_index(splits[split]["test"], "test"))


def test_profile_features_hand_computed():
    features = run_profile_features(np.array([2.0, 0.5, 1.0]), np.array([0.0, 3600.0, 7200.0]), [1.0])
    # voltage, v0, running min, running max, recovery, elapsed h, exposure below 1 V (trapezoid, V h)
    np.testing.assert_allclose(features[2], [1.0, 2.0, 0.5, 2.0, 0.5, 2.0, 0.5])
    np.testing.assert_allclose(features[1, 6], 0.25)


def test_reference_rows(toy):
    paths, table, splits = toy
    train, test = _indices(table, splits, "random")
    persistence = persistence_reference(table, test)
    np.testing.assert_array_equal(persistence[:, 0], table.absorbance[table.samples["initial_row"][test]])
    drawn = random_reference(table, train, test.size, seed=0, draws=4)
    assert drawn.shape == (test.size, 4, table.wavenumber_cm1.size)
    train_targets = table.absorbance[table.samples["row"][train]]
    for spectrum in drawn.reshape(-1, drawn.shape[-1]):  # every draw is a training target spectrum
        assert np.any(np.all(train_targets == spectrum, axis=1))
    truth = noise_floor_reference(table, test, paths["truth"])
    with h5py.File(paths["truth"]) as handle:
        np.testing.assert_array_equal(truth[:, 0], handle["absorbance"][()][table.samples["row"][test]])


def test_noise_floor_needs_row_aligned_truth(toy, tmp_path):
    _, table, splits = toy
    bad = tmp_path / "bad_truth.h5"
    with h5py.File(bad, "w") as handle:
        handle.create_dataset("absorbance", data=np.zeros((3, table.wavenumber_cm1.size)))
    with pytest.raises(DataError, match="row-aligned"):
        noise_floor_reference(table, _indices(table, splits, "random")[1], bad)


def test_baselines_see_only_the_training_split(toy):
    """Poisoning every test target (NaN) must change nothing: the baselines never read them."""
    paths, table, splits = toy
    embeddings = read_mixture_embeddings(paths["embedding"])
    for split in ("random", "system"):
        train, test = _indices(table, splits, split)
        clean_nt, _ = nearest_trajectory(table, train, test, embeddings, 16)
        clean_vr = voltage_regression(table, train, test, 1e-3, 2, [1.0, 0.5])
        saved = table.absorbance.copy()
        table.absorbance[table.samples["row"][test]] = np.nan
        try:
            poisoned_nt, _ = nearest_trajectory(table, train, test, embeddings, 16)
            poisoned_vr = voltage_regression(table, train, test, 1e-3, 2, [1.0, 0.5])
        finally:
            table.absorbance[:] = saved
        np.testing.assert_array_equal(clean_nt, poisoned_nt)
        np.testing.assert_array_equal(clean_vr, poisoned_vr)
        assert np.isfinite(clean_nt).all() and np.isfinite(clean_vr).all()


def test_nearest_trajectory_picks_closest_chemistry(toy):
    paths, table, splits = toy
    train, test = _indices(table, splits, "system")
    prediction, chosen = nearest_trajectory(table, train, test, read_mixture_embeddings(paths["embedding"]), 16)
    assert chosen == {"sys_c/run01": "sys_b/run01"}  # sys_c's embedding is next to sys_b's
    # same voltage profile in every toy run: the change read off sys_b at the same row, added to sys_c's s(v_0)
    rows, initial = table.samples["row"][test], table.samples["initial_row"][test]
    offset = 13  # sys_b's rows precede sys_c's by one run of 13 rows
    expected = table.absorbance[initial] + table.absorbance[rows - offset] - table.absorbance[initial - offset]
    np.testing.assert_allclose(prediction[:, 0], expected, rtol=1e-6)
    with pytest.raises(DataError, match="sys_c"):
        nearest_trajectory(table, train, test, {"sys_a": np.zeros(2), "sys_b": np.ones(2)})


def test_voltage_regression_learns_the_change(toy):
    _, table, splits = toy
    train, test = _indices(table, splits, "system")
    target = table.absorbance[table.samples["row"][test]]
    persistence_error = np.abs(persistence_reference(table, test)[:, 0] - target).mean()
    regression_error = np.abs(voltage_regression(table, train, test, 1e-3, 2, [1.0, 0.5])[:, 0] - target).mean()
    assert regression_error < 0.3 * persistence_error


@pytest.mark.parametrize("degree", [1, 2])
def test_voltage_regression_as_arrays_predicts_as_scikit_learn(toy, tmp_path, degree):
    """The fitted pipeline as plain arrays (what a model directory carries for the hedge) predicts what the
    scikit-learn pipeline predicts, survives a safetensors round trip, and a damaged file is named."""
    from opir.formats.model_dir import IncompatibleModelError, read_hedge_partner, write_hedge_partner
    from opir.preprocess.profile import sample_profile_features

    _, table, splits = toy
    train, test = _indices(table, splits, "system")
    thresholds = [1.0, 0.5]
    spectra = table.absorbance.astype(np.float64)
    change = spectra[table.samples["row"][train]] - spectra[table.samples["initial_row"][train]]
    pipeline = _ridge(degree, 1e-3).fit(sample_profile_features(table, train, thresholds), change)
    features = sample_profile_features(table, test, thresholds)
    fitted = fit_voltage_regression(table, train, 1e-3, degree, thresholds)
    np.testing.assert_allclose(fitted.predict_change(features), pipeline.predict(features), rtol=1e-9, atol=1e-12)
    write_hedge_partner(tmp_path / "partner.safetensors", fitted.arrays(), "voltage_regression")
    arrays, partner = read_hedge_partner(tmp_path / "partner.safetensors")
    assert partner == "voltage_regression"
    again = VoltageRegressionMap.from_arrays(arrays)
    np.testing.assert_array_equal(again.predict_change(features), fitted.predict_change(features))
    with pytest.raises(DataError, match="profile features expected"):
        fitted.predict_change(features[:, :-1])
    with pytest.raises(DataError, match="missing coef"):
        VoltageRegressionMap.from_arrays({k: v for k, v in arrays.items() if k != "coef"})
    with pytest.raises(DataError, match="shapes do not fit"):
        VoltageRegressionMap.from_arrays({**arrays, "intercept": arrays["intercept"][:-1]})
    (tmp_path / "bad.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json}")
    with pytest.raises(IncompatibleModelError, match="bad.safetensors: unreadable"):
        read_hedge_partner(tmp_path / "bad.safetensors")


def test_random_split_yardsticks_read_the_runs_own_training_samples(toy, tmp_path):
    """The per-run ridge and the within-run smoother (random split only): fitted on the test run's own training
    samples, never on its test targets, better than the pooled fit here; refused on the system split."""
    paths, table, splits = toy
    train, test = _indices(table, splits, "random")
    target = table.absorbance[table.samples["row"][test]]
    per_run = voltage_regression_per_run(table, train, test, 1e-3, 1, [1.0, 0.5], min_run_samples=3)
    smoothed, sigma = within_run_smoother(table, train, test, (0.5, 1.0, 2.0))
    pooled = voltage_regression(table, train, test, 1e-3, 1, [1.0, 0.5])
    assert set(sigma) == set(table.run_key()[test]) and all(s > 0 for s in sigma.values())
    persistence_error = np.abs(persistence_reference(table, test)[:, 0] - target).mean()
    for prediction in (per_run, smoothed):
        assert np.isfinite(prediction).all() and prediction.shape == pooled.shape
        assert np.abs(prediction[:, 0] - target).mean() < persistence_error
    saved = table.absorbance.copy()
    table.absorbance[table.samples["row"][test]] = np.nan
    try:
        np.testing.assert_array_equal(per_run, voltage_regression_per_run(table, train, test, 1e-3, 1, [1.0, 0.5]))
        np.testing.assert_array_equal(smoothed, within_run_smoother(table, train, test, (0.5, 1.0, 2.0))[0])
    finally:
        table.absorbance[:] = saved
    # a run without enough training samples of its own: the per-run fit falls back to the pooled fit
    np.testing.assert_allclose(voltage_regression_per_run(table, train, test, 1e-3, 1, [1.0, 0.5],
                                                          min_run_samples=10_000), pooled)  # fmt: skip
    with pytest.raises(DataError, match="row of the random split only, not 'system'"):
        predict_baseline("within_run_smoother", paths["samples"], paths["splits"], "system", tmp_path / "p.h5",
                         {"bandwidths": [1.0]})  # fmt: skip
    system_train, system_test = _indices(table, splits, "system")
    with pytest.raises(DataError, match="has no training samples"):
        within_run_smoother(table, system_train, system_test)


def test_run_kernel_means_leave_each_training_sample_out_of_its_own(toy):
    """The within-run kernel means behind the smoother and ABCC's within-run context: read at a test sample, the
    smoother's change; read at a training sample with ``leave_out``, blind to that sample's own target."""
    from opir.baselines.regression import kernel_mean, run_kernel_means

    _, table, splits = toy
    train, test = _indices(table, splits, "random")
    run_key, elapsed = table.run_key(), table.samples["elapsed_s"]

    def change_of(index):
        return (table.absorbance[table.samples["row"][index]] - table.absorbance[table.samples["initial_row"][index]])

    means, present, widths = run_kernel_means(run_key, elapsed, change_of, train, test, (0.5, 1.0, 2.0))
    smoothed, sigma = within_run_smoother(table, train, test, (0.5, 1.0, 2.0))
    initial = table.absorbance[table.samples["initial_row"][test]]
    np.testing.assert_allclose(means, smoothed[:, 0] - initial)
    assert present.all() and widths == sigma
    own, own_present, own_widths = run_kernel_means(run_key, elapsed, change_of, train, train, (0.5, 1.0, 2.0),
                                                    leave_out=True)
    assert own_present.all() and own_widths == widths and np.isfinite(own).all()
    # leave-one-out: a reading ignores its own observation, and far from all others the nearest other stands in
    times, values = np.array([0.0, 1.0, 2.0, 3.0]), np.random.default_rng(0).normal(size=(4, 3))
    itself = np.eye(4, dtype=bool)
    moved = values.copy()
    moved[2] += 100.0
    before, after = (kernel_mean(times, v, times, 1.0, itself) for v in (values, moved))
    np.testing.assert_array_equal(before[2], after[2])
    assert np.abs(before[1] - after[1]).min() > 1.0
    far = kernel_mean(np.array([0.0, 1e6]), values[:2], np.array([0.0, 1e6]), 1.0, np.eye(2, dtype=bool))
    np.testing.assert_array_equal(far, values[[1, 0]])
    alone, alone_present, _ = run_kernel_means(run_key, elapsed, change_of, train[:1], train[:1], (1.0,),
                                               leave_out=True)
    assert not alone_present.any() and np.all(alone == 0)


def test_predict_baseline_files_and_evaluation(toy, tmp_path):
    paths, table, splits = toy
    for model, params in PARAMS.items():
        out = tmp_path / "predictions" / "system" / f"{model}.h5"
        predict_baseline(
            model,
            paths["samples"],
            paths["splits"],
            "system",
            out,
            params,
            truth_path=paths["truth"],
            embedding_path=paths["embedding"],
        )
        predictions = read_predictions(out)
        assert list(predictions.sample_id) == splits["system"]["test"]
        assert predictions.prediction.shape[1] == (3 if model == "random" else 1)
        assert read_provenance(out)["producer_rule"] == f"predict_{model}"
        record = evaluate_file(
            out,
            paths["samples"],
            paths["splits"],
            "system",
            model,
            tmp_path / f"{model}.json",
            {"alpha": 0.5, "gamma": 0.01},
        )
        assert np.isfinite(record["summary"]["dilate"]["mean"])
    scores = {m: json.loads((tmp_path / f"{m}.json").read_text())["summary"]["mae"]["mean"] for m in PARAMS}
    assert scores["noise_floor"] < scores["voltage_regression"] < scores["persistence"]
    with pytest.raises(DataError, match="truth"):
        predict_baseline(
            "noise_floor",
            paths["samples"],
            paths["splits"],
            "system",
            tmp_path / "x.h5",
            {},
            truth_path=tmp_path / "absent.h5",
        )


@pytest.mark.workflow
def test_workflow_tables_from_given_dataset(tmp_path):
    """The baselines and evaluate rules end to end (snakemake in a temporary working directory), on a sample table
    placed where the dataset stage would write it; only this stage's rules may run."""
    import shutil

    from conftest import run_snakemake

    paths = write_toy_dataset(tmp_path)
    (tmp_path / "results" / "dataset").mkdir(parents=True)
    (tmp_path / "results" / "embed").mkdir()
    for key in ("samples", "truth", "splits"):
        shutil.copy(paths[key], tmp_path / "results" / "dataset" / paths[key].name)
    shutil.copy(paths["embedding"], tmp_path / "results" / "embed" / "mixture_3d.h5")
    rules = ["baseline_reference", "baseline_noise_floor", "baseline_nearest_trajectory"]
    rules += ["baseline_voltage_regression", "evaluate"]
    # the metrics of this stage's models (the tables also gather the other stages' models, built elsewhere)
    targets = [f"results/metrics/{split}/{model}.json" for split in ("random", "system") for model in PARAMS]
    run_snakemake(tmp_path, "--cores", "2", "--allowed-rules", *rules, "--", *targets)
    for split in ("random", "system"):
        metrics = {m: tmp_path / "results" / "metrics" / split / f"{m}.json" for m in PARAMS}
        outputs = [tmp_path / f"{split}.csv"]
        frame = write_benchmark_table(metrics, outputs, split, split)
        assert list(frame["model"]) == [
            "nearest_trajectory",
            "voltage_regression",
            "random",
            "persistence",
            "noise_floor",
        ]
        record = json.loads(metrics["persistence"].read_text())
        assert record["n_samples"] == len(json.loads(paths["splits"].read_text())[split]["test"])
        assert record["provenance"]["producer_rule"] == "evaluate"
