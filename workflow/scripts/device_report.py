# The cluster pre-flight check: what this job was given and which device it uses
# (opir.core.compute.write_device_report).
from opir.core.compute import write_device_report
from opir.core.logs import from_snakemake

log = from_snakemake(snakemake)
write_device_report(snakemake.output[0], snakemake.params.compute, snakemake.threads)
