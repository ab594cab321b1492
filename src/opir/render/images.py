"""Rendering ``samples.h5`` into the image files of the render stage (one image per chunk, uint8, gzip)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from opir.core.errors import DataError
from opir.core.h5io import atomic_h5, provenance, write_axis
from opir.formats.samples import open_spectra, read_sample_arrays
from opir.render.chemical_flow import chemical_flow_images, variation_image
from opir.render.waveform import CurveStyle, column_wavenumbers, row_values, spectrum_to_waveform, style_from_config

log = logging.getLogger(__name__)


# --------------------------------------------------------------------------------------------------------------
# Rendering results/dataset/samples.h5 to results/render/*.h5, streaming
# --------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Dataset:
    """What the render stage reads of samples.h5 (everything but the spectra, which are read in chunks)."""

    wavenumber_cm1: np.ndarray
    row_system: np.ndarray
    row_run: np.ndarray
    index_in_run: np.ndarray
    sample_id: np.ndarray
    sample_row: np.ndarray
    initial_row: np.ndarray
    m: np.ndarray
    run_first_row: np.ndarray
    run_n_rows: np.ndarray


def _read_dataset(path: Path, spectra_shape: tuple[int, int]) -> _Dataset:
    needed = [
        "wavenumber_cm1",
        "rows/system_id",
        "rows/run_id",
        "rows/index_in_run",
        "samples/sample_id",
        "samples/row",
        "samples/initial_row",
        "samples/m",
        "runs/first_row",
        "runs/n_rows",
    ]
    table = read_sample_arrays(path, needed)
    data = _Dataset(
        wavenumber_cm1=table["wavenumber_cm1"],
        row_system=table["rows/system_id"],
        row_run=table["rows/run_id"],
        index_in_run=table["rows/index_in_run"].astype(np.int64),
        sample_id=table["samples/sample_id"],
        sample_row=table["samples/row"].astype(np.int64),
        initial_row=table["samples/initial_row"].astype(np.int64),
        m=table["samples/m"].astype(np.int64),
        run_first_row=table["runs/first_row"].astype(np.int64),
        run_n_rows=table["runs/n_rows"].astype(np.int64),
    )
    n_rows, n_points = spectra_shape
    if data.wavenumber_cm1.shape != (n_points,):
        raise DataError(
            f"{path}: wavenumber_cm1 has shape {data.wavenumber_cm1.shape}, spectra/absorbance has {n_points} points"
        )
    if np.any(np.diff(data.wavenumber_cm1) <= 0):
        raise DataError(f"{path}: wavenumber_cm1 is not strictly ascending (the common grid must be)")
    for name in ("row_system", "row_run", "index_in_run"):
        if len(getattr(data, name)) != n_rows:
            raise DataError(
                f"{path}: rows/{name.removeprefix('row_')} has {len(getattr(data, name))} entries, "
                f"spectra/absorbance has {n_rows} rows"
            )
    for name in ("sample_row", "initial_row", "m"):
        if len(getattr(data, name)) != len(data.sample_id):
            raise DataError(f"{path}: samples/ datasets differ in length (sample_id vs {name})")
    for name, rows in (("samples/row", data.sample_row), ("samples/initial_row", data.initial_row)):
        bad = np.flatnonzero((rows < 0) | (rows >= n_rows))
        if bad.size:
            raise DataError(
                f"{path}: {name} of sample {data.sample_id[bad[0]]} is {rows[bad[0]]}, outside 0..{n_rows - 1}"
            )
    bad = np.flatnonzero(data.sample_row - data.initial_row != data.m)
    if bad.size:
        i = bad[0]
        raise DataError(
            f"{path}: sample {data.sample_id[i]} has m={data.m[i]} but row - initial_row = "
            f"{data.sample_row[i] - data.initial_row[i]} (spectra 0..m of a run must be contiguous)"
        )
    return data


def _check_finite(block: np.ndarray, first_row: int, path: Path, wavenumber_cm1: np.ndarray) -> None:
    """Name the row and wavenumber of the first value that cannot be drawn (NaN or inf)."""
    bad = np.argwhere(~np.isfinite(block))
    if bad.size:
        row, point = bad[0]
        raise DataError(
            f"{path}: spectra/absorbance row {first_row + row} has a non-finite value at point {point} "
            f"({wavenumber_cm1[point]:.1f} 1/cm): it cannot be drawn"
        )


def _image_file(
    handle: h5py.File,
    n_images: int,
    style: CurveStyle,
    wavenumber_cm1: np.ndarray,
    stream: str,
    value_name: str,
    compression_level: int,
    extra_attrs: dict[str, Any] | None = None,
) -> h5py.Dataset:
    """The NXdata layout of an image file: ``images`` (n, H, W) uint8, one image per gzip chunk, with its axes:
    ``row_value`` (H, the value each pixel row stands for) and ``wavenumber_cm1`` (W, each column's wavenumber)."""
    handle.attrs["NX_class"] = "NXdata"
    handle.attrs["signal"] = "images"
    handle.attrs["axes"] = np.array([".", "row_value", "wavenumber_cm1"], dtype=h5py.string_dtype())
    handle.attrs["stream"] = stream
    for key, value in {**style.attrs(), **(extra_attrs or {})}.items():
        handle.attrs[f"render_{key}"] = "none" if value is None else value
    images = handle.create_dataset(
        "images",
        shape=(n_images, style.height, style.width),
        dtype=np.uint8,
        chunks=(1, style.height, style.width),
        compression="gzip",
        compression_opts=compression_level,
        shuffle=False,
    )
    images.attrs["long_name"] = f"{stream} image (grey level 0-255)"
    axis = write_axis(handle, "row_value", row_values(style))
    axis.attrs["long_name"] = value_name
    write_axis(handle, "wavenumber_cm1", column_wavenumbers(wavenumber_cm1, style))
    return images


def render_waveforms(
    samples_h5: str | Path,
    output_h5: str | Path,
    render: dict[str, Any],
    rule: str = "render_waveform",
) -> int:
    """Alg. 1 on every row of samples.h5 (initial spectra included), ``render['chunk_size']`` rows at a time.

    Writes ``images`` (n_rows, H, W), ``row`` and ``sample_id`` (``{system}/{run}/{index_in_run:05d}``: the
    sample's id for rows that are samples, index 00000 for a run's initial spectrum). Returns the row count."""
    samples_h5 = Path(samples_h5)
    style = style_from_config(render, "waveform")
    chunk = int(render["chunk_size"])
    with open_spectra(samples_h5) as spectra:
        data = _read_dataset(samples_h5, spectra.shape)
        n_rows, n_points = spectra.shape
        row_ids = np.array(
            [f"{s}/{r}/{i:05d}" for s, r, i in zip(data.row_system, data.row_run, data.index_in_run, strict=True)]
        )
        known = dict(zip(data.sample_id, data.sample_row, strict=True))
        for sample_id, row in known.items():
            if row_ids[row] != sample_id:
                raise DataError(f"{samples_h5}: sample {sample_id} points to row {row}, which is {row_ids[row]}")
        attrs = provenance(rule, {"render": render}, [samples_h5])
        with atomic_h5(output_h5, attrs) as out:
            images = _image_file(
                out,
                n_rows,
                style,
                data.wavenumber_cm1,
                "waveform",
                "normalized absorbance",
                int(render["compression_level"]),
            )
            write_axis(out, "row", np.arange(n_rows, dtype=np.int64))
            write_axis(out, "sample_id", row_ids)
            for start in range(0, n_rows, chunk):
                block = spectra[start : start + chunk]
                _check_finite(block, start, samples_h5, data.wavenumber_cm1)
                images[start : start + len(block)] = spectrum_to_waveform(block, style)
                log.info("waveform: %d / %d rows", start + len(block), n_rows)
    log.info(
        "wrote %d waveform images %dx%d of %d points to %s", n_rows, style.height, style.width, n_points, output_h5
    )
    return n_rows


def _runs_of_samples(data: _Dataset, path: Path) -> list[tuple[int, int, np.ndarray]]:
    """(first_row, n_rows, sample indices) of each run with samples; every sample must lie inside one run."""
    groups = []
    assigned = np.zeros(len(data.sample_id), dtype=bool)
    for first, count in zip(data.run_first_row, data.run_n_rows, strict=True):
        inside = np.flatnonzero((data.initial_row >= first) & (data.sample_row < first + count))
        assigned[inside] = True
        if inside.size:
            groups.append((int(first), int(count), inside))
    if not assigned.all():
        orphan = data.sample_id[np.flatnonzero(~assigned)[0]]
        raise DataError(f"{path}: sample {orphan} does not lie within one run of runs/first_row, runs/n_rows")
    return groups


def _render_per_sample(
    samples_h5: str | Path,
    output_h5: str | Path,
    render: dict[str, Any],
    rule: str,
    stream: str,
) -> int:
    samples_h5 = Path(samples_h5)
    style = style_from_config(render, stream)
    section = render[stream]
    chunk = int(render["chunk_size"])
    with open_spectra(samples_h5) as spectra:
        data = _read_dataset(samples_h5, spectra.shape)
        groups = _runs_of_samples(data, samples_h5)
        attrs = provenance(rule, {"render": render}, [samples_h5])
        extra = (
            {"darkest_grey": section["darkest_grey"], "max_curves": section["max_curves"]}
            if stream == "chemical_flow"
            else {}
        )
        with atomic_h5(output_h5, attrs) as out:
            images = _image_file(
                out,
                len(data.sample_id),
                style,
                data.wavenumber_cm1,
                stream,
                "normalized absorbance difference to s(v_0)",
                int(render["compression_level"]),
                extra,
            )
            write_axis(out, "sample_id", data.sample_id)
            write_axis(out, "row", data.sample_row)
            write_axis(out, "initial_row", data.initial_row)
            write_axis(out, "m", data.m)
            done = 0
            for first, count, members in groups:
                run_spectra = spectra[first : first + count]  # one run at a time: a few MB even for long runs
                _check_finite(run_spectra, first, samples_h5, data.wavenumber_cm1)
                for start in range(0, len(members), chunk):
                    indices = np.sort(members[start : start + chunk])
                    local_row = data.sample_row[indices] - first
                    local_initial = data.initial_row[indices] - first
                    if stream == "variation":
                        block = variation_image(run_spectra[local_row], run_spectra[local_initial], style)
                    else:
                        block = np.empty((len(indices), style.height, style.width), dtype=np.uint8)
                        for initial in np.unique(local_initial):  # one reference s(v_0) per run, as a rule
                            same = local_initial == initial
                            block[same] = chemical_flow_images(
                                run_spectra[initial:],
                                data.m[indices[same]],
                                style,
                                float(section["darkest_grey"]),
                                section["max_curves"],
                            )
                    images[indices] = block
                    done += len(indices)
                log.info("%s: %d / %d samples", stream, done, len(data.sample_id))
    log.info("wrote %d %s images %dx%d to %s", len(data.sample_id), stream, style.height, style.width, output_h5)
    return len(data.sample_id)


def render_chemical_flow(
    samples_h5: str | Path, output_h5: str | Path, render: dict[str, Any], rule: str = "render_chemical_flow"
) -> int:
    """Alg. 2 for every sample of samples.h5: the image of sample m covers its run's spectra 0..m.

    Writes ``images`` (n_samples, H, W) with ``sample_id``, ``row``, ``initial_row`` and ``m``, in the order of the
    sample table, one run at a time. Returns the sample count."""
    return _render_per_sample(samples_h5, output_h5, render, rule, "chemical_flow")


def render_variation(
    samples_h5: str | Path, output_h5: str | Path, render: dict[str, Any], rule: str = "render_variation"
) -> int:
    """The variation stream s(v_m) - s(v_0) for every sample of samples.h5 (layout as
    :func:`render_chemical_flow`). Returns the sample count."""
    return _render_per_sample(samples_h5, output_h5, render, rule, "variation")


RENDERERS = {
    "waveform": render_waveforms,
    "chemical_flow": render_chemical_flow,
    "variation": render_variation,
}


def render_stream(
    stream: str, samples_h5: str | Path, output_h5: str | Path, render: dict[str, Any], rule: str = "render_images"
) -> int:
    """Render one image stream (``waveform``, ``chemical_flow`` or ``variation``) of samples.h5 to ``output_h5``."""
    if stream not in RENDERERS:
        raise ValueError(f"unknown image stream {stream!r}: expected one of {', '.join(RENDERERS)}")
    return RENDERERS[stream](samples_h5, output_h5, render, rule=rule)
