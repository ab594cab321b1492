"""The training loop: exact resume after a kill, the NaN/inf guard, checkpoint safety, batches."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from opir.models.abcc import ABCC, ABCCConfig
from opir.models.conditioning import Condition
from opir.models.meanflow import MeanFlowConfig
from opir.training import (
    TrainConfig,
    TrainingDivergedError,
    batch_indices,
    data_fingerprint,
    latest_checkpoint,
    run_balance_weights,
    train,
    weighted_batch_indices,
)

# tiny networks: one torch thread is as fast, and much faster when other jobs share the cores (conftest.py)
pytestmark = pytest.mark.usefixtures("torch_one_thread")


class Killed(Exception):
    """Stands in for SIGKILL from a SLURM time limit."""


def tiny_problem():
    torch.manual_seed(0)
    config = ABCCConfig(latent_channels=2, latent_size=4, profile_dim=4, mixture_dim=3, hidden_size=16, depth=1,
                        num_heads=2, meanflow=MeanFlowConfig())
    n = 24
    gen = torch.Generator().manual_seed(5)
    target = torch.randn(n, 2, 4, 4, generator=gen)
    cond = Condition(torch.randn(n, 2, 4, 4, generator=gen), torch.randn(n, 4, generator=gen),
                     torch.randn(n, 3, generator=gen))
    return config, target, cond


def run(tmp_path, steps=12, kill_at=None, lr=1e-3, data="tiny-data", **schedule):
    config, target, cond = tiny_problem()
    torch.manual_seed(1)
    model = ABCC(config)
    train_config = TrainConfig(steps=steps, batch_size=8, lr=lr, checkpoint_every=4, log_every=2, seed=3,
                               ema_decay=0.99, warmup_steps=3, **schedule)

    def loss_fn(step, generator, autocast):
        idx = batch_indices(len(target), train_config.batch_size, step, train_config.seed)
        return model.loss(target[idx], cond.index(idx), generator, autocast)

    def on_step(done):
        if kill_at is not None and done == kill_at:
            raise Killed

    weights, result = train(model, loss_fn, train_config, tmp_path / "ckpt", torch.device("cpu"),
                            run_settings={"problem": "tiny"}, progress=False, on_step=on_step, data=data)
    return model, weights, result


def test_killed_training_resumes_to_identical_weights(tmp_path):
    _, reference, ref_result = run(tmp_path / "a")
    with pytest.raises(Killed):
        run(tmp_path / "b", kill_at=10)  # last checkpoint at step 8; steps 9 and 10 are lost and redone
    model, resumed, result = run(tmp_path / "b")
    assert result.resumed_from == 8
    assert reference.keys() == resumed.keys()
    for key in reference:
        assert torch.equal(reference[key], resumed[key]), key
    strip = [{k: v for k, v in row.items()} for row in ref_result.curve]
    assert [row["step"] for row in result.curve] == [row["step"] for row in strip]
    assert [row["loss"] for row in result.curve] == [row["loss"] for row in strip]


def test_checkpoint_of_other_settings_is_not_resumed(tmp_path):
    run(tmp_path, steps=8)
    assert latest_checkpoint(tmp_path / "ckpt", "another-hash", TrainConfig(steps=8, batch_size=8)) is None
    _, _, result = run(tmp_path, steps=8, lr=2e-3)  # other settings: starts from scratch
    assert result.resumed_from == 0


def test_checkpoint_of_other_data_is_not_resumed(tmp_path, caplog):
    """New data for a finished run must retrain, not hand back the old model (the finished run's last checkpoint
    would otherwise be resumed at its last step, with no step left to take)."""
    run(tmp_path, steps=8, data="old")
    with caplog.at_level("INFO", logger="opir.training"):
        _, _, result = run(tmp_path, steps=8, data="new")
    assert result.resumed_from == 0
    assert [row["step"] for row in result.curve] == [2, 4, 6, 8]  # all eight steps were trained again
    assert "other settings, data or code" in caplog.text
    assert [json.loads((p / "state.json").read_text())["step"] for p in sorted((tmp_path / "ckpt").glob("step_*"))] \
        == [4, 8]  # only the new run's checkpoints are left


def test_longer_run_continues_a_shorter_one_exactly(tmp_path):
    _, reference, ref_result = run(tmp_path / "a", steps=16)
    run(tmp_path / "b", steps=8)
    _, extended, result = run(tmp_path / "b", steps=16)
    assert result.resumed_from == 8
    for key in reference:
        assert torch.equal(reference[key], extended[key]), key
    assert [row["loss"] for row in result.curve] == [row["loss"] for row in ref_result.curve]
    # a shorter run does not start from the longer run's later checkpoints
    _, short, result = run(tmp_path / "b", steps=6)
    _, fresh, _ = run(tmp_path / "c", steps=6)
    assert result.resumed_from == 0
    for key in fresh:
        assert torch.equal(fresh[key], short[key]), key


def test_wsd_schedule_rates_and_resume_from_a_constant_run(tmp_path):
    """Warm-up / stable / decay: the rate decays linearly over the last decay_fraction of the run to final_lr_ratio.
    Such a run continues a constant-rate run's checkpoint taken before its decay starts (the rates agree up to
    there) and ends exactly as an uninterrupted wsd run; it never continues a checkpoint taken after."""
    config = TrainConfig(steps=10, batch_size=8, lr=1.0, warmup_steps=2, schedule="wsd", decay_fraction=0.4,
                         final_lr_ratio=0.1)  # fmt: skip
    assert config.decay_start == 6
    assert [round(config.learning_rate(s), 3) for s in range(10)] == [0.5, 1, 1, 1, 1, 1, 0.775, 0.55, 0.325, 0.1]
    with pytest.raises(ValueError, match="schedule"):
        TrainConfig(steps=4, batch_size=2, schedule="cosine")

    wsd = {"schedule": "wsd", "decay_fraction": 0.25}  # 16 steps: decay from step 12
    _, reference, ref_result = run(tmp_path / "a", steps=16, **wsd)
    run(tmp_path / "b", steps=12)  # constant rate, checkpoints at 4, 8, 12
    _, continued, result = run(tmp_path / "b", steps=16, **wsd)
    assert result.resumed_from == 12
    for key in reference:
        assert torch.equal(reference[key], continued[key]), key
    assert [row["lr"] for row in result.curve] == [row["lr"] for row in ref_result.curve]
    # a constant run past the decay start cannot be continued by the wsd run: its rates differ from step 12 on
    run(tmp_path / "c", steps=16)
    _, _, result = run(tmp_path / "c", steps=16, **wsd)
    assert result.resumed_from == 12


def test_data_fingerprint_sees_values_dtype_and_shape():
    a = torch.arange(6.0)
    assert data_fingerprint(a) == data_fingerprint(a.clone().numpy())
    assert data_fingerprint(a) != data_fingerprint(a.reshape(2, 3))
    assert data_fingerprint(a) != data_fingerprint(a.double())
    b = a.clone()
    b[3] += 1e-6
    assert data_fingerprint(a) != data_fingerprint(b)


def test_nan_loss_stops_with_clear_error_and_keeps_last_checkpoint(tmp_path):
    model = torch.nn.Linear(2, 1)
    config = TrainConfig(steps=10, batch_size=1, checkpoint_every=2, log_every=1)

    def loss_fn(step, generator, autocast):
        value = model(torch.ones(1, 2)).sum()
        return {"loss": value * (float("nan") if step == 5 else 1.0)}

    with pytest.raises(TrainingDivergedError, match=r"loss is nan at step 5.*step_000000004"):
        train(model, loss_fn, config, tmp_path, torch.device("cpu"), progress=False)
    checkpoints = sorted(p.name for p in tmp_path.glob("step_*"))
    assert checkpoints[-1] == "step_000000004"
    assert json.loads((tmp_path / "step_000000004" / "state.json").read_text())["step"] == 4


def test_optimizer_state_loads_weights_only(tmp_path):
    run(tmp_path, steps=4)
    state = torch.load(tmp_path / "ckpt" / "step_000000004" / "optimizer.pt", weights_only=True)
    assert "state" in state and "param_groups" in state


def test_batch_indices_walk_seeded_epochs():
    first_epoch = torch.cat([batch_indices(10, 3, step, seed=0) for step in range(3)])
    assert len(set(first_epoch.tolist())) == 9  # no repeats within an epoch (one item left over)
    assert torch.equal(batch_indices(10, 3, 4, 0), batch_indices(10, 3, 4, 0))
    assert not torch.equal(torch.cat([batch_indices(10, 3, s, 0) for s in range(3, 6)]), first_epoch)


def test_run_balanced_batches_favour_short_runs_and_repeat_per_step():
    run_key = np.array(["long/r1"] * 90 + ["short/r1"] * 10)
    assert torch.equal(run_balance_weights(run_key, 0.0), torch.ones(100, dtype=torch.float64))
    weights = run_balance_weights(run_key, 1.0)  # every run alike: each holds half the weight
    assert float(weights[:90].sum()) == pytest.approx(float(weights[90:].sum()))
    first, again = (weighted_batch_indices(weights, 8, 3, seed=0) for _ in range(2))
    assert torch.equal(first, again) and len(set(first.tolist())) == 8  # per step, without replacement
    assert not torch.equal(first, weighted_batch_indices(weights, 8, 4, seed=0))
    drawn = torch.cat([weighted_batch_indices(weights, 8, step, seed=0) for step in range(200)])
    short_share = float((drawn >= 90).float().mean())
    assert 0.35 < short_share < 0.65  # uniform epochs would give 0.10
    assert len(weighted_batch_indices(weights[:5], 8, 0, seed=0)) == 5


def test_sigterm_saves_a_checkpoint_and_the_rerun_resumes_identically(tmp_path):
    import os
    import signal

    from opir.training import TrainingInterrupted

    _, reference, _ = run(tmp_path / "a")
    config, target, cond = tiny_problem()

    def on_step(done):
        if done == 6:  # between checkpoints (every 4): what SLURM's time limit does, seconds before SIGKILL
            os.kill(os.getpid(), signal.SIGTERM)

    torch.manual_seed(1)
    model = ABCC(config)
    train_config = TrainConfig(steps=12, batch_size=8, lr=1e-3, checkpoint_every=4, log_every=2, seed=3,
                               ema_decay=0.99, warmup_steps=3)

    def loss_fn(step, generator, autocast):
        idx = batch_indices(len(target), train_config.batch_size, step, train_config.seed)
        return model.loss(target[idx], cond.index(idx), generator, autocast)

    with pytest.raises(TrainingInterrupted, match="SIGTERM at step 6"):
        train(model, loss_fn, train_config, tmp_path / "b" / "ckpt", torch.device("cpu"),
              run_settings={"problem": "tiny"}, progress=False, on_step=on_step, data="tiny-data")
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # the handler is removed again
    _, resumed, result = run(tmp_path / "b")
    assert result.resumed_from == 6
    assert all(torch.equal(reference[k], resumed[k]) for k in reference)
