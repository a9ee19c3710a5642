#!/usr/bin/env bash
# A real one-node SLURM cluster (slurmctld + slurmd + slurmdbd/MariaDB accounting) on this machine,
# for the `slurm` tests and for trying hydra/launcher=slurm_local. Works without systemd: every
# daemon is started by hand and stopped by its pid file. Must run as root.
#
#   bash launch/slurm_local.sh install   # apt packages, once per machine
#   bash launch/slurm_local.sh start     # idempotent: returns at once when the node is already up
#   bash launch/slurm_local.sh status
#   bash launch/slurm_local.sh stop
#
# Everything this script writes lives under one state folder, $SLURM_LOCAL_DIR
# (default /var/lib/reasoning-rl-slurm): configs, spool/state, MariaDB data, logs, pid files.
# /etc/slurm/slurm.conf and slurmdbd.conf are symlinks into it, because sinfo/sbatch/sacct (and so
# submitit) read /etc/slurm/slurm.conf and must find the cluster without any extra environment.
# `stop` then `rm -rf "$SLURM_LOCAL_DIR"` resets the cluster completely.
set -euo pipefail

STATE=${SLURM_LOCAL_DIR:-/var/lib/reasoning-rl-slurm}
TIMEOUT=${SLURM_LOCAL_TIMEOUT:-90}       # seconds each wait may take before `start` gives up
HEADROOM_MB=${SLURM_LOCAL_HEADROOM_MB:-1024}  # memory kept back from slurm for the OS and the caller
CLUSTER=local
PARTITION=debug
DB_NAME=slurm_acct_db
DB_USER=slurm
DB_PASS=slurm-local  # local-only database reachable through the unix socket; not a secret
MARKER="# written by reasoning-rl launch/slurm_local.sh"
ETC=/etc/slurm
MYSQL_SOCK=/run/mysqld/mysqld.sock  # the client default, so slurmdbd's StorageHost=localhost finds it

ETC_STATE=$STATE/etc
LOG=$STATE/log
RUN=$STATE/run
DBDATA=$STATE/mysql

log() { printf '[slurm_local] %s\n' "$*" >&2; }
die() { printf '[slurm_local] ERROR: %s\n' "$*" >&2; exit 1; }

need_root() { [ "$(id -u)" -eq 0 ] || die "run as root (daemons, /etc/slurm and apt need it)"; }

# ---------------------------------------------------------------------------------------------
# pid-file helpers: a pid is only trusted when the process still runs the expected program,
# so a stale pid file can never make us signal an unrelated process.
read_pid() {  # read_pid PIDFILE: print the pid in it; fails if the file is gone (daemons remove it)
  local pid
  pid=$(cat "$1" 2>/dev/null) || return 1
  pid=${pid//[!0-9]/}
  [ -n "$pid" ] && echo "$pid"
}

proc_alive() {  # proc_alive PID COMM
  local pid=$1 comm=$2
  [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = "$comm" ] || return 1
  # A killed daemon may linger as a zombie until init reaps it: that is not running.
  [ "$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null)" != Z ]
}

pid_alive() {  # pid_alive PIDFILE COMM
  local pid
  pid=$(read_pid "$1") && proc_alive "$pid" "$2"
}

stop_pidfile() {  # stop_pidfile NAME PIDFILE COMM: TERM, wait, then KILL; fine if not running
  local name=$1 pidfile=$2 comm=$3 pid
  if ! pid=$(read_pid "$pidfile") || ! proc_alive "$pid" "$comm"; then
    log "$name: not running"
    rm -f "$pidfile"
    return 0
  fi
  log "$name: stopping pid $pid"
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 1 100); do  # 20 s; slurmctld saves its state on the way out
    proc_alive "$pid" "$comm" || { rm -f "$pidfile"; return 0; }
    sleep 0.2
  done
  log "$name: did not exit after TERM, sending KILL"
  kill -KILL "$pid" 2>/dev/null || true
  rm -f "$pidfile"
}

# When set, wait_for fails at once if this process (a child we started, running WATCH_COMM) died.
WATCH_PID=""
WATCH_COMM=""
wait_for() {  # wait_for DESCRIPTION LOGFILE COMMAND...: poll until COMMAND succeeds or TIMEOUT
  local what=$1 logfile=$2 deadline
  shift 2
  deadline=$((SECONDS + TIMEOUT))
  until "$@" >/dev/null 2>&1; do
    if [ -n "$WATCH_PID" ] && ! proc_alive "$WATCH_PID" "$WATCH_COMM"; then
      fail_with_logs "$what exited while starting" "$logfile"
    fi
    if [ "$SECONDS" -ge "$deadline" ]; then
      fail_with_logs "$what did not come up within ${TIMEOUT}s" "$logfile"
    fi
    sleep 0.3
  done
}

fail_with_logs() {  # fail_with_logs MESSAGE LOGFILE...
  local msg=$1 f
  shift
  for f in "$@"; do
    [ -f "$f" ] || continue
    printf '\n---- last lines of %s ----\n' "$f" >&2
    tail -n 25 "$f" >&2
  done
  die "$msg (logs under $LOG)"
}

# ---------------------------------------------------------------------------------------------
cmd_install() {
  need_root
  local missing=0 c
  for c in sbatch sinfo sacct sacctmgr slurmctld slurmd slurmdbd munged mysqld_safe mysqladmin; do
    command -v "$c" >/dev/null 2>&1 || { missing=1; break; }
  done
  if [ "$missing" -eq 0 ]; then
    log "install: slurm, munge, slurmdbd and mariadb are already installed"
    return 0
  fi
  log "install: apt-get install slurm-wlm munge slurmdbd mariadb-server"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q
  # Debian 12: slurm 22.05, MariaDB 10.11. No service is started by the packages here (no systemd,
  # and containers usually forbid it through policy-rc.d); `start` runs every daemon itself.
  apt-get install -y -q --no-install-recommends slurm-wlm slurm-client munge slurmdbd mariadb-server \
    mariadb-client procps
}

# ---------------------------------------------------------------------------------------------
# Configuration. Rewritten on every full start so it always matches this machine (hostname,
# cores and memory can differ between a developer's machine and CI's).
node_name() { hostname -s; }

write_configs() {
  local host cpus mem_total real_mem
  host=$(node_name)
  cpus=$(nproc)
  mem_total=$(free -m | awk '/^Mem:/ {print $2}')
  real_mem=$((mem_total - HEADROOM_MB))
  # slurmd drains a node whose RealMemory is larger than what it finds; keep a sane floor.
  [ "$real_mem" -ge 1024 ] || real_mem=$((mem_total * 3 / 4))

  mkdir -p "$ETC_STATE" "$LOG" "$RUN" "$STATE/spool/ctld" "$STATE/spool/d"
  chmod 755 "$STATE"  # mysqld runs as the mysql user and must traverse into $STATE/mysql

  cat >"$ETC_STATE/slurm.conf" <<EOF
$MARKER
# One node, one partition, no cgroups (none in containers/CI): linuxproc + task/none.
ClusterName=$CLUSTER
SlurmctldHost=$host(127.0.0.1)
SlurmUser=root
AuthType=auth/munge
AuthInfo=cred_expire=10
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
ReturnToService=2
KillWait=5
MailProg=/bin/true
StateSaveLocation=$STATE/spool/ctld
SlurmdSpoolDir=$STATE/spool/d
SlurmctldPidFile=$RUN/slurmctld.pid
SlurmdPidFile=$RUN/slurmd.pid
SlurmctldLogFile=$LOG/slurmctld.log
SlurmdLogFile=$LOG/slurmd.log
# Schedule every 2 s instead of the default 60 s backfill pass, so test jobs start at once.
SchedulerType=sched/backfill
SchedulerParameters=bf_interval=2,sched_interval=2
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU_Memory
DefMemPerCPU=1000
# Accounting: submitit reads job states with sacct; without it, it can hang on cancelled jobs.
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
JobAcctGatherType=jobacct_gather/linux
JobAcctGatherFrequency=30
JobCompType=jobcomp/none
NodeName=$host NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$real_mem State=UNKNOWN
PartitionName=$PARTITION Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF

  cat >"$ETC_STATE/slurmdbd.conf" <<EOF
$MARKER
AuthType=auth/munge
DbdHost=localhost
SlurmUser=root
PidFile=$RUN/slurmdbd.pid
LogFile=$LOG/slurmdbd.log
StorageType=accounting_storage/mysql
StorageHost=localhost
StorageUser=$DB_USER
StoragePass=$DB_PASS
StorageLoc=$DB_NAME
EOF
  chmod 600 "$ETC_STATE/slurmdbd.conf"  # slurmdbd refuses a config readable by others

  mkdir -p "$ETC"
  local f
  for f in slurm.conf slurmdbd.conf; do
    # Never overwrite a config someone else wrote (a real cluster's, say).
    if [ -e "$ETC/$f" ] && [ ! -L "$ETC/$f" ] && ! grep -qF "$MARKER" "$ETC/$f"; then
      die "$ETC/$f exists and was not written by this script; move it away to use the local cluster"
    fi
    ln -sfn "$ETC_STATE/$f" "$ETC/$f"
  done
}

# ---------------------------------------------------------------------------------------------
# The daemons, in start order. Each start_* is idempotent on its own.
munge_ok() { munge -n 2>/dev/null | unmunge >/dev/null 2>&1; }

start_munge() {
  if munge_ok; then log "munged: running"; return 0; fi
  # The package normally creates the key; make one if it did not (or it was removed).
  if [ ! -s /etc/munge/munge.key ]; then
    log "munged: creating /etc/munge/munge.key"
    mkdir -p /etc/munge
    dd if=/dev/urandom bs=1 count=1024 of=/etc/munge/munge.key status=none
  fi
  chown munge:munge /etc/munge/munge.key
  chmod 400 /etc/munge/munge.key
  mkdir -p /run/munge /var/log/munge /var/lib/munge
  chown munge:munge /run/munge /var/log/munge /var/lib/munge
  # munged refuses to run as root with a key owned by munge; run it as its own user.
  rm -f /run/munge/munged.pid  # left by a killed munged; we wait for the new one below
  runuser -u munge -- munged 2>>"$LOG/munged.log" || true
  wait_for "munged" /var/log/munge/munged.log munge_ok
  # munged (as the munge user) writes its pid file under /run/munge; a copy in $RUN records that
  # this script started it, so `stop` leaves a munged the machine ran itself alone.
  wait_for "munged pid file" /var/log/munge/munged.log pid_alive /run/munge/munged.pid munged
  cp /run/munge/munged.pid "$RUN/munged.pid"
  log "munged: started"
}

mysql_ok() { mysqladmin --socket="$MYSQL_SOCK" ping >/dev/null 2>&1; }

start_mariadb() {
  if mysql_ok; then
    # Either ours from an earlier start, or a server this machine already runs: use it either way.
    log "mariadb: running"
  else
    if [ ! -d "$DBDATA/mysql" ]; then
      log "mariadb: initialising $DBDATA"
      mkdir -p "$DBDATA"
      chown mysql:mysql "$DBDATA"
      mysql_install_db --user=mysql --datadir="$DBDATA" --skip-test-db \
        --auth-root-authentication-method=socket >"$LOG/mariadb-install.log" 2>&1 \
        || fail_with_logs "mysql_install_db failed" "$LOG/mariadb-install.log"
    fi
    mkdir -p /run/mysqld
    chown mysql:mysql /run/mysqld
    touch "$LOG/mariadb.log"
    chown mysql:mysql "$LOG/mariadb.log"
    # mysqld_safe stays in the foreground: detach it (setsid, no terminal) so it outlives us.
    # skip-networking: slurmdbd talks to it over the unix socket only, so no port can clash.
    # Its pid file goes to /run/mysqld (mysqld runs as mysql and can't write to $RUN); a copy in
    # $RUN records that this script started it, so `stop` leaves a machine's own server alone.
    rm -f /run/mysqld/reasoning-rl.pid  # left by a killed server; we wait for the new one below
    setsid nohup mysqld_safe --user=mysql --datadir="$DBDATA" --socket="$MYSQL_SOCK" \
      --pid-file=/run/mysqld/reasoning-rl.pid --log-error="$LOG/mariadb.log" --skip-networking \
      >/dev/null 2>&1 </dev/null &
    WATCH_PID=$! WATCH_COMM=mysqld_safe
    wait_for "mariadb" "$LOG/mariadb.log" mysql_ok
    WATCH_PID=""
    wait_for "mariadb pid file" "$LOG/mariadb.log" pid_alive /run/mysqld/reasoning-rl.pid mariadbd
    cp /run/mysqld/reasoning-rl.pid "$RUN/mysqld.pid"
    log "mariadb: started"
  fi
  # root@localhost authenticates through the unix socket as the OS root user: no password needed.
  mysql --socket="$MYSQL_SOCK" <<EOF
CREATE DATABASE IF NOT EXISTS $DB_NAME;
CREATE USER IF NOT EXISTS '$DB_USER'@'localhost' IDENTIFIED BY '$DB_PASS';
GRANT ALL ON $DB_NAME.* TO '$DB_USER'@'localhost';
FLUSH PRIVILEGES;
EOF
}

dbd_ok() { sacctmgr -n -P show cluster format=cluster >/dev/null 2>&1; }

start_slurmdbd() {
  if pid_alive "$RUN/slurmdbd.pid" slurmdbd && dbd_ok; then log "slurmdbd: running"; return 0; fi
  # Running but not answering (hung): restart it.
  if pid_alive "$RUN/slurmdbd.pid" slurmdbd; then stop_pidfile slurmdbd "$RUN/slurmdbd.pid" slurmdbd; fi
  slurmdbd || fail_with_logs "slurmdbd failed to start" "$LOG/slurmdbd.log"
  wait_for "slurmdbd" "$LOG/slurmdbd.log" dbd_ok
  log "slurmdbd: started"
  # slurmctld only talks to the database for a cluster that sacctmgr registered; once per database.
  if ! sacctmgr -n -P show cluster format=cluster | grep -qx "$CLUSTER"; then
    sacctmgr -i add cluster "$CLUSTER" >/dev/null
    log "sacctmgr: added cluster $CLUSTER"
  fi
}

ctld_ok() { scontrol ping 2>/dev/null | grep -q 'is UP'; }

start_slurmctld() {
  if pid_alive "$RUN/slurmctld.pid" slurmctld && ctld_ok; then
    # Running from an earlier start: make it reread the config written above.
    scontrol reconfigure >/dev/null 2>&1 || true
    log "slurmctld: running"
    return 0
  fi
  # Running but not answering (hung): restart it.
  if pid_alive "$RUN/slurmctld.pid" slurmctld; then stop_pidfile slurmctld "$RUN/slurmctld.pid" slurmctld; fi
  # -i: start even if the saved state from an earlier run can't be read (e.g. the node changed).
  slurmctld -i || fail_with_logs "slurmctld failed to start" "$LOG/slurmctld.log"
  wait_for "slurmctld" "$LOG/slurmctld.log" ctld_ok
  log "slurmctld: started"
}

start_slurmd() {
  if pid_alive "$RUN/slurmd.pid" slurmd; then log "slurmd: running"; return 0; fi
  slurmd || fail_with_logs "slurmd failed to start" "$LOG/slurmd.log"
  log "slurmd: started"
}

node_state() { sinfo -h -o %t 2>/dev/null | head -n 1; }

# A usable node: idle, mixed or allocated. A trailing * (not responding), ~ (powered down) or
# drain/down are not usable.
node_usable() { [[ "$(node_state)" =~ ^(idle|mix|mixed|alloc|allocated|comp|completing)$ ]]; }

cluster_up() { munge_ok && mysql_ok && dbd_ok && node_usable; }

wait_node_idle() {
  local deadline=$((SECONDS + TIMEOUT)) state resumed=0
  while ! node_usable; do
    state=$(node_state)
    # A node left drained/down by an earlier run (e.g. it was killed mid-job): put it back once.
    if [ "$resumed" -eq 0 ] && [[ "$state" =~ ^(drain|drng|down|fail) ]]; then
      scontrol update NodeName="$(node_name)" State=RESUME >/dev/null 2>&1 || true
      resumed=1
    fi
    # slurmd exits at once on a config it rejects (e.g. more memory than the machine has).
    if ! pid_alive "$RUN/slurmd.pid" slurmd && [ "$SECONDS" -ge "$((deadline - TIMEOUT + 5))" ]; then
      fail_with_logs "slurmd is not running" "$LOG/slurmd.log"
    fi
    if [ "$SECONDS" -ge "$deadline" ]; then
      sinfo -R >&2 || true
      fail_with_logs "node did not become idle within ${TIMEOUT}s (state: ${state:-none})" \
        "$LOG/slurmctld.log" "$LOG/slurmd.log" "$LOG/slurmdbd.log"
    fi
    sleep 0.3
  done
}

cmd_start() {
  need_root
  command -v slurmctld >/dev/null 2>&1 || die "slurm is not installed: bash $0 install"
  if [ -e "$ETC/slurm.conf" ] && cluster_up; then
    log "already up: partition $PARTITION, node $(node_name) $(node_state)"
    return 0
  fi
  local t0=$SECONDS
  write_configs
  start_munge
  start_mariadb
  start_slurmdbd
  start_slurmctld
  start_slurmd
  wait_node_idle
  log "up in $((SECONDS - t0))s: partition $PARTITION, node $(node_name) $(node_state)"
}

cmd_stop() {
  need_root
  # Reverse start order. mysqld and munged are only stopped when this script started them
  # (their pid files are in $RUN); a server the machine already ran is left alone.
  stop_pidfile slurmd "$RUN/slurmd.pid" slurmd
  stop_pidfile slurmctld "$RUN/slurmctld.pid" slurmctld
  stop_pidfile slurmdbd "$RUN/slurmdbd.pid" slurmdbd
  if pid_alive "$RUN/mysqld.pid" mariadbd; then
    log "mariadb: stopping"
    # A clean shutdown (it returns once the server has exited) also ends mysqld_safe, which would
    # restart a mysqld killed by a signal.
    mysqladmin --socket="$MYSQL_SOCK" shutdown 2>/dev/null || true
    if pid_alive "$RUN/mysqld.pid" mariadbd; then stop_pidfile mariadb "$RUN/mysqld.pid" mariadbd; fi
    rm -f "$RUN/mysqld.pid"
  elif [ -e "$RUN/mysqld.pid" ]; then
    log "mariadb: not running"
    rm -f "$RUN/mysqld.pid"
  else
    log "mariadb: not started by this script"
  fi
  stop_pidfile munged "$RUN/munged.pid" munged
}

cmd_status() {
  local name comm ok=0
  printf 'state folder: %s\n' "$STATE"
  for name in munged:munged slurmdbd:slurmdbd slurmctld:slurmctld slurmd:slurmd; do
    comm=${name#*:}
    name=${name%%:*}
    if pid_alive "$RUN/$name.pid" "$comm"; then
      printf '  %-10s running (pid %s)\n' "$name" "$(read_pid "$RUN/$name.pid")"
    else
      printf '  %-10s not running (by this script)\n' "$name"
    fi
  done
  if mysql_ok; then printf '  %-10s answering on %s\n' mariadb "$MYSQL_SOCK"
  else printf '  %-10s not answering\n' mariadb; fi
  if command -v sinfo >/dev/null 2>&1 && cluster_up; then
    sinfo
    printf 'cluster: up\n'
  else
    printf 'cluster: down (bash %s start)\n' "$0"
    ok=1
  fi
  return "$ok"
}

case "${1:-}" in
  install) cmd_install ;;
  start) cmd_start ;;
  stop) cmd_stop ;;
  status) cmd_status ;;
  *) echo "usage: $0 {install|start|stop|status}" >&2; exit 2 ;;
esac
