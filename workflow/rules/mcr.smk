# Rules of the mcr stage: two-stream MCR (Eq. 11) with references fixed from the calibration set, the streams of
# every spectrum, their validation against the simulator's truth, and the SEI pathway of Fig. 5
# (opir.mcr, opir.report.mcr; docs/mcr.md, docs/formats.md "MCR references and streams").
from opir.mcr.references import calibration_files

MCR_CALIBRATION_DIR = Path(config["data"]["calibration_dir"])
MCR_TRUTH_DIR = config["data"]["truth_dir"]
# the same condition as preprocess.smk's WITH_TRUTH: truth exists for simulated data or a given truth folder
MCR_WITH_TRUTH = MCR_TRUTH_DIR is not None and (
    config["data"]["source"] == "simulated" or Path(MCR_TRUTH_DIR).exists()
)
MCR_PATHWAY = config["mcr"]["pathway"]
if tuple(MCR_PATHWAY["run"].split("/", 1)) not in RUNS:
    raise WorkflowError(
        f"mcr.pathway.run: {MCR_PATHWAY['run']!r} is not a run of the runs sheet; "
        f"expected 'system/run', one of: {', '.join(f'{s}/{r}' for s, r in RUNS)}"
    )


# inputs of the pathway figure; a prediction file only when mcr.pathway.model names a model
MCR_PATHWAY_INPUTS = {
    "samples": "results/dataset/samples.h5",
    "references": "results/mcr/references.h5",
    "streams": "results/mcr/streams.h5",
}
if MCR_PATHWAY["model"]:
    MCR_PATHWAY_INPUTS["predictions"] = (
        f"results/predictions/{MCR_PATHWAY['split']}/{MCR_PATHWAY['model']}.h5"
    )


rule mcr_references:
    input:
        lambda wildcards: calibration_files(
            MCR_CALIBRATION_DIR, list_spectra=config["data"]["source"] == "opus"
        ),
    output:
        "results/mcr/references.h5",
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
        mcr={k: config["mcr"][k] for k in ("solvated_species", "references")},
        preprocess=config["preprocess"],
    script:
        "../scripts/mcr_references.py"


rule mcr_streams:
    input:
        samples="results/dataset/samples.h5",
        references="results/mcr/references.h5",
    output:
        streams="results/mcr/streams.h5",
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
        mcr={k: config["mcr"][k] for k in ("baseline_order", "solver", "flag")},
    script:
        "../scripts/mcr_streams.py"


rule mcr_validate:
    input:
        streams="results/mcr/streams.h5",
        truth=per_run(f"{MCR_TRUTH_DIR}/{{system}}/{{run}}.h5"),
        preprocessed=per_run("results/preprocessed/{system}/{run}.h5"),
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
        mcr={"baseline_order": config["mcr"]["baseline_order"], "pathway": MCR_PATHWAY},
    script:
        "../scripts/mcr_pathway.py"


FINAL_TARGETS.extend(
    [
        "results/mcr/references.h5",
        "results/mcr/streams.h5",
        "results/mcr/flagged.tsv",
    ]
)
if MCR_WITH_TRUTH:
    FINAL_TARGETS.append("results/mcr/validation.json")
