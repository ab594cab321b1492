"""Coverage of the 5-95 % uncertainty band on a simulated test set; prints one JSON line last.

The band of a test sample is, per wavenumber, the 5 % and 95 % quantiles of the model's k draws
(opir.forecast.band). Coverage is the share of true values inside it; a calibrated 90 % band covers about 90 %
(goal 80-95 %). "True" is read two ways: the noisy measured target (samples.h5) and, for simulated data, the
noise-free truth (truth.h5, row-aligned with samples.h5).

    # draws from a predictions file (k = models.abcc.predict.draws of the workflow)
    python benchmarks/band_coverage.py --predictions results/predictions/system/abcc.h5 \
        --samples results/dataset/samples.h5 --truth results/dataset/truth.h5
    # or draw them with opir predict's own path from a packaged model directory (opir package), k = --draws
    python benchmarks/band_coverage.py --model-dir results/models/system/abcc --split system --draws 32 \
        --samples results/dataset/samples.h5 --splits results/dataset/splits.json \
        --mixture results/embed/mixture_3d.h5 --truth results/dataset/truth.h5
    # a packaged directory as opir predict forecasts with it (hedged when it carries a hedge; --no-hedge: the model
    # alone), on at most 256 test samples
    python benchmarks/band_coverage.py --model-dir results/packages/system/abcc1d --max-samples 256 ... [--no-hedge]
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
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--samples", required=True, type=Path)
    parser.add_argument("--truth", type=Path, default=None)
    parser.add_argument("--predictions", type=Path, default=None)
    parser.add_argument("--model-dir", type=Path, default=None)
    parser.add_argument("--splits", type=Path, default=None)
    parser.add_argument("--split", default="system")
    parser.add_argument("--mixture", type=Path, default=None)
    parser.add_argument("--draws", type=int, default=32)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--max-samples", type=int, default=None,
                        help="--model-dir: at most this many test samples, drawn with --seed")
    parser.add_argument("--no-hedge", action="store_true",
                        help="--model-dir: the model alone, as opir predict --no-hedge (default: as packaged)")
    args = parser.parse_args()

    import h5py
    import numpy as np

    from opir.forecast.band import band_coverage
    from opir.formats.predictions import read_predictions
    from opir.formats.samples import load_samples

    table = load_samples(args.samples)
    offsets = None
    t0 = time.perf_counter()
    if args.predictions is not None:
        predictions = read_predictions(args.predictions)
        sample_ids, draws, source = predictions.sample_id, predictions.prediction, str(args.predictions)
        if not np.allclose(predictions.wavenumber_cm1, table.wavenumber_cm1):
            sys.exit(f"{args.predictions}: wavenumber grid differs from {args.samples}")
    else:
        if args.model_dir is None or args.splits is None or args.mixture is None:
            sys.exit("give --predictions, or --model-dir with --splits and --mixture")
        import torch

        from opir.forecast.band import band_offsets
        from opir.forecast.model import load_forecast_model
        from opir.forecast.sampling import forecast_samples, hedge_dataset_draws
        from opir.formats.electrodes import electrode_features
        from opir.formats.embeddings import read_mixture_embeddings
        from opir.formats.model_dir import ELECTRODES_H5
        from opir.formats.samples import load_split

        torch.set_num_threads(max(1, os.cpu_count() or 1))
        fm = load_forecast_model(args.model_dir, args.device)
        if args.no_hedge:
            fm = fm.without_hedge()
        sample_ids = np.asarray(load_split(args.splits, args.split)["test"])
        if args.max_samples is not None and len(sample_ids) > args.max_samples:
            sample_ids = np.sort(np.random.default_rng(args.seed).choice(sample_ids, args.max_samples, replace=False))
        # the package's own descriptors, as opir predict --electrode reads them
        electrodes = (electrode_features(args.model_dir / ELECTRODES_H5) if fm.model.config.electrode_dim
                      else None)  # fmt: skip
        draws = forecast_samples(fm, args.samples, list(sample_ids), read_mixture_embeddings(args.mixture), args.draws,
                                 args.seed, electrodes=electrodes)
        # as opir predict forecasts: blended with the partner when the directory carries a hedge
        draws = hedge_dataset_draws(fm, args.samples, list(sample_ids), draws)
        hedged = f", hedged at weight {fm.hedge['weight']}" if fm.hedge else ""
        source = f"{args.model_dir} (opir predict path, {args.draws} draws, seed {args.seed}{hedged})"
        offsets = band_offsets(fm)
    seconds = time.perf_counter() - t0
    rows = table.samples["row"][table.sample_index(sample_ids, source)]
    result = {"source": source, "n_samples": int(len(sample_ids)), "k_draws": int(draws.shape[1]),
              "band": [0.05, 0.95], "seconds": round(seconds, 2)}
    against = {"target": table.absorbance[rows]}
    if args.truth is not None:
        with h5py.File(args.truth, "r") as handle:
            against["truth"] = handle["absorbance"][()][rows]
    for name, target in against.items():
        if offsets is not None:  # the model's conformally widened band (what opir predict writes)
            result[f"coverage_{name}_raw_quantiles"] = round(band_coverage(draws, target)["coverage"], 4)
        cov = band_coverage(draws, target, offsets=offsets)
        result[f"coverage_{name}"] = round(cov["coverage"], 4)
        result[f"below_{name}"] = round(cov["below"], 4)
        result[f"above_{name}"] = round(cov["above"], 4)
        result[f"coverage_{name}_per_sample_p10_p50_p90"] = [round(float(v), 4) for v in
                                                             np.quantile(cov["per_sample"], [0.1, 0.5, 0.9])]
    result["mean_band_width"] = round(band_coverage(draws, against["target"], offsets=offsets)["mean_band_width"], 5)
    result["band_calibrated"] = offsets is not None
    print(json.dumps(result))


if __name__ == "__main__":
    main()
