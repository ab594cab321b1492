"""The shared layers below the stages: the sample-table readers (opir.formats.samples), the array helpers
(opir.core.arrays) and the schema defaults (opir.core.config.with_defaults)."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import write_toy_dataset

from opir.core.arrays import cosine_similarity_rows, interp_linear, r2_rows
from opir.core.config import with_defaults
from opir.core.errors import ConfigError, DataError
from opir.formats.samples import load_samples, read_preprocess_params, read_sample_arrays, read_spectra


def test_read_spectra_keeps_the_order_asked(tmp_path):
    samples = write_toy_dataset(tmp_path)["samples"]
    table = load_samples(samples)
    rows = np.array([5, 2, 5, 0])
    np.testing.assert_array_equal(read_spectra(samples, rows), table.absorbance[rows])
    np.testing.assert_array_equal(read_spectra(samples, slice(3, 7)), table.absorbance[3:7])
    assert read_spectra(samples, np.array([], dtype=int)).shape == (0, table.absorbance.shape[1])


def test_read_sample_arrays_names_what_is_missing(tmp_path):
    samples = write_toy_dataset(tmp_path)["samples"]
    arrays = read_sample_arrays(samples, ["samples/sample_id", "rows/voltage_v"], optional=["rows/nothing"])
    assert set(arrays) == {"samples/sample_id", "rows/voltage_v"} and arrays["samples/sample_id"].dtype.kind == "U"
    with pytest.raises(DataError, match=r"samples.h5: missing rows/nothing"):
        read_sample_arrays(samples, ["rows/nothing"])
    with pytest.raises(DataError, match="does not exist"):
        read_sample_arrays(tmp_path / "absent.h5", ["wavenumber_cm1"])
    with pytest.raises(DataError, match="no 'preprocess_params' attribute"):
        read_preprocess_params(samples)


def test_interp_linear_is_np_interp_on_every_row():
    rng = np.random.default_rng(0)
    x = np.sort(rng.uniform(0, 10, 12))
    y = rng.normal(size=(3, 12))
    query = np.linspace(x[0], x[-1], 25)
    expected = np.stack([np.interp(query, x, row) for row in y])
    np.testing.assert_allclose(interp_linear(x, y, query), expected, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(interp_linear(x, y.T, query, axis=0), expected.T, rtol=1e-12, atol=1e-12)
    outside = np.array([x[0] - 1.0, x[-1] + 1.0])
    np.testing.assert_allclose(interp_linear(x, y, outside, clamp=True), y[:, [0, -1]])
    assert not np.allclose(interp_linear(x, y, outside), y[:, [0, -1]])  # extrapolated without clamp
    np.testing.assert_array_equal(interp_linear([2.0], y[:, :1], np.array([0.0, 5.0])), y[:, [0, 0]])


def test_row_scores_and_their_conventions():
    a = np.array([[1.0, 0.0], [0.0, 0.0], [0.0, 0.0], [1.0, 1.0]])
    b = np.array([[0.0, 2.0], [1.0, 0.0], [0.0, 0.0], [2.0, 2.0]])
    np.testing.assert_allclose(cosine_similarity_rows(a, b), [0.0, 0.0, 1.0, 1.0])
    assert cosine_similarity_rows(a[3], b[3]).max() <= 1.0  # clipped: arccos stays defined
    true = np.array([[1.0, 2.0, 3.0], [5.0, 5.0, 5.0]])
    r2 = r2_rows(true, true + np.array([[0.1, -0.1, 0.0], [0.0, 0.0, 0.0]]))
    assert r2[0] == pytest.approx(1 - 0.02 / 2.0) and np.isnan(r2[1])  # a constant truth has no R2


def test_with_defaults_fills_a_partial_section_from_the_schema():
    ingest = with_defaults("ingest", {"block": "TR"})
    assert ingest["block"] == "TR" and ingest["time_source"] == "opus" and ingest["interval_s"] == 30.0
    losses = with_defaults("models.abcc.losses", {"mass_weight": 0.0})
    assert losses["mass_weight"] == 0.0 and losses["peak_samples"] == 8
    with pytest.raises(ConfigError, match="no section 'models.nothing'"):
        with_defaults("models.nothing")
