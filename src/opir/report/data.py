"""Figure 2 of the paper, from the data: (A) SNR histogram, (B) voltage histogram, (C) RMS spectral change
||s(v_m) - s(v_0)||_rms against voltage, one colour per system."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from opir.formats.samples import read_sample_arrays, read_spectra
from opir.report.output import save_figure

log = logging.getLogger(__name__)


def rms_change(samples_path: str | Path) -> dict[str, np.ndarray]:
    """Per sample: voltage, system and the RMS (over wavenumbers) of target minus initial spectrum."""
    table = read_sample_arrays(
        samples_path, ["samples/row", "samples/initial_row", "samples/voltage_v", "samples/system_id", "rows/snr",
                       "rows/voltage_v"]
    )
    rows, initial = table["samples/row"], table["samples/initial_row"]
    change = np.empty(rows.size)
    # read run by run so memory stays at one run, not the dataset
    for first in np.unique(initial):
        members = np.flatnonzero(initial == first)
        stop = int(rows[members].max()) + 1
        block = read_spectra(samples_path, slice(int(first), stop)).astype(np.float64)
        change[members] = np.sqrt(np.mean((block[rows[members] - first] - block[0]) ** 2, axis=1))
    return {
        "voltage_v": table["samples/voltage_v"],
        "system_id": table["samples/system_id"],
        "rms_change": change,
        "snr": table["rows/snr"],
        "row_voltage_v": table["rows/voltage_v"],
    }


def figure2(samples_path: str | Path, png: str | Path, pdf: str | Path, bins: int = 40) -> dict[str, float]:
    # matplotlib only where a figure is drawn
    import matplotlib

    matplotlib.use("Agg")
    # matplotlib only where a figure is drawn
    import matplotlib.pyplot as plt

    data = rms_change(samples_path)
    snr = data["snr"][np.isfinite(data["snr"])]
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8), constrained_layout=True)
    ax = axes[0]
    ax.hist(snr, bins=bins, color="#4c72b0")
    if snr.size:
        ax.axvline(np.median(snr), color="k", ls="--", lw=1, label=f"median {np.median(snr):.0f}")
        ax.axvline(np.mean(snr), color="#c44e52", ls=":", lw=1, label=f"mean {np.mean(snr):.0f}")
        ax.legend(frameon=False)
    ax.set(xlabel="SNR (max |absorbance| / noise)", ylabel="spectra", title="A  signal-to-noise ratio")
    ax = axes[1]
    ax.hist(data["row_voltage_v"], bins=bins, color="#55a868")
    ax.set(xlabel="voltage (V vs Li/Li+)", ylabel="spectra", title="B  voltage at acquisition")
    ax = axes[2]
    for system in np.unique(data["system_id"]):
        mine = data["system_id"] == system
        ax.scatter(data["voltage_v"][mine], data["rms_change"][mine], s=4, alpha=0.6, label=system)
    ax.set(xlabel="voltage (V vs Li/Li+)", ylabel="RMS |s(v_m) - s(v_0)|", title="C  spectral change")
    ax.legend(fontsize=6, markerscale=2, frameon=False, ncol=2)
    save_figure(fig, (png, pdf), dpi=150)
    summary = {
        "snr_median": float(np.median(snr)) if snr.size else float("nan"),
        "snr_mean": float(np.mean(snr)) if snr.size else float("nan"),
        "n_samples": int(data["voltage_v"].size),
    }
    log.info("figure 2: %s", summary)
    return summary
