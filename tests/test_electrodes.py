"""Electrode descriptors (opir.core.electrodes): the sheet's columns, their checks, the numeric features, the dataset's
electrodes.h5 and `opir predict --electrode`."""

from __future__ import annotations

import h5py
import numpy as np
import pandas as pd
import pytest
from conftest import REPO

from opir.core.config import read_sheet
from opir.core.electrodes import (
    DESCRIPTOR_COLUMNS,
    FEATURE_NAMES,
    descriptors_from_row,
    parse_catalysis,
    parse_descriptors,
)
from opir.core.errors import ConfigError, DataError
from opir.forecast.inputs import resolve_electrode
from opir.formats.electrodes import electrode_features, read_electrodes
from opir.preprocess.dataset import write_electrode_descriptors

COO = {"electrode_class": "conversion", "carbon_fraction": 0.1, "binder_fraction": 0.1, "surface_area": 1.5,
       "volume_change": 1.0, "film_reversibility": 0.5, "catalysis": "transesterification:8; ec_reduction:0.5"}
CU = {"electrode_class": "collector", "carbon_fraction": 0.0, "binder_fraction": 0.0, "surface_area": 1.0,
      "volume_change": 0.0, "film_reversibility": 0.0, "catalysis": "none"}  # fmt: skip


def test_descriptors_and_their_features():
    coo = descriptors_from_row(COO, "row")
    assert coo.catalysis == {"transesterification": 8.0, "ec_reduction": 0.5}
    features = dict(zip(FEATURE_NAMES, coo.features(), strict=True))
    assert features["class_conversion"] == 1.0 and features["class_collector"] == 0.0
    assert features["log10_catalysis_transesterification"] == pytest.approx(np.log10(8.0))
    assert features["log10_catalysis_deep_reduction"] == 0.0  # not named: factor 1
    assert descriptors_from_row(coo.as_row(), "again") == coo  # the sheet's text form reads back
    assert parse_descriptors(", ".join(f"{k}={v}" for k, v in COO.items())) == coo


@pytest.mark.parametrize(("change", "message"), [
    ({"electrode_class": "anode"}, "electrode_class: 'anode' is not one of"),
    ({"carbon_fraction": -0.1}, "carbon_fraction: -0.1 is less than the minimum"),
    ({"carbon_fraction": 0.6, "binder_fraction": 0.45}, "must leave room for the active material"),
    ({"surface_area": 0.0}, "surface_area: 0.0 is less than or equal to the minimum"),
    ({"film_reversibility": 1.5}, "film_reversibility: 1.5 is greater than the maximum"),
    ({"catalysis": "transesterification:0"}, "catalysis factor of transesterification must be a number > 0"),
    ({"catalysis": "gassing:2"}, "unknown pathway 'gassing'; known: vc_polymerization"),
    ({"catalysis": "ec_reduction:2; ec_reduction:3"}, "names ec_reduction twice"),
    ({"catalysis": "ec_reduction"}, "catalysis: 'ec_reduction' does not match"),
])  # fmt: skip
def test_bad_descriptors_are_named(change, message):
    with pytest.raises(ConfigError, match=message):
        descriptors_from_row({**COO, **change}, "systems.tsv: row 3 (x)")
    with pytest.raises(ConfigError, match="a bare current collector"):
        descriptors_from_row({**CU, "carbon_fraction": 0.1}, "row")
    assert parse_catalysis(" ", "c") == {} and parse_catalysis("none", "c") == {}


def test_the_sheet_requires_and_checks_the_descriptor_columns(tmp_path):
    sheet = pd.read_csv(REPO / "config/systems.tsv", sep="\t", dtype=str, keep_default_na=False)
    sheet.drop(columns=["volume_change"]).to_csv(tmp_path / "a.tsv", sep="\t", index=False)
    with pytest.raises(ConfigError, match="missing column.*volume_change"):
        read_sheet(tmp_path / "a.tsv", "systems.schema.yaml")
    sheet.loc[2, "carbon_fraction"] = "ten percent"
    sheet.to_csv(tmp_path / "b.tsv", sep="\t", index=False)
    with pytest.raises(ConfigError, match="row 4, column carbon_fraction: 'ten percent' is not of type 'number'"):
        read_sheet(tmp_path / "b.tsv", "systems.schema.yaml")


def test_electrodes_file_round_trip_and_predict_names(tmp_path):
    rows = [{"system_id": "coo", "working_electrode": "CoO/SuperP", **COO},
            {"system_id": "cu_a", "working_electrode": "Cu", **CU},
            {"system_id": "cu_b", "working_electrode": "Cu", **CU}]  # fmt: skip
    path = tmp_path / "electrodes.h5"
    write_electrode_descriptors(rows, path)
    back = read_electrodes(path)
    assert back["coo"] == ("CoO/SuperP", descriptors_from_row(COO, "x"))
    assert electrode_features(path)["cu_a"].shape == (len(FEATURE_NAMES),)
    with h5py.File(path) as handle:
        assert set(DESCRIPTOR_COLUMNS) <= set(handle["electrodes"]) and "producer_rule" in handle.attrs

    model_dir = tmp_path / "model"
    model_dir.mkdir()
    explicit = ", ".join(f"{k}={v}" for k, v in CU.items())
    assert resolve_electrode(explicit, model_dir)[1] == descriptors_from_row(CU, "x")  # no file needed
    with pytest.raises(ConfigError, match="holds no electrode descriptors"):
        resolve_electrode("Cu", model_dir)
    (model_dir / "electrodes.h5").write_bytes(path.read_bytes())
    assert resolve_electrode("CoO/SuperP", model_dir)[1].electrode_class == "conversion"
    assert resolve_electrode("cu_b", model_dir)[1].electrode_class == "collector"
    assert resolve_electrode("Cu", model_dir)[1].electrode_class == "collector"  # two rows, same descriptors
    with pytest.raises(ConfigError, match=r"not a system or working electrode.*known: CoO/SuperP, Cu, coo"):
        resolve_electrode("Graphite", model_dir)
    with pytest.raises(ConfigError, match="missing binder_fraction, .*, catalysis; expected every one"):
        resolve_electrode("electrode_class=collector, carbon_fraction=0", model_dir)

    with h5py.File(path, "a") as handle:
        del handle["electrodes/volume_change"]
    with pytest.raises(DataError, match="electrodes/volume_change missing"):
        read_electrodes(path)
