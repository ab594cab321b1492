# Mixture embeddings of every system for one variant (opir.embed.embed_systems; docs/formats.md).
from opir.embed import EmbedSettings, embed_systems
from opir.logs import from_snakemake

log = from_snakemake(snakemake)
embed_systems(
    snakemake.input.systems,
    snakemake.input.molecules,
    snakemake.output[0],
    variant=snakemake.wildcards.variant,
    settings=EmbedSettings(**snakemake.params.embed),
    geometry_dir=snakemake.input.geometries[0] if snakemake.input.geometries else None,
    rule=snakemake.rule,
    config_slice=snakemake.params.embed,
)
