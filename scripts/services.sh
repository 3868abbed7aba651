#!/usr/bin/env bash
# Throwaway PostgreSQL + Redis under one directory, on free loopback ports.
#   scripts/services.sh start DIR   start (or reuse) them; writes DIR/services.env
#   scripts/services.sh stop DIR    stop them
# PostgreSQL's initdb refuses root, so as root the server runs as the `postgres` user.
set -euo pipefail

die() { echo "services: $*" >&2; exit 1; }

pg_bindir() {
  local d
  if command -v pg_config >/dev/null 2>&1; then
    d=$(pg_config --bindir 2>/dev/null || true)
    [ -x "$d/initdb" ] && [ -x "$d/postgres" ] && { echo "$d"; return; }
  fi
  d=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
  [ -n "$d" ] && [ -x "$d/initdb" ] && { echo "$d"; return; }
  die "no PostgreSQL server binaries found (apt-get install postgresql)"
}

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# Runs a command as the postgres user when we are root, else as ourselves.
as_pg() {
  if [ "$(id -u)" = 0 ]; then
    runuser -u postgres -- "$@"
  else
    "$@"
  fi
}

start() {
  local dir=$1
  mkdir -p "$dir"
  dir=$(cd "$dir" && pwd)
  local bin; bin=$(pg_bindir)
  command -v redis-server >/dev/null || die "redis-server is missing (apt-get install redis-server)"
  command -v redis-cli >/dev/null || die "redis-cli is missing (apt-get install redis-tools)"

  if [ "$(id -u)" = 0 ]; then
    id postgres >/dev/null 2>&1 || die "running as root needs a 'postgres' user for PostgreSQL"
    # The postgres user must be able to reach the directory (mktemp makes it 0700).
    chmod 755 "$dir"
    local p=$dir
    while [ "$p" != "/" ]; do chmod o+x "$p" 2>/dev/null || true; p=$(dirname "$p"); done
  fi

  local pgport redisport
  [ -f "$dir/pg.port" ] && pgport=$(cat "$dir/pg.port") || { pgport=$(free_port); echo "$pgport" > "$dir/pg.port"; }
  [ -f "$dir/redis.port" ] && redisport=$(cat "$dir/redis.port") || { redisport=$(free_port); echo "$redisport" > "$dir/redis.port"; }

  if [ ! -f "$dir/pg/PG_VERSION" ]; then
    mkdir -p "$dir/pg"
    [ "$(id -u)" = 0 ] && chown postgres "$dir/pg"
    as_pg "$bin/initdb" -D "$dir/pg" -U postgres --auth=trust -E UTF8 --no-locale >"$dir/initdb.log" 2>&1 \
      || { cat "$dir/initdb.log" >&2; die "initdb failed"; }
  fi
  mkdir -p "$dir/sock"
  [ "$(id -u)" = 0 ] && chown postgres "$dir/sock"
  if ! as_pg "$bin/pg_ctl" -D "$dir/pg" status >/dev/null 2>&1; then
    touch "$dir/pg.log"; [ "$(id -u)" = 0 ] && chown postgres "$dir/pg.log"
    as_pg "$bin/pg_ctl" -D "$dir/pg" -l "$dir/pg.log" -w -t 60 \
      -o "-p $pgport -c listen_addresses=127.0.0.1 -k $dir/sock -c max_connections=400 \
          -c shared_buffers=256MB -c fsync=off -c synchronous_commit=off -c full_page_writes=off" \
      start >/dev/null || { tail -n 30 "$dir/pg.log" >&2; die "PostgreSQL did not start"; }
  fi
  for _ in $(seq 1 100); do
    "$bin/pg_isready" -q -h 127.0.0.1 -p "$pgport" && break
    sleep 0.1
  done
  "$bin/pg_isready" -q -h 127.0.0.1 -p "$pgport" || die "PostgreSQL is not accepting connections"
  if ! psql -h 127.0.0.1 -p "$pgport" -U postgres -d postgres -tAc "select 1 from pg_database where datname = 'tenantry'" | grep -q 1; then
    psql -q -h 127.0.0.1 -p "$pgport" -U postgres -d postgres -c "create database tenantry" >/dev/null
  fi

  mkdir -p "$dir/redis"
  if ! redis-cli -p "$redisport" ping >/dev/null 2>&1; then
    redis-server --port "$redisport" --bind 127.0.0.1 --dir "$dir/redis" --daemonize yes \
      --pidfile "$dir/redis.pid" --logfile "$dir/redis.log" --save '' --appendonly no >/dev/null
    for _ in $(seq 1 100); do
      redis-cli -p "$redisport" ping >/dev/null 2>&1 && break
      sleep 0.05
    done
    redis-cli -p "$redisport" ping >/dev/null 2>&1 || { tail -n 20 "$dir/redis.log" >&2; die "Redis did not start"; }
  fi

  cat > "$dir/services.env" <<ENV
export DATABASE_URL=postgres://postgres@127.0.0.1:$pgport/tenantry
export REDIS_URL=redis://127.0.0.1:$redisport/
export PG_BIN=$bin
ENV
  echo "services: PostgreSQL on 127.0.0.1:$pgport, Redis on 127.0.0.1:$redisport (data in $dir)"
}

stop() {
  local dir=$1
  [ -d "$dir" ] || return 0
  dir=$(cd "$dir" && pwd)
  local bin; bin=$(pg_bindir)
  if [ -f "$dir/pg/postmaster.pid" ]; then
    as_pg "$bin/pg_ctl" -D "$dir/pg" -m fast -w stop >/dev/null 2>&1 || true
  fi
  if [ -f "$dir/redis.port" ]; then
    redis-cli -p "$(cat "$dir/redis.port")" shutdown nosave >/dev/null 2>&1 || true
  fi
}

case "${1:-}" in
  start) [ -n "${2:-}" ] || die "usage: $0 start DIR"; start "$2" ;;
  stop) [ -n "${2:-}" ] || die "usage: $0 stop DIR"; stop "$2" ;;
  *) die "usage: $0 start|stop DIR" ;;
esac
