"""The training loop shared by OpIR's neural models: AdamW, EMA of the weights, gradient clipping, bf16 autocast on
GPUs, a NaN/inf guard, tqdm progress, and periodic checkpoints with automatic resume.

Resume is exact: all randomness of step s comes from a generator seeded with (seed, s), the learning rate is a
function of the step, and a checkpoint holds the weights, their EMA, the AdamW state and the training curve. So a
job killed by a SLURM time limit and started again ends with the same weights as one that never stopped (on the
CPU, where kernels are deterministic). Checkpoints are safetensors plus an optimizer state read with
``torch.load(weights_only=True)``; nothing is unpickled.

A checkpoint is resumed only by a run that would have taken the same path: same settings, same training data
(a fingerprint of the tensors the caller trains on) and same opir source code. Its length is not part of that:
the learning rate, the EMA warm-up and the batch order depend on the step alone, so a run asked for more steps
continues from a shorter run's last checkpoint and ends exactly where an uninterrupted long run would. The
learning-rate schedule is checked step by step instead: a warm-up / stable / decay run (``schedule: wsd``) depends
on its length once it decays, so it continues a checkpoint only from where both runs had the same learning rate at
every step so far, e.g. a constant-rate run's checkpoint taken before its own decay starts.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from tqdm.auto import tqdm

import opir
from opir.core.errors import OpirError
from opir.core.h5io import config_hash

log = logging.getLogger(__name__)


class TrainingDivergedError(OpirError):
    """The loss or the gradient became NaN or inf; the last good checkpoint is kept."""


class TrainingInterrupted(OpirError):
    """SIGTERM (a scheduler's time limit, scancel) arrived; a checkpoint of the last step was saved first."""


@contextlib.contextmanager
def _sigterm_flag():
    """SLURM sends SIGTERM some seconds before SIGKILL: note it, so the loop saves a checkpoint and stops."""
    flag = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield flag
        return
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: flag.set())
    try:
        yield flag
    finally:
        signal.signal(signal.SIGTERM, previous)


@dataclass(frozen=True)
class TrainConfig:
    steps: int
    batch_size: int
    lr: float = 1e-4
    weight_decay: float = 0.0
    betas: tuple[float, float] = (0.9, 0.95)
    warmup_steps: int = 0
    ema_decay: float = 0.9999
    grad_clip: float = 1.0
    checkpoint_every: int = 500
    keep_checkpoints: int = 2
    log_every: int = 10
    seed: int = 0
    precision: str = "auto"  # auto: bf16 autocast on CUDA, fp32 on CPU; or bf16, fp32
    schedule: str = "constant"  # after the warm-up: "constant", or "wsd" (warm-up / stable / linear decay)
    decay_fraction: float = 0.2  # wsd: share of the run over which the rate decays
    final_lr_ratio: float = 0.0  # wsd: the rate at the last step, as a share of lr

    def __post_init__(self):
        if self.schedule not in ("constant", "wsd"):
            raise ValueError(f"train.schedule {self.schedule!r}: 'constant' or 'wsd'")

    @property
    def decay_start(self) -> int | None:
        """First step whose learning rate depends on the run's length (None: never)."""
        if self.schedule == "constant":
            return None
        return self.steps - max(1, round(self.decay_fraction * self.steps))

    def learning_rate(self, step: int) -> float:
        warm = min(1.0, (step + 1) / self.warmup_steps) if self.warmup_steps else 1.0
        start = self.decay_start
        if start is not None and step >= start:
            progress = (step - start + 1) / (self.steps - start)
            warm = min(warm, 1.0 - (1.0 - self.final_lr_ratio) * progress)
        return self.lr * warm

    def schedule_record(self) -> dict:
        """What a checkpoint notes of the schedule: enough to tell whether another run's rates match up to a step."""
        return {"schedule": self.schedule, "decay_start": self.decay_start, "steps": self.steps,
                "decay_fraction": self.decay_fraction, "final_lr_ratio": self.final_lr_ratio}  # fmt: skip

    @classmethod
    def from_dict(cls, values: dict) -> TrainConfig:
        values = dict(values)
        if "betas" in values:
            values["betas"] = tuple(values["betas"])
        return cls(**values)


@dataclass
class TrainResult:
    curve: list[dict] = field(default_factory=list)
    resumed_from: int = 0
    seconds: float = 0.0


def autocast_factory(device: torch.device, precision: str) -> Callable[[], contextlib.AbstractContextManager]:
    """bf16 autocast where the device supports it and the config asks for it; fp32 (a no-op context) otherwise."""
    use_bf16 = precision == "bf16" or (precision == "auto" and device.type == "cuda")
    if use_bf16:
        return lambda: torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext


def step_generator(seed: int, step: int) -> torch.Generator:
    """The generator of one step: a function of (seed, step) only, which is what makes resume exact."""
    state = np.random.SeedSequence([seed, step]).generate_state(2, dtype=np.uint32)
    return torch.Generator().manual_seed(int(state[0]) << 32 | int(state[1]))


def batch_indices(n_items: int, batch_size: int, step: int, seed: int) -> torch.Tensor:
    """Indices of step ``step``'s batch: epochs are seeded permutations, walked batch by batch (the last partial
    batch of an epoch is dropped so every step has the same batch size)."""
    if n_items <= 0:
        raise OpirError("no training items")
    batch_size = min(batch_size, n_items)
    per_epoch = n_items // batch_size
    epoch, position = divmod(step, per_epoch)
    perm = torch.randperm(n_items, generator=torch.Generator().manual_seed(seed * 100_003 + epoch))
    return perm[position * batch_size : (position + 1) * batch_size]


def run_balance_weights(run_key: np.ndarray, power: float) -> torch.Tensor:
    """Sampling weight of each training sample: n_run ** -power, n_run the number of training samples of its run
    (0: every sample alike; 1: every run alike, whatever its length)."""
    _, inverse, counts = np.unique(np.asarray(run_key), return_inverse=True, return_counts=True)
    return torch.from_numpy(counts[inverse].astype(np.float64) ** -float(power))


def weighted_batch_indices(weights: torch.Tensor, batch_size: int, step: int, seed: int) -> torch.Tensor:
    """Indices of step ``step``'s batch drawn without replacement with probability proportional to ``weights``,
    from a generator seeded by the step (so a resumed run draws the same batches)."""
    if len(weights) <= 0:
        raise OpirError("no training items")
    # offset from batch_indices' epoch seeds (seed * 100_003 + epoch), so the two samplers never share a stream
    generator = torch.Generator().manual_seed(seed * 100_003 + 1_000_000_007 + step)
    return torch.multinomial(weights, min(batch_size, len(weights)), replacement=False, generator=generator)


#: Settings that set how long a run is and how it is recorded, not the path it takes (left out of the run hash), and
#: the learning-rate schedule, which checkpoints check step by step (:func:`same_rates_until`).
LENGTH_KEYS = frozenset({"steps", "max_steps", "epochs", "checkpoint_every", "keep_checkpoints", "log_every",
                         "schedule", "decay_fraction", "final_lr_ratio"})  # fmt: skip


def same_rates_until(step: int, record: dict | None, config: TrainConfig) -> bool:
    """Whether a checkpoint at ``step``, made under the schedule ``record`` (None: before schedules existed, i.e.
    constant), had the learning rates ``config`` gives at every step before ``step``."""
    record = record or {"schedule": "constant", "decay_start": None}
    if record.get("schedule") != "constant" and record == config.schedule_record():
        return True
    ends = [s for s in (record.get("decay_start"), config.decay_start) if s is not None]
    return step <= min(ends, default=step)


def _without_length(value):
    if isinstance(value, dict):
        return {k: _without_length(v) for k, v in value.items() if k not in LENGTH_KEYS}
    return value


def data_fingerprint(*arrays) -> str:
    """SHA-256 of the training data (tensors or arrays: dtype, shape and bytes), for the run hash: a checkpoint of
    other data is never resumed, whatever the time stamps of the files they came from."""
    digest = hashlib.sha256()
    for array in arrays:
        if isinstance(array, torch.Tensor):
            array = array.detach().cpu().contiguous().numpy()
        array = np.ascontiguousarray(array)
        digest.update(f"{array.dtype.str}{array.shape}".encode())
        digest.update(array.tobytes())
    return digest.hexdigest()


def source_fingerprint() -> str:
    """SHA-256 of the opir package's Python sources: a checkpoint made by other code is never resumed (snakemake
    reruns a rule when its script changes, not when the library it imports does; a forced rerun must retrain)."""
    root = Path(opir.__file__).parent
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*.py")):
        digest.update(path.relative_to(root).as_posix().encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def run_hash_of(config: TrainConfig, run_settings: dict | None, data: str | None) -> str:
    """What a resumable checkpoint must share with the run: settings without their length, data, source code."""
    return config_hash({"train": _without_length(asdict(config)), "settings": _without_length(run_settings or {}),
                        "data": data, "source": source_fingerprint()})  # fmt: skip


def _remove_foreign_checkpoints(directory: Path, run_hash: str, config: TrainConfig) -> None:
    """Checkpoints this run cannot continue from (other settings, data or code, past its last step, or other
    learning rates) would only crowd out its own under ``keep_checkpoints``: they go, and the log says so."""
    steps = config.steps
    for path in _checkpoints(directory):
        state = json.loads((path / "state.json").read_text())
        if not _resumable(state, run_hash, config):
            why = ("other settings, data or code" if state.get("run_hash") != run_hash else
                   f"past step {steps}" if state["step"] > steps else "another learning-rate schedule")  # fmt: skip
            log.info("removing checkpoint %s (%s): this run cannot continue from it", path, why)
            shutil.rmtree(path, ignore_errors=True)


def _resumable(state: dict, run_hash: str, config: TrainConfig) -> bool:
    return (state.get("run_hash") == run_hash and state["step"] <= config.steps
            and same_rates_until(state["step"], state.get("schedule"), config))  # fmt: skip


def _checkpoints(directory: Path) -> list[Path]:
    return sorted(p for p in directory.glob("step_*") if (p / "state.json").exists())


def _save_checkpoint(
    directory: Path, step: int, model: torch.nn.Module, ema: dict[str, torch.Tensor], optimizer, curve, run_hash: str,
    keep: int, schedule: dict | None = None,
) -> Path:
    final = directory / f"step_{step:09d}"
    tmp = directory / f".tmp_step_{step:09d}_{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    save_file({k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}, tmp / "model.safetensors")
    save_file({k: v.contiguous().cpu() for k, v in ema.items()}, tmp / "ema.safetensors")
    torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
    (tmp / "curve.json").write_text(json.dumps(curve))
    # state.json is written last: a checkpoint folder without it is incomplete and ignored
    (tmp / "state.json").write_text(json.dumps({"step": step, "run_hash": run_hash, "schedule": schedule}))
    shutil.rmtree(final, ignore_errors=True)
    os.replace(tmp, final)
    for old in _checkpoints(directory)[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def _load_checkpoint(path: Path, model: torch.nn.Module, ema: dict, optimizer, device: torch.device) -> list[dict]:
    model.load_state_dict(load_file(path / "model.safetensors", device=str(device)))
    for key, value in load_file(path / "ema.safetensors", device=str(device)).items():
        ema[key].copy_(value)
    optimizer.load_state_dict(torch.load(path / "optimizer.pt", map_location=device, weights_only=True))
    return json.loads((path / "curve.json").read_text())


def latest_checkpoint(directory: str | Path, run_hash: str, config: TrainConfig) -> Path | None:
    """The newest complete checkpoint this run can continue from: same run hash (:func:`run_hash_of`), at most
    ``config.steps`` steps in, the same learning rates so far (:func:`same_rates_until`); or None."""
    for path in reversed(_checkpoints(Path(directory))):
        if _resumable(json.loads((path / "state.json").read_text()), run_hash, config):
            return path
    return None


def train(
    model: torch.nn.Module,
    loss_fn: Callable[[int, torch.Generator, Callable], dict[str, torch.Tensor]],
    config: TrainConfig,
    checkpoint_dir: str | Path,
    device: torch.device,
    run_settings: dict | None = None,
    progress: bool = True,
    desc: str = "train",
    on_step: Callable[[int], None] | None = None,
    data: str | None = None,
) -> tuple[dict[str, torch.Tensor], TrainResult]:
    """Train ``model`` for ``config.steps`` steps; ``loss_fn(step, generator, autocast)`` returns a dict of loss
    terms whose ``loss`` is minimized. Returns the EMA weights and the training curve.

    Checkpoints go to ``checkpoint_dir`` every ``checkpoint_every`` steps; a run finds the newest one made with the
    same ``run_settings``, ``data`` (:func:`data_fingerprint` of what ``loss_fn`` trains on) and source code, at
    most ``config.steps`` steps in, and continues from it (module docstring). ``on_step(step)`` is called after
    each completed step (tests use it to simulate a kill).
    """
    checkpoint_dir = Path(checkpoint_dir)
    checkpoint_dir.mkdir(parents=True, exist_ok=True)
    run_hash = run_hash_of(config, run_settings, data)
    model.to(device).train()
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=config.lr, betas=config.betas, weight_decay=config.weight_decay)
    ema = {k: v.detach().clone().float() for k, v in model.state_dict().items()}
    autocast = autocast_factory(device, config.precision)

    result, curve, start = TrainResult(), [], 0
    checkpoint = latest_checkpoint(checkpoint_dir, run_hash, config)
    _remove_foreign_checkpoints(checkpoint_dir, run_hash, config)
    if checkpoint is not None:
        curve = _load_checkpoint(checkpoint, model, ema, optimizer, device)
        start = json.loads((checkpoint / "state.json").read_text())["step"]
        result.resumed_from = start
        log.info("resuming from %s (step %d of %d)", checkpoint, start, config.steps)

    t0 = time.perf_counter()
    last_good = checkpoint
    bar = tqdm(total=config.steps, initial=start, desc=desc, disable=not progress, mininterval=5.0)
    with _sigterm_flag() as terminated:
        _loop(model, loss_fn, config, checkpoint_dir, optimizer, params, ema, autocast, curve, start, last_good,
              run_hash, bar, desc, on_step, terminated)
    bar.close()
    result.curve, result.seconds = curve, time.perf_counter() - t0
    return ema, result


def _loop(model, loss_fn, config, checkpoint_dir, optimizer, params, ema, autocast, curve, start, last_good,
          run_hash, bar, desc, on_step, terminated) -> None:
    for step in range(start, config.steps):
        lr = config.learning_rate(step)
        for group in optimizer.param_groups:
            group["lr"] = lr
        terms = loss_fn(step, step_generator(config.seed, step), autocast)
        loss = terms["loss"]
        if not torch.isfinite(loss):
            raise TrainingDivergedError(
                f"{desc}: loss is {loss.item()} at step {step}; training stopped. The last good checkpoint "
                f"({last_good or 'none yet'}) is kept; lower the learning rate or check the inputs for NaN."
            )
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(params, config.grad_clip if config.grad_clip > 0 else float("inf"))
        if not torch.isfinite(grad_norm):
            raise TrainingDivergedError(
                f"{desc}: gradient norm is {grad_norm.item()} at step {step}; training stopped. The last good "
                f"checkpoint ({last_good or 'none yet'}) is kept."
            )
        optimizer.step()
        # EMA with the usual warm-up (decay grows from 0.1 towards ema_decay), so short runs are not stuck at init
        decay = min(config.ema_decay, (1 + step) / (10 + step))
        with torch.no_grad():
            for key, value in model.state_dict().items():
                if value.dtype.is_floating_point:
                    ema[key].lerp_(value.float(), 1 - decay)
                else:
                    ema[key].copy_(value)
        done = step + 1
        if done % config.log_every == 0 or done == config.steps:
            row = {"step": done, "lr": lr, "grad_norm": float(grad_norm)}
            row.update({k: float(v.detach()) for k, v in terms.items()})
            curve.append(row)
            bar.set_postfix(loss=f"{row['loss']:.4g}")
            log.info("%s step %d/%d: %s", desc, done, config.steps, {k: round(v, 6) for k, v in row.items()})
        bar.update(1)
        if done % config.checkpoint_every == 0 or done == config.steps:
            last_good = _save_checkpoint(
                checkpoint_dir, done, model, ema, optimizer, curve, run_hash, config.keep_checkpoints,
                config.schedule_record(),
            )
        if on_step is not None:
            on_step(done)
        if terminated.is_set():
            path = _save_checkpoint(checkpoint_dir, done, model, ema, optimizer, curve, run_hash,
                                    config.keep_checkpoints, config.schedule_record())
            raise TrainingInterrupted(f"{desc}: SIGTERM at step {done}; saved {path}. Run again to resume.")
