#!/usr/bin/env python3
"""Cost growth to 10,000 tenants in one database (`just bench-scale`).

Run through bench/scale.sh, which builds the release binaries and starts PostgreSQL and Redis in
a directory that is kept between runs (BENCH_SCALE_DIR, default .bench-scale/), so the tenants
provisioned by one run are reused by the next; `just bench-scale --fresh` starts over.

1. provisioning: tenants `s00000`… up to BENCH_SCALE_TENANTS (default 10,000), each a real
   sign-up through the API (schema, all tenant migrations, domain, membership, subscription), by
   one account with an account token (no password hashing per tenant, so what is timed is the
   tenant's creation), 4 at a time; 10 projects each
2. list: a fresh server (default routing settings) is timed from start to /health, then wrk
   GET /api/v1/projects?limit=20 at 64 connections rotating over every tenant at once for 5 s
   (a restarted server must route them all: non-2xx counted), then over 10 tenants, then over
   every tenant (one token per tenant, made with /auth/switch), p50/p99 and req/s
3. sign-up at N tenants: 20 sequential POST /api/v1/register with new owners (argon2id), p50/p99
4. migrate-schemas over every tenant: a no-op run, then one new trivial tenant migration (undone
   afterwards so the kept database stays at the real head)
5. the catalogue: pg_class rows, pg_class + pg_attribute sizes, database size; server RSS

BENCH_SCALE_PROVISION_ONLY=1 stops after step 1 (provision on a busy machine, measure later);
BENCH_SCALE_SKIP_MIGRATE=1 skips step 4.
"""

import json
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import run  # noqa: E402  (the shared helpers of `just bench`)
from run import BASE, Server, log, machine_facts, percentile, psql, tenantctl, wrk  # noqa: E402

TENANTS = int(os.environ.get("BENCH_SCALE_TENANTS", "10000"))
PROJECTS = 10
FEW = 10
ACCOUNT_EMAIL = "operator@bench.test"
ACCOUNT_PASSWORD = "bench-scale-password-0"


def slug(i):
    return f"s{i:05d}"


def query(url, sql):
    import subprocess
    out = subprocess.run(["psql", "-qAt", "-v", "ON_ERROR_STOP=1", url, "-c", sql],
                         check=True, capture_output=True, text=True).stdout
    return out.strip()


def account_token(server):
    """The account that owns every scale tenant: signed up with the first one if needed."""
    status, data = server.request("POST", "/api/v1/auth/token", BASE,
                                  {"email": ACCOUNT_EMAIL, "password": ACCOUNT_PASSWORD})
    if status == 401:
        body = {"name": "s00000 Inc", "slug": slug(0), "owner_email": ACCOUNT_EMAIL,
                "owner_password": ACCOUNT_PASSWORD, "plan": "free"}
        status, data = server.request("POST", "/api/v1/register", BASE, body)
        if status != 201:
            raise RuntimeError(f"register {slug(0)}: {status} {data[:200]}")
        status, data = server.request("POST", "/api/v1/auth/token", BASE,
                                      {"email": ACCOUNT_EMAIL, "password": ACCOUNT_PASSWORD})
    if status != 200:
        raise RuntimeError(f"account login: {status} {data[:200]}")
    # As if the verification email had been clicked: an unverified account may only enter the
    # organization it was created in.
    psql(server.database_url, "update public.users set email_verified_at = now() "
                              f"where lower(email) = '{ACCOUNT_EMAIL}' and email_verified_at is null")
    return json.loads(data)["access_token"]


def provision(server, url):
    # The account first: on a fresh database signing it up creates s00000.
    account_token(server)
    existing = set(query(url, "select slug from public.companies where slug ~ '^s[0-9]{5}$'").split())
    missing = [slug(i) for i in range(TENANTS) if slug(i) not in existing]
    log(f"1. provisioning: {len(existing)} tenants kept, {len(missing)} to create")
    times = []

    def one(s):
        import http.client
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
        t = time.perf_counter()
        status, data = server.request("POST", "/api/v1/register", BASE,
                                      {"name": f"{s} Inc", "slug": s, "plan": "free"},
                                      token=account, conn=conn)
        elapsed = (time.perf_counter() - t) * 1000
        conn.close()
        if status != 201:
            raise RuntimeError(f"register {s}: {status} {data[:200]}")
        return elapsed

    t = time.perf_counter()
    done = 0
    with ThreadPoolExecutor(max_workers=4) as pool:
        # In chunks, each with a fresh account token (they expire after 15 minutes).
        for start in range(0, len(missing), 1000):
            account = account_token(server)
            for elapsed in pool.map(one, missing[start:start + 1000]):
                times.append(elapsed)
                done += 1
                if done % 500 == 0:
                    log(f"   {done}/{len(missing)} created, {done / (time.perf_counter() - t):.1f}/s")
    seconds = time.perf_counter() - t
    seed_projects(url)
    result = {"created": len(missing), "kept": len(existing), "concurrency": 4}
    if times:
        result.update({"seconds": round(seconds, 1), "per_second": round(len(missing) / seconds, 1),
                       "p50_ms": round(percentile(times, 50), 1),
                       "p99_ms": round(percentile(times, 99), 1)})
    return result


def seed_projects(url):
    """PROJECTS projects in every scale tenant that has none, in one server-side loop."""
    owner = query(url, f"select id from public.users where lower(email) = '{ACCOUNT_EMAIL}'")
    psql(url, f"""
do $$
declare s text;
begin
  for s in select schema_name from public.companies where slug ~ '^s[0-9]{{5}}$'
  loop
    execute format('insert into %I.projects (id, name, owner_id) '
                   'select gen_random_uuid(), ''Project '' || g, %L::uuid '
                   'from generate_series(1, {PROJECTS}) g '
                   'where not exists (select 1 from %I.projects)', s, '{owner}', s);
    commit;  -- one tenant at a time: 10,000 tables' locks do not fit in one transaction
  end loop;
end $$""")


def tokens_for(server, account, slugs):
    def one(s):
        status, data = server.request("POST", "/api/v1/auth/switch", BASE, {"slug": s}, token=account)
        if status != 200:
            raise RuntimeError(f"switch {s}: {status} {data[:200]}")
        return s, json.loads(data)["access_token"]
    with ThreadPoolExecutor(max_workers=4) as pool:
        return dict(pool.map(one, slugs))


def signup_at_scale(server, count=20):
    import http.client
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    stamp = int(time.time())
    times = []
    for i in range(count):
        s = f"x{stamp % 100000:05d}{i:02d}"
        t = time.perf_counter()
        run.register(server, s, conn=conn)
        times.append((time.perf_counter() - t) * 1000)
    conn.close()
    return {"requests": count, "p50_ms": round(percentile(times, 50), 1),
            "p99_ms": round(percentile(times, 99), 1), "max_ms": round(max(times), 1),
            "first_ms": round(times[0], 1)}


def catalogue(url):
    row = query(url, "select (select count(*) from pg_class), "
                     "pg_total_relation_size('pg_catalog.pg_class'), "
                     "pg_total_relation_size('pg_catalog.pg_attribute'), "
                     "pg_database_size(current_database()), "
                     "(select count(*) from public.companies)").split("|")
    mib = lambda b: round(int(b) / 1024 / 1024, 1)  # noqa: E731
    return {"pg_class_rows": int(row[0]), "pg_class_mib": mib(row[1]), "pg_attribute_mib": mib(row[2]),
            "database_mib": mib(row[3]), "companies": int(row[4])}


def undo_trivial_migration(url):
    """Takes the bench's trivial migration out of every schema again (the kept database must stay
    at the real head for the next run and the real binaries)."""
    head = int(query(url, "select max(schema_version) from public.companies"))
    psql(url, f"""
do $$
declare s text;
begin
  for s in select schema_name from public.companies loop
    execute format('drop table if exists %I.bench_trivial', s);
    execute format('delete from %I.refinery_schema_history where version = {head}', s);
    commit;
  end loop;
  update public.companies set schema_version = {head - 1} where schema_version = {head};
end $$""")


def main():
    url = os.environ["DATABASE_URL"]
    results = {"date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "machine": machine_facts(),
               "tenants_wanted": TENANTS}
    log("public schema")
    tenantctl(url, "migrate-schemas", "--jobs", "4")
    psql(url, "update public.plans set requests_per_hour = null, max_members = null, "
              "max_projects = null, max_storage_mb = null")
    server = Server(url)
    try:
        results["provisioning"] = provision(server, url)
        log(f"   {results['provisioning']}")
    finally:
        server.stop()
    results["catalogue"] = catalogue(url)
    log(f"   {results['catalogue']}")
    if os.environ.get("BENCH_SCALE_PROVISION_ONLY"):
        print(json.dumps(results, indent=2))
        return 0
    slugs = [slug(i) for i in range(TENANTS)]
    # Tokens first, from a server of their own, so that the measured server is a cold one.
    server = Server(url)
    try:
        account = account_token(server)
        log(f"2. list over {FEW} tenants, then over {len(slugs)}: tokens")
        tokens = tokens_for(server, account, slugs)
    finally:
        server.stop()
    # A fresh server for the measurements, with the default routing settings: its RSS is what
    # serving N tenants costs, and its first seconds show whether a restarted server routes
    # every tenant at once (ROUTING_MISSES_PER_SEC bounds lookups of hosts it does not know).
    t = time.perf_counter()
    server = Server(url)
    try:
        results["server_start_s"] = round(time.perf_counter() - t, 2)
        results["rss_mib"] = {"start": server.rss_mib()}
        few = slugs[:FEW]
        results["cold_all"] = wrk(server, "/api/v1/projects?limit=20", slugs, tokens, seconds=5)
        log(f"   cold server over {len(slugs)} (every host at once): {results['cold_all']}")
        wrk(server, "/api/v1/projects?limit=20", few, tokens, seconds=3)  # warm-up
        results["list_few"] = wrk(server, "/api/v1/projects?limit=20", few, tokens)
        log(f"   over {FEW}: {results['list_few']}")
        results["list_all"] = wrk(server, "/api/v1/projects?limit=20", slugs, tokens)
        log(f"   over {len(slugs)}: {results['list_all']}")
        results["rss_mib"]["after_list_load"] = server.rss_mib()
        log("3. sign-up at scale: 20 sequential registrations")
        results["signup"] = signup_at_scale(server)
        log(f"   {results['signup']}")
        results["rss_mib"]["end"] = server.rss_mib()
    finally:
        server.stop()
    if os.environ.get("BENCH_SCALE_SKIP_MIGRATE"):
        results["migrate"] = {"skipped": True}
    else:
        log("4. migrate-schemas over every tenant")
        try:
            results["migrate"] = run.bench_migrations(url, jobs=int(os.environ.get("BENCH_JOBS", "8")))
        finally:
            undo_trivial_migration(url)
        log(f"   {results['migrate']}")
    few_p99, all_p99 = results["list_few"]["p99_ms"], results["list_all"]["p99_ms"]
    results["list_p99_growth"] = round(all_p99 / few_p99 - 1, 3)
    targets = {
        "cold_server_no_errors": results["cold_all"]["non_2xx"] == 0
        and results["cold_all"]["socket_errors"] == 0,
        "list_p99_within_20pct": results["list_p99_growth"] <= 0.20,
        "signup_p50_le_100ms": results["signup"]["p50_ms"] <= 100,
    }
    if "noop_s" in results["migrate"]:
        targets["migrate_noop_le_1s"] = results["migrate"]["noop_s"] <= 1
        targets["migrate_new_le_60s"] = results["migrate"]["new_migration_s"] <= 60
    results["targets_met"] = targets
    out_dir = run.ROOT / "bench" / "results"
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    (out_dir / f"scale-{stamp}.json").write_text(json.dumps(results, indent=2) + "\n")
    (out_dir / "scale-latest.json").write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
