"""Quality of one ABCC setting on a finished workspace: train, predict and score in-process; prints one JSON line.

    python benchmarks/abcc_settings.py WORKDIR system '{space: spectrum, chemical_flow: false, train: {lr: 3.0e-4}}'

WORKDIR is a working directory the workflow has run in (it needs results/dataset/samples.h5, splits.json and
electrodes.h5, the mixture embeddings, results/mcr/streams.h5 and, for the reference rows,
results/metrics/{split}/*.json). The
overrides (YAML) go over `models.abcc` of config/config.yaml (or --configfile), exactly as a `models.variants`
entry would, so a setting found here becomes a variant by copying the same mapping. Only the 1D variant
(`space: spectrum`) runs here: the latent space needs the split's VAE and latents (run those through the workflow).
The model, its predictions and its metrics go to --out. This is how the ABCC-1D rows of
benchmarks/results/opirbench-sim-history.md ("ABCC, second session" and later) were measured.

--curve also scores the EMA weights of every checkpoint still in --out/checkpoints (set train.keep_checkpoints
high enough): a learning curve on the test split, for reading how quality moves with training, never for choosing
the step (that would select on the test data). --draws overrides predict.draws (metrics score the mean of draws);
with --score-only the model of an earlier run with the same --out is scored again, nothing is trained.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("workdir", type=Path)
    parser.add_argument("split", choices=["random", "system"])
    parser.add_argument("overrides", help="YAML mapping over models.abcc, e.g. '{train: {max_steps: 180}}'")
    parser.add_argument("--configfile", type=Path, default=REPO / "config" / "config.yaml")
    parser.add_argument("--out", type=Path, default=None, help="default: WORKDIR/abcc_settings/<split>-<time>")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--curve", action="store_true", help="also score every kept checkpoint (test learning curve)")
    parser.add_argument("--draws", type=int, nargs="+", default=None,
                        help="score the final model with each of these numbers of draws (default: predict.draws)")
    parser.add_argument("--score-only", action="store_true",
                        help="score the model already trained in --out/model (e.g. with other --draws); train nothing")
    parser.add_argument("--euler-steps", type=int, nargs="+", default=None,
                        help="also score the final model with these numbers of Euler steps of u(z, t, t) (0: one step)")
    args = parser.parse_args()

    import torch
    import yaml

    from opir.core.config import validate_with_schema
    from opir.core.errors import ConfigError
    from opir.evaluate.metrics import evaluate_file
    from opir.models.settings import merge_overrides, resolve_model_config, split_predict_settings
    from opir.predict.abcc import predict_abcc
    from opir.train.abcc import train_abcc

    torch.set_num_threads(args.threads)
    config = yaml.safe_load(args.configfile.read_text())
    validate_with_schema(config, "config.schema.yaml", "config")
    settings = merge_overrides(resolve_model_config(config["models"], "abcc"), yaml.safe_load(args.overrides) or {},
                               "overrides")
    settings["predict"] = split_predict_settings(settings["predict"], args.split)  # the split's sampler
    if settings.get("space") != "spectrum":
        raise ConfigError("this benchmark trains the 1D variant only: add 'space: spectrum' to the overrides")
    results = args.workdir / "results"
    embedding = settings.get("embedding_variant") or config["embed"]["variant"]
    files = {"samples": results / "dataset/samples.h5", "splits": results / "dataset/splits.json",
             "mixture": results / f"embed/mixture_{embedding}.h5", "streams": results / "mcr/streams.h5",
             "electrodes": results / "dataset/electrodes.h5"}
    electrodes = files["electrodes"] if settings.get("electrode_descriptors") else None
    out = args.out or args.workdir / "abcc_settings" / f"{args.split}-{time.strftime('%Y%m%dT%H%M%S')}"

    t0 = time.perf_counter()
    if args.score_only:
        if not (out / "model" / "model.json").exists():
            raise ConfigError(f"--score-only: no trained model in {out / 'model'}")
    else:
        train_abcc(files["samples"], None, files["mixture"], files["splits"], args.split, "abcc_settings", settings,
                   out / "model", out / "checkpoints", "cpu",
                   streams_h5=files["streams"] if settings.get("two_stream") else None, progress=False,
                   electrodes_h5=electrodes)
    train_s = time.perf_counter() - t0

    def score(model_dir: Path, name: str, draws: int, euler_steps: int | None = None) -> dict:
        predict = {**settings["predict"], "draws": draws}
        if euler_steps is not None:
            predict["euler_steps"] = euler_steps
        predict_abcc(files["samples"], None, files["mixture"], files["splits"], None, args.split, model_dir, None,
                     out / f"predictions{name}.h5", predict, "cpu", electrodes_h5=electrodes)
        record = evaluate_file(out / f"predictions{name}.h5", files["samples"], files["splits"], args.split,
                               "abcc_settings", out / f"metrics{name}.json", config["evaluate"]["dilate"])
        return {k: round(v["mean"], 5) for k, v in record["summary"].items()}

    draws = args.draws or [settings["predict"]["draws"]]
    metrics = score(out / "model", "", draws[0])
    by_draws = {n: score(out / "model", f"_k{n}", n) for n in draws[1:]}
    by_euler = {n: score(out / "model", f"_euler{n}", draws[0], n) for n in args.euler_steps or []}
    curve = {}
    if args.curve:
        import shutil

        for checkpoint in sorted((out / "checkpoints").glob("step_*")):
            if not (checkpoint / "state.json").exists():
                continue
            step = json.loads((checkpoint / "state.json").read_text())["step"]
            model_dir = out / f"model_step{step}"
            model_dir.mkdir(exist_ok=True)
            shutil.copy(out / "model" / "model.json", model_dir / "model.json")
            shutil.copy(checkpoint / "ema.safetensors", model_dir / "model.safetensors")
            curve[step] = score(model_dir, f"_step{step}", draws[0])
    references = {}
    for path in sorted((results / "metrics" / args.split).glob("*.json")):
        references[path.stem] = json.loads(path.read_text())["summary"]["mae"]["mean"]
    print(json.dumps({
        "split": args.split, "overrides": yaml.safe_load(args.overrides), "train_seconds": round(train_s, 1),
        "metrics": metrics, "draws": draws[0],
        **({"metrics_by_draws": by_draws} if by_draws else {}), **({"test_curve": curve} if curve else {}),
        **({"metrics_by_euler_steps": by_euler} if by_euler else {}),
        "reference_mae": {k: round(v, 5) for k, v in references.items()}, "out": str(out),
    }))


if __name__ == "__main__":
    main()
