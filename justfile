# Tenantry developer tasks: `just` lists them. `just dev` runs everything locally; `just test`
# runs every test against throwaway PostgreSQL + Redis.
set shell := ["bash", "-euo", "pipefail", "-c"]
# Recipe arguments reach the shell as "$@", so quoted arguments keep their spaces.
set positional-arguments := true
# Variables from .env are loaded; variables already in the environment win.
set dotenv-load := true

# DATABASE_URL and REDIS_URL from the environment (or .env) when both are set; otherwise the
# throwaway services in .dev/, started if needed (they keep running between runs).
dev_services := 'if [ -z "${DATABASE_URL:-}" ] || [ -z "${REDIS_URL:-}" ]; then scripts/services.sh start .dev >&2; . .dev/services.env; fi'
# The same, quietly, for commands that only need PostgreSQL.
db_services := 'if [ -z "${DATABASE_URL:-}" ]; then scripts/services.sh start .dev >/dev/null; . .dev/services.env; fi'

# List the recipes.
default:
    @just --justfile "{{justfile()}}" --list

# Every test in the workspace, then the API fuzzing (`just fuzz`), each against its own throwaway
# PostgreSQL + Redis. Extra args go to the test runner, and then only those tests run.
test *ARGS:
    #!/usr/bin/env bash
    set -euo pipefail
    if cargo nextest --version >/dev/null 2>&1; then
      runner=(cargo nextest run --workspace --no-fail-fast)
    else
      runner=(cargo test --workspace --no-fail-fast)
    fi
    scripts/with-services.sh "${runner[@]}" "$@"
    if [ $# -eq 0 ]; then
      scripts/with-services.sh scripts/fuzz.sh
    fi

# Tenant binding (pool of one, rotation, errors, cancellation), provisioning, migrations and drops
# under the advisory lock, HTTP isolation and routing, the placement commands and a tenant moved
# under write load, on a Citus cluster built from source by scripts/citus.sh when missing.
# Isolation and placement tests against a Citus coordinator + 2 workers (extra args go to the runner).
test-citus *ARGS:
    #!/usr/bin/env bash
    set -euo pipefail
    # Test names (substrings); the same list for nextest and for cargo test. `citus` takes every
    # test named citus_* (moves, the upgrade from one server, placement commands).
    tests=(
      no_way_of_ending_a_handle_leaks_its_search_path a_bound_connection_sees_only_its_schema
      a_dead_pooled_connection_is_replaced_at_checkout a_handle_left_in_a_failed_transaction
      an_exhausted_pool_answers_unavailable_quickly provisioning_is_all_or_nothing
      drop_tenant_removes_everything concurrent_runs_never_apply_a_migration_twice
      a_tenant_dropped_during_migrate_schemas_stays_dropped migrate_schemas_noop_check_and_resume
      the_database_holds_exactly_one_owner_per_company
      isolation:: routing:: citus
    )
    if cargo nextest --version >/dev/null 2>&1; then
      filter=$(IFS='|'; echo "${tests[*]}")
      runner=(cargo nextest run --workspace --no-fail-fast -E "test(/$filter/)")
    else
      runner=(cargo test --workspace --no-fail-fast -- "${tests[@]}")
    fi
    CLUSTER=citus scripts/with-services.sh "${runner[@]}" "$@"

# Schemathesis against the served OpenAPI document, every check, as a tenant owner (extra args go to `st run`).
fuzz *ARGS:
    scripts/with-services.sh scripts/fuzz.sh "$@"

# Local stack: services, migrations, demo tenants acme + globex (seeded once), then worker (background) and server (foreground; Ctrl-C stops both).
dev:
    #!/usr/bin/env bash
    set -euo pipefail
    {{dev_services}}
    export BASE_DOMAIN="${BASE_DOMAIN:-localhost}"
    export BIND_ADDR="${BIND_ADDR:-127.0.0.1:8080}"
    export JWT_SECRET="${JWT_SECRET:-dev-only-secret-change-me-0123456789abcdef}"
    # Emails: .eml files under .dev/mail (their links are also logged: MAIL_LOG_LINKS) unless SMTP_URL is set;
    # links point at this server. Exported, so the worker reads the same BASE_DOMAIN, LINK_SCHEME and
    # LINK_PORT for the links in its reminders and digests (WORKER_REMINDER_CRON, WORKER_OVERDUE_CRON).
    export MAIL_DIR="${MAIL_DIR:-$PWD/.dev/mail}"
    export MAIL_LOG_LINKS="${MAIL_LOG_LINKS:-true}"
    export LINK_SCHEME="${LINK_SCHEME:-http}"
    export LINK_PORT="${LINK_PORT:-${BIND_ADDR##*:}}"
    # GET /metrics of the server and, on a port of its own, of the worker.
    export METRICS_ADDR="${METRICS_ADDR:-127.0.0.1:9090}"
    worker_metrics="${WORKER_METRICS_ADDR:-127.0.0.1:9091}"
    bin="${CARGO_TARGET_DIR:-target}/debug"

    cargo build --bins
    "$bin/tenantctl" migrate-schemas
    "$bin/tenantctl" tenant create --name "Acme Inc" --slug acme --owner-email owner@acme.test \
      --owner-password 'demo-password-acme' --plan professional --exists-ok
    "$bin/tenantctl" tenant create --name "Globex Corporation" --slug globex --owner-email owner@globex.test \
      --owner-password 'demo-password-globex' --plan starter --exists-ok
    # Demo data, once: --if-empty leaves a tenant that has projects alone, so restarts add nothing.
    for slug in acme globex; do
      "$bin/tenantctl" tenant seed "$slug" --projects 6 --tasks-per-project 15 --members 4 --if-empty
    done

    # A URL curl can reach, also when the server binds every interface.
    port="${BIND_ADDR##*:}"
    host="${BIND_ADDR%:*}"
    case "$host" in 0.0.0.0 | "") host=127.0.0.1 ;; "[::]") host="[::1]" ;; esac
    url="http://$host:$port"
    base="$BASE_DOMAIN"
    shown_db=$(printf '%s' "${DATABASE_URL%%\?*}" | sed -E 's#://([^:/@]+):[^@]*@#://\1:***@#')
    shown_redis=$(printf '%s' "$REDIS_URL" | sed -E 's#://([^:/@]*):[^@]*@#://\1:***@#')
    tenants=$(printf '  %-8s %-24s %-20s %-22s %s\n' \
      "tenant" "Host header" "owner" "password" "plan" \
      "acme" "acme.$base" "owner@acme.test" "demo-password-acme" "professional" \
      "globex" "globex.$base" "owner@globex.test" "demo-password-globex" "starter")
    cat <<BANNER

    ==========================================================================================
      Tenantry dev stack   API: $url   docs: $url/api/docs/
      Metrics: http://$METRICS_ADDR/metrics (server)   http://$worker_metrics/metrics (worker)
      Database: $shown_db
      Redis:    $shown_redis
      The Host header picks the tenant: <slug>.$base for tenant APIs, $base for sign-up.

      Demo tenants:
    $tenants
      Seeded members (ada.lovelace@<slug>.test, grace.hopper@…, alan.turing@…, katherine.johnson@…)
      sign in with seed-password-<slug>.

      # Log in (token response):
      curl -s -H 'Host: acme.$base' -H 'Content-Type: application/json' -d '{"email":"owner@acme.test","password":"demo-password-acme"}' $url/api/v1/auth/token

      # Keep the token in TOKEN:
      TOKEN=\$(curl -s -H 'Host: acme.$base' -H 'Content-Type: application/json' -d '{"email":"owner@acme.test","password":"demo-password-acme"}' $url/api/v1/auth/token | sed -E 's/.*"access_token":"([^"]+)".*/\1/')

      # List and create projects of acme:
      curl -s -H 'Host: acme.$base' -H "Authorization: Bearer \$TOKEN" $url/api/v1/projects
      curl -s -H 'Host: acme.$base' -H "Authorization: Bearer \$TOKEN" -H 'Content-Type: application/json' -d '{"name":"Website relaunch","description":"New marketing site","status":"active"}' $url/api/v1/projects

      # The same token on another tenant's host is refused (403):
      curl -s -H 'Host: globex.$base' -H "Authorization: Bearer \$TOKEN" $url/api/v1/projects

      # Sign a new company up on the base host (the verification email lands in $MAIL_DIR):
      curl -s -H 'Host: $base' -H 'Content-Type: application/json' -d '{"name":"Initech","slug":"initech","owner_email":"owner@initech.test","owner_password":"demo-password-initech","plan":"starter"}' $url/api/v1/register

      # Ask for a password-reset link (always 202; the email is a file in $MAIL_DIR):
      curl -s -H 'Host: acme.$base' -H 'Content-Type: application/json' -d '{"email":"owner@acme.test"}' $url/api/v1/auth/password-reset

      Ctrl-C stops server and worker; PostgreSQL + Redis in .dev/ keep running (just dev-stop).
    ==========================================================================================

    BANNER

    METRICS_ADDR="$worker_metrics" "$bin/tenantry-worker" &
    worker=$!
    stop_worker() {
      if kill -0 "$worker" 2>/dev/null; then
        kill -TERM "$worker" 2>/dev/null || true
        wait "$worker" 2>/dev/null || true
      fi
    }
    trap stop_worker EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
    "$bin/tenantry-server"

# Stop the services in .dev/ (their data is kept for the next `just dev`).
dev-stop:
    scripts/services.sh stop .dev

# Stop the services in .dev/ and delete their data.
dev-reset:
    scripts/services.sh stop .dev
    rm -rf .dev

# Migrate the public schema, then every tenant schema (e.g. --jobs 8, --tenant acme, --check).
migrate-schemas *ARGS:
    @{{db_services}}; cargo run -q --bin tenantctl -- migrate-schemas "$@"

# Any tenantctl command, e.g. `just tenantctl tenant list`.
tenantctl *ARGS:
    @{{db_services}}; cargo run -q --bin tenantctl -- "$@"

# Formatting and clippy, as CI expects them.
lint:
    cargo fmt --all -- --check && cargo clippy --workspace --all-targets -- -D warnings

# Benchmarks (bench/run.sh); results land in bench/results/.
bench *ARGS:
    bash bench/run.sh "$@"

# Cost growth to 10,000 tenants in one database (bench/scale.sh); tenants are kept in .bench-scale/
# between runs (`--fresh` starts over). Results land in bench/results/scale-*.json.
bench-scale *ARGS:
    bash bench/scale.sh "$@"

# A flame graph of the release server under the list load: bench/results/flamegraph-list.svg
# (needs perf and inferno: `apt-get install linux-perf`, `cargo install inferno`).
profile:
    cargo build --release --bins
    scripts/with-services.sh python3 bench/profile.py

# List throughput and p99 on one server vs a Citus coordinator + 2 workers in the same run, and the time to move a tenant with 10,000 tasks (bench/citus.sh).
bench-citus *ARGS:
    bash bench/citus.sh "$@"
