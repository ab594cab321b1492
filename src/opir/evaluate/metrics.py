"""OpIRBench metrics (docs/benchmark.md); the predictions file every model writes is in opir.formats.

Per test sample, across wavenumbers: MAE, MSE, RMSE, SAM (spectral angle, degrees), cosine similarity and R2.
Per test run, over its test spectra in acquisition order (the order in which the voltage profile is traversed):
DILATE (Le Guen & Thome, NeurIPS 2019) with a squared-L2 cost between spectra, computed with our own soft-DTW
(anti-diagonal recursion in numpy; checked against tslearn in tests/test_metrics.py).

Evaluation reads only prediction files (``results/predictions/{split}/{model}.h5``), the sample table and the
splits, so every model, present and future, is scored by the same code.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

import numpy as np

from opir.core.arrays import cosine_similarity_rows, r2_rows
from opir.core.errors import DataError
from opir.core.h5io import atomic_path, provenance
from opir.formats.predictions import Predictions, read_predictions
from opir.formats.samples import SampleTable, load_samples, load_split

log = logging.getLogger(__name__)

#: Per-sample metrics, in table order.
SAMPLE_METRICS = ("mae", "mse", "rmse", "sam_deg", "cos_sim", "r2")
#: Metrics where larger is better (the others: smaller is better).
HIGHER_IS_BETTER = frozenset({"cos_sim", "r2"})


# --------------------------------------------------------------------------------------------------------------
# Per-sample spectral metrics
# --------------------------------------------------------------------------------------------------------------
def spectral_metrics(prediction: np.ndarray, target: np.ndarray) -> dict[str, np.ndarray]:
    """MAE, MSE, RMSE, SAM (degrees), cosine similarity and R2 of each row of ``prediction`` against ``target``.

    Both are (n, N_f) on the same wavenumber grid; every metric is taken across wavenumbers, one value per row.
    R2 is 1 - SS_res / SS_tot with SS_tot the spread of the target spectrum around its own mean. Conventions for
    degenerate spectra (a model may well predict zeros): a zero-norm vector has cosine 0 with anything but another
    zero vector (cosine 1); a constant target has no R2 (NaN), which evaluation reports as an error.
    """
    pred = np.atleast_2d(np.asarray(prediction, dtype=np.float64))
    true = np.atleast_2d(np.asarray(target, dtype=np.float64))
    if pred.shape != true.shape:
        raise ValueError(f"prediction {pred.shape} and target {true.shape} differ in shape")
    residual = pred - true
    mse = np.mean(residual**2, axis=1)
    cos = cosine_similarity_rows(pred, true)
    r2 = r2_rows(true, pred)
    return {
        "mae": np.mean(np.abs(residual), axis=1),
        "mse": mse,
        "rmse": np.sqrt(mse),
        "sam_deg": np.degrees(np.arccos(cos)),
        "cos_sim": cos,
        "r2": r2,
    }


# --------------------------------------------------------------------------------------------------------------
# Soft-DTW and DILATE
# --------------------------------------------------------------------------------------------------------------
def squared_l2_cost(prediction_seq: np.ndarray, target_seq: np.ndarray) -> np.ndarray:
    """Cost matrix C[i, j] = ||prediction_i - target_j||^2 (sum over wavenumbers) between two spectrum sequences."""
    a = np.asarray(prediction_seq, dtype=np.float64)
    b = np.asarray(target_seq, dtype=np.float64)
    cost = (a**2).sum(1)[:, None] + (b**2).sum(1)[None, :] - 2.0 * a @ b.T
    return np.maximum(cost, 0.0)  # the expansion can go slightly negative for near-identical spectra


def _softmin(a: np.ndarray, b: np.ndarray, c: np.ndarray, gamma: float) -> np.ndarray:
    stacked = -np.stack([a, b, c]) / gamma
    top = stacked.max(axis=0)
    top = np.where(np.isfinite(top), top, 0.0)
    return -gamma * (top + np.log(np.exp(stacked - top).sum(axis=0)))


def _diagonal(k: int, n: int, m: int) -> tuple[np.ndarray, np.ndarray]:
    """1-based cells (i, j) with i + j = k inside the n x m grid."""
    i = np.arange(max(1, k - m), min(n, k - 1) + 1)
    return i, k - i


def soft_dtw(cost: np.ndarray, gamma: float) -> tuple[float, np.ndarray]:
    """Soft-DTW value (Cuturi & Blondel 2017) of a cost matrix, and the accumulated matrix R ((n+2) x (m+2)).

    The recursion R[i, j] = C[i, j] + softmin_gamma(R[i-1, j-1], R[i-1, j], R[i, j-1]) runs one anti-diagonal at a
    time, so a 2,000-spectrum run costs a few thousand vectorized numpy steps instead of millions of Python ones.
    """
    if gamma <= 0:
        raise ValueError(f"soft-DTW gamma must be > 0, got {gamma}")
    cost = np.asarray(cost, dtype=np.float64)
    n, m = cost.shape
    big = np.inf
    r = np.full((n + 2, m + 2), big)
    r[0, 0] = 0.0
    for k in range(2, n + m + 1):
        i, j = _diagonal(k, n, m)
        r[i, j] = cost[i - 1, j - 1] + _softmin(r[i - 1, j - 1], r[i - 1, j], r[i, j - 1], gamma)
    return float(r[n, m]), r


def soft_dtw_alignment(cost: np.ndarray, gamma: float) -> tuple[float, np.ndarray]:
    """Soft-DTW value and its gradient with respect to the cost matrix: the expected alignment A (n x m).

    A[i, j] is the probability-like weight of cell (i, j) on the soft-min path (Cuturi & Blondel, Alg. 2); DILATE's
    temporal term is its overlap with a distortion penalty.
    """
    cost = np.asarray(cost, dtype=np.float64)
    n, m = cost.shape
    value, r = soft_dtw(cost, gamma)
    c = np.zeros((n + 2, m + 2))
    c[1 : n + 1, 1 : m + 1] = cost
    r[:, m + 1] = -np.inf
    r[n + 1, :] = -np.inf
    r[n + 1, m + 1] = r[n, m]
    e = np.zeros((n + 2, m + 2))
    e[n + 1, m + 1] = 1.0
    with np.errstate(invalid="ignore", over="ignore"):
        for k in range(n + m, 1, -1):
            i, j = _diagonal(k, n, m)
            a = np.exp((r[i + 1, j] - r[i, j] - c[i + 1, j]) / gamma)
            b = np.exp((r[i, j + 1] - r[i, j] - c[i, j + 1]) / gamma)
            d = np.exp((r[i + 1, j + 1] - r[i, j] - c[i + 1, j + 1]) / gamma)
            e[i, j] = (
                np.nan_to_num(e[i + 1, j] * a) + np.nan_to_num(e[i, j + 1] * b) + np.nan_to_num(e[i + 1, j + 1] * d)
            )
    return value, e[1 : n + 1, 1 : m + 1]


def dilate(prediction_seq: np.ndarray, target_seq: np.ndarray, alpha: float = 0.5, gamma: float = 0.01) -> dict:
    """DILATE between a predicted and a measured sequence of spectra (same length n, acquisition order).

    Normalization (docs/benchmark.md): cost C[i, j] = ||y_hat_i - y_j||^2 summed over the wavenumber grid;
    shape = softDTW_gamma(C) / n; temporal = sum_ij A[i, j] ((i - j) / n)^2 / n with A the soft-DTW expected
    alignment. Both are per step of the run, and the time distortion is a fraction of the run's length, so runs of
    14 and of 2,000 spectra are comparable (Le Guen & Thome's code divides sum A (i - j)^2 by n^2 only: fine for
    their fixed horizon, but it grows linearly with n). DILATE = alpha * shape + (1 - alpha) * temporal.
    """
    pred = np.asarray(prediction_seq, dtype=np.float64)
    true = np.asarray(target_seq, dtype=np.float64)
    if pred.shape != true.shape or pred.ndim != 2:
        raise ValueError(f"DILATE needs two (n, N_f) sequences of equal shape, got {pred.shape} and {true.shape}")
    n = pred.shape[0]
    value, alignment = soft_dtw_alignment(squared_l2_cost(pred, true), gamma)
    position = np.arange(n, dtype=np.float64) / n  # time as a fraction of the run
    omega = (position[:, None] - position[None, :]) ** 2
    shape = value / n
    temporal = float(np.sum(alignment * omega)) / n
    return {"dilate": alpha * shape + (1.0 - alpha) * temporal, "shape": shape, "temporal": temporal}


# --------------------------------------------------------------------------------------------------------------
# Evaluation of one predictions file
# --------------------------------------------------------------------------------------------------------------
def _summary(values: np.ndarray) -> dict[str, float]:
    # Population std (ddof=0): the spread of the scores actually observed, defined for a single run too.
    return {"mean": float(np.mean(values)), "std": float(np.std(values)), "n": int(values.size)}


def evaluate_predictions(
    predictions: Predictions,
    table: SampleTable,
    test_ids: list[str],
    alpha: float = 0.5,
    gamma: float = 0.01,
    where: str = "predictions",
) -> dict[str, Any]:
    """Score predictions on a split's test samples: per-sample metrics and per-run DILATE, with summaries.

    The predictions must cover exactly the test samples, once each, on the sample table's wavenumber grid, with
    finite values: anything else is a :class:`DataError` naming the samples.
    """
    ids = list(predictions.sample_id)
    if len(set(ids)) != len(ids):
        dup = sorted({sid for sid in ids if ids.count(sid) > 1})
        raise DataError(f"{where}: duplicated sample id(s) {dup[:5]}")
    missing = sorted(set(test_ids) - set(ids))
    extra = sorted(set(ids) - set(test_ids))
    if missing or extra:
        raise DataError(
            f"{where}: predictions must cover exactly the {len(test_ids)} test samples; "
            f"missing {len(missing)} (e.g. {missing[:3]}), not test samples {len(extra)} (e.g. {extra[:3]})"
        )
    if predictions.wavenumber_cm1.shape != table.wavenumber_cm1.shape or not np.allclose(
        predictions.wavenumber_cm1, table.wavenumber_cm1, rtol=0, atol=1e-6
    ):
        raise DataError(f"{where}: wavenumber_cm1 differs from the common grid of {table.path}")
    point = predictions.mean
    finite = np.isfinite(point).all(axis=1)
    if not finite.all():
        raise DataError(f"{where}: non-finite prediction for sample(s) {list(predictions.sample_id[~finite][:5])}")

    index = table.sample_index(ids, where)
    target = table.absorbance[table.samples["row"][index]]
    scores = spectral_metrics(point, target)
    for name, values in scores.items():
        bad = ~np.isfinite(values)
        if bad.any():
            raise DataError(
                f"{table.path}: metric {name} undefined for sample(s) {[ids[i] for i in np.flatnonzero(bad)[:5]]} "
                "(constant or non-finite target spectrum)"
            )

    runs = table.run_key()[index]
    m = table.samples["m"][index]
    per_run = {}
    for run in sorted(set(runs)):
        members = np.flatnonzero(runs == run)
        members = members[np.argsort(m[members], kind="stable")]  # voltage-profile (acquisition) order
        per_run[run] = {"n": int(members.size), **dilate(point[members], target[members], alpha, gamma)}
    dilate_values = np.array([r["dilate"] for r in per_run.values()])

    summary = {name: _summary(values) for name, values in scores.items()}
    summary["dilate"] = _summary(dilate_values)
    return {
        "n_samples": len(ids),
        "n_runs": len(per_run),
        "k_draws": int(predictions.prediction.shape[1]),
        "dilate_params": {"alpha": alpha, "gamma": gamma},
        "summary": summary,
        "per_run": per_run,
        "per_sample": {"sample_id": ids, **{name: values.tolist() for name, values in scores.items()}},
    }


def evaluate_file(
    predictions_path: str | os.PathLike,
    samples_path: str | os.PathLike,
    splits_path: str | os.PathLike,
    split: str,
    model: str,
    metrics_path: str | os.PathLike,
    dilate_params: dict[str, float],
    rule: str = "evaluate",
) -> dict[str, Any]:
    """The evaluate rule: read one predictions file, score it, write ``results/metrics/{split}/{model}.json``."""
    table = load_samples(samples_path)
    test_ids = load_split(splits_path, split)["test"]
    predictions = read_predictions(predictions_path)
    result = evaluate_predictions(
        predictions, table, test_ids, dilate_params["alpha"], dilate_params["gamma"], where=str(predictions_path)
    )
    record = {
        "model": model,
        "split": split,
        **result,
        "provenance": provenance(rule, dilate_params, [predictions_path, samples_path, splits_path]),
    }
    with atomic_path(metrics_path) as tmp:
        Path(tmp).write_text(json.dumps(record, indent=1))
    log.info(
        "%s/%s: %d samples, %d runs, MAE %.4g, DILATE %.4g",
        split,
        model,
        result["n_samples"],
        result["n_runs"],
        result["summary"]["mae"]["mean"],
        result["summary"]["dilate"]["mean"],
    )
    return record
