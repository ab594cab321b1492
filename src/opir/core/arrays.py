"""Small array helpers that more than one stage needs."""

from __future__ import annotations

import numpy as np


def interp_linear(x: np.ndarray, y: np.ndarray, query: np.ndarray, axis: int = -1, clamp: bool = False) -> np.ndarray:
    """``np.interp`` for every 1D slice of ``y`` along ``axis`` at once: ``y`` is known at ascending ``x`` along
    that axis and is returned at ``query`` (C-contiguous, ``axis`` replaced by ``len(query)``). A query outside
    ``[x[0], x[-1]]`` is extrapolated from the end segment, or held at the end value with ``clamp``; a single known
    point is repeated."""
    x = np.asarray(x, dtype=np.float64)
    query = np.asarray(query, dtype=np.float64)
    moved = np.moveaxis(y, axis, 0)
    if x.size == 1:
        out = np.repeat(moved[:1], query.size, axis=0)
    else:
        right = np.clip(np.searchsorted(x, query, side="right"), 1, x.size - 1)
        left = right - 1
        weight = (query - x[left]) / (x[right] - x[left])
        if clamp:
            weight = np.clip(weight, 0.0, 1.0)
        weight = weight.reshape((-1,) + (1,) * (moved.ndim - 1))
        out = moved[left] * (1.0 - weight) + moved[right] * weight
    return np.ascontiguousarray(np.moveaxis(out, 0, axis))


def cosine_similarity_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Cosine similarity of each row of ``a`` with the same row of ``b`` (both (n, N) or (N,)), in [-1, 1].

    A zero-norm row has cosine 0 with anything but another zero row (cosine 1): a model may well predict zeros, and
    a score must still be a number. Rounding that pushes |cos| a hair above 1 is clipped (arccos stays defined)."""
    a = np.atleast_2d(np.asarray(a, dtype=np.float64))
    b = np.atleast_2d(np.asarray(b, dtype=np.float64))
    norm_a, norm_b = np.linalg.norm(a, axis=1), np.linalg.norm(b, axis=1)
    norms = norm_a * norm_b
    both_zero = (norm_a == 0) & (norm_b == 0)
    with np.errstate(invalid="ignore", divide="ignore"):
        dot = np.sum(a * b, axis=1)
        cos = np.where(norms > 0, dot / np.where(norms > 0, norms, 1.0), np.where(both_zero, 1.0, 0.0))
    return np.clip(cos, -1.0, 1.0)


def r2_rows(true: np.ndarray, predicted: np.ndarray) -> np.ndarray:
    """Coefficient of determination 1 - SS_res / SS_tot of each row of ``predicted`` as an estimate of the same row
    of ``true`` (SS_tot: the spread of the true row around its own mean); a constant true row has no R2 (NaN)."""
    true = np.atleast_2d(np.asarray(true, dtype=np.float64))
    predicted = np.atleast_2d(np.asarray(predicted, dtype=np.float64))
    ss_tot = np.sum((true - true.mean(axis=1, keepdims=True)) ** 2, axis=1)
    ss_res = np.sum((predicted - true) ** 2, axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(ss_tot > 0, 1.0 - ss_res / np.where(ss_tot > 0, ss_tot, 1.0), np.nan)
