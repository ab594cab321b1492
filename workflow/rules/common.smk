# Everything but the rules themselves: config and sheet validation at start-up, wildcard values from the sheets,
# and input functions shared by several stages.
import json
from pathlib import Path

from snakemake.exceptions import WorkflowError

try:
    from opir.core.config import load_and_validate
    from opir.core.errors import ConfigError
except ImportError as err:  # the library must be installed: `make install` (README)
    raise WorkflowError(
        f"cannot import the opir library ({err}); run `make install` first"
    ) from err

try:
    SHEETS = load_and_validate(config, fallback_root=Path(workflow.basedir))
except ConfigError as err:
    raise WorkflowError(str(err)) from None

SYSTEMS = SHEETS.systems.set_index("system_id", drop=False)
RUNS = list(SHEETS.runs[["system_id", "run_id"]].itertuples(index=False, name=None))
TRAIN_SYSTEMS = SYSTEMS.index[SYSTEMS.system_split == "train"].tolist()
TEST_SYSTEMS = SYSTEMS.index[SYSTEMS.system_split == "test"].tolist()
SPLITS = ["random", "system"]
LOGS = "results/logs"
BENCH = "results/benchmarks"
# Wildcard values come only from the sheets: the constraints are set in the Snakefile (the linter wants rules and
# functions apart), built from SYSTEMS, RUNS and SPLITS.


def runs_of(system):
    return [run for sys_id, run in RUNS if sys_id == system]


def per_run(pattern):
    """Expand a pattern with {system} and {run} over every run of the runs sheet."""
    return [pattern.format(system=system, run=run) for system, run in RUNS]


def config_slice(*keys):
    """The config sections a job uses, for `params:` (a change reruns exactly the jobs that read it)."""
    return {key: config[key] for key in keys}


# Each stage file appends the targets it contributes to `rule all`.
FINAL_TARGETS = []


def all_targets():
    return FINAL_TARGETS
