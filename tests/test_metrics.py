"""opir.evaluate.metrics: hand-computed metric values, soft-DTW against tslearn, DILATE, the predictions file and
evaluation of a predictions file against a small sample table made here (``helpers.write_toy_dataset``)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from helpers import write_toy_dataset

from opir.core.errors import DataError
from opir.core.h5io import provenance
from opir.evaluate.metrics import (
    dilate,
    evaluate_file,
    evaluate_predictions,
    soft_dtw,
    soft_dtw_alignment,
    spectral_metrics,
    squared_l2_cost,
)
from opir.formats.predictions import read_predictions, write_predictions
from opir.formats.samples import load_samples


# ---- per-sample metrics ----------------------------------------------------------------------------------------
def test_spectral_metrics_hand_computed():
    scores = spectral_metrics(np.array([[1.0, 2.0, 3.0]]), np.array([[1.0, 2.0, 5.0]]))
    assert scores["mae"][0] == pytest.approx(2 / 3)
    assert scores["mse"][0] == pytest.approx(4 / 3)
    assert scores["rmse"][0] == pytest.approx(math.sqrt(4 / 3))
    cos = 20 / math.sqrt(14 * 30)
    assert scores["cos_sim"][0] == pytest.approx(cos)
    assert scores["sam_deg"][0] == pytest.approx(math.degrees(math.acos(cos)))
    # target mean 8/3, SS_tot = 78/9, SS_res = 4
    assert scores["r2"][0] == pytest.approx(1 - 4 / (78 / 9))


def test_spectral_metrics_limits():
    x = np.array([[1.0, 0.0], [0.3, 0.7], [0.0, 0.0]])
    y = np.array([[0.0, 1.0], [0.3, 0.7], [1.0, 2.0]])
    scores = spectral_metrics(x, y)
    assert scores["sam_deg"][0] == pytest.approx(90.0) and scores["cos_sim"][0] == pytest.approx(0.0)
    assert scores["sam_deg"][1] == pytest.approx(0.0, abs=1e-5) and scores["r2"][1] == pytest.approx(1.0)
    assert scores["cos_sim"][2] == 0.0  # a zero prediction has no direction: cosine 0, not NaN
    assert np.isnan(spectral_metrics(np.array([[1.0, 2.0]]), np.array([[3.0, 3.0]]))["r2"][0])


# ---- soft-DTW and DILATE ---------------------------------------------------------------------------------------
def test_soft_dtw_hand_computed():
    cost = np.array([[0.0, 1.0], [1.0, 0.0]])
    value, alignment = soft_dtw_alignment(cost, gamma=1.0)
    # R12 = R21 = 1, R22 = 0 + softmin(0, 1, 1) = -log(1 + 2/e)
    assert value == pytest.approx(-math.log(1 + 2 / math.e))
    p_side = math.exp(-1) / (1 + 2 / math.e)
    np.testing.assert_allclose(alignment, [[1.0, p_side], [p_side, 1.0]], rtol=1e-12)
    assert soft_dtw(np.array([[0.7]]), 0.01)[0] == pytest.approx(0.7)
    # small gamma: the hard DTW (here the diagonal path, cost 0 + 0)
    assert soft_dtw(cost, 1e-4)[0] == pytest.approx(0.0, abs=1e-3)


def test_dilate_hand_computed():
    y = np.array([[0.0], [1.0]])  # squared-L2 cost [[0, 1], [1, 0]]
    out = dilate(y, y, alpha=0.5, gamma=1.0)
    shape = -math.log(1 + 2 / math.e) / 2
    # two off-diagonal cells, each at a distortion of (1/2)^2, averaged over n = 2 steps
    temporal = 2 * (math.exp(-1) / (1 + 2 / math.e)) * 0.25 / 2
    assert out["shape"] == pytest.approx(shape)
    assert out["temporal"] == pytest.approx(temporal)
    assert out["dilate"] == pytest.approx(0.5 * shape + 0.5 * temporal)


def test_dilate_penalizes_time_shift():
    rng = np.random.default_rng(1)
    target = np.cumsum(rng.normal(size=(20, 30)), axis=0)
    shifted = np.concatenate([target[:1].repeat(3, 0), target[:-3]])
    good, late = dilate(target, target), dilate(shifted, target)
    assert good["temporal"] == pytest.approx(0.0, abs=1e-9) and good["shape"] == pytest.approx(0.0, abs=1e-6)
    # a 3-step lag in 20 steps: a squared distortion near (3/20)^2 over most of the path
    assert 0.01 < late["temporal"] < 0.03 and late["dilate"] > good["dilate"]


def test_soft_dtw_matches_tslearn():
    tslearn_metrics = pytest.importorskip("tslearn.metrics")  # ~10 s import: the one tslearn test
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(9, 6)), rng.normal(size=(12, 6))
    for gamma in (0.01, 0.1, 1.0):
        value, alignment = soft_dtw_alignment(squared_l2_cost(a, b), gamma)
        ref_alignment, ref_value = tslearn_metrics.soft_dtw_alignment(a, b, gamma=gamma)
        assert value == pytest.approx(ref_value, rel=1e-10)
        np.testing.assert_allclose(alignment, ref_alignment, atol=1e-9)
        assert value == pytest.approx(tslearn_metrics.soft_dtw(a, b, gamma=gamma), rel=1e-10)


# ---- predictions file and evaluation ---------------------------------------------------------------------------
def test_predictions_round_trip(tmp_path):
    path = tmp_path / "p.h5"
    pred = np.arange(2 * 3 * 4, dtype=np.float32).reshape(2, 3, 4)
    write_predictions(path, ["a", "b"], np.linspace(800, 2000, 4), pred, provenance("t", {}, []), model="m")
    back = read_predictions(path)
    assert list(back.sample_id) == ["a", "b"] and back.prediction.dtype == np.float32
    np.testing.assert_array_equal(back.prediction, pred)
    np.testing.assert_allclose(back.mean, pred.mean(axis=1))
    with pytest.raises(ValueError):
        write_predictions(tmp_path / "q.h5", ["a"], np.arange(4.0), pred)
    with pytest.raises(DataError, match="does not exist"):
        read_predictions(tmp_path / "missing.h5")


def test_evaluate_file_persistence(tmp_path):
    paths = write_toy_dataset(tmp_path)
    table = load_samples(paths["samples"])
    test_ids = json.loads(paths["splits"].read_text())["system"]["test"]
    index = table.sample_index(test_ids, "t")
    pred = table.absorbance[table.samples["initial_row"][index]]
    order = np.random.default_rng(0).permutation(len(test_ids))  # file order must not matter
    pred_path = tmp_path / "persistence.h5"
    write_predictions(pred_path, np.array(test_ids)[order], table.wavenumber_cm1, pred[order])
    out = tmp_path / "metrics.json"
    record = evaluate_file(
        pred_path, paths["samples"], paths["splits"], "system", "persistence", out, {"alpha": 0.5, "gamma": 0.01}
    )
    assert json.loads(out.read_text())["summary"] == record["summary"]
    target = table.absorbance[table.samples["row"][index]]
    expected = spectral_metrics(pred, target)
    assert record["summary"]["mae"]["mean"] == pytest.approx(expected["mae"].mean())
    assert record["summary"]["r2"]["std"] == pytest.approx(expected["r2"].std())
    assert record["n_runs"] == 1 and record["n_samples"] == len(test_ids)
    assert record["summary"]["dilate"]["mean"] == pytest.approx(dilate(pred, target, 0.5, 0.01)["dilate"])


def test_evaluate_rejects_bad_predictions(tmp_path):
    paths = write_toy_dataset(tmp_path)
    table = load_samples(paths["samples"])
    test_ids = json.loads(paths["splits"].read_text())["random"]["test"]
    pred = np.zeros((len(test_ids), 1, table.wavenumber_cm1.size), dtype=np.float32) + 0.1
    from opir.formats.predictions import Predictions

    with pytest.raises(DataError, match="missing 1"):
        evaluate_predictions(Predictions(np.array(test_ids[1:]), table.wavenumber_cm1, pred[1:]), table, test_ids)
    bad = pred.copy()
    bad[3, 0, 5] = np.nan
    with pytest.raises(DataError, match=test_ids[3]):
        evaluate_predictions(Predictions(np.array(test_ids), table.wavenumber_cm1, bad), table, test_ids)
    with pytest.raises(DataError, match="common grid"):
        evaluate_predictions(Predictions(np.array(test_ids), table.wavenumber_cm1 + 1, pred), table, test_ids)
    with pytest.raises(DataError, match="duplicated"):
        ids = np.array([test_ids[0], *test_ids[:-1]])
        evaluate_predictions(Predictions(ids, table.wavenumber_cm1, pred), table, test_ids)
