# Source this file (bash): it starts a throwaway single-node Slurm (munged, slurmctld, slurmd;
# this host as the only node, state and spool in a temporary folder) for the Slurm tests, and
# exports
#   MFM_TEST_SLURM=1     the tests that need slurmctld run (they skip, saying why, without it)
#   MFM_SLURM_DIR        the temporary folder (state, spool, logs, pid files)
# and defines slurm_stop, which stops the daemons and removes the folder. The caller sets the
# trap (together with any other stop function):
#   . .ci/slurm-start.sh && trap slurm_stop EXIT
# Installs slurm-wlm and munge first if they are missing. No slurmdbd: accounting is off, so
# sacct says "Slurm accounting storage is disabled" and job states come from squeue /
# scontrol, as on many small clusters (the reconciler handles both).

if ! command -v slurmctld >/dev/null 2>&1 || ! command -v munged >/dev/null 2>&1; then
  _sudo=""; [ "$(id -u)" -ne 0 ] && _sudo="sudo"
  $_sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $_sudo apt-get install -y -qq \
    slurm-wlm munge >/dev/null
fi

MFM_SLURM_DIR="$(mktemp -d /tmp/mfm-slurm.XXXXXX)"
export MFM_SLURM_DIR
mkdir -p "$MFM_SLURM_DIR/state" "$MFM_SLURM_DIR/spool" "$MFM_SLURM_DIR/log"

slurm_stop() {
  for pidfile in "$MFM_SLURM_DIR/d.pid" "$MFM_SLURM_DIR/ctld.pid"; do
    if [ -f "$pidfile" ]; then kill "$(cat "$pidfile")" 2>/dev/null || true; fi
  done
  # slurmd's job steps (slurmstepd) end with their jobs; give the daemons a moment
  for _ in 1 2 3 4 5 6 7 8 9 10; do
    pgrep -x slurmctld >/dev/null || pgrep -x slurmd >/dev/null || break
    sleep 0.5
  done
  [ -n "${MFM_SLURM_DIR:-}" ] && rm -rf "$MFM_SLURM_DIR"
}

_host="$(hostname -s)"
_cpus="$(nproc)"
_mem="$(awk '/MemTotal/ {print int($2 / 1024 * 0.8)}' /proc/meminfo)"
mkdir -p /etc/slurm
cat > /etc/slurm/slurm.conf <<EOF
ClusterName=mfmtest
SlurmctldHost=$_host
AuthType=auth/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
SlurmUser=root
SlurmdUser=root
StateSaveLocation=$MFM_SLURM_DIR/state
SlurmdSpoolDir=$MFM_SLURM_DIR/spool
SlurmctldLogFile=$MFM_SLURM_DIR/log/ctld.log
SlurmdLogFile=$MFM_SLURM_DIR/log/d.log
SlurmctldPidFile=$MFM_SLURM_DIR/ctld.pid
SlurmdPidFile=$MFM_SLURM_DIR/d.pid
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
MinJobAge=600
KillWait=5
InactiveLimit=0

NodeName=$_host CPUs=$_cpus RealMemory=$_mem State=UNKNOWN
PartitionName=debug Nodes=$_host Default=YES MaxTime=INFINITE State=UP
EOF

# munge: the key exists after install; its folders must belong to the munge user
mkdir -p /run/munge /var/log/munge
chown -R munge: /etc/munge /var/log/munge /run/munge 2>/dev/null || true
if ! pgrep -x munged >/dev/null; then
  su -s /bin/sh munge -c munged || { echo "munged did not start" >&2; slurm_stop; return 1 2>/dev/null || exit 1; }
fi
slurmctld || { cat "$MFM_SLURM_DIR/log/ctld.log" >&2; slurm_stop; return 1 2>/dev/null || exit 1; }
slurmd || { cat "$MFM_SLURM_DIR/log/d.log" >&2; slurm_stop; return 1 2>/dev/null || exit 1; }

# wait (bounded) until the node is idle and takes jobs
for _ in $(seq 1 60); do
  if sinfo -h -o '%t' 2>/dev/null | grep -qE '^(idle|mix|alloc)'; then break; fi
  sleep 0.5
done
if ! sinfo -h -o '%t' 2>/dev/null | grep -qE '^(idle|mix|alloc)'; then
  echo "slurm: the node did not come up:" >&2; sinfo >&2 || true
  tail -20 "$MFM_SLURM_DIR/log/ctld.log" >&2 || true
  slurm_stop; return 1 2>/dev/null || exit 1
fi
export MFM_TEST_SLURM=1
