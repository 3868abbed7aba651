#!/usr/bin/env bash
# Throwaway PostgreSQL + Redis whose data lives under one directory, on free loopback ports.
#
#   scripts/services.sh start DIR   start them (or reuse a cluster already in DIR/pg), then write
#                                   DIR/services.env (DATABASE_URL, REDIS_URL, PG_BIN, PGPORT_TENANTRY)
#   scripts/services.sh stop DIR    stop them; fine if they are not running
#
# CLUSTER=citus: PostgreSQL is a Citus cluster instead, a coordinator (DIR/pg, DATABASE_URL) and two
# workers (DIR/pg-w1, DIR/pg-w2) on 127.0.0.1, each with the citus extension in database tenantry,
# the workers added with citus_add_node and the coordinator registered with
# citus_set_coordinator_host. Citus is built and installed first when missing (scripts/citus.sh).
# services.env then also exports CLUSTER=citus and CITUS_WORKERS (host:port,host:port), which the
# test harness uses to create each test's database on every node.
#
# `just dev` keeps its services in .dev/ (reused across runs); `just test` uses a temporary
# directory through scripts/with-services.sh. The data is disposable: fsync is off. Dynamic shared
# memory lives in files of the data directory (`mmap`), not in /dev/shm, which every cluster on the
# machine shares (several at once, as parallel test runs start them, met "could not open shared
# memory segment … Permission denied" there).
# PostgreSQL refuses to run as root, so as root the server runs as the `postgres` user.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

# Connection settings from the caller's environment must not leak into our own psql/pg_ctl calls.
unset PGHOST PGHOSTADDR PGPORT PGUSER PGDATABASE PGPASSWORD PGSERVICE PGOPTIONS PGSSLMODE PGDATA

die() { printf 'services: error: %s\n' "$*" >&2; exit 1; }
note() { printf 'services: %s\n' "$*"; }
usage() { die "usage: $0 start|stop DIR"; }

is_root() { [ "$(id -u)" -eq 0 ]; }

# Runs a command as the postgres user when we are root, else as ourselves. Runs from / so that a
# working directory postgres cannot read does not produce warnings.
as_pg() {
  if is_root; then
    if command -v runuser >/dev/null 2>&1; then
      (cd / && runuser -u postgres -- "$@")
    else
      (cd / && su postgres -s /bin/bash -c "$(printf '%q ' "$@")")
    fi
  else
    "$@"
  fi
}

# The directory holding initdb/pg_ctl/postgres: $PG_BIN, then `pg_config --bindir`, then the
# newest /usr/lib/postgresql/*/bin. Prints nothing (and fails) when there is none.
find_pg_bin() {
  local d
  for d in "${PG_BIN:-}" "$(pg_config --bindir 2>/dev/null || true)"; do
    if [ -n "$d" ] && [ -x "$d/initdb" ] && [ -x "$d/pg_ctl" ] && [ -x "$d/postgres" ]; then
      echo "$d"; return 0
    fi
  done
  d=$(find /usr/lib/postgresql -mindepth 2 -maxdepth 2 -name bin -type d 2>/dev/null | sort -V | tail -n 1)
  if [ -n "$d" ] && [ -x "$d/initdb" ] && [ -x "$d/pg_ctl" ] && [ -x "$d/postgres" ]; then
    echo "$d"; return 0
  fi
  return 1
}

# A client tool: the one next to the server binaries, else the one on PATH.
pg_tool() {
  if [ -x "$PGBIN/$1" ]; then echo "$PGBIN/$1"
  elif command -v "$1" >/dev/null 2>&1; then command -v "$1"
  else die "$1 is missing (apt-get install postgresql-client)"
  fi
}

# Whether something listens on 127.0.0.1:PORT. SO_REUSEADDR, as the servers themselves use, so
# that connections lingering in TIME_WAIT after a stop do not count.
port_busy() {
  if command -v python3 >/dev/null 2>&1; then
    if python3 - "$1" <<'PY' 2>/dev/null; then return 1; else return 0; fi
import socket, sys
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(sys.argv[1])))
PY
  else
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
  fi
}

# A free TCP port on 127.0.0.1, different from $1 (if given).
free_port() {
  local p i
  for i in $(seq 1 50); do
    if command -v python3 >/dev/null 2>&1; then
      p=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    else
      p=$((20000 + RANDOM % 40000))
      port_busy "$p" && continue
    fi
    [ "$p" != "${1:-}" ] && { echo "$p"; return 0; }
  done
  die "could not find a free TCP port on 127.0.0.1"
}

# Whether PID is alive and its command name starts with NAME (guards against reused pids).
pid_alive() {
  local pid=$1 name=$2 comm
  [[ "$pid" =~ ^[0-9]+$ ]] || return 1
  kill -0 "$pid" 2>/dev/null || return 1
  comm=$(cat "/proc/$pid/comm" 2>/dev/null || ps -p "$pid" -o comm= 2>/dev/null || true)
  [ -z "$comm" ] || [[ "$comm" == "$name"* ]]
}

# The postmaster pid for DIR/NODE (default pg) if it is running, else nothing.
pg_pid() {
  local f=$1/${2:-pg}/postmaster.pid pid
  [ -f "$f" ] || return 1
  pid=$(sed -n 1p "$f")
  pid_alive "$pid" postgres && echo "$pid"
}

redis_pid() {
  local f=$1/redis.pid pid
  [ -f "$f" ] || return 1
  pid=$(cat "$f")
  pid_alive "$pid" redis-server && echo "$pid"
}

# Makes DIR and its parents reachable by the postgres user (mktemp makes 0700 directories).
open_up_for_postgres() {
  local dir=$1 p
  chmod 755 "$dir"
  as_pg test -x "$dir" && return 0
  p=$dir
  while [ "$p" != / ]; do
    p=$(dirname "$p")
    if ! as_pg test -x "$p"; then
      note "making $p traversable (o+x) for the postgres user"
      chmod o+x "$p"
    fi
  done
  as_pg test -x "$dir" || die "the postgres user cannot reach $dir"
}

# Serialises start/stop for one DIR (e.g. two `just dev` at once). The daemons are started with
# fd 9 closed so that they do not inherit (and hold) the lock.
lock() {
  if command -v flock >/dev/null 2>&1; then
    exec 9>"$1/.services.lock"
    flock -w 120 9 || die "another services.sh is busy with $1"
  fi
}

# Starts (or reuses) the PostgreSQL cluster DIR/NODE on a free port, with database tenantry;
# extra server options follow. Its port goes to DIR/NODE.port, its log to DIR/NODE.log.
# Sets NODE_REUSED=1 when it was already running.
start_node() {
  local dir=$1 node=$2 port i
  shift 2
  local extra="$*"
  local data=$dir/$node
  NODE_REUSED=0
  if pg_pid "$dir" "$node" >/dev/null; then
    sed -n 4p "$data/postmaster.pid" >"$dir/$node.port"
    NODE_REUSED=1
    return 0
  fi
  if [ -f "$data/PG_VERSION" ]; then
    local have; have=$(cat "$data/PG_VERSION")
    [ "$have" = "$major" ] || die "$data holds a PostgreSQL $have cluster but the binaries in $PGBIN are PostgreSQL $major; delete $dir (or set PG_BIN)"
  else
    if [ -e "$data" ]; then
      note "removing $data left over by an unfinished initdb"
      rm -rf "$data"
    fi
    mkdir -p "$data"
    if is_root; then chown postgres: "$data"; fi
    as_pg "$PGBIN/initdb" -D "$data" -U postgres --auth=trust -E UTF8 --no-locale >"$dir/initdb-$node.log" 2>&1 \
      || { cat "$dir/initdb-$node.log" >&2; die "initdb failed (log: $dir/initdb-$node.log)"; }
  fi
  if is_root && [ "$(stat -c %U "$data")" != postgres ]; then chown -R postgres: "$data"; fi
  rm -f "$data/postmaster.pid" # stale: no live postmaster owns it

  port=$(cat "$dir/$node.port" 2>/dev/null || true)
  if ! [[ "$port" =~ ^[0-9]+$ ]] || port_busy "$port"; then
    port=$(free_port)
  fi
  echo "$port" >"$dir/$node.port"

  mkdir -p "$dir/sock"
  touch "$dir/$node.log"
  if is_root; then chown postgres: "$dir/sock" "$dir/$node.log"; fi
  # Unix socket paths are limited to 107 bytes; fall back to TCP only for very deep DIRs.
  local sockopt="-c unix_socket_directories='$dir/sock'"
  if [ ${#dir} -gt 80 ]; then
    note "$dir is too long for a Unix socket path; PostgreSQL listens on TCP only"
    sockopt="-c unix_socket_directories=''"
  fi
  local buffers=256MB
  [ "$node" = pg ] || buffers=128MB
  as_pg "$PGBIN/pg_ctl" -D "$data" -l "$dir/$node.log" -w -t 60 -o "-p $port -c listen_addresses=127.0.0.1 $sockopt \
-c max_connections=400 -c shared_buffers=$buffers -c fsync=off -c synchronous_commit=off -c full_page_writes=off \
-c dynamic_shared_memory_type=mmap $extra" \
    start >/dev/null 2>&1 9>&- || { tail -n 30 "$dir/$node.log" >&2; die "PostgreSQL did not start (log: $dir/$node.log)"; }

  for i in $(seq 1 300); do
    "$pg_isready" -q -h 127.0.0.1 -p "$port" -U postgres -d postgres && break
    [ "$i" = 300 ] && { tail -n 30 "$dir/$node.log" >&2; die "PostgreSQL on 127.0.0.1:$port is not accepting connections (log: $dir/$node.log)"; }
    sleep 0.1
  done
  local q=("$psql" -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$port" -U postgres -d postgres -tA)
  if [ "$("${q[@]}" -c "select 1 from pg_database where datname = 'tenantry'")" != 1 ]; then
    "${q[@]}" -c 'create database tenantry' >/dev/null 2>&1 \
      || [ "$("${q[@]}" -c "select 1 from pg_database where datname = 'tenantry'")" = 1 ] \
      || die "could not create database tenantry on $node"
  fi
}

start() {
  local dir=$1
  mkdir -p "$dir" || die "cannot create $dir"
  dir=$(cd "$dir" && pwd -P)
  case $dir in *"'"* | *'"'* | *\\*) die "DIR must not contain quotes or backslashes: $dir" ;; esac
  lock "$dir"

  PGBIN=$(find_pg_bin) || die "PostgreSQL server binaries (initdb, pg_ctl, postgres) not found via \$PG_BIN, pg_config or /usr/lib/postgresql/*/bin; install them with: apt-get install postgresql"
  command -v redis-server >/dev/null 2>&1 || die "redis-server is missing; install it with: apt-get install redis-server"
  command -v redis-cli >/dev/null 2>&1 || die "redis-cli is missing; install it with: apt-get install redis-tools"
  local psql pg_isready
  psql=$(pg_tool psql)
  pg_isready=$(pg_tool pg_isready)
  local major
  major=$("$PGBIN/postgres" --version | awk '{print $3}' | cut -d. -f1)

  if is_root; then
    id postgres >/dev/null 2>&1 || die "running as root needs a 'postgres' OS user to run PostgreSQL (useradd --system --create-home --home-dir /var/lib/postgresql postgres)"
    open_up_for_postgres "$dir"
  fi

  local pgport redisport rpid reused=()

  # --- PostgreSQL ---------------------------------------------------------------------------
  local cluster=${CLUSTER:-}
  case $cluster in "" | single | none) cluster="" ;; citus) ;; *) die "CLUSTER must be citus (or empty), not '$cluster'" ;; esac
  local preload=()
  if [ -n "$cluster" ]; then
    "$here/citus.sh" || die "could not install Citus (scripts/citus.sh)"
    # Citus: logical replication moves schemas between nodes; multi-node transactions commit
    # with two-phase commit.
    # Citus runs a maintenance daemon (a background worker) per database, and the tests make a
    # database each.
    # synchronous_commit stays on (it overrides the `off` above): Citus's logical-replication
    # move ends its catch-up at the source's WAL *write* position, and a commit made with
    # synchronous_commit=off may still sit beyond it in WAL buffers, acknowledged and then lost
    # with the old shard (ARCHITECTURE, "Cluster topology (Citus)"; tenantctl falls back to
    # block_writes where a worker commits asynchronously). fsync stays off, so it costs little.
    preload=(-c shared_preload_libraries=citus -c wal_level=logical -c max_prepared_transactions=200
      -c max_wal_senders=20 -c max_replication_slots=20 -c max_worker_processes=200
      -c synchronous_commit=on)
  fi
  local nodes=(pg) node all_reused=1
  if [ -n "$cluster" ]; then nodes=(pg pg-w1 pg-w2); fi
  for node in "${nodes[@]}"; do
    start_node "$dir" "$node" "${preload[@]}"
    [ "$NODE_REUSED" = 1 ] || all_reused=0
  done
  pgport=$(cat "$dir/pg.port")
  [ "$all_reused" = 1 ] && reused+=(PostgreSQL)

  local workers=()
  if [ -n "$cluster" ]; then
    workers=("127.0.0.1:$(cat "$dir/pg-w1.port")" "127.0.0.1:$(cat "$dir/pg-w2.port")")
    local w
    for w in "127.0.0.1:$pgport" "${workers[@]}"; do
      local q=("$psql" -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "${w##*:}" -U postgres -tA)
      "${q[@]}" -d tenantry -c 'create extension if not exists citus' >/dev/null \
        || die "could not create the citus extension on $w"
    done
    local q=("$psql" -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$pgport" -U postgres -d tenantry -tA)
    "${q[@]}" -c "select citus_set_coordinator_host('127.0.0.1', $pgport)" >/dev/null \
      || die "citus_set_coordinator_host failed"
    for w in "${workers[@]}"; do
      if [ "$("${q[@]}" -c "select count(*) from pg_dist_node where nodename = '127.0.0.1' and nodeport = ${w##*:}")" = 0 ]; then
        "${q[@]}" -c "select citus_add_node('127.0.0.1', ${w##*:})" >/dev/null || die "citus_add_node $w failed"
      fi
    done
  fi

  # --- Redis --------------------------------------------------------------------------------
  mkdir -p "$dir/redis"
  if rpid=$(redis_pid "$dir") && redisport=$(cat "$dir/redis.port" 2>/dev/null) \
      && [ "$(redis-cli -h 127.0.0.1 -p "$redisport" ping 2>/dev/null)" = PONG ]; then
    reused+=(Redis)
  else
    if [ -n "${rpid:-}" ]; then kill "$rpid" 2>/dev/null || true; fi
    rm -f "$dir/redis.pid"
    redisport=$(cat "$dir/redis.port" 2>/dev/null || true)
    if ! [[ "$redisport" =~ ^[0-9]+$ ]] || [ "$redisport" = "$pgport" ] || port_busy "$redisport"; then
      redisport=$(free_port "$pgport")
    fi
    echo "$redisport" >"$dir/redis.port"
    redis-server --port "$redisport" --bind 127.0.0.1 --dir "$dir/redis" --daemonize yes \
      --pidfile "$dir/redis.pid" --logfile "$dir/redis.log" --save '' --appendonly no >/dev/null 9>&- \
      || { tail -n 20 "$dir/redis.log" >&2 2>/dev/null || true; die "redis-server failed to start (log: $dir/redis.log)"; }
    for i in $(seq 1 200); do
      [ "$(redis-cli -h 127.0.0.1 -p "$redisport" ping 2>/dev/null)" = PONG ] && break
      [ "$i" = 200 ] && { tail -n 20 "$dir/redis.log" >&2 || true; die "Redis on 127.0.0.1:$redisport did not answer PING (log: $dir/redis.log)"; }
      sleep 0.05
    done
  fi

  cat >"$dir/services.env.tmp" <<ENV
export DATABASE_URL=postgres://postgres@127.0.0.1:$pgport/tenantry
export REDIS_URL=redis://127.0.0.1:$redisport/
export PG_BIN=$PGBIN
export PGPORT_TENANTRY=$pgport
ENV
  if [ -n "$cluster" ]; then
    local list
    list=$(IFS=,; echo "${workers[*]}")
    printf 'export CLUSTER=citus\nexport CITUS_WORKERS=%s\n' "$list" >>"$dir/services.env.tmp"
  fi
  mv -f "$dir/services.env.tmp" "$dir/services.env"

  local state=started
  [ ${#reused[@]} -eq 2 ] && state="already running"
  note "$state in $dir"
  note "$(printf '  %-14s %-50s log: %s' "PostgreSQL $major" "postgres://postgres@127.0.0.1:$pgport/tenantry" "$dir/pg.log")"
  if [ -n "$cluster" ]; then
    note "$(printf '  %-14s %-50s log: %s' "Citus worker" "postgres://postgres@${workers[0]}/tenantry" "$dir/pg-w1.log")"
    note "$(printf '  %-14s %-50s log: %s' "Citus worker" "postgres://postgres@${workers[1]}/tenantry" "$dir/pg-w2.log")"
  fi
  note "$(printf '  %-14s %-50s log: %s' Redis "redis://127.0.0.1:$redisport/" "$dir/redis.log")"
  note "  environment: . $dir/services.env    stop: $0 stop $dir"
}

stop() {
  local dir=$1
  if [ ! -d "$dir" ]; then note "nothing to stop: $dir does not exist"; return 0; fi
  dir=$(cd "$dir" && pwd -P)
  lock "$dir"
  local pid i stopped=()

  local node
  for node in pg-w2 pg-w1 pg; do
    pid=$(pg_pid "$dir" "$node") || continue
    if [ -z "${PG_BIN:-}" ] && [ -f "$dir/services.env" ]; then
      PG_BIN=$(sed -n 's/^export PG_BIN=//p' "$dir/services.env")
    fi
    if PGBIN=$(find_pg_bin); then
      as_pg "$PGBIN/pg_ctl" -D "$dir/$node" -m fast -w -t 60 stop >/dev/null 2>&1 || true
    fi
    if pid_alive "$pid" postgres; then kill -INT "$pid" 2>/dev/null || true; fi # fast shutdown
    for i in $(seq 1 300); do pid_alive "$pid" postgres || break; sleep 0.1; done
    pid_alive "$pid" postgres && die "PostgreSQL (pid $pid) did not stop"
    [ "$node" = pg ] && stopped+=(PostgreSQL)
  done

  if pid=$(redis_pid "$dir"); then
    redis-cli -h 127.0.0.1 -p "$(cat "$dir/redis.port" 2>/dev/null || echo 0)" shutdown nosave >/dev/null 2>&1 || true
    for i in $(seq 1 100); do pid_alive "$pid" redis-server || break; sleep 0.05; done
    if pid_alive "$pid" redis-server; then
      kill "$pid" 2>/dev/null || true
      for i in $(seq 1 100); do pid_alive "$pid" redis-server || break; sleep 0.05; done
    fi
    pid_alive "$pid" redis-server && die "Redis (pid $pid) did not stop"
    stopped+=(Redis)
  fi
  rm -f "$dir/redis.pid"

  if [ ${#stopped[@]} -eq 0 ]; then
    note "nothing running in $dir"
  else
    note "stopped ${stopped[*]} in $dir"
  fi
}

if [ $# -ne 2 ] || [ -z "$2" ]; then usage; fi
case $1 in
  start) start "$2" ;;
  stop) stop "$2" ;;
  *) usage ;;
esac
