"""How well can any model do on a split whose test electrodes it has never seen? A counterfactual bound; prints JSON.

    python benchmarks/electrode_bound.py WORKDIR [--split system]

ABCC's condition (the initial spectrum, the voltage profile, the electrolyte's mixture embedding) says nothing about
the working electrode's surface chemistry, and the simulator gives each electrode its own SEI chemistry (onset
shifts, rate factors, film capacity: opir.simulate.chemistry.ELECTRODES). For a test run on an electrode that no
training run used (CoO in the system split) nothing in the condition points to its film. This script measures what
that costs. It simulates each such test run again with the same seed, voltage curve, crack events, drift,
electrolyte and binder, changing only the SEI chemistry (`opir.simulate.chemistry.with_sei_chemistry_of`): no film
at all, then the chemistry of each electrode seen in training; preprocesses it with the measured run's own baseline
and scale (`opir.preprocess.spectra.preprocess_truth_run`); and scores it, noise-free, against the measured test
targets with the benchmark's own metrics. Test runs whose electrode was seen in training keep their true
noise-free spectra.

Rows: the run's own truth (the noise floor), no SEI, each seen electrode's SEI, their mean, and each seen
electrode's SEI scaled by the one factor that is best on the test targets (a hedge chosen with knowledge no model
has). Every row knows everything but the unseen chemistry. Another hedge (per band, a blend of electrodes) may do
somewhat better than these rows; getting near the noise floor takes guessing the unseen chemistry itself, which the
condition gives a model no means to. WORKDIR is a working directory the workflow has run in with a simulated
dataset (results/dataset/{samples,splits,truth}, results/truth, results/ingest, results/preprocessed_truth).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))


NO_SEI_ROW = "no SEI at all (electrolyte stream, drift, binder exact)"


def provenance_config(path: Path) -> dict:
    import h5py

    with h5py.File(path, "r") as handle:
        return json.loads(handle.attrs["config"])


def counterfactual_block(results: Path, system_id: str, run_id: str, donor: str, clip, scratch: Path):
    """Preprocessed noise-free spectra of one run simulated with the SEI chemistry of ``donor``: (n_rows, N_f)."""
    import h5py
    import numpy as np

    from opir.core import h5io
    from opir.preprocess import spectra as preprocess
    from opir.simulate.runs import samples_per_run, simulate_run, write_truth

    truth_path = results / "truth" / system_id / f"{run_id}.h5"
    original = provenance_config(truth_path)
    system, runs, settings = original["system"], original["runs"], original["simulate"]
    n_samples = samples_per_run(int(system["sim_samples"]), len(runs), settings, system_id)[
        runs.index(run_id)
    ]
    run = simulate_run(system, run_id, n_samples, settings, sei_chemistry_of=donor)
    with h5py.File(truth_path, "r") as handle:
        files = [name.removeprefix("spectra/") for name in h5io.read_strings(handle["spectra/file"])]
    if len(files) != run.truth.shape[0]:
        raise SystemExit(f"{truth_path}: {len(files)} spectra, the counterfactual has {run.truth.shape[0]}")
    raw_truth = scratch / f"{system_id}_{run_id}_{donor}_truth.h5"
    write_truth(raw_truth, run, files, {"counterfactual_sei_of": donor})
    out = scratch / f"{system_id}_{run_id}_{donor}_pre.h5"
    params = provenance_config(results / "preprocessed_truth" / system_id / f"{run_id}.h5")
    preprocess.preprocess_truth_run(results / "ingest" / system_id / f"{run_id}.h5", raw_truth, out, params,
                                    rule="electrode_bound")  # fmt: skip
    with h5py.File(out, "r") as handle:
        block = handle["spectra/absorbance"][()]
    return np.clip(block, *clip) if clip is not None else block


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("workdir", type=Path)
    parser.add_argument("--split", default="system", choices=["random", "system"])
    parser.add_argument("--alpha", type=float, default=0.5, help="DILATE alpha (evaluate.dilate)")
    parser.add_argument("--gamma", type=float, default=0.01, help="DILATE gamma (evaluate.dilate)")
    args = parser.parse_args()

    import h5py
    import numpy as np

    from opir.evaluate.metrics import evaluate_predictions
    from opir.formats.predictions import Predictions
    from opir.formats.samples import load_samples, load_split
    from opir.simulate.chemistry import NO_SEI

    results = args.workdir / "results"
    table = load_samples(results / "dataset/samples.h5")
    split = load_split(results / "dataset/splits.json", args.split)
    train_idx = table.sample_index(split["train"], "train")
    test_idx = table.sample_index(split["test"], "test")
    with h5py.File(results / "dataset/samples.h5", "r") as handle:
        clip = json.loads(handle.attrs["preprocess_params"]).get("clip")
    with h5py.File(results / "dataset/truth.h5", "r") as handle:
        truth = handle["absorbance"][()]

    def electrode(system_id: str, run_id: str) -> str:
        system = provenance_config(results / "truth" / system_id / f"{run_id}.h5")["system"]
        return system["working_electrode"].partition("/")[0]

    def runs_of(index):
        keys = sorted(set(zip(table.samples["system_id"][index], table.samples["run_id"][index], strict=True)))
        return {key: electrode(*key) for key in keys}

    seen = sorted(set(runs_of(train_idx).values()))
    unseen = {key: name for key, name in runs_of(test_idx).items() if name not in seen}
    first_row = {(s, r): int(f) for s, r, f in zip(table.runs["system_id"], table.runs["run_id"],
                                                    table.runs["first_row"], strict=True)}  # fmt: skip
    rows = table.samples["row"][test_idx]
    run_of_test = list(zip(table.samples["system_id"][test_idx], table.samples["run_id"][test_idx], strict=True))

    predictions = {"own truth (noise floor)": truth[rows]}
    with tempfile.TemporaryDirectory() as scratch:
        for donor in [NO_SEI, *seen]:
            prediction = truth[rows].copy()
            for key in unseen:
                block = counterfactual_block(results, *key, donor, clip, Path(scratch))
                members = np.flatnonzero([k == key for k in run_of_test])
                prediction[members] = block[rows[members] - first_row[key]]
            name = NO_SEI_ROW if donor == NO_SEI else f"SEI chemistry of {donor}"
            predictions[name] = prediction
    bare = predictions[NO_SEI_ROW]
    donors = [f"SEI chemistry of {d}" for d in seen]
    predictions["mean over the seen electrodes"] = np.mean([predictions[d] for d in donors], axis=0)
    # Hedging: scale each donor's SEI contribution (its spectra minus the no-SEI run's) by the factor that is best
    # *on the test targets*, an oracle choice no model can make: how far hedging alone can go, everything else
    # (electrolyte stream, drift, binder) exact.
    unseen_members = np.array([key in unseen for key in run_of_test])
    target = table.absorbance[rows]
    shrink = {}
    for donor in donors:
        sei = predictions[donor] - bare

        def unseen_mae(factor, sei=sei):
            return float(np.mean(np.abs(bare + factor * sei - target)[unseen_members]))

        best = min(np.linspace(0.0, 1.0, 41), key=unseen_mae)
        shrink[donor] = round(float(best), 3)
        predictions[f"{donor}, SEI x {best:.3f} (oracle)"] = bare + best * sei

    scores = {}
    for name, prediction in predictions.items():
        record = evaluate_predictions(
            Predictions(np.asarray(split["test"]), table.wavenumber_cm1, prediction[:, None, :].astype(np.float32)),
            table, split["test"], args.alpha, args.gamma, where=name,
        )  # fmt: skip
        scores[name] = {key: round(value["mean"], 5) for key, value in record["summary"].items()}
        scores[name]["dilate_per_run"] = {run: round(v["dilate"], 4) for run, v in record["per_run"].items()}
    floor = scores["own truth (noise floor)"]["mae"]
    print(json.dumps({
        "split": args.split, "seen_electrodes": seen,
        "unseen_test_runs": {f"{s}/{r}": name for (s, r), name in unseen.items()},
        "n_test": int(test_idx.size), "oracle_shrink": shrink, "mae_goal_2.5x_noise_floor": round(2.5 * floor, 5),
        "scores": scores,
    }, indent=1))  # fmt: skip


if __name__ == "__main__":
    main()
