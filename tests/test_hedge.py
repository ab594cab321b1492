"""Hedging under shift (opir.evaluate.hedge, opir.evaluate.settings): held-out groups and splits, the blend, the
weight's choice, and which models can be hedged. The workflow's hedged row is checked on the finished test workspace
(tests/test_benchmark_scripts.py)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from opir.core.errors import ConfigError, DataError
from opir.evaluate.hedge import blend, choose_weight, held_out_split, read_weight, write_weight
from opir.evaluate.settings import check_hedge_models, hedged_name, held_out_groups
from opir.formats.predictions import Predictions

TRAIN = ["cu_dmc", "cu_lp30", "lto_lp30", "sn_lp30"]


def test_held_out_groups_leave_one_system_out_or_as_given():
    assert held_out_groups(None, TRAIN) == {s: [s] for s in TRAIN}
    assert held_out_groups([["sn_lp30", "cu_dmc"], ["lto_lp30"]], TRAIN) == {
        "sn_lp30+cu_dmc": ["sn_lp30", "cu_dmc"], "lto_lp30": ["lto_lp30"]}
    with pytest.raises(ConfigError, match="coo_x"):
        held_out_groups([["coo_x"]], TRAIN)  # a test system, or a typo: never held out silently
    with pytest.raises(ConfigError, match="every training system"):
        held_out_groups([TRAIN], TRAIN)


def test_held_out_split_divides_the_training_samples_only():
    system_of = {"a/r/1": "cu_dmc", "a/r/2": "cu_dmc", "b/r/1": "sn_lp30", "t/r/1": "coo"}
    split = held_out_split(["a/r/1", "a/r/2", "b/r/1"], system_of, ["sn_lp30"])
    assert split == {"train": ["a/r/1", "a/r/2"], "test": ["b/r/1"]}
    with pytest.raises(DataError, match="no training samples"):
        held_out_split(["a/r/1"], system_of, ["sn_lp30"])


def _predictions(ids, values):
    return Predictions(np.asarray(ids), np.array([1000.0, 1100.0]), np.asarray(values, dtype=np.float32))


def test_blend_moves_every_draw_towards_the_partners_mean():
    model = _predictions(["s1", "s2"], [[[1.0, 1.0], [3.0, 3.0]], [[0.0, 2.0], [0.0, 2.0]]])  # (n=2, k=2, N=2)
    partner = _predictions(["s2", "s1"], [[[4.0, 4.0]], [[0.0, 0.0], ]])  # another order, one draw
    np.testing.assert_allclose(blend(model, partner, 1.0), model.prediction)
    np.testing.assert_allclose(blend(model, partner, 0.0)[0], [[0.0, 0.0], [0.0, 0.0]])
    np.testing.assert_allclose(blend(model, partner, 0.0)[1], [[4.0, 4.0], [4.0, 4.0]])
    half = blend(model, partner, 0.5)
    np.testing.assert_allclose(half[0], [[0.5, 0.5], [1.5, 1.5]])  # the spread of the draws halves with w
    np.testing.assert_allclose(half.mean(axis=1), 0.5 * model.mean + 0.5 * np.array([[0.0, 0.0], [4.0, 4.0]]))
    with pytest.raises(DataError, match="no prediction"):
        blend(model, _predictions(["s1"], [[[0.0, 0.0]]]), 0.5)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        blend(model, partner, 1.5)


def test_the_weight_is_the_least_mean_mae_over_groups_each_counted_once():
    curves = {
        "sn": {"0.0": {"mae": 0.05}, "0.5": {"mae": 0.04}, "1.0": {"mae": 0.06}},
        "lto": {"0.0": {"mae": 0.16}, "0.5": {"mae": 0.10}, "1.0": {"mae": 0.09}},
    }
    choice = choose_weight(curves)
    assert choice["weight"] == 0.5 and choice["groups"] == ["lto", "sn"]
    assert choice["mean_curve"]["1.0"] == pytest.approx(0.075)
    tie = {"g": {"0.0": {"mae": 0.1}, "1.0": {"mae": 0.1}}}
    assert choose_weight(tie)["weight"] == 1.0  # a tie keeps the model
    with pytest.raises(DataError, match="weight grids"):
        choose_weight({"a": {"0.0": {"mae": 1.0}}, "b": {"0.5": {"mae": 1.0}}})


def test_the_weight_file_names_the_partner_and_its_settings(tmp_path):
    curves = {"g": {"0.0": {"mae": 0.2}, "1.0": {"mae": 0.1}}}
    settings = {"ridge_alpha": 1.0, "degree": 1, "exposure_thresholds_v": [1.0]}
    write_weight(curves, "voltage_regression", settings, tmp_path / "weight.json")
    choice = read_weight(tmp_path / "weight.json")
    assert choice["weight"] == 1.0 and choice["partner"] == "voltage_regression"
    assert choice["partner_settings"] == settings
    # a file of an earlier opir (the weight alone) cannot be packaged: which key is missing is said
    (tmp_path / "old.json").write_text(json.dumps(choose_weight(curves)))
    with pytest.raises(DataError, match="old.json: no partner, partner_settings"):
        read_weight(tmp_path / "old.json")
    (tmp_path / "broken.json").write_text("{")
    with pytest.raises(DataError, match="broken.json: cannot read"):
        read_weight(tmp_path / "broken.json")


def test_only_trained_1d_models_of_the_system_split_can_be_hedged():
    models = yaml.safe_load((Path(__file__).parents[1] / "config" / "config.yaml").read_text())["models"]
    check_hedge_models(models, ["abcc1d", "abcc1d_regression"])
    assert hedged_name("abcc1d") == "abcc1d_hedged"
    for name, reason in (("abcc", "only 1D variants"), ("abcc1d_euler4", "prediction-only"),
                         ("nope", "not a variant")):  # fmt: skip
        with pytest.raises(ConfigError, match=reason):
            check_hedge_models(models, [name])
