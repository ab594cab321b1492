"""How much hedging by shrinkage could buy at most: a model's predicted change scaled by lambda, scored on the test
targets for every lambda of a grid. A diagnostic, never a selection: it reads the test targets, so the lambda it finds
is an oracle's; a model row may only use a lambda chosen without them (e.g. by leaving one training system out).

    python benchmarks/shrinkage_oracle.py WORKDIR PREDICTIONS_H5 [--split system] [--grid 0.5 0.6 ... 1.5]

Prints one JSON line: the MAE (x1e-2, the tables' unit) of s(v_0) + lambda (prediction - s(v_0)) for each lambda, the
oracle lambda and its gain over lambda = 1. If the gain is small, the model's error under the distribution shift is
in the shape of the predicted change, not its size, and no choice of shrinkage (by any selection rule) can close it.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

DEFAULT_GRID = (0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 1.0, 1.05, 1.1, 1.2, 1.3, 1.5)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("workdir", type=Path)
    parser.add_argument("predictions", type=Path)
    parser.add_argument("--split", choices=["random", "system"], default="system")
    parser.add_argument("--grid", type=float, nargs="+", default=list(DEFAULT_GRID))
    args = parser.parse_args()

    import numpy as np

    from opir.formats.predictions import read_predictions
    from opir.formats.samples import load_samples, load_split

    predictions = read_predictions(args.predictions)
    table = load_samples(args.workdir / "results/dataset/samples.h5")
    test = load_split(args.workdir / "results/dataset/splits.json", args.split)["test"]
    if sorted(predictions.sample_id) != sorted(test):
        raise SystemExit(f"{args.predictions}: its samples are not the {args.split} split's test samples")
    idx = table.sample_index(list(predictions.sample_id), str(args.predictions))
    target = table.absorbance[table.samples["row"][idx]]
    initial = table.absorbance[table.samples["initial_row"][idx]]
    change = predictions.mean - initial
    mae = {lam: round(100 * float(np.abs(initial + lam * change - target).mean()), 4) for lam in sorted(args.grid)}
    best = min(mae, key=mae.get)
    print(json.dumps({"predictions": str(args.predictions), "split": args.split,
                      "mae_by_lambda": {str(k): v for k, v in mae.items()}, "oracle_lambda": best,
                      "oracle_mae": mae[best], "mae_at_1": mae.get(1.0),
                      "oracle_gain": round(mae[1.0] - mae[best], 4) if 1.0 in mae else None}))


if __name__ == "__main__":
    main()
