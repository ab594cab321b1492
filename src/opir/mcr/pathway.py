"""MCR step 3: the SEI formation pathway (Fig. 5) recovered from the SEI concentrations of one run, measured or
predicted."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from opir.core.arrays import cosine_similarity_rows
from opir.core.errors import DataError
from opir.core.h5io import atomic_h5, provenance, write_axis, write_nxdata
from opir.formats.predictions import read_predictions
from opir.mcr.references import References, read_references
from opir.mcr.streams import baseline_basis, read_samples, read_streams

log = logging.getLogger(__name__)


# ==============================================================================================================
# Step 3: SEI pathway (Fig. 5)
# ==============================================================================================================
@dataclass
class Pathway:
    component_names: list[str]
    spectra: np.ndarray  # (k_s, N_f), recovered SEI spectra
    concentrations: np.ndarray  # (n, k_s)
    c_elec: np.ndarray
    lack_of_fit_percent: float
    n_iter: int


def select_pathway_components(c_sei: np.ndarray, names: Sequence[str], min_share: float) -> list[int]:
    """SEI components worth resolving in a run: those whose amount (90th percentile over the run, so that a few
    noisy spectra do not count) reaches ``min_share`` of the largest SEI component's. Components that never
    appear have no information in the sequence; left in, MCR-ALS would let them absorb noise."""
    peak = np.quantile(np.asarray(c_sei), 0.9, axis=0)
    if peak.max() <= 0:
        raise DataError("no SEI component is present in this run's sequence; nothing to resolve")
    return [i for i in range(len(names)) if peak[i] >= min_share * peak.max()]


def recover_pathway(
    D: np.ndarray,
    refs: References,
    components: Sequence[int],
    baseline_order: int = 1,
    max_iter: int = 100,
    tol_err_change: float = 1e-10,
) -> Pathway:
    """MCR-ALS on one run's sequence: the electrolyte references and the baseline are fixed, the chosen SEI
    components are free (non-negative spectra and concentrations), initialized from their references so that
    each recovered component keeps its name. The scale ambiguity of MCR is removed by giving every recovered
    spectrum the norm of its reference."""
    # off the start-up path: the workflow imports this package while it parses the rules
    from pymcr.constraints import ConstraintNonneg
    from pymcr.mcr import McrAR

    D = np.asarray(D, float)
    _, S_elec = refs.select("elec")
    sei_names, S_sei = refs.select("sei")
    S_free = S_sei[list(components)]
    basis = baseline_basis(D.shape[1], baseline_order)
    ST0 = np.vstack([S_elec, basis, -basis, S_free])
    n_fixed = ST0.shape[0] - len(S_free)
    mcr = McrAR(
        c_regr="NNLS",
        st_regr="NNLS",
        c_constraints=[ConstraintNonneg()],
        st_constraints=[ConstraintNonneg()],
        max_iter=max_iter,
        tol_err_change=tol_err_change,
        tol_increase=None,
    )
    # the baseline rows of ST may be negative; NNLS on ST would clip them, so they are held fixed with st_fix
    mcr.fit(D, ST=ST0.copy(), st_fix=list(range(n_fixed)))
    C, ST = mcr.C_opt_, mcr.ST_opt_
    residual = D - C @ ST
    spectra, conc = ST[n_fixed:].copy(), C[:, n_fixed:].copy()
    for i in range(len(spectra)):
        norm, ref_norm = np.linalg.norm(spectra[i]), np.linalg.norm(S_free[i])
        if norm > 0:
            spectra[i] *= ref_norm / norm
            conc[:, i] *= norm / ref_norm
    return Pathway(
        [sei_names[i] for i in components],
        spectra,
        conc,
        C[:, : len(S_elec)],
        float(100 * np.sqrt((residual**2).sum() / (D**2).sum())),
        int(mcr.n_iter),
    )


def read_prediction_sequence(predictions_h5: str | Path, sample_ids: Sequence[str]) -> np.ndarray:
    """Mean over draws of the predicted spectra of ``sample_ids`` (predictions format, docs/formats.md)."""
    predictions = read_predictions(predictions_h5)
    where = {s: i for i, s in enumerate(predictions.sample_id)}
    missing = [s for s in sample_ids if s not in where]
    if missing:
        raise DataError(f"{predictions_h5}: no prediction for {len(missing)} sample(s), e.g. {missing[0]}")
    return predictions.prediction[[where[s] for s in sample_ids]].mean(axis=1)


def perturbed_copy(D: np.ndarray, noise_fraction: float, seed: int) -> np.ndarray:
    """A stand-in for a model's prediction: the sequence with white noise of ``noise_fraction`` x its RMS and a
    small smooth multiplicative error per spectrum, so the figure can show how robust the recovery is."""
    rng = np.random.default_rng(seed)
    rms = np.sqrt(np.mean(D**2))
    gain = 1 + noise_fraction * rng.standard_normal((len(D), 1))
    return D * gain + noise_fraction * rms * rng.standard_normal(D.shape)


def build_pathway(
    samples_h5, references_h5, streams_h5, predictions_h5, out_h5, params, rule="mcr_pathway"
) -> dict[str, Pathway]:
    """Driver of the ``mcr_pathway`` rule: the pathway of one run, measured and predicted, written to ``out_h5``
    (the report draws Fig. 5 from it: :func:`opir.report.mcr.figure5`)."""
    p = params["pathway"]
    system, run = p["run"].split("/")
    samples = read_samples(samples_h5)
    refs = read_references(references_h5)
    streams = read_streams(streams_h5)
    rows = np.flatnonzero((samples["system_id"] == system) & (samples["run_id"] == run))
    if rows.size == 0:
        raise DataError(f"mcr.pathway.run: run {p['run']!r} is not in {samples_h5}")
    rows = rows[samples["index_in_run"][rows] > 0]  # targets only: m >= 1, as the models predict them
    sample_of_row = dict(zip(samples["sample_row"], samples["sample_id"], strict=True))
    if predictions_h5:
        predicted_ids = set(read_predictions(predictions_h5).sample_id)
        rows = np.array([r for r in rows if sample_of_row.get(r) in predicted_ids])
        if rows.size < 3:
            raise DataError(f"{predictions_h5}: fewer than 3 predicted spectra of run {p['run']}")
        predicted = read_prediction_sequence(predictions_h5, [sample_of_row[r] for r in rows])
        label = p.get("label") or Path(predictions_h5).stem
    else:
        predicted = perturbed_copy(samples["absorbance"][rows], p["perturb_noise"], p["seed"])
        label = f"perturbed copy (noise {p['perturb_noise']:g})"
    measured = samples["absorbance"][rows]
    components = select_pathway_components(streams["c_sei"][rows], streams["sei_names"], p["min_share"])
    kwargs = {"baseline_order": params["baseline_order"], "max_iter": p["max_iter"]}
    result = {
        "measured": recover_pathway(measured, refs, components, **kwargs),
        "predicted": recover_pathway(predicted, refs, components, **kwargs),
    }
    voltage = samples["voltage_v"][rows]
    similarity = cosine_similarity_rows(result["measured"].spectra, result["predicted"].spectra)
    attrs = provenance(rule, params, [x for x in (samples_h5, references_h5, streams_h5, predictions_h5) if x])
    with atomic_h5(out_h5, attrs) as h5:
        h5.attrs["run"] = p["run"]
        h5.attrs["prediction_label"] = label
        write_axis(h5, "voltage_v", voltage)
        write_axis(h5, "row", rows)
        for key, pw in result.items():
            g = h5.create_group(key)
            names = np.array(pw.component_names, dtype=str)
            write_nxdata(
                g, "spectra", "spectra", pw.spectra, [("component", names), ("wavenumber_cm1", refs.wavenumber_cm1)]
            )
            write_nxdata(
                g, "concentrations", "concentrations", pw.concentrations, [("voltage_v", voltage), ("component", names)]
            )
            g.attrs["lack_of_fit_percent"] = pw.lack_of_fit_percent
            g.attrs["n_iter"] = pw.n_iter
        h5.create_dataset("cosine_similarity", data=similarity)
        reference_spectra = refs.select("sei")[1][components]
        for key, pw in result.items():
            to_reference = cosine_similarity_rows(pw.spectra, reference_spectra)
            h5[key].create_dataset("cosine_to_reference", data=to_reference)
            log.info("pathway %s: cosine to the references %s", key, np.round(to_reference, 3).tolist())
    log.info(
        "pathway %s: %s; cosine similarity measured vs %s: %s",
        p["run"],
        ", ".join(result["measured"].component_names),
        label,
        np.round(similarity, 3).tolist(),
    )
    return result
