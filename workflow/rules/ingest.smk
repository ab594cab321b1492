# Rules of the ingest stage: one job per run turns its OPUS files and potentiostat log into
# results/ingest/{system}/{run}.h5 (opir.ingest, opir.formats.potentiostat; docs/formats.md "Ingest and preprocessed
# runs").
# Inputs: the simulate rule's manifest for simulated data; the run's own files, listed at DAG time, for real data.
from opir.ingest.runs import workflow_inputs


rule ingest:
    input:
        unpack(lambda w: workflow_inputs(config["data"], w.system, w.run)),
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
        run_dir=lambda w: str(Path(config["data"]["raw_dir"]) / w.system / w.run),
    script:
        "../scripts/ingest.py"


FINAL_TARGETS.extend(per_run(rules.ingest.output.rejected))
