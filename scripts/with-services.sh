#!/usr/bin/env bash
# Runs a command with a throwaway PostgreSQL + Redis in a temporary directory, exported as
# DATABASE_URL and REDIS_URL, and removes everything afterwards (KEEP_SERVICES=1 keeps it).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
dir=$(mktemp -d -t tenantry-services.XXXXXX)
cleanup() {
  "$here/services.sh" stop "$dir" || true
  if [ "${KEEP_SERVICES:-0}" = 1 ]; then echo "services: kept in $dir"; else rm -rf "$dir"; fi
}
trap cleanup EXIT
"$here/services.sh" start "$dir"
# shellcheck disable=SC1091
. "$dir/services.env"
set +e
"$@"
status=$?
set -e
exit $status
