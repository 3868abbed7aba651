#!/usr/bin/env bash
# `just bench`: release build, throwaway PostgreSQL + Redis, then bench/run.py. Results land in
# bench/results/. Needs wrk and pgbench (apt-get install wrk postgresql-client).
set -euo pipefail
cd "$(dirname "$0")/.."
command -v wrk >/dev/null || { echo "bench: wrk is missing (apt-get install wrk)" >&2; exit 1; }
command -v pgbench >/dev/null || { echo "bench: pgbench is missing (apt-get install postgresql-client)" >&2; exit 1; }
cargo build --release --bins
exec scripts/with-services.sh python3 bench/run.py "$@"
