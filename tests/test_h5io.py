"""The project's HDF5 conventions: NXdata with units, provenance, and atomic writes."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap
import time

import h5py
import numpy as np
import pytest

from opir import __version__
from opir.core import h5io


def test_nxdata_layout_units_and_provenance(tmp_path):
    source = tmp_path / "input.txt"
    source.write_text("raw")
    path = tmp_path / "out.h5"
    wavenumber = np.linspace(800, 2000, 16)
    absorbance = np.random.default_rng(0).random((3, 16)).astype(np.float32)
    attrs = h5io.provenance("preprocess", {"b": 1, "a": [1, 2]}, inputs=[source])
    with h5io.atomic_h5(path, attrs) as handle:
        h5io.write_nxdata(
            handle, "absorbance", "absorbance", absorbance, [".", ("wavenumber_cm1", wavenumber)], units="a.u."
        )
    with h5py.File(path) as handle:
        group = handle["absorbance"]
        assert group.attrs["NX_class"] == "NXdata"
        assert group.attrs["signal"] == "absorbance"
        assert list(group.attrs["axes"]) == [".", "wavenumber_cm1"]
        assert group["wavenumber_cm1"].attrs["units"] == "1/cm"
        np.testing.assert_array_equal(group["absorbance"][()], absorbance)
    prov = h5io.read_provenance(path)
    assert prov["producer_rule"] == "preprocess"
    assert prov["opir_version"] == __version__
    assert prov["config_sha256"] == h5io.config_hash({"a": [1, 2], "b": 1})
    assert prov["input_sha256"] == {str(source): h5io.sha256_file(source)}


def test_config_hash_ignores_key_order_but_not_values():
    assert h5io.config_hash({"a": 1, "b": 2}) == h5io.config_hash({"b": 2, "a": 1})
    assert h5io.config_hash({"a": 1}) != h5io.config_hash({"a": 2})


def test_axes_must_match_signal_rank(tmp_path):
    with h5io.atomic_h5(tmp_path / "x.h5") as handle, pytest.raises(ValueError, match="2 axes for a 1-d signal"):
        h5io.write_nxdata(handle, "g", "y", np.zeros(3), [".", "."])


def test_failed_write_leaves_nothing(tmp_path):
    path = tmp_path / "out.h5"
    with pytest.raises(RuntimeError), h5io.atomic_h5(path) as handle:
        handle["x"] = np.arange(3)
        raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []


def test_killed_write_leaves_no_file_that_looks_complete(tmp_path):
    path = tmp_path / "big.h5"
    script = textwrap.dedent(
        f"""
        import numpy as np, sys
        from opir.core import h5io
        with h5io.atomic_h5({str(path)!r}) as handle:
            data = handle.create_dataset("x", shape=(10**9,), dtype="f4", chunks=(2**16,))
            print("writing", flush=True)
            for i in range(0, 10**9, 2**16):
                data[i:i + 2**16] = np.float32(i)
        """
    )
    process = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert process.stdout.readline().strip() == "writing"
    time.sleep(0.5)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)
    assert not path.exists()
    leftovers = list(tmp_path.iterdir())
    assert all(p.name.startswith(".big.h5.tmp-") for p in leftovers)


def test_existing_file_is_replaced_only_when_complete(tmp_path):
    path = tmp_path / "out.h5"
    with h5io.atomic_h5(path, {"producer_rule": "first"}) as handle:
        handle["x"] = 1
    with pytest.raises(KeyboardInterrupt), h5io.atomic_h5(path, {"producer_rule": "second"}):
        raise KeyboardInterrupt
    assert h5io.read_provenance(path)["producer_rule"] == "first"


def test_string_axes_round_trip(tmp_path):
    with h5io.atomic_h5(tmp_path / "s.h5") as handle:
        h5io.write_axis(handle, "sample_id", np.array(["a/b/00001", "c/d/00002"]))
    with h5py.File(tmp_path / "s.h5") as handle:
        assert list(h5io.read_strings(handle["sample_id"])) == ["a/b/00001", "c/d/00002"]
    assert json.loads(h5io.provenance("r")["input_sha256"]) == {}
