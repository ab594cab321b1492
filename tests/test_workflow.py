"""The workflow for real: a dry run of the embedded default, and the test config end to end (CI runs it)."""

from __future__ import annotations

import re
import subprocess
import sys

import h5py
import pytest
from conftest import REPO, run_snakemake

pytestmark = pytest.mark.workflow


def test_default_config_dry_run(tmp_path):
    result = run_snakemake(tmp_path, "-n", "--cores", "2", configfiles=())
    assert "Job stats" in result.stdout


def test_workflow_start_up_imports_no_torch():
    """Snakemake parses the workflow again for every job it starts (and every job of a SLURM group), so what the
    rule files import from the library is paid per job: torch and scipy.signal cost about 5 s there."""
    rule_files = [REPO / "Snakefile", *sorted((REPO / "workflow" / "rules").glob("*.smk"))]
    pattern = re.compile(r"^\s*from (opir[.\w]*) import", re.M)
    modules = sorted({m for path in rule_files for m in pattern.findall(path.read_text())})
    assert len(modules) > 5, f"found only {modules} imported by the rule files"
    code = "\n".join([*(f"import {m}" for m in modules), "import sys",
                      "print(sorted({'torch', 'scipy.signal', 'sklearn'} & set(sys.modules)))"])  # fmt: skip
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]", f"the workflow's start-up imports {result.stdout.strip()}"


def test_every_hdf5_output_is_traceable(finished_workspace):
    files = sorted((finished_workspace / "results").rglob("*.h5"))
    assert files, "the workflow wrote no HDF5 file"
    for path in files:
        with h5py.File(path) as handle:
            for key in ("producer_rule", "opir_version", "config_sha256", "input_sha256"):
                assert key in handle.attrs, f"{path.relative_to(finished_workspace)} lacks root attribute {key}"
    assert not [p for p in (finished_workspace / "results").rglob(".*.tmp-*")], "temporary files left behind"


def test_every_job_left_a_log(finished_workspace):
    logs = list((finished_workspace / "results" / "logs").rglob("*.log"))
    assert logs
    for log in logs:  # every script starts its log with where it ran (opir.core.logs.job_header)
        first = log.read_text().partition("\n")[0]
        assert re.search(r"INFO opir: rule \w+ on \S+ with \d+ thread", first), f"{log}: {first!r}"
    assert not (finished_workspace / "logs").exists(), "a library wrote ./logs into the working directory"


def test_finished_workspace_is_up_to_date(finished_workspace):
    result = run_snakemake(finished_workspace, "-n", "--cores", "2")
    assert "Nothing to be done" in result.stdout + result.stderr


def test_outputs_of_every_stage(finished_workspace):
    results = finished_workspace / "results"
    for relative in (
        "dataset/samples.h5",
        "dataset/splits.json",
        "render/waveform.h5",
        "mcr/streams.h5",
        "embed/mixture_3d.h5",
        "tables",
    ):
        assert (results / relative).exists(), f"missing {relative}"
    with h5py.File(results / "dataset/samples.h5") as handle:
        n_samples = handle["samples/sample_id"].shape[0]
        assert n_samples > 0 and handle["spectra/absorbance"].shape[0] > n_samples  # targets and their s(v_0)
    with h5py.File(results / "render/waveform.h5") as handle:
        assert handle["images"].shape[0] == handle["row"].shape[0] > n_samples
    tables = {p.name for p in (results / "tables").iterdir()}
    for table in ("table2_random", "table3_system"):
        assert {f"{table}.{ext}" for ext in ("csv", "md", "tex")} <= tables, f"{table} incomplete: {sorted(tables)}"
