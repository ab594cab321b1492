"""Unseen electrolytes placed in the training mixtures' domain or extrapolated, on held-out training systems: one
JSON line.

    python benchmarks/mixture_domain.py WORKDIR --hold-out sn_lp30 cu_emc --out DIR [--configfile config/bench.yaml] \
        [--model abcc] [--model-dir DIR/model]

WORKDIR is a working directory the workflow has run in on the system split (the dataset, mixture embeddings, MCR
streams, electrode descriptors; for a latent model also the split's waveform and variation images, latents and
VAE). The script

1. divides the system split's training samples: the systems of --hold-out become the test samples of a validation
   split (the workflow's own rule, as benchmarks/system_holdout.py), so no test system of the benchmark is read;
2. trains --model's recipe (config/config.yaml with --configfile over it) on the other training systems, in-process
   with the workflow's inputs, unless DIR/model holds it already or --model-dir names a model trained on that
   validation split (the workflow's hedge trainings, results/hedge/system/{model}/{group}/model);
3. measures how far each held-out system's mixture lies outside the domain of the others' (opir.models.domain), and
   predicts the samples of those outside twice with the same noise, `predict.mixture_domain` training and open,
   scoring both per system (MAE x1e-2, DILATE). A held-out system inside the domain gets the same forecasts, bit
   for bit, under both settings: it is reported with distance 0 and not predicted.

This is how the setting was chosen without test targets (docs/decisions.md, seventeenth session). A latent model's
VAE was trained on the system split's training images, the held-out systems' included: it encodes images and reads
no condition, so it tells the network nothing about a held-out electrolyte, which is what is measured here.
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
sys.path.insert(0, str(REPO / "benchmarks"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

PLACEMENTS = ("training", "open")


def model_files(results: Path, settings: dict, embedding: str) -> dict[str, Path | None]:
    """The workflow's files a model of ``settings`` reads on the system split (workflow/rules/common.smk)."""
    latent = settings["space"] == "latent"
    return {
        "samples": results / "dataset/samples.h5",
        "mixture": results / f"embed/mixture_{embedding}.h5",
        "electrodes": results / "dataset/electrodes.h5" if settings["electrode_descriptors"] else None,
        "streams": results / "mcr/streams.h5" if settings["two_stream"] else None,
        "latent": results / "latent/system/waveform.h5" if latent else None,
        "residual": results / "latent/system/variation.h5" if latent and settings["chemical_flow"] else None,
        "vae": results / "latent/system/vae" if latent else None,
        "waveform": results / "render/waveform.h5" if latent else None,
        "variation": results / "render/variation.h5" if latent and settings["chemical_flow"] else None,
    }


def per_system(metrics: dict) -> dict[str, dict[str, float]]:
    """A metrics file's MAE (x1e-2, mean over the system's samples) and DILATE (mean over its runs) per system."""
    per_sample = metrics["per_sample"]
    out: dict[str, dict[str, list[float]]] = {}
    for sample, mae in zip(per_sample["sample_id"], per_sample["mae"], strict=True):
        out.setdefault(sample.split("/", 1)[0], {"mae": [], "dilate": []})["mae"].append(100 * mae)
    for run, record in metrics["per_run"].items():
        out[run.split("/", 1)[0]]["dilate"].append(record["dilate"])
    return {system: {"mae": round(sum(v["mae"]) / len(v["mae"]), 4),
                     "dilate": round(sum(v["dilate"]) / len(v["dilate"]), 4), "samples": len(v["mae"])}
            for system, v in out.items()}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("workdir", type=Path)
    parser.add_argument("--hold-out", nargs="+", required=True, help="training systems of the system split to hold out")
    parser.add_argument("--out", type=Path, required=True, help="the validation folder (a trained model is reused)")
    parser.add_argument("--configfile", type=Path, default=None, help="layered over config/config.yaml")
    parser.add_argument("--model", default="abcc", help="the ABCC variant (a models.variants name)")
    parser.add_argument("--model-dir", type=Path, default=None,
                        help="a model already trained on this validation split (e.g. the workflow's hedge training)")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()

    import torch
    from system_holdout import holdout_split, layered_config, sample_systems, table_units

    from opir.evaluate.metrics import evaluate_file
    from opir.formats.embeddings import read_mixture_embeddings
    from opir.models.settings import abcc_train_settings, resolve_model_config, split_predict_settings
    from opir.predict.abcc import load_abcc, mixture_domain, predict_abcc
    from opir.train.abcc import train_abcc
    from opir.train.data import training_mixtures

    torch.set_num_threads(args.threads)
    config = layered_config(args.configfile)
    settings = resolve_model_config(config["models"], args.model)
    embedding = settings.get("embedding_variant") or config["embed"]["variant"]
    results = args.workdir / "results"
    files = model_files(results, settings, embedding)

    # 1. the validation split
    system_of = sample_systems(files["samples"])
    splits = json.loads((results / "dataset/splits.json").read_text())
    args.out.mkdir(parents=True, exist_ok=True)
    splits_json = args.out / "splits.json"
    splits_json.write_text(json.dumps({"system": holdout_split(splits, system_of, set(args.hold_out))}))

    # 2. the recipe trained on the other training systems
    model_dir = args.model_dir or args.out / "model"
    train_s = None
    if not (model_dir / "model.json").exists():
        if args.model_dir is not None:
            raise SystemExit(f"--model-dir {model_dir}: no model.json")
        t0 = time.perf_counter()
        train_abcc(files["samples"], files["latent"], files["mixture"], splits_json, "system", args.model,
                   abcc_train_settings(config["models"], args.model, "system"), model_dir, args.out / "checkpoints",
                   "cpu", waveform_h5=files["waveform"], progress=False, residual_h5=files["residual"],
                   streams_h5=files["streams"], vae_dir=files["vae"], variation_h5=files["variation"],
                   electrodes_h5=files["electrodes"])
        train_s = round(time.perf_counter() - t0, 1)

    # 3. the held-out systems whose mixture lies outside the others' domain (the forecasts of the others are the same
    # under both settings, bit for bit), forecast with the mixture placed in the domain, and extrapolated
    validation = json.loads(splits_json.read_text())["system"]
    model, _ = load_abcc(model_dir)
    domain = mixture_domain(model, training_mixtures(files["samples"], files["mixture"], validation["train"]))
    mixtures = read_mixture_embeddings(files["mixture"])
    distance = {system: float(domain.place(mixtures[system][None])[1][0]) for system in sorted(args.hold_out)}
    outside = sorted(system for system, d in distance.items() if d > 0)
    result = {"model": args.model, "hold_out": sorted(args.hold_out), "model_dir": str(model_dir),
              "train_seconds": train_s, "distance_outside": {k: round(v, 4) for k, v in distance.items()}}
    if not outside:
        print(json.dumps({**result, "scores": None}))
        return
    moved_json = args.out / "splits_outside.json"
    moved_json.write_text(json.dumps({"system": {
        "train": validation["train"], "test": [s for s in validation["test"] if system_of[s] in outside]}}))
    predict = split_predict_settings(settings["predict"], "system")
    scores = {}
    for placement in PLACEMENTS:
        out = args.out / f"predictions_{placement}.h5"
        predict_abcc(files["samples"], files["latent"], files["mixture"], moved_json, files["waveform"], "system",
                     model_dir, files["vae"], out, {**predict, "mixture_domain": placement}, "cpu",
                     electrodes_h5=files["electrodes"])
        metrics = evaluate_file(out, files["samples"], moved_json, "system", args.model,
                                args.out / f"metrics_{placement}.json", config["evaluate"]["dilate"])
        overall = table_units(metrics["summary"])
        scores[placement] = {"all": {k: overall[k] for k in ("mae", "dilate")}, **per_system(metrics)}
    print(json.dumps({**result, "scores": scores}))


if __name__ == "__main__":
    main()
