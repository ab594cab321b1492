# Rules of the embed stage: electrolyte mixture embeddings (opir.embed; docs/method.md "Electrolyte embedding").
from pathlib import Path

from opir.core.config import resolve_path

# the sheets as common.smk resolved them (working directory first, then the workflow's folder)
EMBED_SHEETS = {
    name: str(
        resolve_path(config["sheets"][name], fallback_root=Path(workflow.basedir))
    )
    for name in ("systems", "molecules")
}
# what each step reads from the `embed` section, so a change reruns only the steps it affects
EMBED_GEOMETRY_KEYS = ["conformer_seed", "mmff_max_iters"]
EMBED_VARIANT_KEYS = {
    "3d": EMBED_GEOMETRY_KEYS
    + ["unimol_weight_dir", "unimol_batch_size", "unimol_seed", "projection_seed"],
    "smiles": ["morgan_radius"],
}


rule embed_geometries:
    input:
        molecules=EMBED_SHEETS["molecules"],
    output:
        directory("results/embed/geometries"),
    log:
        f"{LOGS}/embed/geometries.log",
    benchmark:
        f"{BENCH}/embed/geometries.tsv"
    conda:
        "../../envs/opir.yaml"
    resources:
        mem_mb=1000,
        runtime=10,
    params:
        embed=config_slice("embed", *EMBED_GEOMETRY_KEYS),
    script:
        "../scripts/embed_geometries.py"


rule embed_mixture:
    input:
        systems=EMBED_SHEETS["systems"],
        molecules=EMBED_SHEETS["molecules"],
        geometries=lambda wildcards: (
            [rules.embed_geometries.output[0]] if wildcards.variant == "3d" else []
        ),
        # the weight files themselves, so new weights rerun the 3d embeddings (none with the fallback)
        unimol_weights=lambda wildcards: (
            [
                f"{config['embed']['unimol_weight_dir']}/{name}"
                for name in ("mol_pre_all_h_220816.pt", "mol.dict.txt")
            ]
            if wildcards.variant == "3d" and config["embed"]["unimol_weight_dir"]
            else []
        ),
    output:
        MIXTURE_H5,
    log:
        f"{LOGS}/embed/mixture_{{variant}}.log",
    benchmark:
        f"{BENCH}/embed/mixture_{{variant}}.tsv"
    wildcard_constraints:
        variant="|".join(EMBED_VARIANTS),
    conda:
        "../../envs/opir.yaml"
    resources:
        mem_mb=4000,
        runtime=30,
    params:
        embed=lambda wildcards: config_slice(
            "embed", *EMBED_VARIANT_KEYS[wildcards.variant]
        ),
    script:
        "../scripts/embed_mixture.py"


FINAL_TARGETS.extend(MIXTURE_EMBEDDING_FILES.values())
