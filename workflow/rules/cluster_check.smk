# The cluster pre-flight check (docs/slurm.md): one job with exactly the allocation of a training job (threads,
# GPUs when compute.gpu_jobs) that records what it was given and fails when a requested GPU is missing.
# Logic: src/opir/core/compute.py. GPU rules (train, predict) request GPUs the same way: gpu=gpus_requested(...).
from opir.core.compute import gpus_requested


rule device_report:
    output:
        "results/cluster/device_report.json",
    log:
        f"{LOGS}/cluster/device_report.log",
    benchmark:
        f"{BENCH}/cluster/device_report.tsv"
    conda:
        "../../envs/opir.yaml"
    threads: config["compute"]["threads"]
    resources:
        gpu=gpus_requested(config["compute"]),
        mem_mb=2000,
        runtime=10,
    params:
        compute=config["compute"],
    script:
        "../scripts/device_report.py"


FINAL_TARGETS.append("results/cluster/device_report.json")
