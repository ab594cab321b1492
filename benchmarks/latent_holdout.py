"""Table 4's latent models on held-out training systems: does the full ABCC trail its ablations on systems it never
saw when no test system is read, and does a longer training change that? Prints one JSON line.

    python benchmarks/latent_holdout.py WORKDIR --hold-out sn_lp30 cu_emc --models abcc abcc_no_cf \
        --steps 400 800 --out DIR [--draws 2 --seed 0 --threads 2]

WORKDIR is a working directory the bench preset (or any config) has run in: each model of --models must have been
trained there on the system split (results/models/system/{model}/model.json), whose settings are taken as they are,
with only `train.max_steps` replaced by each of --steps. For every (model, steps), the script trains that recipe on
the system split's training systems minus --hold-out (the workflow's own `train_abcc` and `predict_abcc`, with the
split's latents, images, VAE, MCR streams, electrode descriptors and mixture embeddings) and scores the predictions of
the held-out systems' samples with the benchmark's metrics (tables' units: MAE x1e-2, MSE x1e-3, RMSE x1e-2), per
held-out system and in all. No test system of the benchmark is read.

A caveat the workflow's hedge avoids (it hedges 1D models only): the split's VAE was trained on every training
system's images, the held-out ones included, so the latent models here see latents of a VAE that knows the held-out
systems' images. It favours every latent model alike; the comparison between them is what this script is for.
Trained models, predictions and the splits file stay in DIR (a rerun reuses a model already trained there).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import replace
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def inputs(results: Path, meta: dict) -> dict[str, Path]:
    """The files the system split's latent models read, where the workflow writes them (workflow/rules/common.smk)."""
    return {
        "samples": results / "dataset/samples.h5",
        "mixture": results.parent / meta["embedding_file"],
        "latent": results / "latent/system/waveform.h5",
        "residual": results / "latent/system/variation.h5",
        "waveform": results / "render/waveform.h5",
        "variation": results / "render/variation.h5",
        "vae": results / "latent/system/vae",
        "streams": results / "mcr/streams.h5",
        "electrodes": results / "dataset/electrodes.h5",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("workdir", type=Path)
    parser.add_argument("--hold-out", nargs="+", required=True, help="training systems of the system split to hold out")
    parser.add_argument("--models", nargs="+", default=["abcc", "abcc_no_cf"])
    parser.add_argument("--steps", type=int, nargs="+", required=True, help="train.max_steps of each run")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--draws", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0, help="seed of the prediction noise")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()

    import numpy as np
    import torch
    import yaml

    from opir.evaluate.hedge import write_held_out_splits
    from opir.evaluate.metrics import evaluate_predictions
    from opir.evaluate.tables import COLUMNS
    from opir.formats.predictions import read_predictions
    from opir.formats.samples import load_samples
    from opir.predict.abcc import predict_abcc
    from opir.train.abcc import train_abcc

    torch.set_num_threads(args.threads)
    results = args.workdir.resolve() / "results"
    args.out.mkdir(parents=True, exist_ok=True)
    splits = args.out / "splits.json"
    counts = write_held_out_splits(results / "dataset/samples.h5", results / "dataset/splits.json",
                                   sorted(args.hold_out), splits)
    table = load_samples(results / "dataset/samples.h5")
    scale = {column.metric: column.scale for column in COLUMNS}
    dilate = yaml.safe_load((REPO / "config/config.yaml").read_text())["evaluate"]["dilate"]
    out: dict = {"held_out": sorted(args.hold_out), **counts, "runs": {}}
    for model in args.models:
        meta = json.loads((results / "models/system" / model / "model.json").read_text())
        if meta.get("space", "latent") != "latent":
            raise SystemExit(f"{model}: not a latent model (benchmarks/system_holdout.py scores 1D ones)")
        files = inputs(results, meta)
        for steps in args.steps:
            settings = {**meta["settings"], "train": {**meta["settings"]["train"], "max_steps": steps}}
            name = f"{model}_{steps}"
            model_dir = args.out / name
            t0 = time.monotonic()
            if not (model_dir / "model.safetensors").exists():
                train_abcc(files["samples"], files["latent"], files["mixture"], splits, "system", model, settings,
                           model_dir, args.out / "checkpoints" / name, "cpu", waveform_h5=files["waveform"],
                           metadata={"embedding_file": meta["embedding_file"]}, progress=False,
                           residual_h5=files["residual"], streams_h5=files["streams"], vae_dir=files["vae"],
                           variation_h5=files["variation"], electrodes_h5=files["electrodes"])  # fmt: skip
            trained_s = time.monotonic() - t0
            predictions = args.out / f"{name}.h5"
            predict_cfg = {**settings["predict"], "draws": args.draws, "seed": args.seed, "euler_steps": 0,
                           "mixture_domain": "training", "noise": "independent", "run_codes": True}  # fmt: skip
            predict_abcc(files["samples"], files["latent"], files["mixture"], splits, files["waveform"], "system",
                         model_dir, files["vae"], predictions, predict_cfg, "cpu",
                         electrodes_h5=files["electrodes"])  # fmt: skip
            predicted = read_predictions(predictions)
            systems = table.samples["system_id"][table.sample_index(list(predicted.sample_id), str(predictions))]
            scores = {}
            for system in ["all", *sorted(set(systems))]:
                keep = np.ones(len(systems), bool) if system == "all" else systems == system
                part = replace(predicted, sample_id=predicted.sample_id[keep], prediction=predicted.prediction[keep])
                summary = evaluate_predictions(part, table, list(part.sample_id), **dilate)["summary"]
                scores[system] = {k: round(v["mean"] * scale.get(k, 1.0), 4) for k, v in summary.items()}
            out["runs"][name] = {"model": model, "steps": steps, "train_s": round(trained_s, 1), "scores": scores}
            print(json.dumps({name: out["runs"][name]}), flush=True)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
