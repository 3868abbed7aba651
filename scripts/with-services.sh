#!/usr/bin/env bash
# Runs CMD with a throwaway PostgreSQL + Redis in a fresh temporary directory, with DATABASE_URL,
# REDIS_URL, PG_BIN and PGPORT_TENANTRY exported, then stops them and deletes the directory.
# Exits with CMD's exit status.
#
#   scripts/with-services.sh CMD [ARGS...]
#   KEEP_SERVICES=1 scripts/with-services.sh CMD ...   keep the directory (data and logs) afterwards
set -euo pipefail

if [ $# -eq 0 ]; then
  echo "usage: $0 CMD [ARGS...]" >&2
  exit 2
fi

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
dir=$(mktemp -d "${TMPDIR:-/tmp}/tenantry-services.XXXXXX")

# shellcheck disable=SC2317 # invoked through the trap
cleanup() {
  local status=$?
  trap - EXIT INT TERM HUP
  "$here/services.sh" stop "$dir" >&2 || echo "with-services: could not stop the services in $dir" >&2
  if [ "${KEEP_SERVICES:-0}" = 1 ]; then
    echo "with-services: KEEP_SERVICES=1, kept $dir (logs: $dir/pg.log, $dir/redis.log)." >&2
    echo "with-services: restart with: scripts/services.sh start $dir   remove with: rm -rf $dir" >&2
  else
    rm -rf -- "$dir"
  fi
  exit "$status"
}
trap cleanup EXIT
trap 'exit 129' HUP
trap 'exit 130' INT
trap 'exit 143' TERM

# Service chatter goes to stderr so CMD's stdout stays clean.
"$here/services.sh" start "$dir" >&2
# shellcheck source=/dev/null
. "$dir/services.env"

status=0
"$@" || status=$?
exit "$status"
