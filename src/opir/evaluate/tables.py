"""OpIRBench tables (paper Tables 2, 3 and 4) from metrics files: CSV, Markdown and LaTeX.

One row per model, mean +- std over test samples (DILATE: over test runs), with the paper's scaling: MAE x1e-2,
MSE x1e-3, RMSE x1e-2, SAM in degrees, CosSim, R2, DILATE. Models come first in the order given; the reference rows
(Random, Persistence, Noise floor, the VAE read-out bounds) close the table. The best value of each column among the
models (reference rows excluded: the noise floor would always win) is bold in Markdown and LaTeX. Table 4 may pool
seed replicates of a model into its row (:func:`pool_replicates`).
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from opir.core.errors import DataError
from opir.core.h5io import atomic_path

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Column:
    metric: str  # key in the metrics file's summary
    header: str  # plain-text header (CSV, Markdown)
    latex: str
    scale: float  # the value shown is value * scale
    decimals: int
    higher_is_better: bool


COLUMNS = (
    Column("mae", "MAE (x1e-2)", r"MAE ($\times10^{-2}$)", 1e2, 3, False),
    Column("mse", "MSE (x1e-3)", r"MSE ($\times10^{-3}$)", 1e3, 3, False),
    Column("rmse", "RMSE (x1e-2)", r"RMSE ($\times10^{-2}$)", 1e2, 3, False),
    Column("sam_deg", "SAM (deg)", r"SAM ($^\circ$)", 1.0, 3, False),
    Column("cos_sim", "CosSim", "CosSim", 1.0, 4, True),
    Column("r2", "R2", r"$R^2$", 1.0, 4, True),
    Column("dilate", "DILATE", "DILATE", 1.0, 4, False),
)

#: Reference rows, in the order they close every table: the two naive ones; the within-run smoother (a yardstick
#: of the random split that reads the test run's own training targets, not a model of the condition); then the
#: oracle rows that read the test targets (the simulator's truth; the targets' own images through the VAE,
#: opir.predict.bound). Reference rows are never bold.
REFERENCE_LABELS = {
    "random": "Random", "persistence": "Persistence", "within_run_smoother": "Within-run smoother",
    "noise_floor": "Noise floor",
    "vae_readout_waveform": "VAE read-out bound (waveform)",
    "vae_readout_variation": "VAE read-out bound (Chemical Flow)",
}  # fmt: skip


#: Tables of the benchmark: table name -> (split, caption). Table 4 lists the ablations of the config.
TABLES = {
    "table2_random": (
        "random",
        "Table 2: OpIRBench, random split (mean ± std over test samples; DILATE over test runs)",
    ),
    "table3_system": (
        "system",
        "Table 3: OpIRBench, system split (mean ± std over test samples; DILATE over test runs)",
    ),
    "table4_ablations": (
        "system",
        "Table 4: ablations of ABCC, system split (mean ± std over test samples; DILATE over test runs)",
    ),
}


def table_models(
    table: str, prediction_models: Sequence[str], reference_models: Sequence[str], ablation_models: Sequence[str]
) -> list[str]:
    """Rows of a table, without repeats: the benchmark models (Tables 2, 3) or the ablations (Table 4), then the
    reference rows."""
    if table not in TABLES:
        raise ValueError(f"unknown table {table!r}; expected one of {sorted(TABLES)}")
    models = ablation_models if table == "table4_ablations" else prediction_models
    return list(dict.fromkeys([*models, *reference_models]))


def read_metrics(paths: Mapping[str, str | os.PathLike]) -> dict[str, dict[str, Any]]:
    """``{model: metrics record}``; each file must be an evaluate output (docs/formats.md)."""
    records = {}
    for model, path in paths.items():
        try:
            record = json.loads(Path(path).read_text())
        except (OSError, json.JSONDecodeError) as err:
            raise DataError(f"{path}: cannot read metrics of model '{model}' ({err})") from err
        missing = [c.metric for c in COLUMNS if c.metric not in record.get("summary", {})]
        if missing:
            raise DataError(f"{path}: summary lacks metric(s) {missing}")
        records[model] = record
    return records


def table_caption(table: str, seeds: int = 1) -> str:
    """The caption of ``table``; Table 4 with several seeds says that its rows are means over seeds."""
    caption = TABLES[table][1]
    if table == "table4_ablations" and seeds > 1:
        caption = caption.replace("(mean ± std over test samples; DILATE over test runs)",
                                  f"(mean over {seeds} training seeds ± std between them)")
    return caption


def pool_replicates(
    records: Mapping[str, Mapping[str, Any]], replicates: Mapping[str, str] | None
) -> dict[str, dict[str, Any]]:
    """Fold the records of seed replicates (``{replicate: model}``) into their model's: each metric's mean is the
    mean of the seeds' means and its std the standard deviation between them (ddof 0), so the row says how much
    the seed alone moves it. Models without replicates keep their records."""
    replicates = dict(replicates or {})
    unknown = sorted(set(replicates.values()) - set(records))
    if unknown:
        raise DataError(f"seed replicates of model(s) {unknown} that have no metrics of their own")
    pooled = {}
    for model, record in records.items():
        if model in replicates:
            continue
        group = [record] + [records[r] for r, base in replicates.items() if base == model]
        if len(group) == 1:
            pooled[model] = record
            continue
        summary = {}
        for metric in record["summary"]:
            means = [float(r["summary"][metric]["mean"]) for r in group]
            summary[metric] = {"mean": float(np.mean(means)), "std": float(np.std(means)), "seeds": means}
        pooled[model] = {**record, "summary": summary, "seeds": len(group)}
    return pooled


def benchmark_table(records: Mapping[str, Mapping[str, Any]], labels: Mapping[str, str] | None = None) -> pd.DataFrame:
    """Numeric table: one row per model (models, then reference rows), scaled mean and std of each column."""
    labels = {**REFERENCE_LABELS, **(labels or {})}
    models = [m for m in records if m not in REFERENCE_LABELS] + [m for m in REFERENCE_LABELS if m in records]
    splits = {record.get("split") for record in records.values()}
    if len(splits) > 1:
        raise DataError(f"a table mixes metrics of several splits: {sorted(map(str, splits))}")
    rows = []
    for model in models:
        record = records[model]
        row = {
            "model": model,
            "label": labels.get(model, model),
            "reference": model in REFERENCE_LABELS,
            "n_samples": record["n_samples"],
            "n_runs": record["n_runs"],
        }
        for column in COLUMNS:
            summary = record["summary"][column.metric]
            row[f"{column.header} mean"] = summary["mean"] * column.scale
            row[f"{column.header} std"] = summary["std"] * column.scale
        rows.append(row)
    return pd.DataFrame(rows)


def _best(frame: pd.DataFrame, column: Column) -> set[int]:
    candidates = frame[~frame["reference"]]
    if candidates.empty:
        return set()
    values = candidates[f"{column.header} mean"].round(column.decimals)
    best = values.max() if column.higher_is_better else values.min()
    return set(candidates.index[values == best])


def _cell(frame: pd.DataFrame, index: int, column: Column, plus_minus: str) -> str:
    mean = frame.at[index, f"{column.header} mean"]
    std = frame.at[index, f"{column.header} std"]
    return f"{mean:.{column.decimals}f}{plus_minus}{std:.{column.decimals}f}"


def to_markdown(frame: pd.DataFrame, caption: str) -> str:
    headers = ["Model", *[f"{c.header} {'↑' if c.higher_is_better else '↓'}" for c in COLUMNS]]
    lines = [f"**{caption}**", "", "| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    best = {c.metric: _best(frame, c) for c in COLUMNS}
    for index in frame.index:
        cells = [str(frame.at[index, "label"])]
        for column in COLUMNS:
            text = _cell(frame, index, column, " ± ")
            cells.append(f"**{text}**" if index in best[column.metric] else text)
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _latex_escape(text: str) -> str:
    for char in ("\\", "&", "%", "$", "#", "_", "{", "}"):
        text = text.replace(char, "\\" + char if char != "\\" else r"\textbackslash{}")
    return text


def to_latex(frame: pd.DataFrame, caption: str, label: str) -> str:
    best = {c.metric: _best(frame, c) for c in COLUMNS}
    arrows = {True: r"$\uparrow$", False: r"$\downarrow$"}
    header = " & ".join(["Model", *[f"{c.latex} {arrows[c.higher_is_better]}" for c in COLUMNS]])
    lines = [
        r"\begin{table}[t]",
        r"\centering",
        "\\caption{" + _latex_escape(caption).replace("±", r"$\pm$") + "}",
        f"\\label{{{label}}}",
        r"\resizebox{\linewidth}{!}{%",
        r"\begin{tabular}{l" + "c" * len(COLUMNS) + "}",
        r"\toprule",
        header + r" \\",
        r"\midrule",
    ]
    previous_reference = False
    for index in frame.index:
        is_reference = bool(frame.at[index, "reference"])
        if is_reference and not previous_reference and index != frame.index[0]:
            lines.append(r"\midrule")
        previous_reference = is_reference
        cells = [_latex_escape(str(frame.at[index, "label"]))]
        for column in COLUMNS:
            text = _cell(frame, index, column, r" \pm ")
            # bold inside math mode needs \mathbf (\textbf does not reach the digits)
            cells.append(f"$\\mathbf{{{text}}}$" if index in best[column.metric] else f"${text}$")
        lines.append(" & ".join(cells) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}}", r"\end{table}"]
    return "\n".join(lines) + "\n"


def write_benchmark_table(
    metrics_paths: Mapping[str, str | os.PathLike],
    outputs: Sequence[str | os.PathLike],
    caption: str,
    label: str,
    labels: Mapping[str, str] | None = None,
    replicates: Mapping[str, str] | None = None,
) -> pd.DataFrame:
    """Gather metrics files into one table and write it as CSV, Markdown and LaTeX (``outputs``: the three paths,
    recognized by suffix); ``replicates`` (``{replicate: model}``) are pooled into their model's row."""
    frame = benchmark_table(pool_replicates(read_metrics(metrics_paths), replicates), labels)
    writers = {
        ".csv": lambda: frame.to_csv(index=False, float_format="%.6g"),
        ".md": lambda: to_markdown(frame, caption),
        ".tex": lambda: to_latex(frame, caption, label),
    }
    for output in outputs:
        suffix = Path(output).suffix
        if suffix not in writers:
            raise ValueError(f"{output}: table outputs must end in .csv, .md or .tex")
        with atomic_path(output) as tmp:
            Path(tmp).write_text(writers[suffix]())
    log.info("%s: %d rows -> %s", caption, len(frame), ", ".join(map(str, outputs)))
    return frame
