"""Two-stream MCR (opir.mcr): references from a calibration set of real OPUS files, streams with fixed references,
validation against known truth, and SEI pathway recovery (Fig. 5).

The data are made here: pseudo-Voigt component spectra, a calibration set written with
opir.formats.opus_writer.write_opus on an instrument axis, and operando runs whose SEI grows irreversibly below onset
potentials, stored in the samples.h5 layout of docs/architecture.md."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest

from opir.core.arrays import cosine_similarity_rows
from opir.core.config import parse_recipe
from opir.core.errors import DataError, OpusReadError
from opir.core.h5io import atomic_h5, write_axis
from opir.formats.opus_writer import write_opus
from opir.mcr.pathway import build_pathway
from opir.mcr.references import (
    anion_of,
    build_references,
    design_from_table,
    initial_concentrations,
    load_calibration,
    read_calibration_table,
    read_references,
)
from opir.mcr.streams import build_streams, decompose_streams, flag_poorly_explained
from opir.mcr.validate import truth_files, validate_against_truth
from opir.preprocess.spectra import apply
from opir.report.mcr import figure5

PREPROCESS = {"n_points": 241}  # the rest as the workflow's defaults (modpoly baseline)
GRID = np.linspace(800.0, 2000.0, 241)
OPUS_FIRST, OPUS_LAST, OPUS_NPT = 4000.0, 600.0, 1701  # descending, 2 1/cm, like an instrument file
BANDS = {  # component: [(center_cm1, hwhm_cm1, height)]
    "EC_free": [(1800, 12, 1.0), (1160, 15, 0.5), (893, 6, 0.4)],
    "EC_solvated": [(1768, 12, 1.0), (1200, 15, 0.4), (904, 6, 0.5)],
    "DMC_free": [(1752, 10, 1.0), (1275, 15, 0.9), (915, 8, 0.3)],
    "DMC_solvated": [(1720, 10, 1.0), (1310, 15, 0.8), (932, 8, 0.3)],
    "PF6": [(842, 10, 1.0), (870, 12, 0.2)],
    "LEDC": [(1650, 15, 1.0), (1400, 15, 0.5), (1310, 15, 0.8), (1085, 15, 0.4), (825, 8, 0.6)],
    "LMC": [(1665, 15, 0.8), (1465, 15, 0.3), (1380, 15, 0.5), (1095, 12, 0.5), (830, 8, 0.5)],
    "Li2CO3": [(1500, 20, 1.0), (1430, 20, 1.0), (867, 8, 0.5)],
    "polyVC": [(1810, 12, 1.0), (1245, 20, 0.6)],
}
SEI = ["LEDC", "LMC", "Li2CO3", "polyVC"]
ELEC = ["EC_free", "EC_solvated", "DMC_free", "DMC_solvated", "PF6"]
PARAMS = {
    "solvated_species": ["EC", "DMC", "EMC"],
    "references": {"max_iter": 200, "tol_err_change": 1e-12, "solvated_share_per_molar": 0.3},
    "baseline_order": 1,
    "solver": "scipy_nnls",
    "flag": {"max_relative_residual": 0.05, "robust_z": 8.0},
    "pathway": {
        "run": "cu_lp30/run01",
        "min_share": 0.05,
        "max_iter": 60,
        "perturb_noise": 0.01,
        "seed": 1,
        "label": None,
    },
}


def pseudo_voigt(x, center, hwhm, height, eta=0.5):
    lorentz = 1 / (1 + ((x - center) / hwhm) ** 2)
    gauss = np.exp(-np.log(2) * ((x - center) / hwhm) ** 2)
    return height * (eta * lorentz + (1 - eta) * gauss)


def component(name, x, shift=0.0):
    return sum(pseudo_voigt(x, c + shift, w, h) for c, w, h in BANDS[name])


def true_references():
    """Pure-component spectra through the same preprocessing (baseline included, no normalization)."""
    x = np.linspace(OPUS_FIRST, OPUS_LAST, OPUS_NPT)
    return {name: apply(x, component(name, x), PREPROCESS, scale=1.0)[1][0].astype(float) for name in BANDS}


# --------------------------------------------------------------------------------------------------------------
# a calibration set on disk
# --------------------------------------------------------------------------------------------------------------
CALIBRATION = [  # kind, composition, {component: amount} (solvated share = 0.3 per mol/L, capped)
    ("electrolyte", "EC:0.5; DMC:0.5"),
    ("electrolyte", "LiPF6:0.5M; EC:0.5; DMC:0.5"),
    ("electrolyte", "LiPF6:1.0M; EC:0.5; DMC:0.5"),
    ("electrolyte", "LiPF6:1.5M; EC:0.5; DMC:0.5"),
    ("electrolyte", "LiPF6:1.0M; DMC:1"),
    ("electrolyte", "LiPF6:1.2M; EC:1"),
    ("electrolyte", "DMC:1"),
    ("sei", "LEDC:1"),
    ("sei", "LEDC:1"),
    ("sei", "LMC:1"),
    ("sei", "LMC:1"),
    ("sei", "Li2CO3:1"),
    ("sei", "polyVC:1"),
]


def calibration_amounts(composition, share_per_molar=0.3):
    recipe = parse_recipe(composition)
    molarity = sum(recipe.salts.values())
    amounts = {anion_of(s): m for s, m in recipe.salts.items()}
    for species, amount in recipe.components.items():
        if f"{species}_free" in BANDS:
            share = min(share_per_molar * molarity, 0.9)
            amounts[f"{species}_free"] = amount * (1 - share)
            amounts[f"{species}_solvated"] = amount * share
        else:
            amounts[species] = amount
    return amounts


def write_calibration(folder: Path, noise=0.002, seed=0, rows=CALIBRATION, extra=None):
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    x = np.linspace(OPUS_FIRST, OPUS_LAST, OPUS_NPT)
    table = []
    for n, (kind, composition) in enumerate(rows):
        shift = rng.normal(0, 0.5)  # small band shifts between measurements
        y = sum(a * component(name, x, shift) for name, a in calibration_amounts(composition).items())
        y = y + noise * rng.standard_normal(x.size)
        name = f"cal_{n:03d}.0"
        write_opus(
            folder / name,
            {"AB": y},
            first_x_cm1=OPUS_FIRST,
            last_x_cm1=OPUS_LAST,
            acquired=dt.datetime(2026, 1, 1, 12, 0, n),
            sample_name=composition,
        )
        table.append({"file": name, "kind": kind, "composition": composition, **(extra or {})})
    pd.DataFrame(table).to_csv(folder / "calibration.tsv", sep="\t", index=False)
    return folder


# --------------------------------------------------------------------------------------------------------------
# operando runs in the samples.h5 layout, with truth and per-run scales
# --------------------------------------------------------------------------------------------------------------
RUNS = {  # system: (EC, DMC, with VC, onsets of LEDC, LMC, Li2CO3, polyVC in V)
    "cu_lp30": (0.5, 0.5, False, (0.8, 0.5, 1.5, None)),
    "cu_dmc": (0.0, 1.0, False, (None, 0.6, 1.2, None)),
    "cu_lp30_vc": (0.49, 0.49, True, (0.7, 0.4, 1.4, 1.3)),
}


def operando_run(system, n=40, seed=0):
    """Voltage, true electrolyte and SEI amounts, and noisy raw absorbance on the instrument axis."""
    ec, dmc, vc, onsets = RUNS[system]
    rng = np.random.default_rng(seed)
    v = np.concatenate([np.linspace(3.0, 0.05, n // 2), np.linspace(0.05, 2.5, n - n // 2)])
    v_min = np.minimum.accumulate(v)
    sei = np.zeros((n, len(SEI)))
    for k, onset in enumerate(onsets):
        if onset is not None:  # irreversible, self-limiting growth below the onset
            sei[:, k] = (0.3 + 0.2 * k) * (1 - np.exp(-np.clip(onset - v_min, 0, None) / 0.3))
    current = np.gradient(v)
    share = 0.3 + 0.05 * np.tanh(current * 20) + 0.01 * rng.standard_normal(n)
    consumed = 0.1 * sei.sum(1)  # SEI consumes solvent
    elec = np.column_stack(
        [
            ec * (1 - share) * (1 - consumed),
            ec * share * (1 - consumed),
            dmc * (1 - share) * (1 - consumed),
            dmc * share * (1 - consumed),
            np.ones(n),
        ]
    )
    x = np.linspace(OPUS_FIRST, OPUS_LAST, OPUS_NPT)
    refs = {name: component(name, x) for name in BANDS}
    clean = elec @ np.array([refs[c] for c in ELEC]) + sei @ np.array([refs[c] for c in SEI])
    drift = np.outer(0.02 * rng.standard_normal(n), np.ones(x.size)) + np.outer(0.01 * rng.random(n), (x - 600) / 3400)
    noisy = clean + drift + 0.004 * rng.standard_normal(clean.shape)
    return v, elec, sei, x, noisy


def write_dataset(root: Path, systems=tuple(RUNS), n=40, corrupt_row=None):
    """results/dataset/samples.h5, results/preprocessed/{s}/{r}.h5 (scale) and results/truth/{s}/{r}.h5, with
    the runs preprocessed by opir.preprocess.spectra.apply as the workflow does."""
    spectra, rows, samples = (
        [],
        {k: [] for k in ("system_id", "run_id", "index_in_run", "voltage_v")},
        {k: [] for k in ("sample_id", "row")},
    )
    for i, system in enumerate(systems):
        v, elec, sei, x, raw = operando_run(system, n, seed=i)
        if corrupt_row is not None and len(spectra) <= corrupt_row < len(spectra) + n:
            # a band no reference knows: a bubble, a contaminant
            raw[corrupt_row - len(spectra)] += 2 * pseudo_voigt(x, 1550, 8, 1.0)
        grid, normalized, info = apply(x, raw, PREPROCESS)
        first = len(spectra)
        spectra.extend(normalized)
        rows["system_id"] += [system] * n
        rows["run_id"] += ["run01"] * n
        rows["index_in_run"] += list(range(n))
        rows["voltage_v"] += list(v)
        samples["sample_id"] += [f"{system}/run01/{m:05d}" for m in range(1, n)]
        samples["row"] += list(range(first + 1, first + n))
        with atomic_h5(root / f"results/truth/{system}/run01.h5") as h5:
            h5["concentrations"] = np.hstack([elec, sei])
            write_axis(h5, "component_names", np.array(ELEC + SEI))
        with atomic_h5(root / f"results/preprocessed/{system}/run01.h5") as h5:
            h5.attrs["scale"] = info["scale"]
    with atomic_h5(root / "results/dataset/samples.h5") as h5:
        write_axis(h5, "wavenumber_cm1", grid)
        h5["spectra/absorbance"] = np.asarray(spectra, np.float32)
        for key, values in rows.items():
            write_axis(h5.require_group("rows"), key, np.array(values))
        for key, values in samples.items():
            write_axis(h5.require_group("samples"), key, np.array(values))
    return root / "results/dataset/samples.h5"


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("mcr")
    cal = write_calibration(root / "calibration")
    samples_h5 = write_dataset(root, corrupt_row=5)
    refs_h5 = root / "results/mcr/references.h5"
    refs = build_references(cal, refs_h5, PARAMS, PREPROCESS)
    streams_h5, flagged_tsv = root / "results/mcr/streams.h5", root / "results/mcr/flagged.tsv"
    streams = build_streams(samples_h5, refs_h5, streams_h5, flagged_tsv, PARAMS)
    return {
        "root": root,
        "cal": cal,
        "samples": samples_h5,
        "refs_h5": refs_h5,
        "refs": refs,
        "streams_h5": streams_h5,
        "streams": streams,
        "flagged": flagged_tsv,
    }


# --------------------------------------------------------------------------------------------------------------
def test_design_from_calibration_table():
    table = pd.DataFrame(CALIBRATION, columns=["kind", "composition"]).assign(file="x.0")
    design = design_from_table(table, ["EC", "DMC"])
    assert set(design.component_names) == set(ELEC + SEI)
    assert [design.component_names[i] for i in design.sei_index] == SEI
    ec_free, ec_solv = design.component_names.index("EC_free"), design.component_names.index("EC_solvated")
    assert design.known[0, ec_free] == 0.5 and design.known[0, ec_solv] == 0  # no salt: nothing solvated
    assert np.isnan(design.known[2, [ec_free, ec_solv]]).all()  # 1 M: split unknown, closure to 0.5
    assert (2, (ec_free, ec_solv), 0.5) in design.closure
    assert design.known[2, design.component_names.index("PF6")] == 1.0
    assert design.known[7, design.component_names.index("LEDC")] == 1.0
    assert design.known[7, design.component_names.index("LMC")] == 0.0


def test_split_estimate_in_the_table_is_the_start():
    table = pd.DataFrame(CALIBRATION[:3], columns=["kind", "composition"]).assign(file="x.0")
    table["EC_free"], table["EC_solvated"] = ["0.5", "0.3", ""], ["0", "0.2", ""]
    design = design_from_table(table, ["EC", "DMC"])
    C0 = initial_concentrations(design, solvated_share_per_molar=0.3)
    i, j = design.component_names.index("EC_free"), design.component_names.index("EC_solvated")
    assert C0[1, [i, j]] == pytest.approx([0.3, 0.2])  # the table's split (0.4 solvated), not 0.3/M x 0.5 M
    assert C0[2, [i, j]] == pytest.approx([0.35, 0.15])  # no estimate: 0.3 per mol/L x 1 M
    assert np.isnan(design.known[1, [i, j]]).all()  # a start only: the split stays free in the ALS


def test_bad_calibration_table_names_the_row(tmp_path):
    path = tmp_path / "calibration.tsv"
    path.write_text("file\tkind\tcomposition\na.0\telectrolyte\tEC:1\nb.0\tsolid\tLEDC:1\n")
    with pytest.raises(DataError, match=r"row 3: kind 'solid'"):
        read_calibration_table(path)
    path.write_text("file\tkind\na.0\telectrolyte\n")
    with pytest.raises(DataError, match="missing column"):
        read_calibration_table(path)
    table = pd.DataFrame([{"file": "c.0", "kind": "sei", "composition": "LEDC=1"}])
    with pytest.raises(DataError, match=r"row 2 \(c.0\)"):
        design_from_table(table, ["EC"])


def test_missing_calibration_file_is_an_opus_error(tmp_path):
    cal = write_calibration(tmp_path / "cal", rows=CALIBRATION[:2])
    (cal / "cal_001.0").unlink()
    with pytest.raises(OpusReadError, match="cal_001.0"):
        load_calibration(cal, GRID, PREPROCESS)


def test_references_recover_component_spectra(world):
    refs, truth = world["refs"], true_references()
    # pure compounds and free solvents are identifiable; the solvated/anion split is not fully (docs/mcr.md)
    for name in [*SEI, "EC_free", "DMC_free"]:
        spectrum = refs.spectra[refs.component_names.index(name)]
        cos = spectrum @ truth[name] / np.linalg.norm(spectrum) / np.linalg.norm(truth[name])
        assert cos > 0.995, (name, cos)
        # the known amounts fix the scale: absorbance per unit amount, not an arbitrary norm
        assert np.linalg.norm(spectrum) == pytest.approx(np.linalg.norm(truth[name]), rel=0.05), name
    assert refs.diagnostics["lack_of_fit_percent"] < 2.0
    with h5py.File(world["refs_h5"], "r") as h5:
        assert h5["S_SEI/spectra"].shape == (len(SEI), GRID.size)
        assert h5["S_elec/spectra"].shape == (len(ELEC), GRID.size)
        assert h5["S_elec"].attrs["NX_class"] == "NXdata"
        assert h5["wavenumber_cm1"].attrs["units"] == "1/cm"
        assert h5.attrs["producer_rule"] == "mcr_references"
        inputs = json.loads(h5.attrs["input_sha256"])
    assert not any("samples.h5" in path for path in inputs)


def test_references_depend_on_the_calibration_set_only(world, tmp_path):
    """Nothing operando is an input: the references are a function of the calibration files and the config, and
    they are the same whatever operando data sit beside them."""
    refs = build_references(world["cal"], tmp_path / "references.h5", PARAMS, PREPROCESS)
    np.testing.assert_array_equal(refs.spectra, world["refs"].spectra)
    with h5py.File(tmp_path / "references.h5", "r") as h5:
        inputs = json.loads(h5.attrs["input_sha256"])
    assert {Path(p).parent for p in inputs} == {world["cal"]}


@pytest.mark.workflow
def test_references_rule_needs_no_operando_job(tmp_path):
    """Through Snakemake: the references job's inputs are the calibration files, and building them runs no
    ingest, preprocess or dataset job (so no operando spectrum, held-out or not, can reach them)."""
    from conftest import TEST_CONFIG, run_snakemake

    write_calibration(tmp_path / "cal", rows=CALIBRATION)
    config = tmp_path / "config.yaml"
    config.write_text(
        "data:\n  source: opus\n  raw_dir: raw\n  calibration_dir: cal\n  truth_dir: null\n"
        f"preprocess:\n  n_points: {GRID.size}\n"
    )
    result = run_snakemake(tmp_path, "--cores", "1", "results/mcr/references.h5", configfiles=(TEST_CONFIG, config))
    text = result.stdout + result.stderr
    jobs = {line.split()[0] for line in text.splitlines() if line.startswith("localrule ")} | {
        line.split()[1].rstrip(":") for line in text.splitlines() if line.startswith("localrule ")
    }
    assert "mcr_references" in jobs
    assert not {"ingest", "preprocess", "dataset", "dataset_truth"} & jobs
    refs = read_references(tmp_path / "results/mcr/references.h5")
    assert refs.component_names[-len(SEI) :] == SEI
    assert (tmp_path / "results/logs/mcr/references.log").stat().st_size > 0


def test_streams_recover_concentrations(world):
    report = validate_against_truth(
        world["streams_h5"],
        truth_files(world["root"] / "results/truth", [(s, "run01") for s in RUNS]),
        {(s, "run01"): world["root"] / f"results/preprocessed/{s}/run01.h5" for s in RUNS},
    )
    assert report["sei"]["scale_method"] == "stored per-run scale"
    assert report["sei"]["r2_mean"] > 0.95, report["sei"]
    assert report["elec"]["r2_mean"] > 0.9, report["elec"]
    # without the stored scale the per-run gain is fitted and the result stays good
    truth = truth_files(world["root"] / "results/truth", [(s, "run01") for s in RUNS])
    fitted = validate_against_truth(world["streams_h5"], truth)
    assert fitted["sei"]["scale_method"] == "fitted per-run gain" and fitted["sei"]["r2_mean"] > 0.95


def test_streams_add_up_and_are_non_negative(world):
    s = world["streams"]
    with h5py.File(world["samples"], "r") as h5:
        D = h5["spectra/absorbance"][()]
    np.testing.assert_allclose(s.elec + s.sei + s.baseline + s.residual, D, atol=1e-5)
    assert (s.c_elec >= 0).all() and (s.c_sei >= 0).all()
    with h5py.File(world["streams_h5"], "r") as h5:
        assert h5["sei/sei"].shape == D.shape and h5["c_sei/c_sei"].shape == (len(D), len(SEI))
        assert list(h5["c_sei/component"].asstr()[()]) == SEI
        assert h5["residual_norm"].shape == (len(D),)


def test_poorly_explained_spectrum_is_flagged(world):
    table = pd.read_csv(world["flagged"], sep="\t")
    assert 5 in table["row"].tolist()  # the spectrum with an unknown band
    assert len(table) <= 3
    assert world["streams"].flagged.sum() == len(table)


def test_pymcr_solver_agrees_with_scipy(world):
    with h5py.File(world["samples"], "r") as h5:
        D = h5["spectra/absorbance"][:30]
    a = decompose_streams(D, world["refs"], 1, "scipy_nnls")
    b = decompose_streams(D, world["refs"], 1, "pymcr")
    np.testing.assert_allclose(a.c_sei, b.c_sei, atol=1e-6)


def test_grid_mismatch_is_an_error(world):
    with pytest.raises(DataError, match="same preprocessed grid"):
        decompose_streams(np.zeros((2, 10)), world["refs"])


def test_flag_rule():
    r = np.array([0.01, 0.011, 0.012, 0.0105, 0.3, 0.06])
    flagged = flag_poorly_explained(r, max_relative=0.05, robust_z=50)
    assert flagged.tolist() == [False, False, False, False, True, True]
    # with the SNR, a residual that is only noise (relative residual ~ 1 / SNR) is not an outlier, a residual
    # far above the spectrum's noise is, even when it is small in relative terms
    rng = np.random.default_rng(0)
    snr = rng.lognormal(np.log(88), 0.5, 500)
    r = 3.5 / snr * rng.normal(1, 0.05, 500)
    r[10] = 20 / snr[10]
    flagged = flag_poorly_explained(r, max_relative=0.5, robust_z=8, snr=snr)
    assert np.flatnonzero(flagged).tolist() == [10]
    assert flag_poorly_explained(r, max_relative=0.5, robust_z=8).sum() > 1  # blind to SNR: noisy ones


def test_pathway_recovers_sei_components(world, tmp_path):
    out = {k: tmp_path / f"fig5.{k}" for k in ("png", "pdf")}
    result = build_pathway(
        world["samples"],
        world["refs_h5"],
        world["streams_h5"],
        None,
        tmp_path / "pathway.h5",
        PARAMS,
    )
    figure5(tmp_path / "pathway.h5", world["refs_h5"], [out["png"], out["pdf"]])
    measured, predicted = result["measured"], result["predicted"]
    assert set(measured.component_names) == {"LEDC", "LMC", "Li2CO3"}  # polyVC never forms without VC
    truth = true_references()
    sei = operando_run("cu_lp30", 40, seed=0)[2]
    for i, name in enumerate(measured.component_names):
        cos = cosine_similarity_rows(measured.spectra[i : i + 1], truth[name][None])[0]
        assert cos > 0.97, (name, cos)
        true_profile = sei[1:, SEI.index(name)]
        assert np.corrcoef(measured.concentrations[:, i], true_profile)[0, 1] > 0.97, name
    similarity = cosine_similarity_rows(measured.spectra, predicted.spectra)
    assert (similarity > 0.95).all()
    assert out["png"].stat().st_size > 10_000 and out["pdf"].stat().st_size > 5_000
    with h5py.File(tmp_path / "pathway.h5", "r") as h5:
        assert h5["measured/concentrations/concentrations"].shape == (39, 3)
        assert h5.attrs["prediction_label"].startswith("perturbed copy")


def test_pathway_reads_a_prediction_file(world, tmp_path):
    with h5py.File(world["samples"], "r") as h5:
        ids = h5["samples/sample_id"].asstr()[()]
        rows = h5["samples/row"][()]
        D = h5["spectra/absorbance"][()]
    keep = [i for i, s in enumerate(ids) if s.startswith("cu_lp30/")][::2]  # a split holds part of a run
    pred = tmp_path / "model.h5"
    with atomic_h5(pred) as h5:
        write_axis(h5, "sample_id", np.array(ids[keep], dtype=str))
        write_axis(h5, "wavenumber_cm1", GRID)
        h5["prediction"] = np.repeat(D[rows[keep]][:, None], 2, axis=1).astype(np.float32)
    result = build_pathway(
        world["samples"],
        world["refs_h5"],
        world["streams_h5"],
        pred,
        tmp_path / "p.h5",
        PARAMS,
    )
    np.testing.assert_allclose(result["measured"].spectra, result["predicted"].spectra, rtol=1e-6, atol=1e-8)
    assert len(result["predicted"].concentrations) == len(keep)
