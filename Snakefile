# OpIR: operando IR spectra (Bruker OPUS + potentiostat logs) -> ABCC (MeanFlow) -> OpIRBench tables and figures.
# Stages live in workflow/rules/, logic in src/opir/; see README.md and docs/.
from pathlib import Path

from snakemake.utils import min_version

min_version("9.20")


# The embedded default is read from the workflow's own folder, so `snakemake -d <workdir>` works anywhere;
# --configfile files given on the command line are merged over it.
configfile: Path(workflow.basedir) / "config/config.yaml"


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/simulate.smk"
include: "workflow/rules/ingest.smk"
include: "workflow/rules/preprocess.smk"
include: "workflow/rules/render.smk"
include: "workflow/rules/mcr.smk"
include: "workflow/rules/embed.smk"
include: "workflow/rules/baselines.smk"
include: "workflow/rules/latent.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/predict.smk"
include: "workflow/rules/neural_baselines.smk"
include: "workflow/rules/package.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/report.smk"
include: "workflow/rules/cluster_check.smk"


wildcard_constraints:
    system="|".join(SYSTEMS.index),
    run="|".join(sorted({run for _, run in RUNS})),
    split="|".join(SPLITS),


rule all:
    default_target: True
    input:
        all_targets(),
