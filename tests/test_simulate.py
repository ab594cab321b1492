"""OpIRSpec-7K-sim: counts, determinism, file formats read back by independent readers, and the physics."""

from __future__ import annotations

import copy
import datetime as dt
import json

import h5py
import numpy as np
import pandas as pd
import pytest
import yaml
from brukeropus import read_opus
from conftest import REPO, run_snakemake

from opir.core.config import load_sheets, parse_recipe, validate_with_schema
from opir.core.electrodes import descriptors_from_row
from opir.core.errors import ConfigError
from opir.formats.potentiostat import read_mpt
from opir.simulate.calibration import simulate_calibration
from opir.simulate.chemistry import (
    BINDER_FILM_PER_FRACTION,
    COORDINATION_NUMBER,
    FILM_CAPACITY_PER_AREA,
    FILM_DISPLACEMENT,
    FILM_TO_MOLAR,
    GITT_REST_RATIO,
    NO_SEI,
    ORGANIC_PRODUCTS,
    PATHWAYS,
    SEI_SPECIES,
    SPECIES,
    concentrations,
    electrochemistry,
    electrode_of,
    protocol_duration_s,
    reference_single_channel,
    solvation,
    solvent_molarities,
)
from opir.simulate.runs import run_seed, samples_per_run, simulate_run, simulate_system_run, snr_lognormal_sigma


@pytest.fixture(scope="module")
def config():
    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    validate_with_schema(config, "config.schema.yaml", "config/config.yaml")
    return config


@pytest.fixture(scope="module")
def sheets(config):
    return load_sheets(config, root=REPO)


@pytest.fixture
def settings(config):
    return copy.deepcopy(config["simulate"])


def _system(sheets, system_id):
    return sheets.systems.set_index("system_id", drop=False).loc[system_id].to_dict()


# -------------------------------------------------------------------------------------------------------------
# counts
# -------------------------------------------------------------------------------------------------------------
def test_full_scale_has_the_papers_counts(sheets, settings):
    settings["scale"] = 1.0
    counts = {
        row.system_id: sum(samples_per_run(int(row.sim_samples), 1, settings, row.system_id))
        for row in sheets.systems.itertuples()
    }
    assert sum(counts.values()) == 7118
    assert counts["ltosp_lp30_int"] == 2286 and counts["cu_ec12"] == 14
    test = sum(counts[s] for s in sheets.systems.loc[sheets.systems.system_split == "test", "system_id"])
    assert test == 1322


def test_small_scale_keeps_a_handful_and_splits_among_runs(settings):
    settings.update(scale=0.01, min_samples_per_system=6)
    assert samples_per_run(14, 1, settings, "s") == [6]
    assert samples_per_run(2286, 1, settings, "s") == [23]
    assert samples_per_run(2286, 3, settings, "s") == [8, 8, 7]
    with pytest.raises(ConfigError, match="cannot be split among 7 runs"):
        samples_per_run(14, 7, settings, "system x")


# -------------------------------------------------------------------------------------------------------------
# files
# -------------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def cu_vc_run(tmp_path_factory, sheets, config):
    settings = copy.deepcopy(config["simulate"])
    settings["scale"] = 0.02  # 12 samples
    out = tmp_path_factory.mktemp("sim")
    run_dir, truth = out / "raw" / "cu_lp30_vc" / "run01", out / "truth" / "cu_lp30_vc" / "run01.h5"
    run = simulate_system_run(_system(sheets, "cu_lp30_vc"), "run01", ["run01"], settings, run_dir, truth)
    return run, out, settings


def test_run_folder_follows_the_contract(cu_vc_run):
    run, out, _ = cu_vc_run
    run_dir = out / "raw" / "cu_lp30_vc" / "run01"
    manifest = pd.read_csv(run_dir / "manifest.tsv", sep="\t")
    assert list(manifest.columns) == ["file", "index", "acquired_utc"]
    assert list(manifest["index"]) == list(range(len(run.time_s)))
    files = sorted(p.name for p in (run_dir / "spectra").iterdir())
    assert [f"spectra/{f}" for f in files] == list(manifest["file"])  # lexical order = acquisition order
    assert files[0] == "cu_lp30_vc_run01_00000.0"

    for i in (0, len(files) - 1):
        opus = read_opus(run_dir / manifest["file"][i])
        assert np.array_equal(opus.a.y, run.measured[i].astype(np.float32))
        assert opus.a.x[0] == 4000.0 and opus.a.x[-1] == 600.0 and opus.a.x.size == 1764
        stamp = dt.datetime.fromisoformat(manifest["acquired_utc"][i])
        assert opus.a.datetime == stamp.replace(tzinfo=None)  # utc_offset_hours = 0
        assert opus.params.snm == f"cu_lp30_vc run01 #{i:05d}"
        # the single channel is consistent with the absorbance: A = -log10(ScSm / reference)
        ratio = -np.log10(opus.sm.y / reference_single_channel(opus.sm.x))
        assert np.allclose(ratio, opus.a.y, atol=1e-4)

    log = read_mpt(run_dir / "potentiostat.mpt")
    start = dt.datetime.fromisoformat(manifest["acquired_utc"][0])
    assert log.started_utc == start
    assert log.time_s.size >= 4 * (len(files) - 1)  # faster than the spectra
    assert log.time_s[-1] >= run.time_s[-1]
    at = np.interp(run.time_s, log.time_s, log.voltage_v)
    assert np.abs(at - run.voltage_v).max() < 0.05
    assert (log.current_ma[log.voltage_v < 0.5] < 0).any()  # reduction current is negative (EC-Lab sign)


def test_truth_file_holds_noise_free_spectra_and_concentrations(cu_vc_run):
    run, out, _ = cu_vc_run
    with h5py.File(out / "truth" / "cu_lp30_vc" / "run01.h5") as h5:
        assert h5["spectra"].attrs["NX_class"] == "NXdata"
        assert h5["spectra/wavenumber_cm1"].attrs["units"] == "1/cm"
        truth = h5["spectra/absorbance"][()]
        names = list(h5["component_names"].asstr()[()])
        conc = h5["concentrations"][()]
        assert json.loads(h5.attrs["config"])["system"]["system_id"] == "cu_lp30_vc"
        refs = h5["references/absorbance"][()]
    assert names == list(SPECIES)
    assert conc.shape == (len(run.time_s), len(names))
    # the truth is concentrations x references plus the slow drift (no carbon background on Cu)
    residual = truth - conc @ refs
    assert np.abs(residual).max() < 0.05
    assert np.abs(np.diff(residual[:, 800:900], axis=1)).max() < 1e-4  # smooth in wavenumber: a baseline
    # noise-free vs measured: the difference is the noise, at the drawn SNR
    noise = run.measured - run.truth
    assert np.allclose(noise.std(1), run.noise_sigma, rtol=0.2)


def test_same_seed_gives_byte_identical_files_and_another_seed_does_not(tmp_path, sheets, settings):
    settings["scale"] = 0.003
    system = _system(sheets, "cu_ec12")
    paths = {}
    for label, seed in (("a", 1), ("b", 1), ("c", 2)):
        settings["seed"] = seed
        simulate_system_run(system, "run01", ["run01"], settings, tmp_path / label, tmp_path / f"{label}.h5")
        paths[label] = sorted((tmp_path / label / "spectra").iterdir())
    for a, b in zip(paths["a"], paths["b"], strict=True):
        assert a.read_bytes() == b.read_bytes()
    assert (tmp_path / "a" / "potentiostat.mpt").read_bytes() == (tmp_path / "b" / "potentiostat.mpt").read_bytes()
    assert paths["a"][1].read_bytes() != paths["c"][1].read_bytes()


def test_run_seed_depends_on_names_not_order():
    a = np.random.default_rng(run_seed(3, "cu_dmc", "run01")).random()
    assert a == np.random.default_rng(run_seed(3, "cu_dmc", "run01")).random()
    assert a != np.random.default_rng(run_seed(3, "cu_dmc", "run02")).random()


# -------------------------------------------------------------------------------------------------------------
# physics
# -------------------------------------------------------------------------------------------------------------
def _physics(system_id, sheets, seed=0, step_s=20.0, **changes):
    """Noise-free electrochemistry and concentrations of a system, with descriptor columns changed by ``changes``."""
    system = {**_system(sheets, system_id), **changes}
    electrode = electrode_of(system["working_electrode"], system_id)
    descriptors = descriptors_from_row(system, system_id)
    recipe = parse_recipe(system["electrolyte"])
    rng = np.random.default_rng(seed)
    time_s = np.arange(0, protocol_duration_s(electrode, system["protocol"]), step_s)
    echem = electrochemistry(electrode, system["protocol"], time_s, rng)
    binder_film = BINDER_FILM_PER_FRACTION * descriptors.binder_fraction
    return echem, concentrations(echem, descriptors, recipe, rng, binder_film=binder_film), recipe


def _films(conc):
    return conc[:, [SPECIES.index(s) for s in SEI_SPECIES]]


def _first_voltage(echem, conc, species, threshold=0.02):
    column = conc[:, SPECIES.index(species)]
    hit = np.flatnonzero(column > threshold)
    return echem.voltage_v[hit[0]] if hit.size else None


def test_onsets_follow_vc_then_ec_then_dmc(sheets):
    echem, conc, _ = _physics("cu_lp30_vc", sheets)
    v_polyvc, v_ledc, v_lmc = (_first_voltage(echem, conc, s) for s in ("polyVC", "LEDC", "LMC"))
    assert v_polyvc > v_ledc > v_lmc
    # without VC, no poly(VC); without EC (cu_dmc), no LEDC and no EC/DMC exchange product
    _, conc_lp30, _ = _physics("cu_lp30", sheets)
    _, conc_dmc, _ = _physics("cu_dmc", sheets)
    assert conc_lp30[:, SPECIES.index("polyVC")].max() == 0
    assert conc_dmc[:, SPECIES.index("LEDC")].max() == 0 and conc_dmc[:, SPECIES.index("LMC")].max() > 0.1
    assert conc_dmc[:, SPECIES.index("DMDOHC")].max() == 0 and conc_lp30[:, SPECIES.index("DMDOHC")].max() > 0.02


def test_sei_is_irreversible_and_self_limiting_on_a_collector(sheets):
    _, conc, _ = _physics("cu_lp30", sheets)
    film = _films(conc)
    assert (np.diff(film, axis=0) >= -1e-12).all()
    assert film.sum(1)[-1] <= FILM_CAPACITY_PER_AREA * 1.5


def test_lto_keeps_forming_carbonate_at_high_potential(sheets):
    echem, conc, _ = _physics("lto_lp30", sheets)
    li2co3 = conc[:, SPECIES.index("Li2CO3")]
    assert echem.voltage_v.min() > 0.9  # never reaches the EC reduction region
    assert li2co3[-1] > 0.3
    half = li2co3.size // 2
    assert li2co3[-1] - li2co3[half] > 0.2 * li2co3[-1]  # still growing in the second cycle
    # the catalysis descriptor is what makes it: without it the chemical route is negligible
    _, plain, _ = _physics("lto_lp30", sheets, catalysis="none")
    assert plain[-1, SPECIES.index("Li2CO3")] < 0.1 * li2co3[-1]


def test_coo_early_ester_and_semicarbonate_then_lmc_and_a_film_that_shrinks_on_charge(sheets):
    """Leau et al. 2025 (CoO/SuperP in LP30): an early DMDOHC-like ester and semi-carbonate film, LMC later; here the
    outcome of CoO's descriptors (conversion, catalysis, carbon additive, film reversibility), not a special case."""
    echem, conc, _ = _physics("coosp_lp30_int", sheets, seed=3)

    def half_grown_h(species):  # hours until the product reaches half its largest amount
        column = conc[:, SPECIES.index(species)]
        return echem.time_s[np.flatnonzero(column >= 0.5 * column.max())[0]] / 3600.0

    assert max(half_grown_h("DMDOHC"), half_grown_h("semicarbonate")) + 5.0 < half_grown_h("LMC")
    assert half_grown_h("DMDOHC") < half_grown_h("LEDC")
    assert conc[:, SPECIES.index("PVDF")].min() == 1.0  # composite electrode: binder bands present
    organic = conc[:, [SPECIES.index(s) for s in ORGANIC_PRODUCTS]].sum(1)
    assert organic[-1] < 0.9 * organic.max()  # part of the polymeric film decomposes on delithiation
    _, kept, _ = _physics("coosp_lp30_int", sheets, seed=3, film_reversibility=0.0)
    assert (np.diff(_films(kept), axis=0) >= -1e-12).all()


def test_sn_growth_has_jumps_from_its_volume_change(sheets):
    _, conc, _ = _physics("sn_lp30", sheets, seed=1)
    steps = np.diff(_films(conc).sum(1))
    growing = steps[steps > 1e-6]
    assert steps.max() > 50 * np.median(growing)  # a few steps carry much of the growth
    _, rigid, _ = _physics("sn_lp30", sheets, seed=1, volume_change=0.0, film_reversibility=0.0)
    rigid_steps = np.diff(_films(rigid).sum(1))
    assert rigid_steps.max() < 0.2 * steps.max()


def test_one_descriptor_changes_only_its_pathways(sheets):
    """Noise-free truth: the surface-carbonate catalysis of LTO changes Li2CO3 (its product) and leaves every other
    film within the small coupling through the shared solvent; the film reversibility changes nothing before the
    first delithiation."""
    _, base, _ = _physics("cu_lp30", sheets)
    _, catalysed, _ = _physics("cu_lp30", sheets, catalysis="surface_carbonate:25")
    li2co3 = SEI_SPECIES.index("Li2CO3")
    assert _films(catalysed)[-1, li2co3] > _films(base)[-1, li2co3] + 0.2
    others = [j for j in range(len(SEI_SPECIES)) if j != li2co3]
    np.testing.assert_allclose(_films(catalysed)[:, others], _films(base)[:, others], rtol=0.02, atol=1e-3)

    echem, reversible, _ = _physics("sn_lp30", sheets, seed=2)
    _, kept, _ = _physics("sn_lp30", sheets, seed=2, film_reversibility=0.0)
    first_charge = np.flatnonzero(echem.current_ma > 0)[0]
    np.testing.assert_array_equal(reversible[:first_charge], kept[:first_charge])
    assert not np.array_equal(reversible, kept)


def test_carbon_fraction_zero_is_the_bare_electrode(sheets, settings):
    system = _system(sheets, "coosp_lp30_int")
    settings["scale"] = 0.05
    bare = {**system, "working_electrode": "CoO", "carbon_fraction": 0.0, "binder_fraction": 0.0}
    composite_without_carbon = {**system, "carbon_fraction": 0.0, "binder_fraction": 0.0}
    a = simulate_run(bare, "run01", 30, settings)
    b = simulate_run(composite_without_carbon, "run01", 30, settings)
    np.testing.assert_array_equal(a.concentrations, b.concentrations)
    np.testing.assert_array_equal(a.truth, b.truth)
    # and the carbon surface is chemically active: it reduces EC below about 0.8 V like any carbon
    with_carbon = simulate_run({**system, "binder_fraction": 0.0}, "run01", 30, settings)
    ledc = SPECIES.index("LEDC")
    assert with_carbon.concentrations[-1, ledc] > 1.5 * a.concentrations[-1, ledc]


def test_a_new_electrode_is_a_sheet_row(sheets, settings, tmp_path):
    """An electrode the simulator has never seen (Sn with 10 % carbon and 5 % binder, and an invented catalysis)
    simulates from its descriptor values alone."""
    row = {**_system(sheets, "sn_lp30"), "system_id": "snsp_lp30", "working_electrode": "Sn/SuperP",
           "carbon_fraction": 0.1, "binder_fraction": 0.05, "surface_area": 2.0,
           "catalysis": "linear_carbonate_reduction:2"}  # fmt: skip
    settings["scale"] = 0.02
    run = simulate_system_run(row, "run01", ["run01"], settings, tmp_path / "run", tmp_path / "truth.h5")
    assert (tmp_path / "run" / "manifest.tsv").exists()
    assert run.concentrations[:, SPECIES.index("PVDF")].max() == pytest.approx(0.5)
    assert _films(run.concentrations)[-1].sum() > _films(simulate_run(_system(sheets, "sn_lp30"), "run01", 20,
                                                                      settings).concentrations)[-1].sum()
    with h5py.File(tmp_path / "truth.h5") as handle:
        assert json.loads(handle.attrs["config"])["system"]["catalysis"] == "linear_carbonate_reduction:2"


def test_mass_conservation_products_consume_the_electrolyte(sheets):
    _, conc, recipe = _physics("cu_lp30", sheets)
    film = _films(conc)
    probed = 1.0 - FILM_DISPLACEMENT * film.sum(1)
    c0 = solvent_molarities(recipe)
    solvent = sum(conc[:, SPECIES.index(f"{s}_{f}")] for s in ("EC", "DMC") for f in ("free", "solvated"))
    # every film unit of a product consumes sum(precursors) mol/L of solvent, split by availability (the pathways
    # that make one product share their precursors)
    per_product = {p.product: sum(p.precursors.get(s, 0.0) for s in c0) for p in PATHWAYS.values()}
    per_film = np.array([per_product[p] for p in SEI_SPECIES])
    consumed = film @ per_film * FILM_TO_MOLAR
    assert np.allclose(solvent / probed + consumed, c0["EC"] + c0["DMC"], rtol=1e-9)
    assert consumed[-1] > 0.3  # solvent bands fall where products grow
    # and EC, the precursor of LEDC, is consumed more than DMC
    ec = (conc[:, SPECIES.index("EC_free")] + conc[:, SPECIES.index("EC_solvated")]) / probed
    dmc = (conc[:, SPECIES.index("DMC_free")] + conc[:, SPECIES.index("DMC_solvated")]) / probed
    assert c0["EC"] - ec[-1] > c0["DMC"] - dmc[-1] > 0


def test_counterfactual_descriptors_change_only_the_sei(sheets):
    """benchmarks/electrode_bound.py re-simulates a run with another electrode's descriptors: the voltage curve,
    the drift, binder, carbon background and the random draws stay, the films follow the donor's surfaces."""
    system = _system(sheets, "coosp_lp30_int")
    settings = copy.deepcopy(yaml.safe_load((REPO / "config" / "config.yaml").read_text())["simulate"])
    own = simulate_run(system, "run01", 40, settings)
    same = simulate_run(system, "run01", 40, settings, sei_descriptors=sheets.electrodes["coosp_lp30_int"])
    as_cu = simulate_run(system, "run01", 40, settings, sei_descriptors=sheets.electrodes["cu_lp30"])
    np.testing.assert_array_equal(own.truth, same.truth)
    np.testing.assert_array_equal(own.voltage_v, as_cu.voltage_v)
    np.testing.assert_array_equal(own.snr, as_cu.snr)
    film = {name: [run.concentrations[-1, SPECIES.index(name)] for run in (own, as_cu)] for name in ("DMDOHC",)}
    assert film["DMDOHC"][0] > 3 * film["DMDOHC"][1]  # CoO's catalysed ester film
    pvdf = SPECIES.index("PVDF")
    np.testing.assert_array_equal(own.concentrations[:, pvdf], as_cu.concentrations[:, pvdf])
    bare = simulate_run(system, "run01", 40, settings, sei_descriptors=NO_SEI)
    assert _films(bare.concentrations).max() == 0.0
    np.testing.assert_array_equal(own.voltage_v, bare.voltage_v)


def test_solvent_stream_follows_the_current(sheets):
    echem, conc, _ = _physics("ltosp_lp30_int", sheets)
    solvated = conc[:, SPECIES.index("EC_solvated")]
    pf6 = conc[:, SPECIES.index("PF6")]
    on = echem.current_ma < 0
    rest = echem.current_ma == 0
    # local salt depletion under reduction current: fewer Li+-solvated EC and PF6- than at rest
    first_cycle = echem.time_s < echem.time_s[-1] / 4
    assert pf6[on & first_cycle].mean() < pf6[rest & first_cycle].mean()
    assert solvated[on & first_cycle].mean() < solvated[rest & first_cycle].mean()


def test_solvation_splits_a_solvent_and_keeps_its_amount():
    out = solvation({"EC": np.array(7.0), "DMC": np.array(5.6), "VC": np.array(0.3)}, np.array(1.0))
    assert out["EC_free"] + out["EC_solvated"] == pytest.approx(7.0)
    assert out["EC_solvated"] / 7.0 > out["DMC_solvated"] / 5.6  # EC is preferred in the first shell
    total_bound = out["EC_solvated"] + out["DMC_solvated"]
    assert total_bound == pytest.approx(COORDINATION_NUMBER * 1.0)
    assert out["VC"] == 0.3 and "VC_solvated" not in out


def test_voltage_protocols(sheets):
    echem, _, _ = _physics("cu_dmc", sheets)
    assert echem.voltage_v[0] > 2.5 and echem.voltage_v.min() < 0.2 and echem.voltage_v[-1] > 2.5
    echem, _, _ = _physics("coosp_lp30_int", sheets)
    rest = echem.current_ma == 0
    assert rest.mean() == pytest.approx(GITT_REST_RATIO / (1 + GITT_REST_RATIO), abs=0.01)
    # during a rest after a lithiation pulse the voltage relaxes upwards
    starts = np.flatnonzero(np.diff(rest.astype(int)) == 1) + 1
    i = starts[2]
    assert echem.voltage_v[i + 20] > echem.voltage_v[i] + 0.02


def test_snr_lognormal():
    sigma = snr_lognormal_sigma(88.3, 101.9)
    draws = 88.3 * np.exp(np.random.default_rng(0).normal(0, sigma, 200_000))
    assert np.median(draws) == pytest.approx(88.3, rel=0.01) and draws.mean() == pytest.approx(101.9, rel=0.01)
    with pytest.raises(ConfigError, match="mean"):
        snr_lognormal_sigma(100, 90)


# -------------------------------------------------------------------------------------------------------------
# calibration
# -------------------------------------------------------------------------------------------------------------
def test_calibration_set(tmp_path, settings):
    settings["calibration"].update(molarities_m=[0.0, 1.0], replicates=2)
    rows = simulate_calibration(["LiPF6:1.0M; EC:0.5; DMC:0.5"], ["DMC", "EC"], settings, tmp_path)
    table = pd.read_csv(tmp_path / "calibration.tsv", sep="\t", keep_default_na=False)
    assert len(table) == len(rows) == (3 * 2 + len(SEI_SPECIES) + 1) * 2
    assert set(table["kind"]) == {"electrolyte", "sei", "binder"}
    for row in table.itertuples():
        recipe = parse_recipe(row.composition)  # mol/L for every species, the truth's units
        if row.kind == "electrolyte":
            for solvent, molar in recipe.components.items():
                assert getattr(row, f"{solvent}_free") + getattr(row, f"{solvent}_solvated") == pytest.approx(
                    molar, rel=1e-4
                )
            assert row.PF6 == pytest.approx(sum(recipe.salts.values()))
        else:
            assert recipe.components == {row.compound: 1.0} and getattr(row, row.compound) == 1.0
    # each spectrum has its own noise and band shifts: replicates differ, and not only by white noise
    a, b = (read_opus(tmp_path / f).a.y for f in table.loc[table.compound == "LEDC", "file"])
    assert not np.array_equal(a, b)
    pure_dmc = table[table.recipe == "LiPF6:0M; DMC:1"]
    opus = read_opus(tmp_path / pure_dmc.file.iloc[0])
    assert abs(opus.a.x[np.argmax(np.where((opus.a.x > 1700) & (opus.a.x < 1800), opus.a.y, 0))] - 1752) < 4


# -------------------------------------------------------------------------------------------------------------
# bad input
# -------------------------------------------------------------------------------------------------------------
def test_unknown_electrode_solvent_or_run_is_a_clear_error(sheets, settings, tmp_path):
    system = _system(sheets, "cu_dmc")
    with pytest.raises(ConfigError, match="system cu_dmc: working electrode 'Pt'"):
        simulate_system_run({**system, "working_electrode": "Pt"}, "run01", ["run01"], settings, tmp_path,
                                tmp_path / "t.h5")  # fmt: skip
    with pytest.raises(ConfigError, match="solvent.*PC.*no simulator data"):
        simulate_system_run({**system, "electrolyte": "LiPF6:1M; PC:1"}, "run01", ["run01"], settings, tmp_path,
                                tmp_path / "t.h5")  # fmt: skip
    with pytest.raises(ConfigError, match="run 'run09' is not in the runs sheet"):
        simulate_system_run(system, "run09", ["run01"], settings, tmp_path, tmp_path / "t.h5")
    assert not (tmp_path / "manifest.tsv").exists()


# -------------------------------------------------------------------------------------------------------------
# workflow
# -------------------------------------------------------------------------------------------------------------
def test_no_simulate_rules_for_real_data(tmp_path):
    """With data.source 'opus' the raw files are the user's: nothing may produce them (the simulated case runs
    end to end in tests/test_workflow.py)."""
    opus_config = tmp_path / "opus.yaml"
    opus_config.write_text("data:\n  source: opus\n")
    result = run_snakemake(tmp_path, "-n", "results/raw/cu_ec12/run01/manifest.tsv", check=False,
                           configfiles=(REPO / "tests" / "config" / "config.yaml", opus_config))  # fmt: skip
    assert result.returncode != 0
    assert "rule simulate" not in result.stdout
    assert "MissingRuleException" in result.stderr or "No rule to produce" in result.stderr + result.stdout
