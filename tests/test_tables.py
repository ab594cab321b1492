"""opir.evaluate.tables: scaling, row order, best-value marking and the three output formats."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from opir.core.errors import DataError
from opir.evaluate.tables import COLUMNS, benchmark_table, write_benchmark_table

METRICS = ("mae", "mse", "rmse", "sam_deg", "cos_sim", "r2", "dilate")


def _record(split: str, scale: float) -> dict:
    values = {"mae": 0.0123, "mse": 0.00045, "rmse": 0.0212, "sam_deg": 1.5, "cos_sim": 0.99, "r2": 0.9, "dilate": 0.25}
    summary = {}
    for metric, value in values.items():
        better_when_high = metric in ("cos_sim", "r2")
        mean = value * (1 / scale if better_when_high else scale)
        summary[metric] = {"mean": min(mean, 1.0) if better_when_high else mean, "std": value / 10, "n": 5}
    return {"split": split, "n_samples": 5, "n_runs": 2, "summary": summary}


def _write(tmp_path, records: dict) -> dict:
    paths = {}
    for model, record in records.items():
        paths[model] = tmp_path / f"{model}.json"
        paths[model].write_text(json.dumps(record))
    return paths


def test_table_scaling_order_and_formats(tmp_path):
    records = {
        "noise_floor": _record("system", 0.1),
        "persistence": _record("system", 3.0),
        "abcc": _record("system", 1.0),
        "random": _record("system", 10.0),
        "voltage_regression": _record("system", 2.0),
    }
    outputs = [tmp_path / "t.csv", tmp_path / "t.md", tmp_path / "t.tex"]
    frame = write_benchmark_table(
        _write(tmp_path, records), outputs, "Table 3: system split (mean ± std)", "tab:system", labels={"abcc": "ABCC"}
    )
    assert list(frame["model"]) == ["abcc", "voltage_regression", "random", "persistence", "noise_floor"]
    csv = pd.read_csv(outputs[0])
    assert csv.loc[0, "MAE (x1e-2) mean"] == pytest.approx(1.23)
    assert csv.loc[0, "MSE (x1e-3) mean"] == pytest.approx(0.45)
    assert csv.loc[0, "MAE (x1e-2) std"] == pytest.approx(0.123)
    markdown = outputs[1].read_text()
    assert "| ABCC | **1.230 ± 0.123** |" in markdown  # best model is bold ...
    assert "**0.123 ± 0.123**" not in markdown  # ... and the noise floor never is, although lower
    assert "| Noise floor | 0.123 ± 0.123 |" in markdown
    latex = outputs[2].read_text()
    assert r"$\mathbf{1.230 \pm 0.123}$" in latex and r"$\pm$" in latex.splitlines()[2]
    assert r"\label{tab:system}" in latex
    assert latex.count(r"\midrule") == 2  # after the header, and before the reference rows
    assert "voltage\\_regression" in latex
    assert len(COLUMNS) == len(METRICS)


def test_table_errors(tmp_path):
    with pytest.raises(DataError, match="several splits"):
        benchmark_table({"a": _record("random", 1.0), "b": _record("system", 1.0)})
    broken = _record("random", 1.0)
    del broken["summary"]["dilate"]
    with pytest.raises(DataError, match="dilate"):
        write_benchmark_table(_write(tmp_path, {"a": broken}), [tmp_path / "t.csv"], "c", "l")
    with pytest.raises(DataError, match="cannot read"):
        write_benchmark_table({"a": tmp_path / "absent.json"}, [tmp_path / "t.csv"], "c", "l")


def test_seed_replicates_are_pooled_into_their_row(tmp_path):
    """Table 4 with two seeds: one row per model, the mean of the seeds' means +- the std between them; the
    vae read-out bounds are reference rows (never bold, after the noise floor)."""
    from opir.evaluate.tables import pool_replicates, table_caption

    records = {"abcc": _record("system", 1.0), "abcc_no_cf": _record("system", 2.0),
               "abcc_seed1": _record("system", 3.0), "noise_floor": _record("system", 0.1),
               "vae_readout_waveform": _record("system", 0.5)}  # fmt: skip
    outputs = [tmp_path / "t.csv", tmp_path / "t.md"]
    frame = write_benchmark_table(_write(tmp_path, records), outputs, table_caption("table4_ablations", 2), "tab:4",
                                  replicates={"abcc_seed1": "abcc"})  # fmt: skip
    assert list(frame["model"]) == ["abcc", "abcc_no_cf", "noise_floor", "vae_readout_waveform"]
    row = frame.set_index("model").loc["abcc"]
    assert row["MAE (x1e-2) mean"] == pytest.approx((1.23 + 3.69) / 2)
    assert row["MAE (x1e-2) std"] == pytest.approx((3.69 - 1.23) / 2)  # two seeds: half their distance
    markdown = outputs[1].read_text()
    assert "mean over 2 training seeds ± std between them" in markdown
    assert "| VAE read-out bound (waveform) | 0.615 ± 0.123 |" in markdown  # a reference row: not bold
    assert table_caption("table4_ablations", 1) == table_caption("table4_ablations")
    with pytest.raises(DataError, match="no metrics of their own"):
        pool_replicates({"abcc_seed1": _record("system", 1.0)}, {"abcc_seed1": "abcc"})


def test_seed_replicates_retrain_only_the_seed():
    import yaml
    from conftest import REPO

    from opir.core.errors import ConfigError
    from opir.models.settings import resolve_model_config, seed_replicates

    models = yaml.safe_load((REPO / "config" / "config.yaml").read_text())["models"]
    extra = seed_replicates(models, ["abcc", "abcc_no_cf"], 3)
    assert sorted(extra) == ["abcc_no_cf_seed1", "abcc_no_cf_seed2", "abcc_seed1", "abcc_seed2"]
    models["variants"].update(extra)
    own, replicate = resolve_model_config(models, "abcc"), resolve_model_config(models, "abcc_seed2")
    assert replicate["train"]["seed"] == own["train"]["seed"] + 2 and replicate["splits"] == ["system"]
    assert {k: v for k, v in replicate.items() if k not in ("train", "splits")} == {
        k: v for k, v in own.items() if k not in ("train", "splits")}
    assert {k: v for k, v in replicate["train"].items() if k != "seed"} == {
        k: v for k, v in own["train"].items() if k != "seed"}
    assert seed_replicates(models, ["abcc"], 1) == {}
    with pytest.raises(ConfigError, match="abcc_seed1"):
        seed_replicates(models, ["abcc"], 2)  # the name is taken now
