"""The neural baselines (opir.neural_baselines): settings, run assembly, networks, and each baseline trained
and used for prediction on a small dataset made here in the contract formats (samples.h5, splits.json, waveform
images, mixture embeddings)."""

from __future__ import annotations

import copy
import json

import h5py
import numpy as np
import pytest
import torch
import yaml
from conftest import REPO

from opir.core.errors import ConfigError, DataError
from opir.core.h5io import atomic_h5, write_axis
from opir.formats.predictions import read_predictions
from opir.formats.samples import load_samples
from opir.neural_baselines.settings import NEURAL_BASELINES, baseline_embedding_variant, resolve_baseline_settings

N_POINTS = 48
SPECTRUM_STEPS = 4


# tiny networks: one torch thread is as fast, and much faster when other jobs share the cores (conftest.py)
pytestmark = pytest.mark.usefixtures("torch_one_thread")


def _band(wavenumber, voltage, system):
    """A band that grows as the voltage falls (SEI-like), at a position that depends on the system."""
    return (0.2 + 0.1 * system) * (3.0 - voltage) * np.exp(-0.5 * ((wavenumber - 1400 - 200 * system) / 40) ** 2)


@pytest.fixture
def dataset(tmp_path):
    """Two systems with two runs each of 11 spectra (10 samples); random split: every 4th sample is a test sample;
    system split: sys_b is held out."""
    from opir.render.waveform import CurveStyle, spectrum_to_waveform

    rng = np.random.default_rng(0)
    wavenumber = np.linspace(800, 2000, N_POINTS)
    rows = {"system_id": [], "run_id": [], "index_in_run": [], "voltage_v": [], "elapsed_s": []}
    keys = ("sample_id", "row", "initial_row", "m", "system_id", "run_id", "voltage_v", "elapsed_s")
    spectra, samples, runs = [], {k: [] for k in keys}, {k: [] for k in ("system_id", "run_id", "first_row", "n_rows")}
    for s, system in enumerate(["sys_a", "sys_b"]):
        for run in ("r1", "r2"):
            first = len(spectra)
            for m in range(11):
                voltage = 3.0 - 0.25 * m if run == "r1" else 3.0 - 0.2 * m
                spectra.append(0.3 + _band(wavenumber, voltage, s) + 0.003 * rng.standard_normal(N_POINTS))
                for key, value in zip(rows, [system, run, m, voltage, 60.0 * m], strict=True):
                    rows[key].append(value)
                if m:
                    for key, value in zip(samples, [f"{system}/{run}/{m:05d}", first + m, first, m, system, run,
                                                    voltage, 60.0 * m], strict=True):
                        samples[key].append(value)
            for key, value in zip(runs, [system, run, first, 11], strict=True):
                runs[key].append(value)
    samples_h5 = tmp_path / "samples.h5"
    with h5py.File(samples_h5, "w") as h5:
        write_axis(h5, "wavenumber_cm1", wavenumber, units="1/cm")
        h5["spectra/absorbance"] = np.asarray(spectra, dtype=np.float32)
        for group, table in (("rows", rows), ("samples", samples), ("runs", runs)):
            for key, values in table.items():
                write_axis(h5.require_group(group), key, np.asarray(values))
    ids = samples["sample_id"]
    test_random = ids[3::4]
    (tmp_path / "splits.json").write_text(json.dumps({
        "random": {"train": [i for i in ids if i not in test_random], "test": test_random},
        "system": {"train": [i for i in ids if i.startswith("sys_a")],
                   "test": [i for i in ids if i.startswith("sys_b")]},
    }))
    style = CurveStyle(height=32, width=32, centre=0.5, clip=0.6)
    with atomic_h5(tmp_path / "waveform.h5", {f"render_{k}": v for k, v in style.attrs().items()}) as h5:
        h5["images"] = spectrum_to_waveform(np.asarray(spectra), style)
        write_axis(h5, "row", np.arange(len(spectra)))
    with h5py.File(tmp_path / "mixture.h5", "w") as h5:
        write_axis(h5, "system_id", np.array(["sys_a", "sys_b"]))
        h5["mixture_embedding"] = rng.standard_normal((2, 6)).astype(np.float32)
    return tmp_path


def _models_config() -> dict:
    """models section of the default config, with the test config's overrides and tiny 1D baselines."""
    from opir.core.config import validate_with_schema

    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    validate_with_schema(config, "config.schema.yaml", "config.yaml")
    models = copy.deepcopy(config["models"])
    models["abcc"].update(hidden_size=16, depth=1, num_heads=2, profile_length=8)
    models["abcc"]["train"].update(max_steps=3, batch_size=4, warmup_steps=0, checkpoint_every=2, log_every=1)
    models["abcc"]["predict"].update(draws=2, batch_size=8, background_grey=8)
    nb = models["neural_baselines"]
    nb["sit_flow_matching"]["euler_steps"] = 3
    nb["gru_forecaster"].update(hidden_size=16, layers=1, stride=2)
    nb["trajectory_flow"].update(frames=6, hidden_size=16, depth=1, num_heads=2, euler_steps=3)
    for name in ("gru_forecaster", "trajectory_flow"):
        nb[name]["train"].update(steps=SPECTRUM_STEPS, batch_size=3, warmup_steps=0, checkpoint_every=2, log_every=1)
    nb["trajectory_flow"]["predict"]["draws"] = 3
    return models


# --------------------------------------------------------------------------------------------------------------
# Settings
# --------------------------------------------------------------------------------------------------------------
def test_latent_baselines_share_abccs_backbone_and_take_overrides():
    models = _models_config()
    plain = resolve_baseline_settings(models, "sit_regression")
    assert plain["kind"] == "sit_regression"
    assert {k: plain[k] for k in ("hidden_size", "depth", "train")} == {
        k: models["abcc"][k] for k in ("hidden_size", "depth", "train")}
    models["neural_baselines"]["sit_flow_matching"]["overrides"] = {"depth": 3, "train": {"lr": 1e-2}}
    flow = resolve_baseline_settings(models, "sit_flow_matching")
    assert flow["depth"] == 3 and flow["train"]["lr"] == 1e-2 and flow["train"]["batch_size"] == 4
    assert flow["euler_steps"] == 3 and "overrides" not in flow
    gru = resolve_baseline_settings(models, "gru_forecaster")
    assert gru["condition"]["voltage_scale_v"] == models["abcc"]["voltage_scale_v"]
    assert baseline_embedding_variant({"models": models, "embed": {"variant": "smiles"}}, "gru_forecaster") == "smiles"


def test_bad_baseline_settings_are_named():
    models = _models_config()
    models["neural_baselines"]["sit_regression"]["overrides"] = {"train": {"learning_rate": 1.0}}
    with pytest.raises(ConfigError, match=r"sit_regression\.overrides\.train\.learning_rate: unknown key"):
        resolve_baseline_settings(models, "sit_regression")
    with pytest.raises(ConfigError, match="unknown baseline 'lstm'"):
        resolve_baseline_settings(models, "lstm")


def test_schema_rejects_unknown_baseline_names():
    from opir.core.config import validate_with_schema

    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    config["models"]["neural_baselines"]["models"] = ["sit_regression", "transformer_xl"]
    with pytest.raises(ConfigError, match="neural_baselines.models"):
        validate_with_schema(config, "config.schema.yaml", "config.yaml")


# --------------------------------------------------------------------------------------------------------------
# Runs, clips and networks
# --------------------------------------------------------------------------------------------------------------
def test_runs_mark_only_training_targets_usable(dataset):
    from opir.formats.samples import load_split
    from opir.neural_baselines.series import build_runs

    table = load_samples(dataset / "samples.h5")
    split = load_split(dataset / "splits.json", "random")
    train_idx = np.sort(table.sample_index(split["train"], "train"))
    test_idx = np.sort(table.sample_index(split["test"], "test"))
    runs = build_runs(table, test_idx, train_idx)
    assert [run.key for run in runs] == ["sys_a/r1", "sys_a/r2", "sys_b/r1", "sys_b/r2"]
    run = runs[0]
    assert len(run.rows) == 11 and run.elapsed_s[0] == 0.0
    # the test samples m = 4 and 8 of the run are never usable, s(v_0) always is
    assert run.available.tolist() == [0, 1, 2, 3, 5, 6, 7, 9, 10]
    assert sorted(run.sample_index) == [4, 8]


def test_clip_frames_interpolate_between_usable_rows(dataset):
    from opir.neural_baselines.series import build_runs, clip_from_run

    table = load_samples(dataset / "samples.h5")
    idx = np.arange(len(table.samples["sample_id"]))
    run = build_runs(table, idx, idx)[0]
    condition = {"voltage_center_v": 1.5, "voltage_scale_v": 1.5, "time_scale_s": 3600.0}
    clip = clip_from_run(run, 2, 10, 5, condition)  # frames at rows 2, 4, 6, 8, 10
    np.testing.assert_allclose(clip["delta"][0], 0.0, atol=1e-7)
    np.testing.assert_allclose(clip["delta"], run.spectra[[2, 4, 6, 8, 10]] - run.spectra[2], atol=1e-6)
    np.testing.assert_allclose(clip["frame_features"][:, 0], (run.voltage_v[[2, 4, 6, 8, 10]] - 1.5) / 1.5, atol=1e-6)
    assert clip["frame_features"][0, 1] == 0.0  # elapsed time counts from the clip's start
    half = clip_from_run(run, 0, 3, 3, condition)  # a frame at row 1.5: halfway between rows 1 and 2
    np.testing.assert_allclose(half["delta"][1], 0.5 * (run.spectra[1] + run.spectra[2]) - run.spectra[0], atol=1e-6)
    with pytest.raises(DataError, match="end > start"):
        clip_from_run(run, 4, 4, 3, condition)


def test_gru_forecaster_is_causal_and_starts_at_persistence():
    from opir.models.nb_nets import VoltageGRU

    torch.manual_seed(0)
    for stride in (1, 3):
        model = VoltageGRU(n_points=10, mixture_dim=3, step_features=3, hidden=8, layers=2, dropout=0.0,
                           delta_scale=0.1, stride=stride)
        initial, mixture, steps = torch.randn(2, 10), torch.randn(2, 3), torch.randn(2, 8, 3)
        assert torch.all(model(initial, mixture, steps) == 0)  # zero change before training: persistence
        torch.nn.init.normal_(model.head[-1].weight)
        out = model(initial, mixture, steps)
        assert out.shape == (2, 8, 10)
        for m in range(7):
            later = steps.clone()
            later[:, m + 1 :] += 1.0  # change the profile after step m
            changed = model(initial, mixture, later)
            torch.testing.assert_close(out[:, : m + 1], changed[:, : m + 1])
            assert not torch.allclose(out[:, m + 1 :], changed[:, m + 1 :])


def test_trajectory_transformer_shapes_and_zero_start():
    from opir.models.nb_nets import TrajectoryTransformer

    model = TrajectoryTransformer(n_points=12, frames=5, mixture_dim=3, frame_features=3, clip_features=3, hidden=8,
                                  depth=2, num_heads=2, mlp_ratio=2.0)
    out = model(torch.randn(4, 5, 12), torch.rand(4), torch.randn(4, 5, 3), torch.randn(4, 12), torch.randn(4, 3),
                torch.randn(4, 3))
    assert out.shape == (4, 5, 12) and torch.all(out == 0)


# --------------------------------------------------------------------------------------------------------------
# Each baseline trained and predicting, in the contract formats
# --------------------------------------------------------------------------------------------------------------
@pytest.fixture
def latents(dataset):
    from opir.latent.vae import build_or_train_vae, encode_waveforms

    vae = {"pretrained_dir": None, "block_out_channels": [32, 32], "latent_channels": 4, "layers_per_block": 1,
           "norm_num_groups": 32, "mid_block_attention": False, "steps": 2, "batch_size": 4, "lr": 1e-3,
           "kl_weight": 1e-6, "seed": 0, "encode_batch_size": 16}
    build_or_train_vae(dataset / "waveform.h5", dataset / "samples.h5", dataset / "splits.json", "system",
                       dataset / "vae", vae, dataset / "ckpt_vae", "cpu", progress=False)
    encode_waveforms(dataset / "waveform.h5", dataset / "vae", dataset / "latent.h5", 16, "cpu")
    return dataset


def _train_and_predict(d, name, split, models, **paths):
    from opir.neural_baselines.predict import predict_neural_baseline
    from opir.neural_baselines.train import train_neural_baseline

    settings = resolve_baseline_settings(models, name)
    train_neural_baseline(d / "samples.h5", d / "splits.json", d / "mixture.h5", split, name, settings,
                          d / "models" / name, d / "ckpt" / name, "cpu", progress=False, **paths)
    paths.pop("latent_h5", None), paths.pop("waveform_h5", None)
    predict_neural_baseline(d / "samples.h5", d / "splits.json", d / "mixture.h5", split, d / "models" / name,
                            d / f"{name}.h5", settings["predict"], "cpu", attrs={"rule": "test"},
                            latent_h5=d / "latent.h5", waveform_h5=d / "waveform.h5", vae_dir=d / "vae")
    meta = json.loads((d / "models" / name / "model.json").read_text())
    assert meta["kind"] == name and (d / "models" / name / "training_curve.csv").read_text().startswith("step,")
    return read_predictions(d / f"{name}.h5"), meta


def test_latent_baselines_end_to_end(latents):
    d, models = latents, _models_config()
    test_ids = json.loads((d / "splits.json").read_text())["system"]["test"]
    paths = {"latent_h5": d / "latent.h5", "waveform_h5": d / "waveform.h5"}
    regression, meta = _train_and_predict(d, "sit_regression", "system", models, **paths)
    assert meta["architecture"]["kwargs"]["sit"]["hidden_size"] == 16 and meta["train_steps"] == 3
    assert regression.prediction.shape == (len(test_ids), 1, N_POINTS)  # deterministic: one draw
    assert list(regression.sample_id) == test_ids and np.all(np.isfinite(regression.prediction))
    flow, meta = _train_and_predict(d, "sit_flow_matching", "system", models, **paths)
    assert meta["architecture"]["kwargs"]["with_noise_input"] is True
    assert flow.prediction.shape == (len(test_ids), 2, N_POINTS)
    assert np.abs(flow.prediction[:, 0] - flow.prediction[:, 1]).max() > 0  # draws differ
    with h5py.File(d / "sit_flow_matching.h5") as h5:
        assert h5.attrs["sampler"] == "euler_3" and h5.attrs["model"] == "sit_flow_matching"
        # trained on sys_a alone: sys_b's mixture is placed at sys_a's (opir.models.domain), and the file says so
        assert h5.attrs["mixture_domain"] == "training" and set(json.loads(h5.attrs["mixtures_moved"])) == {"sys_b"}


@pytest.mark.parametrize("name", ["gru_forecaster", "trajectory_flow"])
def test_spectrum_baselines_never_read_test_targets(dataset, name):
    """Test targets are set to NaN: training and prediction must not touch them (outputs stay finite)."""
    with h5py.File(dataset / "samples.h5", "a") as h5:
        test_ids = json.loads((dataset / "splits.json").read_text())["random"]["test"]
        ids = [s.decode() if isinstance(s, bytes) else s for s in h5["samples/sample_id"][()]]
        rows = h5["samples/row"][()][[ids.index(s) for s in test_ids]]
        absorbance = h5["spectra/absorbance"][()]
        absorbance[rows] = np.nan
        h5["spectra/absorbance"][...] = absorbance
    predictions, meta = _train_and_predict(dataset, name, "random", _models_config())
    draws = 1 if name == "gru_forecaster" else 3
    assert predictions.prediction.shape == (len(test_ids), draws, N_POINTS)
    assert list(predictions.sample_id) == test_ids
    assert np.all(np.isfinite(predictions.prediction)) and meta["train_steps"] == SPECTRUM_STEPS
    assert meta["delta_scale"] > 0 and len(meta["training_runs"]) == 4
    with h5py.File(dataset / f"{name}.h5") as h5:  # the random split's test systems are all seen: none moved
        assert h5.attrs["mixture_domain"] == "training" and json.loads(h5.attrs["mixtures_moved"]) == {}


def _mae_and_persistence_mae(dataset, predictions) -> tuple[float, float]:
    """MAE of the predictions' mean and of Persistence (s(v_0) repeated) on the predicted test samples."""
    table = load_samples(dataset / "samples.h5")
    idx = table.sample_index(predictions.sample_id, "test")
    target = table.absorbance[table.samples["row"][idx]]
    persistence = table.absorbance[table.samples["initial_row"][idx]]
    return np.abs(predictions.mean - target).mean(), np.abs(persistence - target).mean()


def test_gru_forecaster_learns_the_voltage_driven_change(dataset):
    """A few hundred steps on the toy data: the GRU must beat persistence on the held-out samples."""
    models = _models_config()
    models["neural_baselines"]["gru_forecaster"]["train"].update(steps=150, lr=1e-2, batch_size=4, ema_decay=0.9,
                                                                 checkpoint_every=150)
    predictions, _ = _train_and_predict(dataset, "gru_forecaster", "random", models)
    model_mae, persistence_mae = _mae_and_persistence_mae(dataset, predictions)
    assert model_mae < 0.5 * persistence_mae, (model_mae, persistence_mae)


def test_missing_inputs_are_named(dataset):
    from opir.neural_baselines.train import load_baseline, train_neural_baseline

    models = _models_config()
    with h5py.File(dataset / "mixture.h5", "a") as h5:
        del h5["system_id"]
        write_axis(h5, "system_id", np.array(["sys_a", "other"]))
    with pytest.raises(DataError, match="no mixture embedding for system.*sys_b"):
        train_neural_baseline(dataset / "samples.h5", dataset / "splits.json", dataset / "mixture.h5", "random",
                              "gru_forecaster", resolve_baseline_settings(models, "gru_forecaster"),
                              dataset / "m", dataset / "c", "cpu", progress=False)
    with pytest.raises(ConfigError, match="needs the split's latents"):
        train_neural_baseline(dataset / "samples.h5", dataset / "splits.json", dataset / "mixture.h5", "random",
                              "sit_regression", resolve_baseline_settings(models, "sit_regression"),
                              dataset / "m", dataset / "c", "cpu", progress=False)
    (dataset / "other").mkdir()
    (dataset / "other" / "model.json").write_text(json.dumps({"kind": "abcc"}))
    with pytest.raises(DataError, match="not a neural baseline"):
        load_baseline(dataset / "other")


def test_every_baseline_has_a_table_label():
    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    labels = config["evaluate"]["labels"]
    assert all(name in labels for name in NEURAL_BASELINES)


def test_trajectory_flow_learns_the_voltage_driven_change(dataset):
    """The whole-run generator, trained briefly on the toy data, must beat persistence on the held-out samples."""
    models = _models_config()
    nb = models["neural_baselines"]["trajectory_flow"]
    nb.update(hidden_size=32, euler_steps=8)
    nb["train"].update(steps=120, lr=3e-3, batch_size=8, ema_decay=0.9, checkpoint_every=120)
    predictions, _ = _train_and_predict(dataset, "trajectory_flow", "random", models)
    model_mae, persistence_mae = _mae_and_persistence_mae(dataset, predictions)
    assert model_mae < 0.5 * persistence_mae, (model_mae, persistence_mae)
