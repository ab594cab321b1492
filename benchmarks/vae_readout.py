"""Read-out error of a small-VAE setting on held-out training samples (no test targets); prints one JSON line.

    python benchmarks/vae_readout.py WORKDIR '{norm_num_groups: 16}'
    python benchmarks/vae_readout.py WORKDIR '{block_out_channels: [32, 64, 64], norm_num_groups: 32}' --split system

WORKDIR is a working directory the workflow has rendered in (results/dataset/{samples.h5,splits.json},
results/render/{waveform,variation}.h5). A fraction of the split's training samples (--holdout, drawn with --seed)
is held out; the VAE of `models.vae` in --configfile, with the overrides (YAML) on top, trains on the rest exactly as
the workflow's `vae` rule would (variation images included), then the held-out samples' waveform images are
encoded, decoded and read back to spectra as the "VAE read-out bound" row does. The MAE (x1e-2) is what the latent
models could reach at best on those samples; `images_without_ink` counts decoded images whose line fell below the
background grey (the read-out then falls back to the baseline). This is how the demo's VAE size was chosen
(docs/decisions.md, thirteenth session).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("workdir", type=Path)
    parser.add_argument("overrides", help="YAML mapping over models.vae, e.g. '{steps: 80, norm_num_groups: 16}'")
    parser.add_argument("--split", default="random")
    parser.add_argument("--holdout", type=float, default=0.1, help="fraction of the training samples held out")
    parser.add_argument("--seed", type=int, default=20261207)
    parser.add_argument("--configfile", type=Path, default=REPO / "config" / "config.yaml")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()

    import numpy as np
    import torch
    import yaml

    from opir.formats.images import read_images
    from opir.formats.samples import load_samples
    from opir.latent.vae import build_or_train_vae, load_vae
    from opir.models.vae import decode_latents, encode_images
    from opir.render.waveform import read_style
    from opir.train.readout import images_to_spectra

    torch.set_num_threads(args.threads)
    results = args.workdir / "results"
    config = yaml.safe_load(args.configfile.read_text())["models"]
    vae_config = dict(config["vae"], **yaml.safe_load(args.overrides))
    background_grey = float(config["abcc"]["predict"]["background_grey"])

    splits = json.loads((results / "dataset" / "splits.json").read_text())
    train = sorted(splits[args.split]["train"])
    rng = np.random.default_rng(args.seed)
    held = sorted(rng.choice(train, size=max(1, int(len(train) * args.holdout)), replace=False).tolist())
    kept = sorted(set(train) - set(held))

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        (tmp / "splits.json").write_text(json.dumps({args.split: {"train": kept, "test": held}}))
        t0 = time.perf_counter()
        build_or_train_vae(results / "render" / "waveform.h5", results / "dataset" / "samples.h5", tmp / "splits.json",
                           args.split, tmp / "vae", vae_config, tmp / "checkpoints", "cpu", progress=False,
                           extra_images_h5=[results / "render" / "variation.h5"])
        train_s = time.perf_counter() - t0
        vae = load_vae(tmp / "vae")
    vae.requires_grad_(False)

    table = load_samples(results / "dataset" / "samples.h5")
    rows = table.samples["row"][table.sample_index(held, "held-out training samples")]
    order = np.argsort(np.argsort(rows))  # read_images returns rows sorted
    images = read_images(results / "render" / "waveform.h5", rows)[order]
    target = table.absorbance[rows]
    device, batch = torch.device("cpu"), int(vae_config["encode_batch_size"])
    with torch.no_grad():
        latents = encode_images(vae, images, batch, device)
        decoded = decode_latents(vae, torch.from_numpy(latents), batch, device)
    spectra, without_ink = images_to_spectra(decoded, target.shape[1], read_style(results / "render" / "waveform.h5"),
                                             background_grey)
    print(json.dumps({
        "split": args.split, "overrides": yaml.safe_load(args.overrides), "heldout_samples": len(held),
        "train_s": round(train_s, 1), "readout_mae_x1e2": round(100 * float(np.abs(spectra - target).mean()), 3),
        "images_without_ink": int(without_ink),
    }))


if __name__ == "__main__":
    main()
