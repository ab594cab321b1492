"""Style gates that CI runs with the tests: ruff, snakefmt and `snakemake --lint`."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from conftest import REPO, snakemake_cmd

BIN = Path(sys.executable).parent


def _run(cmd, cwd=REPO):
    return subprocess.run(cmd, capture_output=True, text=True, cwd=cwd, timeout=300)


def test_ruff_is_clean():
    result = _run([str(BIN / "ruff"), "check", "src", "tests", "workflow", "benchmarks"])
    assert result.returncode == 0, result.stdout + result.stderr


def test_snakefmt_is_clean():
    result = _run([str(BIN / "snakefmt"), "--check", "Snakefile", "workflow"])
    assert result.returncode == 0, result.stdout + result.stderr


def test_snakemake_lint_is_clean(tmp_path):
    result = _run(snakemake_cmd(tmp_path, "--lint"), cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr


def test_library_layers_are_kept():
    """The import-linter layers contract of pyproject.toml: no stage imports a later stage (docs/architecture.md)."""
    result = _run([str(BIN / "lint-imports"), "--no-cache"])
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout
