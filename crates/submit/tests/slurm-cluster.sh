#!/usr/bin/env bash
# A single-node Slurm cluster for the tests, run as root without systemd (Debian's
# slurmctld, slurmd, slurm-client and munge packages).
#
#   slurm-cluster.sh start DIR   writes DIR/slurm.conf, starts munged, slurmctld and slurmd,
#                                waits until the node is idle and prints SLURM_CONF=DIR/slurm.conf
#   slurm-cluster.sh stop DIR    `scontrol shutdown`, then ends the processes it started
#
# Everything the daemons write (state, spool, logs, munge socket, job completion file) stays
# in DIR; the PIDs started are listed in DIR/pids.
set -euo pipefail

cmd="${1:?usage: slurm-cluster.sh start|stop DIR}"
dir="${2:?usage: slurm-cluster.sh start|stop DIR}"
dir="$(realpath -m "$dir")"
ctld_port="${FER_SLURMCTLD_PORT:-6817}"
slurmd_port="${FER_SLURMD_PORT:-6818}"

write_conf() {
    local host node
    host="$(hostname -s)"
    node="$(slurmd -C | head -1)"
    cat > "$dir/slurm.conf" <<CONF
ClusterName=ferbayes-test
SlurmctldHost=$host
SlurmctldPort=$ctld_port
SlurmdPort=$slurmd_port
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$dir/munge/munge.socket
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd.pid
SlurmctldLogFile=$dir/slurmctld.log
SlurmdLogFile=$dir/slurmd.log
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/filetxt
JobCompLoc=$dir/jobcomp.txt
SchedulerParameters=batch_sched_delay=0
DependencyParameters=kill_invalid_depend
MinJobAge=3600
KillWait=2
ReturnToService=2
$node State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
CONF
}

start() {
    mkdir -p "$dir/state" "$dir/spool" "$dir/munge"
    # munged wants its socket folder reachable by everyone (and owned by it).
    chmod 0755 "$dir" "$dir/munge"
    chown munge:munge "$dir/munge"
    write_conf
    : > "$dir/pids"
    setpriv --reuid=munge --regid=munge --init-groups munged --foreground \
        --socket="$dir/munge/munge.socket" --pid-file="$dir/munge/munged.pid" \
        --log-file="$dir/munge/munged.log" --seed-file="$dir/munge/munged.seed" \
        > "$dir/munged.out" 2>&1 &
    echo "$!" >> "$dir/pids"
    for _ in $(seq 100); do [ -S "$dir/munge/munge.socket" ] && break; sleep 0.05; done
    if [ ! -S "$dir/munge/munge.socket" ]; then
        echo "munged did not start:" >&2
        cat "$dir/munged.out" >&2
        stop
        return 1
    fi
    export SLURM_CONF="$dir/slurm.conf"
    slurmctld -D -f "$SLURM_CONF" > "$dir/slurmctld.out" 2>&1 &
    echo "$!" >> "$dir/pids"
    slurmd -D -f "$SLURM_CONF" > "$dir/slurmd.out" 2>&1 &
    echo "$!" >> "$dir/pids"
    local deadline=$((SECONDS + 30))
    while [ "$SECONDS" -lt "$deadline" ]; do
        if timeout 5 sinfo -h -o '%T' 2>/dev/null | grep -qx idle; then
            echo "SLURM_CONF=$SLURM_CONF"
            return 0
        fi
        sleep 0.1
    done
    echo "the Slurm node did not become idle within 30 s; logs in $dir" >&2
    tail -n 20 "$dir"/*.log "$dir"/*.out >&2 || true
    stop
    return 1
}

# Whether a PID runs (a zombie whose parent has gone does not).
alive() {
    [ -r "/proc/$1/status" ] && ! grep -q '^State:[[:space:]]*Z' "/proc/$1/status" 2>/dev/null
}

stop() {
    [ -f "$dir/pids" ] || return 0
    SLURM_CONF="$dir/slurm.conf" scontrol shutdown >/dev/null 2>&1 || true
    # munged last: the Slurm daemons need it to shut down cleanly.
    mapfile -t pids < "$dir/pids"
    for i in 2 1 0; do
        pid="${pids[$i]:-}"
        [ -n "$pid" ] || continue
        for _ in $(seq 50); do alive "$pid" || break; sleep 0.1; done
        kill "$pid" 2>/dev/null || true
        for _ in $(seq 50); do alive "$pid" || break; sleep 0.1; done
        kill -KILL "$pid" 2>/dev/null || true
    done
    rm -f "$dir/pids"
}

case "$cmd" in
    start) start ;;
    stop) stop ;;
    *) echo "usage: slurm-cluster.sh start|stop DIR" >&2; exit 2 ;;
esac
