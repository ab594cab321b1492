"""Alg. 1: a spectrum as a waveform image and back; the curve geometry (``CurveStyle``) shared by every image stream."""

from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from opir.core.errors import DataError

#: Pixels of a (B, H, W) float block rasterized at once: a few MB, so the temporaries stay in the CPU cache.
_BLOCK_PIXELS = 1 << 20


@dataclass(frozen=True)
class CurveStyle:
    """How values are drawn: the parameters of Alg. 1 (defaults: the paper's Appendix D)."""

    height: int = 256
    width: int = 256
    #: fraction of the image left empty on each side, so thick lines at the clip limits stay inside the image
    margin: float = 0.08
    #: half-range of values drawn: ``centre +- clip`` spans the plot area; beyond it values are clipped
    clip: float = 0.4
    #: value drawn on the middle row (0 for centred spectra and for differences)
    centre: float = 0.0
    #: line thickness in pixels where the value equals ``centre``
    thickness_px: float = 1.8
    #: amplitude-adaptive thickness: thickness = thickness_px * (1 + gain * |v - centre| / clip)
    thickness_amplitude_gain: float = 0.5
    #: grey levels per pixel of the line's anti-aliased edge (saturates at 255)
    contrast_gain: float = 180.0

    def __post_init__(self):
        problems = []
        if self.height < 8 or self.width < 8:
            problems.append(f"image size {self.height}x{self.width} is below 8x8")
        if not 0 <= self.margin < 0.5:
            problems.append(f"margin {self.margin} is outside [0, 0.5)")
        if not self.clip > 0:
            problems.append(f"clip {self.clip} must be > 0")
        if not self.thickness_px > 0:
            problems.append(f"thickness_px {self.thickness_px} must be > 0")
        if self.thickness_amplitude_gain < 0:
            problems.append(f"thickness_amplitude_gain {self.thickness_amplitude_gain} must be >= 0")
        if not self.contrast_gain > 0:
            problems.append(f"contrast_gain {self.contrast_gain} must be > 0")
        if problems:
            raise ValueError("invalid render style: " + "; ".join(problems))

    @property
    def plot_rows(self) -> tuple[float, float]:
        """Rows (top, bottom) of the plot area: ``centre + clip`` and ``centre - clip``.

        Whole rows, an even number apart, so that ``centre`` falls on a pixel row: a flat line at the centre (a
        zero difference, most of a Chemical Flow image) is then one crisp row instead of two half-grey ones."""
        top = round(self.margin * (self.height - 1))
        bottom = self.height - 1 - top
        return float(top), float(bottom - (bottom - top) % 2)

    @property
    def plot_columns(self) -> tuple[float, float]:
        """Columns (left, right) of the first and the last spectral point."""
        return self.margin * (self.width - 1), (1 - self.margin) * (self.width - 1)

    def attrs(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def style_from_config(render: dict[str, Any], stream: str = "waveform") -> CurveStyle:
    """The style of one image stream from the ``render`` config section.

    ``stream`` is ``waveform`` (Alg. 1 on spectra), ``variation`` or ``chemical_flow`` (differences to s(v_0),
    centred on 0, with the stream's own clip scale and thickness).
    """
    base = CurveStyle(
        height=int(render["image_size"]),
        width=int(render["image_size"]),
        margin=float(render["margin"]),
        clip=float(render["clip"]),
        centre=float(render["centre"]),
        thickness_px=float(render["thickness_px"]),
        thickness_amplitude_gain=float(render["thickness_amplitude_gain"]),
        contrast_gain=float(render["contrast_gain"]),
    )
    if stream == "waveform":
        return base
    if stream not in ("variation", "chemical_flow"):
        raise ValueError(f"unknown image stream {stream!r}: expected waveform, variation or chemical_flow")
    section = render[stream]
    return dataclasses.replace(
        base, clip=float(section["clip"]), centre=0.0, thickness_px=float(section["thickness_px"])
    )


def read_style(path: str | Path) -> CurveStyle:
    """The exact style an image file of ``results/render/`` was drawn with (its ``render_*`` attributes)."""
    with h5py.File(path, "r") as handle:
        attrs = dict(handle.attrs)
    values = {}
    for field in dataclasses.fields(CurveStyle):
        key = f"render_{field.name}"
        if key not in attrs:
            raise DataError(f"{path}: missing attribute {key!r}; not an image file of the render stage?")
        values[field.name] = type(field.default)(attrs[key])
    return CurveStyle(**values)


# --------------------------------------------------------------------------------------------------------------
# The value <-> pixel maps
# --------------------------------------------------------------------------------------------------------------
def value_to_row(values: np.ndarray, style: CurveStyle) -> np.ndarray:
    """Row coordinate of each value (top of the plot area = ``centre + clip``), clipped to the plot area."""
    top, bottom = style.plot_rows
    fraction = (np.clip(values, style.centre - style.clip, style.centre + style.clip) - style.centre) / style.clip
    return (top + bottom) / 2 - fraction * (bottom - top) / 2


def row_to_value(rows: np.ndarray, style: CurveStyle) -> np.ndarray:
    """Inverse of :func:`value_to_row` inside the plot area (rows need not be integers)."""
    top, bottom = style.plot_rows
    return style.centre + ((top + bottom) / 2 - np.asarray(rows)) * 2 * style.clip / (bottom - top)


def point_columns(n_points: int, style: CurveStyle) -> np.ndarray:
    """Column coordinate of each of ``n_points`` spectral points."""
    left, right = style.plot_columns
    return np.linspace(left, right, n_points)


def row_values(style: CurveStyle) -> np.ndarray:
    """The value that the centre of each pixel row stands for (the image's vertical axis)."""
    return row_to_value(np.arange(style.height, dtype=np.float64), style)


def column_wavenumbers(wavenumber_cm1: np.ndarray, style: CurveStyle) -> np.ndarray:
    """The wavenumber at the centre of each pixel column (the image's horizontal axis; linear beyond the ends)."""
    wavenumber_cm1 = np.asarray(wavenumber_cm1, dtype=np.float64)
    left, right = style.plot_columns
    slope = (wavenumber_cm1[-1] - wavenumber_cm1[0]) / (right - left)
    return wavenumber_cm1[0] + (np.arange(style.width) - left) * slope


# --------------------------------------------------------------------------------------------------------------
# Alg. 1: spectrum -> waveform image
# --------------------------------------------------------------------------------------------------------------
@functools.lru_cache(maxsize=32)
def _column_sampling(n_points: int, style: CurveStyle) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Where to evaluate the polyline inside each column it crosses: the two ends of the column's span and every
    spectral point inside it (the polyline is linear between points, so its extremes over the span are among
    these). Columns with fewer points repeat the span's end, so the array is rectangular.

    Returns the crossed columns (C,), their span centres (C,), and per evaluation point (C, S) the index of the
    spectral point on its left and the linear-interpolation weight of the next one.
    """
    if n_points < 2:
        raise DataError(f"a waveform needs at least 2 spectral points, got {n_points}")
    left, right = style.plot_columns
    columns = np.arange(int(np.floor(left + 0.5)), int(np.ceil(right - 0.5)) + 1)
    span_lo = np.maximum(columns - 0.5, left)
    span_hi = np.minimum(columns + 0.5, right)
    to_index = (n_points - 1) / (right - left)  # spectral points per column
    first = (span_lo - left) * to_index  # fractional spectral index of each span's ends
    last = (span_hi - left) * to_index
    inner_first = np.ceil(first).astype(np.intp)
    inner_count = np.floor(last).astype(np.intp) - inner_first + 1
    n_eval = 2 + int(inner_count.max())
    offsets = np.arange(n_eval - 2)[None, :]
    inner = np.where(offsets < inner_count[:, None], inner_first[:, None] + offsets, last[:, None])
    position = np.clip(np.concatenate([first[:, None], inner, last[:, None]], axis=1), 0, n_points - 1)
    index = np.minimum(np.floor(position).astype(np.intp), n_points - 2)
    weight = (position - index).astype(np.float32)
    return columns, (span_lo + span_hi) / 2, index, weight


def curve_geometry(values: np.ndarray, style: CurveStyle) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per crossed column: the rows the polyline spans and its thickness.

    ``values`` (B, N). Returns ``columns`` (C,) and ``row_top``, ``row_bottom``, ``thickness`` (B, C) float32.
    """
    values = np.asarray(values, dtype=np.float32)
    if values.ndim != 2:
        raise DataError(f"expected spectra as a (batch, points) array, got shape {values.shape}")
    if not np.isfinite(values).all():
        bad = np.argwhere(~np.isfinite(values))[0]
        raise DataError(f"spectrum {bad[0]} has a non-finite value at point {bad[1]}: cannot be drawn")
    columns, _, index, weight = _column_sampling(values.shape[1], style)
    # the drawn polyline is that of the clipped values, so a value beyond a limit draws exactly like the limit
    values = np.clip(values, style.centre - style.clip, style.centre + style.clip)
    # the polyline at the (C, S) evaluation points: (B, C, S)
    samples = values[:, index] * (1 - weight) + values[:, index + 1] * weight
    v_max = samples.max(axis=2)
    v_min = samples.min(axis=2)
    row_top = value_to_row(v_max, style).astype(np.float32)
    row_bottom = value_to_row(v_min, style).astype(np.float32)
    amplitude = np.abs((v_max + v_min) / 2 - style.centre) / style.clip
    thickness = (style.thickness_px * (1 + style.thickness_amplitude_gain * amplitude)).astype(np.float32)
    return columns, row_top, row_bottom, thickness


def _ink_rows(row_top: np.ndarray, row_bottom: np.ndarray, thickness: np.ndarray, height: int) -> slice:
    """The rows that can hold ink for these curves: beyond t / 2 + 0.5 of every span the intensity is 0."""
    reach = thickness / 2 + 0.5
    first = int(np.floor((row_top - reach).min()))
    last = int(np.ceil((row_bottom + reach).max()))
    return slice(max(first, 0), min(max(last + 1, 0), height))


def _rasterize_block(
    row_top: np.ndarray,
    row_bottom: np.ndarray,
    thickness: np.ndarray,
    grey: np.ndarray | None,
    style: CurveStyle,
    rows: slice,
) -> np.ndarray:
    """Intensity (B, len(rows), C) float32 of B curves on pixel rows ``rows``, each curve at its grey (B,) in [0, 1].

    With d the distance of a pixel row to the column's span [row_top, row_bottom] (0 inside it), the intensity
    is ``gain * (t / 2 + 0.5 - d)`` clipped to [0, 255]: a box-filtered line of thickness t whose edge ramps at
    ``gain`` grey levels per pixel. Written as the minimum of three affine functions of the row (no branch).
    """
    gain = np.float32(style.contrast_gain)
    half = (thickness / 2 + 0.5)[:, None, :]
    row = gain * np.arange(rows.start, rows.stop, dtype=np.float32)[None, :, None]
    rising = gain * (half - row_top[:, None, :]) + row  # above the span
    falling = gain * (half + row_bottom[:, None, :]) - row  # below the span
    intensity = np.minimum(rising, falling, out=rising)
    np.minimum(intensity, gain * half, out=intensity)
    np.clip(intensity, 0, 255, out=intensity)
    if grey is not None:
        intensity *= grey.astype(np.float32)[:, None, None]
    return intensity


def _block_size(style: CurveStyle, n_columns: int) -> int:
    return max(1, _BLOCK_PIXELS // (style.height * n_columns))


def rasterize(
    columns: np.ndarray,
    row_top: np.ndarray,
    row_bottom: np.ndarray,
    thickness: np.ndarray,
    style: CurveStyle,
    grey: np.ndarray | None = None,
) -> np.ndarray:
    """uint8 images (B, H, W), one per curve given by :func:`curve_geometry`, on a black canvas."""
    batch = row_top.shape[0]
    images = np.zeros((batch, style.height, style.width), dtype=np.uint8)
    step = _block_size(style, len(columns))
    for start in range(0, batch, step):
        block = slice(start, start + step)
        rows = _ink_rows(row_top[block], row_bottom[block], thickness[block], style.height)
        intensity = _rasterize_block(
            row_top[block], row_bottom[block], thickness[block], None if grey is None else grey[block], style, rows
        )
        images[block, rows, columns[0] : columns[-1] + 1] = np.rint(intensity)
    return images


def composite(
    columns: np.ndarray,
    row_top: np.ndarray,
    row_bottom: np.ndarray,
    thickness: np.ndarray,
    style: CurveStyle,
    grey: np.ndarray,
) -> np.ndarray:
    """One uint8 image (H, W) of all the curves, each at its grey level; where curves overlap the lightest wins
    (the maximum). Curves are drawn a cache-sized block at a time, on only the rows they can reach."""
    canvas = np.zeros((style.height, len(columns)), dtype=np.float32)
    step = _block_size(style, len(columns))
    for start in range(0, row_top.shape[0], step):
        block = slice(start, start + step)
        rows = _ink_rows(row_top[block], row_bottom[block], thickness[block], style.height)
        intensity = _rasterize_block(row_top[block], row_bottom[block], thickness[block], grey[block], style, rows)
        np.maximum(canvas[rows], intensity.max(axis=0), out=canvas[rows])
    image = np.zeros((style.height, style.width), dtype=np.uint8)
    image[:, columns[0] : columns[-1] + 1] = np.rint(canvas)
    return image


def spectrum_to_waveform(spectra: np.ndarray, style: CurveStyle | None = None) -> np.ndarray:
    """Alg. 1, forward: spectra (B, N) or (N,) -> uint8 waveform images (B, H, W) or (H, W)."""
    style = style or CurveStyle()
    spectra = np.asarray(spectra)
    single = spectra.ndim == 1
    columns, row_top, row_bottom, thickness = curve_geometry(np.atleast_2d(spectra), style)
    images = rasterize(columns, row_top, row_bottom, thickness, style)
    return images[0] if single else images


@functools.lru_cache(maxsize=32)
def _point_interpolation(n_points: int, style: CurveStyle) -> tuple[np.ndarray, np.ndarray]:
    """Linear interpolation from the crossed columns' centres to the spectral points: left column index and the
    weight of the right one, (n_points,) each (points beyond the outer column centres take the outer value)."""
    _, column_x, _, _ = _column_sampling(n_points, style)
    x = np.clip(point_columns(n_points, style), column_x[0], column_x[-1])
    left = np.clip(np.searchsorted(column_x, x, side="right") - 1, 0, len(column_x) - 2)
    weight = np.clip((x - column_x[left]) / (column_x[left + 1] - column_x[left]), 0, 1)
    return left, weight.astype(np.float32)


def _columns_to_points(column_values: np.ndarray, n_points: int, style: CurveStyle) -> np.ndarray:
    left, weight = _point_interpolation(n_points, style)
    return column_values[:, left] * (1 - weight) + column_values[:, left + 1] * weight


def column_centre_values(spectra: np.ndarray, style: CurveStyle) -> np.ndarray:
    """What the inverse reads from the image of ``spectra``, computed without drawing: the value of each crossed
    column's centre row (the middle of the polyline's span there, where the symmetric profile has its centroid)."""
    _, row_top, row_bottom, _ = curve_geometry(spectra, style)
    return row_to_value((row_top + row_bottom) / 2, style)


def waveform_to_spectrum(
    images: np.ndarray,
    n_points: int,
    style: CurveStyle | None = None,
    background: float = 0.0,
    refine_iterations: int = 3,
) -> np.ndarray:
    """Alg. 1, inverse: uint8 images (B, H, W) or (H, W) -> spectra (B, n_points) float32.

    Each column's intensity-weighted centre row is mapped back to a value, and the column values are interpolated
    at the spectral points. That first estimate is biased where the curve bends within a column (a band's top
    reads as the middle of the column's span, below the top), so ``refine_iterations`` fixed-point steps
    (Van Cittert) correct it with the forward model: y <- y + interp(c - centres(y)), where c are the centres
    read from the image and centres(y) those that y would draw (:func:`column_centre_values`). Three steps
    remove most of the bias; more begin to fit the uint8 quantization (docs/method.md, "Rendering").

    ``background`` (grey levels) is subtracted before weighting, for images that are not black between the
    lines (decoded by a VAE, say). A column without ink is interpolated from its neighbours; an image without any
    ink raises :class:`DataError`. The result lies within ``centre +- clip``, the range an image can hold.
    """
    style = style or CurveStyle()
    images = np.asarray(images)
    single = images.ndim == 2
    images = images[None] if single else images
    if images.ndim != 3 or images.shape[1:] != (style.height, style.width):
        raise DataError(f"expected images of shape (batch, {style.height}, {style.width}), got {images.shape}")
    columns, column_x, _, _ = _column_sampling(n_points, style)
    block = images[:, :, columns[0] : columns[-1] + 1].astype(np.float32)
    if background:
        block = np.maximum(block - np.float32(background), 0)
    rows = np.arange(style.height, dtype=np.float32)[None, :, None]
    ink = block.sum(axis=1)  # (B, C)
    with np.errstate(invalid="ignore", divide="ignore"):
        centres = row_to_value((block * rows).sum(axis=1) / ink, style).astype(np.float32)
    for i in np.flatnonzero((ink == 0).any(axis=1)):  # rare: only images with blank columns are looped over
        has_ink = ink[i] > 0
        if not has_ink.any():
            raise DataError(f"waveform image {i} has no ink in its plot area: no spectrum to read back")
        centres[i] = np.interp(column_x, column_x[has_ink], centres[i, has_ink])
    spectra = _columns_to_points(centres, n_points, style)
    low, high = style.centre - style.clip, style.centre + style.clip
    for _ in range(refine_iterations):
        spectra += _columns_to_points(centres - column_centre_values(spectra, style), n_points, style)
        np.clip(spectra, low, high, out=spectra)
    spectra = spectra.astype(np.float32)
    return spectra[0] if single else spectra


def roundtrip_error(spectra: np.ndarray, style: CurveStyle) -> float:
    """Mean absolute error of spectrum -> image -> spectrum, as a fraction of the drawn range ``2 * clip``.

    Values beyond the clip limits are compared clipped: the image cannot hold them, by design."""
    spectra = np.asarray(spectra, dtype=np.float32)
    recovered = waveform_to_spectrum(spectrum_to_waveform(spectra, style), spectra.shape[1], style)
    clipped = np.clip(spectra, style.centre - style.clip, style.centre + style.clip)
    return float(np.abs(recovered - clipped).mean() / (2 * style.clip))
