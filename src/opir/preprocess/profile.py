"""Voltage-profile features of a sample (the condition every model and baseline reads): the resampled profile v_0..v_m,
elapsed time and exposure below thresholds."""

from __future__ import annotations

import numpy as np

from opir.core.errors import DataError
from opir.formats.samples import SampleTable


# --------------------------------------------------------------------------------------------------------------
# Voltage-profile features
# --------------------------------------------------------------------------------------------------------------
def profile_feature_names(exposure_thresholds_v) -> list[str]:
    """The columns of :func:`run_profile_features`, in order."""
    return [
        "voltage_v",
        "initial_voltage_v",
        "min_voltage_v",
        "max_voltage_v",
        "recovery_v",
        "elapsed_h",
        *[f"exposure_below_{u:g}v_vh" for u in exposure_thresholds_v],
    ]


def _cumulative_trapezoid(y: np.ndarray, x: np.ndarray) -> np.ndarray:
    steps = 0.5 * (y[1:] + y[:-1]) * np.diff(x)
    return np.concatenate([[0.0], np.cumsum(steps)])


def run_profile_features(voltage_v: np.ndarray, elapsed_s: np.ndarray, exposure_thresholds_v) -> np.ndarray:
    """Features of the profile prefix v_0..v_j for every j of one run (rows in acquisition order): (n_rows, F).

    The running minimum and the recovery v_j - min tell the discharge branch from the charge branch at the same
    voltage; the exposure integral of max(0, U - v) dt (V h) is what drives SEI growth below an onset potential U.
    """
    v = np.asarray(voltage_v, dtype=np.float64)
    t_h = (np.asarray(elapsed_s, dtype=np.float64) - elapsed_s[0]) / 3600.0
    running_min = np.minimum.accumulate(v)
    columns = [
        v,
        np.full_like(v, v[0]),
        running_min,
        np.maximum.accumulate(v),
        v - running_min,
        t_h,
        *[_cumulative_trapezoid(np.maximum(0.0, u - v), t_h) for u in exposure_thresholds_v],
    ]
    return np.stack(columns, axis=1)


def sample_profile_features(table: SampleTable, sample_index: np.ndarray, exposure_thresholds_v) -> np.ndarray:
    """Voltage-profile features of each sample: from ``rows/voltage_v[initial_row : row + 1]`` (inputs only)."""
    rows = table.samples["row"][sample_index]
    initial = table.samples["initial_row"][sample_index]
    out = np.empty((sample_index.size, len(profile_feature_names(exposure_thresholds_v))))
    for start in np.unique(initial):
        members = np.flatnonzero(initial == start)
        stop = rows[members].max() + 1
        if np.any(rows[members] < start):
            raise DataError(f"{table.path}: a sample's row precedes its initial_row {start}")
        features = run_profile_features(
            table.rows["voltage_v"][start:stop], table.rows["elapsed_s"][start:stop], exposure_thresholds_v
        )
        out[members] = features[rows[members] - start]
    return out


def resample_voltage_profile(voltage_v: np.ndarray, length: int, dtype=np.float32) -> np.ndarray:
    """v_0..v_m on ``length`` points equally spaced in the normalized index m'/m in [0, 1] (its shape, whatever its
    length); a profile with a single point (m = 0) is constant."""
    voltage_v = np.asarray(voltage_v, dtype=np.float64)
    if voltage_v.ndim != 1 or voltage_v.size == 0:
        raise DataError(f"voltage profile must be a non-empty 1D array, got shape {voltage_v.shape}")
    if not np.all(np.isfinite(voltage_v)):
        raise DataError("voltage profile contains NaN or inf")
    if voltage_v.size == 1:
        return np.full(length, voltage_v[0], dtype=dtype)
    source = np.linspace(0.0, 1.0, voltage_v.size)
    return np.interp(np.linspace(0.0, 1.0, length), source, voltage_v).astype(dtype)


def profile_features(
    voltage_v: np.ndarray, elapsed_s: float, length: int, voltage_center_v: float, voltage_scale_v: float,
    time_scale_s: float, time_s: np.ndarray | None = None, exposure_thresholds_v=(),
) -> np.ndarray:
    """One sample's voltage-profile features: the resampled profile, then v_m, then log1p(elapsed / time scale);
    voltages are centred and scaled so that the usual 0-3 V window maps to about [-1, 1].

    With ``exposure_thresholds_v`` (needs ``time_s``, the acquisition time of each profile point in s), then the
    running minimum and maximum (scaled like the voltages), the recovery v_m - min (scaled) and, per threshold U,
    log1p of the exposure int max(0, U - v) dt in V h."""
    profile = (resample_voltage_profile(voltage_v, length) - voltage_center_v) / voltage_scale_v
    last = (float(np.asarray(voltage_v)[-1]) - voltage_center_v) / voltage_scale_v
    if not np.isfinite(elapsed_s) or elapsed_s < 0:
        raise DataError(f"elapsed time must be a finite non-negative number of seconds, got {elapsed_s}")
    elapsed = np.log1p(elapsed_s / time_scale_s)
    parts = [profile, np.array([last, elapsed], dtype=np.float32)]
    if len(exposure_thresholds_v):
        parts.append(exposure_features(voltage_v, time_s, exposure_thresholds_v, voltage_center_v, voltage_scale_v))
    return np.concatenate(parts).astype(np.float32)


def exposure_features(
    voltage_v: np.ndarray, time_s: np.ndarray | None, exposure_thresholds_v, voltage_center_v: float,
    voltage_scale_v: float,
) -> np.ndarray:
    """Running extremes, recovery and log1p(exposure below each threshold, V h) at the last point of the profile."""
    voltage_v = np.asarray(voltage_v, dtype=np.float64)
    if time_s is None or len(time_s) != len(voltage_v):
        raise DataError("exposure features need the acquisition time of every point of the voltage profile")
    time_s = np.asarray(time_s, dtype=np.float64)
    if not np.all(np.isfinite(time_s)) or np.any(np.diff(time_s) < 0):
        raise DataError("the profile's acquisition times must be finite and non-decreasing")
    thresholds = tuple(exposure_thresholds_v)
    last = dict(zip(profile_feature_names(thresholds), run_profile_features(voltage_v, time_s, thresholds)[-1],
                    strict=True))
    extremes = (np.array([last["min_voltage_v"], last["max_voltage_v"]]) - voltage_center_v) / voltage_scale_v
    recovery = last["recovery_v"] / voltage_scale_v
    exposures = np.array([last[f"exposure_below_{u:g}v_vh"] for u in thresholds])
    return np.concatenate([extremes, [recovery], np.log1p(exposures)]).astype(np.float32)
