"""Glue between Snakemake jobs and the library: logging into the rule's log file."""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Any

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def setup_logging(log_path: str | Path | None = None, level: int = logging.INFO) -> logging.Logger:
    """Send the library's logging, warnings and uncaught errors to ``log_path`` (and stderr when absent)."""
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if log_path:
        Path(log_path).parent.mkdir(parents=True, exist_ok=True)
        handlers = [logging.FileHandler(log_path, mode="w")]
    logging.basicConfig(level=level, format=LOG_FORMAT, handlers=handlers, force=True)
    logging.captureWarnings(True)
    logger = logging.getLogger("opir")

    def _excepthook(kind, value, traceback):
        logger.error("job failed: %s", value, exc_info=(kind, value, traceback))
        sys.__excepthook__(kind, value, traceback)

    sys.excepthook = _excepthook
    return logger


def from_snakemake(snakemake: Any) -> logging.Logger:
    """First statement of every workflow script: errors and messages go to the rule's ``log:``."""
    log = snakemake.log[0] if len(snakemake.log) else None
    return setup_logging(log)
