"""Hedging under shift, chosen by holding out training systems: a validation split, a blend weight, its test score.
Prints one JSON line.

    python benchmarks/system_holdout.py WORKDIR --hold-out sn_lp30 cu_emc --out DIR [--configfile config/bench.yaml] \
        [--overrides '{train: {seed: 1}}'] [--euler-steps 4]

WORKDIR is a working directory the workflow has run in (results/dataset/{samples.h5,splits.json,electrodes.h5}, the
mixture embeddings, results/mcr/streams.h5, and the system split's predictions of --model and of the pooled voltage
regression). The script

1. builds a validation workspace in DIR: the same files, with a `system` split that trains on the system split's
   training systems minus --hold-out and tests on the held-out ones (no test system of the benchmark is read);
2. trains --model's recipe there (`benchmarks/abcc_settings.py`, the config being config/config.yaml with
   --configfile over it, as snakemake layers them) unless DIR/model already holds it, and fits the pooled voltage
   regression there;
3. scores blends w * model + (1 - w) * voltage regression (means of the draws) on the held-out systems for every w
   of --weights, and picks the w with the least MAE there;
4. applies that w to WORKDIR's test predictions of the two models and scores the blend on the system split's test
   samples, beside the two models alone (skipped, with "test": null, when WORKDIR has no system-split predictions:
   a workspace made only up to the inputs the recipe reads).

--euler-steps also scores the trained network sampled with that many Euler steps of u(z, t, t) on the held-out
systems ("samplers"): the one-step / few-step choice on training systems alone, as the issue asks of any model
selection under shift. --overrides go over the variant's settings (e.g. another training seed).

The weight is chosen on training systems alone: this is the selection rule the issue allows ("by leaving one
training system out, never by test targets"). Whether it transfers is what the printed test scores say. Metrics are
in the tables' units (MAE x1e-2, MSE x1e-3, RMSE x1e-2). The workflow's own hedged row (`evaluate.hedge`, tenth
session) does the same for every group of held-out systems with the same library (opir.evaluate.hedge) and averages
the groups' curves; this script scores one group on a finished workspace without rerunning the workflow.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

LINKED = ("dataset/samples.h5", "dataset/electrodes.h5", "mcr/streams.h5")


def layered(base: dict, over: dict) -> dict:
    """``over`` merged into a copy of ``base`` by snakemake's own rule for layering --configfile over the default."""
    from snakemake.utils import update_config

    out = copy.deepcopy(base)
    update_config(out, copy.deepcopy(over))
    return out


def layered_config(configfile: Path | None) -> dict:
    """config/config.yaml with ``configfile`` layered over it, as snakemake does with --configfile, validated and
    with the schema's defaults filled in, as the workflow does at start-up (a variant's settings are checked
    against the defaults when resolved)."""
    import yaml

    from opir.core.config import validate_with_schema

    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    if configfile is not None:
        config = layered(config, yaml.safe_load(configfile.read_text()) or {})
    return validate_with_schema(config, "config.schema.yaml", "config")


def trained_1d_variant(config: dict, model: str) -> dict:
    """The ``models.variants`` entry of ``model``, which must train a 1D ABCC."""
    variant = config["models"]["variants"].get(model)
    if variant is None or variant.get("space") != "spectrum" or "trained_as" in variant:
        raise SystemExit(f"--model {model}: not a trained 1D ABCC variant of the config")
    return variant


def link_inputs(results: Path, val: Path) -> None:
    """The validation workspace ``val`` (a results folder) gets links to the inputs the recipes read from
    ``results``: the samples, electrodes, MCR streams and every mixture embedding."""
    for rel in (*LINKED, *(str(p.relative_to(results)) for p in (results / "embed").glob("mixture_*.h5"))):
        (val / rel).parent.mkdir(parents=True, exist_ok=True)
        if not (val / rel).exists():
            (val / rel).symlink_to((results / rel).resolve())


def sample_systems(samples_h5: Path) -> dict[str, str]:
    """sample_id -> system_id of every sample of the sample table."""
    from opir.formats.samples import read_sample_arrays

    table = read_sample_arrays(samples_h5, ["samples/sample_id", "samples/system_id"])
    return dict(zip(table["samples/sample_id"].astype(str), table["samples/system_id"].astype(str), strict=True))


def holdout_split(splits: dict, system_of: dict[str, str], held_out: set[str]) -> dict[str, list[str]]:
    """The system split's training samples, divided: train on the systems not held out, test on the held-out ones
    (the workflow's rule, opir.evaluate.hedge)."""
    from opir.evaluate.hedge import held_out_split
    from opir.evaluate.settings import held_out_groups

    train = splits["system"]["train"]
    held_out_groups([sorted(held_out)], sorted({system_of[s] for s in train}))  # the same errors as the workflow's
    return held_out_split(train, system_of, sorted(held_out))


def in_table_units(curve: dict[str, dict[str, float]]) -> dict[float, dict[str, float]]:
    """A blend curve (opir.evaluate.hedge.validation_curve) in the tables' units (opir.evaluate.tables.COLUMNS)."""
    from opir.evaluate.tables import COLUMNS

    scale = {column.metric: column.scale for column in COLUMNS}
    return {float(w): {k: round(v * scale.get(k, 1.0), 4) for k, v in m.items()} for w, m in curve.items()}


def table_units(summary: dict) -> dict[str, float]:
    """A metrics file's summary (means) in the tables' units, as the blends are printed."""
    return in_table_units({1.0: {k: v["mean"] for k, v in summary.items()}})[1.0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("workdir", type=Path)
    parser.add_argument("--hold-out", nargs="+", required=True, help="training systems of the system split to hold out")
    parser.add_argument("--out", type=Path, required=True, help="the validation workspace (reused if it exists)")
    parser.add_argument("--configfile", type=Path, default=None, help="layered over config/config.yaml")
    parser.add_argument("--model", default="abcc1d", help="the ABCC variant to blend (a models.variants name)")
    parser.add_argument("--overrides", default="{}", help="YAML over the variant's settings")
    parser.add_argument("--weights", type=float, nargs="+", default=[0.0, 0.25, 0.5, 0.75, 1.0])
    parser.add_argument("--euler-steps", type=int, nargs="+", default=None,
                        help="also score the network sampled with these numbers of Euler steps on the held-out systems")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()

    import yaml

    from opir.baselines.regression import predict_baseline
    from opir.evaluate.hedge import validation_curve
    from opir.models.settings import merge_overrides, resolve_model_config, split_predict_settings

    config = layered_config(args.configfile)
    trained_1d_variant(config, args.model)
    # the variant's whole settings, --overrides over them; abcc_settings.py lays them over models.abcc unchanged
    variant = merge_overrides(resolve_model_config(config["models"], args.model), yaml.safe_load(args.overrides) or {},
                              "--overrides")  # fmt: skip
    results, val = args.workdir / "results", args.out / "results"

    # 1. the validation workspace
    link_inputs(results, val)
    system_of = sample_systems(results / "dataset/samples.h5")
    splits = json.loads((results / "dataset/splits.json").read_text())
    validation = holdout_split(splits, system_of, set(args.hold_out))
    (val / "dataset/splits.json").write_text(json.dumps({"random": splits["random"], "system": validation}))
    merged = args.out / "config.yaml"
    merged.write_text(yaml.safe_dump(config, sort_keys=False))

    # 2. the model's recipe trained on the remaining systems; the voltage regression fitted there
    trained = (args.out / "model" / "model.json").exists()
    scored = [args.out / "predictions.h5", *(args.out / f"predictions_euler{n}.h5" for n in args.euler_steps or [])]
    if not trained or not all(path.exists() for path in scored):
        subprocess.run([sys.executable, str(REPO / "benchmarks/abcc_settings.py"), str(args.out), "system",
                        json.dumps(variant), "--configfile", str(merged), "--threads", str(args.threads), "--out",
                        str(args.out), *(["--score-only"] if trained else []),
                        *(["--euler-steps", *map(str, args.euler_steps)] if args.euler_steps else [])],
                       check=True, stdout=subprocess.DEVNULL)  # fmt: skip
    dilate = config["evaluate"]["dilate"]
    samples, val_splits = val / "dataset/samples.h5", val / "dataset/splits.json"
    val_regression = args.out / "voltage_regression.h5"
    predict_baseline(
        "voltage_regression", samples, val_splits, "system", val_regression, config["evaluate"]["voltage_regression"]
    )

    def blend_scores(model_h5: Path, regression_h5: Path, samples_h5: Path, splits_json: Path) -> dict[float, dict]:
        return in_table_units(validation_curve(model_h5, regression_h5, samples_h5, splits_json, args.weights, dilate))

    # 3. the weight, chosen on the held-out training systems
    on_validation = blend_scores(args.out / "predictions.h5", val_regression, samples, val_splits)
    chosen = min(on_validation, key=lambda w: on_validation[w]["mae"])
    # the network alone with each sampler, as abcc_settings.py scored it: the recipe's own on the system split
    # (metrics.json), and every --euler-steps (metrics_euler<N>.json)
    own = split_predict_settings(variant["predict"], "system")["euler_steps"]
    samplers = {}
    for n, name in [(own, "metrics.json"), *((n, f"metrics_euler{n}.json") for n in args.euler_steps or [])]:
        summary = json.loads((args.out / name).read_text())["summary"]
        samplers["one step" if n == 0 else f"{n} Euler steps"] = table_units(summary)

    # 4. applied to the benchmark's test predictions, where the workspace has them
    test_model = results / "predictions/system" / f"{args.model}.h5"
    test_regression = results / "predictions/system/voltage_regression.h5"
    on_test = None
    if test_model.exists() and test_regression.exists():
        on_test = blend_scores(test_model, test_regression, results / "dataset/samples.h5",
                               results / "dataset/splits.json")  # fmt: skip
    print(
        json.dumps(
            {
                "hold_out": sorted(args.hold_out),
                "model": args.model,
                "overrides": yaml.safe_load(args.overrides) or {},
                "n_validation": len(validation["test"]),
                "n_validation_train": len(validation["train"]),
                "chosen_weight": chosen,
                "validation": {str(w): s for w, s in on_validation.items()},
                "samplers": samplers,
                "test": None
                if on_test is None
                else {
                    "chosen": on_test[chosen],
                    "model_alone": on_test.get(1.0),
                    "regression_alone": on_test.get(0.0),
                    "every_weight": {str(w): s for w, s in on_test.items()},
                },
            }
        )
    )


if __name__ == "__main__":
    main()
