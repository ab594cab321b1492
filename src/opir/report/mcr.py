"""Fig. 5 of the paper: the SEI pathway recovered by MCR-ALS from a measured sequence and from a prediction.

:func:`plot_sei_pathway` takes arrays only, so it can draw any model's recovery (opir.mcr.pathway.recover_pathway);
:func:`figure5` draws it from the ``mcr_pathway`` rule's file.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import matplotlib

matplotlib.use("Agg")
import h5py  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from opir.core.h5io import read_strings
from opir.mcr.references import read_references
from opir.report.output import save_figure


def plot_sei_pathway(
    wavenumber_cm1: np.ndarray,
    voltage_v: np.ndarray,
    component_names: Sequence[str],
    spectra_measured: np.ndarray,
    concentrations_measured: np.ndarray,
    spectra_predicted: np.ndarray,
    concentrations_predicted: np.ndarray,
    paths: Sequence[str | os.PathLike],
    title: str = "SEI pathway",
    prediction_label: str = "prediction",
    references: np.ndarray | None = None,
) -> plt.Figure:
    """Left: recovered SEI component spectra (measured: solid, prediction: dashed, reference: grey).
    Right: their amounts along the sequence, with the voltage profile on a second axis."""
    k = len(component_names)
    colors = plt.get_cmap("tab10")(np.arange(k) % 10)
    fig, (ax_s, ax_c) = plt.subplots(1, 2, figsize=(11, 4.2), constrained_layout=True)
    offset = 1.1 * max(float(np.max(spectra_measured)), float(np.max(spectra_predicted)), 1e-12)
    for i, name in enumerate(component_names):
        base = i * offset
        if references is not None:
            ax_s.plot(wavenumber_cm1, references[i] + base, color="0.7", lw=2.5, zorder=1)
        ax_s.plot(wavenumber_cm1, spectra_measured[i] + base, color=colors[i], lw=1.3, label=name)
        ax_s.plot(wavenumber_cm1, spectra_predicted[i] + base, color=colors[i], lw=1.1, ls="--")
        ax_s.text(wavenumber_cm1[-1], base + 0.05 * offset, name, ha="left", va="bottom", color=colors[i])
    ax_s.set_xlim(wavenumber_cm1.max(), wavenumber_cm1.min())  # IR convention: wavenumber decreasing
    ax_s.set_xlabel("wavenumber (cm$^{-1}$)")
    ax_s.set_ylabel("absorbance per unit amount (offset)")
    ax_s.set_yticks([])
    ax_s.set_title("recovered SEI components")

    # amounts along the sequence (time order), voltage on a second axis: voltage goes down and up again, so a
    # plot against voltage alone would fold the irreversible growth back onto itself
    step = np.arange(1, len(voltage_v) + 1)
    for i, name in enumerate(component_names):
        ax_c.plot(step, concentrations_measured[:, i], color=colors[i], lw=1.3, label=name)
        ax_c.plot(step, concentrations_predicted[:, i], color=colors[i], lw=1.1, ls="--")
    ax_v = ax_c.twinx()
    ax_v.plot(step, voltage_v, color="0.5", lw=0.8, ls=":")
    ax_v.set_ylabel("voltage (V vs Li/Li$^+$, dotted)", color="0.4")
    ax_c.set_xlabel("spectrum in sequence (m)")
    ax_c.set_ylabel("amount (normalized units)")
    ax_c.set_title("evolution along the sequence")
    style = [
        plt.Line2D([], [], color="k", lw=1.3, label="measured"),
        plt.Line2D([], [], color="k", lw=1.1, ls="--", label=prediction_label),
    ]
    ax_c.legend(handles=[*ax_c.get_legend_handles_labels()[0], *style], fontsize=7, loc="upper left")
    fig.suptitle(f"{title}: measured (solid) vs {prediction_label} (dashed)")
    save_figure(fig, paths, dpi=150, close=False)
    return fig


def figure5(
    pathway_h5: str | os.PathLike, references_h5: str | os.PathLike, paths: Sequence[str | os.PathLike]
) -> None:
    """Fig. 5 from the pathway file (``results/mcr/pathway.h5``) and the SEI references it was recovered on."""
    with h5py.File(pathway_h5, "r") as h5:
        run, label = str(h5.attrs["run"]), str(h5.attrs["prediction_label"])
        voltage = h5["voltage_v"][()]
        recovered = {
            key: (read_strings(h5[key]["spectra/component"]), h5[key]["spectra/spectra"][()],
                  h5[key]["concentrations/concentrations"][()], h5[key]["spectra/wavenumber_cm1"][()])
            for key in ("measured", "predicted")
        }
    names, measured_spectra, measured_amounts, wavenumber_cm1 = recovered["measured"]
    sei_names, sei_spectra = read_references(references_h5).select("sei")
    references = sei_spectra[[sei_names.index(str(name)) for name in names]]
    figure = plot_sei_pathway(
        wavenumber_cm1,
        voltage,
        [str(name) for name in names],
        measured_spectra,
        measured_amounts,
        recovered["predicted"][1],
        recovered["predicted"][2],
        paths,
        title=f"SEI pathway, {run}",
        prediction_label=label,
        references=references,
    )
    plt.close(figure)
