# Rules of the mcr stage: two-stream MCR (Eq. 11) with references fixed from the calibration set, the streams of
# every spectrum, their validation against the simulator's truth, and the SEI pathway of Fig. 5
# (opir.mcr, opir.report.mcr; docs/mcr.md, docs/formats.md "MCR references and streams").
from opir.mcr.references import calibration_files

MCR_CALIBRATION_DIR = Path(config["data"]["calibration_dir"])
MCR_PATHWAY = config["mcr"]["pathway"]
if tuple(MCR_PATHWAY["run"].split("/", 1)) not in RUNS:
    raise WorkflowError(
        f"mcr.pathway.run: {MCR_PATHWAY['run']!r} is not a run of the runs sheet; "
        f"expected 'system/run', one of: {', '.join(f'{s}/{r}' for s, r in RUNS)}"
    )
# The references see the calibration spectra through the measured spectra's preprocessing, without the per-run
# scale (theirs is 1) and the clip bounds (estimated on the operando training spectra by the dataset rule).
MCR_REFERENCES_PREPROCESS = config_slice(
    "preprocess", exclude=["clip_quantiles", "scale"]
)


# inputs of the pathway figure; a prediction file only when mcr.pathway.model names a model, whose name and split
# are then the input's path: the job reads the legend label, else the noise of the perturbed copy
MCR_PATHWAY_INPUTS = {
    "samples": SAMPLES_H5,
    "references": MCR_REFERENCES_H5,
    "streams": MCR_STREAMS_H5,
}
MCR_PATHWAY_KEYS = ["run", "min_share", "max_iter"]
if MCR_PATHWAY["model"]:
    MCR_PATHWAY_INPUTS["predictions"] = PREDICTIONS_H5.format(
        split=MCR_PATHWAY["split"], model=MCR_PATHWAY["model"]
    )
    MCR_PATHWAY_KEYS.append("label")
else:
    MCR_PATHWAY_KEYS.extend(["perturb_noise", "seed"])


rule mcr_references:
    input:
        lambda wildcards: calibration_files(
            MCR_CALIBRATION_DIR, list_spectra=config["data"]["source"] == "opus"
        ),
    output:
        MCR_REFERENCES_H5,
    log:
        f"{LOGS}/mcr/references.log",
    benchmark:
        f"{BENCH}/mcr/references.tsv"
    conda:
        "../../envs/opir.yaml"
    resources:
        mem_mb=1000,
        runtime=20,
    params:
        calibration_dir=str(MCR_CALIBRATION_DIR),
        mcr=config_slice("mcr", "solvated_species", "references"),
        preprocess=MCR_REFERENCES_PREPROCESS,
    script:
        "../scripts/mcr_references.py"


rule mcr_streams:
    input:
        samples=SAMPLES_H5,
        references=MCR_REFERENCES_H5,
    output:
        streams=MCR_STREAMS_H5,
        flagged="results/mcr/flagged.tsv",
    log:
        f"{LOGS}/mcr/streams.log",
    benchmark:
        f"{BENCH}/mcr/streams.tsv"
    conda:
        "../../envs/opir.yaml"
    resources:
        mem_mb=4000,
        runtime=20,
    params:
        mcr=config_slice("mcr", "baseline_order", "solver", "flag"),
    script:
        "../scripts/mcr_streams.py"


rule mcr_validate:
    input:
        streams=MCR_STREAMS_H5,
        truth=per_run(TRUTH_RUN_H5),
        preprocessed=per_run(PREPROCESSED_H5),
    output:
        "results/mcr/validation.json",
    log:
        f"{LOGS}/mcr/validation.log",
    benchmark:
        f"{BENCH}/mcr/validation.tsv"
    conda:
        "../../envs/opir.yaml"
    resources:
        mem_mb=1000,
        runtime=10,
    params:
        runs=RUNS,
    script:
        "../scripts/mcr_validate.py"


rule mcr_pathway:
    input:
        **MCR_PATHWAY_INPUTS,
    output:
        pathway="results/mcr/pathway.h5",
    log:
        f"{LOGS}/mcr/pathway.log",
    benchmark:
        f"{BENCH}/mcr/pathway.tsv"
    conda:
        "../../envs/opir.yaml"
    resources:
        mem_mb=2000,
        runtime=20,
    params:
        mcr={
            "baseline_order": config["mcr"]["baseline_order"],
            "pathway": config_slice("mcr.pathway", *MCR_PATHWAY_KEYS),
        },
    script:
        "../scripts/mcr_pathway.py"


FINAL_TARGETS.extend(
    [
        MCR_REFERENCES_H5,
        MCR_STREAMS_H5,
        rules.mcr_streams.output.flagged,
    ]
)
if WITH_TRUTH:
    FINAL_TARGETS.append(rules.mcr_validate.output[0])
