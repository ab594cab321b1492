# Rules of the latent stage: a VAE per split (a local pretrained AutoencoderKL, or a small one trained on the
# split's training images) and the cached latents of every image of a stream: waveform (one per row) and
# variation (one per sample, the residual stream ABCC generates) (opir.latent; docs/formats.md "Models, latents
# and checkpoints"). The VAE's checkpoints (results/checkpoints/{split}/vae/) are no output, so a killed job
# resumes.
from opir.core.compute import gpus_requested

LATENT_STREAMS = ["waveform", "variation"]
VAE_SETTINGS = config["models"]["vae"]
VAE_EXTRA_IMAGES = (
    {"variation": IMAGES_H5.format(stream="variation")}
    if VAE_SETTINGS["train_on_variation"] and not VAE_SETTINGS["pretrained_dir"]
    else {}
)
# what the job reads: a pretrained VAE is copied as it is; the small one is built and trained with every other key
# (train_on_variation picks the images, which are its inputs)
VAE_PARAMS = (
    config_slice("models.vae", "pretrained_dir")
    if VAE_SETTINGS["pretrained_dir"]
    else config_slice("models.vae", exclude=["train_on_variation"])
)


rule vae:
    input:
        **VAE_EXTRA_IMAGES,
        waveform=IMAGES_H5.format(stream="waveform"),
        samples=SAMPLES_H5,
        splits=SPLITS_JSON,
    output:
        directory(VAE_DIR),
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
        vae=VAE_PARAMS,
        device=config["compute"]["device"],
        checkpoint_dir=lambda wildcards: f"results/checkpoints/{wildcards.split}/vae",
    script:
        "../scripts/vae.py"


rule latent:
    input:
        images=IMAGES_H5,
        vae=VAE_DIR,
    output:
        LATENTS_H5,
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
        batch_size=VAE_SETTINGS["encode_batch_size"],
        device=config["compute"]["device"],
    script:
        "../scripts/latent.py"
