#!/usr/bin/env bash
# Stop the daemons that start-cluster.sh started, by the PIDs in their PID files (never by name).
set -uo pipefail
RUN=${OPIR_SLURM_RUN:-/run/opir-slurm}

stop_pid() {  # name pidfile
  local pid
  [ -s "$2" ] || { echo "$1: no PID file"; return 0; }
  pid=$(cat "$2")
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid"
    for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$pid" 2>/dev/null; then echo "$1 ($pid) ignored TERM, sending KILL"; kill -KILL "$pid"; fi
    echo "$1 ($pid) stopped"
  else
    echo "$1 ($pid) was not running"
  fi
  rm -f "$2"
}

# Cancel what is still queued or running first (this also ends the jobs' slurmstepd); only while slurmctld is up,
# because scancel against a dead controller retries for about 10 s.
if [ -s "$RUN/slurmctld.pid" ] && kill -0 "$(cat "$RUN/slurmctld.pid")" 2>/dev/null; then
  timeout 10 scancel --user="$(id -un)" 2>/dev/null || true
fi
stop_pid slurmd "$RUN/slurmd.pid"
stop_pid slurmctld "$RUN/slurmctld.pid"
stop_pid munged "$RUN/munge/munged.pid"

# Remove the configuration start-cluster.sh wrote (only its own, recognised by its marker). A slurm.conf left behind
# makes every later `scontrol` wait ~10 s for a controller that is gone, and the SLURM executor plugin runs
# `scontrol show config` each time snakemake starts: every snakemake command on this machine would start 9 s slower.
MARKER="# written by OpIR tests/slurm/start-cluster.sh"
if [ -e /etc/slurm/slurm.conf ] && grep -qF "$MARKER" /etc/slurm/slurm.conf; then
  rm -f /etc/slurm/slurm.conf
  if [ -e /etc/slurm/gres.conf ] && grep -qF "$MARKER" /etc/slurm/gres.conf; then rm -f /etc/slurm/gres.conf; fi
  echo "removed the test cluster's /etc/slurm/slurm.conf"
fi
