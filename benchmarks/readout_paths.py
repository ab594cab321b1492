"""Each read-out path of a trained latent ABCC on a split's test runs: the waveform path, the Chemical Flow path
(s(v_0) + the variation image) and their fusion, MAE x1e-2 per test system; prints one JSON line last.

A diagnosis (it reads test targets; nothing may be chosen with it): it predicts exactly as the workflow's
`predict_abcc` rule (the predictions file goes to --out), keeping each path's spectra on the way (the read-out's
`fuse` is wrapped for the run), and scores each path's mean over the draws, the fused forecast, and constant
blends of the two paths.

    python benchmarks/readout_paths.py WORKDIR --model abcc --split system --out /tmp/abcc.h5 \
        [--draws 2 --batch-size 64 --seed 0 --mixture-domain training]
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
    parser.add_argument("--model", default="abcc")
    parser.add_argument("--split", default="system")
    parser.add_argument("--out", type=Path, required=True, help="where the predictions file goes")
    parser.add_argument("--draws", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--mixture-domain", default="training", choices=["training", "open"])
    args = parser.parse_args()

    import numpy as np

    import opir.train.readout as readout
    from opir.formats.model_dir import read_model_meta
    from opir.formats.samples import load_samples, load_split
    from opir.predict.abcc import predict_abcc

    kept: list[list[np.ndarray]] = []
    fuse = readout.Readout.fuse

    def keeping(self, paths):
        kept.append([p.copy() for p in paths])
        return fuse(self, paths)

    readout.Readout.fuse = keeping
    results = args.workdir / "results"
    meta = read_model_meta(results / "models" / args.split / args.model)
    if meta.get("space", "latent") != "latent" or not meta.get("fusion"):
        sys.exit(f"{args.model}: not a latent model with two read-out paths")
    cfg = {"background_grey": meta["settings"].get("predict", {}).get("background_grey", 16),
           "batch_size": args.batch_size, "draws": args.draws, "euler_steps": 0, "seed": args.seed,
           "mixture_domain": args.mixture_domain, "noise": "independent", "run_codes": True}  # fmt: skip
    t0 = time.perf_counter()
    predict_abcc(results / "dataset/samples.h5", results / f"latent/{args.split}/waveform.h5",
                 args.workdir / meta["embedding_file"], results / "dataset/splits.json", results / "images/waveform.h5",
                 args.split, results / "models" / args.split / args.model, results / f"latent/{args.split}/vae",
                 args.out, cfg, "cpu", electrodes_h5=results / "dataset/electrodes.h5")
    seconds = time.perf_counter() - t0
    readout.Readout.fuse = fuse

    table = load_samples(results / "dataset/samples.h5")
    test = load_split(results / "dataset/splits.json", args.split)["test"]
    target = table.absorbance[table.samples["row"][table.sample_index(test, "test samples")]]
    n = len(test)
    # fuse is called once per batch and draw, in predict_abcc's order: batch by batch, draw by draw
    paths = [np.empty((n, args.draws, target.shape[1]), np.float32) for _ in kept[0]]
    call = 0
    for start in range(0, n, args.batch_size):
        stop = min(start + args.batch_size, n)
        for k in range(args.draws):
            for path, spectra in zip(paths, kept[call], strict=True):
                path[start:stop, k] = spectra
            call += 1
    weight = np.asarray(meta["fusion"]["waveform_weight"], dtype=np.float64)
    systems = np.array([sample.split("/", 1)[0] for sample in test])
    waveform, flow = (path.mean(axis=1) for path in paths)
    out = {"model": args.model, "split": args.split, "seconds": round(seconds, 1),
           "fusion_weight_mean": round(float(weight.mean()), 4)}  # fmt: skip
    for system in np.unique(systems):
        sel = systems == system

        def mae(spectra, sel=sel):
            return round(float(100 * np.abs(spectra[sel] - target[sel]).mean()), 4)

        row = {"n_samples": int(sel.sum()), "waveform_path": mae(waveform), "chemical_flow_path": mae(flow),
               "fused": mae(weight * waveform + (1 - weight) * flow)}  # fmt: skip
        row.update({f"constant_w{w}": mae(w * waveform + (1 - w) * flow) for w in (0.25, 0.5, 0.75)})
        out[str(system)] = row
    print(json.dumps(out))


if __name__ == "__main__":
    main()
