"""Quality of one ABCC setting on a finished workspace: train, predict and score in-process; prints one JSON line.

    python benchmarks/abcc_settings.py WORKDIR system '{space: spectrum, chemical_flow: false, train: {lr: 3.0e-4}}'

WORKDIR is a working directory the workflow has run in (it needs results/dataset/samples.h5 and splits.json, the
mixture embeddings, results/mcr/streams.h5 and, for the reference rows, results/metrics/{split}/*.json). The
overrides (YAML) go over `models.abcc` of config/config.yaml (or --configfile), exactly as a `models.variants`
entry would, so a setting found here becomes a variant by copying the same mapping. Only the 1D variant
(`space: spectrum`) runs here: the latent space needs the split's VAE and latents (run those through the workflow).
The model, its predictions and its metrics go to --out. This is how the ABCC-1D rows of
benchmarks/results/opirbench-sim.md ("ABCC, second session") were measured.
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
    args = parser.parse_args()

    import torch
    import yaml

    from opir.config import validate_with_schema
    from opir.errors import ConfigError
    from opir.metrics import evaluate_file
    from opir.models.pipeline import predict_abcc, train_abcc
    from opir.models.settings import merge_overrides, resolve_model_config

    torch.set_num_threads(args.threads)
    config = yaml.safe_load(args.configfile.read_text())
    validate_with_schema(config, "config.schema.yaml", "config")
    settings = merge_overrides(resolve_model_config(config["models"], "abcc"), yaml.safe_load(args.overrides) or {},
                               "overrides")
    if settings.get("space") != "spectrum":
        raise ConfigError("this benchmark trains the 1D variant only: add 'space: spectrum' to the overrides")
    results = args.workdir / "results"
    embedding = settings.get("embedding_variant") or config["embed"]["variant"]
    files = {"samples": results / "dataset/samples.h5", "splits": results / "dataset/splits.json",
             "mixture": results / f"embed/mixture_{embedding}.h5", "streams": results / "mcr/streams.h5"}
    out = args.out or args.workdir / "abcc_settings" / f"{args.split}-{time.strftime('%Y%m%dT%H%M%S')}"

    t0 = time.perf_counter()
    train_abcc(files["samples"], None, files["mixture"], files["splits"], args.split, "abcc_settings", settings,
               out / "model", out / "checkpoints", "cpu",
               streams_h5=files["streams"] if settings.get("two_stream") else None, progress=False)
    train_s = time.perf_counter() - t0
    predict_abcc(files["samples"], None, files["mixture"], files["splits"], None, args.split, out / "model", None,
                 out / "predictions.h5", settings["predict"], "cpu")
    record = evaluate_file(out / "predictions.h5", files["samples"], files["splits"], args.split, "abcc_settings",
                           out / "metrics.json", config["evaluate"]["dilate"])
    references = {}
    for path in sorted((results / "metrics" / args.split).glob("*.json")):
        references[path.stem] = json.loads(path.read_text())["summary"]["mae"]["mean"]
    print(json.dumps({
        "split": args.split, "overrides": yaml.safe_load(args.overrides), "train_seconds": round(train_s, 1),
        "metrics": {k: round(v["mean"], 5) for k, v in record["summary"].items()},
        "reference_mae": {k: round(v, 5) for k, v in references.items()}, "out": str(out),
    }))


if __name__ == "__main__":
    main()
