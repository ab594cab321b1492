# 3D structure of every molecule and ion of the molecule sheet, one SDF each (opir.embed.build_geometries).
from opir.embed import EmbedSettings, build_geometries
from opir.logs import from_snakemake

log = from_snakemake(snakemake)
build_geometries(snakemake.input.molecules, snakemake.output[0], EmbedSettings(**snakemake.params.embed))
