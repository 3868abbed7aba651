#!/usr/bin/env bash
# `just bench-scale [--fresh]`: release build, PostgreSQL + Redis kept in BENCH_SCALE_DIR
# (default .bench-scale/) so the 10,000 tenants one run provisions are reused by the next, then
# bench/scale.py. `--fresh` deletes the kept services first. Results land in bench/results/.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v wrk >/dev/null || { echo "bench-scale: wrk is missing (apt-get install wrk)" >&2; exit 1; }
dir=${BENCH_SCALE_DIR:-.bench-scale}
if [ "${1:-}" = "--fresh" ]; then
  scripts/services.sh stop "$dir" >/dev/null 2>&1 || true
  rm -rf "$dir"
fi
cargo build --release --bins
scripts/services.sh start "$dir" >&2
trap 'scripts/services.sh stop "$dir" >&2' EXIT
set -a; . "$dir/services.env"; set +a
python3 bench/scale.py
