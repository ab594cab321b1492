"""Glue between Snakemake jobs and the library: everything a job prints goes into the rule's log file."""

from __future__ import annotations

import logging
import os
import socket
import sys
from pathlib import Path
from typing import Any

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def setup_logging(log_path: str | Path | None = None, level: int = logging.INFO) -> logging.Logger:
    """Send logging, warnings, progress bars (stderr) and uncaught errors to ``log_path`` (stderr when absent)."""
    if log_path:
        Path(log_path).parent.mkdir(parents=True, exist_ok=True)
        # line-buffered, so a killed job's log still says how far it got
        sys.stderr = open(log_path, "w", buffering=1)  # noqa: SIM115  (lives as long as the job)
    logging.basicConfig(level=level, format=LOG_FORMAT, handlers=[logging.StreamHandler(sys.stderr)], force=True)
    logging.captureWarnings(True)
    logger = logging.getLogger("opir")

    def _excepthook(kind, value, traceback):
        logger.error("job failed: %s", value, exc_info=(kind, value, traceback))

    sys.excepthook = _excepthook
    return logger


def job_header(rule: str, threads: int, environ=os.environ) -> str:
    """Where a job ran, as the first line of its log: the rule, the host, the threads and, under SLURM, the job id
    and partition (so a number can be traced to the allocation that computed it; ``sacct -j ID`` says the rest)."""
    header = f"rule {rule} on {socket.gethostname()} with {threads} thread(s)"
    if environ.get("SLURM_JOB_ID"):
        header += f"; SLURM job {environ['SLURM_JOB_ID']} (partition {environ.get('SLURM_JOB_PARTITION', '?')})"
    return header


def from_snakemake(snakemake: Any) -> logging.Logger:
    """First statement of every workflow script: errors, messages and progress go to the rule's ``log:``, which
    starts with :func:`job_header`."""
    log = snakemake.log[0] if len(snakemake.log) else None
    logger = setup_logging(log)
    logger.info("%s", job_header(snakemake.rule, snakemake.threads))
    return logger
