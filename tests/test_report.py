"""The report stage: the paper's figures of opir.report.paper on a small sample table made here, the tables as
HTML, and the Snakemake HTML report of a finished test-config workspace opened in headless Chromium."""

from __future__ import annotations

import html
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import matplotlib.image
import numpy as np
import pytest
from conftest import run_snakemake
from helpers import write_toy_dataset

from opir.core.errors import ConfigError, DataError
from opir.formats.model_dir import write_curve
from opir.formats.predictions import write_predictions
from opir.formats.samples import load_samples
from opir.report import paper

SETTINGS = {
    "dpi": 60,
    "fig1": {"run": None, "carbonyl_window_cm1": [1700.0, 1850.0], "li2co3_windows_cm1": [[1410.0, 1520.0]]},
    "fig4": {"run": None, "models": None, "quantity": "difference", "colour_percentile": 99.0},
}


@pytest.fixture
def toy(tmp_path):
    return write_toy_dataset(tmp_path)


def assert_drawn(png: Path) -> None:
    """A figure that is more than an empty canvas: enough distinct grey levels spread over the image."""
    image = matplotlib.image.imread(png)[..., :3].mean(axis=2)
    assert image.std() > 0.05, f"{png} is nearly uniform"


def assert_pdf(pdf: Path) -> None:
    data = pdf.read_bytes()
    assert data.startswith(b"%PDF") and len(data) > 2000, f"{pdf} is not a drawn PDF"


# ---- Fig. 1 ------------------------------------------------------------------------------------------------------
def test_three_stages_begin_middle_end():
    assert paper.three_stages(2).tolist() == [0, 0, 1]
    assert paper.three_stages(11).tolist() == [0, 5, 10]


def test_largest_change_finds_growth_and_loss():
    wavenumber = np.arange(1000.0, 2001.0, 100.0)  # 1000, 1100, ..., 2000
    begin = np.zeros(wavenumber.size)
    end = begin.copy()
    end[wavenumber == 1500] = 0.3  # growth inside the window
    end[wavenumber == 1200] = 0.9  # larger growth, but outside it
    end[wavenumber == 1800] = -0.4  # loss
    assert paper.largest_change(wavenumber, begin, end, (1400, 1600), +1) == (1500.0, 0.0, 0.3)
    assert paper.largest_change(wavenumber, begin, end, (1700, 1900), -1) == (1800.0, 0.0, -0.4)
    assert paper.largest_change(wavenumber, begin, end, (100, 200), +1) is None


def test_windows_of_accepts_one_or_many_and_rejects_reversed():
    assert paper.windows_of({"w": [1.0, 2.0]}, "w") == [(1.0, 2.0)]
    assert paper.windows_of({"w": [[1.0, 2.0], [3, 4]]}, "w") == [(1.0, 2.0), (3.0, 4.0)]
    with pytest.raises(ConfigError, match="report.fig1.w"):
        paper.windows_of({"w": [2.0, 1.0]}, "w")


def test_most_changing_run_and_unknown_run(toy):
    table = load_samples(toy["samples"])
    # make sys_b's last spectrum change most
    last_b = int(table.runs["first_row"][1] + table.runs["n_rows"][1] - 1)
    table.absorbance[last_b] += 1.0
    assert paper.most_changing_run(table) == "sys_b/run01"
    assert paper.run_rows(table, "sys_b/run01").tolist() == list(range(13, 26))
    with pytest.raises(ConfigError, match=r"report.fig1.run: 'nope/run01' is not a run of .*samples.h5; runs: sys_a"):
        paper.run_rows(table, "nope/run01")


def test_figure1_writes_png_and_pdf(toy, tmp_path):
    settings = {**SETTINGS, "fig1": {**SETTINGS["fig1"], "run": "sys_c/run01"}}
    png, pdf = tmp_path / "fig1.png", tmp_path / "fig1.pdf"
    summary = paper.figure1(toy["samples"], [png, pdf], settings)
    assert summary == {"run": "sys_c/run01", "n_spectra": 13}
    assert_drawn(png)
    assert_pdf(pdf)


# ---- Fig. 4 ------------------------------------------------------------------------------------------------------
def _predictions(toy, tmp_path, name, kind):
    """Predictions of the system split's test samples: 'persistence' (the initial spectrum) or 'perfect' (the
    measured target, as two identical draws)."""
    table = load_samples(toy["samples"])
    ids = [sid for sid in table.samples["sample_id"] if sid.startswith("sys_c/")]
    index = table.sample_index(ids, "test")
    rows = table.samples["initial_row" if kind == "persistence" else "row"][index]
    values = np.repeat(table.absorbance[rows][:, None, :], 2, axis=1)
    path = tmp_path / f"{name}.h5"
    write_predictions(path, ids[::-1], table.wavenumber_cm1, values[::-1])  # order must not matter
    return path


def test_sequence_maps_truth_and_models(toy, tmp_path):
    table = load_samples(toy["samples"])
    test_ids = [sid for sid in table.samples["sample_id"] if sid.startswith("sys_c/")]
    predictions = {
        "persistence": _predictions(toy, tmp_path, "persistence", "persistence"),
        "perfect": _predictions(toy, tmp_path, "perfect", "perfect"),
    }
    voltage, elapsed, maps = paper.sequence_maps(table, predictions, "sys_c/run01", test_ids, "difference")
    assert list(maps) == ["ground truth", "persistence", "perfect"]
    assert np.all(np.diff(elapsed) > 0), "rows are not in acquisition order"
    np.testing.assert_allclose(maps["perfect"], maps["ground truth"], atol=1e-6)
    np.testing.assert_allclose(maps["persistence"], 0.0, atol=1e-6)
    first = int(table.runs["first_row"][2])
    np.testing.assert_allclose(maps["ground truth"][-1], table.absorbance[first + 12] - table.absorbance[first])
    _, _, absolute = paper.sequence_maps(table, predictions, "sys_c/run01", test_ids, "absorbance")
    np.testing.assert_allclose(absolute["persistence"][0], table.absorbance[first], atol=1e-6)
    assert voltage[0] == pytest.approx(table.rows["voltage_v"][first + 1])


def test_sequence_maps_errors_name_the_problem(toy, tmp_path):
    table = load_samples(toy["samples"])
    test_ids = [sid for sid in table.samples["sample_id"] if sid.startswith("sys_c/")]
    partial = tmp_path / "partial.h5"
    write_predictions(partial, test_ids[:3], table.wavenumber_cm1, np.zeros((3, table.wavenumber_cm1.size)))
    with pytest.raises(DataError, match=r"partial.h5: no prediction for 9 test sample\(s\) of sys_c/run01"):
        paper.sequence_maps(table, {"m": partial}, "sys_c/run01", test_ids, "difference")
    with pytest.raises(ConfigError, match="'sys_a/run01' has no test samples"):
        paper.sequence_maps(table, {}, "sys_a/run01", test_ids, "difference")
    with pytest.raises(ConfigError, match="report.fig4.quantity"):
        paper.sequence_maps(table, {}, "sys_c/run01", test_ids, "ratio")


def test_figure4_writes_png_and_pdf(toy, tmp_path):
    predictions = {
        "abcc": _predictions(toy, tmp_path, "abcc", "perfect"),
        "persistence": _predictions(toy, tmp_path, "persistence", "persistence"),
    }
    png, pdf = tmp_path / "fig4.png", tmp_path / "fig4.pdf"
    summary = paper.figure4(toy["samples"], toy["splits"], predictions, [png, pdf], SETTINGS,
                            labels={"abcc": "ABCC"})
    assert summary == {"run": "sys_c/run01", "split": "system", "n_spectra": 12, "models": ["ABCC", "persistence"]}
    assert_drawn(png)
    assert_pdf(pdf)


def test_plot_sequence_maps_wraps_many_models():
    wavenumber = np.linspace(800.0, 2000.0, 20)
    voltage = np.array([2.0, 1.0, 0.5, 1.5])
    maps = {"ground truth": np.ones((4, 20)), **{f"model {i}": np.zeros((4, 20)) for i in range(6)}}
    fig = paper.plot_sequence_maps(wavenumber, voltage, maps, "difference", columns=3)
    titles = [ax.get_title() for ax in fig.axes if ax.get_visible() and ax.get_images()]
    assert titles[0] == "ground truth" and titles[1] == "model 0\nMAE 1"
    assert len(titles) == 7
    voltage_panels = [ax for ax in fig.axes if ax.get_title() == "voltage profile"]
    assert len(voltage_panels) == 3, "one voltage panel per row of maps"


# ---- training curves ---------------------------------------------------------------------------------------------
def test_training_curves(tmp_path):
    abcc = tmp_path / "abcc.csv"
    write_curve([{"step": s, "lr": 1e-3, "grad_norm": 1.0, "loss": 1.0 / s, "loss_mass": 0.1 / s}
                 for s in (10, 20, 30)], abcc)
    pretrained = tmp_path / "vae.csv"
    write_curve([], pretrained)
    curve = paper.read_curve(abcc)
    np.testing.assert_allclose(curve["loss"], [0.1, 0.05, 1 / 30])
    assert paper.read_curve(pretrained) == {}
    png, pdf = tmp_path / "curves.png", tmp_path / "curves.pdf"
    summary = paper.training_curves({"system/abcc": abcc, "system/vae": pretrained}, [png, pdf], SETTINGS)
    assert summary == {"system/abcc": 3, "system/vae": 0}
    assert_drawn(png)
    assert_pdf(pdf)
    bad = tmp_path / "bad.csv"
    bad.write_text("step,loss\n1,oops\n")
    with pytest.raises(DataError, match="bad.csv: column 'loss' is not numeric"):
        paper.read_curve(bad)
    with pytest.raises(DataError, match="missing.csv: training curve does not exist"):
        paper.read_curve(tmp_path / "missing.csv")


# ---- tables --------------------------------------------------------------------------------------------------
def test_table_html(tmp_path):
    markdown = tmp_path / "table3_system.md"
    markdown.write_text(
        "**Table 3: OpIRBench, system split**\n\n| Model | MAE ↓ |\n|---|---|\n| ABCC | **1.0 ± 0.1** |\n"
        "| Persistence <ref> | 2.0 ± 0.2 |\n"
    )
    out = tmp_path / "table3.html"
    assert paper.table_html(markdown, out) == 2
    page = out.read_text()
    assert "<caption>Table 3: OpIRBench, system split</caption>" in page
    assert "<td><b>1.0 ± 0.1</b></td>" in page
    assert "Persistence &lt;ref&gt;" in page
    markdown.write_text("**T**\n\n| Model | MAE |\n|---|---|\n| ABCC | 1 | 2 |\n")
    with pytest.raises(DataError, match="table3_system.md: line 5 has 3 cells, the header 2"):
        paper.table_html(markdown, out)


# ---- the HTML report in a browser -------------------------------------------------------------------------------
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
# what the report must show: every figure and table of the paper (the report lists results by file name)
REPORT_ENTRIES = (
    "fig1_operando.png",
    "fig2_data.png",
    "fig4_maps.png",
    "fig5_sei_pathway.png",
    "render_illustration.png",
    "training_curves_random.png",
    "training_curves_system.png",
    "table2_random.html",
    "table3_system.html",
)
REPORT_CATEGORIES = ("Data", "Rendering", "Benchmark", "MCR", "Training")


def chromium(*args: str, user_data_dir: Path, timeout: int = 120) -> subprocess.CompletedProcess:
    flags = [
        "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        "--disable-dev-shm-usage", f"--user-data-dir={user_data_dir}",
    ]
    return subprocess.run([CHROMIUM, *flags, *args], capture_output=True, text=True, timeout=timeout)


def visible_text(dom: str) -> str:
    """The DOM without <script>/<style> contents: what the report rendered, not the data it embeds."""
    dom = re.sub(r"<(script|style)\b.*?</\1>", " ", dom, flags=re.S | re.I)
    return html.unescape(re.sub(r"<[^>]+>", " ", dom))


# Appended to a copy of the report: drives the report's own app (the same calls its menu buttons make) through
# every category and every image result, and writes what the page showed into <pre id="opir-check">. It ends on
# the Fig. 4 view, so a screenshot of the copy shows a figure inside the report.
WALK_THE_REPORT = """
<script>
window.addEventListener("load", () => {
  const check = {categories: {}, images: {}};
  const steps = [];
  for (const category of Object.keys(categories)) {
    steps.push(() => app.setView({navbarMode: "menu"}));  // back to "Results", as a reader would go
    steps.push(() => app.showCategory(category));
    steps.push(() => { check.categories[category] = document.querySelector("#app").innerText; });
  }
  const images = Object.keys(results).filter((path) => results[path].mime_type === "image/png");
  images.sort((a, b) => a.includes("fig4") - b.includes("fig4"));  // Fig. 4 last: the screenshot shows it
  for (const path of images) {
    steps.push(() => app.setView({content: "img", contentPath: results[path].data_uri, resultPath: path}));
    steps.push(() => {
      const shown = Array.from(document.images).find((img) => img.src === results[path].data_uri);
      check.images[path] = shown ? [shown.complete, shown.naturalWidth, shown.naturalHeight] : null;
    });
  }
  steps.push(() => {
    const out = document.createElement("pre");
    out.id = "opir-check";
    out.style.display = "none";
    out.textContent = JSON.stringify(check);
    document.body.appendChild(out);
  });
  const run = (i) => { if (i < steps.length) { steps[i](); setTimeout(() => run(i + 1), 300); } };
  setTimeout(() => run(0), 300);
});
</script>
"""


def walked_copy(report: Path, folder: Path) -> Path:
    text = report.read_text(encoding="utf-8")
    assert "</body>" in text, f"{report} has no </body>"
    copy = folder / "report_walk.html"
    head, _, tail = text.rpartition("</body>")
    copy.write_text(head + WALK_THE_REPORT + "</body>" + tail, encoding="utf-8")
    return copy


@pytest.fixture(scope="module")
def report_html(finished_workspace) -> Path:
    """The test config's finished workspace (conftest.py), then `snakemake --report`. The fixture is named as a
    parameter, not looked up at run time, so that pytest (and any grouping of tests by fixture) sees the
    dependency."""
    workdir = finished_workspace
    run_snakemake(workdir, "--cores", "2", "paper_figures")
    run_snakemake(workdir, "--cores", "2", "paper_figures", "--report", "results/report.html")
    report = workdir / "results" / "report.html"
    assert report.stat().st_size > 100_000, "the report is too small to hold its figures"
    return report


@pytest.mark.workflow
@pytest.mark.skipif(CHROMIUM is None, reason="Debian chromium is not installed (CI installs it with .ci/run)")
def test_report_renders_its_figures_in_chromium(report_html, tmp_path):
    profile = tmp_path / "chromium-profile"
    # 1. the report as delivered: the app renders its menu of categories (an empty shell shows none)
    dumped = chromium("--virtual-time-budget=10000", "--dump-dom", report_html.resolve().as_uri(),
                      user_data_dir=profile)
    assert dumped.returncode == 0, dumped.stderr[-2000:]
    menu = visible_text(dumped.stdout)
    missing = [name for name in REPORT_CATEGORIES if name not in menu]
    assert not missing, f"the report's menu lacks {missing}; it shows: {' '.join(menu.split())[:600]}"

    # 2. every category lists its figures and tables, and every PNG figure decodes when opened in the report
    walk = walked_copy(report_html, tmp_path)
    dumped = chromium("--virtual-time-budget=60000", "--dump-dom", walk.as_uri(), user_data_dir=profile)
    found = re.search(r'<pre id="opir-check"[^>]*>(.*?)</pre>', dumped.stdout, flags=re.S)
    assert found, f"the report walk did not finish: {dumped.stderr[-1500:]}"
    check = json.loads(html.unescape(found.group(1)))
    listed = " ".join(check["categories"].values())
    tables = [path.name for path in (report_html.parent / "report" / "tables").glob("*.html")]  # Table 4 too
    missing = [name for name in (*REPORT_ENTRIES, *tables) if name not in listed]
    assert not missing, f"no category lists {missing}; categories show: {check['categories']}"
    assert {Path(path).name for path in check["images"]} >= {n for n in REPORT_ENTRIES if n.endswith(".png")}
    broken = {path: shown for path, shown in check["images"].items() if not shown or not shown[1] > 100}
    assert not broken, f"figures not displayed (complete, width, height): {broken}"

    # 3. a screenshot of the report showing Fig. 4 is a picture, not a near-uniform page
    screenshot = tmp_path / "report.png"
    shot = chromium("--virtual-time-budget=60000", f"--screenshot={screenshot}", "--window-size=1400,1000",
                    walk.as_uri(), user_data_dir=profile)
    assert screenshot.exists(), shot.stderr[-2000:]
    pixels = matplotlib.image.imread(screenshot)[..., :3]
    assert pixels.shape[:2] == (1000, 1400)
    assert pixels.std() > 0.05, f"the screenshot is nearly uniform (std {pixels.std():.3f})"
    if os.environ.get("OPIR_KEEP_SCREENSHOT"):
        shutil.copy(screenshot, os.environ["OPIR_KEEP_SCREENSHOT"])
