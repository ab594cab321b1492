"""Ingest: raw operando runs (one Bruker OPUS file per spectrum, or one time-resolved OPUS series file, + a
potentiostat log) to one HDF5 file per run.

Acquisition times come from one of three sources (``ingest.time_source``):
- ``opus``: the DAT/TIM parameters of the data block ('dd/mm/yyyy', 'HH:MM:SS.mmm (GMT+1)'), converted to UTC with
  the zone written in TIM (or ``ingest.opus_time_zone`` when TIM has none); in a series file, the series' DAT/TIM
  plus each spectrum's SRT (its start in seconds after it);
- ``manifest``: the ``acquired_utc`` column of the run's manifest.tsv;
- ``interval``: file order and a fixed interval, for instruments that mis-record DAT/TIM when spectra come every
  ~30 s: t_i = t_start + i * interval_s, i the position in acquisition order (rejected files keep their slot).
"""

from __future__ import annotations

import datetime as dt
import logging
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from opir.core import h5io
from opir.core.config import with_defaults
from opir.core.errors import DataError, OpusReadError
from opir.formats import potentiostat
from opir.formats.opus_reader import OpusFileContents, OpusSpectrum, parse_time_zone, read_opus_file

log = logging.getLogger(__name__)


REJECTED_COLUMNS = ["file", "reason"]


# --------------------------------------------------------------------------------------------------------------
# One run
# --------------------------------------------------------------------------------------------------------------
def list_run_files(run_dir: str | Path) -> dict[str, Any]:
    """The files of a raw run folder, as the workflow lists them at DAG time: spectra in acquisition order
    (manifest.tsv order when present, lexical otherwise), the potentiostat log and the manifest."""
    run_dir = Path(run_dir)
    spectra_dir = run_dir / "spectra"
    spectra = (
        sorted(p for p in spectra_dir.iterdir() if p.is_file() and not p.name.startswith("."))
        if (spectra_dir.is_dir())
        else []
    )
    # the log is whatever file is named potentiostat.*: its format is read from its content, not its extension
    logs = sorted(p for p in run_dir.glob("potentiostat.*") if p.is_file()) if run_dir.is_dir() else []
    manifest = run_dir / "manifest.tsv"
    return {
        "spectra": [str(p) for p in spectra],
        "potentiostat": [str(p) for p in logs],
        "manifest": str(manifest) if manifest.exists() else None,
    }


def read_manifest(path: str | Path, spectra_dir: Path) -> pd.DataFrame:
    """manifest.tsv: file (relative to spectra/ or to the run folder), index (acquisition order), acquired_utc, and
    for series files the optional spectrum (the position in the file, 0-based; see :func:`_entries`)."""
    path = Path(path)
    try:
        table = pd.read_csv(path, sep="\t", dtype=str, comment="#", keep_default_na=False)
    except Exception as exc:
        raise DataError(f"{path}: cannot read the manifest as a tab-separated table: {exc}") from exc
    missing = [c for c in ("file", "index") if c not in table.columns]
    if missing:
        raise DataError(f"{path}: missing column(s) {', '.join(missing)}; expected file, index, acquired_utc")
    try:
        table["index"] = table["index"].astype(int)
    except ValueError as exc:
        raise DataError(f"{path}: column index must hold integers ({exc})") from exc
    duplicated = table["index"][table["index"].duplicated()].tolist()
    if duplicated:
        raise DataError(f"{path}: index {duplicated[0]} appears more than once")
    rows = range(2, len(table) + 2)  # line numbers in the file (header = line 1), before sorting
    positions = [_parse_position(value, path, row) for row, value in zip(rows, _column(table, "spectrum"), strict=True)]
    table["spectrum"] = pd.Series(positions, index=table.index, dtype=object)  # None: not given
    named = table.dropna(subset=["spectrum"])
    twice = named[named.duplicated(["file", "spectrum"])]
    if not twice.empty:
        raise DataError(
            f"{path}: spectrum {twice['spectrum'].iloc[0]} of {twice['file'].iloc[0]} appears more than once"
        )
    if "acquired_utc" in table.columns:
        table["acquired"] = [_parse_utc(v, path, row) for row, v in zip(rows, table["acquired_utc"], strict=True)]
    table = table.sort_values("index", kind="stable").reset_index(drop=True)
    table["path"] = [
        str(spectra_dir / name) if (spectra_dir / name).exists() or "/" not in name else str(spectra_dir.parent / name)
        for name in table["file"]
    ]
    return table


def _column(table: pd.DataFrame, name: str) -> list[str]:
    return list(table[name]) if name in table.columns else [""] * len(table)


def _parse_position(text: str, path: Path, row: int) -> int | None:
    if not str(text).strip():
        return None
    try:
        position = int(text)
    except ValueError:
        position = -1
    if position < 0:
        raise DataError(f"{path}: row {row}: spectrum {text!r} must be empty or a position in the file (0, 1, ...)")
    return position


def _parse_utc(text: str, path: Path, row: int) -> dt.datetime | None:
    if not text:
        return None
    try:
        stamp = dt.datetime.fromisoformat(text)
    except ValueError as exc:
        raise DataError(f"{path}: row {row}: acquired_utc {text!r} is not an ISO 8601 time") from exc
    return stamp.replace(tzinfo=dt.UTC) if stamp.tzinfo is None else stamp.astimezone(dt.UTC)


@dataclass
class RunIngest:
    """What :func:`ingest_run` found: the accepted spectra and, per rejected file, the reason."""

    spectra: list[OpusSpectrum]
    positions: list[int]
    acquired_utc: list[dt.datetime]
    voltage_v: np.ndarray
    current_ma: np.ndarray
    rejected: list[tuple[str, str]]
    open_circuit: np.ndarray | None = None
    technique: str = ""
    log_format: str = ""


def _axis_signature(spectrum: OpusSpectrum) -> tuple[int, float, float]:
    axis = spectrum.wavenumber_cm1
    return (axis.size, round(float(axis[0]), 4), round(float(axis[-1]), 4))


@dataclass(frozen=True)
class _Slot:
    """One place in acquisition order: a file (no manifest: all its spectra) or a manifest row."""

    path: str
    spectrum: int | None = None  # the row's position in a series file; None: not given
    acquired: dt.datetime | None = None  # the row's acquired_utc
    listed: bool = False  # from the manifest


def _stamp(value: Any) -> dt.datetime | None:
    """A manifest time as a plain datetime (pandas stores a column of times as Timestamps, a missing one as NaT)."""
    if value is None or pd.isna(value):
        return None
    return value.to_pydatetime() if isinstance(value, pd.Timestamp) else value


def _key(spectrum: OpusSpectrum) -> tuple[str, int | None]:
    return spectrum.path, spectrum.series_index


def _read_files(slots: Sequence[_Slot], params: Mapping[str, Any]) -> dict[str, OpusFileContents | str]:
    """Each file the slots name, read once (a series file holds many spectra): its contents or why not."""
    files: dict[str, OpusFileContents | str] = {}
    zone = parse_time_zone(params["opus_time_zone"])
    first = True  # the instrument parameters come from the first file that can be read
    for slot in slots:
        if slot.path in files:
            continue
        try:
            files[slot.path] = read_opus_file(slot.path, params["block"], zone, instrument=first)
            first = False
        except OpusReadError as exc:
            files[slot.path] = str(exc).removeprefix(f"{slot.path}: ")
    return files


def _entries(
    slots: Sequence[_Slot], files: Mapping[str, OpusFileContents | str], manifest_path: str | None
) -> tuple[list[tuple[int, OpusSpectrum]], dict[tuple[str, int | None], dt.datetime | None], list[tuple[str, str]]]:
    """The spectra in acquisition order with their positions, the manifest's times, and what cannot be used.

    Without a manifest a file is all its spectra, in file order, each in its own position. A manifest row is one
    spectrum: a series file's rows name their spectrum in the column ``spectrum`` or, without it, are its spectra
    in index order; a spectrum of a series file that no row names is unlisted like a stray file. A file that
    cannot be read is rejected once and keeps its place (one, or one per manifest row naming it); a bad spectrum of
    a series keeps its own, so positions still index the acquisition order (and the simulator's truth).
    """
    read: list[tuple[int, OpusSpectrum]] = []
    times: dict[tuple[str, int | None], dt.datetime | None] = {}
    rejected: list[tuple[str, str]] = []
    next_in_file: Counter[str] = Counter()
    named: dict[str, set[int]] = {}
    position = 0
    for slot in slots:
        contents = files[slot.path]
        if isinstance(contents, str):
            if slot.path not in named:
                rejected.append((slot.path, contents))
                named[slot.path] = set()
            position += 1
            continue
        if not slot.listed:
            wanted = range(contents.stored)
        else:
            wanted = [next_in_file[slot.path] if slot.spectrum is None else slot.spectrum]
            next_in_file[slot.path] += 1
        by_position = {s.series_index or 0: s for s in contents.spectra}
        for k in wanted:
            named.setdefault(slot.path, set()).add(k)
            label = f"{slot.path}[{k}]" if contents.series else slot.path
            if k in by_position:
                read.append((position, by_position[k]))
                times[_key(by_position[k])] = slot.acquired
            elif k in contents.bad:
                rejected.append((label, contents.bad[k]))
            else:
                held = f"{contents.stored} spectra" if contents.series else "1 spectrum (it is not a series file)"
                rejected.append((label, f"{manifest_path} names spectrum {k}, but the file holds {held}"))
            position += 1
    for path, contents in files.items():
        if isinstance(contents, OpusFileContents) and contents.series:
            for k in sorted(set(range(contents.stored)) - named.get(path, set())):
                rejected.append((f"{path}[{k}]", f"not listed in {manifest_path}, so its acquisition order is unknown"))
    return read, times, rejected


def collect_run(
    spectra_paths: Sequence[str],
    log_path: str | None,
    manifest_path: str | None,
    params: Mapping[str, Any],
) -> RunIngest:
    """Read every spectrum of a run, order and time them, and pair them with the potentiostat log.

    Every file that cannot be used is listed in ``rejected`` with its reason; the caller decides (``on_bad_file``)
    whether that stops the run.
    """
    params = with_defaults("ingest", params)
    rejected: list[tuple[str, str]] = []
    slots = [_Slot(str(p)) for p in spectra_paths]
    if manifest_path:
        spectra_dir = Path(manifest_path).parent / "spectra"
        manifest = read_manifest(manifest_path, spectra_dir)
        acquired = manifest["acquired"] if "acquired" in manifest.columns else [None] * len(manifest)
        slots = [
            _Slot(path, None if position is None else int(position), _stamp(stamp), listed=True)
            for path, position, stamp in zip(manifest["path"], manifest["spectrum"], acquired, strict=True)
        ]
        listed = {str(Path(slot.path)) for slot in slots}
        for extra in spectra_paths:
            if str(Path(extra)) not in listed:
                rejected.append((extra, f"not listed in {manifest_path}, so its acquisition order is unknown"))
    if not slots:
        raise DataError(f"no spectra found for this run (looked for {manifest_path or 'spectra/*'})")

    files = _read_files(slots, params)
    read, manifest_times, unusable = _entries(slots, files, manifest_path)
    rejected += unusable

    # one axis per run: the axis most files share; a file on another axis is rejected, not resampled silently
    if read:
        common, _ = Counter(_axis_signature(s) for _, s in read).most_common(1)[0]
        kept = []
        for position, spectrum in read:
            signature = _axis_signature(spectrum)
            if signature != common:
                rejected.append(
                    (
                        spectrum.source,
                        f"axis {signature[0]} points {signature[1]}..{signature[2]} 1/cm differs from the "
                        f"run's axis {common[0]} points {common[1]}..{common[2]} 1/cm",
                    )
                )
            else:
                kept.append((position, spectrum))
        read = kept

    times = _acquisition_times(read, manifest_times, params, log_path)
    read, times = _check_monotonic(read, times, rejected)

    voltage = current = np.zeros(0)
    open_circuit, log_table = np.zeros(0, bool), None
    if read:
        if not log_path:
            raise DataError(
                f"no potentiostat log (a file named potentiostat.<ext>) in the run folder; readable: "
                f"{potentiostat.SUPPORTED_FORMATS}"
            )
        log_table = read_run_log(log_path, params)
        origin = times[0] if log_table.started_utc is None else log_table.started_utc
        if log_table.started_utc is None:
            log.info("%s has no start time; its time 0 is taken as the first spectrum's acquisition", log_path)
        offsets = np.array([(t - origin).total_seconds() for t in times])
        covered = potentiostat.covers(log_table, offsets, float(params["log_tolerance_s"]))
        for (_, spectrum), ok, offset in zip(read, covered, offsets, strict=True):
            if not ok:
                rejected.append(
                    (
                        spectrum.source,
                        f"acquired at {offset:.1f} s, outside the potentiostat log {log_path} "
                        f"({log_table.time_s[0]:.1f}..{log_table.time_s[-1]:.1f} s)",
                    )
                )
        keep = [i for i, ok in enumerate(covered) if ok]
        read = [read[i] for i in keep]
        times = [times[i] for i in keep]
        voltage, current = potentiostat.at_times(log_table, offsets[keep])
        open_circuit = potentiostat.open_circuit_at(log_table, offsets[keep])
    return RunIngest(
        spectra=[s for _, s in read],
        positions=[p for p, _ in read],
        acquired_utc=times,
        voltage_v=voltage,
        current_ma=current,
        rejected=rejected,
        open_circuit=open_circuit,
        technique=log_table.technique if log_table is not None else "",
        log_format=log_table.source_format if log_table is not None else "",
    )


def read_run_log(log_path: str, params: Mapping[str, Any]) -> potentiostat.PotentiostatLog:
    """The run's potentiostat log; a file that is there but unreadable is named with the formats that are."""
    try:
        return potentiostat.read_log(
            log_path, parse_time_zone(params["potentiostat_time_zone"]), params["potentiostat_csv"]
        )
    except DataError as exc:
        reason = str(exc).removeprefix(f"{log_path}: ")
        if "readable:" in reason:
            raise DataError(f"{log_path}: the run's potentiostat log cannot be read: {reason}") from exc
        raise DataError(
            f"{log_path}: the run's potentiostat log cannot be read: {reason} (readable: "
            f"{potentiostat.SUPPORTED_FORMATS})"
        ) from exc


def _acquisition_times(
    read: list[tuple[int, OpusSpectrum]],
    manifest_times: Mapping[tuple[str, int | None], dt.datetime | None],
    params: Mapping[str, Any],
    log_path: str | None,
) -> list[dt.datetime]:
    source = params["time_source"]
    if not read:
        return []
    if source == "opus":
        missing = [s.source for _, s in read if s.acquired_utc is None]
        if missing:
            raise DataError(f"{missing[0]}: no DAT/TIM time stamp; set ingest.time_source to 'interval' or 'manifest'")
        return [s.acquired_utc for _, s in read]
    if source == "manifest":
        missing = [s.source for _, s in read if manifest_times.get(_key(s)) is None]
        if missing:
            raise DataError(f"{missing[0]}: no acquired_utc in the run's manifest.tsv (ingest.time_source: manifest)")
        return [manifest_times[_key(s)] for _, s in read]
    if source == "interval":
        interval = float(params["interval_s"])
        start_from = params["interval_start"]
        if start_from == "log_start":
            if not log_path:
                raise DataError("ingest.interval_start is 'log_start' but the run has no potentiostat log")
            started = read_run_log(log_path, params)
            if started.started_utc is None:
                raise DataError(f"{log_path}: no start time in the log, needed by ingest.interval_start: log_start")
            start = started.started_utc
        else:
            first = read[0][1]
            start = manifest_times.get(_key(first)) or first.acquired_utc
            if start is None:
                raise DataError(f"{first.source}: no time stamp to anchor ingest.time_source: interval")
            start -= dt.timedelta(seconds=interval * read[0][0])
        start += dt.timedelta(seconds=float(params["interval_offset_s"]))
        return [start + dt.timedelta(seconds=interval * position) for position, _ in read]
    raise DataError(f"ingest.time_source {source!r} is not one of opus, manifest, interval")


def _check_monotonic(read, times, rejected):
    """Spectra must be acquired strictly one after another; a duplicate or backwards stamp rejects that file."""
    kept, kept_times = [], []
    for (position, spectrum), stamp in zip(read, times, strict=True):
        if kept_times and stamp <= kept_times[-1]:
            previous = kept[-1][1].source
            what = "duplicate time stamp" if stamp == kept_times[-1] else "time stamp earlier than"
            rejected.append(
                (
                    spectrum.source,
                    f"{what} {stamp.isoformat()} vs {Path(previous).name} "
                    f"({kept_times[-1].isoformat()}): time stamps must increase",
                )
            )
            continue
        kept.append((position, spectrum))
        kept_times.append(stamp)
    return kept, kept_times


def write_rejected(path: str | Path, rejected: Sequence[tuple[str, str]]) -> None:
    frame = pd.DataFrame(list(rejected), columns=REJECTED_COLUMNS)
    frame["reason"] = frame["reason"].str.replace(r"[\t\n]+", " ", regex=True)
    with h5io.atomic_path(path) as tmp:
        frame.to_csv(tmp, sep="\t", index=False)


def ingest_run(
    spectra_paths: Sequence[str],
    log_path: str | None,
    manifest_path: str | None,
    output: str | Path,
    rejected_output: str | Path,
    params: Mapping[str, Any],
    system_id: str,
    run_id: str,
    rule: str = "ingest",
) -> RunIngest:
    """Ingest one run into ``output`` (layout: docs/formats.md, "Ingest and preprocessed runs").

    ``params['on_bad_file']``: 'fail' raises a :class:`DataError` listing every bad file; 'skip' writes them with
    their reasons to ``rejected_output`` and goes on with the rest. The rejected table is written in both cases.
    """
    params = with_defaults("ingest", params)
    result = collect_run(spectra_paths, log_path, manifest_path, params)
    write_rejected(rejected_output, result.rejected)
    where = f"run {system_id}/{run_id}"
    if result.rejected and params["on_bad_file"] == "fail":
        lines = "\n  ".join(f"{path}: {reason}" for path, reason in result.rejected)
        raise DataError(
            f"{where}: {len(result.rejected)} bad file(s) (ingest.on_bad_file: fail; set it to 'skip' to go on "
            f"without them):\n  {lines}"
        )
    for path, reason in result.rejected:
        log.warning("%s: skipped %s: %s", where, path, reason)
    if len(result.spectra) < 2:
        raise DataError(
            f"{where}: {len(result.spectra)} usable spectrum(s); a run needs its initial spectrum and one more"
        )

    first = result.acquired_utc[0]
    elapsed = np.array([(t - first).total_seconds() for t in result.acquired_utc])
    inputs = {s.path: s.sha256 for s in result.spectra}
    for extra in (log_path, manifest_path):
        if extra:
            inputs[str(extra)] = h5io.sha256_file(extra)
    attrs = h5io.provenance(rule, dict(params), input_hashes=inputs)
    attrs.update(system_id=system_id, run_id=run_id, block=result.spectra[0].block, n_rejected=len(result.rejected))
    attrs.update(potentiostat_technique=result.technique, potentiostat_format=result.log_format)
    with h5io.atomic_h5(output, attrs) as handle:
        h5io.write_nxdata(
            handle,
            "spectra",
            "absorbance",
            np.stack([s.values for s in result.spectra]).astype(np.float32),
            [("elapsed_s", elapsed), ("wavenumber_cm1", result.spectra[0].wavenumber_cm1)],
            long_name=f"OPUS block {result.spectra[0].block!r} as stored (absorbance units)",
        )
        h5io.write_axis(handle, "voltage_v", result.voltage_v)
        h5io.write_axis(handle, "current_ma", result.current_ma)
        h5io.write_axis(handle, "open_circuit", np.asarray(result.open_circuit, dtype=bool))
        h5io.write_axis(handle, "acquired_utc", [t.isoformat() for t in result.acquired_utc])
        h5io.write_axis(handle, "position_in_run", np.asarray(result.positions, dtype=np.int64))
        h5io.write_axis(handle, "source_file", [Path(s.source).name for s in result.spectra])
        h5io.write_axis(handle, "source_sha256", [s.sha256 for s in result.spectra])
        instrument = handle.create_group("instrument")
        for key, value in result.spectra[0].instrument.items():
            instrument.attrs[key] = value
    log.info("%s: %d spectra ingested, %d rejected", where, len(result.spectra), len(result.rejected))
    return result


def ingest_run_dir(
    run_dir: str | Path,
    output: str | Path,
    rejected_output: str | Path,
    params: Mapping[str, Any],
    system_id: str,
    run_id: str,
    rule: str = "ingest",
) -> RunIngest:
    """:func:`ingest_run` on a raw run folder ``{raw_dir}/{system}/{run}/`` (layout: docs/architecture.md)."""
    files = list_run_files(run_dir)
    if not files["spectra"] and not files["manifest"]:
        raise DataError(f"{run_dir}: no spectra/ folder with OPUS files and no manifest.tsv")
    if len(files["potentiostat"]) > 1:
        names = ", ".join(Path(p).name for p in files["potentiostat"])
        raise DataError(f"{run_dir}: several potentiostat logs ({names}); keep one so the source is clear")
    log_path = files["potentiostat"][0] if files["potentiostat"] else None
    if log_path is None:
        others = sorted(p.name for p in Path(run_dir).iterdir() if p.is_file() and p.name != "manifest.tsv")
        if others:
            raise DataError(
                f"{run_dir}: no potentiostat log named potentiostat.<ext>; found {', '.join(others)}: rename the "
                f"log to potentiostat.<ext> (readable: {potentiostat.SUPPORTED_FORMATS})"
            )
    return ingest_run(
        files["spectra"], log_path, files["manifest"], output, rejected_output, params, system_id, run_id, rule
    )


def workflow_inputs(data_config: Mapping[str, Any], system_id: str, run_id: str) -> dict[str, Any]:
    """Inputs of the ingest rule for one run (called by Snakemake at DAG time).

    Simulated data: the simulate rule's manifest (the spectra appear with it). Real data: the run's files, listed
    now, so a new or changed file reruns exactly this run; a missing run folder is returned as its spectra/ path,
    which Snakemake reports as a missing input naming it.
    """
    run_dir = Path(data_config["raw_dir"]) / system_id / run_id
    if data_config["source"] == "simulated":
        return {"manifest": str(run_dir / "manifest.tsv")}
    files = list_run_files(run_dir)
    if not files["spectra"]:
        return {"spectra": str(run_dir / "spectra")}
    inputs: dict[str, Any] = {"spectra": files["spectra"], "potentiostat": files["potentiostat"]}
    if files["manifest"]:
        inputs["manifest"] = files["manifest"]
    return inputs
