# Rules of the ingest stage: one job per run turns its OPUS files and potentiostat log into
# results/ingest/{system}/{run}.h5 (opir.ingest, opir.potentiostat; docs/formats.md "Ingest and preprocessed runs").
from opir.ingest import list_run_files


def raw_run_dir(wildcards):
    return Path(config["data"]["raw_dir"]) / wildcards.system / wildcards.run


def ingest_inputs(wildcards):
    """Simulated data: the simulate rule's manifest (the spectra appear with it). Real data: the run's files,
    listed now, at DAG time, so a new or changed file reruns exactly this run."""
    run_dir = raw_run_dir(wildcards)
    if config["data"]["source"] == "simulated":
        return {"manifest": str(run_dir / "manifest.tsv")}
    files = list_run_files(run_dir)
    if not files["spectra"]:
        # a missing folder is reported by snakemake as a missing input, naming it
        return {"spectra": str(run_dir / "spectra")}
    inputs = {"spectra": files["spectra"], "potentiostat": files["potentiostat"]}
    if files["manifest"]:
        inputs["manifest"] = files["manifest"]
    return inputs


rule ingest:
    input:
        unpack(ingest_inputs),
    output:
        h5="results/ingest/{system}/{run}.h5",
        rejected="results/ingest/{system}/{run}.rejected.tsv",
    log:
        f"{LOGS}/ingest/{{system}}/{{run}}.log",
    benchmark:
        f"{BENCH}/ingest/{{system}}/{{run}}.tsv"
    conda:
        "../../envs/opir.yaml"
    resources:
        mem_mb=1000,
        runtime=30,
    params:
        ingest=config["ingest"],
        run_dir=lambda wildcards: str(raw_run_dir(wildcards)),
    script:
        "../scripts/ingest.py"


FINAL_TARGETS.extend(per_run("results/ingest/{system}/{run}.rejected.tsv"))
