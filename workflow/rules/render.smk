# Rules of the render stage: waveform images (Alg. 1), Chemical Flow images (Alg. 2) and variation images of
# results/dataset/samples.h5 (opir.render; docs/method.md "Rendering", docs/formats.md "Rendered images").
RENDER_STREAMS = ["waveform", "chemical_flow", "variation"]
# keys every stream reads: the curve style; each stream adds its own sub-section, so changing the Chemical Flow
# settings reruns only the Chemical Flow images
RENDER_STYLE_KEYS = [
    "image_size",
    "margin",
    "clip",
    "centre",
    "thickness_px",
    "thickness_amplitude_gain",
    "contrast_gain",
]
# the config slice each job reads: the image files are written in chunks and compressed, the figure draws one
# sample of each stream
RENDER_PARAMS = {
    stream: config_slice("render", *RENDER_STYLE_KEYS, *extra)
    for stream, extra in {
        "waveform": ["chunk_size", "compression_level"],
        "chemical_flow": ["chunk_size", "compression_level", "chemical_flow"],
        "variation": ["chunk_size", "compression_level", "variation"],
        "figure": ["chemical_flow", "variation", "figure_sample"],
    }.items()
}


rule render_images:
    input:
        samples=SAMPLES_H5,
    output:
        IMAGES_H5,
    log:
        f"{LOGS}/render/{{stream}}.log",
    benchmark:
        f"{BENCH}/render/{{stream}}.tsv"
    wildcard_constraints:
        stream="|".join(RENDER_STREAMS),
    conda:
        "../../envs/opir.yaml"
    threads: 1
    resources:
        mem_mb=1500,
        runtime=60,
    params:
        render=lambda wildcards: RENDER_PARAMS[wildcards.stream],
    script:
        "../scripts/render_images.py"


rule render_figure:
    input:
        samples=SAMPLES_H5,
    output:
        png=report(
            "results/figures/render_illustration.png",
            caption="../report/render_illustration.rst",
            category="Rendering",
        ),
        pdf="results/figures/render_illustration.pdf",
    log:
        f"{LOGS}/render/figure.log",
    benchmark:
        f"{BENCH}/render/figure.tsv"
    conda:
        "../../envs/opir.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    params:
        render=RENDER_PARAMS["figure"],
    script:
        "../scripts/render_figure.py"


FINAL_TARGETS.extend(IMAGES_H5.format(stream=stream) for stream in RENDER_STREAMS)
FINAL_TARGETS.append("results/figures/render_illustration.pdf")
