"""Shared fixtures: paths of the repository, the shared real data and a helper that runs snakemake in a
temporary working directory (the workflow finds its default config and sheets in its own folder)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
REALDATA = SHARED / "realdata"
TEST_CONFIG = REPO / "tests" / "config" / "config.yaml"

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def snakemake_cmd(workdir: Path, *args: str, configfiles: tuple[Path, ...] = (TEST_CONFIG,)) -> list[str]:
    exe = Path(sys.executable).with_name("snakemake")
    cmd = [str(exe), "-s", str(REPO / "Snakefile"), "-d", str(workdir)]
    if configfiles:  # one option with several values: a repeated --configfile keeps only the last one
        cmd += ["--configfile", *map(str, configfiles)]
    return cmd + list(args)


def run_snakemake(workdir: Path, *args: str, check: bool = True, timeout: int = 1500, **kwargs):
    result = subprocess.run(
        snakemake_cmd(workdir, *args, **kwargs), capture_output=True, text=True, timeout=timeout, cwd=workdir
    )
    if check and result.returncode != 0:
        raise AssertionError(
            f"snakemake failed ({result.returncode}):\n{result.stdout[-4000:]}\n{result.stderr[-8000:]}"
        )
    return result


#: The test that runs the workflow through a real SLURM (minutes, much of it waiting on the scheduler).
SLURM_END_TO_END = "tests/test_slurm.py::test_workflow_runs_through_slurm"


@pytest.hookimpl(tryfirst=True)  # before pytest-xdist reads the groups
def pytest_collection_modifyitems(config, items):
    """With two pytest workers (`make test`: -n 2 --dist loadgroup --no-loadscope-reorder), the two long runs of
    the suite go to different workers, first: the SLURM end-to-end test, and every test of the shared finished
    workspace in one group (a worker builds it once; a group never spans workers). Every other module is a group
    of its own, so a module-scoped fixture is built once. Without workers nothing changes."""
    if not getattr(config.option, "loadgroup", False):  # pytest-xdist sets it in each worker under --dist loadgroup
        return
    for item in items:
        if item.nodeid == SLURM_END_TO_END:
            group = "slurm_end_to_end"
        elif "finished_workspace" in item.fixturenames:
            group = "finished_workspace"
        else:
            group = item.nodeid.split("::", 1)[0]
        item.add_marker(pytest.mark.xdist_group(group))
    # the queue's order (--no-loadscope-reorder): each long run starts on its own worker at once
    items.sort(key=lambda item: (item.nodeid != SLURM_END_TO_END, "finished_workspace" not in item.fixturenames))


@pytest.fixture
def realdata() -> Path:
    if not REALDATA.exists():
        pytest.skip(f"real OPUS files not available: {REALDATA} is absent (it sits beside the repository in CI)")
    return REALDATA


@pytest.fixture(scope="session")
def finished_workspace(tmp_path_factory) -> Path:
    """The test config run end to end once per session (`snakemake --cores 2`); tests that need a finished
    workspace share it and must not change it."""
    workdir = tmp_path_factory.mktemp("workflow")
    run_snakemake(workdir, "--cores", "2")
    return workdir


@pytest.fixture
def torch_one_thread():
    """One torch thread for a test of tiny networks: as fast alone, much faster when other jobs share the cores."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
