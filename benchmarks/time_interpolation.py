"""What the random split asks for: each test target read off its run's training neighbours in time; prints JSON.

    python benchmarks/time_interpolation.py WORKDIR

In the random split every test sample sits between training samples of its own run. Interpolating linearly in
elapsed time between the two measured training spectra around it (or taking the nearest one at a run's ends) is
the plainest way to use that, and its error is mostly the neighbours' own measurement noise. A model that gets
close to the noise floor must average over more neighbours than two, i.e. learn the run's trajectory and denoise it.
This is a reference point for reading the random split's goal, not a table row: it reads training targets of the
test run directly, which the elapsed time (a profile input) allows. WORKDIR: a working directory the workflow has
run in (results/dataset/samples.h5 and splits.json; results/metrics/random/ for the reference rows).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))


def interpolate_in_time(table, train_idx, test_idx):
    """(n_test, N_f): linear interpolation in elapsed time between the bracketing training samples of each test
    sample's run; the nearest training sample where the test sample lies outside them."""
    import numpy as np

    samples = table.samples
    runs = table.run_key()
    out = np.empty((test_idx.size, table.absorbance.shape[1]))
    for j, i in enumerate(test_idx):
        same = train_idx[runs[train_idx] == runs[i]]
        if same.size == 0:
            raise SystemExit(f"{samples['sample_id'][i]}: no training sample in its run")
        times, t = samples["elapsed_s"][same], samples["elapsed_s"][i]
        spectra = table.absorbance[samples["row"][same]].astype(np.float64)
        before, after = times <= t, times >= t
        if before.any() and after.any():
            b, a = np.flatnonzero(before)[np.argmax(times[before])], np.flatnonzero(after)[np.argmin(times[after])]
            w = 0.0 if times[a] == times[b] else (t - times[b]) / (times[a] - times[b])
            out[j] = (1.0 - w) * spectra[b] + w * spectra[a]
        else:
            out[j] = spectra[np.argmin(np.abs(times - t))]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("workdir", type=Path)
    args = parser.parse_args()

    from opir.evaluate.metrics import spectral_metrics
    from opir.formats.samples import load_samples, load_split

    results = args.workdir / "results"
    table = load_samples(results / "dataset/samples.h5")
    split = load_split(results / "dataset/splits.json", "random")
    train_idx = table.sample_index(split["train"], "train")
    test_idx = table.sample_index(split["test"], "test")
    scores = spectral_metrics(interpolate_in_time(table, train_idx, test_idx),
                              table.absorbance[table.samples["row"][test_idx]])  # fmt: skip
    references = {}
    for path in sorted((results / "metrics" / "random").glob("*.json")):
        references[path.stem] = round(json.loads(path.read_text())["summary"]["mae"]["mean"], 5)
    print(json.dumps({"split": "random", "n_test": int(test_idx.size),
                      "time_interpolation": {k: round(float(v.mean()), 5) for k, v in scores.items()},
                      "reference_mae": references}))  # fmt: skip


if __name__ == "__main__":
    main()
