"""The figure of one forecast (``opir predict``): measured s(v_0), the predicted spectra at a few voltages and their
bands."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from opir.core.h5io import atomic_path


def plot_steps(voltage_v: np.ndarray, at_voltages: Sequence[float] | None, n_default: int = 4) -> list[int]:
    """Steps to draw as spectra: the first step nearest each requested voltage, or evenly spread steps."""
    if at_voltages:
        return sorted({int(np.argmin(np.abs(voltage_v - v))) for v in at_voltages})
    return sorted({int(i) for i in np.linspace(0, len(voltage_v) - 1, min(n_default, len(voltage_v)))})


def plot_forecast(path: Path, result: Any, title: str, at_voltages: Sequence[float] | None = None) -> None:
    """Voltage profile | 2D map of the mean | spectra at chosen voltages with their 5-95 % band, of ``result``
    (an :class:`opir.forecast.output.Forecast`; the report layer sits below the forecast, so it is not imported)."""
    # matplotlib only where a figure is drawn
    import matplotlib

    matplotlib.use("Agg")
    # matplotlib only where a figure is drawn
    import matplotlib.pyplot as plt

    mean, low, high = result.summary
    steps = plot_steps(result.voltage_v, at_voltages)
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.8), gridspec_kw={"width_ratios": [1, 2, 2]}, constrained_layout=True)
    hours = result.time_s / 3600.0
    axes[0].plot(np.r_[result.input_voltage_v, result.voltage_v], np.r_[0.0, hours], "k.-", ms=3)
    axes[0].plot([result.input_voltage_v], [0.0], "o", color="0.4", label="static spectrum")
    axes[0].legend(fontsize=8)
    axes[0].set(xlabel="voltage (V)", ylabel="time (h)", title="voltage profile")
    axes[0].invert_yaxis()
    limit = float(np.max(np.abs(mean - result.input_spectrum))) or 1.0
    image = axes[1].pcolormesh(result.wavenumber_cm1, hours, mean - result.input_spectrum, cmap="RdBu_r",
                               vmin=-limit, vmax=limit, shading="nearest")
    axes[1].set(xlabel="wavenumber (1/cm)", title="predicted change from the static spectrum (mean)")
    axes[1].invert_xaxis()
    axes[1].invert_yaxis()
    fig.colorbar(image, ax=axes[1], label="Δ normalized absorbance")
    axes[2].plot(result.wavenumber_cm1, result.input_spectrum, color="0.4", lw=1, ls="--", label="static input")
    colors = plt.cm.viridis(np.linspace(0, 0.9, len(steps)))
    for color, i in zip(colors, steps, strict=True):
        axes[2].fill_between(result.wavenumber_cm1, low[i], high[i], color=color, alpha=0.25, lw=0)
        axes[2].plot(result.wavenumber_cm1, mean[i], color=color, lw=1.2,
                     label=f"{result.voltage_v[i]:.2f} V, {hours[i]:.2f} h")
    for i in steps:
        axes[1].axhline(hours[i], color="k", lw=0.5, ls=":")
    axes[2].set(xlabel="wavenumber (1/cm)", ylabel="normalized absorbance",
                title=f"mean and 5-95 % band of {result.draws.shape[1]} draws")
    axes[2].invert_xaxis()
    axes[2].legend(fontsize=8)
    fig.suptitle(title, fontsize=10)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=120, format="png")
    plt.close(fig)
