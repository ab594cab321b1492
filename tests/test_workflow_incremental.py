"""Incremental updates: a finished workspace (real-data mode: OPUS files + EC-Lab logs written by the test) gets a
new run; the dry-run job list shows that only that run's ingest/preprocess jobs and the aggregates rerun."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import h5py
import pytest
import yaml
from conftest import REPO, TEST_CONFIG, run_snakemake
from helpers import write_run

pytestmark = pytest.mark.workflow

SYSTEMS = {"cu_dmc": "train", "cu_ec12": "test"}
TARGETS = ("results/dataset/splits.json",)  # samples.h5 and splits.json: the aggregates of this stage
AGGREGATES = {"dataset": 1, "splits": 1}


def job_counts(stdout: str) -> dict[str, int]:
    """Rule -> job count from snakemake's 'Job stats' table."""
    table = stdout.split("Job stats:", 1)[1] if "Job stats:" in stdout else ""
    counts = {}
    for line in table.splitlines():
        match = re.match(r"^(\w+)\s+(\d+)\s*$", line.strip())
        if match and match[1] != "total":
            counts[match[1]] = int(match[2])
    return counts


def workspace(root: Path) -> tuple[Path, Path]:
    (root / "config").mkdir(parents=True)
    shutil.copy(REPO / "config" / "molecules.tsv", root / "config")
    lines = (REPO / "config" / "systems.tsv").read_text().splitlines()
    keep = [lines[0]] + [line for line in lines[1:] if line.split("\t")[0] in SYSTEMS]
    (root / "config" / "systems.tsv").write_text("\n".join(keep) + "\n")
    (root / "config" / "runs.tsv").write_text("system_id\trun_id\n" + "".join(f"{s}\trun01\n" for s in SYSTEMS))
    for seed, system in enumerate(SYSTEMS):
        write_run(root / "raw" / system / "run01", n=4, seed=seed)
    # one config file: snakemake keeps only the last of several --configfile options, so the test config's
    # overrides are merged here; mcr.pathway.run must name a run of this workspace's sheet
    config = yaml.safe_load(TEST_CONFIG.read_text()) or {}
    config["data"] = {"source": "opus", "raw_dir": "raw", "truth_dir": None}
    config.setdefault("preprocess", {})["n_points"] = 64
    config.setdefault("mcr", {}).setdefault("pathway", {})["run"] = "cu_dmc/run01"
    # the test config's hedged row holds out systems of the full sheet, which this workspace lacks
    config.setdefault("evaluate", {})["hedge"] = {"models": []}
    extra = root / "opus.yaml"
    extra.write_text(yaml.safe_dump(config))
    return root, extra


def test_new_run_reruns_only_itself_and_the_aggregates(tmp_path):
    root, extra = workspace(tmp_path / "ws")
    configs = (extra,)
    run_snakemake(root, "--cores", "2", *TARGETS, configfiles=configs)
    with h5py.File(root / "results" / "dataset" / "samples.h5", "r") as handle:
        assert handle["samples/sample_id"].shape == (6,)

    finished = run_snakemake(root, "-n", *TARGETS, configfiles=configs)
    assert "Nothing to be done" in finished.stdout + finished.stderr

    # a changed OPUS file of an existing run reruns that run only (its files are inputs, listed at DAG time;
    # snakemake 9 compares checksums, so the content must change, not only the time stamp)
    changed = root / "raw" / "cu_ec12" / "run01" / "spectra" / "spec_00002.0"
    original = changed.read_bytes()
    payload = bytearray(original)
    payload[-8] ^= 1
    changed.write_bytes(bytes(payload))
    dry = run_snakemake(root, "-n", *TARGETS, configfiles=configs)
    assert job_counts(dry.stdout) == {"ingest": 1, "preprocess": 1, **AGGREGATES}, dry.stdout
    assert "results/ingest/cu_ec12/run01.h5" in dry.stdout
    changed.write_bytes(original)

    # a new run of a training system: one row in the runs sheet, one folder of raw files
    write_run(root / "raw" / "cu_dmc" / "run02", n=3, seed=7)
    with open(root / "config" / "runs.tsv", "a") as handle:
        handle.write("cu_dmc\trun02\n")
    dry = run_snakemake(root, "-n", *TARGETS, configfiles=configs)
    assert job_counts(dry.stdout) == {"ingest": 1, "preprocess": 1, **AGGREGATES}, dry.stdout
    for system in SYSTEMS:  # the finished runs are inputs of the aggregates, never outputs of a job
        assert f"output: results/ingest/{system}/run01.h5" not in dry.stdout
    assert "output: results/ingest/cu_dmc/run02.h5" in dry.stdout
