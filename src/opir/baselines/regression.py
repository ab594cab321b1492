"""The non-neural baselines: the nearest training trajectory, the per-wavenumber voltage regression (pooled and per
run), and the within-run smoother; the last two are yardsticks of the random split only, where every test sample
lies between training samples of its own run (docs/benchmark.md, "Yardsticks of the random split")."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from opir.baselines.references import REFERENCE_MODELS, noise_floor_reference, persistence_reference, random_reference
from opir.core.errors import DataError
from opir.core.h5io import provenance
from opir.formats.embeddings import read_mixture_embeddings
from opir.formats.predictions import write_predictions
from opir.formats.samples import SampleTable, load_samples, load_split
from opir.preprocess.profile import resample_voltage_profile, run_profile_features, sample_profile_features

log = logging.getLogger(__name__)


BASELINE_MODELS = ("nearest_trajectory", "voltage_regression", "voltage_regression_per_run", "within_run_smoother")
#: Splits a baseline is a row of (the others: both). The per-run yardsticks need training samples of the test
#: sample's own run, which the system split never has.
BASELINE_SPLITS = {"voltage_regression_per_run": ("random",), "within_run_smoother": ("random",)}


def baseline_splits(model: str) -> tuple[str, ...]:
    """The splits ``model`` is a row of: a baseline's own, every other model both."""
    return BASELINE_SPLITS.get(model, ("random", "system"))


# --------------------------------------------------------------------------------------------------------------
# Nearest training trajectory
# --------------------------------------------------------------------------------------------------------------


def _scale(vectors: np.ndarray) -> float:
    """Median non-zero pairwise distance: puts chemistry and profile distances on a common footing."""
    if len(vectors) < 2:
        return 1.0
    d = np.linalg.norm(vectors[:, None, :] - vectors[None, :, :], axis=-1)
    d = d[np.triu_indices(len(vectors), 1)]
    d = d[d > 0]
    return float(np.median(d)) if d.size else 1.0


def nearest_trajectory(
    table: SampleTable,
    train_idx: np.ndarray,
    test_idx: np.ndarray,
    embeddings: dict[str, np.ndarray],
    profile_points: int = 32,
    transfer: str = "delta",
) -> tuple[np.ndarray, dict[str, str]]:
    """Predict each test sample from the nearest training run, read at the same voltage and branch.

    Run distance = ||e_test - e_run|| / s_e + ||P_test - P_run|| / s_P, where e is the system's mixture embedding
    and P the voltage profile known as input (v_0 up to the run's last sample of the set) resampled on
    ``profile_points`` fractions; s_e, s_P are median pairwise distances among the training runs. In the chosen run,
    the row with the smallest |v - v_m| + |recovery - recovery_m| (training targets and the initial spectrum) is read.
    ``transfer='delta'`` adds that row's change since the run's v_0 to the test sample's own s(v_0);
    ``'absolute'`` copies the spectrum. Returns (n_test, 1, N_f) and the chosen run of each test run.
    """
    if transfer not in ("delta", "absolute"):
        raise ValueError(f"nearest_trajectory transfer must be 'delta' or 'absolute', got {transfer!r}")
    samples = table.samples
    run_key = table.run_key()

    def run_info(index: np.ndarray) -> dict[str, dict[str, Any]]:
        info = {}
        for run in np.unique(run_key[index]):
            members = index[run_key[index] == run]
            start = int(samples["initial_row"][members[0]])
            rows = samples["row"][members]
            system = str(samples["system_id"][members[0]])
            if system not in embeddings:
                raise DataError(f"mixture embeddings: no entry for system '{system}' (run {run})")
            voltage = table.rows["voltage_v"][start : rows.max() + 1]
            info[run] = {
                "embedding": np.asarray(embeddings[system], dtype=np.float64),
                "profile": resample_voltage_profile(voltage, profile_points, dtype=np.float64),
                "start": start,
                "rows": np.concatenate([[start], np.sort(rows)]),
            }
        return info

    train_runs = run_info(train_idx)
    test_runs = run_info(test_idx)
    names = sorted(train_runs)
    if not names:
        raise DataError(f"{table.path}: no training runs for the nearest-trajectory baseline")
    train_emb = np.stack([train_runs[r]["embedding"] for r in names])
    train_prof = np.stack([train_runs[r]["profile"] for r in names])
    scale_e, scale_p = _scale(train_emb), _scale(train_prof)

    test_features = sample_profile_features(table, test_idx, ())
    prediction = np.empty((test_idx.size, table.absorbance.shape[1]), dtype=np.float64)
    chosen: dict[str, str] = {}
    for run, info in test_runs.items():
        distance = (
            np.linalg.norm(train_emb - info["embedding"], axis=1) / scale_e
            + np.linalg.norm(train_prof - info["profile"], axis=1) / scale_p
        )
        best = names[int(np.argmin(distance))]
        chosen[run] = best
        neighbour = train_runs[best]
        start, rows = neighbour["start"], neighbour["rows"]
        full = run_profile_features(
            table.rows["voltage_v"][start : rows.max() + 1], table.rows["elapsed_s"][start : rows.max() + 1], ()
        )[rows - start]
        members = np.flatnonzero(run_key[test_idx] == run)
        # columns 0 and 4: voltage and recovery since the running minimum (the branch of the profile)
        gap = np.abs(test_features[members, 0, None] - full[None, :, 0]) + np.abs(
            test_features[members, 4, None] - full[None, :, 4]
        )
        read = rows[np.argmin(gap, axis=1)]
        spectra = table.absorbance[read].astype(np.float64)
        if transfer == "delta":
            own_initial = table.absorbance[samples["initial_row"][test_idx[members]]]
            spectra = own_initial + spectra - table.absorbance[start]
        prediction[members] = spectra
        log.info("nearest trajectory: %s -> %s (distance %.3g)", run, best, distance.min())
    return prediction[:, None, :], chosen


# --------------------------------------------------------------------------------------------------------------
# Per-wavenumber regression of the change on voltage-profile features
# --------------------------------------------------------------------------------------------------------------
def _ridge(degree: int, ridge_alpha: float):
    """Standardized (polynomial) features -> ridge, one output per wavenumber."""
    # scikit-learn only for these baselines
    from sklearn.linear_model import Ridge
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import PolynomialFeatures, StandardScaler

    return make_pipeline(StandardScaler(), PolynomialFeatures(degree=degree, include_bias=False), StandardScaler(),
                         Ridge(alpha=ridge_alpha))  # fmt: skip


def _change(table: SampleTable, index: np.ndarray) -> np.ndarray:
    samples = table.samples
    return table.absorbance[samples["row"][index]].astype(np.float64) - table.absorbance[
        samples["initial_row"][index]].astype(np.float64)  # fmt: skip


@dataclass(frozen=True)
class VoltageRegressionMap:
    """A fitted :func:`_ridge` pipeline as plain arrays, so that it travels in a model directory as safetensors
    (nothing unpickled) and predicts without scikit-learn: standardize the profile features, raise them to
    ``powers`` (scikit-learn's polynomial terms), standardize again, apply the ridge. Predicts the change
    s(v_m) - s(v_0), one output per wavenumber."""

    feature_mean: np.ndarray  # (F,)
    feature_scale: np.ndarray  # (F,)
    powers: np.ndarray  # (P, F) exponents of each polynomial term
    term_mean: np.ndarray  # (P,)
    term_scale: np.ndarray  # (P,)
    coef: np.ndarray  # (N_f, P)
    intercept: np.ndarray  # (N_f,)

    @classmethod
    def from_pipeline(cls, pipeline) -> VoltageRegressionMap:
        first, poly, second, ridge = (step for _, step in pipeline.steps)
        return cls(first.mean_, first.scale_, poly.powers_.astype(np.int64), second.mean_, second.scale_,
                   np.atleast_2d(ridge.coef_), np.atleast_1d(ridge.intercept_))

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray], where: str = "voltage regression") -> VoltageRegressionMap:
        missing = [name for name in cls.__dataclass_fields__ if name not in arrays]
        if missing:
            raise DataError(f"{where}: missing {', '.join(missing)}")
        made = cls(**{name: np.asarray(arrays[name]) for name in cls.__dataclass_fields__})
        n_terms, n_features = made.powers.shape
        shapes_fit = (made.feature_mean.shape == made.feature_scale.shape == (n_features,)
                      and made.term_mean.shape == made.term_scale.shape == (n_terms,)
                      and made.coef.shape[1:] == (n_terms,) and made.intercept.shape == made.coef.shape[:1])
        if not shapes_fit:
            raise DataError(f"{where}: array shapes do not fit together")
        return made

    def arrays(self) -> dict[str, np.ndarray]:
        return {name: np.ascontiguousarray(getattr(self, name)) for name in self.__dataclass_fields__}

    @property
    def n_features(self) -> int:
        return int(self.powers.shape[1])

    def predict_change(self, features: np.ndarray) -> np.ndarray:
        """(n, F) profile features -> (n, N_f) predicted change."""
        features = np.asarray(features, dtype=np.float64)
        if features.ndim != 2 or features.shape[1] != self.n_features:
            raise DataError(f"voltage regression: {self.n_features} profile features expected, got {features.shape}")
        z = (features - self.feature_mean) / self.feature_scale
        terms = np.prod(z[:, None, :] ** self.powers[None], axis=2)
        return ((terms - self.term_mean) / self.term_scale) @ self.coef.T + self.intercept


def fit_voltage_regression(
    table: SampleTable,
    train_idx: np.ndarray,
    ridge_alpha: float = 1.0,
    degree: int = 1,
    exposure_thresholds_v=(2.0, 1.5, 1.0, 0.5),
) -> VoltageRegressionMap:
    """Ridge regression of s(v_m) - s(v_0), one output per wavenumber, on (polynomial) profile features of the
    training samples, standardized on them."""
    if train_idx.size == 0:
        raise DataError(f"{table.path}: no training samples for the voltage regression")
    model = _ridge(degree, ridge_alpha)
    model.fit(sample_profile_features(table, train_idx, exposure_thresholds_v), _change(table, train_idx))
    return VoltageRegressionMap.from_pipeline(model)


def voltage_regression(
    table: SampleTable,
    train_idx: np.ndarray,
    test_idx: np.ndarray,
    ridge_alpha: float = 1.0,
    degree: int = 1,
    exposure_thresholds_v=(2.0, 1.5, 1.0, 0.5),
) -> np.ndarray:
    """:func:`fit_voltage_regression` on the training samples; the prediction is the test sample's own s(v_0)
    plus the predicted change. Returns (n_test, 1, N_f).
    """
    fitted = fit_voltage_regression(table, train_idx, ridge_alpha, degree, exposure_thresholds_v)
    predicted_change = fitted.predict_change(sample_profile_features(table, test_idx, exposure_thresholds_v))
    initial = table.absorbance[table.samples["initial_row"][test_idx]].astype(np.float64)
    return (initial + predicted_change)[:, None, :]


def voltage_regression_per_run(
    table: SampleTable,
    train_idx: np.ndarray,
    test_idx: np.ndarray,
    ridge_alpha: float = 1.0,
    degree: int = 1,
    exposure_thresholds_v=(2.0, 1.5, 1.0, 0.5),
    min_run_samples: int = 3,
) -> np.ndarray:
    """:func:`voltage_regression` fitted on each test run's own training samples: what the voltage features explain
    within one run. A run with fewer than ``min_run_samples`` training samples falls back to the pooled fit (every
    run of the system split does). Returns (n_test, 1, N_f)."""
    prediction = voltage_regression(table, train_idx, test_idx, ridge_alpha, degree, exposure_thresholds_v)[:, 0]
    run_key = table.run_key()
    features = sample_profile_features(table, test_idx, exposure_thresholds_v)
    for run in np.unique(run_key[test_idx]):
        own = train_idx[run_key[train_idx] == run]
        if own.size < min_run_samples:
            log.info("voltage regression per run: %s has %d training samples, pooled fit used", run, own.size)
            continue
        members = np.flatnonzero(run_key[test_idx] == run)
        fitted = fit_voltage_regression(table, own, ridge_alpha, degree, exposure_thresholds_v)
        initial = table.absorbance[table.samples["initial_row"][test_idx[members]]].astype(np.float64)
        prediction[members] = initial + fitted.predict_change(features[members])
    return prediction[:, None, :]


def kernel_mean(times: np.ndarray, values: np.ndarray, at: np.ndarray, sigma: float,
                exclude: np.ndarray | None = None) -> np.ndarray:
    """Gaussian-kernel (Nadaraya-Watson) mean of ``values`` (n, N) observed at ``times``, read at ``at``.
    ``exclude`` (len(at), n) bool masks observations out of each reading (leave-one-out: a sample's own)."""
    distance = np.abs(at[:, None] - times[None, :])
    if exclude is not None:
        distance = np.where(exclude, np.inf, distance)
    weights = np.exp(-0.5 * (distance / sigma) ** 2)
    total = weights.sum(axis=1, keepdims=True)
    # far from every observation the weights underflow: the nearest one left stands in
    nearest = np.argmin(distance, axis=1)
    fallback = np.zeros_like(weights)
    fallback[np.arange(len(at)), nearest] = 1.0
    weights = np.where(total > 1e-300, weights / np.where(total > 1e-300, total, 1.0), fallback)
    return weights @ values


def kernel_width(times: np.ndarray, values: np.ndarray, bandwidths) -> float:
    """The kernel width (s) of one run's training samples: the multiple in ``bandwidths`` of their median spacing
    with the least leave-one-out MAE (the first multiple of a unit spacing for a single sample)."""
    spacing = float(np.median(np.diff(np.sort(times)))) if times.size > 1 else 1.0
    candidates = [b * max(spacing, 1e-9) for b in bandwidths]
    if times.size < 2:
        return candidates[0]
    itself = np.eye(times.size, dtype=bool)
    errors = [np.abs(kernel_mean(times, values, times, s, itself) - values).mean() for s in candidates]
    return candidates[int(np.argmin(errors))]


def run_kernel_means(
    run_key: np.ndarray, elapsed_s: np.ndarray, change_of: Callable[[np.ndarray], np.ndarray],
    train_idx: np.ndarray, query_idx: np.ndarray, bandwidths, leave_out: bool = False,
) -> tuple[np.ndarray, np.ndarray, dict[str, float]]:
    """For each query sample, the Gaussian-kernel mean in elapsed time of its run's training changes
    s(v_m) - s(v_0) (``change_of(index)``, (n, N_f)), the width chosen per run by :func:`kernel_width` on the
    training samples alone; ``run_key`` and ``elapsed_s`` are per sample, indexed as ``train_idx`` and ``query_idx``.
    ``leave_out``: a query sample that is itself a training sample is left out of its own mean (what a model
    trained on these means sees of a test sample). Returns the means (n_query, N_f), whether each query sample has
    one (False: its run has no other training sample), and the width per run (s)."""
    means = np.zeros((query_idx.size, change_of(query_idx[:0]).shape[1]), dtype=np.float64)
    present = np.zeros(query_idx.size, dtype=bool)
    widths: dict[str, float] = {}
    for run in np.unique(run_key[query_idx]):
        own = train_idx[run_key[train_idx] == run]
        members = np.flatnonzero(run_key[query_idx] == run)
        exclude = query_idx[members, None] == own[None, :] if leave_out else None
        usable = own.size - (exclude.sum(axis=1) if leave_out else np.zeros(members.size, dtype=int)) > 0
        if not usable.any():
            continue
        times = elapsed_s[own].astype(np.float64)
        changes = change_of(own)
        sigma = kernel_width(times, changes, bandwidths)
        at = elapsed_s[query_idx[members]].astype(np.float64)
        means[members] = kernel_mean(times, changes, at, sigma, exclude)
        means[members[~usable]] = 0.0
        present[members] = usable
        widths[str(run)] = sigma
    return means, present, widths


def within_run_smoother(
    table: SampleTable,
    train_idx: np.ndarray,
    test_idx: np.ndarray,
    bandwidths=(0.5, 1.0, 2.0, 4.0, 8.0),
) -> tuple[np.ndarray, dict[str, float]]:
    """Each test sample's own s(v_0) plus the Gaussian-kernel mean, in elapsed time, of its run's training changes
    s(v_m) - s(v_0) (:func:`run_kernel_means`: the kernel width, a multiple in ``bandwidths`` of the run's median
    training spacing, chosen per run by leave-one-out error on the training samples alone). A reference row like
    Persistence: it knows the run's measured training spectra, which no forecaster of a new cell has. Returns
    (n_test, 1, N_f) and the width chosen per run (s)."""
    run_key = table.run_key()
    orphans = sorted(set(run_key[test_idx].tolist()) - set(run_key[train_idx].tolist()))
    if orphans:
        raise DataError(f"{table.path}: run {orphans[0]} has no training samples; the within-run smoother needs "
                        f"some (it is a row of the random split only)")  # fmt: skip
    means, _, chosen = run_kernel_means(run_key, table.samples["elapsed_s"], lambda index: _change(table, index),
                                        train_idx, test_idx, bandwidths)
    for run, sigma in chosen.items():
        log.info("within-run smoother: %s, kernel sigma %.4g s", run, sigma)
    initial = table.absorbance[table.samples["initial_row"][test_idx]].astype(np.float64)
    return (initial + means)[:, None, :], chosen


# --------------------------------------------------------------------------------------------------------------
# Rule entry point
# --------------------------------------------------------------------------------------------------------------
def predict_baseline(
    model: str,
    samples_path: str | os.PathLike,
    splits_path: str | os.PathLike,
    split: str,
    output_path: str | os.PathLike,
    params: dict[str, Any],
    truth_path: str | os.PathLike | None = None,
    embedding_path: str | os.PathLike | None = None,
    rule: str | None = None,
) -> None:
    """Fit (on the training split only) and write ``results/predictions/{split}/{model}.h5`` for a reference row
    or a baseline. ``params`` is the model's slice of the ``evaluate`` config."""
    if split not in baseline_splits(model):
        raise DataError(f"{model} is a row of the {', '.join(baseline_splits(model))} split only, not {split!r}")
    table = load_samples(samples_path)
    split_ids = load_split(splits_path, split)
    train_idx = table.sample_index(split_ids["train"], f"{splits_path} ({split}/train)")
    test_idx = table.sample_index(split_ids["test"], f"{splits_path} ({split}/test)")
    inputs = [samples_path, splits_path]
    extra_attrs: dict[str, str] = {}
    if model == "random":
        prediction = random_reference(table, train_idx, test_idx.size, params["seed"], params["draws"])
    elif model == "persistence":
        prediction = persistence_reference(table, test_idx)
    elif model == "noise_floor":
        if truth_path is None or not Path(truth_path).exists():
            raise DataError(f"noise_floor needs the simulator's truth.h5; {truth_path} does not exist")
        prediction = noise_floor_reference(table, test_idx, truth_path)
        inputs.append(truth_path)
    elif model == "nearest_trajectory":
        if embedding_path is None:
            raise DataError("nearest_trajectory needs the mixture embeddings file")
        prediction, chosen = nearest_trajectory(
            table,
            train_idx,
            test_idx,
            read_mixture_embeddings(embedding_path),
            params["profile_points"],
            params["transfer"],
        )
        inputs.append(embedding_path)
        extra_attrs["nearest_run"] = json.dumps(chosen, sort_keys=True)
    elif model == "voltage_regression":
        prediction = voltage_regression(
            table, train_idx, test_idx, params["ridge_alpha"], params["degree"], params["exposure_thresholds_v"]
        )
    elif model == "voltage_regression_per_run":
        prediction = voltage_regression_per_run(
            table, train_idx, test_idx, params["ridge_alpha"], params["degree"], params["exposure_thresholds_v"]
        )
    elif model == "within_run_smoother":
        prediction, chosen_sigma = within_run_smoother(table, train_idx, test_idx, params["bandwidths"])
        extra_attrs["kernel_sigma_s"] = json.dumps(chosen_sigma, sort_keys=True)
    else:
        raise ValueError(f"unknown baseline {model!r}; expected one of {REFERENCE_MODELS + BASELINE_MODELS}")
    attrs = {**provenance(rule or f"predict_{model}", params, inputs), **extra_attrs}
    write_predictions(output_path, split_ids["test"], table.wavenumber_cm1, prediction, attrs, model=model)
    log.info(
        "%s/%s: wrote %d predictions (%d draws) to %s", split, model, test_idx.size, prediction.shape[1], output_path
    )
