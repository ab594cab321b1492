"""Benchmark of the render stage (issue 5), printed as one JSON line last:

- alg1_spectra_per_s: spectra -> waveform images per second (Alg. 1), at 256x256 and at the demo size;
- chemical_flow_images_per_s: Chemical Flow images per second (Alg. 2, max_curves curves each, long-run samples);
- roundtrip_mae_fraction: MAE of spectrum -> image -> spectrum over every spectrum of the dataset, as a fraction of
  the drawn range 2 * clip (goal at 256x256: <= 0.01), at each size; with its 99th percentile per spectrum, and
  without the inverse's refinement steps (``_unrefined``: plain interpolation of the column centres);
- full_render_256: the three streams of the whole dataset written to HDF5 at 256x256 in a fresh child process:
  seconds per stream, file sizes and the child's peak resident memory (goal: < 1.5 GB).

The dataset is results/dataset/samples.h5 when ``--samples`` names one (the workflow's); otherwise the
OpIRSpec-7K-sim spectra are simulated in memory (opir.simulate.runs.simulate_run, every system of the sheet at
``--scale``) and preprocessed exactly as the workflow does (opir.preprocess.spectra.apply), without writing OPUS files.

Usage: python benchmarks/render.py [--samples PATH] [--scale 1.0] [--demo-size 64] [--skip-full]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import resource
import sys
import tempfile
import time
from pathlib import Path

import h5py
import numpy as np
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from opir.core.config import load_sheets, validate_with_schema  # noqa: E402
from opir.core.h5io import atomic_h5, write_axis  # noqa: E402
from opir.render.chemical_flow import chemical_flow_images  # noqa: E402
from opir.render.images import RENDERERS, render_stream  # noqa: E402
from opir.render.waveform import spectrum_to_waveform, style_from_config, waveform_to_spectrum  # noqa: E402


def _config() -> dict:
    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    validate_with_schema(config, "config.schema.yaml", "config/config.yaml")
    return config


def simulate_samples(path: Path, config: dict, scale: float) -> None:
    """OpIRSpec-7K-sim at ``scale``, preprocessed, written in the samples.h5 layout (docs/architecture.md)."""
    from opir.preprocess import spectra as preprocess
    from opir.preprocess.dataset import sample_table
    from opir.simulate.runs import samples_per_run, simulate_run

    settings = dict(config["simulate"], scale=scale)
    sheets = load_sheets(config, root=REPO)
    runs, spectra = [], []
    for system in sheets.systems.to_dict("records"):
        run_ids = sheets.runs.loc[sheets.runs.system_id == system["system_id"], "run_id"].tolist()
        counts = samples_per_run(int(system["sim_samples"]), len(run_ids), settings, system["system_id"])
        for run_id, n_samples in zip(run_ids, counts, strict=True):
            sim = simulate_run(system, run_id, n_samples, settings)
            grid, block, info = preprocess.apply(sim.wavenumber_cm1, sim.measured, config["preprocess"])
            spectra.append(block)
            runs.append({"system_id": system["system_id"], "run_id": run_id, "absorbance": block,
                         "voltage_v": sim.voltage_v, "current_ma": sim.current_ma, "elapsed_s": sim.time_s,
                         "snr": info["snr"]})  # fmt: skip
    table = sample_table(runs)
    with atomic_h5(path, {"producer_rule": "benchmarks/render.py"}) as handle:
        write_axis(handle, "wavenumber_cm1", grid)
        handle.create_dataset("spectra/absorbance", data=np.concatenate(spectra).astype(np.float32))
        for group_name, columns in table.items():
            group = handle.create_group(group_name)
            for name, values in columns.items():
                write_axis(group, name, values)


def _best_rate(work, count: int, repeats: int = 3) -> float:
    best = np.inf
    for _ in range(repeats):
        start = time.perf_counter()
        work()
        best = min(best, time.perf_counter() - start)
    return count / best


def _peak_rss_mb() -> float:
    """This process's peak resident memory since it started its program (VmHWM; ru_maxrss would also count the
    parent's pages that a spawned child held between fork and exec)."""
    status = Path("/proc/self/status")
    if status.exists():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _full_render(samples: str, out_dir: str, settings: dict, queue) -> None:
    timings = {}
    for stream in RENDERERS:
        start = time.perf_counter()
        render_stream(stream, samples, Path(out_dir) / f"{stream}.h5", settings, rule="benchmark")
        timings[stream] = round(time.perf_counter() - start, 2)
    queue.put((timings, _peak_rss_mb()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--samples", help="a samples.h5 (default: simulate OpIRSpec-7K-sim in memory)")
    parser.add_argument("--scale", type=float, default=1.0, help="simulate.scale when simulating (1 = 7,118)")
    parser.add_argument("--demo-size", type=int, default=None, help="demo image size (default: config.yaml's)")
    parser.add_argument("--skip-full", action="store_true", help="skip writing the whole dataset at 256x256")
    args = parser.parse_args()
    config = _config()
    settings = dict(config["render"])
    demo_size = args.demo_size or int(settings["image_size"])
    sizes = sorted({256, demo_size}, reverse=True)

    with tempfile.TemporaryDirectory(prefix="opir-render-bench-") as tmp:
        samples = Path(args.samples) if args.samples else Path(tmp) / "samples.h5"
        simulate_s = None
        if not args.samples:
            start = time.perf_counter()
            simulate_samples(samples, config, args.scale)
            simulate_s = round(time.perf_counter() - start, 1)
        with h5py.File(samples, "r") as handle:
            spectra = handle["spectra/absorbance"][()]
            first_rows = handle["runs/first_row"][()]
            n_rows = handle["runs/n_rows"][()]
        longest = int(np.argmax(n_rows))
        run_spectra = spectra[first_rows[longest] : first_rows[longest] + n_rows[longest]]
        flow_ms = np.arange(len(run_spectra) - 1, 0, -1)[:64][::-1]  # late samples: max_curves curves each

        result: dict = {"n_spectra": int(len(spectra)), "n_points": int(spectra.shape[1]), "sizes": sizes}
        result["alg1_spectra_per_s"], result["chemical_flow_images_per_s"] = {}, {}
        result["roundtrip_mae_fraction"], result["roundtrip_p99_fraction"] = {}, {}
        result["roundtrip_mae_fraction_unrefined"] = {}
        block = spectra[:2048]
        for size in sizes:
            style = style_from_config(dict(settings, image_size=size))
            flow_style = style_from_config(dict(settings, image_size=size), "chemical_flow")
            flow = settings["chemical_flow"]
            result["alg1_spectra_per_s"][size] = round(
                _best_rate(lambda s=style: spectrum_to_waveform(block, s), len(block)), 1
            )
            result["chemical_flow_images_per_s"][size] = round(
                _best_rate(
                    lambda s=flow_style, f=flow: chemical_flow_images(
                        run_spectra, flow_ms, s, float(f["darkest_grey"]), f["max_curves"]
                    ),
                    len(flow_ms),
                    repeats=1,
                ),
                1,
            )
            errors, plain = [], []
            for start in range(0, len(spectra), 1024):
                chunk = spectra[start : start + 1024]
                images = spectrum_to_waveform(chunk, style)
                clipped = np.clip(chunk, style.centre - style.clip, style.centre + style.clip)
                for iterations, sink in ((3, errors), (0, plain)):
                    recovered = waveform_to_spectrum(
                        images, spectra.shape[1], style, refine_iterations=iterations
                    )
                    sink.append(np.abs(recovered - clipped).mean(axis=1) / (2 * style.clip))
            errors, plain = np.concatenate(errors), np.concatenate(plain)
            result["roundtrip_mae_fraction"][size] = round(float(errors.mean()), 5)
            result["roundtrip_p99_fraction"][size] = round(float(np.quantile(errors, 0.99)), 5)
            result["roundtrip_mae_fraction_unrefined"][size] = round(float(plain.mean()), 5)
        window = (settings["centre"] - settings["clip"], settings["centre"] + settings["clip"])
        result["share_values_clipped"] = round(float(np.mean((spectra < window[0]) | (spectra > window[1]))), 6)
        differences = np.concatenate(
            [spectra[f + 1 : f + n] - spectra[f] for f, n in zip(first_rows, n_rows, strict=True)]
        )
        clip = settings["variation"]["clip"]
        result["share_differences_clipped"] = round(float(np.mean(np.abs(differences) > clip)), 6)
        result["value_quantiles_0p1_99p9"] = [round(float(q), 4) for q in np.quantile(spectra, [0.001, 0.999])]

        if not args.skip_full:
            full = dict(settings, image_size=256)
            queue = multiprocessing.get_context("spawn").Queue()
            child = multiprocessing.get_context("spawn").Process(
                target=_full_render, args=(str(samples), tmp, full, queue)
            )
            child.start()
            timings, peak_mb = queue.get()
            child.join()
            sizes_mb = {s: round((Path(tmp) / f"{s}.h5").stat().st_size / 2**20, 1) for s in RENDERERS}
            result["full_render_256"] = {"seconds": timings, "peak_rss_mb": round(peak_mb, 1), "file_mb": sizes_mb}
        result["simulate_s"] = simulate_s
        result["goals"] = {
            "alg1_256_ge_1000_per_s": result["alg1_spectra_per_s"][256] >= 1000,
            "roundtrip_256_le_1pct": result["roundtrip_mae_fraction"][256] <= 0.01,
            "peak_rss_lt_1p5_gb": None if args.skip_full else result["full_render_256"]["peak_rss_mb"] < 1536,
        }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
