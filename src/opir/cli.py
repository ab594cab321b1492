"""The ``opir`` console script.

- ``opir predict``: one static spectrum + a voltage profile + an electrolyte recipe -> the predicted operando sequence
  with its uncertainty band (HDF5 + CSV + PNG; :mod:`opir.forecast`);
- ``opir package``: complete a workflow model folder (``results/models/{split}/{model}/``) into a self-contained
  model directory that ``opir predict`` can use without the workflow's results folder.

Expected failures (:class:`opir.core.errors.OpirError`) end with one line on stderr and exit status 2; ``--debug`` shows
the traceback as well. Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from opir import __version__
from opir.core.errors import ConfigError, DataError, OpirError

#: Exit status of an expected failure (bad input, incompatible model); argparse uses 2 for bad arguments too.
EXIT_ERROR = 2


def _voltages(text: str) -> list[float]:
    try:
        return [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected voltages such as 0.5,1.0,2.0; got {text!r}") from None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="opir", description="Operando IR spectroscopy of Li-ion interphases.")
    parser.add_argument("--version", action="version", version=f"opir {__version__}")
    parser.add_argument("--debug", action="store_true", help="show the full traceback of an error")
    parser.add_argument("-q", "--quiet", action="store_true", help="only warnings and errors on stderr")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser(
        "predict",
        help="forecast an operando sequence from one static spectrum",
        description="Forecast the operando IR sequence of a cell from one static spectrum, the voltage profile and "
        "the electrolyte recipe. Writes forecast.h5, forecast.csv and forecast.png to --out.",
    )
    p.add_argument("--model", required=True, type=Path, help="self-contained model directory (see `opir package`)")
    p.add_argument("--spectrum", required=True, type=Path,
                   help="static spectrum: an OPUS file (AB block) or a CSV of wavenumber_cm1, absorbance")
    p.add_argument("--voltage-profile", required=True, type=Path,
                   help="CSV with columns time_s, voltage_v: one row per wanted spectrum, row 1 = the static one")
    p.add_argument("--electrolyte", required=True,
                   help="recipe such as 'LiPF6:1.0M; EC:0.5; DMC:0.5'; molecules by name (the model's sheet) or SMILES")
    p.add_argument("--electrode", default=None,
                   help="working electrode: a system_id or working_electrode of the model's systems sheet (e.g. "
                   "'CoO/SuperP'), or descriptor values 'electrode_class=conversion, carbon_fraction=0.1, "
                   "binder_fraction=0.1, surface_area=1.5, volume_change=1, film_reversibility=0.5, "
                   "catalysis=transesterification:8' (docs/simulator.md); recorded with the forecast")
    p.add_argument("--out", required=True, type=Path, help="output folder")
    p.add_argument("--draws", type=int, default=32, help="samples per spectrum for the 5-95%% band (default 32)")
    p.add_argument("--seed", type=int, default=0, help="seed of the draws (default 0)")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"], help="torch device (default auto)")
    p.add_argument("--batch-size", type=int, default=64, help="draws sampled at once (default 64)")
    p.add_argument("--voltage-tolerance", type=float, default=0.05, metavar="V",
                   help="how far (V) the profile may leave the training voltage range (default 0.05)")
    p.add_argument("--mixture-domain", default="training", choices=["training", "open"],
                   help="training (default): an electrolyte outside the mixtures the model trained on is forecast as "
                   "the nearest of them, with a warning; open: extrapolate")
    p.add_argument("--no-hedge", action="store_true",
                   help="forecast with the model alone even if the directory carries a hedge (the blend with the "
                   "voltage regression that Table 3's hedged row scores; forecast.json 'hedge')")
    p.add_argument("--plot-voltages", type=_voltages, default=None, metavar="V1,V2,...",
                   help="voltages whose spectra the PNG shows (default: 4 steps spread over the profile)")
    p.add_argument("--block", default="AB", help="OPUS block to read (default AB)")

    k = sub.add_parser(
        "package",
        help="make a workflow model folder self-contained",
        description="Add the VAE, the preprocessing parameters and the embedding data to a trained model folder of "
        "the workflow, so that `opir predict` needs nothing else; and the hedge (results/hedge/SPLIT/MODEL/"
        "weight.json) when the workflow chose one, whose band is then calibrated on the hedge's held-out systems.",
    )
    k.add_argument("--workdir", type=Path, default=Path("."), help="the workflow's working directory (default .)")
    k.add_argument("--split", required=True, help="random or system")
    k.add_argument("--model", required=True, help="model name (a key of models.variants)")
    k.add_argument("--out", type=Path, default=None, help="write a copy here (default: complete the folder in place)")
    k.add_argument("--calibration-draws", type=int, default=32,
                   help="draws per training sample to calibrate the 5-95%% band (conformal; a hedged model is "
                        "calibrated on the hedge's held-out predictions instead); 0: no calibration")
    k.add_argument("--calibration-samples", type=int, default=256, help="training samples used at most (default 256)")
    k.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"], help="torch device for calibration")
    return parser


def _package(args: argparse.Namespace) -> Path:
    """``opir package``: the files of a model in a workflow's working directory, at the places the workflow writes
    them (workflow/rules/common.smk), handed to the library by path."""
    # keeps `opir --help` fast: torch loads only for the command that needs it
    from opir.package.packaging import package_trained_model

    results = args.workdir / "results"
    model_dir = results / "models" / args.split / args.model
    if not (model_dir / "model.json").exists():
        raise ConfigError(f"{model_dir}: no trained model (model.json); train it with the workflow first")
    mixture = json.loads((model_dir / "model.json").read_text()).get("embedding_file")
    if not mixture:
        raise ConfigError(f"{model_dir / 'model.json'}: no 'embedding_file'; cannot tell which embeddings it used")
    hedge = results / "hedge" / args.split / args.model / "weight.json"
    return package_trained_model(
        model_dir, results / "dataset" / "samples.h5", results / "dataset" / "splits.json",
        results / "latent" / args.split / "vae", args.workdir / mixture, args.out, args.calibration_draws,
        args.calibration_samples, device=args.device,
        electrodes_h5=electrodes if (electrodes := results / "dataset" / "electrodes.h5").exists() else None,
        hedge_json=hedge if hedge.exists() else None, held_out=_held_out_predictions(hedge) if hedge.exists() else (),
    )


def _held_out_predictions(weight_json: Path) -> list[tuple[Path, Path]]:
    """The hedge's held-out predictions (the model's, the partner's) of each group its weight file names, where the
    workflow writes them (results/hedge/SPLIT/MODEL/GROUP/)."""
    from opir.evaluate.hedge import read_weight

    pairs = [(weight_json.parent / group / "predictions.h5", weight_json.parent / group / "partner.h5")
             for group in read_weight(weight_json).get("groups", [])]  # fmt: skip
    missing = [str(path) for pair in pairs for path in pair if not path.exists()]
    if missing:
        raise DataError(f"{weight_json}: the hedge's held-out predictions are missing ({', '.join(missing)}); "
                        "run the workflow's hedge_validate jobs first")
    return pairs


def _predict(args: argparse.Namespace) -> dict:
    # keeps `opir --help` fast: torch loads only for the command that needs it
    from opir.forecast.output import predict

    if args.draws < 2:
        raise ConfigError(f"--draws {args.draws}: at least 2 draws are needed for an uncertainty band")
    if args.batch_size < 1:
        raise ConfigError(f"--batch-size {args.batch_size} must be at least 1")
    return predict(args.model, args.spectrum, args.voltage_profile, args.electrolyte, args.out,
                   electrode=args.electrode, draws=args.draws, seed=args.seed, device=args.device,
                   batch_size=args.batch_size, voltage_tolerance_v=args.voltage_tolerance,
                   plot_voltages=args.plot_voltages, block=args.block, mixture_domain=args.mixture_domain,
                   hedge=not args.no_hedge)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # the handler lives as long as the command: main() called in-process (tests, notebooks) leaves no trace
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("opir %(levelname)s: %(message)s"))
    root = logging.getLogger()
    previous_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.WARNING if args.quiet else logging.INFO)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never reach for the hub from a command-line run
    os.environ.setdefault("DIFFUSERS_VERBOSITY", "error")  # its loading notes are no concern of a user here
    try:
        if args.command == "predict":
            for kind, path in _predict(args).items():
                print(f"{kind}: {path}")
        elif args.command == "package":
            print(f"model directory: {_package(args)}")
    except OpirError as exc:
        if args.debug:
            raise
        print(f"opir {args.command}: error: {' '.join(str(exc).splitlines())}", file=sys.stderr)
        return EXIT_ERROR
    finally:
        root.removeHandler(handler)
        root.setLevel(previous_level)
    return 0

if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
