# Tenantry tasks. `just dev` runs everything locally; `just test` runs every test.
set shell := ["bash", "-euo", "pipefail", "-c"]
set dotenv-load := false

# Without DATABASE_URL/REDIS_URL, use (and start if needed) the throwaway services in .dev/.
services := 'if [ -z "${DATABASE_URL:-}" ] || [ -z "${REDIS_URL:-}" ]; then if [ -f .env ]; then set -a; . ./.env; set +a; fi; fi; if [ -z "${DATABASE_URL:-}" ] || [ -z "${REDIS_URL:-}" ]; then scripts/services.sh start .dev >&2; . .dev/services.env; fi'

default:
    @just --list

# Start PostgreSQL + Redis (under .dev/ unless DATABASE_URL and REDIS_URL are set), migrate, create demo tenants, run server + worker.
dev:
    #!/usr/bin/env bash
    set -euo pipefail
    {{services}}
    export BASE_DOMAIN="${BASE_DOMAIN:-localhost}" BIND_ADDR="${BIND_ADDR:-127.0.0.1:8080}"
    export JWT_SECRET="${JWT_SECRET:-dev-only-secret-change-me-0123456789abcdef}"
    cargo build --bins
    target/debug/tenantctl migrate-schemas
    target/debug/tenantctl tenant create --name "Acme Inc" --slug acme --owner-email owner@acme.test \
      --owner-password demo-password-acme --plan professional --exists-ok
    target/debug/tenantctl tenant create --name "Globex Corporation" --slug globex --owner-email owner@globex.test \
      --owner-password demo-password-globex --plan starter --exists-ok
    url="http://${BIND_ADDR}"
    cat <<BANNER

    ======================================================================
     Tenantry dev server: $url   (API docs: $url/api/docs/)
     Demo tenants (Host header picks the tenant):
       acme.${BASE_DOMAIN}    owner@acme.test    / demo-password-acme
       globex.${BASE_DOMAIN}  owner@globex.test  / demo-password-globex

     TOKEN=\$(curl -s -H 'Host: acme.${BASE_DOMAIN}' -H 'Content-Type: application/json' \\
       -d '{"email":"owner@acme.test","password":"demo-password-acme"}' \\
       $url/api/v1/auth/token | python3 -c 'import sys,json; print(json.load(sys.stdin)["access_token"])')
     curl -s -H 'Host: acme.${BASE_DOMAIN}' -H "Authorization: Bearer \$TOKEN" $url/api/v1/projects
     curl -s -H 'Host: acme.${BASE_DOMAIN}' -H "Authorization: Bearer \$TOKEN" -H 'Content-Type: application/json' \\
       -d '{"name":"Website relaunch","status":"active"}' $url/api/v1/projects
     curl -s -H 'Host: ${BASE_DOMAIN}' -H 'Content-Type: application/json' \\
       -d '{"name":"Initech","slug":"initech","owner_email":"owner@initech.test","owner_password":"initech-password","plan":"free"}' \\
       $url/api/v1/register
    ======================================================================

    BANNER
    target/debug/tenantry-worker &
    worker=$!
    trap 'kill $worker 2>/dev/null || true; wait $worker 2>/dev/null || true' EXIT
    target/debug/tenantry-server

# Stop the services under .dev/ (data is kept).
dev-stop:
    scripts/services.sh stop .dev

# Stop the services under .dev/ and delete their data.
dev-reset: dev-stop
    rm -rf .dev

# Run every test in the workspace against a throwaway PostgreSQL + Redis.
test *ARGS:
    #!/usr/bin/env bash
    set -euo pipefail
    if cargo nextest --version >/dev/null 2>&1; then
      scripts/with-services.sh cargo nextest run --workspace --no-fail-fast {{ARGS}}
    else
      scripts/with-services.sh cargo test --workspace --no-fail-fast {{ARGS}}
    fi

# Migrate the public schema, then every tenant schema (--jobs N, --tenant SLUG, --check).
migrate-schemas *ARGS:
    {{services}}; cargo run -q --bin tenantctl -- migrate-schemas {{ARGS}}

# Run any tenantctl command, e.g. `just tenantctl tenant list`.
tenantctl *ARGS:
    {{services}}; cargo run -q --bin tenantctl -- {{ARGS}}

# Formatting and lints, as CI expects them.
lint:
    cargo fmt --all -- --check
    cargo clippy --workspace --all-targets -- -D warnings

# Benchmarks against a release build; results in bench/results/.
bench *ARGS:
    bash bench/run.sh {{ARGS}}
