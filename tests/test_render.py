"""opir.render: Alg. 1 (waveform image and inverse), Alg. 2 (Chemical Flow), the variation stream and the HDF5
writers, on spectra whose images are known in advance."""

from __future__ import annotations

import dataclasses

import h5py
import numpy as np
import pytest

from opir.core.errors import DataError
from opir.core.h5io import atomic_h5, read_provenance, read_strings, write_axis
from opir.render.chemical_flow import (
    chemical_flow_curves,
    chemical_flow_greys,
    chemical_flow_image,
    chemical_flow_images,
    variation_image,
)
from opir.render.images import render_chemical_flow, render_stream, render_variation, render_waveforms
from opir.render.waveform import (
    CurveStyle,
    column_centre_values,
    curve_geometry,
    point_columns,
    read_style,
    roundtrip_error,
    row_to_value,
    spectrum_to_waveform,
    style_from_config,
    value_to_row,
    waveform_to_spectrum,
)

PAPER = CurveStyle()  # Appendix D: 256x256, margin 0.08, thickness 1.8, clip 0.4, gain 180
SMALL = dataclasses.replace(PAPER, height=64, width=64)
N_POINTS = 400
WAVENUMBER = np.linspace(800.0, 2000.0, N_POINTS)


def gaussian(center_cm1: float, width_cm1: float, amplitude: float) -> np.ndarray:
    return (amplitude * np.exp(-0.5 * ((WAVENUMBER - center_cm1) / width_cm1) ** 2)).astype(np.float32)


def ink_rows(image: np.ndarray, column: int) -> np.ndarray:
    return np.flatnonzero(image[:, column] > 0)


# --------------------------------------------------------------------------------------------------------------
# the value <-> pixel map
# --------------------------------------------------------------------------------------------------------------
def test_value_row_map_is_affine_and_inverted():
    top, bottom = PAPER.plot_rows
    assert value_row(PAPER.centre + PAPER.clip) == pytest.approx(top)
    assert value_row(PAPER.centre - PAPER.clip) == pytest.approx(bottom)
    assert value_row(PAPER.centre) == pytest.approx((top + bottom) / 2)
    assert value_row(PAPER.centre) == round(value_row(PAPER.centre))  # the centre is a whole pixel row
    values = np.linspace(-0.4, 0.4, 17)
    np.testing.assert_allclose(row_to_value(value_to_row(values, PAPER), PAPER), values, atol=1e-12)
    # values beyond the clip limits sit on the plot area's edge
    assert value_row(5.0) == pytest.approx(top)
    assert value_row(-5.0) == pytest.approx(bottom)


def value_row(value: float) -> float:
    return float(value_to_row(np.array(value), PAPER))


# --------------------------------------------------------------------------------------------------------------
# Alg. 1 forward: known spectra render where expected
# --------------------------------------------------------------------------------------------------------------
def test_flat_line_is_one_horizontal_line_inside_the_margins():
    image = spectrum_to_waveform(np.zeros(N_POINTS, np.float32), PAPER)
    assert image.dtype == np.uint8 and image.shape == (256, 256)
    left, right = PAPER.plot_columns
    columns = np.arange(256)
    inside = (columns >= np.ceil(left)) & (columns <= np.floor(right))
    assert (image[:, ~((columns >= np.floor(left)) & (columns <= np.ceil(right)))] == 0).all(), "ink in a margin"
    middle = (PAPER.height - 1) / 2  # 127.5: the line straddles rows 127 and 128 symmetrically
    for column in np.flatnonzero(inside):
        rows = ink_rows(image, column)
        assert rows.min() >= middle - 2 and rows.max() <= middle + 2
        np.testing.assert_array_equal(image[rows, column], image[rows[::-1], column])  # symmetric profile
    # the whole line has one profile: every plot column is the same
    assert (image[:, inside] == image[:, [np.flatnonzero(inside)[0]]]).all()


def test_gaussian_peak_renders_at_its_wavenumber_and_height():
    amplitude = 0.3
    spectrum = gaussian(1400.0, 20.0, amplitude) - 0.1
    image = spectrum_to_waveform(spectrum, PAPER)
    peak_column = int(np.rint(point_columns(N_POINTS, PAPER)[np.argmax(spectrum)]))
    # the brightest-most-upper ink is in the peak column, at the row of the peak value
    top_ink = np.array([ink_rows(image, c).min() if image[:, c].any() else 10**6 for c in range(256)])
    assert abs(int(np.argmin(top_ink)) - peak_column) <= 1
    # the peak's ink covers the peak row and reaches at most a line's half-thickness (+ edge) above it
    peak_row = value_row(amplitude - 0.1)
    rows = ink_rows(image, peak_column)
    assert rows.min() <= peak_row <= rows.max()
    assert peak_row - rows.min() <= PAPER.thickness_px * 1.5 / 2 + 1.5
    # far from the peak the line is at the baseline value
    far = int(np.rint(point_columns(N_POINTS, PAPER)[20]))
    weights = image[:, far].astype(float)
    assert abs((weights * np.arange(256)).sum() / weights.sum() - value_row(-0.1)) < 0.2


def test_spectrum_at_the_clip_limits_is_drawn_on_the_plot_edges():
    half = N_POINTS // 2
    spectrum = np.r_[np.full(half, 0.4), np.full(N_POINTS - half, -0.4)].astype(np.float32)
    beyond = np.r_[np.full(half, 3.0), np.full(N_POINTS - half, -3.0)].astype(np.float32)
    image = spectrum_to_waveform(spectrum, PAPER)
    top, bottom = PAPER.plot_rows
    left_column = int(np.ceil(PAPER.plot_columns[0])) + 2
    right_column = int(np.floor(PAPER.plot_columns[1])) - 2
    for column, edge in ((left_column, top), (right_column, bottom)):
        weights = image[:, column].astype(float)
        assert abs((weights * np.arange(256)).sum() / weights.sum() - edge) < 0.1
        assert ink_rows(image, column).min() > 0 and ink_rows(image, column).max() < 255  # thick, yet inside
    # clipped values draw exactly like values at the limit
    np.testing.assert_array_equal(spectrum_to_waveform(beyond, PAPER), image)
    # amplitude-adaptive thickness: lines at the limits are thicker than at the centre
    centre_line = spectrum_to_waveform(np.zeros(N_POINTS, np.float32), PAPER)
    assert image[:, left_column].sum() > 1.3 * centre_line[:, left_column].sum()


def test_steep_edges_stay_connected():
    """A step from the bottom to the top within one column: the column holds ink on every row in between."""
    spectrum = np.where(WAVENUMBER < 1400, -0.35, 0.35).astype(np.float32)
    image = spectrum_to_waveform(spectrum, PAPER)
    step_column = int(np.rint(point_columns(N_POINTS, PAPER)[np.argmax(WAVENUMBER >= 1400)]))
    rows = np.flatnonzero(image[:, step_column - 1 : step_column + 2].max(axis=1))
    assert rows.max() - rows.min() + 1 == rows.size  # no gap
    assert rows.min() <= value_row(0.35) and rows.max() >= value_row(-0.35)


def test_a_one_point_spike_reaches_its_row():
    """The polyline's vertices are evaluated exactly: a spike of one spectral point is not cut off."""
    for index in (0, 137, 200, N_POINTS - 1):
        spectrum = np.zeros(N_POINTS, np.float32)
        spectrum[index] = 0.3
        _, row_top, _, _ = curve_geometry(spectrum[None], PAPER)
        assert row_top.min() == pytest.approx(value_row(0.3), abs=1e-4)


def test_batch_equals_one_by_one():
    rng = np.random.default_rng(0)
    spectra = rng.normal(0, 0.1, (5, N_POINTS)).astype(np.float32)
    batch = spectrum_to_waveform(spectra, SMALL)
    for spectrum, image in zip(spectra, batch, strict=True):
        np.testing.assert_array_equal(spectrum_to_waveform(spectrum, SMALL), image)


# --------------------------------------------------------------------------------------------------------------
# Alg. 1 inverse
# --------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("spectrum", "tolerance"),
    [
        (np.zeros(N_POINTS, np.float32), 0.001),
        (np.full(N_POINTS, 0.4, np.float32), 0.001),
        (np.full(N_POINTS, -0.4, np.float32), 0.001),
        (gaussian(1400.0, 25.0, 0.5) - 0.2, 0.005),
        (0.2 * np.sin(WAVENUMBER / 60).astype(np.float32), 0.005),
    ],
    ids=["flat", "top-limit", "bottom-limit", "gaussian", "sine"],
)
def test_inverse_recovers_known_spectra_at_256(spectrum, tolerance):
    """Mean error within ``tolerance`` of the drawn range (0.8): 0.1% for lines, 0.5% for curved spectra."""
    image = spectrum_to_waveform(spectrum, PAPER)
    recovered = waveform_to_spectrum(image, N_POINTS, PAPER)
    assert recovered.shape == (N_POINTS,) and recovered.dtype == np.float32
    assert np.abs(recovered - spectrum).mean() <= tolerance * 2 * PAPER.clip


def test_inverse_of_a_gaussian_keeps_its_peak():
    spectrum = gaussian(1400.0, 25.0, 0.5) - 0.2
    recovered = waveform_to_spectrum(spectrum_to_waveform(spectrum, PAPER), N_POINTS, PAPER)
    assert abs(WAVENUMBER[np.argmax(recovered)] - 1400.0) <= 6.0  # one column is 5.6 1/cm here
    assert abs(recovered.max() - spectrum.max()) < 0.02 * 2 * PAPER.clip
    assert np.abs(recovered - spectrum).max() < 0.03 * 2 * PAPER.clip


def test_refinement_corrects_the_band_top_bias():
    spectrum = np.stack([gaussian(1400.0, 6.0, 0.6) - 0.3, gaussian(1000.0, 4.0, -0.5) + 0.2])
    image = spectrum_to_waveform(spectrum, PAPER)
    plain = waveform_to_spectrum(image, N_POINTS, PAPER, refine_iterations=0)
    refined = waveform_to_spectrum(image, N_POINTS, PAPER)
    assert np.abs(refined - spectrum).mean() < 0.7 * np.abs(plain - spectrum).mean()
    assert np.abs(refined - spectrum).max(axis=1).max() < np.abs(plain - spectrum).max(axis=1).min()
    # what the inverse reads is what the forward drew: the centres computed without drawing match the image's
    columns, _, _, _ = curve_geometry(spectrum, PAPER)
    read = row_to_value(
        (image[:, :, columns] * np.arange(256)[None, :, None]).sum(1) / image[:, :, columns].sum(1), PAPER
    )
    np.testing.assert_allclose(read, column_centre_values(spectrum, PAPER), atol=0.002)


def test_roundtrip_error_grows_as_images_shrink():
    rng = np.random.default_rng(1)
    spectra = (
        np.stack(
            [
                gaussian(c, w, a)
                for c, w, a in zip(
                    rng.uniform(900, 1900, 6), rng.uniform(10, 30, 6), rng.uniform(0.1, 0.5, 6), strict=True
                )
            ]
        )
        - 0.2
    )
    errors = [roundtrip_error(spectra, dataclasses.replace(PAPER, height=s, width=s)) for s in (256, 64, 32)]
    assert errors[0] < 0.01
    assert errors[0] < errors[1] < errors[2]


def test_inverse_reads_through_a_grey_background():
    spectrum = gaussian(1500.0, 30.0, 0.3) - 0.1
    image = spectrum_to_waveform(spectrum, SMALL).astype(np.int16) + 3  # a decoder's haze
    hazy = np.clip(image, 0, 255).astype(np.uint8)
    clean = waveform_to_spectrum(spectrum_to_waveform(spectrum, SMALL), N_POINTS, SMALL)
    naive = waveform_to_spectrum(hazy, N_POINTS, SMALL)
    corrected = waveform_to_spectrum(hazy, N_POINTS, SMALL, background=3)
    np.testing.assert_allclose(corrected, clean, atol=1e-3)
    assert np.abs(naive - clean).mean() > 0.01  # the haze pulls every column to the middle


def test_inverse_rejects_bad_images():
    with pytest.raises(DataError, match="shape"):
        waveform_to_spectrum(np.zeros((2, 32, 32), np.uint8), N_POINTS, SMALL)
    blank = spectrum_to_waveform(np.zeros((2, N_POINTS), np.float32), SMALL)
    blank[1] = 0
    with pytest.raises(DataError, match="image 1 has no ink"):
        waveform_to_spectrum(blank, N_POINTS, SMALL)


def test_forward_rejects_bad_spectra():
    spectrum = np.zeros(N_POINTS, np.float32)
    spectrum[7] = np.nan
    with pytest.raises(DataError, match="point 7"):
        spectrum_to_waveform(spectrum, SMALL)
    with pytest.raises(DataError, match="at least 2"):
        spectrum_to_waveform(np.zeros((3, 1), np.float32), SMALL)
    with pytest.raises(ValueError, match="margin"):
        CurveStyle(margin=0.6)


# --------------------------------------------------------------------------------------------------------------
# Alg. 2 and the variation stream
# --------------------------------------------------------------------------------------------------------------
DIFF = CurveStyle(height=64, width=64, clip=0.1, thickness_px=1.0)


def growing_run(n: int = 9) -> np.ndarray:
    """A run whose band at 1700 1/cm grows by 0.01 per spectrum over a constant background."""
    background = gaussian(1200.0, 30.0, 0.6)
    return np.stack([background + gaussian(1700.0, 15.0, 0.01 * k) for k in range(n)])


def test_chemical_flow_of_an_unchanging_run_is_one_light_line():
    run = np.repeat(gaussian(1300.0, 40.0, 0.7)[None], 12, axis=0)
    image = chemical_flow_image(run, 11, DIFF, darkest_grey=64, max_curves=None)
    np.testing.assert_array_equal(image, spectrum_to_waveform(np.zeros(N_POINTS, np.float32), DIFF))
    rows = np.flatnonzero(image.any(axis=1))
    assert rows.max() - rows.min() <= 3  # one line on the zero row
    assert image.max() == 180  # the reference's grey: a 1-px line on a row is contrast_gain x 1 px


def test_chemical_flow_grey_encodes_order_light_to_dark():
    run = growing_run()
    m = 8
    image = chemical_flow_image(run, m, DIFF, darkest_grey=64, max_curves=None)
    column = int(np.rint(point_columns(N_POINTS, DIFF)[np.argmin(np.abs(WAVENUMBER - 1700))]))
    # at the band, curve k sits at the row of its difference 0.01 k: later curves higher and darker
    rows = [int(np.rint(value_to_row(np.array(0.01 * k), DIFF))) for k in (0, m // 2, m)]
    greys = [int(image[r, column]) for r in rows]
    assert greys[0] > greys[1] > greys[2] > 0
    expected = 255 * chemical_flow_greys(np.array([0, m]), m, 64)
    assert greys[2] == pytest.approx(expected[1] * image[rows[0], column] / 255, abs=8)
    # away from the band every curve coincides with the reference: the light line wins there
    far = int(np.rint(point_columns(N_POINTS, DIFF)[10]))
    assert image[:, far].max() == image[rows[0], column]


def test_chemical_flow_covers_0_to_m_only():
    run = growing_run(9)
    early = chemical_flow_image(run, 3, DIFF, max_curves=None)
    assert not np.array_equal(early, chemical_flow_image(run, 8, DIFF, max_curves=None))
    np.testing.assert_array_equal(early, chemical_flow_image(run[:4], 3, DIFF, max_curves=None))
    batch = chemical_flow_images(run, [1, 3, 8], DIFF, max_curves=None)
    np.testing.assert_array_equal(batch[1], early)
    with pytest.raises(DataError, match="m=9"):
        chemical_flow_image(run, 9, DIFF)


def test_chemical_flow_curve_cap_keeps_first_and_last():
    order = chemical_flow_curves(1000, 64)
    assert order[0] == 0 and order[-1] == 1000 and len(order) == 64
    assert np.all(np.diff(order) > 0)
    np.testing.assert_array_equal(chemical_flow_curves(5, 64), np.arange(6))


def test_variation_is_the_difference_drawn_at_clip_0_1():
    run = growing_run()
    image = variation_image(run[8], run[0], DIFF)
    np.testing.assert_array_equal(image, spectrum_to_waveform(run[8] - run[0], DIFF))
    recovered = waveform_to_spectrum(image, N_POINTS, DIFF)
    assert np.abs(recovered - (run[8] - run[0])).mean() < 0.02 * 2 * DIFF.clip


# --------------------------------------------------------------------------------------------------------------
# the HDF5 writers, on a samples.h5 laid out as docs/architecture.md says
# --------------------------------------------------------------------------------------------------------------
SETTINGS = {
    "image_size": 32,
    "margin": 0.08,
    "centre": 0.5,
    "clip": 0.6,
    "thickness_px": 1.8,
    "thickness_amplitude_gain": 0.5,
    "contrast_gain": 180,
    "variation": {"clip": 0.1, "thickness_px": 1.0},
    "chemical_flow": {"clip": 0.1, "thickness_px": 1.0, "darkest_grey": 64, "max_curves": 4},
    "figure_sample": None,
    "chunk_size": 3,
    "compression_level": 4,
}


def write_samples(path, runs: dict[tuple[str, str], np.ndarray]) -> None:
    spectra, row_system, row_run, index, samples = [], [], [], [], []
    firsts, counts = [], []
    for (system, run), block in runs.items():
        first = len(spectra)
        firsts.append(first)
        counts.append(len(block))
        for k, spectrum in enumerate(block):
            spectra.append(spectrum)
            row_system.append(system)
            row_run.append(run)
            index.append(k)
            if k:
                samples.append((f"{system}/{run}/{k:05d}", first + k, first, k))
    with atomic_h5(path, {"producer_rule": "test"}) as handle:
        write_axis(handle, "wavenumber_cm1", WAVENUMBER)
        handle.create_dataset("spectra/absorbance", data=np.array(spectra, np.float32))
        write_axis(handle.create_group("rows"), "system_id", np.array(row_system))
        write_axis(handle["rows"], "run_id", np.array(row_run))
        write_axis(handle["rows"], "index_in_run", np.array(index))
        group = handle.create_group("samples")
        for position, name in enumerate(("sample_id", "row", "initial_row", "m")):
            write_axis(group, name, np.array([s[position] for s in samples]))
        write_axis(handle.create_group("runs"), "first_row", np.array(firsts))
        write_axis(handle["runs"], "n_rows", np.array(counts))


@pytest.fixture
def samples_h5(tmp_path):
    path = tmp_path / "samples.h5"
    flat = np.repeat((0.5 + gaussian(1300.0, 40.0, 0.3))[None], 4, axis=0)
    write_samples(path, {("cu_dmc", "run1"): growing_run(7), ("cu_ec12", "run1"): flat})
    return path


def test_waveform_file_has_one_image_per_row(samples_h5, tmp_path):
    out = tmp_path / "render" / "waveform.h5"
    assert render_stream("waveform", samples_h5, out, SETTINGS) == 11
    style = style_from_config(SETTINGS)
    with h5py.File(out) as handle, h5py.File(samples_h5) as source:
        images = handle["images"]
        assert images.dtype == np.uint8 and images.shape == (11, 32, 32)
        assert images.chunks == (1, 32, 32) and images.compression == "gzip"
        np.testing.assert_array_equal(images[()], spectrum_to_waveform(source["spectra/absorbance"][()], style))
        ids = read_strings(handle["sample_id"])
        assert ids[0] == "cu_dmc/run1/00000" and ids[7] == "cu_ec12/run1/00000" and ids[8] == "cu_ec12/run1/00001"
        np.testing.assert_array_equal(handle["row"][()], np.arange(11))
        assert handle.attrs["signal"] == "images" and handle.attrs["render_clip"] == 0.6
        assert handle["wavenumber_cm1"].attrs["units"] == "1/cm" and handle["row_value"].shape == (32,)
    assert read_provenance(out)["config"]["render"]["image_size"] == 32
    assert read_style(out) == style  # the file says exactly how to read its images back
    with pytest.raises(DataError, match="render_height"):
        read_style(samples_h5)


def test_chemical_flow_and_variation_files_follow_the_sample_table(samples_h5, tmp_path):
    flow = tmp_path / "chemical_flow.h5"
    variation = tmp_path / "variation.h5"
    assert render_chemical_flow(samples_h5, flow, SETTINGS) == 9
    assert render_variation(samples_h5, variation, SETTINGS) == 9
    flow_style = style_from_config(SETTINGS, "chemical_flow")
    with h5py.File(flow) as f, h5py.File(variation) as v, h5py.File(samples_h5) as source:
        spectra = source["spectra/absorbance"][()]
        ids = read_strings(f["sample_id"])
        assert list(ids[:2]) == ["cu_dmc/run1/00001", "cu_dmc/run1/00002"] and f["images"].shape == (9, 32, 32)
        np.testing.assert_array_equal(read_strings(v["sample_id"]), ids)
        for i in range(9):
            row, initial, m = int(f["row"][i]), int(f["initial_row"][i]), int(f["m"][i])
            expected = chemical_flow_image(spectra[initial : row + 1], m, flow_style, 64, 4)
            np.testing.assert_array_equal(f["images"][i], expected)
            np.testing.assert_array_equal(
                v["images"][i],
                variation_image(spectra[row], spectra[initial], style_from_config(SETTINGS, "variation")),
            )
        # the unchanging run: every Chemical Flow image is the single light line
        assert all(np.array_equal(f["images"][i], f["images"][6]) for i in (7, 8))
        assert f.attrs["render_max_curves"] == 4 and f.attrs["stream"] == "chemical_flow"


def test_writer_names_what_is_missing_or_inconsistent(samples_h5, tmp_path):
    with h5py.File(samples_h5, "a") as handle:
        handle["samples/m"][0] = 5
    with pytest.raises(DataError, match="cu_dmc/run1/00001 has m=5"):
        render_variation(samples_h5, tmp_path / "v.h5", SETTINGS)
    with h5py.File(samples_h5, "a") as handle:
        handle["samples/m"][0] = 1
        handle["spectra/absorbance"][9, 42] = np.nan
    for stream in ("waveform", "variation"):
        with pytest.raises(DataError, match=r"row 9 has a non-finite value at point 42 \(926\.3 1/cm\)"):
            render_stream(stream, samples_h5, tmp_path / f"{stream}.h5", SETTINGS)
    with h5py.File(samples_h5, "a") as handle:
        del handle["runs/n_rows"]
    with pytest.raises(DataError, match="runs/n_rows"):
        render_waveforms(samples_h5, tmp_path / "w.h5", SETTINGS)
    assert not (tmp_path / "w.h5").exists() and not list(tmp_path.glob(".*tmp*"))


def test_illustration_figure(samples_h5, tmp_path):
    from opir.report.render import render_illustration

    out = render_illustration(samples_h5, tmp_path / "render.png", SETTINGS, dpi=40)
    assert out.stat().st_size > 5000
    with pytest.raises(DataError, match="nope"):
        render_illustration(samples_h5, tmp_path / "x.png", {**SETTINGS, "figure_sample": "nope"})


@pytest.mark.workflow
def test_render_rules_run_on_a_samples_file(samples_h5, tmp_path):
    """The rules end to end on a ready samples.h5 (the upstream stages are the other tests' business)."""
    from conftest import run_snakemake

    workdir = tmp_path / "wd"
    (workdir / "results" / "dataset").mkdir(parents=True)
    samples_h5.rename(workdir / "results" / "dataset" / "samples.h5")
    targets = [f"results/render/{s}.h5" for s in ("waveform", "chemical_flow", "variation")]
    # targets between two one-value options: --configfile and --allowed-rules take every argument after them
    run_snakemake(workdir, "--cores", "1", *targets, "results/figures/render_illustration.png",
                  "--allowed-rules", "render_images", "render_figure")  # fmt: skip
    with h5py.File(workdir / "results/render/chemical_flow.h5") as handle:
        assert handle["images"].shape == (9, 32, 32)  # the test config's image size
        assert handle.attrs["render_clip"] == 0.5  # the variation/Chemical Flow scale of config.yaml
    assert (workdir / "results/benchmarks/render/waveform.tsv").exists()
    assert (workdir / "results/logs/render/variation.log").read_text().count("wrote 9 variation images")
