"""SLURM execution: the profiles, the GPU request switch, and an end-to-end run through a real single-node SLURM.

The end-to-end test starts munged, slurmctld and slurmd on localhost (tests/slurm/start-cluster.sh, fake GPUs
through GRES), runs the test config through `sbatch` with the project's profile, checks that every job went through
SLURM and landed in the right partition, compares the outputs with a local run of the same targets, and stops the
daemons by PID. It needs root and Debian's packages (`apt-get install -y
--no-install-recommends slurmctld slurmd slurm-client munge`); without them it is skipped, with the reason.

Environment: OPIR_SLURM_TARGETS (space-separated targets, default DEFAULT_TARGETS below; the device report is always
added), OPIR_SLURM_TIMEOUT_S (time budget of the SLURM run, default 900 s: under `make test` it shares the cores
with the other pytest worker; past it snakemake gets SIGINT, which cancels its SLURM jobs, then SIGKILL a minute
later, and the test fails).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import h5py
import numpy as np
import pandas as pd
import pytest
import yaml
from conftest import REPO, TEST_CONFIG, snakemake_cmd

from opir.core.compute import device_report, gpus_requested, resolve_device, visible_gpus
from opir.core.errors import ConfigError

SLURM_TESTS = REPO / "tests" / "slurm"
SLURM_PROFILE = REPO / "profiles" / "slurm"
WORKFLOW_PROFILE = REPO / "profiles" / "default"
GPU_CONFIG = SLURM_TESTS / "config.yaml"
SLURM_BINARIES = ("munged", "slurmctld", "slurmd", "sbatch", "squeue", "srun", "scancel")
# Files that differ between two runs by design: logs, timings, and the report of where each job ran.
NOT_COMPARED = ("results/logs/", "results/benchmarks/", "results/cluster/")
# Default: every rule of the workflow but the four that aggregate all models of a split (Tables 2-4, Fig. 4, the
# training curves), on the system split: data stages, embeddings, MCR and Fig. 5, rendering, the VAE and both
# streams' latents, ABCC (the flagship, abcc1d: train, predict, package), one 1D neural baseline, every baseline
# and reference row, evaluation, Figs. 1 and 2, and the GPU device report, which the cluster profile's job groups
# bundle into fewer SLURM jobs. The latent models (ABCC, SiT) run the same rules as the 1D ones (train_abcc,
# predict_abcc, nb_train, nb_predict) after the VAE: leaving them out, and Fig. 5 on the perturbed copy instead of a
# prediction (tests/slurm/config.yaml), takes the longest chain of the DAG (render -> VAE -> latents -> train ->
# predict -> evaluate) off the run's critical path (296 s instead of 370 s here). Two models are evaluated (one rule,
# as many jobs as models), the others stop at their predictions. `all` (119 jobs) had done 84 after 9.5 min here,
# past CI's 10 minutes on 2 cores: each rule job still starts snakemake once inside its allocation, and a group job
# runs its jobs one after another (docs/slurm.md, "The test").
DEFAULT_TARGETS = " ".join([
    *(f"results/metrics/system/{model}.json" for model in ("abcc1d", "voltage_regression")),
    *(f"results/predictions/system/{model}.h5" for model in (
        "gru_forecaster", "nearest_trajectory", "random", "persistence", "noise_floor")),
    *(f"results/latent/system/{stream}.h5" for stream in ("waveform", "variation")),
    "results/packages/system/abcc1d",
    "results/mcr/validation.json",
    *(f"results/figures/{figure}.png" for figure in (
        "fig1_operando", "fig2_data", "render_illustration", "fig5_sei_pathway")),
])  # fmt: skip
# Keys (HDF5 attributes, JSON keys, table columns) that record when or how fast, not what: never compared.
VOLATILE_KEYS = {"created_utc", "hostname"}
SHA256 = re.compile(r"[0-9a-f]{64}")
# Floats from the two runs are equal to this (same code, data and thread counts: in practice bit-identical).
FLOAT_RTOL, FLOAT_ATOL = 1e-5, 1e-8
# Only what distinguishes the test cluster from a production one: no slurmdbd (so squeue, not sacct), fast polling
# (the defaults are kind to a busy slurmctld and slow for a test), no retries (a failure must show at once), and a
# node of 2 CPUs.
LOCAL_CLUSTER_OVERRIDES = (
    "--slurm-status-command", "squeue",
    "--slurm-init-seconds-before-status-checks", "1",
    "--seconds-between-status-checks", "1",
    "--max-status-checks-per-second", "10",
    "--retries", "0",
    "--cores", "2",  # the test node's CPUs: the most one group job may ask for (profiles/slurm: cores)
)  # fmt: skip


def _profile(path: Path) -> dict:
    return yaml.safe_load((path / "config.yaml").read_text())


# ---------------------------------------------------------------------------------------------------------------
# opir.core.compute: the device and the GPU request
# ---------------------------------------------------------------------------------------------------------------
def test_gpus_requested_follows_gpu_jobs():
    assert gpus_requested({"gpu_jobs": False, "gpus_per_job": 2}) == 0
    assert gpus_requested({"gpu_jobs": True, "gpus_per_job": 2}) == 2
    assert gpus_requested({"gpu_jobs": True}) == 1


def test_visible_gpus_reads_cuda_visible_devices():
    assert visible_gpus({}) == []
    assert visible_gpus({"CUDA_VISIBLE_DEVICES": ""}) == []
    assert visible_gpus({"CUDA_VISIBLE_DEVICES": "NoDevFiles"}) == []
    assert visible_gpus({"CUDA_VISIBLE_DEVICES": "0,3"}) == ["0", "3"]


def test_resolve_device_rejects_unknown_and_missing_cuda():
    import torch

    with pytest.raises(ConfigError, match="compute.device"):
        resolve_device("tpu")
    assert resolve_device("cpu").type == "cpu"
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="no CUDA device"):
            resolve_device("cuda")


def test_device_report_fails_when_slurm_gave_no_gpu():
    compute = {"device": "auto", "gpu_jobs": True, "gpus_per_job": 1}
    env = {"SLURM_JOB_ID": "42", "SLURM_JOB_PARTITION": "cpu"}
    with pytest.raises(ConfigError, match="SLURM job 42 in partition 'cpu' was given 0 GPU"):
        device_report(compute, threads=1, environ=env)
    report = device_report(compute, threads=3, environ={**env, "CUDA_VISIBLE_DEVICES": "1"})
    assert report["gpus_visible"] == ["1"] and report["gpus_requested"] == 1 and report["threads_given"] == 3
    assert report["slurm"] == env
    # outside a scheduler, a GPU request cannot be checked: the report just says what is visible
    assert device_report(compute, threads=1, environ={})["slurm"] == {}


def test_job_header_names_the_slurm_job():
    from opir.core.logs import job_header

    assert job_header("vae", 2, environ={}).startswith("rule vae on ")
    assert "SLURM" not in job_header("vae", 2, environ={})
    header = job_header("vae", 2, environ={"SLURM_JOB_ID": "42", "SLURM_JOB_PARTITION": "gpu"})
    assert header.endswith("with 2 thread(s); SLURM job 42 (partition gpu)")


# ---------------------------------------------------------------------------------------------------------------
# The profiles
# ---------------------------------------------------------------------------------------------------------------
def test_profiles_split_the_work():
    cluster, workflow = _profile(SLURM_PROFILE), _profile(WORKFLOW_PROFILE)
    assert cluster["executor"] == "slurm"
    assert "executor" not in workflow, "the workflow profile is loaded on laptops too: no executor there"
    # snakemake takes a key from one profile only and the workflow profile wins: a key in both is silently lost
    assert "set-resources" not in cluster
    assert "default-resources" not in workflow
    assert "slurm_partition" not in cluster["default-resources"], "a fixed partition defeats partitions.yaml"
    for rule, resources in workflow.get("set-resources", {}).items():
        assert "gpu" not in resources and "gres" not in resources, f"{rule}: GPUs come from config compute.gpu_jobs"
    assert (SLURM_PROFILE / cluster["slurm-partition-config"]).is_file()


def _job(gpu=0, threads=1, runtime=60, mem_mb=1000):
    return SimpleNamespace(
        name="job", threads=threads, resources={"gpu": gpu, "runtime": runtime, "mem_mb": mem_mb, "_cores": threads}
    )


def test_partitions_send_gpu_jobs_to_gpu_partitions_only():
    from snakemake_executor_plugin_slurm.partitions import get_best_partition, read_partition_file

    partitions = read_partition_file(SLURM_PROFILE / _profile(SLURM_PROFILE)["slurm-partition-config"])
    logger = SimpleNamespace(info=lambda *a: None, debug=lambda *a: None, warning=lambda *a: None)
    gpu_partitions = {p.name for p in partitions if p.limits.max_gpu > 0}
    assert gpu_partitions and gpu_partitions != {p.name for p in partitions}, "need a CPU and a GPU partition"
    assert get_best_partition(partitions, _job(gpu=1, threads=2), logger) in gpu_partitions
    assert get_best_partition(partitions, _job(gpu=0, threads=2), logger) not in gpu_partitions


def _listed_rules(workdir: Path) -> set[str]:
    result = subprocess.run(
        snakemake_cmd(workdir, "--list-rules"), capture_output=True, text=True, cwd=workdir, timeout=300
    )
    assert result.returncode == 0, result.stderr[-4000:]
    return {line.strip() for line in result.stdout.splitlines() if line.strip()}


def test_workflow_profile_names_existing_rules(tmp_path):
    """A set-resources entry for a renamed rule would silently do nothing."""
    rules = _listed_rules(tmp_path)
    named = set(_profile(WORKFLOW_PROFILE).get("set-resources", {}))
    assert named <= rules, f"profiles/default/config.yaml names rules the workflow lacks: {sorted(named - rules)}"


def _with_configs(workdir: Path, *args: str, configfiles: tuple[Path, ...]) -> list[str]:
    """snakemake_cmd with several config files after one --configfile (a second --configfile would replace the
    first, not extend it); targets and options go first, since the file list takes every argument after it."""
    return snakemake_cmd(workdir, *args, "--configfile", *map(str, configfiles), configfiles=())


def _dry_run_resources(workdir: Path, rule: str, *configfiles: Path) -> str:
    result = subprocess.run(
        _with_configs(workdir, "-n", "--forceall", rule, configfiles=(TEST_CONFIG, *configfiles)),
        capture_output=True,
        text=True,
        cwd=workdir,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    assert f"rule {rule}:" in result.stdout, f"no rule {rule}: is workflow/rules/cluster_check.smk included?"
    block = result.stdout.split(f"rule {rule}:", 1)[1]
    return re.search(r"resources: (.*)", block).group(1)


def test_job_groups_never_mix_gpu_and_cpu_rules(tmp_path):
    """A group job asks for the GPUs of its jobs: a CPU rule grouped with a GPU rule would hold a GPU it never uses
    (and a group of CPU rules must not land on a GPU partition). Every rule the groups name exists."""
    result = subprocess.run(
        _with_configs(tmp_path, "-n", "--forceall", "all", configfiles=(TEST_CONFIG, GPU_CONFIG)),
        capture_output=True, text=True, cwd=tmp_path, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-4000:]
    gpu_rules = _gpu_rules(result.stdout)
    assert {"vae", "train_abcc", "predict_abcc"} <= gpu_rules
    groups: dict[str, set[str]] = {}
    for rule, group in _profile(SLURM_PROFILE)["groups"].items():
        groups.setdefault(group, set()).add(rule)
    assert set(_profile(SLURM_PROFILE)["group-components"]) <= set(groups)
    for group, rules in groups.items():
        assert rules <= gpu_rules or not rules & gpu_rules, f"group {group} mixes GPU rules {rules & gpu_rules} " \
            f"with CPU rules {rules - gpu_rules}"
    assert set(_profile(SLURM_PROFILE)["groups"]) <= _listed_rules(tmp_path)


def test_gpu_request_is_switched_by_config(tmp_path):
    """The rule asks for what config says (gpu_jobs false -> gpus_requested is 0, unit-tested above)."""
    assert re.search(r"\bgpu=1\b", _dry_run_resources(tmp_path, "device_report", GPU_CONFIG))


# ---------------------------------------------------------------------------------------------------------------
# A real SLURM on localhost
# ---------------------------------------------------------------------------------------------------------------
def _run_script(name: str, timeout: int) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(SLURM_TESTS / name)], capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def slurm_cluster():
    missing = [exe for exe in SLURM_BINARIES if shutil.which(exe) is None]
    if missing:
        pytest.skip(
            f"SLURM is not installed ({', '.join(missing)} not found); CI installs it with "
            "apt-get install -y --no-install-recommends slurmctld slurmd slurm-client munge"
        )
    if os.geteuid() != 0:
        pytest.skip("starting slurmd needs root (it runs jobs as their owner)")
    started = _run_script("start-cluster.sh", timeout=120)
    if started.returncode != 0:
        _run_script("stop-cluster.sh", timeout=120)
        pytest.fail(f"the test cluster did not start:\n{started.stdout}\n{started.stderr}")
    try:
        yield
    finally:
        stopped = _run_script("stop-cluster.sh", timeout=120)
        print(stopped.stdout, stopped.stderr)


def _start(cmd: list[str], cwd: Path, env: dict) -> subprocess.Popen:
    log = open(cwd / "snakemake.out", "w+")  # a file, not a pipe: two runs at once must not block on full pipes
    proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    proc.log = log
    return proc


def _finish(proc: subprocess.Popen, deadline: float) -> tuple[int, str]:
    """Wait for a snakemake run; past `deadline` (time.monotonic) send SIGINT (snakemake then cancels its SLURM
    jobs; on SIGTERM it would wait for them) and SIGKILL a minute later, and fail the test."""
    timeout = max(deadline - time.monotonic(), 1.0)
    try:
        proc.wait(timeout=timeout)
        interrupted = False
    except subprocess.TimeoutExpired:
        interrupted = True
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    proc.log.seek(0)
    output = proc.log.read()
    proc.log.close()
    if interrupted:
        pytest.fail(f"snakemake ran past the test's time budget and was interrupted:\n{output[-6000:]}")
    return proc.returncode, output


def _job_counts(output: str) -> dict[str, int]:
    """The 'Job stats' table snakemake prints before running: rule -> number of jobs."""
    table = output.split("Job stats:", 1)[1].split("\n\n", 1)[0]
    counts = {}
    for line in table.splitlines()[3:]:
        name, _, count = line.strip().rpartition(" ")
        if name.strip() and name.strip() != "total":
            counts[name.strip()] = int(count)
    return counts


def _gpu_rules(output: str) -> set[str]:
    """Rules whose jobs asked for a GPU, from the job blocks snakemake prints (`rule NAME:` ... `resources: ...`)."""
    rules = set()
    for name, body in re.findall(r"^(?:local)?rule (\w+):\n((?:[ \t]+\S.*\n)+)", output, flags=re.M):
        resources = re.search(r"resources: (.*)", body)
        if resources and re.search(r"\bgpu=[1-9]", resources.group(1)):
            rules.add(name)
    return rules


def _squeue_jobs() -> dict[str, dict[str, str]]:
    """Every job slurmctld still knows (MinJobAge=600 keeps finished ones): id -> state, partition, comment (the
    plugin's rule_<rule>[_wildcards_<values>], or rule_<group>_<rules> for a job group) and GPUs asked for."""
    result = subprocess.run(
        ["squeue", "-t", "all", "-h", "-O", "JobID:|,State:|,Partition:|,Comment:|,tres-per-job:|"],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    jobs = {}
    for line in result.stdout.splitlines():
        job_id, state, partition, comment, gpus, _ = line.strip().split("|")
        jobs[job_id] = {"state": state, "partition": partition, "comment": comment, "gpus": gpus}
    return jobs


def _volatile(key: str) -> bool:
    """Keys that record when or how fast something ran, not what it computed."""
    key = key.lower()
    return key in VOLATILE_KEYS or "seconds" in key or key.endswith(("_utc", "per_second"))


def _same_array(a, b) -> bool:
    a, b = np.asarray(a), np.asarray(b)
    if a.shape != b.shape or a.dtype.kind != b.dtype.kind:
        return False
    if a.dtype.kind in "fc":  # last-bit differences from summation order are not a difference in results
        return bool(np.allclose(a, b, rtol=FLOAT_RTOL, atol=FLOAT_ATOL, equal_nan=True))
    return bool(np.array_equal(a, b))


def _assert_same_hdf5(left: Path, right: Path, name: str) -> None:
    with h5py.File(left, "r") as a, h5py.File(right, "r") as b:
        assert set(a.attrs) == set(b.attrs), f"{name}: root attributes differ"
        for key in a.attrs:
            if key == "input_sha256":  # same inputs; their contents are compared file by file
                assert json.loads(a.attrs[key]).keys() == json.loads(b.attrs[key]).keys(), f"{name}: inputs differ"
            elif not _volatile(key):
                assert np.array_equal(a.attrs[key], b.attrs[key]), f"{name}: attribute {key} differs"
        names_a, names_b = [], []
        a.visit(names_a.append)
        b.visit(names_b.append)
        assert names_a == names_b, f"{name}: different groups/datasets"
        for item in names_a:
            if isinstance(a[item], h5py.Dataset):
                assert _same_array(a[item][()], b[item][()]), f"{name}:{item} differs between the runs"
            for key in a[item].attrs:
                assert np.array_equal(a[item].attrs[key], b[item].attrs[key]), f"{name}:{item}@{key} differs"


def _assert_same_json(a, b, where: str) -> None:
    if isinstance(a, dict):
        assert isinstance(b, dict) and set(a) == set(b), f"{where}: keys differ"
        for key in a:
            if key == "input_sha256":  # hashes of the inputs' bytes, which hold time stamps: same inputs, by name
                names = [json.loads(v) if isinstance(v, str) else v for v in (a[key], b[key])]
                assert names[0].keys() == names[1].keys(), f"{where}.{key}: inputs differ"
            elif not _volatile(str(key)):
                _assert_same_json(a[key], b[key], f"{where}.{key}")
    elif isinstance(a, list):
        assert isinstance(b, list) and len(a) == len(b), f"{where}: lengths differ"
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            _assert_same_json(x, y, f"{where}[{i}]")
    elif isinstance(a, float) or isinstance(b, float):
        assert _same_array(float(a), float(b)), f"{where}: {a} != {b}"
    elif isinstance(a, str) and isinstance(b, str) and SHA256.fullmatch(a) and SHA256.fullmatch(b):
        # a file's SHA-256 (e.g. a package's sources): its bytes hold time stamps; the files are compared one by one
        pass
    else:
        assert a == b, f"{where}: {a!r} != {b!r}"


def _assert_same_table(left: Path, right: Path, name: str) -> None:
    sep = "\t" if name.endswith(".tsv") else ","
    a, b = (pd.read_csv(p, sep=sep, keep_default_na=False) for p in (left, right))
    assert list(a.columns) == list(b.columns) and len(a) == len(b), f"{name}: shape or columns differ"
    for column in a.columns:
        if not _volatile(column):
            assert _same_array(a[column].to_numpy(), b[column].to_numpy()), f"{name}: column {column} differs"


def _assert_same_file(left: Path, right: Path, name: str) -> None:
    if left.read_bytes() == right.read_bytes():
        return
    suffix = left.suffix.lower()
    if suffix in (".h5", ".hdf5", ".nxs"):
        _assert_same_hdf5(left, right, name)
    elif suffix == ".json":
        _assert_same_json(json.loads(left.read_text()), json.loads(right.read_text()), name)
    elif suffix in (".csv", ".tsv"):
        _assert_same_table(left, right, name)
    elif suffix == ".safetensors":
        from safetensors.numpy import load_file

        a, b = load_file(left), load_file(right)
        assert a.keys() == b.keys() and all(_same_array(a[k], b[k]) for k in a), f"{name}: weights differ"
    elif suffix == ".png":  # a last-bit difference upstream may move a line by a pixel, nothing more
        from matplotlib.image import imread

        a, b = imread(left), imread(right)
        assert a.shape == b.shape and np.mean(np.any(a != b, axis=-1)) < 1e-3, f"{name}: images differ"
    else:
        raise AssertionError(f"{name} differs between the local and the SLURM run")


def _compare_outputs(local: Path, slurm: Path) -> int:
    """Every output file of the local run exists in the SLURM run with the same content, and the other way round.
    Identical bytes pass at once; otherwise HDF5 is compared dataset by dataset and attribute by attribute, JSON and
    CSV/TSV value by value, safetensors tensor by tensor, with floats equal to FLOAT_RTOL and run times skipped.
    Returns how many files were compared."""

    def files(root):
        return {
            p.relative_to(root).as_posix()
            for p in (root / "results").rglob("*")
            if p.is_file() and not p.relative_to(root).as_posix().startswith(NOT_COMPARED)
        }

    local_files, slurm_files = files(local), files(slurm)
    assert local_files == slurm_files, (
        f"local only: {local_files - slurm_files}; SLURM only: {slurm_files - local_files}"
    )
    for name in sorted(local_files):
        _assert_same_file(local / name, slurm / name, name)
    return len(local_files)


def test_workflow_runs_through_slurm(slurm_cluster, tmp_path):
    targets = os.environ.get("OPIR_SLURM_TARGETS", DEFAULT_TARGETS).split()
    if "all" not in targets:  # the GPU path is proven by the device report, whatever else runs
        targets.append("results/cluster/device_report.json")
    deadline = time.monotonic() + int(os.environ.get("OPIR_SLURM_TIMEOUT_S", "900"))
    # The jobs inherit this environment (sbatch --export=ALL): the venv first on PATH, as after `activate`.
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    env.setdefault("HF_HUB_OFFLINE", "1")
    configs = (TEST_CONFIG, GPU_CONFIG)

    local, slurm = tmp_path / "local", tmp_path / "slurm"
    local.mkdir()
    slurm.mkdir()
    before = set(_squeue_jobs())
    # Both runs at once: the SLURM run spends much of its time waiting for the scheduler and its polling, which
    # the local reference run fills; each run's jobs are limited to the 2 cores either way.
    t0 = time.monotonic()
    local_run = _start(_with_configs(local, *targets, "--cores", "2", configfiles=configs), local, env)
    slurm_run = _start(
        _with_configs(slurm, *targets, "--profile", str(SLURM_PROFILE), *LOCAL_CLUSTER_OVERRIDES, configfiles=configs),
        slurm,
        env,
    )
    try:
        rc, slurm_out = _finish(slurm_run, deadline)
        slurm_s = time.monotonic() - t0
        local_rc, local_out = _finish(local_run, deadline)
    finally:  # a failed or interrupted run must not leave the other one running
        for proc in (slurm_run, local_run):
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)
                try:
                    proc.wait(timeout=60)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait()
    assert local_rc == 0, f"local run failed:\n{local_out[-6000:]}"
    assert rc == 0, f"SLURM run failed:\n{slurm_out[-8000:]}"
    print(f"SLURM run {slurm_s:.0f} s, both runs {time.monotonic() - t0:.0f} s")
    expected = _job_counts(local_out)
    expected.pop("all", None)
    gpu_rules = _gpu_rules(local_out)
    assert gpu_rules, "no job asked for a GPU: is tests/slurm/config.yaml (compute.gpu_jobs) used?"

    # Every SLURM job the run submitted (single jobs and job groups, profiles/slurm `groups`) is known to
    # slurmctld as COMPLETED, on the GPU partition exactly when it asked for a GPU.
    submitted = set(re.findall(r"has been submitted with SLURM jobid (\d+)", slurm_out))
    known = _squeue_jobs()
    for slurm_id in submitted:
        assert slurm_id not in before and slurm_id in known, f"SLURM job {slurm_id} unknown to slurmctld"
        job = known[slurm_id]
        assert job["state"] == "COMPLETED", f"SLURM job {slurm_id}: {job}"
        is_gpu = "gpu" in job["gpus"]  # --gpus=N shows as tres-per-job gres:gpu:N
        assert job["partition"] == ("gpu" if is_gpu else "cpu"), f"SLURM job {slurm_id}: {job}"
    # And every job of the local run (but `all`) ran inside one of them: each rule's log starts with the SLURM job
    # and partition it ran in (opir.core.logs.job_header), GPU rules in `gpu`, the others in `cpu`.
    ran: dict[str, int] = {}
    for log in sorted((slurm / "results" / "logs").rglob("*.log")):
        first = log.read_text().partition("\n")[0]
        found = re.search(r"rule (\w+) on \S+ with \d+ thread\(s\); SLURM job (\d+) \(partition (\w+)\)", first)
        assert found, f"{log.relative_to(slurm)} was not written inside a SLURM job: {first!r}"
        rule, slurm_id, partition = found.groups()
        assert slurm_id in submitted, f"{log.relative_to(slurm)}: SLURM job {slurm_id} was not submitted by this run"
        assert partition == ("gpu" if rule in gpu_rules else "cpu"), f"{rule} ran in partition {partition}"
        ran[rule] = ran.get(rule, 0) + 1
    assert ran == expected, f"jobs per rule: through SLURM {ran}, locally {expected}"
    # the groups bundled jobs: fewer SLURM jobs than rule jobs
    assert len(submitted) < sum(expected.values()), f"{len(submitted)} SLURM jobs for {sum(expected.values())}"
    print(f"{sum(expected.values())} jobs in {len(submitted)} SLURM jobs")

    # The GPU rule saw the GPU SLURM gave it (a fake GRES device here: CUDA_VISIBLE_DEVICES set, torch on CPU).
    report = json.loads((slurm / "results/cluster/device_report.json").read_text())
    assert report["slurm"]["SLURM_JOB_ID"] in submitted
    assert report["slurm"]["SLURM_JOB_PARTITION"] == "gpu"
    assert len(report["gpus_visible"]) == 1 and report["gpus_requested"] == 1
    assert known[report["slurm"]["SLURM_JOB_ID"]]["comment"] == "rule_device_report"

    assert _compare_outputs(local, slurm) > 0
