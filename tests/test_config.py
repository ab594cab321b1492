"""Config and sheet validation: every kind of bad input stops the run with a message naming the file and the key
or row, and what was expected."""

from __future__ import annotations

import copy
import shutil
from pathlib import Path

import pytest
import yaml
from conftest import REPO, run_snakemake

from opir.core.config import load_and_validate, parse_recipe, validate_with_schema
from opir.core.errors import ConfigError


@pytest.fixture
def config() -> dict:
    with open(REPO / "config" / "config.yaml") as handle:
        return yaml.safe_load(handle)


@pytest.fixture
def sheets(tmp_path: Path) -> Path:
    for name in ("systems", "molecules", "runs"):
        shutil.copy(REPO / "config" / f"{name}.tsv", tmp_path / f"{name}.tsv")
    return tmp_path


def _with_sheets(config: dict, folder: Path) -> dict:
    config = copy.deepcopy(config)
    config["sheets"] = {name: str(folder / f"{name}.tsv") for name in ("systems", "molecules", "runs")}
    return config


def test_default_config_and_sheets_are_valid(config):
    sheets = load_and_validate(config, root=REPO)
    assert len(sheets.systems) == 10
    assert set(sheets.molecules["name"]) == {"LiPF6", "EC", "DMC", "EMC", "VC"}
    assert sheets.recipes["cu_ec12"].salts == {"LiPF6": 1.2}
    assert sheets.systems.set_index("system_id").loc["coosp_lp30_int", "system_split"] == "test"


def test_wrong_type_names_the_key(config):
    config["compute"]["threads"] = "two"
    with pytest.raises(ConfigError, match=r"compute\.threads: 'two' is not of type 'integer'"):
        validate_with_schema(config, "config.schema.yaml", "config")


def test_unknown_key_is_rejected_with_the_allowed_keys(config):
    config["data"]["raw_folder"] = "x"
    with pytest.raises(ConfigError, match=r"data: .*'raw_folder' was unexpected.*allowed keys here: calibration_dir"):
        validate_with_schema(config, "config.schema.yaml", "config")


def test_unknown_section_is_rejected(config):
    config["trainning"] = {}
    with pytest.raises(ConfigError, match=r"<top level>: .*'trainning' was unexpected"):
        validate_with_schema(config, "config.schema.yaml", "config")


def test_bad_enum_value(config):
    config["data"]["source"] = "csv"
    with pytest.raises(ConfigError, match=r"data\.source: 'csv' is not one of \['simulated', 'opus'\]"):
        validate_with_schema(config, "config.schema.yaml", "config")


def test_defaults_are_filled_in():
    config = {"data": {}}
    validate_with_schema(config, "config.schema.yaml", "config")
    assert config["data"]["source"] == "simulated"
    assert config["compute"]["device"] == "auto"
    assert config["sheets"]["systems"] == "config/systems.tsv"


def test_missing_sheet_column_names_file_and_column(config, sheets):
    path = sheets / "systems.tsv"
    text = path.read_text().replace("\tprotocol", "\tprotocl")
    path.write_text(text)
    with pytest.raises(ConfigError, match=r"systems\.tsv: missing column\(s\) protocol"):
        load_and_validate(_with_sheets(config, sheets))


def test_bad_cell_names_the_row(config, sheets):
    path = sheets / "systems.tsv"
    lines = path.read_text().splitlines()
    lines[3] = lines[3].replace("\ttrain\t", "\tvalidation\t")
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(ConfigError, match=r"systems\.tsv: row 4, column system_split: 'validation' is not one of"):
        load_and_validate(_with_sheets(config, sheets))


def test_non_integer_count_names_the_row(config, sheets):
    path = sheets / "systems.tsv"
    path.write_text(path.read_text().replace("\t693\t", "\tmany\t"))
    with pytest.raises(ConfigError, match=r"row 2, column sim_samples: 'many' is not of type 'integer'"):
        load_and_validate(_with_sheets(config, sheets))


def test_system_with_unknown_molecule(config, sheets):
    path = sheets / "systems.tsv"
    path.write_text(path.read_text().replace("LiPF6:1.0M; DMC:1", "LiPF6:1.0M; DEC:1"))
    with pytest.raises(
        ConfigError, match=r"row 2 \(cu_dmc\), column electrolyte: molecule\(s\) DEC not in .*molecules\.tsv"
    ):
        load_and_validate(_with_sheets(config, sheets))


@pytest.mark.parametrize(
    ("recipe", "message"),
    [
        ("LiPF6:1.0M; EC:half", r"amount 'half' of 'EC' is not a non-negative number"),
        ("LiPF6:1.0M; EC:-0.5", r"amount '-0.5' of 'EC' is not a non-negative number"),
        ("LiPF6:1.0M; EC:0; DMC:0", r"do not add up to a positive number"),
        ("LiPF6:1.0M; EC 0.5", r"cannot parse 'EC 0.5'"),
        ("LiPF6:1.0M", r"no solvent proportions"),
        ("LiPF6:1.0M; EC:0.5; EC:0.5", r"'EC' appears twice"),
    ],
)
def test_bad_recipes(recipe, message):
    with pytest.raises(ConfigError, match=message):
        parse_recipe(recipe, "systems.tsv: row 2")


def test_proportion_that_does_not_parse_in_the_sheet(config, sheets):
    path = sheets / "systems.tsv"
    path.write_text(path.read_text().replace("LiPF6:1.0M; EMC:1", "LiPF6:1.0M; EMC:one"))
    with pytest.raises(ConfigError, match=r"row 8 \(cu_emc\), column electrolyte: amount 'one' of 'EMC'"):
        load_and_validate(_with_sheets(config, sheets))


def test_recipe_fractions_are_normalized():
    recipe = parse_recipe("LiPF6:1.0M; EC:49; DMC:49; VC:2%")
    fractions = recipe.fractions()
    assert recipe.salts == {"LiPF6": 1.0}
    assert abs(sum(fractions.values()) - 1) < 1e-12
    assert fractions["VC"] == pytest.approx(0.02 / 98.02)


def test_salt_must_be_a_salt(config, sheets):
    path = sheets / "systems.tsv"
    path.write_text(path.read_text().replace("LiPF6:1.0M; DMC:1", "LiPF6:1.0M; DMC:1M; EC:1"))
    with pytest.raises(ConfigError, match=r"DMC given a molarity but is not a salt"):
        load_and_validate(_with_sheets(config, sheets))


def test_run_of_unknown_system(config, sheets):
    with open(sheets / "runs.tsv", "a") as handle:
        handle.write("cu_xyz\trun01\n")
    with pytest.raises(ConfigError, match=r"runs\.tsv: system\(s\) cu_xyz not in"):
        load_and_validate(_with_sheets(config, sheets))


def test_workflow_stops_before_any_job(tmp_path, sheets):
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"compute": {"threads": "two"}}))
    result = run_snakemake(tmp_path, "-n", "--cores", "1", check=False, configfiles=(bad,))
    assert result.returncode != 0
    output = result.stdout + result.stderr
    assert "compute.threads: 'two' is not of type 'integer'" in output
    assert "Job stats" not in output
