"""`opir predict` and `opir package` (opir.cli, opir.forecast): input checks, the uncertainty band and its coverage,
and the whole command end to end on a model trained by the test config."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest

from opir.cli import EXIT_ERROR, main
from opir.core.errors import ConfigError, DataError, OpusReadError
from opir.forecast.band import band, band_coverage, conformal_offsets, widen
from opir.forecast.inputs import check_voltage_range, embed_electrolyte, read_static_spectrum, read_voltage_profile
from opir.forecast.model import load_forecast_model
from opir.forecast.sampling import initial_state
from opir.formats.model_dir import IncompatibleModelError, check_model_dir

OPIR = Path(sys.executable).with_name("opir")


def write_profile(path: Path, time_s, voltage_v) -> Path:
    pd.DataFrame({"time_s": time_s, "voltage_v": voltage_v}).to_csv(path, index=False)
    return path


# --------------------------------------------------------------------------------------------------------------
# Inputs, without a model
# --------------------------------------------------------------------------------------------------------------
def test_voltage_profile_is_read_and_checked(tmp_path):
    good = read_voltage_profile(write_profile(tmp_path / "p.csv", [0, 60, 120], [3.0, 2.0, 1.0]))
    np.testing.assert_array_equal(good.voltage_v, [3.0, 2.0, 1.0])
    with pytest.raises(DataError, match=r"not strictly increasing at data row 3 \(60 s then 30 s\)"):
        read_voltage_profile(write_profile(tmp_path / "q.csv", [0, 60, 30], [3.0, 2.0, 1.0]))
    with pytest.raises(DataError, match="data row 2: time_s and voltage_v must be finite"):
        read_voltage_profile(write_profile(tmp_path / "r.csv", [0, "x"], [3.0, 2.0]))
    with pytest.raises(DataError, match="at least 2 rows"):
        read_voltage_profile(write_profile(tmp_path / "s.csv", [0], [3.0]))
    (tmp_path / "t.csv").write_text("seconds,volts\n0,1\n1,2\n")
    with pytest.raises(DataError, match="expected columns time_s and voltage_v, found seconds, volts"):
        read_voltage_profile(tmp_path / "t.csv")
    with pytest.raises(DataError, match=r"data row 2: voltage 5 V is outside the model's training range 0.100..3.000"):
        check_voltage_range(read_voltage_profile(write_profile(tmp_path / "u.csv", [0, 1], [3.0, 5.0])),
                               [0.1, 3.0], 0.05)
    check_voltage_range(good, [1.02, 3.0], 0.05)  # inside the tolerance


def test_static_spectrum_csv_and_unreadable_files(tmp_path):
    x = np.linspace(4000, 600, 50)
    lines = [f"{a},{b}" for a, b in zip(x, x / 1e4, strict=True)]
    (tmp_path / "s.csv").write_text("wavenumber_cm1,absorbance\n" + "\n".join(lines))
    spectrum = read_static_spectrum(tmp_path / "s.csv")
    np.testing.assert_allclose(spectrum.absorbance, x / 1e4)
    (tmp_path / "bad.csv").write_text("wavenumber_cm1,absorbance\n1000,0.1\n990,abc\n")
    with pytest.raises(DataError, match="row 2 of the data is not two finite numbers"):
        read_static_spectrum(tmp_path / "bad.csv")
    (tmp_path / "garbage.0").write_bytes(b"not an OPUS file at all")
    with pytest.raises(OpusReadError, match="neither an OPUS file"):
        read_static_spectrum(tmp_path / "garbage.0")
    (tmp_path / "cut.0").write_bytes(bytes.fromhex("0a0afefe") + b"\x00" * 10)
    with pytest.raises(OpusReadError, match="cut.0: truncated OPUS file"):
        read_static_spectrum(tmp_path / "cut.0")
    with pytest.raises(DataError, match="does not exist"):
        read_static_spectrum(tmp_path / "missing.0")


def test_band_coverage_is_calibrated_for_a_calibrated_sampler():
    rng = np.random.default_rng(0)
    draws = rng.normal(size=(40, 400, 30))
    mean, low, high = band(draws)
    assert mean.shape == low.shape == high.shape == (40, 30)
    assert np.all(low < high)
    result = band_coverage(draws, rng.normal(size=(40, 30)))
    assert 0.87 < result["coverage"] < 0.93 and result["nominal"] == pytest.approx(0.9)
    assert result["coverage"] + result["below"] + result["above"] == pytest.approx(1.0)
    overconfident = band_coverage(0.3 * draws, rng.normal(size=(40, 30)))
    assert overconfident["coverage"] < 0.5
    with pytest.raises(DataError, match="do not match"):
        band_coverage(draws, np.zeros((40, 29)))


def test_conformal_offsets_repair_an_overconfident_band():
    rng = np.random.default_rng(1)
    narrow = 0.3 * rng.normal(size=(200, 64, 10))  # draws far too close together for N(0, 1) targets
    offsets = conformal_offsets(narrow, rng.normal(size=(200, 10)))
    assert offsets.shape == (10,) and np.all(offsets > 0)
    fresh, target = 0.3 * rng.normal(size=(400, 64, 10)), rng.normal(size=(400, 10))
    assert band_coverage(fresh, target)["coverage"] < 0.5
    assert 0.86 < band_coverage(fresh, target, offsets=offsets)["coverage"] < 0.94
    wide = 3.0 * rng.normal(size=(200, 64, 10))  # too wide: the offsets narrow it
    assert np.all(conformal_offsets(wide, rng.normal(size=(200, 10))) < 0)


def test_grouped_conformal_offsets_weigh_each_group_alike():
    """A large group whose band is right and a small one whose targets lie far outside: pooled, the small group is
    1 % of the scores and the offset ignores it; grouped, it is half the weight and the offset covers it."""
    rng = np.random.default_rng(2)
    draws = rng.normal(size=(1010, 32, 4))
    target = rng.normal(size=(1010, 4))
    target[1000:] += 10.0
    groups = np.array(["big"] * 1000 + ["small"] * 10)
    pooled = conformal_offsets(draws, target)
    grouped = conformal_offsets(draws, target, 0.9, groups)
    assert np.all(pooled < 1.0) and np.all(grouped > 5.0)
    # one group: the plain empirical quantile of the scores
    np.testing.assert_allclose(conformal_offsets(draws[:1000], target[:1000], 0.9, groups[:1000]),
                               conformal_offsets(draws[:1000], target[:1000]), atol=0.05)
    with pytest.raises(DataError, match="group labels"):
        conformal_offsets(draws, target, 0.9, groups[:5])


def test_package_names_missing_held_out_predictions_of_the_hedge(tmp_path):
    """`opir package` on a workspace whose hedge was chosen but whose held-out predictions are gone: a one-line error
    naming the files, before anything is packaged."""
    from opir.cli import _held_out_predictions
    from opir.evaluate.hedge import write_weight

    curves = {group: {"0.0": {"mae": 0.2}, "1.0": {"mae": 0.1}} for group in ("a+b", "c")}
    weight = tmp_path / "weight.json"
    write_weight(curves, "voltage_regression", {"ridge_alpha": 1.0}, weight)
    for group in ("a+b", "c"):
        (tmp_path / group).mkdir()
        (tmp_path / group / "predictions.h5").touch()
    (tmp_path / "a+b" / "partner.h5").touch()
    with pytest.raises(DataError, match=r"held-out predictions are missing \(.*c/partner.h5\)"):
        _held_out_predictions(weight)
    (tmp_path / "c" / "partner.h5").touch()
    assert _held_out_predictions(weight) == [(tmp_path / g / "predictions.h5", tmp_path / g / "partner.h5")
                                             for g in ("a+b", "c")]  # fmt: skip


def test_cli_errors_are_one_line_and_debug_shows_the_traceback(tmp_path, capsys):
    profile = write_profile(tmp_path / "p.csv", [0, 60], [3.0, 2.0])
    args = ["predict", "--model", str(tmp_path / "nomodel"), "--spectrum", str(tmp_path / "p.csv"),
            "--voltage-profile", str(profile), "--electrolyte", "LiPF6:1M; EC:1", "--out", str(tmp_path / "out")]
    assert main(args) == EXIT_ERROR
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("opir predict: error: ") and "Traceback" not in "".join(err)
    with pytest.raises(DataError):
        main(["--debug", *args])
    with pytest.raises(SystemExit):  # argparse: a missing required option
        main(["predict", "--model", "x"])


def test_incompatible_model_directory_is_named(tmp_path):
    model = tmp_path / "model"
    (model / "vae").mkdir(parents=True)
    for name in ("model.safetensors", "model.json", "molecules.h5", "vae/config.json"):
        (model / name).write_text("{}")
    (model / "forecast.json").write_text(json.dumps({"format": "opir-model-dir", "format_version": 99,
                                                      "opir_version": "9.0.0"}))
    with pytest.raises(IncompatibleModelError, match=r"version 99 \(made by opir 9.0.0\).*reads 'opir-model-dir' "
                       "version 1"):
        check_model_dir(model)
    (model / "forecast.json").unlink()
    with pytest.raises(IncompatibleModelError, match="missing forecast.json .*opir package"):
        check_model_dir(model)


# --------------------------------------------------------------------------------------------------------------
# End to end on a model trained by the test config
# --------------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def workspace(finished_workspace, tmp_path_factory) -> Path:
    """A copy of the test config's finished workspace (the tests here rename it, so the shared one stays put)."""
    workdir = tmp_path_factory.mktemp("predict") / "wd"
    shutil.copytree(finished_workspace / "results", workdir / "results", symlinks=True)
    return workdir


@pytest.fixture(scope="module")
def packaged(workspace, tmp_path_factory) -> Path:
    """A self-contained copy of the model, outside the workflow's folder."""
    out = tmp_path_factory.mktemp("packaged") / "abcc-system"
    result = subprocess.run([str(OPIR), "package", "--workdir", str(workspace), "--split", "system", "--model",
                             "abcc", "--out", str(out), "--calibration-draws", "4", "--calibration-samples", "12"],
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    return out


@pytest.fixture(scope="module")
def run_inputs(workspace, tmp_path_factory) -> dict:
    """A test system's first OPUS spectrum, its run's acquisition times and voltages as the profile."""
    folder = tmp_path_factory.mktemp("inputs")
    with h5py.File(workspace / "results/dataset/samples.h5", "r") as handle:
        systems = handle["runs/system_id"].asstr()[()]
        runs = handle["runs/run_id"].asstr()[()]
        first, n = handle["runs/first_row"][()], handle["runs/n_rows"][()]
        test = json.loads((workspace / "results/dataset/splits.json").read_text())["system"]["test"][0]
        i = int(np.flatnonzero((systems == test.split("/")[0]) & (runs == test.split("/")[1]))[0])
        rows = slice(int(first[i]), int(first[i] + n[i]))
        voltage, elapsed = handle["rows/voltage_v"][rows], handle["rows/elapsed_s"][rows]
        initial = handle["spectra/absorbance"][int(first[i])]
    spectrum = sorted((workspace / "results/raw" / systems[i] / runs[i] / "spectra").glob("*.0"))[0]
    recipe = pd.read_csv(Path(__file__).resolve().parents[1] / "config/systems.tsv", sep="\t", comment="#")
    recipe = recipe.set_index("system_id").loc[systems[i], "electrolyte"]
    return {"spectrum": spectrum, "profile": write_profile(folder / "profile.csv", elapsed, voltage),
            "voltage": voltage, "elapsed": elapsed, "initial": initial, "recipe": recipe, "folder": folder}


@pytest.mark.workflow
def test_predict_end_to_end_without_the_results_folder(workspace, packaged, run_inputs, tmp_path):
    hidden = workspace.with_name(workspace.name + "-hidden")
    workspace.rename(hidden)  # the packaged model must not need anything from the workflow's folder
    try:
        spectrum = shutil.copy(run_inputs["spectrum"].as_posix().replace(str(workspace), str(hidden)), tmp_path)
        result = subprocess.run(
            [str(OPIR), "predict", "--model", str(packaged), "--spectrum", spectrum, "--voltage-profile",
             str(run_inputs["profile"]), "--electrolyte", run_inputs["recipe"], "--electrode", "Cu", "--out",
             str(tmp_path / "out"), "--draws", "6", "--plot-voltages", "0.5,1.5"],
            capture_output=True, text=True, timeout=300)
    finally:
        hidden.rename(workspace)
    assert result.returncode == 0, result.stderr
    n_targets, n_points = len(run_inputs["voltage"]) - 1, len(run_inputs["initial"])
    with h5py.File(tmp_path / "out/forecast.h5", "r") as handle:
        # preprocessed exactly as training: the same spectrum gives the same row as samples.h5
        np.testing.assert_allclose(handle["input/absorbance"][()], run_inputs["initial"], atol=1e-5)
        group = handle["forecast"]
        assert group.attrs["signal"] == "mean" and list(group.attrs["axes"]) == ["elapsed_s", "wavenumber_cm1"]
        assert group["mean"].shape == (n_targets, n_points)
        assert group["wavenumber_cm1"].attrs["units"] == "1/cm" and group["voltage_v"].attrs["units"] == "V"
        np.testing.assert_allclose(group["voltage_v"][()], run_inputs["voltage"][1:])
        draws = handle["draws/absorbance"][()]
        assert draws.shape == (n_targets, 6, n_points) and np.all(np.isfinite(draws))
        # the band: quantiles of the draws, widened by the conformal offsets the packaging calibrated
        offsets = group["band_offset"][()]
        assert offsets.shape == (n_points,) and np.all(np.isfinite(offsets))
        calibration = json.loads((packaged / "forecast.json").read_text())["band_calibration"]
        assert calibration["n_samples"] == 12 and calibration["draws"] == 4
        np.testing.assert_allclose(offsets, calibration["offsets"], rtol=1e-6, atol=1e-7)
        low, high = widen(np.quantile(draws, 0.05, axis=1), np.quantile(draws, 0.95, axis=1), offsets)
        np.testing.assert_allclose(group["band_q05"][()], low, atol=1e-5)
        np.testing.assert_allclose(group["band_q95"][()], high, atol=1e-5)
        assert np.all(draws.std(axis=1).mean(axis=1) > 0), "the draws of a spectrum must differ"
        assert handle.attrs["producer_rule"] == "opir predict" and handle.attrs["electrode"] == "Cu"
        # the test system's own recipe: inside the training mixtures' domain or moved into it, and said which
        assert handle.attrs["mixture_domain"] == "training" and handle.attrs["mixture_moved"] >= 0
        # the sheet's name resolved to its descriptors, through the electrodes.h5 the model directory carries
        assert json.loads(handle.attrs["electrode_descriptors"])["electrode_class"] == "collector"
    table = pd.read_csv(tmp_path / "out/forecast.csv")
    assert list(table.columns) == ["step", "elapsed_s", "voltage_v", "wavenumber_cm1", "mean", "band_q05", "band_q95"]
    assert len(table) == n_targets * n_points and (table["band_q05"] <= table["band_q95"]).all()
    assert (tmp_path / "out/forecast.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.workflow
def test_the_flagship_is_packaged_and_predicts_without_a_vae(workspace, run_inputs, tmp_path):
    """The workflow packages the README's flagship (ABCC-1D, models.package.models): a folder with no VAE whose
    forecast starts from the input spectrum and whose draws differ (the model's own: its hedge, tested below, may
    give the model no weight)."""
    model = shutil.copytree(workspace / "results/packages/system/abcc1d", tmp_path / "abcc1d")
    assert not (model / "vae").exists()
    assert json.loads((model / "model.json").read_text())["settings"]["space"] == "spectrum"
    result = subprocess.run(
        [str(OPIR), "predict", "--model", str(model), "--spectrum", str(run_inputs["spectrum"]), "--voltage-profile",
         str(run_inputs["profile"]), "--electrolyte", run_inputs["recipe"], "--electrode", "CoO/SuperP", "--out",
         str(tmp_path / "out"), "--draws", "3", "--no-hedge"],
        capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    with h5py.File(tmp_path / "out/forecast.h5", "r") as handle:
        draws = handle["draws/absorbance"][()]
        assert draws.shape == (len(run_inputs["voltage"]) - 1, 3, len(run_inputs["initial"]))
        assert np.all(np.isfinite(draws)) and np.all(draws.std(axis=1).mean(axis=1) > 0)
        assert json.loads(handle.attrs["electrode_descriptors"])["electrode_class"] == "conversion"


@pytest.mark.workflow
def test_the_flagship_package_carries_the_hedge_of_its_table_row(workspace, run_inputs, tmp_path):
    """The system split's flagship package carries Table 3's hedge (the test config hedges abcc1d): the weight the
    workflow chose, and a partner that forecasts the test samples exactly as the workflow's voltage-regression row.
    `opir predict` blends by default and records the weight; `--no-hedge` forecasts with the model alone."""
    from opir.evaluate.hedge import blend
    from opir.forecast.inputs import resolve_electrode
    from opir.forecast.output import forecast
    from opir.forecast.sampling import hedge_draws, partner_thresholds
    from opir.formats.predictions import read_predictions
    from opir.formats.samples import load_samples
    from opir.package.packaging import HELD_OUT_CALIBRATION
    from opir.preprocess.profile import run_profile_features, sample_profile_features

    package = workspace / "results/packages/system/abcc1d"
    choice = json.loads((workspace / "results/hedge/system/abcc1d/weight.json").read_text())
    fm = load_forecast_model(package, "cpu")
    assert fm.hedge["weight"] == choice["weight"] and fm.hedge["partner"] == "voltage_regression"
    assert fm.forecast["band_calibration"]["hedged"] and fm.forecast["band_calibration_model_alone"]
    # the band is calibrated on the hedge's held-out systems, as the hedged row blends their predictions
    groups = [workspace / "results/hedge/system/abcc1d" / group for group in choice["groups"]]
    held_out = [(read_predictions(g / "predictions.h5"), read_predictions(g / "partner.h5")) for g in groups]
    calibration = fm.forecast["band_calibration"]
    assert calibration["method"] == HELD_OUT_CALIBRATION and calibration["held_out_groups"] == len(groups)
    ids = [s for model, _ in held_out for s in model.sample_id]
    table = load_samples(workspace / "results/dataset/samples.h5")
    where = table.sample_index(ids, "held-out samples")
    systems = table.samples["system_id"][where]
    assert calibration["systems"] == {s: int((systems == s).sum()) for s in set(systems)}
    assert set(systems) == {s for g in groups for s in json.loads((g / "splits.json").read_text())["held_out"]}
    blended = np.concatenate([blend(model, partner, choice["weight"]) for model, partner in held_out])
    np.testing.assert_allclose(calibration["offsets"], conformal_offsets(
        blended, table.absorbance[table.samples["row"][where]], calibration["nominal_coverage"], systems))
    row = read_predictions(workspace / "results/predictions/system/voltage_regression.h5")
    index = table.sample_index(list(row.sample_id), "test samples")
    partner = table.absorbance[table.samples["initial_row"][index]] + fm.hedge_partner.predict_change(
        sample_profile_features(table, index, fm.hedge["partner_settings"]["exposure_thresholds_v"]))
    np.testing.assert_allclose(partner, row.mean, atol=1e-5)

    # the blend itself, at a weight where both parts show: the draws minus w x the model's own are one spectrum
    spectrum = read_static_spectrum(run_inputs["spectrum"])
    profile = read_voltage_profile(run_inputs["profile"])
    fm.forecast["hedge"] = {**fm.hedge, "weight": 0.25}
    electrode = resolve_electrode("CoO/SuperP", package)[1].features()
    alone = forecast(fm.without_hedge(), spectrum, profile, run_inputs["recipe"], draws=3, electrode=electrode)
    hedged = forecast(fm, spectrum, profile, run_inputs["recipe"], draws=3, electrode=electrode)
    assert hedged.hedge_weight == 0.25 and alone.hedge_weight is None
    rest = hedged.draws - 0.25 * alone.draws
    np.testing.assert_allclose(rest, np.repeat(rest[:, :1], 3, axis=1), atol=1e-5)
    features = run_profile_features(profile.voltage_v, profile.time_s, partner_thresholds(fm))[1:]
    np.testing.assert_allclose(hedge_draws(fm, alone.draws, np.repeat(alone.input_spectrum[None], len(rest), 0),
                                           features), hedged.draws, atol=1e-6)

    for flags, weight in (([], choice["weight"]), (["--no-hedge"], None)):
        out = tmp_path / ("alone" if flags else "hedged")
        result = subprocess.run(
            [str(OPIR), "predict", "--model", str(package), "--spectrum", str(run_inputs["spectrum"]),
             "--voltage-profile", str(run_inputs["profile"]), "--electrolyte", run_inputs["recipe"], "--electrode",
             "CoO/SuperP", "--out", str(out), "--draws", "3", *flags],
            capture_output=True, text=True, timeout=300)  # fmt: skip
        assert result.returncode == 0, result.stderr
        with h5py.File(out / "forecast.h5", "r") as handle:
            recorded = float(handle.attrs["hedge_weight"])
            assert (np.isnan(recorded) if weight is None else recorded == weight), (flags, recorded)
            assert handle.attrs["hedge_partner"] == ("" if weight is None else "voltage_regression")
            assert ("hedge_partner.safetensors" in handle.attrs["input_sha256"]) == (weight is not None)



@pytest.mark.workflow
def test_initial_latent_matches_the_training_latents(workspace, packaged, run_inputs):
    from opir.formats.images import read_latents

    fm = load_forecast_model(packaged, "cpu")
    latent = initial_state(run_inputs["initial"], fm).numpy()
    with h5py.File(workspace / "results/dataset/samples.h5", "r") as handle:
        row = int(np.flatnonzero(np.isclose(handle["spectra/absorbance"][()], run_inputs["initial"]).all(axis=1))[0])
    np.testing.assert_allclose(latent[0], read_latents(workspace / "results/latent/system/waveform.h5")[0][row],
                               atol=1e-4)
    # a known molecule by SMILES is that molecule; proportions as in training
    by_name = embed_electrolyte("LiPF6:1.0M; EC:1; DMC:1", fm)
    by_smiles = embed_electrolyte("[Li+].F[P-](F)(F)(F)(F)F:1.0M; C1COC(=O)O1:1; COC(=O)OC:1", fm)
    np.testing.assert_allclose(by_name, by_smiles)
    # a new molecule by SMILES is embedded with the model's method; a name that is no SMILES is an error
    with_fec = embed_electrolyte("LiPF6:1.0M; EC:1; DMC:1; O=C1OCC(F)O1:0.1", fm)
    assert with_fec.shape == by_name.shape and not np.allclose(with_fec, by_name)
    with pytest.raises(ConfigError, match="'Fluoroethylene' is neither a known molecule"):
        embed_electrolyte("LiPF6:1.0M; Fluoroethylene:1", fm)


@pytest.mark.workflow
def test_an_electrolyte_outside_the_training_mixtures_is_placed_in_their_domain(workspace, packaged, caplog):
    """The package records the mixtures of the split's training systems; a seen recipe is read as it is, EC alone
    with 1.2 M salt (a test system's, beyond the training EC fractions and molarity) is moved into their domain with
    a warning, and --mixture-domain open extrapolates."""
    from opir.forecast.output import place_electrolyte
    from opir.formats.samples import load_split

    fm = load_forecast_model(packaged, "cpu")
    train = load_split(workspace / "results/dataset/splits.json", "system")["train"]
    assert set(fm.training_mixtures) == {sample.split("/")[0] for sample in train}
    lp30 = embed_electrolyte("LiPF6:1.0M; EC:0.5; DMC:0.5", fm)
    placed, moved = place_electrolyte(lp30, "LP30", fm, "training")
    assert moved == 0 and np.array_equal(placed, lp30)
    ec = embed_electrolyte("LiPF6:1.2M; EC:1", fm)
    with caplog.at_level("WARNING"):
        placed, moved = place_electrolyte(ec, "LiPF6:1.2M; EC:1", fm, "training")
    assert moved > 0 and not np.allclose(placed, ec)
    assert "'LiPF6:1.2M; EC:1' lies outside the mixtures the model trained on" in caplog.text
    placed, moved = place_electrolyte(ec, "LiPF6:1.2M; EC:1", fm, "open")
    assert moved is None and np.array_equal(placed, ec)
    with pytest.raises(ConfigError, match="--mixture-domain 'nearest'"):
        place_electrolyte(ec, "x", fm, "nearest")


@pytest.mark.workflow
@pytest.mark.parametrize("case", ["unreadable_spectrum", "non_monotonic_time", "voltage_out_of_range",
                                  "unknown_molecule", "incompatible_model", "wrong_weights", "no_electrode",
                                  "unknown_electrode"])
def test_predict_bad_input_is_one_line(case, packaged, run_inputs, tmp_path, capsys):
    model, spectrum, profile = packaged, run_inputs["spectrum"], run_inputs["profile"]
    recipe = run_inputs["recipe"]
    electrode = ["--electrode", "Cu"]
    elapsed, voltage = run_inputs["elapsed"], run_inputs["voltage"]
    if case == "unreadable_spectrum":
        spectrum = tmp_path / "broken.0"
        spectrum.write_bytes(run_inputs["spectrum"].read_bytes()[:200])
    elif case == "non_monotonic_time":
        profile = write_profile(tmp_path / "p.csv", elapsed[[0, 2, 1]], voltage[:3])
    elif case == "voltage_out_of_range":
        profile = write_profile(tmp_path / "p.csv", elapsed[:3], [voltage[0], 7.5, voltage[2]])
    elif case == "unknown_molecule":
        recipe = "LiPF6:1.0M; NotAMolecule:1"
    elif case == "no_electrode":  # the model's condition holds the electrode descriptors
        electrode = []
    elif case == "unknown_electrode":
        electrode = ["--electrode", "Graphite"]
    else:
        model = tmp_path / "model"
        shutil.copytree(packaged, model)
        if case == "incompatible_model":
            meta = json.loads((model / "forecast.json").read_text())
            (model / "forecast.json").write_text(json.dumps({**meta, "format_version": 0}))
        else:
            meta = json.loads((model / "model.json").read_text())
            meta["architecture"]["hidden_size"] *= 2
            (model / "model.json").write_text(json.dumps(meta))
    code = main(["predict", "--model", str(model), "--spectrum", str(spectrum), "--voltage-profile", str(profile),
                 "--electrolyte", recipe, *electrode, "--out", str(tmp_path / "out"), "--draws", "2"])
    assert code == EXIT_ERROR
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("opir predict: error")]
    assert len(lines) == 1, "exactly one error line"
    expected = {
        "unreadable_spectrum": "broken.0: ",
        "non_monotonic_time": "not strictly increasing at data row 3",
        "voltage_out_of_range": "data row 2: voltage 7.5 V is outside the model's training range",
        "unknown_molecule": "'NotAMolecule' is neither a known molecule",
        "incompatible_model": "version 0",
        "wrong_weights": "the weights do not fit",
        "no_electrode": "this model reads the working electrode; give --electrode",
        "unknown_electrode": "--electrode 'Graphite': not a system or working electrode of the model's systems sheet",
    }[case]
    assert expected in lines[0]
    assert not (tmp_path / "out" / "forecast.h5").exists()


def test_a_missing_model_directory_is_named_before_the_electrode(tmp_path):
    profile = write_profile(tmp_path / "p.csv", [0, 60], [3.0, 2.0])
    with pytest.raises(DataError, match="nomodel: model directory does not exist"):
        main(["--debug", "predict", "--model", str(tmp_path / "nomodel"), "--spectrum", str(tmp_path / "p.csv"),
              "--voltage-profile", str(profile), "--electrolyte", "LiPF6:1M; EC:1", "--electrode", "Cu",
              "--out", str(tmp_path / "out")])
