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
