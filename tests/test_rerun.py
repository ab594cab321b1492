"""A config change reruns only the jobs that read the changed key: every rule's `params:` is the config slice its
script reads (docs/architecture.md, "Conventions"). On the finished test workspace, a dry run with one more config
file that changes one key lists the jobs snakemake would rerun; the rules that do not read the key must not be
among them, and the rule that does must be (so the change reached the workflow)."""

from __future__ import annotations

import re

import pytest
import yaml
from conftest import TEST_CONFIG, run_snakemake

pytestmark = pytest.mark.workflow

TRAINING = {"vae", "latent", "train_abcc", "nb_train"}
PREDICTION = {"predict_abcc", "nb_predict", "baseline_reference", "baseline_noise_floor",
              "baseline_nearest_trajectory", "baseline_voltage_regression"}  # fmt: skip

# id: (config change, {rule: jobs} it must schedule (None: some), rules it must not schedule)
CASES = {
    "simulate.scale": (
        {"simulate": {"scale": 0.004}},
        {"simulate": None},
        {"simulate_calibration", "mcr_references"},
    ),
    "simulate.calibration": (
        {"simulate": {"calibration": {"replicates": 2}}},
        {"simulate_calibration": 1, "mcr_references": 1},
        {"simulate", "ingest", "preprocess", "dataset", "render_images", "vae", "nb_train"},
    ),
    "preprocess.clip_quantiles": (
        {"preprocess": {"clip_quantiles": [0.001, 0.999]}},
        {"dataset": 1},
        {"preprocess", "preprocess_truth", "mcr_references"},
    ),
    "neural baseline training steps": (
        {"models": {"neural_baselines": {"gru_forecaster": {"train": {"steps": 13}}}}},
        {"nb_train": 2, "nb_predict": 2},
        {"train_abcc", "predict_abcc", "vae", "latent"},
    ),
    "ABCC prediction draws": (  # sit_flow_matching draws as ABCC does; sit_regression draws once
        {"models": {"abcc": {"predict": {"draws": 3}}}},
        {"predict_abcc": None, "nb_predict": 2},
        {"train_abcc", "nb_train"},
    ),
    "packaged models": (
        {"models": {"package": {"models": ["abcc1d", "abcc"]}}},
        {"package_model": 2},  # abcc's, not abcc1d's again
        TRAINING | PREDICTION,
    ),
    "Table 4 seeds": (  # each of the 7 rows retrained with seed 1, and Table 4 alone regathered
        {"evaluate": {"ablation_seeds": 2}},
        {"train_abcc": 7, "predict_abcc": 7, "evaluate": 7, "benchmark_table": 1},
        {"vae", "latent", "nb_train", "nb_predict", "package_model"},
    ),
    "report settings": (
        {"report": {"dpi": 100, "fig4": {"colour_percentile": 95.0}}},
        {"paper_fig1": 1, "paper_fig4": 1, "paper_training_curves": 2},
        TRAINING | PREDICTION | {"evaluate", "benchmark_table", "mcr_pathway"},
    ),
    "label of an ablation": (
        {"evaluate": {"labels": {"abcc_no_cf": "without Chemical Flow"}}},
        {"benchmark_table": 1},  # Table 4 alone; Fig. 4 does not show the ablations
        TRAINING | PREDICTION | {"evaluate", "paper_fig4"},
    ),
}


def scheduled(stdout: str) -> dict[str, int]:
    """Rule -> job count of a dry run (its 'Job stats' table; empty when nothing is to be done)."""
    table = stdout.split("Job stats:", 1)[1] if "Job stats:" in stdout else ""
    counts = {}
    for line in table.splitlines():
        match = re.match(r"^(\w+)\s+(\d+)$", line.strip())
        if match and match[1] not in ("total", "all"):
            counts[match[1]] = int(match[2])
    return counts


@pytest.mark.parametrize("case", CASES)
def test_a_config_change_reruns_only_its_readers(case, finished_workspace, tmp_path):
    change, expected, untouched = CASES[case]
    extra = tmp_path / "change.yaml"
    extra.write_text(yaml.safe_dump(change))
    result = run_snakemake(finished_workspace, "-n", "--cores", "2", configfiles=(TEST_CONFIG, extra))
    jobs = scheduled(result.stdout)
    found = {rule: jobs.get(rule, 0) if count else bool(jobs.get(rule)) for rule, count in expected.items()}
    assert found == {rule: count or True for rule, count in expected.items()}, result.stdout[-3000:]
    rerun = sorted(set(jobs) & untouched)
    assert not rerun, f"changing {case} reruns {rerun}: their params are wider than what their scripts read"
