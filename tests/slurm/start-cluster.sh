#!/usr/bin/env bash
# Start a single-node SLURM cluster on localhost for tests/test_slurm.py: munged, slurmctld and slurmd, with fake
# GPUs declared through GRES so that jobs asking for `--gpus` are scheduled for real (and get CUDA_VISIBLE_DEVICES).
#
# Needs root, no systemd, and Debian's packages (the only thing CI installs for this test):
#   apt-get install -y --no-install-recommends slurmctld slurmd slurm-client munge
# Writes /etc/slurm/slurm.conf and gres.conf (the jobs' inner `srun` reads slurm.conf from there: the SLURM jobstep
# plugin strips SLURM_CONF from the job's environment) but refuses to replace a slurm.conf it did not write.
# Every daemon writes a PID file under $OPIR_SLURM_RUN; stop-cluster.sh stops exactly those PIDs.
#
# Environment: OPIR_SLURM_RUN (PID folder, default /run/opir-slurm), OPIR_FAKE_GPUS (default 2),
#              OPIR_SLURM_MEM_MB (memory the node declares, default max(real, 65536): see docs/slurm.md).
set -euo pipefail

RUN=${OPIR_SLURM_RUN:-/run/opir-slurm}
LOG=${OPIR_SLURM_LOG:-/var/log/slurm}
FAKE_GPUS=${OPIR_FAKE_GPUS:-2}
MARKER="# written by OpIR tests/slurm/start-cluster.sh"
HOST=$(hostname -s)

for exe in munged slurmctld slurmd sinfo sbatch; do
  command -v "$exe" >/dev/null || { echo "start-cluster: $exe not found (apt-get install slurmctld slurmd slurm-client munge)" >&2; exit 2; }
done
[ "$(id -u)" = 0 ] || { echo "start-cluster: must run as root (slurmd runs jobs as their owner)" >&2; exit 2; }
if [ -e /etc/slurm/slurm.conf ] && ! grep -qF "$MARKER" /etc/slurm/slurm.conf; then
  echo "start-cluster: /etc/slurm/slurm.conf exists and was not written by this script; refusing to replace it" >&2
  exit 2
fi
for pidfile in "$RUN/slurmctld.pid" "$RUN/slurmd.pid" "$RUN/munge/munged.pid"; do
  if [ -s "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then
    echo "start-cluster: $(basename "$pidfile" .pid) already runs (PID $(cat "$pidfile")); run stop-cluster.sh first" >&2
    exit 2
  fi
done

mkdir -p "$RUN/munge" "$LOG" /etc/slurm /var/spool/slurmctld /var/spool/slurmd /run/munge /var/log/munge /var/lib/munge
chown slurm:slurm "$LOG" /var/spool/slurmctld /var/spool/slurmd
chown munge:munge "$RUN/munge" /run/munge /var/log/munge /var/lib/munge
chmod 0755 /run/munge

# ---- munge: authentication between the SLURM commands and daemons --------------------------------------------
[ -s /etc/munge/munge.key ] || mungekey --create --keyfile=/etc/munge/munge.key
chown munge:munge /etc/munge/munge.key && chmod 0400 /etc/munge/munge.key
# A munged that already answers (the host's own) is used as it is, and stop-cluster.sh leaves it alone.
if ! munge -n </dev/null 2>/dev/null | unmunge >/dev/null 2>&1; then
  runuser -u munge -- /usr/sbin/munged --pid-file="$RUN/munge/munged.pid" \
    || { echo "start-cluster: munged failed" >&2; tail -n 20 /var/log/munge/munged.log >&2; exit 1; }
fi
for _ in $(seq 1 50); do munge -n </dev/null | unmunge >/dev/null 2>&1 && break; sleep 0.1; done
munge -n </dev/null | unmunge >/dev/null

# ---- slurm.conf ------------------------------------------------------------------------------------------------
# The node line comes from the hardware probe, so NodeName always matches `hostname -s`. Memory is declared larger
# than the machine (SlurmdParameters=config_overrides keeps the node usable): the workflow profile asks for what a
# real cluster should give each stage, and nothing enforces memory here (no cgroups), exactly like the fake GPUs.
PROBE=$(slurmd -C | head -n1)
REAL_MEM=$(sed -n 's/.*RealMemory=\([0-9]*\).*/\1/p' <<<"$PROBE")
MEM_MB=${OPIR_SLURM_MEM_MB:-$(( REAL_MEM > 65536 ? REAL_MEM : 65536 ))}
NODELINE="${PROBE% RealMemory=*} RealMemory=${MEM_MB}"
GRES_TYPES=""; GRES_NODE=""
if [ "$FAKE_GPUS" -gt 0 ]; then GRES_TYPES="GresTypes=gpu"; GRES_NODE="Gres=gpu:${FAKE_GPUS}"; fi
cat > /etc/slurm/slurm.conf <<CONF
$MARKER
ClusterName=opirtest
SlurmctldHost=${HOST}(127.0.0.1)
AuthType=auth/munge
CredType=cred/munge
SlurmUser=slurm
SlurmctldPort=6817
SlurmdPort=6818
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldPidFile=${RUN}/slurmctld.pid
SlurmdPidFile=${RUN}/slurmd.pid
SlurmctldLogFile=${LOG}/slurmctld.log
SlurmdLogFile=${LOG}/slurmd.log
SlurmdParameters=config_overrides
MpiDefault=none
SwitchType=switch/none
# no cgroups in a container: process tracking through /proc; task/affinity so the jobs' srun --cpu-bind works
ProctrackType=proctrack/linuxproc
TaskPlugin=task/affinity
JobAcctGatherType=jobacct_gather/none
# no slurmdbd, so no sacct: the test runs the profile with --slurm-status-command squeue (jobs stay 10 min in squeue)
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MinJobAge=600
ReturnToService=2
# an impossible request is refused at sbatch time (a clear error) instead of pending forever
EnforcePartLimits=ALL
SchedulerType=sched/backfill
SchedulerParameters=sched_interval=2
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
${GRES_TYPES}
InactiveLimit=0
KillWait=5
Waittime=0
${NODELINE} NodeAddr=127.0.0.1 ${GRES_NODE} State=UNKNOWN
# the same partition names as profiles/slurm/partitions.yaml: CPU stages go to cpu, GPU stages to gpu
PartitionName=cpu Nodes=ALL Default=YES MaxTime=INFINITE State=UP
PartitionName=gpu Nodes=ALL Default=NO MaxTime=INFINITE State=UP
CONF

# gres/gpu drops GPUs that have no device file, so each fake GPU is a character device (the numbers of /dev/null;
# nothing opens them without cgroups).
if [ "$FAKE_GPUS" -gt 0 ]; then
  mkdir -p /var/lib/slurm/fakegpu
  for i in $(seq 0 $((FAKE_GPUS - 1))); do
    [ -e "/var/lib/slurm/fakegpu/gpu$i" ] || mknod -m 666 "/var/lib/slurm/fakegpu/gpu$i" c 1 3
  done
  printf '%s\n%s\n' "$MARKER" "NodeName=${HOST} Name=gpu File=/var/lib/slurm/fakegpu/gpu[0-$((FAKE_GPUS - 1))]" \
    > /etc/slurm/gres.conf
else
  echo "$MARKER" > /etc/slurm/gres.conf
fi

# ---- daemons (each forks and writes its PID file) ------------------------------------------------------------
/usr/sbin/slurmctld
/usr/sbin/slurmd
state=""
for _ in $(seq 1 150); do
  state=$(sinfo -h -N -o '%T' 2>/dev/null | head -n1 || true)
  [ "$state" = idle ] && break
  sleep 0.2
done
if [ "$state" != idle ]; then
  echo "start-cluster: node is '$state', not idle" >&2
  scontrol show node >&2 || true
  tail -n 30 "$LOG/slurmctld.log" "$LOG/slurmd.log" >&2 || true
  exit 1
fi
sinfo
