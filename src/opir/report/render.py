"""The rendering illustration for the report: one sample's spectrum, its waveform image (Alg. 1) and the spectrum
read back from it, its Chemical Flow image (Alg. 2) and its variation image."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from opir.core.errors import DataError
from opir.formats.samples import read_sample_arrays, read_spectra
from opir.render.chemical_flow import chemical_flow_image, variation_image
from opir.render.waveform import (
    column_wavenumbers,
    row_values,
    spectrum_to_waveform,
    style_from_config,
    waveform_to_spectrum,
)
from opir.report.output import save_figure


def plot_rendering(
    wavenumber_cm1: np.ndarray,
    run_spectra: np.ndarray,
    m: int,
    settings: dict[str, Any],
    title: str = "",
) -> plt.Figure:
    """Four panels for sample m of a run (``run_spectra`` holds s(v_0)..s(v_n)): the spectrum and its
    reconstruction from the waveform image, the waveform image, the Chemical Flow image, the variation image.
    ``settings`` is the ``render`` config section. Image extents are in wavenumber and drawn value, so the curves
    in the images line up with the spectrum's axes."""
    waveform_style = style_from_config(settings, "waveform")
    flow_style = style_from_config(settings, "chemical_flow")
    variation_style = style_from_config(settings, "variation")
    spectrum = run_spectra[m]
    waveform = spectrum_to_waveform(spectrum, waveform_style)
    recovered = waveform_to_spectrum(waveform, spectrum.size, waveform_style)
    flow_settings = settings["chemical_flow"]
    flow = chemical_flow_image(
        run_spectra, m, flow_style, float(flow_settings["darkest_grey"]), flow_settings["max_curves"]
    )
    variation = variation_image(spectrum, run_spectra[0], variation_style)
    clipped = np.clip(
        spectrum, waveform_style.centre - waveform_style.clip, waveform_style.centre + waveform_style.clip
    )
    mae = float(np.abs(recovered - clipped).mean() / (2 * waveform_style.clip))

    fig, axes = plt.subplots(1, 4, figsize=(15, 3.8), constrained_layout=True)
    ax = axes[0]
    ax.plot(wavenumber_cm1, spectrum, color="black", lw=1.0, label="s(v_m)")
    ax.plot(wavenumber_cm1, recovered, color="tab:red", lw=0.8, ls="--", label=f"from image (MAE {100 * mae:.2f}%)")
    ax.set_xlabel("wavenumber (1/cm)")
    ax.set_ylabel("normalized absorbance")
    ax.set_title("spectrum and reconstruction")
    ax.legend(fontsize=8)
    panels = [
        (waveform, waveform_style, "waveform image (Alg. 1)", "absorbance"),
        (flow, flow_style, f"Chemical Flow, spectra 0..{m} (Alg. 2)", "s(v_k) - s(v_0)"),
        (variation, variation_style, "variation s(v_m) - s(v_0)", "s(v_m) - s(v_0)"),
    ]
    for ax, (image, style, label, ylabel) in zip(axes[1:], panels, strict=True):
        columns = column_wavenumbers(wavenumber_cm1, style)
        rows = row_values(style)
        half_col = (columns[1] - columns[0]) / 2
        half_row = (rows[0] - rows[1]) / 2
        extent = (columns[0] - half_col, columns[-1] + half_col, rows[-1] - half_row, rows[0] + half_row)
        ax.imshow(image, cmap="gray", vmin=0, vmax=255, extent=extent, aspect="auto", interpolation="nearest")
        ax.set_title(f"{label}, {style.height}x{style.width}", fontsize=9)
        ax.set_xlabel("wavenumber (1/cm)")
        ax.set_ylabel(ylabel)
    if title:
        fig.suptitle(title)
    return fig


def render_illustration(
    samples_h5: str | os.PathLike, output: str | os.PathLike, settings: dict[str, Any], dpi: int = 150
) -> Path:
    """Draw :func:`plot_rendering` for ``settings['figure_sample']`` (default: the last sample of the first run)
    of samples.h5 into ``output``."""
    table = read_sample_arrays(samples_h5, ["wavenumber_cm1", "samples/sample_id", "samples/initial_row", "samples/m"])
    sample_ids, initial_rows = table["samples/sample_id"], table["samples/initial_row"]
    wanted = settings.get("figure_sample")
    if wanted is None:
        index = int(np.flatnonzero(initial_rows == initial_rows[0])[-1])
    else:
        matches = np.flatnonzero(sample_ids == wanted)
        if not matches.size:
            raise DataError(f"{samples_h5}: render.figure_sample {wanted!r} is not a sample_id of the dataset")
        index = int(matches[0])
    initial_row = int(initial_rows[index])
    m = int(table["samples/m"][index])
    run_spectra = read_spectra(samples_h5, slice(initial_row, initial_row + m + 1))
    wavenumber_cm1 = table["wavenumber_cm1"]
    fig = plot_rendering(wavenumber_cm1, run_spectra, m, settings, title=f"sample {sample_ids[index]}")
    output = Path(output)
    save_figure(fig, [output, output.with_suffix(".pdf")], dpi=dpi)
    return output
