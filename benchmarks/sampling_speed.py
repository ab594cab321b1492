"""One-step MeanFlow against N Euler steps of the same trained network: prediction time on a split's test samples.

    python benchmarks/sampling_speed.py WORKDIR MODEL_DIR [--split system] [--euler-steps 50] [--draws 1]
        [--repeats 1] [--threads 2]

MODEL_DIR is a trained ABCC folder (results/models/{split}/{model}, or the model/ folder benchmarks/abcc_settings.py
writes); WORKDIR the workspace it was trained in (results/dataset/, the mixture embeddings, electrodes.h5). Both
samplers run through `opir.predict.abcc.predict_abcc`, the workflow's own prediction code, with the same draws and
batch; the time is that function's sampling and read-out loop (model loading and data reading excluded), the best of
--repeats runs. 50 Euler steps of the bench-size network on the full system split's 1,322 test samples take about
1.5 min per draw on 2 cores, hence one draw and one repeat by default. Prints one JSON line: seconds per sampler,
spectra per second and the ratio (the issue's goal: one step at least 30x faster than 50 Euler steps). Run it on a
quiet machine; both samplers are timed in one run.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("workdir", type=Path)
    parser.add_argument("model_dir", type=Path)
    parser.add_argument("--split", choices=["random", "system"], default="system")
    parser.add_argument("--euler-steps", type=int, default=50)
    parser.add_argument("--draws", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--configfile", type=Path, default=REPO / "config" / "config.yaml",
                        help="the config the workspace ran with (its embed.variant, when the model names none)")
    args = parser.parse_args()

    import torch
    import yaml

    from opir.formats.model_dir import read_model_meta
    from opir.models.settings import embedding_variant
    from opir.predict.abcc import predict_abcc

    torch.set_num_threads(args.threads)
    meta = read_model_meta(args.model_dir)
    settings = meta["settings"]
    if meta.get("space", "latent") != "spectrum":
        raise SystemExit(f"{args.model_dir}: a latent model decodes through the VAE, which both samplers share; time "
                         "the 1D flagship here")
    results = args.workdir / "results"
    embedding = embedding_variant(settings, yaml.safe_load(args.configfile.read_text())["embed"])
    files = {"samples": results / "dataset/samples.h5", "splits": results / "dataset/splits.json",
             "mixture": results / f"embed/mixture_{embedding}.h5", "electrodes": results / "dataset/electrodes.h5"}
    predict = {**settings["predict"], "draws": args.draws, "seed": 0}

    def timed(euler_steps: int) -> dict:
        best = None
        with tempfile.TemporaryDirectory() as tmp:
            for _ in range(args.repeats):
                done = predict_abcc(files["samples"], None, files["mixture"], files["splits"], None, args.split,
                                    args.model_dir, None, Path(tmp) / "p.h5", {**predict, "euler_steps": euler_steps},
                                    "cpu", electrodes_h5=files["electrodes"])
                best = done if best is None or done["seconds"] < best["seconds"] else best
        return {"seconds": round(best["seconds"], 3), "spectra_per_second": round(best["spectra_per_second"], 1)}

    one_step = timed(0)
    euler = timed(args.euler_steps)
    print(json.dumps({
        "model_dir": str(args.model_dir), "split": args.split, "draws": args.draws, "threads": args.threads,
        "one_step": one_step, f"euler_{args.euler_steps}": euler,
        "speedup": round(euler["seconds"] / one_step["seconds"], 1),
        "network": {k: settings[k] for k in ("hidden_size", "depth", "num_heads", "spectral_patch_size")},
    }))


if __name__ == "__main__":
    main()
