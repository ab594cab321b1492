# Rules of the report stage: the paper's figures that no stage owns (Fig. 1, Fig. 4, training curves) and the
# benchmark tables as HTML pages for `snakemake --report` (opir.report.paper; docs/report.md). `paper_figures`
# builds every figure and table of the paper, including those the stages make themselves (Fig. 2: preprocess,
# rendering illustration: render).
REPORT_SETTINGS = config["report"]
# Fig. 4 compares models on held-out systems, as the paper does
FIG4_SPLIT = "system"
# ABCC (the variants of Tables 2 and 3) first, then every baseline, unless report.fig4.models names them
FIG4_MODELS = REPORT_SETTINGS["fig4"]["models"] or (
    [m for m in ABCC_BENCHMARK_MODELS if FIG4_SPLIT in row_splits(m)]
    + [
        model
        for model in PREDICTION_MODELS
        if model not in ABCC_BENCHMARK_MODELS and FIG4_SPLIT in row_splits(model)
    ]
)
# every model with predictions on the system split (the Table 4 ablations too)
FIG4_AVAILABLE = (
    [m for m in PREDICTION_MODELS if FIG4_SPLIT in row_splits(m)]
    + REFERENCE_MODELS
    + [m for m in ABCC_MODELS if FIG4_SPLIT in model_splits(config["models"], m)]
)
# named runs and models must exist: say so now, not after the workflow ran for an hour
for key in ("fig1", "fig4"):
    named = REPORT_SETTINGS[key]["run"]
    if named and tuple(named.split("/", 1)) not in RUNS:
        raise WorkflowError(
            f"config report.{key}.run: {named!r} is not a run of the runs sheet; expected 'system/run', "
            f"one of: {', '.join(f'{s}/{r}' for s, r in RUNS)}"
        )
if (
    REPORT_SETTINGS["fig4"]["run"]
    and REPORT_SETTINGS["fig4"]["run"].split("/")[0] not in TEST_SYSTEMS
):
    raise WorkflowError(
        f"config report.fig4.run: {REPORT_SETTINGS['fig4']['run']!r} is not a run of a held-out system of "
        f"the system split ({', '.join(TEST_SYSTEMS)})"
    )
UNKNOWN_FIG4_MODELS = sorted(set(FIG4_MODELS) - set(FIG4_AVAILABLE))
if UNKNOWN_FIG4_MODELS:
    raise WorkflowError(
        f"config report.fig4.models: {UNKNOWN_FIG4_MODELS} make no predictions; models: "
        f"{', '.join(dict.fromkeys(FIG4_AVAILABLE))}"
    )
# every model trained on a split, per split: the ABCC variants that use it, the neural baselines and the
# split's VAE (its curve sits in its folder)
TRAINING_CURVES = {
    split: {
        **{
            model: MODEL_FILES["curve"].format(split=split, model=model)
            for model in TRAINED_ABCC_MODELS
            if split in model_splits(config["models"], model)
        },
        **{
            model: MODEL_FILES["curve"].format(split=split, model=model)
            for model in NB_MODELS
        },
        "vae": VAE_DIR.format(split=split),
    }
    for split in SPLITS
}
# the same tables as evaluate.smk makes: Table 4 only when the config names ablation models
PAPER_TABLES = ["table2_random", "table3_system"] + (
    ["table4_ablations"] if config["evaluate"]["ablation_models"] else []
)
PAPER_FIGURES = [
    f"results/figures/{name}.{ext}"
    for name in (
        "fig1_operando",
        "fig2_data",
        "fig4_maps",
        "fig5_sei_pathway",
        *(f"training_curves_{split}" for split in SPLITS),
    )
    for ext in ("png", "pdf")
] + ["results/figures/render_illustration.png"]
PAPER_TABLE_FILES = [
    pattern.format(table=table)
    for table in PAPER_TABLES
    for pattern in [*rules.benchmark_table.output, "results/report/tables/{table}.html"]
]


rule paper_fig1:
    input:
        samples=SAMPLES_H5,
    output:
        png=report(
            "results/figures/fig1_operando.png",
            caption="../report/fig1_operando.rst",
            category="Data",
        ),
        pdf="results/figures/fig1_operando.pdf",
    log:
        f"{LOGS}/report/fig1_operando.log",
    benchmark:
        f"{BENCH}/report/fig1_operando.tsv"
    conda:
        "../../envs/opir.yaml"
    resources:
        mem_mb=1000,
        runtime=10,
    params:
        report=config_slice("report", "dpi", "fig1"),
    script:
        "../scripts/paper_fig1.py"


rule paper_fig4:
    input:
        samples=SAMPLES_H5,
        splits=SPLITS_JSON,
        predictions=[
            PREDICTIONS_H5.format(split=FIG4_SPLIT, model=model)
            for model in FIG4_MODELS
        ],
    output:
        png=report(
            "results/figures/fig4_maps.png",
            caption="../report/fig4_maps.rst",
            category="Benchmark",
        ),
        pdf="results/figures/fig4_maps.pdf",
    log:
        f"{LOGS}/report/fig4_maps.log",
    benchmark:
        f"{BENCH}/report/fig4_maps.tsv"
    conda:
        "../../envs/opir.yaml"
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        # report.fig4.models is FIG4_MODELS (and the inputs); the figure reads the rest of its section
        report={
            "dpi": REPORT_SETTINGS["dpi"],
            "fig4": config_slice("report.fig4", exclude=["models"]),
        },
        models=FIG4_MODELS,
        split=FIG4_SPLIT,
        labels={
            model: label
            for model, label in config["evaluate"]["labels"].items()
            if model in FIG4_MODELS
        },
    script:
        "../scripts/paper_fig4.py"


rule paper_fig5:
    input:
        pathway=rules.mcr_pathway.output.pathway,
        references=MCR_REFERENCES_H5,
    output:
        png=report(
            "results/figures/fig5_sei_pathway.png",
            caption="../report/fig5_sei_pathway.rst",
            category="MCR",
        ),
        pdf="results/figures/fig5_sei_pathway.pdf",
    log:
        f"{LOGS}/report/fig5_sei_pathway.log",
    benchmark:
        f"{BENCH}/report/fig5_sei_pathway.tsv"
    conda:
        "../../envs/opir.yaml"
    resources:
        mem_mb=1000,
        runtime=10,
    script:
        "../scripts/paper_fig5.py"


rule paper_training_curves:
    input:
        lambda wildcards: list(TRAINING_CURVES[wildcards.split].values()),
    output:
        png=report(
            "results/figures/training_curves_{split}.png",
            caption="../report/training_curves.rst",
            category="Training",
        ),
        pdf="results/figures/training_curves_{split}.pdf",
    log:
        f"{LOGS}/report/training_curves_{{split}}.log",
    benchmark:
        f"{BENCH}/report/training_curves_{{split}}.tsv"
    conda:
        "../../envs/opir.yaml"
    resources:
        mem_mb=1000,
        runtime=10,
    params:
        report={"dpi": REPORT_SETTINGS["dpi"]},
        names=lambda wildcards: list(TRAINING_CURVES[wildcards.split]),
        curves=lambda wildcards: [
            path if path.endswith(".csv") else f"{path}/training_curve.csv"
            for path in TRAINING_CURVES[wildcards.split].values()
        ],
    script:
        "../scripts/paper_training_curves.py"


rule paper_table:
    input:
        rules.benchmark_table.output.md,
    output:
        report(
            "results/report/tables/{table}.html",
            caption="../report/table.rst",
            category="Benchmark",
        ),
    log:
        f"{LOGS}/report/{{table}}.log",
    benchmark:
        f"{BENCH}/report/{{table}}.tsv"
    wildcard_constraints:
        table="|".join(BENCHMARK_TABLES),
    conda:
        "../../envs/opir.yaml"
    resources:
        mem_mb=500,
        runtime=5,
    script:
        "../scripts/paper_table.py"


# `snakemake paper_figures`: every figure and table of the paper, then `snakemake --report results/report.html`
rule paper_figures:
    input:
        PAPER_FIGURES + PAPER_TABLE_FILES,


FINAL_TARGETS.extend(PAPER_FIGURES + PAPER_TABLE_FILES)
