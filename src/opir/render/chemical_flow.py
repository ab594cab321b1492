"""Alg. 2: Chemical Flow images (the sequence v_1..v_m drawn over each other, older curves lighter) and variation images
(the change from s(v_0))."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from opir.core.errors import DataError
from opir.render.waveform import CurveStyle, composite, curve_geometry, spectrum_to_waveform


# --------------------------------------------------------------------------------------------------------------
# Alg. 2: Chemical Flow, and the variation stream
# --------------------------------------------------------------------------------------------------------------
def chemical_flow_curves(m: int, max_curves: int | None) -> np.ndarray:
    """Which spectra 0..m a Chemical Flow image draws: all of them, or ``max_curves`` spread evenly over 0..m
    (always the first and the last), since a 256-level image cannot tell thousands of grey levels apart."""
    if max_curves is None or m + 1 <= max_curves:
        return np.arange(m + 1)
    return np.unique(np.rint(np.linspace(0, m, max_curves)).astype(np.intp))


def chemical_flow_greys(order: np.ndarray, m: int, darkest_grey: float) -> np.ndarray:
    """Grey level (fraction of 255) of curve k of 0..m: 1 for the reference (k = 0), ``darkest_grey / 255`` for
    the latest (k = m), linear in k / m."""
    darkest = darkest_grey / 255.0
    return 1.0 - (1.0 - darkest) * np.asarray(order, dtype=np.float64) / max(m, 1)


def chemical_flow_images(
    run_spectra: np.ndarray,
    ms: Sequence[int],
    style: CurveStyle | None = None,
    darkest_grey: float = 64.0,
    max_curves: int | None = 64,
) -> np.ndarray:
    """Alg. 2: Chemical Flow images (len(ms), H, W) uint8 of samples ``ms`` of one run.

    ``run_spectra`` (n, N) holds the run's spectra s(v_0)..s(v_{n-1}). For sample m, the differences
    s(v_k) - s(v_0), k = 0..m, clipped to ``+- style.clip`` and normalized by it, are drawn as polylines whose grey
    level goes from light (k = 0) to dark (k = m). Overlaps keep the lightest curve (maximum), so an unchanging
    run is one light line on the zero row, and changes appear as darker curves beside it. ``style`` defaults to
    the difference style (centre 0, clip 0.1, thickness 1.0). The geometry of the run's curves is computed once.
    """
    style = style or CurveStyle(clip=0.1, thickness_px=1.0)
    run_spectra = np.asarray(run_spectra, dtype=np.float32)
    ms = [int(m) for m in np.atleast_1d(ms)]
    for m in ms:
        if not 1 <= m < run_spectra.shape[0]:
            raise DataError(f"Chemical Flow of sample m={m} needs spectra 0..m, the run has {run_spectra.shape[0]}")
    columns, row_top, row_bottom, thickness = curve_geometry(run_spectra[: max(ms) + 1] - run_spectra[0], style)
    images = np.empty((len(ms), style.height, style.width), dtype=np.uint8)
    for i, m in enumerate(ms):
        order = chemical_flow_curves(m, max_curves)
        greys = chemical_flow_greys(order, m, darkest_grey)
        images[i] = composite(columns, row_top[order], row_bottom[order], thickness[order], style, greys)
    return images


def chemical_flow_image(
    run_spectra: np.ndarray,
    m: int,
    style: CurveStyle | None = None,
    darkest_grey: float = 64.0,
    max_curves: int | None = 64,
) -> np.ndarray:
    """Alg. 2 for one sample: the Chemical Flow image (H, W) of sample m (see :func:`chemical_flow_images`)."""
    return chemical_flow_images(run_spectra, [m], style, darkest_grey, max_curves)[0]


def variation_image(spectra: np.ndarray, initial_spectra: np.ndarray, style: CurveStyle | None = None) -> np.ndarray:
    """The variation (residual) stream: s(v_m) - s(v_0) drawn by Alg. 1 in the difference style (clip 0.1,
    thickness 1.0 by default). Shapes as in :func:`spectrum_to_waveform`."""
    style = style or CurveStyle(clip=0.1, thickness_px=1.0)
    return spectrum_to_waveform(np.asarray(spectra, np.float32) - np.asarray(initial_spectra, np.float32), style)
