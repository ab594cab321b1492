# Mixture embeddings of every system for one variant (opir.embed.mixture.embed_systems; docs/formats.md).
from opir.core.logs import from_snakemake
from opir.embed.mixture import embed_systems
from opir.embed.molecules import EmbedSettings

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
