# systems sheet -> results/dataset/electrodes.h5: the electrode descriptors of every system (opir.preprocess.dataset).
from opir.core.logs import from_snakemake
from opir.preprocess.dataset import write_electrode_descriptors

log = from_snakemake(snakemake)
write_electrode_descriptors(snakemake.params.systems, snakemake.output[0], rule=snakemake.rule)
