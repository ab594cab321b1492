"""Where a job runs: the torch device named by config ``compute.device``, and what a job was given by its scheduler.

``resolve_device`` is the one place that turns ``auto``/``cpu``/``cuda`` into a ``torch.device``, so every stage
agrees and a wrong setting fails with the same clear message. ``device_report`` is the workflow's pre-flight check
on a cluster: it runs with exactly the allocation a training job gets (threads, GPUs, partition) and records what
the job sees, failing early when a GPU was asked for and not given (docs/slurm.md).
"""

from __future__ import annotations

import json
import logging
import os
import platform
import socket
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from opir import __version__
from opir.core.config import with_defaults
from opir.core.errors import ConfigError
from opir.core.h5io import atomic_path

log = logging.getLogger(__name__)

DEVICES = ("auto", "cpu", "cuda")

# SLURM variables worth keeping in a report: what the job was allocated and where it ran.
SLURM_VARIABLES = (
    "SLURM_JOB_ID",
    "SLURM_JOB_NAME",
    "SLURM_JOB_PARTITION",
    "SLURM_JOB_ACCOUNT",
    "SLURM_CLUSTER_NAME",
    "SLURM_CPUS_PER_TASK",
    "SLURM_JOB_NODELIST",
    "SLURM_STEP_GPUS",
    "SLURM_JOB_GPUS",
    "SLURM_GPUS",
)


def gpus_requested(compute: Mapping[str, Any]) -> int:
    """GPUs a GPU-capable job asks its scheduler for (the ``gpu`` resource, ``sbatch --gpus=N``): 0 unless
    ``compute.gpu_jobs`` is true, so one config switch moves training and prediction on or off GPU nodes."""
    compute = with_defaults("compute", compute)
    return int(compute["gpus_per_job"]) if compute["gpu_jobs"] else 0


def visible_gpus(environ: Mapping[str, str] = os.environ) -> list[str]:
    """GPU indices (or UUIDs) the job may use, from ``CUDA_VISIBLE_DEVICES`` (SLURM sets it for ``--gpus``).

    An unset variable means "no restriction" to CUDA, but under a scheduler it means nothing was allocated: we
    return [] for both, and the caller decides with ``SLURM_JOB_ID`` which case it is.
    """
    value = environ.get("CUDA_VISIBLE_DEVICES", "").strip()
    if value in ("", "NoDevFiles", "-1"):
        return []
    return [item.strip() for item in value.split(",") if item.strip()]


def resolve_device(requested: str = "auto"):
    """The torch device for ``compute.device``: ``auto`` takes CUDA when torch sees a CUDA device, else the CPU;
    ``cuda`` insists on one and raises :class:`ConfigError` when there is none (rather than silently training for
    days on the CPU of a GPU node)."""
    import torch  # imported here: the data stages use this module without paying for torch

    if requested not in DEVICES:
        raise ConfigError(f"compute.device: {requested!r} is not one of {', '.join(DEVICES)}")
    has_cuda = torch.cuda.is_available()
    if requested == "cuda" and not has_cuda:
        raise ConfigError(
            "compute.device is 'cuda' but torch sees no CUDA device "
            f"(torch {torch.__version__}, built for CUDA {torch.version.cuda}, "
            f"CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES', '<unset>')}); "
            "set compute.device: auto or cpu, or run the job on a GPU node"
        )
    if requested == "cpu" or not has_cuda:
        return torch.device("cpu")
    return torch.device("cuda")


def device_report(compute: Mapping[str, Any], threads: int, environ: Mapping[str, str] = os.environ) -> dict:
    """What this job sees: host, scheduler allocation (SLURM job, partition, CPUs, GPUs), torch and the device
    ``compute.device`` resolves to.

    Raises :class:`ConfigError` when ``compute.gpu_jobs`` is true and a SLURM job was given no GPU: the cluster's
    GRES setup or the partition choice is wrong, and every training job would fall back to the CPU unnoticed.
    """
    # off the start-up path: the workflow imports this module while it parses the rules
    import torch

    compute = with_defaults("compute", compute)
    requested = gpus_requested(compute)
    allocated = visible_gpus(environ)
    slurm_job = environ.get("SLURM_JOB_ID")
    if slurm_job and requested and len(allocated) < requested:
        raise ConfigError(
            f"compute.gpu_jobs is true (compute.gpus_per_job={requested}) but SLURM job {slurm_job} in partition "
            f"{environ.get('SLURM_JOB_PARTITION', '?')!r} was given {len(allocated)} GPU(s) "
            f"(CUDA_VISIBLE_DEVICES={environ.get('CUDA_VISIBLE_DEVICES', '<unset>')}): check the partition "
            "limits in the slurm profile (partitions.yaml) and the cluster's gres/gpu configuration"
        )
    device = resolve_device(compute["device"])
    try:
        cpus_available = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cpus_available = os.cpu_count() or 1
    return {
        "opir_version": __version__,
        "hostname": socket.gethostname(),
        "python": platform.python_version(),
        "threads_given": int(threads),
        "cpus_available": cpus_available,
        "gpus_requested": requested,
        "gpus_visible": allocated,
        "device_requested": compute["device"],
        "device": str(device),
        "torch": torch.__version__,
        "torch_cuda_build": torch.version.cuda,
        "torch_cuda_available": torch.cuda.is_available(),
        "cuda_device_names": [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())],
        "slurm": {name: environ[name] for name in SLURM_VARIABLES if name in environ},
    }


def write_device_report(path: str | os.PathLike, compute: Mapping[str, Any], threads: int) -> dict:
    report = device_report(compute, threads)
    log.info(
        "device %s on %s; SLURM job %s; GPUs requested %d, visible %s",
        report["device"],
        report["hostname"],
        report["slurm"].get("SLURM_JOB_ID", "-"),
        report["gpus_requested"],
        report["gpus_visible"] or "none",
    )
    with atomic_path(path) as tmp:
        Path(tmp).write_text(json.dumps(report, indent=2, sort_keys=True) + "\n")
    return report
