"""The SiT backbone, the condition, the VAE (local folder or small trained) and the ABCC stages end to end on a
small dataset made here (samples.h5, splits.json, waveform.h5, mixture embeddings in their contract formats)."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import h5py
import numpy as np
import pytest
import torch

from opir.core.errors import ConfigError, DataError
from opir.core.h5io import atomic_h5, write_axis
from opir.formats.samples import load_split
from opir.models.conditioning import Condition, ConditionEncoder
from opir.models.settings import resolve_model_config
from opir.models.sit import SIT_SIZES, SiT, SiTConfig, sincos_pos_embed_2d
from opir.preprocess.dataset import write_electrode_descriptors
from opir.preprocess.profile import profile_features, resample_voltage_profile

# tiny networks: one torch thread is as fast, and much faster when other jobs share the cores (conftest.py)
pytestmark = pytest.mark.usefixtures("torch_one_thread")


def test_sit_shapes_and_adaln_zero_start():
    model = SiT(SiTConfig(input_size=8, patch_size=2, in_channels=6, out_channels=3, hidden_size=32, depth=2,
                          num_heads=4, cond_dim=5))
    x = torch.randn(2, 6, 8, 8)
    out = model(x, torch.rand(2), torch.rand(2), torch.randn(2, 5))
    assert out.shape == (2, 3, 8, 8)
    assert torch.count_nonzero(out) == 0  # zero-initialized modulation and output layer
    for block in model.blocks:
        assert torch.count_nonzero(block.adaLN_modulation[-1].weight) == 0


def test_sit_b2_is_the_paper_size():
    config = SiTConfig(input_size=32, in_channels=8, out_channels=4, cond_dim=768, **SIT_SIZES["B/2"])
    with torch.device("meta"):  # shapes only: no memory, no initialisation time
        n_params = sum(p.numel() for p in SiT(config).parameters())
    assert 125e6 < n_params < 140e6  # SiT-B/2 has about 130 M parameters (plus our second time embedder)


def test_sincos_positions_distinguish_every_patch():
    pos = sincos_pos_embed_2d(16, 4)
    assert pos.shape == (16, 16)
    assert len({tuple(np.round(row, 6)) for row in pos}) == 16


def test_explicit_and_sdpa_attention_agree():
    torch.manual_seed(0)
    a = SiT(SiTConfig(input_size=4, in_channels=2, out_channels=2, hidden_size=16, depth=1, num_heads=2,
                      cond_dim=3, attention="sdpa"))
    b = SiT(SiTConfig(input_size=4, in_channels=2, out_channels=2, hidden_size=16, depth=1, num_heads=2,
                      cond_dim=3, attention="explicit"))
    with torch.no_grad():
        for p in a.parameters():
            p.normal_(0, 0.2)
    b.load_state_dict(a.state_dict())
    args = (torch.randn(2, 2, 4, 4), torch.rand(2), torch.rand(2), torch.randn(2, 3))
    torch.testing.assert_close(a(*args), b(*args), rtol=1e-4, atol=1e-5)


def test_voltage_profile_features():
    profile = resample_voltage_profile(np.array([3.0, 2.0, 1.0]), 5)
    np.testing.assert_allclose(profile, [3.0, 2.5, 2.0, 1.5, 1.0])
    np.testing.assert_allclose(resample_voltage_profile(np.array([2.0]), 3), [2.0, 2.0, 2.0])
    features = profile_features(np.array([3.0, 1.5]), 3600.0, 4, 1.5, 1.5, 3600.0)
    assert features.shape == (6,)
    assert features[-2] == pytest.approx(0.0) and features[-1] == pytest.approx(np.log(2.0))
    with pytest.raises(DataError, match="NaN"):
        resample_voltage_profile(np.array([1.0, np.nan]), 4)
    with pytest.raises(DataError, match="elapsed"):
        profile_features(np.array([1.0]), -1.0, 4, 1.5, 1.5, 3600.0)


def test_exposure_features_integrate_time_below_each_threshold():
    # 1 h at 0.5 V, then up to 2.5 V an hour later; the exposure is the trapezoid rule on the acquired points, as in
    # the voltage-regression baseline: below 1 V, 0.5 V h for the first hour and (0.5 + 0) / 2 V h for the second
    voltage = np.array([0.5, 0.5, 2.5])
    time_s = np.array([0.0, 3600.0, 7200.0])
    features = profile_features(voltage, 7200.0, 4, 1.5, 1.5, 3600.0, time_s, (1.0, 3.0))
    plain = profile_features(voltage, 7200.0, 4, 1.5, 1.5, 3600.0)
    assert features.shape == (plain.size + 5,)
    np.testing.assert_allclose(features[: plain.size], plain)
    minimum, maximum, recovery, below_1v, below_3v = features[plain.size :]
    assert minimum == pytest.approx((0.5 - 1.5) / 1.5) and maximum == pytest.approx((2.5 - 1.5) / 1.5)
    assert recovery == pytest.approx(2.0 / 1.5)
    assert below_1v == pytest.approx(np.log1p(0.5 + 0.25), rel=1e-6)
    assert below_3v == pytest.approx(np.log1p(2.5 + 0.5 * (2.5 + 0.5)), rel=1e-6)
    with pytest.raises(DataError, match="acquisition time"):
        profile_features(voltage, 7200.0, 4, 1.5, 1.5, 3600.0, None, (1.0,))
    with pytest.raises(DataError, match="non-decreasing"):
        profile_features(voltage, 7200.0, 4, 1.5, 1.5, 3600.0, time_s[::-1], (1.0,))


def test_condition_dropout_removes_every_trace_of_the_condition():
    encoder = ConditionEncoder(latent_channels=2, profile_dim=4, mixture_dim=3, hidden=8)
    cond = Condition(torch.randn(3, 2, 4, 4), torch.randn(3, 4), torch.randn(3, 3))
    other = Condition(torch.randn(3, 2, 4, 4), torch.randn(3, 4), torch.randn(3, 3))
    drop = torch.tensor([True, False, True])
    vec_a, ch_a = encoder(cond, drop)
    vec_b, ch_b = encoder(other, drop)
    assert torch.equal(vec_a[drop], vec_b[drop]) and torch.count_nonzero(ch_a[drop]) == 0
    assert not torch.equal(vec_a[1], vec_b[1])


def test_model_settings_merge_and_reject_unknown_keys():
    models = {"abcc": {"depth": 4, "train": {"lr": 1e-3, "epochs": 2}},
              "variants": {"a": {}, "b": {"train": {"lr": 5e-4}}}}
    assert resolve_model_config(models, "b") == {"depth": 4, "train": {"lr": 5e-4, "epochs": 2}}
    models["variants"]["c"] = {"train": {"learning_rate": 1}}
    with pytest.raises(ConfigError, match=r"models.variants.c.train.learning_rate: unknown key"):
        resolve_model_config(models, "c")


def test_train_params_leave_out_later_switches_that_are_off():
    """A switch added after models were trained (``LATER_SWITCHES``) is not in the train rule's params while it is
    off, so snakemake keeps the models trained before it; turned on, it is there and retrains."""
    from opir.models.settings import LATER_SWITCHES, abcc_train_settings

    models = {"abcc": {"depth": 4, "run_context": False, "context_anchor": False, "predict": {
        "batch_size": 8, "background_grey": 0.9, "euler_steps": 0, "draws": 4}}, "variants": {
        "a": {}, "b": {"run_context": True, "context_anchor": True}}}
    assert set(LATER_SWITCHES) == {"context_anchor"}
    assert abcc_train_settings(models, "a", "random") == {"depth": 4, "run_context": False, "predict": {
        "batch_size": 8, "background_grey": 0.9, "euler_steps": 0}}
    assert abcc_train_settings(models, "b", "random")["context_anchor"] is True


def test_the_sampler_may_differ_by_split():
    """`predict.euler_steps_by_split`: a model samples one split with one step and the other with Euler steps (each
    chosen on that split's held-out training data); the model trained on a split keeps its sampler for `opir
    predict`; without the mapping the rule params are what they were before it existed."""
    import yaml

    from opir.core.config import validate_with_schema
    from opir.models.settings import abcc_predict_settings, abcc_train_settings

    predict = {"batch_size": 8, "background_grey": 0.9, "euler_steps": 0, "draws": 4,
               "euler_steps_by_split": {"random": None, "system": None}}
    models = {"abcc": {"depth": 4, "splits": ["random", "system"], "predict": predict}, "variants": {
        "a": {}, "b": {"predict": {"euler_steps_by_split": {"system": 4}}},
        "b_one_step": {"trained_as": "b", "predict": {"euler_steps_by_split": {"system": 0}}, "splits": ["system"]},
        "b_euler2": {"trained_as": "b", "predict": {"euler_steps": 2}}}}
    assert abcc_predict_settings(models, "a", "system") == {k: v for k, v in predict.items()
                                                            if k != "euler_steps_by_split"}  # fmt: skip
    steps = {(m, split): abcc_predict_settings(models, m, split)["euler_steps"]
             for m in ("b", "b_euler2") for split in ("random", "system")}  # fmt: skip
    # the per-split choice wins over euler_steps, also in a prediction-only row that inherits it
    assert steps == {("b", "random"): 0, ("b", "system"): 4, ("b_euler2", "random"): 2, ("b_euler2", "system"): 4}
    assert abcc_predict_settings(models, "b_one_step", "system")["euler_steps"] == 0
    assert abcc_train_settings(models, "b", "system")["predict"] == {"batch_size": 8, "background_grey": 0.9,
                                                                     "euler_steps": 4}  # fmt: skip
    assert abcc_train_settings(models, "b", "random")["predict"]["euler_steps"] == 0
    assert abcc_train_settings(models, "a", "system") == abcc_train_settings(models, "a", "random")

    config = yaml.safe_load((Path(__file__).parents[1] / "config" / "config.yaml").read_text())
    config["models"]["variants"]["abcc1d"]["predict"]["euler_steps_by_split"] = {"sytem": 4}
    validate_with_schema(config, "config.schema.yaml", "config")  # fills models.abcc's defaults; variants are
    with pytest.raises(ConfigError, match=r"abcc1d.predict.euler_steps_by_split.sytem: unknown key; allowed: random"):
        resolve_model_config(config["models"], "abcc1d")  # checked against them when resolved
    config["models"]["abcc"]["predict"]["euler_steps_by_split"] = {"system": -1}
    with pytest.raises(ConfigError, match=r"euler_steps_by_split.system: -1 is less than the minimum"):
        validate_with_schema(config, "config.schema.yaml", "config")


# --------------------------------------------------------------------------------------------------------------
# VAE
# --------------------------------------------------------------------------------------------------------------
def small_vae():
    from opir.models.vae import build_small_vae

    torch.manual_seed(0)
    return build_small_vae(32, [32, 32], 4, 1, 32, False)


def test_small_vae_roundtrip_shapes_and_pretrained_folder(tmp_path, monkeypatch):
    from opir.models.vae import decode_latents, encode_images, load_pretrained_vae

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    vae = small_vae()
    images = np.random.default_rng(0).integers(0, 255, (3, 32, 32), dtype=np.uint8)
    latents = encode_images(vae, images, 2, torch.device("cpu"))
    assert latents.shape == (3, 4, 16, 16)
    decoded = decode_latents(vae, torch.from_numpy(latents), 2, torch.device("cpu"))
    assert decoded.shape == (3, 32, 32) and decoded.min() >= 0 and decoded.max() <= 255

    vae.save_pretrained(tmp_path / "vae", safe_serialization=True)
    loaded = load_pretrained_vae(tmp_path / "vae")
    np.testing.assert_allclose(encode_images(loaded, images, 3, torch.device("cpu")), latents, atol=1e-5)


def test_pretrained_vae_folder_errors(tmp_path):
    from opir.models.vae import load_pretrained_vae

    with pytest.raises(ConfigError, match="no config.json"):
        load_pretrained_vae(tmp_path)
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(ConfigError, match="no .safetensors"):
        load_pretrained_vae(tmp_path)


def test_three_channel_vae_gets_repeated_images():
    from opir.models.vae import images_to_input

    x = images_to_input(np.full((2, 8, 8), 255, dtype=np.uint8), 3)
    assert x.shape == (2, 3, 8, 8) and torch.all(x == 1.0)


# --------------------------------------------------------------------------------------------------------------
# The stages on a small dataset in the contract formats
# --------------------------------------------------------------------------------------------------------------
N_POINTS = 48


@pytest.fixture
def dataset(tmp_path):
    """Two systems, one run each with 9 spectra (8 samples); a band that grows as the voltage falls."""
    from opir.render.waveform import CurveStyle, spectrum_to_waveform

    rng = np.random.default_rng(0)
    wavenumber = np.linspace(800, 2000, N_POINTS)
    rows = {"system_id": [], "run_id": [], "voltage_v": [], "elapsed_s": []}
    spectra, samples = [], {k: [] for k in ("sample_id", "row", "initial_row", "m", "system_id", "run_id",
                                            "voltage_v", "elapsed_s")}
    for s, system in enumerate(["sys_a", "sys_b"]):
        first = len(spectra)
        for m in range(9):
            voltage = 3.0 - 0.3 * m
            band = (0.2 + 0.1 * s) * (3.0 - voltage) * np.exp(-0.5 * ((wavenumber - 1400 - 200 * s) / 40) ** 2)
            spectra.append(0.3 + band + 0.005 * rng.standard_normal(N_POINTS))
            for key, value in zip(rows, [system, "r1", voltage, 60.0 * m], strict=True):
                rows[key].append(value)
            if m:
                for key, value in zip(samples, [f"{system}/r1/{m:05d}", first + m, first, m, system, "r1", voltage,
                                                60.0 * m], strict=True):
                    samples[key].append(value)
    samples_h5 = tmp_path / "samples.h5"
    with h5py.File(samples_h5, "w") as h5:
        write_axis(h5, "wavenumber_cm1", wavenumber)
        h5["spectra/absorbance"] = np.asarray(spectra, dtype=np.float32)
        for key, values in rows.items():
            write_axis(h5.require_group("rows"), key, np.asarray(values))
        for key, values in samples.items():
            write_axis(h5.require_group("samples"), key, np.asarray(values))
    ids = samples["sample_id"]
    test_ids = [ids[3], ids[12]]
    (tmp_path / "splits.json").write_text(json.dumps({
        "random": {"train": [i for i in ids if i not in test_ids], "test": test_ids},
        "system": {"train": ids[:8], "test": ids[8:]},
    }))
    style = CurveStyle(height=32, width=32, centre=0.5, clip=0.6)
    with atomic_h5(tmp_path / "waveform.h5", {f"render_{k}": v for k, v in style.attrs().items()}) as h5:
        h5["images"] = spectrum_to_waveform(np.asarray(spectra), style)
        write_axis(h5, "row", np.arange(len(spectra)))
    # the variation stream (one image per sample) and MCR streams (one row per spectrum), in their formats
    spectra_arr = np.asarray(spectra, dtype=np.float32)
    difference = CurveStyle(height=32, width=32, centre=0.0, clip=0.4, thickness_px=1.0)
    rows_, initial_ = np.asarray(samples["row"]), np.asarray(samples["initial_row"])
    with atomic_h5(tmp_path / "variation.h5", {f"render_{k}": v for k, v in difference.attrs().items()}) as h5:
        h5["images"] = spectrum_to_waveform(spectra_arr[rows_] - spectra_arr[initial_], difference)
        for key, values in (("row", rows_), ("initial_row", initial_), ("sample_id", np.asarray(ids))):
            write_axis(h5, key, values)
    with h5py.File(tmp_path / "streams.h5", "w") as h5:
        sei = np.clip(spectra_arr - spectra_arr[[0] * 9 + [9] * 9], 0, None)
        h5["elec/elec"] = spectra_arr - sei
        h5["sei/sei"] = sei
    with h5py.File(tmp_path / "mixture.h5", "w") as h5:
        write_axis(h5, "system_id", np.array(["sys_a", "sys_b"]))
        h5["mixture_embedding"] = rng.standard_normal((2, 6)).astype(np.float32)
    foil = {"electrode_class": "collector", "carbon_fraction": 0.0, "binder_fraction": 0.0, "surface_area": 1.0,
            "volume_change": 0.0, "film_reversibility": 0.0, "catalysis": "none"}
    tin = {**foil, "electrode_class": "alloying", "volume_change": 2.6}
    write_electrode_descriptors([{"system_id": "sys_a", "working_electrode": "Cu", **foil},
                                 {"system_id": "sys_b", "working_electrode": "Sn", **tin}], tmp_path / "electrodes.h5")
    return tmp_path


MODEL_SETTINGS = {
    "hidden_size": 16, "depth": 1, "num_heads": 2, "patch_size": 2, "mlp_ratio": 2.0, "attention": "sdpa",
    "profile_length": 8, "voltage_center_v": 1.5, "voltage_scale_v": 1.5, "time_scale_s": 3600.0,
    "embedding_variant": None,
    "meanflow": {"time_mu": -0.4, "time_sigma": 1.0, "fraction_r_neq_t": 0.25, "adaptive_p": 0.75,
                 "adaptive_c": 1e-3, "cfg_omega": 1.0, "cfg_kappa": 0.5, "cond_dropout": 0.1,
                 "jvp_dtype": "float32"},
    "train": {"epochs": 1, "max_steps": 4, "batch_size": 4, "lr": 1e-3, "weight_decay": 0.0, "betas": [0.9, 0.95],
              "warmup_steps": 0, "ema_decay": 0.99, "grad_clip": 1.0, "checkpoint_every": 2, "keep_checkpoints": 1,
              "log_every": 1, "seed": 0, "precision": "auto"},
    "predict": {"draws": 3, "batch_size": 8, "seed": 0, "euler_steps": 0, "background_grey": 8},
    # the ABCC core: no residual stream, one backbone, MeanFlow alone
    "space": "latent", "chemical_flow": False, "two_stream": False, "branch_depth": 1, "spectral_patch_size": 8,
    "fusion_fit_samples": 6, "splits": ["random", "system"], "electrode_descriptors": False, "scale_condition": False,
    "losses": {"mass_weight": 0.0, "peak_weight": 0.0, "stream_weight": 0.0, "peak_prominence": 0.05,
               "peak_max_peaks": 4, "peak_half_window_points": 3, "peak_temperature": 0.02},
}
COMPLETE_SETTINGS = {**MODEL_SETTINGS, "depth": 2, "chemical_flow": True, "two_stream": True,
                     "losses": {**MODEL_SETTINGS["losses"], "mass_weight": 1.0, "peak_weight": 0.1,
                                "stream_weight": 0.1}}
VAE_SETTINGS = {"pretrained_dir": None, "block_out_channels": [32, 32], "latent_channels": 4, "layers_per_block": 1,
                "norm_num_groups": 32, "mid_block_attention": False, "steps": 3, "batch_size": 4, "lr": 1e-3,
                "kl_weight": 1e-6, "seed": 0, "encode_batch_size": 8}


def test_stages_end_to_end(dataset):
    from opir.formats.images import read_latents
    from opir.formats.predictions import read_predictions
    from opir.latent.vae import build_or_train_vae, encode_waveforms, training_rows
    from opir.predict.abcc import load_abcc, predict_abcc
    from opir.train.abcc import train_abcc

    d = dataset
    rows = training_rows(d / "samples.h5", d / "splits.json", "system")
    assert rows.tolist() == list(range(9))  # system sys_a only: its 8 targets and its initial spectrum
    build_or_train_vae(d / "waveform.h5", d / "samples.h5", d / "splits.json", "system", d / "vae", VAE_SETTINGS,
                       d / "ckpt_vae", "cpu", progress=False)
    assert (d / "vae" / "config.json").exists() and (d / "vae" / "diffusion_pytorch_model.safetensors").exists()
    encode_waveforms(d / "waveform.h5", d / "vae", d / "latent.h5", 8, "cpu")
    latents, scaling = read_latents(d / "latent.h5")
    assert latents.shape == (18, 4, 16, 16) and scaling > 0

    # the condition as the CPU presets have it: electrode descriptors and a standardized mixture embedding
    settings = {**MODEL_SETTINGS, "electrode_descriptors": True, "scale_condition": True}
    with pytest.raises(DataError, match="settings need the electrode descriptors"):
        train_abcc(d / "samples.h5", d / "latent.h5", d / "mixture.h5", d / "splits.json", "system", "abcc",
                   settings, d / "model", d / "ckpt", "cpu", waveform_h5=d / "waveform.h5", progress=False)
    train_abcc(d / "samples.h5", d / "latent.h5", d / "mixture.h5", d / "splits.json", "system", "abcc",
               settings, d / "model", d / "ckpt", "cpu", waveform_h5=d / "waveform.h5", progress=False,
               electrodes_h5=d / "electrodes.h5")
    meta = json.loads((d / "model" / "model.json").read_text())
    assert meta["train_steps"] == 2 and meta["render"]["height"] == 32  # 8 samples / batch 4, 1 epoch
    assert (d / "model" / "training_curve.csv").read_text().startswith("step,")
    model, _ = load_abcc(d / "model")
    assert model.config.latent_size == 16 and model.config.electrode_dim == 16
    with h5py.File(d / "mixture.h5") as h5:
        sys_a = torch.from_numpy(h5["mixture_embedding"][0])
    # fitted on the training conditions (all sys_a): its embedding is the mean, and its std is 0 -> kept at 1
    torch.testing.assert_close(model.condition_encoder.mixture_mean, sys_a)
    assert torch.equal(model.condition_encoder.mixture_std, torch.ones(6))

    with pytest.raises(DataError, match="reads the electrode descriptors"):
        predict_abcc(d / "samples.h5", d / "latent.h5", d / "mixture.h5", d / "splits.json", d / "waveform.h5",
                     "system", d / "model", d / "vae", d / "pred.h5", MODEL_SETTINGS["predict"], "cpu")
    timing = predict_abcc(d / "samples.h5", d / "latent.h5", d / "mixture.h5", d / "splits.json", d / "waveform.h5",
                          "system", d / "model", d / "vae", d / "pred.h5", MODEL_SETTINGS["predict"], "cpu",
                          electrodes_h5=d / "electrodes.h5")
    predictions = read_predictions(d / "pred.h5")
    assert predictions.prediction.shape == (8, 3, N_POINTS)
    assert list(predictions.sample_id) == [f"sys_b/r1/{m:05d}" for m in range(1, 9)]
    assert np.all(np.isfinite(predictions.prediction)) and timing["spectra_per_second"] > 0
    # the draws differ (a generative model), which is what the uncertainty bands are made of
    assert np.abs(predictions.prediction[:, 0] - predictions.prediction[:, 1]).max() > 0
    # the system split trains on sys_a alone: sys_b's mixture lies outside that domain, is placed at sys_a's, and
    # the file says so; 'open' extrapolates, so the same noise gives other forecasts (a little other: two training
    # steps from adaLN-zero leave the condition little say)
    with h5py.File(d / "pred.h5") as h5:
        assert h5.attrs["mixture_domain"] == "training"
        assert set(json.loads(h5.attrs["mixtures_moved"])) == {"sys_b"}
    extrapolate = {**MODEL_SETTINGS["predict"], "mixture_domain": "open"}
    predict_abcc(d / "samples.h5", d / "latent.h5", d / "mixture.h5", d / "splits.json", d / "waveform.h5",
                 "system", d / "model", d / "vae", d / "open.h5", extrapolate, "cpu", electrodes_h5=d / "electrodes.h5")
    with h5py.File(d / "open.h5") as h5:
        assert h5.attrs["mixture_domain"] == "open" and json.loads(h5.attrs["mixtures_moved"]) == {}
    assert not np.array_equal(read_predictions(d / "open.h5").prediction, predictions.prediction)


def test_mixture_domain_leaves_seen_mixtures_alone_and_places_the_others_at_its_nearest_point():
    from opir.models.domain import MixtureDomain, place_system_mixtures

    rng = np.random.default_rng(0)
    molecules = 3.0 * rng.standard_normal((4, 40))
    # seen: the first molecule alone, a 1:1 blend with the second, a 3:7 blend with the third (a 2-d affine span);
    # repeated as a system's samples repeat its mixture
    seen = (np.array([[1, 0, 0, 0], [0.5, 0.5, 0, 0], [0.3, 0, 0.7, 0]]) @ molecules).astype(np.float32)
    mean, std = seen.mean(axis=0), 1.0 + rng.random(40)  # an encoder's standardization
    for metric in ((None, None), (mean, std)):
        domain = MixtureDomain.fit(np.repeat(seen, [5, 1, 2], axis=0), *metric)
        assert domain.axes.shape == (2, 40)
        placed, moved = domain.place(seen)
        assert np.array_equal(placed, seen) and not moved.any(), "a training mixture is read bit for bit"
        blend = (0.4 * seen[0] + 0.6 * seen[1])[None]  # between seen mixtures: inside
        assert np.array_equal(domain.place(blend)[0], blend)
        # the second molecule alone (2 x the blend - the first) lies on the span but beyond the training range; a new
        # fourth molecule lies off the span. Both are moved into the box, onto the span, by a reported distance
        for outside in ((2 * seen[1] - seen[0])[None], (0.5 * seen[0] + 0.5 * molecules[3])[None]):
            placed, moved = domain.place(outside.astype(np.float32))
            assert moved[0] > 0.05 and not np.allclose(placed, outside)
            offset = (placed[0].astype(np.float64) - domain.mean) / domain.std - domain.center
            coords = domain.axes @ offset
            np.testing.assert_allclose(coords @ domain.axes, offset, atol=1e-4)  # on the span
            assert np.all(coords >= domain.low - 1e-4) and np.all(coords <= domain.high + 1e-4)  # in the box
            # the nearest point: no training mixture's standardized offset is closer than the placed one
            standardized = (outside[0] - domain.mean) / domain.std - domain.center
            nearest = np.linalg.norm(standardized - offset)
            seen_offsets = (seen.astype(np.float64) - domain.mean) / domain.std - domain.center
            assert nearest <= np.linalg.norm(standardized - seen_offsets, axis=1).min() + 1e-6
    one = MixtureDomain.fit(seen[:1])  # a single training mixture: every other mixture is placed on it
    placed, moved = one.place(seen)
    np.testing.assert_allclose(placed, np.repeat(seen[:1], 3, axis=0), rtol=1e-6)
    assert moved[0] == 0 and np.all(moved[1:] > 0)
    # by system, as the 1D baselines read them: only the test systems outside move
    systems = {"a": seen[0], "b": seen[1], "c": seen[2], "beyond": 2 * seen[1] - seen[0]}
    placed, moved = place_system_mixtures(systems, ["a", "b", "c"], ["b", "beyond"])
    assert set(moved) == {"beyond"} and np.array_equal(placed["b"], seen[1]) and placed["a"] is systems["a"]
    assert not np.allclose(placed["beyond"], systems["beyond"])


def test_missing_mixture_embedding_is_named(dataset):
    from opir.train.data import load_abcc_data

    with h5py.File(dataset / "mixture.h5", "a") as h5:
        del h5["system_id"]
        write_axis(h5, "system_id", np.array(["sys_a", "other"]))
    latent = dataset / "latent.h5"
    with h5py.File(latent, "w") as h5:
        h5["latent/latent"] = np.zeros((18, 4, 2, 2), dtype=np.float32)
        h5["latent"].attrs["scaling_factor"] = 1.0
    with pytest.raises(DataError, match="no mixture embedding for system.*sys_b"):
        load_abcc_data(dataset / "samples.h5", latent, dataset / "mixture.h5", ["sys_b/r1/00001"], MODEL_SETTINGS)


def test_complete_abcc_trains_with_every_term_and_predicts_fused_spectra(dataset):
    """Residual stream + dual flow + L_mass + L_peak + stream supervision, through the workflow functions."""
    from opir.formats.images import read_latents
    from opir.formats.predictions import read_predictions
    from opir.latent.vae import build_or_train_vae, encode_waveforms
    from opir.predict.abcc import load_abcc, predict_abcc
    from opir.train.abcc import train_abcc

    d = dataset
    build_or_train_vae(d / "waveform.h5", d / "samples.h5", d / "splits.json", "system", d / "vae", VAE_SETTINGS,
                       d / "ckpt_vae", "cpu", progress=False, extra_images_h5=[d / "variation.h5"])
    encode_waveforms(d / "waveform.h5", d / "vae", d / "latent.h5", 8, "cpu")
    encode_waveforms(d / "variation.h5", d / "vae", d / "variation_latent.h5", 8, "cpu")
    residual, _ = read_latents(d / "variation_latent.h5")
    assert residual.shape == (16, 4, 16, 16)  # one per sample, keyed by sample_id
    with h5py.File(d / "variation_latent.h5") as h5:
        assert h5["latent/sample_id"][0].decode() == "sys_a/r1/00001"

    train_abcc(d / "samples.h5", d / "latent.h5", d / "mixture.h5", d / "splits.json", "system", "abcc",
               COMPLETE_SETTINGS, d / "model", d / "ckpt", "cpu", waveform_h5=d / "waveform.h5", progress=False,
               residual_h5=d / "variation_latent.h5", streams_h5=d / "streams.h5", vae_dir=d / "vae",
               variation_h5=d / "variation.h5")
    header = (d / "model" / "training_curve.csv").read_text().splitlines()[0].split(",")
    for term in ("loss", "meanflow", "mass", "peak", "stream_elec", "stream_sei"):
        assert term in header, term
    curve = np.genfromtxt(d / "model" / "training_curve.csv", delimiter=",", names=True)
    assert np.all(np.isfinite(curve["loss"])) and np.all(curve["peak"] >= 0)
    model, meta = load_abcc(d / "model")
    assert model.config.residual_channels == 4 and model.config.two_stream
    assert model.config.stream_points == N_POINTS and len(meta["stream_scale"]) == 2
    weights = np.asarray(meta["fusion"]["waveform_weight"])
    assert weights.shape == (N_POINTS,) and np.all((weights >= 0) & (weights <= 1))
    assert meta["render_variation"]["clip"] == pytest.approx(0.4)

    predict_abcc(d / "samples.h5", d / "latent.h5", d / "mixture.h5", d / "splits.json", d / "waveform.h5",
                 "system", d / "model", d / "vae", d / "pred.h5", MODEL_SETTINGS["predict"], "cpu")
    predictions = read_predictions(d / "pred.h5")
    assert predictions.prediction.shape == (8, 3, N_POINTS) and np.all(np.isfinite(predictions.prediction))
    # the waveform-only reader (opir predict) still gets waveform latents from model.sample
    cond_model, _ = load_abcc(d / "model")
    from opir.train.data import load_abcc_data

    data = load_abcc_data(d / "samples.h5", d / "latent.h5", d / "mixture.h5",
                          load_split(d / "splits.json", "system")["test"][:2], meta["settings"])
    z = cond_model.sample(data.condition, torch.Generator().manual_seed(0))
    assert z.shape == (2, 4, 16, 16)


def test_spectral_variant_trains_and_predicts_without_images(dataset):
    """Beyond the paper: MeanFlow on patches of the difference spectrum (no VAE, no images), with both streams."""
    from opir.formats.predictions import read_predictions
    from opir.predict.abcc import load_abcc, predict_abcc
    from opir.train.abcc import train_abcc

    d = dataset
    settings = {**COMPLETE_SETTINGS, "space": "spectrum", "chemical_flow": False}
    train_abcc(d / "samples.h5", None, d / "mixture.h5", d / "splits.json", "random", "abcc1d", settings,
               d / "m1d", d / "ckpt1d", "cpu", progress=False, streams_h5=d / "streams.h5")
    model, meta = load_abcc(d / "m1d")
    assert model.config.spatial_dims == 1 and model.config.latent_size == 48 and meta["spectrum_scale"] > 0
    header = (d / "m1d" / "training_curve.csv").read_text().splitlines()[0]
    assert all(term in header for term in ("mass", "peak", "stream_elec", "stream_sei"))
    predict_abcc(d / "samples.h5", None, d / "mixture.h5", d / "splits.json", None, "random", d / "m1d", None,
                 d / "p1d.h5", MODEL_SETTINGS["predict"], "cpu")
    predictions = read_predictions(d / "p1d.h5")
    assert predictions.prediction.shape == (2, 3, N_POINTS)
    # an untrained-ish model predicts s(v_0) plus a small difference: close to persistence, never wild
    with h5py.File(d / "samples.h5") as h5:
        initial = h5["spectra/absorbance"][()][[0, 9]]
    assert np.abs(predictions.prediction[:, 0] - initial).max() < 5 * meta["spectrum_scale"] * 10
    # shared noise: draw k starts every test input from the same noise, so the draws do not depend on the batching
    shared = {}
    for batch in (1, 2):
        out = d / f"p1d_shared_{batch}.h5"
        predict_abcc(d / "samples.h5", None, d / "mixture.h5", d / "splits.json", None, "random", d / "m1d", None,
                     out, {**MODEL_SETTINGS["predict"], "batch_size": batch, "noise": "shared"}, "cpu")
        shared[batch] = read_predictions(out)
    np.testing.assert_allclose(shared[1].prediction, shared[2].prediction, rtol=0, atol=1e-6)  # float rounding
    with h5py.File(d / "p1d_shared_1.h5") as shared_h5, h5py.File(d / "p1d.h5") as independent_h5:
        assert shared_h5.attrs["noise"] == "shared" and independent_h5.attrs["noise"] == "independent"
    assert not np.array_equal(shared[1].prediction, predictions.prediction)


def test_shared_noise_makes_each_draw_a_function_of_the_condition_alone():
    """With shared noise two inputs of one condition get the same draw wherever they sit in a batch; independent
    noise gives them different ones. The seed of a shared draw ignores where its batch starts."""
    from opir.models.meanflow import draw_noise, noise_seed

    model = tiny_abcc().eval()
    with torch.no_grad():  # away from adaLN-zero's start, where the output ignores the condition
        for parameter in model.parameters():
            parameter.normal_(0.0, 0.3)
    cond = Condition(torch.randn(3, 2, 4, 4), torch.randn(3, 3), torch.randn(3, 2))
    cond = cond.index(torch.tensor([0, 1, 0]))
    shared = model.sample_state(cond, torch.Generator().manual_seed(3), shared_noise=True)
    independent = model.sample_state(cond, torch.Generator().manual_seed(3))
    torch.testing.assert_close(shared[0], shared[2], rtol=0, atol=1e-5)  # float rounding of the batch
    assert not torch.allclose(independent[0], independent[2])
    assert not torch.allclose(shared[0], shared[1])  # the condition still decides
    assert noise_seed(5, 0, 16, 3, shared=True) == noise_seed(5, 64, 16, 3, shared=True)
    assert noise_seed(5, 0, 16, 3) != noise_seed(5, 64, 16, 3)
    eps = draw_noise((4, 2, 3), torch.Generator().manual_seed(0), shared=True)
    assert eps.shape == (4, 2, 3) and torch.equal(eps[0], eps[3]) and eps.is_contiguous()


def test_run_codes_condition_seen_runs_and_leave_unseen_cells_to_the_rest(dataset):
    """Run codes (an auto-decoder's code per training run): learned for the training runs, looked up by run at
    prediction, and absent (code 0, adding exactly nothing) for a run the model never trained on."""
    from opir.formats.predictions import read_predictions
    from opir.predict.abcc import load_abcc, predict_abcc
    from opir.train.abcc import drop_run_codes, train_abcc

    d = dataset
    settings = {**MODEL_SETTINGS, "space": "spectrum", "chemical_flow": False, "two_stream": False,
                "run_code_dim": 4, "run_code_dropout": 0.5, "run_balance": 0.5}
    for split in ("random", "system"):
        train_abcc(d / "samples.h5", None, d / "mixture.h5", d / "splits.json", split, "coded", settings,
                   d / f"coded_{split}", d / f"ckpt_coded_{split}", "cpu", progress=False)
    random_model, _ = load_abcc(d / "coded_random")
    system_model, _ = load_abcc(d / "coded_system")
    assert random_model.config.run_ids == ("sys_a/r1", "sys_b/r1")
    assert system_model.config.run_ids == ("sys_a/r1",)  # the system split trains on sys_a alone
    assert system_model.config.run_index(["sys_a/r1", "sys_b/r1", "new/r9"]).tolist() == [1, 0, 0]
    codes = random_model.condition_encoder.run_codes.weight
    assert torch.all(codes[0] == 0) and torch.all(codes[1:].abs().sum(dim=1) > 0)

    # the seen run's code changes the draw; code 0 and no code at all are the same condition
    model = random_model
    with torch.no_grad():
        model.condition_encoder.run_codes.weight[1:].normal_(0.0, 1.0)
    cond = Condition(torch.randn(2, 1, 48), torch.randn(2, model.config.profile_dim),
                     torch.randn(2, model.config.mixture_dim))
    draws = {name: model.sample_state(cond.with_run(run), torch.Generator().manual_seed(0))
             for name, run in (("none", None), ("unseen", torch.tensor([0, 0])), ("seen", torch.tensor([1, 2])))}
    torch.testing.assert_close(draws["none"], draws["unseen"], rtol=0, atol=0)
    assert not torch.allclose(draws["none"], draws["seen"])

    # the dropout is a function of the step (a resumed run drops the same codes), and only of it
    run = torch.tensor([1, 2] * 8)
    batch = Condition(torch.zeros(16, 1, 4), torch.zeros(16, 2), torch.zeros(16, 2), run=run)
    first, again = (drop_run_codes(batch, 0.5, 7, 0).run for _ in range(2))
    assert torch.equal(first, again) and 0 < int((first == 0).sum()) < 16
    assert not torch.equal(first, drop_run_codes(batch, 0.5, 8, 0).run)
    assert torch.equal(drop_run_codes(batch, 0.0, 7, 0).run, run)
    assert torch.all(drop_run_codes(batch, 1.0, 7, 0).run == 0)

    for split in ("random", "system"):
        predict_abcc(d / "samples.h5", None, d / "mixture.h5", d / "splits.json", None, split, d / f"coded_{split}",
                     None, d / f"coded_{split}.h5", MODEL_SETTINGS["predict"], "cpu")
        assert np.all(np.isfinite(read_predictions(d / f"coded_{split}.h5").prediction))


def test_run_context_conditions_seen_runs_on_their_other_training_spectra(dataset):
    """The within-run context (``run_context``): training samples see the kernel mean of their run's other training
    changes (never their own), test samples that of their run's training changes, a cell never seen zeros; the
    dropped rows of a batch lose it with their code; a model trained with it, its flow anchored on it
    (``context_anchor``), predicts on both splits."""
    from opir.formats.predictions import read_predictions
    from opir.predict.abcc import _test_context, load_abcc, predict_abcc
    from opir.train.abcc import drop_run_codes, train_abcc
    from opir.train.context import context_channels, within_run_context

    d = dataset
    train_ids = load_split(d / "splits.json", "random")["train"]
    change, present, widths = within_run_context(d / "samples.h5", train_ids, train_ids, [0.5, 1.0, 2.0], True)
    assert present.all() and set(widths) == {"sys_a/r1", "sys_b/r1"}
    channels = context_channels(change, present, 0.5, 48)
    assert channels.shape == (len(train_ids), 2, 48) and torch.all(channels[:, 1] == 1)
    torch.testing.assert_close(channels[:, 0, : change.shape[1]], torch.from_numpy(change / 0.5).float())
    # a run with a single training sample: left out of its own mean, it has none
    alone = [train_ids[0]]
    _, present_alone, _ = within_run_context(d / "samples.h5", alone, alone, [1.0], True)
    assert not present_alone.any()
    assert torch.all(context_channels(change[:1], present_alone, 0.5, 48) == 0)

    settings = {**MODEL_SETTINGS, "space": "spectrum", "chemical_flow": False, "two_stream": False,
                "run_code_dim": 4, "run_code_dropout": 0.5, "run_context": True, "context_anchor": True}
    with pytest.raises(DataError, match="set run_context: true as well"):
        train_abcc(d / "samples.h5", None, d / "mixture.h5", d / "splits.json", "random", "anchor_alone",
                   {**settings, "run_context": False}, d / "anchor_alone", d / "ckpt_anchor_alone", "cpu")
    for split in ("random", "system"):
        train_abcc(d / "samples.h5", None, d / "mixture.h5", d / "splits.json", split, "context", settings,
                   d / f"context_{split}", d / f"ckpt_context_{split}", "cpu", progress=False)
    model, meta = load_abcc(d / "context_random")
    assert model.config.run_context and model.config.context_anchor and model.config.initial_channels == 3
    assert set(meta["run_context_widths_s"]) == {"sys_a/r1", "sys_b/r1"}

    # a dropped row loses its code and its context, and keeps s(v_0)
    batch = Condition(torch.ones(16, 3, 4), torch.zeros(16, 2), torch.zeros(16, 2), run=torch.tensor([1, 2] * 8))
    dropped = drop_run_codes(batch, 0.5, 7, 0, context=True)
    gone = dropped.run == 0
    assert 0 < int(gone.sum()) < 16 and torch.all(dropped.initial_latent[:, 0] == 1)
    assert torch.all(dropped.initial_latent[gone, 1:] == 0) and torch.all(dropped.initial_latent[~gone, 1:] == 1)
    assert torch.equal(drop_run_codes(batch, 0.5, 7, 0).run, dropped.run)  # the same rows as without context

    # test samples: the context of their run's training samples; withheld, or a run never seen: none
    def context_of(split, model_meta, knows_runs):
        test = load_split(d / "splits.json", split)["test"]
        data = SimpleNamespace(sample_id=np.asarray(test), condition=SimpleNamespace(
            initial_latent=torch.zeros(len(test), 1, 48)))
        return _test_context(d / "samples.h5", d / "splits.json", split, data, model_meta["settings"], model_meta,
                             knows_runs)

    assert torch.all(context_of("random", meta, True)[:, 1] == 1)
    assert torch.all(context_of("random", meta, False) == 0)
    assert torch.all(context_of("system", load_abcc(d / "context_system")[1], True) == 0)
    # opir predict forecasts a cell it has no spectra of
    from opir.forecast.sampling import initial_state

    state = initial_state(np.zeros(N_POINTS), SimpleNamespace(meta=meta, model=model))
    assert state.shape == (1, 3, 48) and torch.all(state[:, 1:] == 0)
    for split in ("random", "system"):
        predict_abcc(d / "samples.h5", None, d / "mixture.h5", d / "splits.json", None, split,
                     d / f"context_{split}", None, d / f"context_{split}.h5", MODEL_SETTINGS["predict"], "cpu")
        assert np.all(np.isfinite(read_predictions(d / f"context_{split}.h5").prediction))


def tiny_abcc(**switches):
    from opir.models.abcc import ABCC, ABCCConfig

    torch.manual_seed(0)
    values = dict(latent_channels=2, latent_size=4, profile_dim=3, mixture_dim=2, hidden_size=16, depth=2,
                  num_heads=2, patch_size=2, stream_points=6, branch_depth=1)
    values.update(switches)
    return ABCC(ABCCConfig(**values))


def test_each_ablation_switch_changes_the_model_and_loss_as_named():
    """Every Table 4 row of config/config.yaml, resolved as the workflow does, changes what its name says."""
    import yaml

    from opir.models.abcc import PhysicsBatch
    from opir.models.physics import PeakTargets
    from opir.models.settings import abcc_embedding_variant, abcc_input_names, model_splits

    config = yaml.safe_load((Path(__file__).parents[1] / "config" / "config.yaml").read_text())
    ablations = config["evaluate"]["ablation_models"]
    # the full model, the electrode row (ours: the paper's condition has no electrode), the five cumulative rows
    assert ablations[:2] == ["abcc", "abcc_no_electrode"] and len(ablations) == 7
    inputs = {name: abcc_input_names(config["models"], name, "system") for name in ablations}
    settings = {name: resolve_model_config(config["models"], name) for name in ablations}
    assert "residual" in inputs["abcc"] and "streams" in inputs["abcc"]
    # without the electrode descriptor: nothing else changes
    assert "electrodes" in inputs["abcc"] and "electrodes" not in inputs["abcc_no_electrode"]
    assert {k: v for k, v in settings["abcc_no_electrode"].items() if k not in ("electrode_descriptors", "splits")} == {
        k: v for k, v in settings["abcc"].items() if k not in ("electrode_descriptors", "splits")}
    # without Chemical Flow: no variation latents
    assert settings["abcc_no_cf"]["chemical_flow"] is False and "residual" not in inputs["abcc_no_cf"]
    # + without two streams: no MCR streams
    assert "streams" in inputs["abcc_no_cf"] and "streams" not in inputs["abcc_no_cf_no_2s"]
    # + SMILES instead of 3D
    assert abcc_embedding_variant(config, "abcc_no_cf_no_2s") == "3d"
    assert abcc_embedding_variant(config, "abcc_no_cf_no_2s_smiles") == "smiles"
    # + without peak constraint, + without mean alignment
    assert settings["abcc_no_cf_no_2s_smiles"]["losses"]["peak_weight"] > 0
    assert settings["abcc_no_cf_no_2s_smiles_no_peak"]["losses"]["peak_weight"] == 0
    assert settings["abcc_no_cf_no_2s_smiles_no_peak"]["losses"]["mass_weight"] > 0
    assert settings["abcc_no_cf_no_2s_smiles_no_peak_no_mass"]["losses"]["mass_weight"] == 0
    # the ablations train on the system split only (Table 4); asking for another split is an error
    assert all(model_splits(config["models"], name) == ["system"] for name in ablations[1:])
    with pytest.raises(ConfigError, match="not trained on split 'random'"):
        abcc_input_names(config["models"], "abcc_no_cf", "random")

    # the switches in the network: residual channels, branches and stream heads
    full, no_cf, no_2s = tiny_abcc(residual_channels=2, two_stream=True), tiny_abcc(two_stream=True), tiny_abcc()
    assert full.backbone.config.out_channels == 4 and no_cf.backbone.config.out_channels == 2
    assert hasattr(no_cf.backbone, "branch_blocks") and hasattr(no_cf, "stream_heads")
    assert not hasattr(no_2s.backbone, "branch_blocks") and not hasattr(no_2s, "stream_heads")

    # and in the loss: each weight adds exactly its term
    x, cond = torch.randn(4, 4, 4, 4), Condition(torch.randn(4, 2, 4, 4), torch.randn(4, 3), torch.randn(4, 2))
    spectra_fn = lambda state, rows: [state.flatten(1)[:, :16]]  # noqa: E731 - any differentiable read-out
    peaks = PeakTargets(torch.full((4, 2), 5), torch.ones(4, 2, dtype=torch.bool))
    streams = torch.randn(4, 2, 6)

    def terms(model, x, **weights):
        physics = PhysicsBatch(spectra_fn=spectra_fn, peaks=peaks, stream_target=streams, **weights)
        return set(model.loss(x, cond, torch.Generator().manual_seed(0), physics=physics))

    base = {"loss", "mse", "meanflow"}
    assert terms(full, x, mass_weight=1, peak_weight=1, stream_weight=1) == base | {
        "mass", "peak", "stream_elec", "stream_sei"}
    assert terms(no_2s, x[:, :2], mass_weight=1, peak_weight=1, stream_weight=1) == base | {"mass", "peak"}
    assert terms(no_2s, x[:, :2], mass_weight=1) == base | {"mass"}
    assert terms(no_2s, x[:, :2]) == base


def test_mass_loss_reads_the_chemical_flow_channels():
    from opir.models.abcc import PhysicsBatch

    model = tiny_abcc(residual_channels=2)
    x = torch.zeros(2, 4, 4, 4)
    cond = Condition(torch.zeros(2, 2, 4, 4), torch.zeros(2, 3), torch.zeros(2, 2))
    physics = PhysicsBatch(mass_weight=1.0)
    # an untrained model predicts u = 0, so x_hat = z_t (noise): L_mass compares the channel means of the
    # residual channels (2, 3) of z_t with those of x; shifting only the waveform channels of x leaves it
    a = model.loss(x, cond, torch.Generator().manual_seed(1), physics=physics)["mass"]
    shifted = x.clone()
    shifted[:, :2] += 5.0
    b = model.loss(shifted, cond, torch.Generator().manual_seed(1), physics=physics)["mass"]
    assert a.item() == pytest.approx(b.item(), rel=1e-5, abs=1e-5)
    shifted[:, 2:] += 5.0
    c = model.loss(shifted, cond, torch.Generator().manual_seed(1), physics=physics)["mass"]
    assert c.item() > a.item() + 1.0


def test_peak_loss_on_a_sub_batch_reads_only_its_first_samples():
    """peak_samples = k decodes only the first k samples: changing the others leaves L_peak exactly as it was."""
    from opir.models.abcc import PhysicsBatch
    from opir.models.physics import PeakTargets

    model = tiny_abcc()
    cond = Condition(torch.randn(4, 2, 4, 4), torch.randn(4, 3), torch.randn(4, 2))
    decoded = []

    def spectra_fn(state, rows):
        decoded.append(len(state))
        return [state.flatten(1)[:, :16]]

    peaks = PeakTargets(torch.full((4, 2), 5), torch.ones(4, 2, dtype=torch.bool))

    def peak(x, k):
        physics = PhysicsBatch(peak_weight=1.0, spectra_fn=spectra_fn, peaks=peaks, peak_samples=k)
        return model.loss(x, cond, torch.Generator().manual_seed(0), physics=physics)["peak"].item()

    x = torch.randn(4, 2, 4, 4)
    changed = x.clone()
    changed[2:] += torch.randn(2, 2, 4, 4)
    decoded.clear()
    assert peak(x, 2) == peak(changed, 2)
    assert decoded == [2, 2, 2, 2]  # prediction and target, twice
    assert peak(x, 0) != peak(changed, 0)  # 0: the whole batch
    assert decoded[-2:] == [4, 4]


def test_random_interval_and_peak_rows_are_drawn_each_step():
    """interval_rows / peak_rows "random" (the reference code's choice): the r != t rows and the rows L_peak reads
    change from step to step, and the peak rows are not tied to the interval rows."""
    from opir.models.abcc import PhysicsBatch
    from opir.models.meanflow import MeanFlowConfig, sample_time_pairs
    from opir.models.physics import PeakTargets

    first = MeanFlowConfig(fraction_r_neq_t=0.25)
    random = MeanFlowConfig(fraction_r_neq_t=0.25, interval_rows="random")
    interval_sets = set()
    for seed in range(6):
        r, t = sample_time_pairs(16, first, torch.Generator().manual_seed(seed))
        assert torch.equal(r < t, torch.arange(16) < 4)
        r, t = sample_time_pairs(16, random, torch.Generator().manual_seed(seed))
        assert int((r < t).sum()) == 4
        interval_sets.add(tuple(torch.nonzero(r < t).flatten().tolist()))
    assert len(interval_sets) > 3
    with pytest.raises(ValueError, match="interval_rows"):
        MeanFlowConfig(interval_rows="last")

    model = tiny_abcc()
    cond = Condition(torch.randn(8, 2, 4, 4), torch.randn(8, 3), torch.randn(8, 2))
    peaks = PeakTargets(torch.full((8, 2), 5), torch.ones(8, 2, dtype=torch.bool))
    seen = set()

    def spectra_fn(state, rows):
        seen.add(tuple(rows.tolist()))
        return [state.flatten(1)[:, :16]]

    for seed in range(4):
        physics = PhysicsBatch(peak_weight=1.0, spectra_fn=spectra_fn, peaks=peaks, peak_samples=2, peak_rows="random")
        model.loss(torch.randn(8, 2, 4, 4), cond, torch.Generator().manual_seed(seed), physics=physics)
    assert len(seen) > 1 and all(len(rows) == 2 for rows in seen)


@pytest.mark.parametrize("two_stream", [False, True])
def test_profile_readout_adds_basis_maps_weighted_by_profile_features(two_stream):
    """profile_readout = K: the output is base + sum_k phi_k basis_k with phi a function of the profile alone, so
    at a fixed network state it is affine in phi; a dropped condition (guidance) has phi = 0; old model.json files
    (no key) load without it."""
    from opir.models.abcc import ABCCConfig

    model = tiny_abcc(profile_readout=3, two_stream=two_stream)
    for p in model.parameters():  # adaLN-Zero starts with a zero output layer: give every weight a value
        torch.nn.init.normal_(p, std=0.3)
    z, r, t = torch.randn(2, 2, 4, 4), torch.zeros(2), torch.ones(2)
    cond = Condition(torch.randn(2, 2, 4, 4), torch.randn(2, 3), torch.randn(2, 2))
    vector, channels = model.condition_encoder(cond)
    x = torch.cat([z, channels], dim=1)

    def out(phi):
        return model.backbone(x, r, t, vector, readout=phi)

    a, b = torch.randn(2, 3), torch.randn(2, 3)
    zero = out(torch.zeros(2, 3))
    torch.testing.assert_close(out(a + b) - zero, (out(a) - zero) + (out(b) - zero), rtol=1e-4, atol=1e-5)
    assert not torch.allclose(out(a), zero)
    with pytest.raises(ValueError, match="readout"):
        model.backbone(x, r, t, vector)
    # the model's own phi comes from the profile: another profile with the same vector moves only the read-out
    phi = model.profile_readout(cond.profile)
    torch.testing.assert_close(model(z, r, t, cond), out(phi))
    torch.testing.assert_close(model(z, r, t, cond, torch.ones(2, dtype=torch.bool)),
                               model.backbone(torch.cat([z, 0 * channels], 1), r, t,
                                              model.condition_encoder(cond, torch.ones(2, dtype=torch.bool))[0],
                                              readout=torch.zeros(2, 3)))
    stored = model.config.to_dict()
    del stored["profile_readout"]
    assert ABCCConfig.from_dict(stored).profile_readout == 0


def test_physics_samples_reads_the_physics_terms_on_drawn_rows_only():
    """losses.physics_samples = k: the MeanFlow model's clean-state pass and every physics and stream term read k
    rows of the batch, the same for all terms; targets of the other rows do not enter them."""
    from opir.models.abcc import PhysicsBatch
    from opir.models.physics import PeakTargets

    model = tiny_abcc(two_stream=True)
    n, k = 8, 3
    cond = Condition(torch.randn(n, 2, 4, 4), torch.randn(n, 3), torch.randn(n, 2))
    peaks = PeakTargets(torch.full((n, 2), 5), torch.ones(n, 2, dtype=torch.bool))
    x, streams = torch.randn(n, 2, 4, 4), torch.randn(n, 2, 6)
    read = []

    def spectra_fn(state, rows):
        read.append(rows.tolist())
        return [state.flatten(1)[:, :16]]

    def terms(streams):
        physics = PhysicsBatch(mass_weight=1.0, peak_weight=1.0, stream_weight=1.0, spectra_fn=spectra_fn,
                               peaks=peaks, peak_samples=0, stream_target=streams, physics_samples=k)
        out = model.loss(x, cond, torch.Generator().manual_seed(0), physics=physics)
        return {name: float(out[name]) for name in ("mass", "peak", "stream_elec", "stream_sei")}

    base = terms(streams)
    rows = read[0]
    assert len(rows) == k and read == [rows, rows]  # the peak term's prediction and target: the drawn rows
    others = [i for i in range(n) if i not in rows]
    moved = streams.clone()
    moved[others] += 10.0
    assert terms(moved) == base
    moved[rows[0]] += 10.0
    assert terms(moved)["stream_elec"] != base["stream_elec"]


def test_time_scale_reaches_the_embedding_and_old_models_keep_theirs():
    """meanflow.time_scale: 1 feeds t in [0, 1] to the sinusoidal embedding as MeanFlow's reference code does; a
    model.json written before the switch existed has no time_scale and loads with DiT's 1000, as it was trained."""
    from opir.models.abcc import ABCCConfig
    from opir.models.meanflow import MeanFlowConfig
    from opir.models.sit import timestep_frequencies

    t = torch.tensor([0.0, 0.5, 1.0])
    unscaled, scaled = timestep_frequencies(t, 8, scale=1.0), timestep_frequencies(t, 8)
    torch.testing.assert_close(timestep_frequencies(1000.0 * t, 8, scale=1.0), scaled)
    assert unscaled[:, :4].min() > 0.5  # cos of small angles: the unscaled embedding varies slowly over [0, 1]

    model = tiny_abcc(meanflow=MeanFlowConfig(time_scale=1.0))
    assert model.backbone.t_embedder.time_scale == 1.0 and model.backbone.h_embedder.time_scale == 1.0
    stored = model.config.to_dict()
    assert ABCCConfig.from_dict(stored).meanflow.time_scale == 1.0
    del stored["meanflow"]["time_scale"], stored["meanflow"]["interval_rows"]
    legacy = ABCCConfig.from_dict(stored).meanflow
    assert legacy.time_scale == 1000.0 and legacy.interval_rows == "first"


def test_regression_objective_is_the_same_network_trained_with_mse():
    """"Regression (same backbone)": the generator's network and query (zero input, r = 0, t = 1), an MSE loss that
    falls when trained, deterministic draws; the physics terms are added as for the generator."""
    from opir.models.abcc import ABCCConfig, PhysicsBatch

    generator_, regression = tiny_abcc(two_stream=True), tiny_abcc(two_stream=True, objective="regression")
    assert [p.shape for p in generator_.parameters()] == [p.shape for p in regression.parameters()]
    with pytest.raises(ValueError, match="objective 'mse'"):
        ABCCConfig(latent_channels=1, latent_size=4, profile_dim=3, mixture_dim=2, objective="mse")
    # old model.json files (no objective) load as the generator
    assert ABCCConfig.from_dict({k: v for k, v in regression.config.to_dict().items() if k != "objective"}
                                ).objective == "meanflow"
    x, cond = torch.randn(4, 2, 4, 4), Condition(torch.randn(4, 2, 4, 4), torch.randn(4, 3), torch.randn(4, 2))
    physics = PhysicsBatch(stream_weight=1.0, stream_target=torch.randn(4, 2, 6))
    terms = regression.loss(x, cond, torch.Generator().manual_seed(0), physics=physics)
    assert set(terms) == {"loss", "mse", "regression", "stream_elec", "stream_sei"}
    optimizer = torch.optim.Adam(regression.parameters(), lr=1e-2)
    first = float(regression.loss(x, cond, torch.Generator())["mse"])
    for _ in range(60):
        optimizer.zero_grad()
        regression.loss(x, cond, torch.Generator())["loss"].backward()
        optimizer.step()
    assert float(regression.loss(x, cond, torch.Generator())["mse"]) < 0.5 * first
    regression.eval()
    a = regression.sample_state(cond, torch.Generator().manual_seed(1))
    b = regression.sample_state(cond, torch.Generator().manual_seed(2))
    assert torch.equal(a, b)
    assert not torch.equal(generator_.sample_state(cond, torch.Generator().manual_seed(1)),
                           generator_.sample_state(cond, torch.Generator().manual_seed(2)))


@pytest.mark.parametrize("objective", ["meanflow", "regression"])
def test_context_anchor_generates_the_change_less_the_context(objective):
    """``context_anchor``: the same network generates the change less the within-run context, and the sampler adds
    the context back: draws, loss and physics terms are those of the unanchored model shifted by the context
    channel, so a row without context (absent or dropped: zeros) is generated as before."""
    from opir.models.abcc import ABCCConfig, PhysicsBatch

    spectral = dict(latent_channels=0, residual_channels=1, condition_channels=3, spatial_dims=1, latent_size=8,
                    run_context=True, objective=objective)
    plain, anchored = tiny_abcc(**spectral), tiny_abcc(**spectral, context_anchor=True)
    anchored.load_state_dict(plain.state_dict())
    context = torch.randn(4, 1, 8)
    context[3] = 0  # a row without context
    cond = Condition(torch.cat([torch.randn(4, 1, 8), context, (context != 0).float()], dim=1), torch.randn(4, 3),
                     torch.randn(4, 2))
    x = torch.randn(4, 1, 8)
    for steps in (0, 3):
        drawn = anchored.sample_state(cond, torch.Generator().manual_seed(1), steps)
        torch.testing.assert_close(drawn, plain.sample_state(cond, torch.Generator().manual_seed(1), steps) + context)
    physics = PhysicsBatch(mass_weight=1.0)
    terms = anchored.loss(x, cond, torch.Generator().manual_seed(0), physics=physics)
    shifted = plain.loss(x - context, cond, torch.Generator().manual_seed(0), physics=physics)
    assert set(terms) == set(shifted)
    for name in terms:
        torch.testing.assert_close(terms[name], shifted[name])
    with pytest.raises(ValueError, match="context_anchor needs run_context"):
        ABCCConfig(**{**anchored.config.to_dict(), "run_context": False})
    assert ABCCConfig.from_dict({k: v for k, v in anchored.config.to_dict().items() if k != "context_anchor"}
                                ).context_anchor is False  # model.json files from before the switch


def test_peak_every_k_steps_keeps_the_expected_weight():
    from opir.train.abcc import peak_weight_at

    weights = [peak_weight_at(step, 0.1, 5) for step in range(20)]
    assert [i for i, w in enumerate(weights) if w] == [4, 9, 14, 19]  # the last step of each block: logged rows
    assert sum(weights) == pytest.approx(0.1 * 20)
    assert all(peak_weight_at(step, 0.1, 1) == 0.1 for step in range(5))


def test_a_prediction_only_variant_samples_another_models_training():
    """`trained_as`: the few-step sampler row is the flagship's trained network with its own predict settings; it
    trains nothing, and anything but predict and splits is refused (it would not be the same model)."""
    import yaml

    from opir.models.settings import abcc_input_names, resolve_model_config, trained_model

    models = yaml.safe_load((Path(__file__).parents[1] / "config" / "config.yaml").read_text())["models"]
    flagship, euler = resolve_model_config(models, "abcc1d"), resolve_model_config(models, "abcc1d_euler4")
    assert euler["predict"]["euler_steps"] == 4 and flagship["predict"]["euler_steps"] == 0
    assert {k: v for k, v in euler.items() if k not in ("predict", "trained_as")} == {
        k: v for k, v in flagship.items() if k not in ("predict", "trained_as")}
    assert trained_model(models, "abcc1d_euler4") == "abcc1d" and trained_model(models, "abcc1d") == "abcc1d"
    assert abcc_input_names(models, "abcc1d_euler4", "system", prediction=True) == abcc_input_names(
        models, "abcc1d", "system", prediction=True)
    models["variants"]["bad"] = {"trained_as": "abcc1d", "hidden_size": 256}
    with pytest.raises(ConfigError, match="hidden_size: a variant trained_as 'abcc1d'.*only predict, splits"):
        resolve_model_config(models, "bad")
    models["variants"]["chain"] = {"trained_as": "abcc1d_euler4"}
    with pytest.raises(ConfigError, match="not a variant that trains"):
        resolve_model_config(models, "chain")
    models["variants"]["elsewhere"] = {"trained_as": "abcc_no_cf", "splits": ["random"]}
    with pytest.raises(ConfigError, match="'abcc_no_cf' is not trained on random"):
        resolve_model_config(models, "elsewhere")
