"""Simulated runs: measurement (noise, drift, jitter), one run's spectra and log, and the files it is written as."""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import logging
import os
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from opir.core import h5io
from opir.core.config import parse_recipe
from opir.core.electrodes import ElectrodeDescriptors, descriptors_from_row
from opir.core.errors import ConfigError
from opir.formats.opus_writer import opus_bytes, opus_series_bytes
from opir.simulate.chemistry import (
    BINDER_FILM_PER_FRACTION,
    CARBON_BACKGROUND_PER_FRACTION,
    NO_SEI,
    SPECIES,
    SPECIES_KIND,
    Electrochemistry,
    component_spectra,
    concentrations,
    electrochemistry,
    electrode_of,
    instrument_axis_cm1,
    protocol_duration_s,
    reference_single_channel,
)

log = logging.getLogger(__name__)


# ==============================================================================================================
# Measurement
# ==============================================================================================================
def snr_lognormal_sigma(median: float, mean: float) -> float:
    """Log-normal shape parameter with the given median and mean: mean = median * exp(sigma^2 / 2)."""
    if not mean > median > 0:
        raise ConfigError(f"simulate.snr: mean ({mean}) must exceed median ({median}) > 0 for a log-normal SNR")
    return float(np.sqrt(2.0 * np.log(mean / median)))


def baseline_drift(wavenumber_cm1: np.ndarray, n: int, amplitude: float, rng: np.random.Generator) -> np.ndarray:
    """Slow drift: offset, slope and curvature follow smoothed random walks, scaled to ``amplitude`` at the end."""
    x = (wavenumber_cm1 - wavenumber_cm1.mean()) / (np.ptp(wavenumber_cm1) / 2.0)
    steps = rng.normal(0, 1, (n, 3))
    walk = np.cumsum(steps, axis=0) / np.sqrt(max(n, 1))
    kernel = np.ones(min(25, n)) / min(25, n)
    walk = np.stack([np.convolve(walk[:, j], kernel, mode="same") for j in range(3)], axis=1)
    walk -= walk[:1]
    weights = amplitude * np.array([1.0, 0.6, 0.3])
    return (walk * weights) @ np.stack([np.ones_like(x), x, x * x - 1.0 / 3.0])


def analysis_window(wavenumber_cm1: np.ndarray, settings: Mapping[str, Any]) -> np.ndarray:
    low, high = settings["snr_window_cm1"]
    return (wavenumber_cm1 >= low) & (wavenumber_cm1 <= high)


# ==============================================================================================================
# Runs
# ==============================================================================================================
def run_seed(seed: int, *names: str) -> np.random.SeedSequence:
    """A seed per system/run from the global seed and the names, never from the order of the sheets."""
    digest = hashlib.sha256("/".join(names).encode()).digest()
    return np.random.SeedSequence([int(seed), *np.frombuffer(digest[:16], dtype="<u4").tolist()])


def samples_per_run(sim_samples: int, n_runs: int, settings: Mapping[str, Any], where: str) -> list[int]:
    """Samples of a system at the configured scale, split among its runs (earlier runs take the remainder)."""
    total = max(int(settings["min_samples_per_system"]), int(round(sim_samples * float(settings["scale"]))))
    total = min(total, sim_samples)
    if total < n_runs:
        raise ConfigError(f"{where}: {total} samples cannot be split among {n_runs} runs; raise simulate.scale")
    base, extra = divmod(total, n_runs)
    return [base + (1 if i < extra else 0) for i in range(n_runs)]


@dataclass
class SimulatedRun:
    time_s: np.ndarray  # acquisition times of the spectra, s from the run start
    acquired_utc: list[dt.datetime]
    voltage_v: np.ndarray
    current_ma: np.ndarray
    concentrations: np.ndarray  # (n_spectra, k)
    truth: np.ndarray  # noise-free absorbance (n_spectra, n_points), slow drift included
    measured: np.ndarray  # truth + wavenumber jitter + white noise
    snr: np.ndarray
    noise_sigma: np.ndarray
    log: Electrochemistry  # the potentiostat grid (noise-free)
    log_voltage_v: np.ndarray  # what the potentiostat writes (with its own small noise)
    log_current_ma: np.ndarray
    started_utc: dt.datetime
    wavenumber_cm1: np.ndarray
    references: np.ndarray  # (k, n_points) component spectra used


def simulate_run(
    system: Mapping[str, Any],
    run_id: str,
    n_samples: int,
    settings: Mapping[str, Any],
    sei_descriptors: ElectrodeDescriptors | str | None = None,
) -> SimulatedRun:
    """Simulate one run of ``system`` (a row of the systems sheet, descriptor columns included) with ``n_samples``
    + 1 spectra.

    ``sei_descriptors`` (other electrode descriptors, or :data:`NO_SEI`) simulates the same run (voltage curve,
    random draws, electrolyte, binder and carbon background) with the SEI those descriptors form, or none: a
    counterfactual for benchmarks/electrode_bound.py; the workflow never sets it."""
    system_id = system["system_id"]
    where = f"system {system_id}"
    recipe = parse_recipe(system["electrolyte"], f"{where}, electrolyte")
    electrode = electrode_of(system["working_electrode"], where)
    descriptors = descriptors_from_row(system, where)
    sei = descriptors if sei_descriptors is None else None if sei_descriptors == NO_SEI else sei_descriptors
    protocol = system["protocol"]
    rng = np.random.default_rng(run_seed(settings["seed"], system_id, run_id))

    # time grid: the protocol fixes the physics; the number of spectra only sets the interval (so a smaller
    # dataset samples the same experiment more sparsely)
    duration_s = protocol_duration_s(electrode, protocol)
    n_spectra = n_samples + 1
    interval_ms = int(round(duration_s * 1000.0 / n_samples))
    spectrum_ms = np.arange(n_spectra, dtype=np.int64) * interval_ms
    log_step_ms = int(min(settings["potentiostat_interval_s"] * 1000.0, interval_ms / 4.0))
    log_ms = np.arange(0, spectrum_ms[-1] + log_step_ms, max(log_step_ms, 1), dtype=np.int64)
    grid_s = np.union1d(log_ms, spectrum_ms) / 1000.0

    echem = electrochemistry(electrode, protocol, grid_s, rng)
    binder_film = BINDER_FILM_PER_FRACTION * descriptors.binder_fraction
    conc = concentrations(echem, sei, recipe, rng, where, binder_film)
    at = np.searchsorted(grid_s, spectrum_ms / 1000.0)
    on_log = np.searchsorted(grid_s, log_ms / 1000.0)

    wn = instrument_axis_cm1(settings)
    references = component_spectra(wn)
    truth = conc[at] @ references
    # carbon black: a broad, rising background that does not change with time
    carbon = CARBON_BACKGROUND_PER_FRACTION * descriptors.carbon_fraction
    truth += carbon * (0.5 + 0.5 * (wn - wn.min()) / np.ptp(wn))[None, :]
    truth += baseline_drift(wn, n_spectra, settings["baseline_drift"], rng)

    # random per-spectrum measurement errors (left out of the truth, so the noise floor measures them): a tiny
    # wavenumber jitter, first order A(nu - e) = A(nu) - e dA/dnu, and white noise at the drawn SNR
    jitter = rng.normal(0, settings["jitter_cm1"], n_spectra)
    measured = truth - jitter[:, None] * np.gradient(truth, wn, axis=1)
    window = analysis_window(wn, settings)
    sigma_ln = snr_lognormal_sigma(settings["snr"]["median"], settings["snr"]["mean"])
    snr = settings["snr"]["median"] * np.exp(rng.normal(0, sigma_ln, n_spectra))
    signal = np.abs(truth[:, window]).max(1)
    noise_sigma = signal / snr
    measured += rng.normal(0, 1, truth.shape) * noise_sigma[:, None]

    start = dt.datetime.fromisoformat(settings["start_utc"]).astimezone(dt.UTC)
    start += dt.timedelta(days=int(rng.integers(0, 365)), seconds=int(rng.integers(0, 86400)))
    acquired = [start + dt.timedelta(milliseconds=int(ms)) for ms in spectrum_ms]
    log_v = echem.voltage_v[on_log] + rng.normal(0, 0.0005, on_log.size)
    log_i = echem.current_ma[on_log] * (1.0 + rng.normal(0, 0.001, on_log.size))
    log_grid = Electrochemistry(echem.time_s[on_log], echem.voltage_v[on_log], echem.current_ma[on_log],
                                echem.soc[on_log])  # fmt: skip
    return SimulatedRun(
        time_s=spectrum_ms / 1000.0, acquired_utc=acquired, voltage_v=echem.voltage_v[at],
        current_ma=echem.current_ma[at], concentrations=conc[at], truth=truth, measured=measured, snr=snr,
        noise_sigma=noise_sigma, log=log_grid, log_voltage_v=log_v, log_current_ma=log_i, started_utc=start,
        wavenumber_cm1=wn, references=references,
    )  # fmt: skip


# ==============================================================================================================
# Writers
# ==============================================================================================================
def iso_ms(stamp: dt.datetime) -> str:
    return stamp.astimezone(dt.UTC).isoformat(timespec="milliseconds")


def opus_extras(settings: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "instrument": {"INS": "OpIR simulator (OpIRSpec-7K-sim)", "LWN": 15798.0},
        "acquisition": {"RES": 4.0, "NSS": 32, "PLF": "AB"},
        "utc_offset_hours": float(settings["utc_offset_hours"]),
    }


def write_spectra(
    folder: Path,
    stem: str,
    measured: np.ndarray,
    acquired: Sequence[dt.datetime],
    wavenumber_cm1: np.ndarray,
    sample_names: Sequence[str],
    settings: Mapping[str, Any],
    single_channel: bool = True,
) -> list[str]:
    """One OPUS file per spectrum, ``{stem}_{index:05d}.0``, or with ``simulate.opus_series`` one time-resolved
    series file ``{stem}.0`` holding them all; returns the file of each spectrum, in order."""
    folder.mkdir(parents=True, exist_ok=True)
    # a rerun with fewer spectra, or written the other way, must not leave old files behind
    for stale in [*folder.glob(f"{stem}_*.0"), *folder.glob(f"{stem}.0")]:
        stale.unlink()
    reference = reference_single_channel(wavenumber_cm1)
    extras = opus_extras(settings)
    axis = {"first_x_cm1": float(wavenumber_cm1[0]), "last_x_cm1": float(wavenumber_cm1[-1])}
    if settings.get("opus_series", False):
        blocks = {"AB": measured}
        if single_channel:
            blocks = {"ScSm": reference[None, :] * np.power(10.0, -measured), "AB": measured}
        name = f"{stem}.0"
        run_name = sample_names[0].rsplit(" #", 1)[0]  # the series is the run: the spectra's name without a number
        payload = opus_series_bytes(blocks, acquired=list(acquired), sample_name=run_name, **axis, **extras)
        with open(folder / name, "wb") as handle:
            handle.write(payload)
        return [name] * len(measured)
    names = []
    for index, absorbance in enumerate(measured):
        blocks = {"AB": absorbance}
        if single_channel:
            blocks = {"ScSm": reference * np.power(10.0, -absorbance), "AB": absorbance}
        name = f"{stem}_{index:05d}.0"
        payload = opus_bytes(blocks, acquired=acquired[index], sample_name=sample_names[index], **axis, **extras)
        with open(folder / name, "wb") as handle:
            handle.write(payload)
        names.append(name)
    return names


def write_mpt(path: Path, run: SimulatedRun, system: Mapping[str, Any], run_id: str) -> None:
    """EC-Lab ASCII export: header lines, then time/s, Ewe/V, <I>/mA (tab-separated)."""
    technique = "Galvanostatic Cycling with Potential Limitation" if system["protocol"] == "galvanostatic" else (
        "Galvanostatic Intermittent Titration Technique")  # fmt: skip
    header = [
        "EC-Lab ASCII FILE",
        "Nb header lines : {n}",
        "",
        technique,
        "",
        f"Acquisition started on : {run.started_utc.strftime('%m/%d/%Y %H:%M:%S.%f')[:-3]}",
        f"Saved on : {system['system_id']}_{run_id}.mpr",
        f"Electrode material : {system['working_electrode']}",
        f"Electrolyte : {system['electrolyte']}",
        f"Reference electrode : {system.get('counter_electrode', 'Li')}",
        "Comments : written by the OpIR simulator (OpIRSpec-7K-sim); times in UTC",
        "time/s\tEwe/V\t<I>/mA",
    ]
    header[1] = header[1].format(n=len(header))
    rows = np.column_stack([run.log.time_s, run.log_voltage_v, run.log_current_ma])
    with open(path, "w", encoding="latin-1", newline="\n") as handle:
        handle.write("\n".join(header) + "\n")
        np.savetxt(handle, rows, fmt=["%.3f", "%.6f", "%.6e"], delimiter="\t")


def write_manifest(path: Path, files: Sequence[str], acquired: Sequence[dt.datetime]) -> None:
    """One row per spectrum; when a file holds several (a series file), the column ``spectrum`` gives each one's
    position in it (docs/formats.md, "Raw operando runs")."""
    series = len(set(files)) < len(files)
    seen: Counter[str] = Counter()
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle, delimiter="\t", lineterminator="\n")
        writer.writerow(["file", "index", "spectrum", "acquired_utc"] if series else ["file", "index", "acquired_utc"])
        for index, (name, stamp) in enumerate(zip(files, acquired, strict=True)):
            in_file = [seen[name]] if series else []
            seen[name] += 1
            writer.writerow([f"spectra/{name}", index, *in_file, iso_ms(stamp)])


def write_truth(path: Path, run: SimulatedRun, files: Sequence[str], attrs: Mapping[str, Any]) -> None:
    """Noise-free absorbance (the slow drift included; the random per-spectrum jitter and white noise left out),
    concentrations, voltage and the reference spectra, on the instrument axis of the OPUS files."""
    with h5io.atomic_h5(path, attrs) as h5:
        h5.attrs["truth_excludes"] = "random per-spectrum errors: white noise and wavenumber jitter (drift included)"
        spectra = h5io.write_nxdata(
            h5, "spectra", "absorbance", run.truth.astype(np.float32),
            [("time_s", run.time_s), ("wavenumber_cm1", run.wavenumber_cm1)], units="1",
            long_name="noise-free absorbance", compression="gzip", shuffle=True,
        )  # fmt: skip
        h5io.write_axis(spectra, "file", np.array([f"spectra/{f}" for f in files]))
        h5io.write_axis(spectra, "index", np.arange(len(files)))
        h5io.write_axis(spectra, "acquired_utc", np.array([iso_ms(t) for t in run.acquired_utc]))
        h5io.write_axis(spectra, "voltage_v", run.voltage_v)
        h5io.write_axis(spectra, "current_ma", run.current_ma)
        h5io.write_axis(spectra, "snr", run.snr)
        h5io.write_axis(spectra, "noise_sigma", run.noise_sigma, units="1")
        composition = h5io.write_nxdata(
            h5, "composition", "concentrations", run.concentrations,
            [("time_s", run.time_s), ("component_names", np.array(SPECIES), "")],
            long_name="true concentration: mol/L for electrolyte species, film units for binder and SEI",
        )  # fmt: skip
        h5io.write_axis(composition, "component_kinds", np.array([SPECIES_KIND[s] for s in SPECIES]), units="")
        # the names other stages read at the root (as in dataset/truth.h5)
        for name in ("concentrations", "component_names", "component_kinds"):
            h5[name] = h5py.SoftLink(f"/composition/{name}")
        h5io.write_nxdata(h5, "electrochemistry", "voltage_v", run.voltage_v, [("time_s", run.time_s)], units="V")
        h5io.write_axis(h5["electrochemistry"], "current_ma", run.current_ma)
        h5io.write_nxdata(
            h5, "references", "absorbance", run.references.astype(np.float32),
            [("component_names", np.array(SPECIES), ""), ("wavenumber_cm1", run.wavenumber_cm1)], units="1",
            long_name="absorbance per unit concentration",
        )  # fmt: skip


def simulate_system_run(
    system: Mapping[str, Any], run_id: str, runs: Sequence[str], settings: Mapping[str, Any],
    run_dir: str | os.PathLike, truth_path: str | os.PathLike, rule: str = "simulate",
) -> SimulatedRun:
    """Simulate and write one run: spectra/*.0, potentiostat.mpt, manifest.tsv (last: the run's marker file)
    and the truth file. ``runs`` lists the system's runs in sheet order (they share its samples)."""
    system = dict(system)
    where = f"system {system['system_id']}"
    if run_id not in runs:
        raise ConfigError(f"{where}: run {run_id!r} is not in the runs sheet (runs: {', '.join(runs)})")
    counts = samples_per_run(int(system["sim_samples"]), len(runs), settings, where)
    n_samples = counts[list(runs).index(run_id)]
    run = simulate_run(system, run_id, n_samples, settings)
    run_dir = Path(run_dir)
    stem = f"{system['system_id']}_{run_id}"
    names = [f"{system['system_id']} {run_id} #{i:05d}" for i in range(n_samples + 1)]
    files = write_spectra(run_dir / "spectra", stem, run.measured, run.acquired_utc, run.wavenumber_cm1, names,
                          settings, settings["single_channel"])  # fmt: skip
    write_mpt(run_dir / "potentiostat.mpt", run, system, run_id)
    slice_ = {"simulate": dict(settings), "system": system, "runs": list(runs)}
    write_truth(Path(truth_path), run, files, h5io.provenance(rule, slice_, input_hashes={}))
    write_manifest(run_dir / "manifest.tsv", files, run.acquired_utc)
    log.info("%s/%s: %d spectra, %.1f h, SNR median %.1f", system["system_id"], run_id, n_samples + 1,
             run.time_s[-1] / 3600.0, float(np.median(run.snr)))  # fmt: skip
    return run
