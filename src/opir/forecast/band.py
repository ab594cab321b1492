"""Uncertainty bands from the draws of a generative model, widened by conformal offsets calibrated at packaging time."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from opir.core.errors import DataError
from opir.forecast.model import ForecastModel

#: The uncertainty band: per-wavenumber quantiles of the draws.
BAND_QUANTILES = (0.05, 0.95)


def band(draws: np.ndarray, quantiles: Sequence[float] = BAND_QUANTILES) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean and the per-wavenumber quantile band over the draws axis (axis 1 of (n, k, N_f))."""
    draws = np.asarray(draws, dtype=np.float64)
    if draws.ndim != 3 or draws.shape[1] < 1:
        raise DataError(f"draws must be (n, k >= 1, N_f), got {draws.shape}")
    low, high = np.quantile(draws, list(quantiles), axis=1)
    return draws.mean(axis=1), low, high


def band_coverage(
    draws: np.ndarray, target: np.ndarray, quantiles: Sequence[float] = BAND_QUANTILES,
    offsets: np.ndarray | None = None,
) -> dict:
    """Share of target values inside the per-wavenumber band of the draws (n, k, N_f) vs targets (n, N_f): the
    empirical coverage of the nominal (q_high - q_low) interval (widened by conformal ``offsets`` (N_f,) when
    given); also per sample and the mean band width."""
    _, low, high = band(draws, quantiles)
    low, high = widen(low, high, offsets)
    target = np.asarray(target, dtype=np.float64)
    if target.shape != low.shape:
        raise DataError(f"targets {target.shape} do not match the draws' band {low.shape}")
    inside = (target >= low) & (target <= high)
    return {
        "coverage": float(inside.mean()),
        "nominal": float(quantiles[1] - quantiles[0]),
        "per_sample": inside.mean(axis=1),
        "mean_band_width": float((high - low).mean()),
        "below": float((target < low).mean()),
        "above": float((target > high).mean()),
    }


def conformal_offsets(
    draws: np.ndarray, target: np.ndarray, coverage: float = 0.9, groups: Sequence[str] | None = None,
) -> np.ndarray:
    """Split-conformal widening of the draws' band (conformalized quantile regression, Romano et al. 2019, NeurIPS):
    per wavenumber, the score of a calibration sample is how far its target lies outside the band
    (max(q_low - y, y - q_high), negative inside), and the offset is the ceil((n + 1) coverage)-th smallest score.
    The band [q_low - offset, q_high + offset] then covers a new exchangeable sample with probability >= coverage.

    ``groups`` (one label per sample, e.g. its system) weighs every group alike, whatever its sample count: the
    offset is the ``coverage`` quantile of the scores with weight 1 / (G n_g) each. Samples of one cell are not
    exchangeable with a new cell's; the groups are the units, and with a handful of them the level is an estimate,
    not a guarantee. Returns (N_f,) offsets (negative ones narrow a band that was too wide)."""
    _, low, high = band(draws)
    target = np.asarray(target, dtype=np.float64)
    if target.shape != low.shape:
        raise DataError(f"calibration targets {target.shape} do not match the draws' band {low.shape}")
    n = len(target)
    if n < 2:
        raise DataError(f"band calibration needs at least 2 samples, got {n}")
    scores = np.maximum(low - target, target - high)
    if groups is None:
        level = min(1.0, np.ceil((n + 1) * coverage) / n)
        return np.quantile(scores, level, axis=0, method="higher")
    return _group_balanced_quantile(scores, np.asarray(groups), coverage)


def _group_balanced_quantile(scores: np.ndarray, groups: np.ndarray, level: float) -> np.ndarray:
    """Per column of ``scores`` (n, N_f), the smallest score whose cumulative weight reaches ``level``, each of the
    G groups weighing 1 / G in all."""
    if groups.shape != (len(scores),):
        raise DataError(f"{groups.shape[0] if groups.ndim else 0} group labels for {len(scores)} calibration samples")
    labels, index, counts = np.unique(groups, return_inverse=True, return_counts=True)
    weight = 1.0 / (len(labels) * counts[index])
    order = np.argsort(scores, axis=0)
    cumulative = np.cumsum(weight[order], axis=0)
    # the first position reaching the level (rounding may leave the total a hair under 1)
    first = np.minimum((cumulative < level - 1e-12).sum(axis=0), len(scores) - 1)
    return np.take_along_axis(scores, order, axis=0)[first, np.arange(scores.shape[1])]


def widen(low: np.ndarray, high: np.ndarray, offsets: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """[low - offset, high + offset]; a negative offset narrows the band at most to its midpoint (never inverts)."""
    if offsets is None:
        return low, high
    middle = 0.5 * (low + high)
    return np.minimum(low - offsets, middle), np.maximum(high + offsets, middle)


def calibrated_band(draws: np.ndarray, offsets: np.ndarray | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean and the 5-95 % band of the draws, widened by the model's conformal offsets when it has them."""
    mean, low, high = band(draws)
    return (mean, *widen(low, high, offsets))


def band_offsets(fm: ForecastModel) -> np.ndarray | None:
    calibration = fm.forecast.get("band_calibration")
    return None if not calibration else np.asarray(calibration["offsets"], dtype=np.float64)
