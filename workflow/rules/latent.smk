# Rules of the latent stage: a VAE per split (a local pretrained AutoencoderKL, or a small one trained on the
# split's training images) and the cached latents of every image of a stream: waveform (one per row) and
# variation (one per sample, the residual stream ABCC generates) (opir.latent; docs/formats.md "Models, latents
# and checkpoints"). The VAE's checkpoints (results/checkpoints/{split}/vae/) are no output, so a killed job
# resumes.
from opir.core.compute import gpus_requested

LATENT_STREAMS = ["waveform", "variation"]
VAE_EXTRA_IMAGES = (
    {"variation": "results/render/variation.h5"}
    if config["models"]["vae"]["train_on_variation"]
    and not config["models"]["vae"]["pretrained_dir"]
    else {}
)


rule vae:
    input:
        **VAE_EXTRA_IMAGES,
        waveform="results/render/waveform.h5",
        samples="results/dataset/samples.h5",
        splits="results/dataset/splits.json",
    output:
        directory("results/latent/{split}/vae"),
    log:
        f"{LOGS}/latent/{{split}}/vae.log",
    benchmark:
        f"{BENCH}/latent/{{split}}/vae.tsv"
    conda:
        "../../envs/opir.yaml"
    threads: config["compute"]["threads"]
    resources:
        gpu=gpus_requested(config["compute"]),
        mem_mb=4000,
        runtime=120,
    params:
        vae=config["models"]["vae"],
        device=config["compute"]["device"],
        checkpoint_dir=lambda wildcards: f"results/checkpoints/{wildcards.split}/vae",
    script:
        "../scripts/vae.py"


rule latent:
    input:
        images="results/render/{stream}.h5",
        vae="results/latent/{split}/vae",
    output:
        "results/latent/{split}/{stream}.h5",
    log:
        f"{LOGS}/latent/{{split}}/{{stream}}.log",
    benchmark:
        f"{BENCH}/latent/{{split}}/{{stream}}.tsv"
    wildcard_constraints:
        stream="|".join(LATENT_STREAMS),
    conda:
        "../../envs/opir.yaml"
    threads: config["compute"]["threads"]
    resources:
        gpu=gpus_requested(config["compute"]),
        mem_mb=4000,
        runtime=60,
    params:
        batch_size=config["models"]["vae"]["encode_batch_size"],
        device=config["compute"]["device"],
    script:
        "../scripts/latent.py"
