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
