#!/usr/bin/env bash
# Schemathesis (`st`, 4.x) against the served OpenAPI document with every check, as the owner of a
# fresh tenant, for every operation. Needs DATABASE_URL and REDIS_URL (run it through
# scripts/with-services.sh, as `just fuzz` and `just test` do). Exits non-zero on any failure.
#
#   scripts/with-services.sh scripts/fuzz.sh [extra st options]
#   FUZZ_MAX_EXAMPLES=100 FUZZ_SEED=$RANDOM just fuzz    more cases, another seed (default: fixed,
#                                                        so CI runs the same cases every time)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

command -v st >/dev/null 2>&1 || {
  echo "fuzz: the Schemathesis command \`st\` is not on PATH (README: Quick start)" >&2
  exit 2
}
: "${DATABASE_URL:?fuzz: DATABASE_URL is not set (run through scripts/with-services.sh)}"
: "${REDIS_URL:?fuzz: REDIS_URL is not set (run through scripts/with-services.sh)}"

cargo build -q --bins
bin="${CARGO_TARGET_DIR:-target}/debug"
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
work=$(mktemp -d "${TMPDIR:-/tmp}/tenantry-fuzz.XXXXXX")

export BASE_DOMAIN=fuzz.test
export BIND_ADDR="127.0.0.1:$port"
export JWT_SECRET="fuzz-only-secret-0123456789abcdef-0123456789"
export MAIL_DIR="$work/mail"
export LOG_FORMAT=json RUST_LOG="${RUST_LOG:-warn}"
# The fuzzer signs up, fails logins and asks for resets by the thousand from one address; the
# throttles are tested elsewhere, and here they would only lock the owner out.
export SIGNUP_RATE_PER_HOUR=0
export LOGIN_FAILURES_PER_ACCOUNT=1000000 LOGIN_FAILURES_PER_IP=1000000
export PASSWORD_RESETS_PER_ACCOUNT=1000000 PASSWORD_RESETS_PER_IP=1000000
# Rate limits stay on, with every plan's hourly quota raised far above what a run sends: the
# fuzzer, as the owner, also changes the plan (a downgrade to free applies at once on a company
# with no billing period), and free's 1,000 an hour would then answer 429 to the rest. The base
# host's per-address limit is raised like the throttles.
export ANON_REQUESTS_PER_HOUR=1000000

"$bin/tenantctl" migrate-schemas >/dev/null
psql -q -v ON_ERROR_STOP=1 "$DATABASE_URL" \
  -c "update public.plans set requests_per_hour = 1000000000 where requests_per_hour is not null" >/dev/null
email=owner@fuzz.test
password=fuzz-owner-password-1
"$bin/tenantctl" tenant create --name "Fuzz Inc" --slug acme --owner-email "$email" \
  --owner-password "$password" --plan professional >/dev/null

"$bin/tenantry-server" >"$work/server.log" 2>&1 &
server=$!
stop() {
  kill -TERM "$server" 2>/dev/null || true
  wait "$server" 2>/dev/null || true
  rm -rf -- "$work"
}
trap stop EXIT
url="http://127.0.0.1:$port"
for _ in $(seq 1 100); do
  curl -fs -o /dev/null "$url/health" && break
  kill -0 "$server" 2>/dev/null || { cat "$work/server.log" >&2; exit 1; }
  sleep 0.1
done

export FUZZ_URL="$url" FUZZ_HOST="acme.$BASE_DOMAIN" FUZZ_EMAIL="$email" FUZZ_PASSWORD="$password"

# A project for new tasks to belong to (hooks.py puts its id in their bodies); the operations on
# one row find theirs through the Location of the answers that created them (stateful phase).
api() { # METHOD PATH [BODY]: the JSON answer, as the owner
  curl -fsS -X "$1" -H "Host: $FUZZ_HOST" -H "Authorization: Bearer $token" \
    -H 'Content-Type: application/json' ${3:+-d "$3"} "$url/api/v1$2"
}
field() { python3 -c 'import json, sys; print(json.load(sys.stdin)[sys.argv[1]])' "$1"; }
token=$(curl -fsS -H "Host: $FUZZ_HOST" -H 'Content-Type: application/json' \
  -d "{\"email\":\"$email\",\"password\":\"$password\"}" "$url/api/v1/auth/token" | field access_token)
FUZZ_PROJECT_ID=$(api POST /projects '{"name":"Fuzzed project"}' | field id)
export FUZZ_PROJECT_ID
export SCHEMATHESIS_HOOKS=hooks PYTHONPATH="$PWD/scripts/fuzz${PYTHONPATH:+:$PYTHONPATH}"
status=0
st --config-file scripts/fuzz/schemathesis.toml run "$url/api/openapi.json" --url "$url" -H "Host: $FUZZ_HOST" --checks all \
  --max-examples "${FUZZ_MAX_EXAMPLES:-30}" --seed "${FUZZ_SEED:-20261201}" --workers 1 --no-color \
  "$@" || status=$?
if [ "$status" -ne 0 ]; then
  echo "fuzz: server log (last 40 lines):" >&2
  tail -n 40 "$work/server.log" >&2
fi
exit "$status"
