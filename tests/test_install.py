"""The library stands alone: a wheel built from the repository, installed into a fresh virtual environment outside
it, validates the default config (schemas ship as package data) and runs `opir predict` on a packaged model from
an unrelated folder. The fresh environment borrows the third-party packages of the test environment through a
path entry (so the test installs nothing from the network), but not its editable install of opir."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
from pathlib import Path

import h5py
import pandas as pd
import pytest
from conftest import REPO

pytestmark = pytest.mark.workflow


def _run(cmd, cwd, timeout=600):
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    result = subprocess.run([str(c) for c in cmd], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, f"{cmd}\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """A fresh virtual environment with the opir wheel installed; returns its bin folder."""
    root = tmp_path_factory.mktemp("installed")
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-w", root / "wheel", REPO], root)
    wheel = next((root / "wheel").glob("opir-*.whl"))
    _run([sys.executable, "-m", "venv", "--without-pip", root / "venv"], root)
    python = root / "venv" / "bin" / "python"
    site = _run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], root).stdout.strip()
    # a plain path entry: the test environment's packages become importable, its .pth hooks (the editable opir) do not
    (Path(site) / "borrowed.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    _run([sys.executable, "-m", "pip", "--python", python, "install", "--no-deps", "--no-index", wheel], root)
    return root / "venv" / "bin"


def test_installed_library_validates_the_default_config(installed, tmp_path):
    code = (
        "import opir, yaml, sys\n"
        "from opir.core.config import validate_with_schema\n"
        f"assert not opir.__file__.startswith({str(REPO)!r}), opir.__file__\n"
        f"config = yaml.safe_load(open({str(REPO / 'config/config.yaml')!r}))\n"
        "validate_with_schema(config, 'config.schema.yaml', 'config.yaml')\n"
        "assert config['ingest']['block'] == 'AB'  # a schema default, filled in\n"
        "print(opir.__file__)\n"
    )
    out = _run([installed / "python", "-c", code], tmp_path).stdout
    assert "site-packages" in out and str(REPO) not in out


def test_installed_opir_predict_runs_a_packaged_model(installed, finished_workspace, tmp_path):
    results = finished_workspace / "results"
    packaged = results / "packages" / "system" / "abcc1d"  # the flagship, models.package.models
    test_run = json.loads((results / "dataset/splits.json").read_text())["system"]["test"][0]
    system, run = test_run.split("/")[:2]
    with h5py.File(results / "dataset/samples.h5", "r") as handle:
        runs = list(zip(handle["runs/system_id"].asstr()[()], handle["runs/run_id"].asstr()[()], strict=True))
        i = runs.index((system, run))
        first, n = int(handle["runs/first_row"][i]), int(handle["runs/n_rows"][i])
        profile = pd.DataFrame({"time_s": handle["rows/elapsed_s"][first : first + n],
                                "voltage_v": handle["rows/voltage_v"][first : first + n]})
    profile.to_csv(tmp_path / "profile.csv", index=False)
    spectrum = sorted((results / "raw" / system / run / "spectra").glob("*.0"))[0]
    recipe = pd.read_csv(REPO / "config/systems.tsv", sep="\t", comment="#").set_index("system_id")
    _run([installed / "opir", "predict", "--model", packaged, "--spectrum", spectrum, "--voltage-profile",
          tmp_path / "profile.csv", "--electrolyte", recipe.loc[system, "electrolyte"], "--electrode", system,
          "--out", tmp_path / "out", "--draws", "2"], cwd=tmp_path)
    with h5py.File(tmp_path / "out/forecast.h5", "r") as handle:
        assert handle["forecast/mean"].shape[0] == n - 1
