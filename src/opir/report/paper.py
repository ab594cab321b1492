"""The paper's figures that no stage owns: Fig. 1 (an operando sequence at three voltages with the carbonyl and
Li2CO3 windows), Fig. 4 (ground truth, ABCC and the baselines as wavenumber x voltage maps on one colour scale),
the training curves of every model, and the benchmark tables as HTML pages for the Snakemake report.

Fig. 2 (opir.report.data), the rendering illustration (opir.report.render) and Fig. 5 (opir.report.mcr) are
made by their stages' rules; the report reuses those files. Every function here reads the stage files through the
readers of the stages that wrote them (opir.formats), so a format error names the file and what is wrong.
"""

from __future__ import annotations

import csv
import html
import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.colors import Normalize, TwoSlopeNorm  # noqa: E402

from opir.core.errors import ConfigError, DataError
from opir.core.h5io import atomic_path
from opir.formats.predictions import read_predictions
from opir.formats.samples import SampleTable, load_samples, load_split
from opir.report.output import save_figure

log = logging.getLogger(__name__)

WAVENUMBER_LABEL = "wavenumber (cm$^{-1}$)"
VOLTAGE_LABEL = "voltage (V vs Li/Li$^+$)"


# --------------------------------------------------------------------------------------------------------------
# Shared helpers
# --------------------------------------------------------------------------------------------------------------
def run_rows(table: SampleTable, run: str) -> np.ndarray:
    """Row indices of run ``'system/run'`` in acquisition order; an unknown run is a ConfigError listing the runs."""
    keys = np.char.add(np.char.add(table.runs["system_id"].astype(str), "/"), table.runs["run_id"].astype(str))
    hit = np.flatnonzero(keys == run)
    if hit.size != 1:
        raise ConfigError(f"config report.fig1.run: {run!r} is not a run of {table.path}; runs: {', '.join(keys)}")
    first, n_rows = int(table.runs["first_row"][hit[0]]), int(table.runs["n_rows"][hit[0]])
    if n_rows < 2:
        raise DataError(f"{table.path}: run {run!r} has {n_rows} spectrum; a sequence needs at least 2")
    return np.arange(first, first + n_rows)


def most_changing_run(table: SampleTable) -> str:
    """The run whose last spectrum differs most (RMS) from its first: the clearest formation/decomposition."""
    best, best_change = "", -np.inf
    for system, run, first, n_rows in zip(
        table.runs["system_id"], table.runs["run_id"], table.runs["first_row"], table.runs["n_rows"], strict=True
    ):
        if n_rows < 2:
            continue
        change = float(np.sqrt(np.mean((table.absorbance[first + n_rows - 1] - table.absorbance[first]) ** 2)))
        if change > best_change:
            best, best_change = f"{system}/{run}", change
    if not best:
        raise DataError(f"{table.path}: no run has two or more spectra")
    return best


def windows_of(settings: Mapping[str, Any], key: str) -> list[tuple[float, float]]:
    """``[[low, high], ...]`` (or one pair) of config key ``report.fig1.<key>`` as (low, high) tuples; a window
    with low >= high is a ConfigError."""
    value = settings[key]
    pairs = [value] if value and np.isscalar(value[0]) else value
    out = []
    for pair in pairs:
        if len(pair) != 2 or not pair[0] < pair[1]:
            raise ConfigError(f"config report.fig1.{key}: {pair!r} is not a [low, high] window in 1/cm")
        out.append((float(pair[0]), float(pair[1])))
    return out


# --------------------------------------------------------------------------------------------------------------
# Fig. 1: an operando sequence at three voltages
# --------------------------------------------------------------------------------------------------------------
def three_stages(n_rows: int) -> np.ndarray:
    """Positions of the begin, middle and end spectra of a sequence of ``n_rows`` spectra."""
    return np.array([0, (n_rows - 1) // 2, n_rows - 1])


def largest_change(
    wavenumber_cm1: np.ndarray, begin: np.ndarray, end: np.ndarray, window: tuple[float, float], sign: int
) -> tuple[float, float, float] | None:
    """Inside ``window``: the wavenumber where ``end - begin`` is largest in the direction ``sign`` (+1 growth,
    -1 loss), with the begin and end values there; None when the window is off the axis."""
    inside = np.flatnonzero((wavenumber_cm1 >= window[0]) & (wavenumber_cm1 <= window[1]))
    if inside.size == 0:
        return None
    change = sign * (end[inside] - begin[inside])
    at = inside[int(np.argmax(change))]
    return float(wavenumber_cm1[at]), float(begin[at]), float(end[at])


def plot_operando_sequence(
    wavenumber_cm1: np.ndarray,
    spectra: np.ndarray,
    voltage_v: np.ndarray,
    elapsed_s: np.ndarray,
    carbonyl_windows_cm1: Sequence[tuple[float, float]],
    carbonate_windows_cm1: Sequence[tuple[float, float]],
    title: str = "",
) -> plt.Figure:
    """Fig. 1. Left: the begin, middle and end spectra of one run, with the nu(C=O) window(s) and the Li2CO3
    windows shaded; arrows mark the largest loss in the carbonyl window (electrolyte decomposition) and the
    largest growth in each Li2CO3 window (SEI formation), from the begin to the end spectrum. Right: the run's
    voltage profile with the three spectra marked."""
    stages = three_stages(len(spectra))
    colours = plt.get_cmap("viridis")(np.linspace(0.0, 0.85, 3))
    fig, (ax, ax_v) = plt.subplots(
        1, 2, figsize=(12, 4.4), gridspec_kw={"width_ratios": [2.3, 1]}, constrained_layout=True
    )
    for low, high in carbonyl_windows_cm1:
        ax.axvspan(low, high, color="#c44e52", alpha=0.12, lw=0)
    for low, high in carbonate_windows_cm1:
        ax.axvspan(low, high, color="#4c72b0", alpha=0.12, lw=0)
    for colour, (name, index) in zip(colours, zip(("begin", "middle", "end"), stages, strict=True), strict=True):
        ax.plot(wavenumber_cm1, spectra[index], color=colour, lw=1.2,
                label=f"{name}: {voltage_v[index]:.2f} V, {elapsed_s[index] / 3600:.1f} h")
    begin, end = spectra[stages[0]], spectra[stages[-1]]
    span = float(np.ptp(spectra[stages])) or 1.0
    arrows = [(w, -1, "#c44e52", "decomposition\n$\\nu$(C=O)") for w in carbonyl_windows_cm1]
    arrows += [(w, +1, "#4c72b0", "formation\nLi$_2$CO$_3$") for w in carbonate_windows_cm1]
    for window, sign, colour, label in arrows:
        found = largest_change(wavenumber_cm1, begin, end, window, sign)
        if found is None:
            continue
        at, start, stop = found
        # an arrow only where the change goes the way its label says; otherwise the shading alone is shown
        if sign * (stop - start) <= 0.02 * span:
            continue
        ax.annotate("", xy=(at, stop), xytext=(at, start),
                    arrowprops={"arrowstyle": "-|>", "color": colour, "lw": 1.6, "mutation_scale": 14})
        ax.text(at, max(start, stop) + 0.04 * span, label, color=colour, ha="center", va="bottom", fontsize=8)
    ax.set_xlim(wavenumber_cm1.max(), wavenumber_cm1.min())  # IR convention: wavenumber decreasing
    low, high = float(spectra[stages].min()), float(spectra[stages].max())
    ax.set_ylim(low - 0.05 * span, high + 0.3 * span)  # room for the arrow labels
    ax.set_xlabel(WAVENUMBER_LABEL)
    ax.set_ylabel("normalized absorbance")
    handles, labels = ax.get_legend_handles_labels()
    handles += [plt.Rectangle((0, 0), 1, 1, color="#c44e52", alpha=0.25),
                plt.Rectangle((0, 0), 1, 1, color="#4c72b0", alpha=0.25)]
    labels += ["$\\nu$(C=O) window", "Li$_2$CO$_3$ windows"]
    ax.legend(handles, labels, fontsize=8, frameon=False, loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=3)
    ax.set_title("operando spectra at three voltages")
    hours = elapsed_s / 3600
    ax_v.plot(hours, voltage_v, color="0.3", lw=1.0)
    for colour, index in zip(colours, stages, strict=True):
        ax_v.plot(hours[index], voltage_v[index], "o", color=colour, ms=8)
    ax_v.set_xlabel("elapsed time (h)")
    ax_v.set_ylabel(VOLTAGE_LABEL)
    ax_v.set_title("voltage profile")
    if title:
        fig.suptitle(title)
    return fig


def figure1(
    samples_h5: str | os.PathLike, paths: Sequence[str | os.PathLike], settings: Mapping[str, Any]
) -> dict[str, Any]:
    """Fig. 1 from ``samples.h5`` with the ``report`` config section; returns what it shows (for the log)."""
    table = load_samples(samples_h5)
    fig1 = settings["fig1"]
    run = fig1["run"] or most_changing_run(table)
    rows = run_rows(table, run)
    fig = plot_operando_sequence(
        table.wavenumber_cm1, table.absorbance[rows], table.rows["voltage_v"][rows], table.rows["elapsed_s"][rows],
        windows_of(fig1, "carbonyl_window_cm1"), windows_of(fig1, "li2co3_windows_cm1"),
        title=f"Fig. 1  operando IR sequence of {run} ({rows.size} spectra)",
    )
    save_figure(fig, paths, settings["dpi"])
    summary = {"run": run, "n_spectra": int(rows.size)}
    log.info("figure 1: %s", summary)
    return summary


# --------------------------------------------------------------------------------------------------------------
# Fig. 4: qualitative comparison on the system split
# --------------------------------------------------------------------------------------------------------------
def largest_test_run(table: SampleTable, test_ids: Sequence[str]) -> str:
    """The run with the most test samples (ties: the first in the table)."""
    index = table.sample_index(test_ids, "splits.json")
    keys = table.run_key()[index]
    if keys.size == 0:
        raise DataError(f"{table.path}: the split has no test samples")
    names, counts = np.unique(keys, return_counts=True)
    return str(names[int(np.argmax(counts))])


def sequence_maps(
    table: SampleTable, predictions: Mapping[str, str | os.PathLike], run: str, test_ids: Sequence[str],
    quantity: str,
) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    """The test samples of ``run`` in acquisition order: (voltage_v, elapsed_s, {name: map (n, N_f)}), with
    'ground truth' (the measured targets) first, then each model's mean over its draws. ``quantity``
    'difference' maps s(v_m) - s(v_0) (what a forecaster must add to its input), 'absorbance' maps s(v_m)."""
    if quantity not in ("difference", "absorbance"):
        raise ConfigError(f"config report.fig4.quantity: {quantity!r}; expected 'difference' or 'absorbance'")
    index = table.sample_index(test_ids, "splits.json")
    mine = index[table.run_key()[index] == run]
    if mine.size == 0:
        raise ConfigError(f"config report.fig4.run: {run!r} has no test samples in this split")
    mine = mine[np.argsort(table.samples["m"][mine], kind="stable")]
    ids = table.samples["sample_id"][mine]
    initial = table.absorbance[table.samples["initial_row"][mine]]
    reference = initial if quantity == "difference" else 0.0
    maps = {"ground truth": table.absorbance[table.samples["row"][mine]] - reference}
    for name, path in predictions.items():
        pred = read_predictions(path)
        if pred.wavenumber_cm1.shape != table.wavenumber_cm1.shape or not np.allclose(
            pred.wavenumber_cm1, table.wavenumber_cm1
        ):
            raise DataError(f"{path}: wavenumber axis differs from {table.path}")
        lookup = {sid: i for i, sid in enumerate(pred.sample_id)}
        missing = [sid for sid in ids if sid not in lookup]
        if missing:
            raise DataError(f"{path}: no prediction for {len(missing)} test sample(s) of {run}, e.g. {missing[:3]}")
        at = np.array([lookup[sid] for sid in ids])
        maps[name] = pred.prediction[at].mean(axis=1) - reference
    return table.samples["voltage_v"][mine], table.samples["elapsed_s"][mine], maps


def plot_sequence_maps(
    wavenumber_cm1: np.ndarray, voltage_v: np.ndarray, maps: Mapping[str, np.ndarray], quantity: str,
    percentile: float = 99.0, title: str = "", columns: int = 5,
) -> plt.Figure:
    """Fig. 4: one map per model (rows: spectra in acquisition order, labelled by their voltage; columns:
    wavenumber), all on the colour scale of the ground truth, one colour bar; MAE against the ground truth in
    each title; at most ``columns`` maps per row of panels. A narrow first panel in each row shows the voltage of
    each spectrum, because the protocol goes down and up."""
    truth = maps["ground truth"]
    if quantity == "difference":
        limit = float(np.percentile(np.abs(truth), percentile)) or 1e-6
        norm, cmap, label = TwoSlopeNorm(0.0, -limit, limit), "RdBu_r", "s(v$_m$) - s(v$_0$)"
    else:
        low, high = np.percentile(truth, [100 - percentile, percentile])
        norm, cmap, label = Normalize(float(low), float(max(high, low + 1e-6))), "viridis", "absorbance"
    n = len(maps)
    per_row = min(n, columns)
    n_rows = -(-n // per_row)
    fig, axes = plt.subplots(
        n_rows, per_row + 1, figsize=(2.2 + 3.0 * per_row, 0.6 + 3.6 * n_rows), sharey=True, squeeze=False,
        constrained_layout=True, gridspec_kw={"width_ratios": [0.45] + [1] * per_row},
    )
    rows = np.arange(len(voltage_v))
    ticks = np.unique(np.linspace(0, len(rows) - 1, min(len(rows), 6)).round().astype(int))
    for ax in axes[:, 0]:
        ax.plot(voltage_v, rows, color="0.2", lw=1.2, marker=".", ms=3)
        ax.set_xlabel("voltage (V)")
        ax.set_ylabel("test spectra in acquisition order (V)")
        ax.set_title("voltage profile", fontsize=9)
        ax.set_yticks(ticks, [f"{voltage_v[t]:.2f} V" for t in ticks])
    extent = (wavenumber_cm1.max(), wavenumber_cm1.min(), len(rows) - 0.5, -0.5)
    map_axes = axes[:, 1:].ravel()
    image = None
    for ax, (name, values) in zip(map_axes, maps.items(), strict=False):
        image = ax.imshow(values, aspect="auto", cmap=cmap, norm=norm, extent=extent, interpolation="nearest")
        mae = float(np.abs(values - truth).mean())
        ax.set_title(name if name == "ground truth" else f"{name}\nMAE {mae:.3g}", fontsize=9)
        ax.set_xlabel(WAVENUMBER_LABEL)
    for ax in map_axes[n:]:
        ax.set_visible(False)
    fig.colorbar(image, ax=list(map_axes[:n]), label=label, shrink=0.9, pad=0.01)
    if title:
        fig.suptitle(title)
    return fig


def figure4(
    samples_h5: str | os.PathLike, splits_json: str | os.PathLike, predictions: Mapping[str, str | os.PathLike],
    paths: Sequence[str | os.PathLike], settings: Mapping[str, Any], split: str = "system",
    labels: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """Fig. 4 on ``split``: ground truth and every model of ``predictions`` ({model: predictions.h5})."""
    fig4 = settings["fig4"]
    table = load_samples(samples_h5)
    test_ids = load_split(splits_json, split)["test"]
    run = fig4["run"] or largest_test_run(table, test_ids)
    named = {(labels or {}).get(model, model): path for model, path in predictions.items()}
    voltage, _, maps = sequence_maps(table, named, run, test_ids, fig4["quantity"])
    fig = plot_sequence_maps(
        table.wavenumber_cm1, voltage, maps, fig4["quantity"], fig4["colour_percentile"],
        title=f"Fig. 4  {split} split, held-out run {run}: {len(voltage)} test spectra",
    )
    save_figure(fig, paths, settings["dpi"])
    summary = {"run": run, "split": split, "n_spectra": int(len(voltage)), "models": list(named)}
    log.info("figure 4: %s", summary)
    return summary


# --------------------------------------------------------------------------------------------------------------
# Training curves
# --------------------------------------------------------------------------------------------------------------
def read_curve(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """A training_curve.csv (opir.formats.model_dir.write_curve): a 'step' column and numeric loss columns."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: training curve does not exist")
    with open(path, newline="") as handle:
        rows = list(csv.DictReader(handle))
    if not rows:
        return {}
    if "step" not in rows[0]:
        raise DataError(f"{path}: no 'step' column (columns: {list(rows[0])})")
    curve = {}
    for key in rows[0]:
        try:
            curve[key] = np.array([float(row[key]) if row[key] != "" else np.nan for row in rows])
        except ValueError as err:
            raise DataError(f"{path}: column {key!r} is not numeric ({err})") from None
    return curve


def plot_training_curves(curves: Mapping[str, Mapping[str, np.ndarray]]) -> plt.Figure:
    """One panel per model ('split/model'): every loss column against the optimizer step, log scale (the
    learning rate and gradient norm are left out: other units). An empty curve (a pretrained VAE) says so."""
    n = len(curves)
    if n == 0:
        raise DataError("no training curve to plot")
    cols = min(n, 4)
    nrows = int(np.ceil(n / cols))
    fig, axes = plt.subplots(nrows, cols, figsize=(3.6 * cols, 2.9 * nrows), squeeze=False,
                             constrained_layout=True)
    for ax, (name, curve) in zip(axes.flat, curves.items(), strict=False):
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("optimizer step")
        ax.set_ylabel("loss")
        if not curve:
            ax.text(0.5, 0.5, "not trained here\n(pretrained weights)", ha="center", va="center",
                    transform=ax.transAxes, color="0.4")
            continue
        for key, values in curve.items():
            if key in ("step", "lr", "grad_norm") or not np.isfinite(values).any():
                continue
            positive = values > 0
            total = key == "loss"  # drawn on top, so a term equal to the total does not hide it
            ax.plot(curve["step"][positive], values[positive], lw=2.0 if total else 1.0, ls="-" if total else "--",
                    color="k" if total else None, zorder=3 if total else 2, label=key,
                    marker="o" if positive.sum() < 5 else None, ms=3)
        if ax.lines:
            ax.set_yscale("log")
            ax.legend(fontsize=7, frameon=False)
    for ax in axes.flat[n:]:
        ax.set_visible(False)
    fig.suptitle("training curves (loss terms as logged)")
    return fig


def training_curves(
    curve_files: Mapping[str, str | os.PathLike], paths: Sequence[str | os.PathLike], settings: Mapping[str, Any]
) -> dict[str, int]:
    """The training curves of every model ({'split/model': training_curve.csv}) in one figure."""
    curves = {name: read_curve(path) for name, path in curve_files.items()}
    save_figure(plot_training_curves(curves), paths, settings["dpi"])
    summary = {name: int(len(curve.get("step", []))) for name, curve in curves.items()}
    log.info("training curves (logged points per model): %s", summary)
    return summary


# --------------------------------------------------------------------------------------------------------------
# Tables for the report
# --------------------------------------------------------------------------------------------------------------
TABLE_STYLE = (
    "body{font-family:sans-serif;margin:1.5em}caption{font-weight:bold;text-align:left;padding:.5em 0}"
    "table{border-collapse:collapse;font-size:14px}th,td{border-bottom:1px solid #ccc;padding:4px 10px;"
    "text-align:right}th:first-child,td:first-child{text-align:left}thead th{border-bottom:2px solid #333}"
)


def parse_markdown_table(text: str, source: str) -> tuple[str, list[str], list[list[str]]]:
    """(caption, header, rows) of a benchmark table in Markdown (opir.evaluate.tables.to_markdown: a bold caption line,
    then a pipe table); a malformed table is a DataError naming ``source`` and the line."""
    lines = [line.strip() for line in text.splitlines()]
    caption = next((line.strip("*") for line in lines if line.startswith("**") and line.endswith("**")), "")
    table = [(number, line) for number, line in enumerate(lines, 1) if line.startswith("|")]
    if len(table) < 3:
        raise DataError(f"{source}: no Markdown table with a header, a separator and at least one row")

    def split(line: str) -> list[str]:
        return [cell.strip() for cell in line.strip("|").split("|")]

    header = split(table[0][1])
    rows = []
    for number, line in table[2:]:
        cells = split(line)
        if len(cells) != len(header):
            raise DataError(f"{source}: line {number} has {len(cells)} cells, the header {len(header)}")
        rows.append(cells)
    return caption, header, rows


def table_html(markdown_path: str | os.PathLike, out: str | os.PathLike) -> int:
    """A benchmark table (its Markdown version: formatted mean ± std, best model in bold) as a standalone HTML
    page for the report; returns the number of rows."""
    markdown_path = Path(markdown_path)
    if not markdown_path.exists():
        raise DataError(f"{markdown_path}: table does not exist")
    caption, header, rows = parse_markdown_table(markdown_path.read_text(encoding="utf-8"), str(markdown_path))

    def cell(tag: str, text: str) -> str:
        bold = text.startswith("**") and text.endswith("**") and len(text) > 4
        inner = f"<b>{html.escape(text[2:-2])}</b>" if bold else html.escape(text)
        return f"<{tag}>{inner}</{tag}>"

    page = (
        f'<!DOCTYPE html><html><head><meta charset="utf-8"><title>{html.escape(caption)}</title>'
        f"<style>{TABLE_STYLE}</style></head><body><table><caption>{html.escape(caption)}</caption>"
        f"<thead><tr>{''.join(cell('th', h) for h in header)}</tr></thead><tbody>"
        + "".join(f"<tr>{''.join(cell('td', c) for c in row)}</tr>" for row in rows)
        + f"</tbody></table><p>Bold: best non-reference model per column. Source: {html.escape(markdown_path.name)}"
        " (also .csv with every number, and .tex).</p></body></html>\n"
    )
    with atomic_path(out) as tmp:
        tmp.write_text(page, encoding="utf-8")
    return len(rows)
