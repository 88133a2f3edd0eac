#!/usr/bin/env bash
# A real one-node Slurm on this machine for the slurm executor's tests.
#
# Installs Debian's slurm-wlm, slurmdbd, munge, mariadb-server and runc where missing, writes
# a one-node cluster for localhost (eight fake GPUs as gres, so that GPU requests are
# scheduled and CUDA_VISIBLE_DEVICES is set per job as on a GPU node), and starts munged,
# mariadbd, slurmdbd (sacct needs accounting), slurmctld and slurmd, all as root with their
# state under one directory. Accounting has an account `speedrun` and a QOS `speedrun` for
# root, enforced, so a wrong account or QOS is refused as on a real cluster. oci.conf points
# `--container` at runc.
#
# Idempotent: a cluster that already answers is left as it is. It never fails the CI run:
# when something cannot be done it says why and exits 0, and the Slurm tests then skip with
# that reason.
#
#   bash .ci/slurm.sh          set up and start (or check) the cluster
#   bash .ci/slurm.sh stop     stop the daemons this script started
#
# Environment: SPEEDRUN_SLURM_ROOT (state, default /tmp/speedrun-slurm), SPEEDRUN_SLURM_GPUS
# (fake GPUs, default 8).
set -u

ROOT=${SPEEDRUN_SLURM_ROOT:-/tmp/speedrun-slurm}
GPUS=${SPEEDRUN_SLURM_GPUS:-8}
ETC=/etc/slurm
DB_PORT=3307
T0=$SECONDS

say() { echo "[slurm] $*"; }
give_up() { say "SKIPPING slurm setup: $*"; say "the slurm tests will be skipped"; exit 0; }
elapsed() { echo "$((SECONDS - T0))s"; }

cluster_up() {
    command -v sinfo >/dev/null 2>&1 || return 1
    timeout 10 scontrol ping 2>/dev/null | grep -q UP || return 1
    timeout 10 sinfo -h -o %T 2>/dev/null | grep -Eq '^(idle|mixed|allocated)' || return 1
    timeout 10 sacct -n -X -S now-1minutes >/dev/null 2>&1
}

stop() {
    for name in slurmd slurmctld slurmdbd mariadbd munged; do
        pidfile="$ROOT/run/$name.pid"
        [ -f "$pidfile" ] || continue
        pid=$(cat "$pidfile")
        if kill "$pid" 2>/dev/null; then
            for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
            kill -9 "$pid" 2>/dev/null
            say "stopped $name ($pid)"
        fi
        rm -f "$pidfile"
    done
}

if [ "${1:-}" = stop ]; then stop; exit 0; fi

if cluster_up; then
    say "a Slurm cluster already answers (scontrol ping, sinfo, sacct); using it"
    exit 0
fi

[ "$(id -u)" = 0 ] || give_up "no Slurm cluster answers and this is not root, so none can be set up"

PACKAGES="slurm-wlm slurmdbd munge mariadb-server runc"
missing=""
for bin in slurmctld slurmd slurmdbd munged mariadbd runc; do command -v $bin >/dev/null 2>&1 || missing=yes; done
if [ -n "$missing" ]; then
    say "installing $PACKAGES with apt"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null 2>&1 || give_up "apt-get update failed"
    # policy-rc.d keeps the packages' own services from starting: this script starts its own.
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
    apt-get install -y -qq --no-install-recommends $PACKAGES >/dev/null 2>&1
    status=$?
    rm -f /usr/sbin/policy-rc.d
    [ $status = 0 ] || give_up "apt-get install $PACKAGES failed"
    say "installed ($(elapsed))"
fi

# A fresh cluster every time it is started: job ids restart at 1, so an old accounting
# database would answer sacct with the states of other jobs under the same ids.
stop
rm -rf "$ROOT"
mkdir -p "$ROOT"/{run,log,state,spool,mysql,dev,oci,munge} "$ETC"
chmod 755 "$ROOT"
HOST=$(hostname -s)
CPUS=$(nproc)
MEM_MB=$(awk '/MemTotal/ {print int($2 / 1024 * 0.9)}' /proc/meminfo)
# Fake GPUs: character devices like /dev/null, one per GPU, so that Slurm hands out device
# indices per job (CUDA_VISIBLE_DEVICES) exactly as it does for /dev/nvidia*.
for i in $(seq 0 $((GPUS - 1))); do mknod "$ROOT/dev/gpu$i" c 1 3 || give_up "mknod failed"; done

# -- munge ---------------------------------------------------------------------------------
if [ ! -s /etc/munge/munge.key ]; then
    mkdir -p /etc/munge
    dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none
fi
chown munge:munge /etc/munge/munge.key 2>/dev/null; chmod 400 /etc/munge/munge.key
mkdir -p /run/munge /var/lib/munge /var/log/munge
chown munge:munge /run/munge /var/lib/munge /var/log/munge "$ROOT/munge" 2>/dev/null
runuser -u munge -- munged --pid-file="$ROOT/munge/munged.pid" --log-file="$ROOT/munge/munged.log" \
    || give_up "munged did not start: $(tail -2 "$ROOT/munge/munged.log" 2>/dev/null | tr '\n' ' ')"
cp "$ROOT/munge/munged.pid" "$ROOT/run/munged.pid"
munge -n | unmunge >/dev/null 2>&1 || give_up "munge does not round-trip a credential"

# -- mariadb for slurmdbd (sacct) ----------------------------------------------------------
mariadb-install-db --user=root --datadir="$ROOT/mysql" --auth-root-authentication-method=normal \
    >"$ROOT/log/mariadb-install.log" 2>&1 || give_up "mariadb-install-db failed (see $ROOT/log/mariadb-install.log)"
setsid nohup mariadbd --user=root --datadir="$ROOT/mysql" --bind-address=127.0.0.1 --port=$DB_PORT \
    --socket="$ROOT/run/mysql.sock" --pid-file="$ROOT/run/mariadbd.pid" --log-error="$ROOT/log/mariadb.log" \
    --innodb-buffer-pool-size=64M >/dev/null 2>&1 </dev/null &
for _ in $(seq 1 100); do
    mariadb --socket="$ROOT/run/mysql.sock" -uroot -e 'select 1' >/dev/null 2>&1 && break
    sleep 0.2
done
mariadb --socket="$ROOT/run/mysql.sock" -uroot -e "
    CREATE USER IF NOT EXISTS 'slurm'@'127.0.0.1' IDENTIFIED BY 'slurm';
    CREATE USER IF NOT EXISTS 'slurm'@'localhost' IDENTIFIED BY 'slurm';
    GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1';
    GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost';" || give_up "mariadb did not answer"

# -- configuration ---------------------------------------------------------------------------
cat >"$ROOT/slurm.conf" <<EOF
# One-node Slurm for the speedrun tests (written by .ci/slurm.sh).
ClusterName=speedrun
SlurmctldHost=$HOST(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
StateSaveLocation=$ROOT/state
SlurmdSpoolDir=$ROOT/spool/%n
SlurmctldPidFile=$ROOT/run/slurmctld.pid
SlurmdPidFile=$ROOT/run/slurmd.pid
SlurmctldLogFile=$ROOT/log/slurmctld.log
SlurmdLogFile=$ROOT/log/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
ProctrackType=proctrack/linuxproc
TaskPlugin=task/affinity
MpiDefault=none
ReturnToService=2
SchedulerType=sched/backfill
SchedulerParameters=sched_interval=2
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
GresTypes=gpu
JobRequeue=1
KillWait=5
MinJobAge=30
InactiveLimit=0
SlurmctldTimeout=30
SlurmdTimeout=60
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=127.0.0.1
AccountingStorageEnforce=associations,limits,qos
AccountingStorageTRES=gres/gpu
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
SlurmdParameters=config_overrides
NodeName=$HOST NodeAddr=127.0.0.1 CPUs=$CPUS RealMemory=$MEM_MB Gres=gpu:$GPUS State=UNKNOWN
PartitionName=debug Nodes=$HOST Default=YES MaxTime=INFINITE State=UP OverSubscribe=NO
EOF
cat >"$ROOT/gres.conf" <<EOF
AutoDetect=off
NodeName=$HOST Name=gpu File=$ROOT/dev/gpu[0-$((GPUS - 1))]
EOF
cat >"$ROOT/slurmdbd.conf" <<EOF
AuthType=auth/munge
DbdHost=localhost
DbdAddr=127.0.0.1
SlurmUser=root
PidFile=$ROOT/run/slurmdbd.pid
LogFile=$ROOT/log/slurmdbd.log
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort=$DB_PORT
StorageUser=slurm
StoragePass=slurm
StorageLoc=slurm_acct_db
EOF
chmod 600 "$ROOT/slurmdbd.conf"
# Slurm's OCI containers (`--container BUNDLE`) through runc, as root. Slurm 22.05 hangs on
# runc's create/start pair; `runc run` does both in one call.
cat >"$ROOT/oci.conf" <<EOF
ContainerPath=$ROOT/oci/%j.%s.%t
RunTimeQuery="runc --root=$ROOT/oci/runc state %n.%u.%j.%s.%t"
RunTimeRun="runc --root=$ROOT/oci/runc run %n.%u.%j.%s.%t -b %b"
RunTimeKill="runc --root=$ROOT/oci/runc kill -a %n.%u.%j.%s.%t"
RunTimeDelete="runc --root=$ROOT/oci/runc delete --force %n.%u.%j.%s.%t"
EOF
# Daemons and clients read /etc/slurm; links keep the files (and the state) under $ROOT.
for f in slurm.conf gres.conf slurmdbd.conf oci.conf; do
    if [ -e "$ETC/$f" ] && [ ! -L "$ETC/$f" ]; then
        give_up "$ETC/$f exists and is not ours; not overwriting a real cluster's configuration"
    fi
    ln -sfn "$ROOT/$f" "$ETC/$f"
done

# -- daemons -----------------------------------------------------------------------------------
slurmdbd || give_up "slurmdbd did not start: $(tail -3 "$ROOT/log/slurmdbd.log" 2>/dev/null | tr '\n' ' ')"
for _ in $(seq 1 100); do sacctmgr -n list cluster >/dev/null 2>&1 && break; sleep 0.2; done
sacctmgr -i add cluster speedrun >/dev/null || give_up "sacctmgr cannot reach slurmdbd"
sacctmgr -i add account speedrun Cluster=speedrun Description=tests Organization=speedrun >/dev/null
sacctmgr -i add qos speedrun >/dev/null
sacctmgr -i add user root Account=speedrun Cluster=speedrun DefaultAccount=speedrun >/dev/null
sacctmgr -i modify user root set QOS=normal,speedrun DefaultQOS=normal >/dev/null
slurmctld || give_up "slurmctld did not start: $(tail -3 "$ROOT/log/slurmctld.log" 2>/dev/null | tr '\n' ' ')"
slurmd || give_up "slurmd did not start: $(tail -3 "$ROOT/log/slurmd.log" 2>/dev/null | tr '\n' ' ')"
for _ in $(seq 1 150); do
    cluster_up && { say "cluster up: node $HOST, $CPUS CPUs, gpu:$GPUS, state in $ROOT ($(elapsed))"; exit 0; }
    sleep 0.2
done
give_up "the node did not come up within 30s: $(sinfo -h -o '%T %E' 2>&1 | tr '\n' ' ')"
