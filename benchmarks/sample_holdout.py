"""An ABCC-1D recipe against the random split's yardsticks on held-out training samples: no test target is read.
Prints one JSON line.

    python benchmarks/sample_holdout.py WORKDIR --out DIR [--configfile config/bench.yaml] [--model abcc1d] \
        [--overrides '{context_anchor: true, train: {seed: 1}}'] [--fraction 0.1] [--seed 20261206]

WORKDIR is a working directory the workflow has run in, up to results/dataset/{samples.h5,splits.json,electrodes.h5},
the mixture embeddings and results/mcr/streams.h5 (the bench preset makes them in under a minute:
`snakemake -d WORKDIR --configfile config/bench.yaml --cores 2 results/dataset/samples.h5 results/mcr/streams.h5
results/embed/mixture_3d.h5 results/dataset/electrodes.h5`). The script

1. builds a validation workspace in DIR whose `random` split is the benchmark's random-split training samples,
   ``--fraction`` of them (drawn with ``random.Random(--seed).sample``) as the test and the rest as the training set
   (the rule of the eleventh, twelfth and fourteenth sessions' bench-scale validations);
2. fits the random split's two per-run yardsticks there, `within_run_smoother` and `voltage_regression_per_run`, with
   the config's `evaluate` settings (what the workflow's rows use), and scores them;
3. trains --model's recipe (its `models.variants` entry over `models.abcc`, the config being config/config.yaml with
   --configfile layered over it as snakemake does, and --overrides over that) with `benchmarks/abcc_settings.py`,
   unless DIR/model already holds it, and scores it (with --euler-steps too).

Metrics in the tables' units (MAE and RMSE x1e-2, MSE x1e-3), to 4 decimals; the metrics files in DIR
(within_run_smoother.json, voltage_regression_per_run.json, metrics.json, metrics_euler<N>.json) keep full
precision. A recipe change should beat the flagship's own recipe here, with more than one seed, before a bench run
is spent on it (docs/decisions.md).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def _system_holdout():
    """benchmarks/system_holdout.py, loaded by path: the benchmarks folder on sys.path would shadow packages by its
    scripts' names (a script once named coverage.py hid the coverage package that numba imports)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("system_holdout", REPO / "benchmarks" / "system_holdout.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_SYSTEM_HOLDOUT = _system_holdout()
table_units, layered_config = _SYSTEM_HOLDOUT.table_units, _SYSTEM_HOLDOUT.layered_config
trained_1d_variant, link_inputs = _SYSTEM_HOLDOUT.trained_1d_variant, _SYSTEM_HOLDOUT.link_inputs

#: The yardsticks of the random split a recipe has to beat there (the rows of Table 2 fitted per run).
YARDSTICKS = ("within_run_smoother", "voltage_regression_per_run")


def holdout_samples(train: list[str], fraction: float, seed: int) -> dict[str, list[str]]:
    """The random split's training samples divided: ``fraction`` of them, drawn with ``seed``, become the test, the
    rest stay the training set; both keep the order of ``train``."""
    if not 0 < fraction < 1:
        raise SystemExit(f"--fraction {fraction}: between 0 and 1")
    n = round(fraction * len(train))
    if not 0 < n < len(train):
        raise SystemExit(f"--fraction {fraction} of {len(train)} training samples holds out {n}: none or all")
    held = set(random.Random(seed).sample(train, n))
    return {"train": [s for s in train if s not in held], "test": [s for s in train if s in held]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("workdir", type=Path)
    parser.add_argument("--out", type=Path, required=True, help="the validation workspace (reused if it exists)")
    parser.add_argument("--configfile", type=Path, default=None, help="layered over config/config.yaml")
    parser.add_argument("--model", default="abcc1d", help="the ABCC variant whose recipe trains (models.variants)")
    parser.add_argument("--overrides", default="{}", help="YAML over the variant's settings")
    parser.add_argument("--fraction", type=float, default=0.1)
    parser.add_argument("--seed", type=int, default=20261206)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--euler-steps", type=int, nargs="+", default=None)
    args = parser.parse_args()

    import yaml

    from opir.baselines.regression import predict_baseline
    from opir.evaluate.metrics import evaluate_file
    from opir.models.settings import merge_overrides, resolve_model_config

    config = layered_config(args.configfile)
    trained_1d_variant(config, args.model)
    # the variant's whole settings, --overrides over them; abcc_settings.py lays them over models.abcc unchanged
    recipe = merge_overrides(resolve_model_config(config["models"], args.model), yaml.safe_load(args.overrides) or {},
                             "--overrides")
    results, val = args.workdir / "results", args.out / "results"

    # 1. the validation workspace
    link_inputs(results, val)
    splits = json.loads((results / "dataset/splits.json").read_text())
    validation = holdout_samples(list(splits["random"]["train"]), args.fraction, args.seed)
    (val / "dataset/splits.json").write_text(json.dumps({"random": validation, "system": splits["system"]}))
    merged = args.out / "config.yaml"
    merged.write_text(yaml.safe_dump(config, sort_keys=False))
    samples, val_splits = val / "dataset/samples.h5", val / "dataset/splits.json"
    dilate = config["evaluate"]["dilate"]

    # 2. the yardsticks, fitted on the validation training set
    scores = {}
    for row in YARDSTICKS:
        settings = config["evaluate"]["within_run_smoother" if row == "within_run_smoother" else "voltage_regression"]
        predictions, metrics = args.out / f"{row}.h5", args.out / f"{row}.json"
        predict_baseline(row, samples, val_splits, "random", predictions, settings)
        scores[row] = table_units(evaluate_file(predictions, samples, val_splits, "random", row, metrics,
                                                dilate)["summary"])  # fmt: skip

    # 3. the recipe, trained on the validation training set (abcc_settings.py writes its metrics next to the model)
    trained = (args.out / "model" / "model.json").exists()
    subprocess.run([sys.executable, str(REPO / "benchmarks/abcc_settings.py"), str(args.out), "random",
                    json.dumps(recipe), "--configfile", str(merged), "--threads", str(args.threads), "--out",
                    str(args.out), *(["--score-only"] if trained else []),
                    *(["--euler-steps", *map(str, args.euler_steps)] if args.euler_steps else [])],
                   check=True, stdout=subprocess.DEVNULL)  # fmt: skip
    scores[args.model] = table_units(json.loads((args.out / "metrics.json").read_text())["summary"])
    for steps in args.euler_steps or []:
        metrics = json.loads((args.out / f"metrics_euler{steps}.json").read_text())["summary"]
        scores[f"{args.model}, {steps} Euler steps"] = table_units(metrics)
    print(json.dumps({"model": args.model, "overrides": yaml.safe_load(args.overrides) or {},
                      "n_validation": len(validation["test"]), "n_validation_train": len(validation["train"]),
                      "scores": scores}))  # fmt: skip


if __name__ == "__main__":
    main()
