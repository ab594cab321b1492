# 3D structure of every molecule and ion of the molecule sheet, one SDF each (opir.embed.molecules.build_geometries).
from opir.core.logs import from_snakemake
from opir.embed.molecules import EmbedSettings, build_geometries

log = from_snakemake(snakemake)
build_geometries(snakemake.input.molecules, snakemake.output[0], EmbedSettings(**snakemake.params.embed))
