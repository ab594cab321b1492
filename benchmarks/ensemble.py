"""Score an ensemble: the draws of several predictions files of the same test samples (e.g. one model trained with
two seeds) pooled, and scored as the workflow scores any model (the mean of the draws, `opir.evaluate.metrics`).

    python benchmarks/ensemble.py WORKDIR --split system PRED_A.h5 PRED_B.h5 [...]

WORKDIR holds results/dataset/{samples.h5,splits.json}. Prints one JSON line: the metrics of each file alone and of
the pooled draws (MAE etc. in the metrics' own units; the tables scale MAE by 1e2). Whether an ensemble hedges a
distribution shift better than its members is read here; a workflow row would be a variant of its own.
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
    parser.add_argument("predictions", type=Path, nargs="+")
    parser.add_argument("--split", choices=["random", "system"], default="system")
    parser.add_argument("--configfile", type=Path, default=REPO / "config" / "config.yaml",
                        help="the config whose evaluate.dilate settings score the files (the workflow's)")
    args = parser.parse_args()

    import numpy as np
    import yaml

    from opir.evaluate.metrics import evaluate_file
    from opir.formats.predictions import read_predictions, write_predictions

    samples = args.workdir / "results/dataset/samples.h5"
    splits = args.workdir / "results/dataset/splits.json"
    dilate = yaml.safe_load(args.configfile.read_text())["evaluate"]["dilate"]
    members = [read_predictions(path) for path in args.predictions]
    order = list(members[0].sample_id)
    draws = []
    for path, member in zip(args.predictions, members, strict=True):
        if sorted(member.sample_id) != sorted(order):
            raise SystemExit(f"{path}: not the same test samples as {args.predictions[0]}")
        position = {s: i for i, s in enumerate(member.sample_id)}
        draws.append(member.prediction[[position[s] for s in order]])

    def score(path: Path, name: str, out: Path) -> dict:
        record = evaluate_file(path, samples, splits, args.split, name, out, dilate)
        return {k: round(v["mean"], 5) for k, v in record["summary"].items()}

    with tempfile.TemporaryDirectory() as tmp:
        report = {str(path): score(path, f"member{i}", Path(tmp) / f"m{i}.json")
                  for i, path in enumerate(args.predictions)}  # fmt: skip
        pooled = Path(tmp) / "ensemble.h5"
        write_predictions(pooled, order, members[0].wavenumber_cm1, np.concatenate(draws, axis=1),
                          {"members": json.dumps([str(p) for p in args.predictions])}, model="ensemble")
        report["ensemble"] = score(pooled, "ensemble", Path(tmp) / "ensemble.json")
    print(json.dumps({"split": args.split, "draws": [d.shape[1] for d in draws], "metrics": report}))


if __name__ == "__main__":
    main()
