"""Regenerate a benchmark record from a workflow's tables: the Markdown tables and one JSON file, never typed.

    python benchmarks/record.py WORKDIR --flagship abcc1d [--wall-s 5400] [--md OUT.md] [--json OUT.json]

Reads WORKDIR/results/tables/{table2_random,table3_system,table4_ablations}.{csv,md} (written by the `benchmark_table`
rule) and writes
- OUT.json: top-level keys `random`, `system`, `ablations`, each mapping a row name exactly as in the table (its
  label) to `{mae, mse, rmse, sam, cossim, r2, dilate}` in the table's units (MAE x1e-2, MSE x1e-3, RMSE x1e-2, SAM in
  degrees), plus `flagship` (the label of the model the README recommends), `wall_s` (the bench run's wall time, as
  measured by the caller, or the sum of the jobs' snakemake benchmark files when not given, which over-counts jobs
  that ran side by side) and `commit` (the HEAD of the working directory's checkout when it is one, else of this
  repository), and `flagship_as_packaged` ({split: label}) when the flagship has a hedged row (its package of that
  split carries the hedge, so `opir predict` forecasts as that row);
- OUT.md: the three tables as the workflow wrote them, with where they came from, and for the flagship, per table,
  the rows it beats or trails on each metric; then the issue's goals, each read off the tables (met, or by how much
  it is missed): first on at least 6 of 7 metrics per split, MAE <= 1.4x the noise floor (random split), DILATE <=
  0.5x Persistence's and MAE within 1.1x the hedged-oracle bound (system split; the bound is the `hedged_oracle` of
  `benchmarks/electrode_bound.py`'s JSON line, given with --electrode-bound), every Table 4 row worse than its first
  row (the full model) in MAE and DILATE, the latent ABCC below the voltage regression in random-split MAE (or by how
  much it misses, beside its VAE's read-out bounds), and the run within 2 h (--wall-goal-s); and the demo's two goals
  (beating Persistence on all 7 metrics of both splits, first in MAE among the random split's learned rows), which
  any workspace's record reads. Where the flagship has a hedged row, the system split's goals are read for it too
  ("the flagship as packaged").
With --readout-paths (files holding `benchmarks/readout_paths.py`'s JSON line), OUT.md says why a Table 4 row is not
worse: each read-out path of the diagnosed two-path latent models per test system, and where a row beats the full
model, whether its paths or their fusion lose there.
Defaults: benchmarks/results/opirbench-sim.{md,json} is the committed record of the bench preset; point --md/--json
elsewhere for another workspace (e.g. the demo, with --wall-goal-s 720). OUT.md ends with where the time went: the
jobs' benchmark files summed by stage and the longest jobs, for comparing runs on machines of different speed.
"""

from __future__ import annotations

import argparse
import csv
import json
import subprocess
import sys
from collections.abc import Collection, Mapping
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from opir.evaluate.settings import hedged_name  # noqa: E402 (after the path of the library)

TABLES = {"random": "table2_random", "system": "table3_system", "ablations": "table4_ablations"}
#: JSON key -> (table column, higher is better)
METRICS = {
    "mae": ("MAE (x1e-2)", False), "mse": ("MSE (x1e-3)", False), "rmse": ("RMSE (x1e-2)", False),
    "sam": ("SAM (deg)", False), "cossim": ("CosSim", True), "r2": ("R2", True), "dilate": ("DILATE", False),
}  # fmt: skip


def read_table(path: Path) -> tuple[dict[str, dict[str, float]], dict[str, str], set[str]]:
    """label -> metrics (table units), label -> model name, and the labels of the reference rows (the table's own
    `reference` column: Random, Persistence, Noise floor, the bounds)."""
    rows, models, references = {}, {}, set()
    with open(path, newline="") as handle:
        for row in csv.DictReader(handle):
            rows[row["label"]] = {key: float(row[f"{column} mean"]) for key, (column, _) in METRICS.items()}
            models[row["label"]] = row["model"]
            if row["reference"] == "True":
                references.add(row["label"])
    return rows, models, references


#: Rows that read the test targets themselves (the simulator's truth, the targets' own latents): bounds, not
#: competitors, so the flagship's standing leaves them out.
ORACLE_MODELS = ("noise_floor", "vae_readout_waveform", "vae_readout_variation")
#: The paper's latent model, the row it must beat on the random split, and the bounds of its VAE (model names).
LATENT_MODEL, LATENT_YARDSTICK = "abcc", "voltage_regression"
LATENT_BOUNDS = ("vae_readout_waveform", "vae_readout_variation")


def standing(rows: dict[str, dict[str, float]], flagship: str, exclude=("Noise floor",)) -> dict[str, list[str]]:
    """Per metric, the rows (other than ``exclude``, the labels of the oracle rows) that are better than the
    flagship."""
    out = {}
    for key, (_, higher) in METRICS.items():
        mine = rows[flagship][key]
        out[key] = [label for label, values in rows.items() if label not in (flagship, *exclude)
                    and (values[key] > mine if higher else values[key] < mine)]  # fmt: skip
    return out


def standing_lines(rows: dict[str, dict[str, float]], label: str, exclude) -> tuple[list[str], list[str]]:
    """The metrics on which row ``label`` is first (rows ``exclude`` aside), and a Markdown line per other metric
    naming the rows ahead of it, then a blank line."""
    better = standing(rows, label, exclude)
    first = [m for m, rows_ahead in better.items() if not rows_ahead]
    return first, [f"- {m}: behind {', '.join(ahead)}" for m, ahead in better.items() if ahead] + [""]


#: The thresholds of the record's goals (issue 20).
FIRST_ON_AT_LEAST = 6
RANDOM_MAE_OVER_NOISE_FLOOR = 1.4
SYSTEM_DILATE_OVER_PERSISTENCE = 0.5
SYSTEM_MAE_OVER_HEDGED_ORACLE = 1.1
WALL_S = 7200.0


def _verdict(value: float, limit: float) -> str:
    return "met" if value <= limit else f"missed by {value / limit:.2f}x"


def goal_lines(
    record: dict,
    flagship: str,
    firsts: dict[str, int],
    hedged_oracle: float | None,
    *,
    table4_references: Collection[str],
    learned_random: Collection[str] = (),
    random_labels: Mapping[str, str] | None = None,
) -> list[str]:
    """The goals, each read off the tables: a Markdown list. ``firsts``: split -> metrics on which the flagship is
    first (oracle rows aside); ``hedged_oracle``: the system split's bound, MAE x1e-2 (None: not measured);
    ``table4_references``: the labels of Table 4's reference rows (the others, after the first, are ablations);
    ``learned_random``: the labels of Table 2's learned rows (neither reference nor oracle rows), for the demo's
    goal of being first among them in MAE; ``random_labels``: Table 2's model name -> label, for the latent ABCC's
    goal (below the voltage regression in MAE, or by how much it misses and what its VAE's read-out bounds)."""
    lines = ["## Goals", ""]
    for split in ("random", "system"):
        if split in firsts:
            n = firsts[split]
            verdict = "met" if n >= FIRST_ON_AT_LEAST else f"missed by {FIRST_ON_AT_LEAST - n}"
            lines.append(f"- {split} split: the flagship is first on {n} of 7 metrics (goal >= {FIRST_ON_AT_LEAST}): "
                         f"{verdict}")  # fmt: skip
    random, system = record.get("random", {}), record.get("system", {})
    if flagship in random and "Noise floor" in random:
        ratio = random[flagship]["mae"] / random["Noise floor"]["mae"]
        lines.append(f"- random split: MAE {random[flagship]['mae']:.3f} = {ratio:.2f}x the noise floor's "
                     f"{random['Noise floor']['mae']:.3f} (goal <= {RANDOM_MAE_OVER_NOISE_FLOOR}x): "
                     f"{_verdict(ratio, RANDOM_MAE_OVER_NOISE_FLOOR)}")  # fmt: skip
    if flagship in system and "Persistence" in system:
        ratio = system[flagship]["dilate"] / system["Persistence"]["dilate"]
        lines.append(f"- system split: DILATE {system[flagship]['dilate']:.3f} = {ratio:.2f}x Persistence's "
                     f"{system['Persistence']['dilate']:.3f} (goal <= {SYSTEM_DILATE_OVER_PERSISTENCE}x): "
                     f"{_verdict(ratio, SYSTEM_DILATE_OVER_PERSISTENCE)}")  # fmt: skip
    if flagship in system:
        if hedged_oracle is None:
            lines.append(
                "- system split: MAE against the hedged-oracle bound: not measured (run "
                "benchmarks/electrode_bound.py on the workspace and pass its output with --electrode-bound)"
            )
        else:
            ratio = system[flagship]["mae"] / hedged_oracle
            lines.append(f"- system split: MAE {system[flagship]['mae']:.3f} = {ratio:.2f}x the hedged-oracle bound "
                         f"{hedged_oracle:.3f} (goal <= {SYSTEM_MAE_OVER_HEDGED_ORACLE}x): "
                         f"{_verdict(ratio, SYSTEM_MAE_OVER_HEDGED_ORACLE)}")  # fmt: skip
    beaten = {split: sum((record[split]["Persistence"][m] < record[split][flagship][m]) if METRICS[m][1]
                         else (record[split]["Persistence"][m] > record[split][flagship][m]) for m in METRICS)
              for split in ("random", "system") if flagship in record.get(split, {}) and "Persistence" in record[split]}
    if beaten:
        verdict = "met" if all(n == len(METRICS) for n in beaten.values()) else "missed"
        lines.append("- demo: the flagship beats Persistence on " + ", ".join(
            f"{n} of 7 metrics ({split} split)" for split, n in beaten.items()) + f" (goal: all 7 on both): {verdict}")
    if flagship in random and learned_random:
        ahead = sorted((label for label in learned_random if label != flagship
                        and random[label]["mae"] < random[flagship]["mae"]), key=lambda label: random[label]["mae"])
        lines.append(f"- demo: random split: the flagship first in MAE ({random[flagship]['mae']:.3f}) among the "
                     f"{len(learned_random)} learned rows (the reference and oracle rows aside): " + (
                         "met" if not ahead else "missed, behind " + ", ".join(
                             f"{label} ({random[label]['mae']:.3f})" for label in ahead)))  # fmt: skip
    lines += _latent_goal_lines(random, random_labels or {})
    ablations = record.get("ablations", {})
    if ablations:
        full, *rows = [label for label in ablations if label not in table4_references]
        not_worse = {label: [m.upper() for m in ("mae", "dilate") if ablations[label][m] <= ablations[full][m]]
                     for label in rows}  # fmt: skip
        failing = [f"{label} ({', '.join(metrics)})" for label, metrics in not_worse.items() if metrics]
        lines.append(f"- Table 4: every ablation row worse than the full model ({full}) in MAE and DILATE: "
                     + (f"missed: {len(failing)} of {len(not_worse)} rows are not, {'; '.join(failing)}" if failing
                        else "met"))  # fmt: skip
    return lines


def _latent_goal_lines(random: Mapping[str, Mapping[str, float]], labels: Mapping[str, str]) -> list[str]:
    """The latent ABCC against the voltage regression in random-split MAE, with the read-out bounds of its VAE: the
    test targets' own images encoded and decoded, an error no prediction through that VAE can go below."""
    latent, yardstick = labels.get(LATENT_MODEL), labels.get(LATENT_YARDSTICK)
    if latent not in random or yardstick not in random:
        return []
    mine, theirs = random[latent]["mae"], random[yardstick]["mae"]
    line = (f"- random split: the latent ABCC ({latent}) MAE {mine:.3f} against the {yardstick.lower()}'s "
            f"{theirs:.3f} (goal: below it): " + ("met" if mine < theirs else f"missed by {mine / theirs:.2f}x"))
    bounds = [(labels[model], random[labels[model]]["mae"]) for model in LATENT_BOUNDS if labels.get(model) in random]
    if bounds:
        line += "; its VAE's read-out of the test targets' own images: " + ", ".join(
            f"{label} {mae:.3f} ({mae / theirs:.2f}x the {yardstick.lower()})" for label, mae in bounds)
    return [line]


def run_scores(metrics_dir: Path, model: str) -> dict[str, dict[str, float]]:
    """Per test run, a model's MAE (x1e-2, the mean of its samples') and DILATE, each the mean over the model's seed
    replicates (``{model}_seed1``, ... beside ``{model}``), from the evaluate rule's metrics files; {} without them."""
    files = [metrics_dir / f"{model}.json", *sorted(metrics_dir.glob(f"{model}_seed*.json"))]
    seeds = [json.loads(path.read_text()) for path in files if path.exists()]
    scores: dict[str, dict[str, list[float]]] = {}
    for metrics in seeds:
        per_sample = metrics["per_sample"]
        runs = [sample.rsplit("/", 1)[0] for sample in per_sample["sample_id"]]
        for run, record in metrics["per_run"].items():
            mae = [value for r, value in zip(runs, per_sample["mae"], strict=True) if r == run]
            entry = scores.setdefault(run, {"mae": [], "dilate": [], "n": [len(mae)]})
            entry["mae"].append(100 * sum(mae) / len(mae))
            entry["dilate"].append(record["dilate"])
    return {run: {key: sum(values) / len(values) for key, values in entry.items()} for run, entry in scores.items()}


def table4_run_lines(metrics_dir: Path, models: Mapping[str, str], references: Collection[str]) -> list[str]:
    """Table 4's model rows by test run: where each ablation gains or loses against the full model (the first row),
    so that the record shows which runs carry a row that is not worse."""
    scores = {label: run_scores(metrics_dir, model) for label, model in models.items() if label not in references}
    scores = {label: runs for label, runs in scores.items() if runs}
    if not scores:
        return []
    runs = sorted({run for per_run in scores.values() for run in per_run})
    counts = {run: next(int(s[run]["n"]) for s in scores.values() if run in s) for run in runs}
    lines = ["## Table 4 by test run", "",
             "MAE (x1e-2) / DILATE of each model row on each test run of the system split, mean over the training "
             "seeds (the evaluate rule's metrics files; a run's MAE is the mean over its test samples).", "",
             "| Model | " + " | ".join(f"{run} ({counts[run]} samples)" for run in runs) + " |",
             "|---|" + "---|" * len(runs)]  # fmt: skip
    for label, per_run in scores.items():
        cells = [f"{per_run[run]['mae']:.3f} / {per_run[run]['dilate']:.3f}" if run in per_run else "-" for run in runs]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return lines + [""]


def readout_path_lines(diagnoses: list[dict], models: Mapping[str, str], metrics_dir: Path,
                       references: Collection[str]) -> list[str]:  # fmt: skip
    """Why an ablation is not worse than the full model, where `benchmarks/readout_paths.py` diagnosed it: each
    read-out path of the two-path latent models per test system, and the rows of Table 4 that beat the full model
    there (run MAE, mean over seeds, against the full model's own), with what its diagnosed model's paths say."""
    if not diagnoses:
        return []
    label_of = {model: label for label, model in models.items()}
    rows = [label for label in models if label not in references]
    full = rows[0] if rows else None
    scores = {label: run_scores(metrics_dir, models[label]) for label in rows}
    lines = ["## Table 4: each read-out path (diagnosis)", "",
             "`benchmarks/readout_paths.py` on one trained model each (it reads test targets; nothing was chosen with "
             "it): MAE (x1e-2) of the waveform path, the Chemical Flow path (s(v_0) + the variation image), their "
             "fusion as the model predicts, and the best constant blend of the two, per test system.", "",
             "| Model | system | samples | waveform path | Chemical Flow path | fused | best constant blend |",
             "|---|---|---|---|---|---|---|"]  # fmt: skip
    findings = []
    for diagnosis in diagnoses:
        label = label_of.get(diagnosis["model"], diagnosis["model"])
        for system, row in diagnosis.items():
            if not isinstance(row, dict):
                continue
            blends = [row[key] for key in row if key.startswith("constant_w")]
            lines.append(f"| {label} ({diagnosis['model']}) | {system} | {row['n_samples']} | "
                         f"{row['waveform_path']:.3f} | {row['chemical_flow_path']:.3f} | {row['fused']:.3f} | "
                         f"{min(blends):.3f} |")  # fmt: skip
            if label != full:
                continue
            full_mae = system_mae(scores.get(full, {}), system)
            if full_mae is None:
                continue
            below = [f"{other} ({mae:.3f})" for other in rows[1:]
                     if (mae := system_mae(scores.get(other, {}), system)) is not None and mae < full_mae]  # fmt: skip
            if below:
                best_path = min(row["waveform_path"], row["chemical_flow_path"])
                verdict = ("its fusion beats either path, so the paths themselves lose there"
                           if row["fused"] < best_path else "its fusion does not reach its better path there")
                findings.append(f"- {system}: {', '.join(below)} below {full}'s {full_mae:.3f} (run MAE, mean over "
                                f"seeds); the diagnosed {full} model: fused {row['fused']:.3f}, paths "
                                f"{row['waveform_path']:.3f} and {row['chemical_flow_path']:.3f}: {verdict}")
    return lines + [""] + (["Where the full model loses:", *findings, ""] if findings else [])


def system_mae(per_run: Mapping[str, dict], system: str) -> float | None:
    """The mean run MAE of a model's test runs of one system (None where it has none)."""
    maes = [scores["mae"] for run, scores in per_run.items() if run.split("/", 1)[0] == system]
    return sum(maes) / len(maes) if maes else None


def commit(workdir: Path) -> str:
    """The commit that made the tables: the working directory's own checkout (a clone the run was started in),
    else this repository's HEAD."""
    for where in (workdir, REPO):
        done = subprocess.run(["git", "-C", str(where), "rev-parse", "HEAD"], capture_output=True, text=True)
        if done.returncode == 0 and done.stdout.strip():
            return done.stdout.strip()
    return "unknown"


def job_seconds(workdir: Path) -> dict[str, float]:
    """Each job's wall time from its snakemake benchmark file, keyed by the file's path under results/benchmarks/
    without the suffix (stage/split/model)."""
    root = workdir / "results" / "benchmarks"
    seconds = {}
    for path in sorted(root.rglob("*.tsv")):
        lines = path.read_text().splitlines()
        if len(lines) > 1:
            seconds[path.relative_to(root).with_suffix("").as_posix()] = float(lines[1].split("\t")[0])
    return seconds


def job_time_lines(seconds: dict[str, float], longest: int = 8) -> list[str]:
    """Where a run's time went, so that runs on machines of different speed can be compared job by job."""
    if not seconds:
        return []
    stages: dict[str, list[float]] = {}
    for name, s in seconds.items():
        stages.setdefault(name.split("/")[0], []).append(s)
    by_stage = sorted(stages.items(), key=lambda item: -sum(item[1]))
    top = sorted(seconds.items(), key=lambda item: -item[1])[:longest]
    return [
        "## Where the time went", "",
        f"Sum of the {len(seconds)} jobs' snakemake benchmark files: {sum(seconds.values()):.0f} s (jobs that ran side "
        "by side each count in full). By stage: "
        + ", ".join(f"{stage} {sum(s):.0f} s ({len(s)})" for stage, s in by_stage) + ". Longest jobs: "
        + ", ".join(f"{name} {s:.0f} s" for name, s in top) + ".", "",
    ]  # fmt: skip


def packaged_goal_lines(rows: dict[str, dict[str, float]], packaged: dict, hedged_oracle: float | None) -> list[str]:
    """The system split's goals read for the flagship as its package forecasts a new cell (its hedged row)."""
    label, n = packaged["label"], packaged["firsts"]
    verdict = "met" if n >= FIRST_ON_AT_LEAST else f"missed by {FIRST_ON_AT_LEAST - n}"
    lines = [f"- {packaged['split']} split, the flagship as packaged ({label}): first on {n} of 7 metrics (goal >= "
             f"{FIRST_ON_AT_LEAST}): {verdict}"]  # fmt: skip
    if "Persistence" in rows:
        ratio = rows[label]["dilate"] / rows["Persistence"]["dilate"]
        lines.append(f"- {packaged['split']} split, the flagship as packaged: DILATE {rows[label]['dilate']:.3f} = "
                     f"{ratio:.2f}x Persistence's (goal <= {SYSTEM_DILATE_OVER_PERSISTENCE}x): "
                     f"{_verdict(ratio, SYSTEM_DILATE_OVER_PERSISTENCE)}")  # fmt: skip
    if hedged_oracle is not None:
        ratio = rows[label]["mae"] / hedged_oracle
        lines.append(f"- {packaged['split']} split, the flagship as packaged: MAE {rows[label]['mae']:.3f} = "
                     f"{ratio:.2f}x the hedged-oracle bound (goal <= {SYSTEM_MAE_OVER_HEDGED_ORACLE}x): "
                     f"{_verdict(ratio, SYSTEM_MAE_OVER_HEDGED_ORACLE)}")  # fmt: skip
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("workdir", type=Path)
    parser.add_argument("--flagship", required=True, help="model name (as in the config) the README recommends")
    parser.add_argument("--wall-s", type=float, default=None, help="measured wall time of the run (s)")
    parser.add_argument("--md", type=Path, default=REPO / "benchmarks/results/opirbench-sim.md")
    parser.add_argument("--json", type=Path, default=REPO / "benchmarks/results/opirbench-sim.json")
    parser.add_argument("--title", default="OpIRBench on OpIRSpec-7K-sim: the bench preset's record")
    parser.add_argument("--wall-goal-s", type=float, default=WALL_S,
                        help=f"the run's time goal (s): {WALL_S:.0f} for the bench preset, 720 for the demo")
    parser.add_argument(
        "--electrode-bound",
        type=Path,
        default=None,
        help="file with benchmarks/electrode_bound.py's JSON line (system split): the hedged-oracle bound of the goals",
    )
    parser.add_argument("--readout-paths", type=Path, nargs="*", default=[],
                        help="files with benchmarks/readout_paths.py's JSON line (system split): each read-out path "
                        "of a two-path latent model per test system, to say why a Table 4 row is not worse")
    parser.add_argument("--provenance", default=None,
                        help="how the workspace was made, where not by one run of one commit (a paragraph, printed "
                        "under the header and kept in the JSON)")
    args = parser.parse_args()

    tables = args.workdir / "results" / "tables"
    record: dict = {}
    firsts: dict[str, int] = {}
    references: dict[str, set[str]] = {}
    learned_random: list[str] = []
    random_labels: dict[str, str] = {}
    ablation_models: dict[str, str] = {}
    flagship_label = None
    packaged: dict | None = None  # the flagship's hedged row, when the workspace has one
    shown = [("'<below>'" if previous == "--provenance" else arg) for previous, arg in zip(["", *sys.argv[1:]],
                                                                                        sys.argv[1:], strict=False)]
    lines = [f"# {args.title}", "",
             f"Regenerated by `python benchmarks/record.py {' '.join(shown)}` from "
             f"`results/tables/` (commit `{commit(args.workdir)[:10]}`); nothing here is typed.", ""]  # fmt: skip
    if args.provenance:
        lines += [f"How the workspace was made: {args.provenance}", ""]
    for key, name in TABLES.items():
        if not (tables / f"{name}.csv").exists():
            continue
        rows, models, references[key] = read_table(tables / f"{name}.csv")
        record[key] = rows
        labels = {model: label for label, model in models.items()}
        flagship_label = labels.get(args.flagship, flagship_label)
        lines += [(tables / f"{name}.md").read_text().strip(), ""]
        oracles = tuple(lab for lab, model in models.items() if model in ORACLE_MODELS)
        if key == "ablations":
            ablation_models = models
        if key == "random":
            random_labels = labels
            learned_random = [lab for lab in rows if lab not in references[key] and lab not in oracles]
        if args.flagship in labels:
            label = labels[args.flagship]
            first, behind = standing_lines(rows, label, oracles)
            firsts[key] = len(first)
            lines.append(f"Flagship **{label}**: first (oracle rows aside: {', '.join(oracles) or 'none'}) on "
                         f"{len(first)} of 7 metrics "
                         f"({', '.join(first) or 'none'}).")  # fmt: skip
            lines += behind
        if hedged_name(args.flagship) in labels:
            packaged_label = labels[hedged_name(args.flagship)]
            first, behind = standing_lines(rows, packaged_label, oracles)
            packaged = {"split": key, "label": packaged_label, "firsts": len(first)}
            lines.append(f"The flagship as its package forecasts a new cell, hedged (**{packaged_label}**; `opir "
                         f"predict` with the package of this split): first on {len(first)} of 7 metrics "
                         f"({', '.join(first) or 'none'}).")  # fmt: skip
            lines += behind
    if flagship_label is None:
        raise SystemExit(f"{tables}: no table has a row of model {args.flagship!r}")
    seconds = job_seconds(args.workdir)
    record.update(
        flagship=flagship_label,
        commit=commit(args.workdir),
        wall_s=round(args.wall_s if args.wall_s is not None else sum(seconds.values()), 1),
        **({"provenance": args.provenance} if args.provenance else {}),
        **({"flagship_as_packaged": {packaged["split"]: packaged["label"]}} if packaged else {}),
    )
    hedged = None
    if args.electrode_bound is not None:
        hedged = json.loads(args.electrode_bound.read_text().strip().splitlines()[-1])["hedged_oracle"]
    lines += goal_lines(record, flagship_label, firsts, hedged, table4_references=references.get("ablations", ()),
                        learned_random=learned_random, random_labels=random_labels)
    if packaged:
        lines += packaged_goal_lines(record[packaged["split"]], packaged, hedged)
    wall = "measured" if args.wall_s is not None else "sum of the jobs' benchmark files"
    lines += [
        f"- wall time {record['wall_s']:.0f} s ({wall}; goal <= {args.wall_goal_s:.0f} s): "
        f"{_verdict(record['wall_s'], args.wall_goal_s)}",
        "",
    ]
    lines += table4_run_lines(args.workdir / "results" / "metrics" / "system", ablation_models,
                              references.get("ablations", ()))  # fmt: skip
    lines += readout_path_lines([json.loads(path.read_text().strip().splitlines()[-1]) for path in args.readout_paths],
                                ablation_models, args.workdir / "results" / "metrics" / "system",
                                references.get("ablations", ()))  # fmt: skip
    lines += job_time_lines(seconds)
    args.json.write_text(json.dumps(record, indent=1) + "\n")
    args.md.write_text("\n".join(lines))
    print(json.dumps({"md": str(args.md), "json": str(args.json), "flagship": flagship_label,
                      "wall_s": record["wall_s"]}))  # fmt: skip


if __name__ == "__main__":
    main()
