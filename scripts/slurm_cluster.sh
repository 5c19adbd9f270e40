#!/usr/bin/env bash
# A one-node Slurm cluster (Debian's slurm-wlm + munge) in DIR, for the shard tests and for trying
# docs/scale.md's array script on one machine.
#   scripts/slurm_cluster.sh start DIR   then: export SLURM_CONF=DIR/slurm.conf; sbatch ...
#   scripts/slurm_cluster.sh stop DIR
# Needs root (slurmd starts jobs as their users). Everything it writes stays in DIR.
set -euo pipefail
action=${1:?start or stop}
dir=$(realpath -m "${2:?directory}")

stop() {
  for daemon in slurmd slurmctld munged; do
    if [[ -f "$dir/$daemon.pid" ]]; then
      kill "$(cat "$dir/$daemon.pid")" 2>/dev/null || true
      rm -f "$dir/$daemon.pid"
    fi
  done
}

if [[ $action == stop ]]; then
  stop
  exit 0
fi

for tool in munged slurmctld slurmd sbatch; do
  command -v "$tool" >/dev/null || { echo "slurm_cluster: $tool not found (apt-get install slurm-wlm munge)" >&2; exit 3; }
done
[[ $(id -u) == 0 ]] || { echo "slurm_cluster: needs root (slurmd runs jobs as their users)" >&2; exit 3; }

mkdir -p "$dir"/{state,spool,log}
stop
dd if=/dev/urandom of="$dir/munge.key" bs=1024 count=1 status=none
chmod 0400 "$dir/munge.key"
munged --force --key-file="$dir/munge.key" --socket="$dir/munge.socket" \
  --pid-file="$dir/munged.pid" --log-file="$dir/log/munged.log" --seed-file="$dir/munge.seed"

node=$(slurmd -C | head -1)  # this machine's CPUs and memory, as slurmd sees them
# Ports of its own: a cluster left over from an interrupted run, or a real one, keeps the defaults.
read -r controller_port node_port < <(python3 -c '
import socket
sockets = [socket.socket() for _ in range(2)]
for s in sockets:
    s.bind(("127.0.0.1", 0))
print(*(s.getsockname()[1] for s in sockets))')
cat >"$dir/slurm.conf" <<EOF
ClusterName=pytest-vla
SlurmctldHost=$(hostname -s)
SlurmctldPort=$controller_port
SlurmdPort=$node_port
SlurmUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$dir/munge.socket
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd.pid
SlurmctldLogFile=$dir/log/slurmctld.log
SlurmdLogFile=$dir/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
MpiDefault=none
ReturnToService=2
$node State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP OverSubscribe=YES
EOF

export SLURM_CONF="$dir/slurm.conf"
slurmctld -f "$SLURM_CONF"
slurmd -f "$SLURM_CONF"
for _ in $(seq 60); do
  if sinfo --noheader --states=idle --format=%n 2>/dev/null | grep -q .; then
    echo "slurm_cluster: up; export SLURM_CONF=$SLURM_CONF"
    exit 0
  fi
  sleep 1
done
echo "slurm_cluster: the node did not come up; see $dir/log" >&2
exit 4
