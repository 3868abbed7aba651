#!/usr/bin/env bash
# `just bench-citus`: release build, then a single PostgreSQL server and a Citus cluster
# (coordinator + 2 workers, scripts/services.sh CLUSTER=citus) started side by side, and
# bench/citus.py against both in the same run. Results land in bench/results/citus-*.json.
# Needs wrk (apt-get install wrk) and psql; Citus is built from source when missing (scripts/citus.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
command -v wrk >/dev/null || { echo "bench: wrk is missing (apt-get install wrk)" >&2; exit 1; }
# BENCH_BIN_DIR: binaries built elsewhere (e.g. target/debug to check the recipe quickly).
if [ -z "${BENCH_BIN_DIR:-}" ]; then cargo build --release --bins; fi
single=$(mktemp -d "${TMPDIR:-/tmp}/tenantry-bench-single.XXXXXX")
cluster=$(mktemp -d "${TMPDIR:-/tmp}/tenantry-bench-citus.XXXXXX")
cleanup() {
  scripts/services.sh stop "$cluster" >&2 || true
  scripts/services.sh stop "$single" >&2 || true
  rm -rf -- "$single" "$cluster"
}
trap cleanup EXIT
scripts/services.sh start "$single" >&2
CLUSTER=citus scripts/services.sh start "$cluster" >&2
SINGLE_DATABASE_URL=$(. "$single/services.env"; echo "$DATABASE_URL")
CITUS_DATABASE_URL=$(. "$cluster/services.env"; echo "$DATABASE_URL")
REDIS_URL=$(. "$single/services.env"; echo "$REDIS_URL")
export SINGLE_DATABASE_URL CITUS_DATABASE_URL REDIS_URL
export DATABASE_URL=$SINGLE_DATABASE_URL
python3 bench/citus.py "$@"
