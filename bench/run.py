#!/usr/bin/env python3
"""Tenantry benchmarks against a release build on throwaway local services.

Run through `just bench` (bench/run.sh), which starts PostgreSQL and Redis and exports
DATABASE_URL and REDIS_URL. Every load targets 127.0.0.1 and is bounded in time.

1. signup: 50 sequential POST /api/v1/register (real argon2id hashing) - p50/p99
2. throughput: wrk GET /api/v1/projects?limit=20 over 100 tenants x 50 projects, beside
   pgbench -S (prepared) on the same server in the same run
3. binding cost: the same list through a bench-only route that skips tenant binding
4. migrate-schemas over 1,000 tenants: a no-op run, then one new trivial tenant migration
5. server RSS (VmRSS) at start, after the 1,050 sign-ups, and after the list loads
6. work inside a tenant: GET /api/v1/tasks?assignee=me&status=todo,in_progress&ordering=due_at
   and GET /api/v1/dashboard over 100 tenants x 2,000 tasks; a CSV export of 100,000 tasks
   (rows/s, server RSS growth sampled during the export)

7. rate-limit cost: the list of section 2 against a server with RATE_LIMITS=on (every plan's
   quota raised so nothing trips: the limiter still runs its Redis script on every request) and
   one with RATE_LIMITS=off, 3 interleaved pairs of 5 s runs, medians; the cost is
   1 - on / off (target <= 10 %)

BENCH_SECTIONS=work runs only section 6 (with pgbench beside it), on 101 tenants;
BENCH_SECTIONS=ratelimit runs only section 7, on 101 tenants.
"""

import http.client
import json
import os
import platform
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RELEASE = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target")) / "release"
BASE = "bench.test"
TENANTS = int(os.environ.get("BENCH_TENANTS", "1000"))
LIST_TENANTS = 100
PROJECTS_PER_TENANT = 50
WRK_SECONDS = int(os.environ.get("BENCH_WRK_SECONDS", "10"))
WRK_CONNECTIONS = 64
TASKS_PER_TENANT = 2000
EXPORT_TASKS = 100_000
SECTIONS = os.environ.get("BENCH_SECTIONS", "all")


def log(msg):
    print(f"[bench] {msg}", flush=True)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def db_url(database):
    base = os.environ["DATABASE_URL"].rsplit("/", 1)[0]
    return f"{base}/{database}"


def psql(url, sql):
    subprocess.run(["psql", "-q", "-v", "ON_ERROR_STOP=1", url, "-c", sql], check=True,
                   stdout=subprocess.DEVNULL)


def percentile(values, p):
    values = sorted(values)
    k = (len(values) - 1) * p / 100
    lo, hi = int(k), min(int(k) + 1, len(values) - 1)
    return values[lo] + (values[hi] - values[lo]) * (k - lo)


class Server:
    def __init__(self, database_url, bench_routes=False, rate_limits=True):
        self.port = free_port()
        # Every sign-up comes from one address: the base host's per-address limit is raised (the
        # plans' quotas are raised in the database, see main), the limiter stays on unless asked.
        env = dict(os.environ, DATABASE_URL=database_url, BASE_DOMAIN=BASE,
                   ANON_REQUESTS_PER_HOUR="1000000000", RATE_LIMITS="on" if rate_limits else "off",
                   BIND_ADDR=f"127.0.0.1:{self.port}", RUST_LOG="warn",
                   JWT_SECRET="bench-secret-bench-secret-bench-secret-0",
                   DB_POOL_SIZE=os.environ.get("BENCH_DB_POOL_SIZE", "16"), SIGNUP_RATE_PER_HOUR="0", TENANTRY_BENCH_ROUTES="1" if bench_routes else "0")
        self.log = open(tempfile.mktemp(prefix="tenantry-bench-server-"), "w")
        self.proc = subprocess.Popen([str(RELEASE / "tenantry-server")], env=env,
                                     stdout=self.log, stderr=subprocess.STDOUT)
        for _ in range(200):
            try:
                if self.request("GET", "/health", host=BASE)[0] == 200:
                    return
            except OSError:
                pass
            time.sleep(0.05)
        raise RuntimeError("server did not start")

    def request(self, method, path, host, body=None, token=None, conn=None):
        c = conn or http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        headers = {"Host": host}
        if body is not None:
            headers["Content-Type"] = "application/json"
        if token:
            headers["Authorization"] = f"Bearer {token}"
        c.request(method, path, body=json.dumps(body) if body is not None else None, headers=headers)
        r = c.getresponse()
        data = r.read()
        if conn is None:
            c.close()
        return r.status, data

    def rss_mib(self):
        """The server's resident set size now, from /proc."""
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return round(int(line.split()[1]) / 1024, 1)
        return None

    def stop(self):
        self.proc.terminate()
        self.proc.wait(timeout=15)


def register(server, slug, conn=None):
    body = {"name": f"{slug} Inc", "slug": slug, "owner_email": f"owner@{slug}.test",
            "owner_password": f"password-of-{slug}", "plan": "starter"}
    status, data = server.request("POST", "/api/v1/register", BASE, body, conn=conn)
    if status != 201:
        raise RuntimeError(f"register {slug}: {status} {data[:200]}")


def login(server, slug):
    status, data = server.request("POST", "/api/v1/auth/token", f"{slug}.{BASE}",
                                  {"email": f"owner@{slug}.test", "password": f"password-of-{slug}"})
    if status != 200:
        raise RuntimeError(f"login {slug}: {status} {data[:200]}")
    return json.loads(data)["access_token"]


def bench_signup(server):
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    times = []
    for i in range(50):
        t = time.perf_counter()
        register(server, f"signup{i:04d}", conn=conn)
        times.append((time.perf_counter() - t) * 1000)
    conn.close()
    return {"requests": 50, "p50_ms": round(percentile(times, 50), 1),
            "p99_ms": round(percentile(times, 99), 1), "max_ms": round(max(times), 1),
            "mean_ms": round(statistics.mean(times), 1)}


def create_tenants(server, count):
    def one(i):
        register(server, f"t{i:05d}")
    with ThreadPoolExecutor(max_workers=4) as pool:
        list(pool.map(one, range(count)))


def seed_projects(url, slugs):
    stmts = []
    for slug in slugs:
        schema = "tenant_" + slug.replace("-", "_")
        stmts.append(
            f"insert into {schema}.projects (id, name, description, status, owner_id) "
            f"select gen_random_uuid(), 'project ' || g, 'seeded for the benchmark', 'active', "
            f"(select m.user_id from public.memberships m join public.companies c on c.id = m.company_id "
            f" where c.slug = '{slug}' and m.role = 'owner') from generate_series(1, {PROJECTS_PER_TENANT}) g;")
    psql(url, "\n".join(stmts))


def seed_tasks(url, slugs, per_tenant):
    """`per_tenant` tasks in each tenant, spread over its projects: every status and priority,
    a third assigned to the owner, due dates from 30 days ago to 30 days ahead."""
    stmts = []
    for slug in slugs:
        schema = "tenant_" + slug.replace("-", "_")
        owner = (f"(select m.user_id from public.memberships m join public.companies c on c.id = m.company_id "
                 f"where c.slug = '{slug}' and m.role = 'owner')")
        stmts.append(f"""
with p as (select array_agg(id order by id) as ids from {schema}.projects),
     o as (select {owner} as id),
     g as (select g, (array['todo','in_progress','in_review','done','cancelled'])[1 + g % 5] as status
             from generate_series(1, {per_tenant}) g)
insert into {schema}.tasks (id, project_id, title, description, status, priority, assignee_id,
                            created_by, due_at, completed_at, tags, position)
select gen_random_uuid(), p.ids[1 + g.g % cardinality(p.ids)], 'task ' || g.g,
       'seeded for the benchmark, with a description of some length', g.status,
       (array['low','medium','high','urgent'])[1 + g.g % 4],
       case when g.g % 3 = 0 then o.id end, o.id,
       now() + ((g.g % 61) - 30) * interval '1 day',
       case when g.status = 'done' then now() end, array['bench'], g.g
  from g, p, o;
analyze {schema}.tasks;""")
    psql(url, "\n".join(stmts))


def bench_export(server, slug, token):
    """Streams the export of `slug`'s tasks, sampling the server's RSS every 5 ms."""
    import threading
    samples = []
    stop = threading.Event()

    def sample():
        while not stop.is_set():
            samples.append(server.rss_mib())
            time.sleep(0.005)

    before = server.rss_mib()
    sampler = threading.Thread(target=sample)
    sampler.start()
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=120)
    t = time.perf_counter()
    conn.request("GET", "/api/v1/tasks/export", headers={
        "Host": f"{slug}.{BASE}", "Authorization": f"Bearer {token}", "Accept": "text/csv"})
    r = conn.getresponse()
    size, lines = 0, 0
    while True:
        chunk = r.read(1 << 16)
        if not chunk:
            break
        size += len(chunk)
        lines += chunk.count(b"\n")  # no seeded cell holds a line break
    elapsed = time.perf_counter() - t
    stop.set()
    sampler.join()
    conn.close()
    rows = lines - 1  # the header
    peak = max(s for s in samples if s is not None)
    return {"status": r.status, "rows": rows, "bytes": size, "seconds": round(elapsed, 3),
            "rows_per_s": round(rows / elapsed), "rss_before_mib": before, "rss_peak_mib": peak,
            "rss_growth_mib": round(peak - before, 1)}


def bench_rate_limit_cost(server, url, slugs, tokens):
    """Section 7: the list with the limiter on (this server) and off (a second server on the same
    database), interleaved so both see the same machine load."""
    off = Server(url, rate_limits=False)
    try:
        on_rps, off_rps = [], []
        for _ in range(int(os.environ.get("BENCH_RATELIMIT_PAIRS", "3"))):
            on_rps.append(wrk(server, "/api/v1/projects?limit=20", slugs, tokens, seconds=5)["req_per_s"])
            off_rps.append(wrk(off, "/api/v1/projects?limit=20", slugs, tokens, seconds=5)["req_per_s"])
    finally:
        off.stop()
    on_median, off_median = statistics.median(on_rps), statistics.median(off_rps)
    return {"on_req_per_s": on_rps, "off_req_per_s": off_rps, "on_median": on_median,
            "off_median": off_median, "on_to_off_ratio": round(on_median / off_median, 3),
            "cost": round(1 - on_median / off_median, 3)}


def bench_work(server, url, slugs, tokens, export_slug):
    log(f"6. work: seeding {len(slugs)} tenants x {TASKS_PER_TENANT} tasks, and {EXPORT_TASKS} in {export_slug}")
    seed_projects(url, [export_slug])
    seed_tasks(url, slugs, TASKS_PER_TENANT)
    seed_tasks(url, [export_slug], EXPORT_TASKS)
    out = {"tenants": len(slugs), "tasks_per_tenant": TASKS_PER_TENANT}
    path = "/api/v1/tasks?assignee=me&status=todo,in_progress&ordering=due_at"
    out["task_list"] = wrk(server, path, slugs, tokens)
    out["task_list"]["path"] = path
    log(f"   task list {out['task_list']}")
    out["dashboard"] = wrk(server, "/api/v1/dashboard", slugs, tokens)
    log(f"   dashboard {out['dashboard']}")
    out["export"] = bench_export(server, export_slug, login(server, export_slug))
    log(f"   export {out['export']}")
    return out


def wrk(server, path, slugs, tokens, seconds=WRK_SECONDS):
    script = tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False)
    entries = ",\n".join(f'{{"{s}.{BASE}", "{tokens[s]}"}}' for s in slugs)
    script.write(f"""
local tenants = {{
{entries}
}}
local n = #tenants
local i = 0
request = function()
  i = i + 1
  local t = tenants[(i % n) + 1]
  return wrk.format("GET", "{path}", {{ ["Host"] = t[1], ["Authorization"] = "Bearer " .. t[2] }})
end
local errors = 0
response = function(status, headers, body)
  if status ~= 200 then errors = errors + 1 end
end
done = function(summary, latency, requests)
  io.write(string.format("JSON {{\\"requests\\": %d, \\"duration_us\\": %d, \\"p50_us\\": %d, \\"p99_us\\": %d, \\"non2xx\\": %d, \\"socket_errors\\": %d}}\\n",
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    summary.errors.status, summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout))
end
""")
    script.close()
    out = subprocess.run(["wrk", "-t2", f"-c{WRK_CONNECTIONS}", f"-d{seconds}s", "--latency",
                          "-s", script.name, f"http://127.0.0.1:{server.port}{path}"],
                         check=True, capture_output=True, text=True).stdout
    os.unlink(script.name)
    data = json.loads(out.split("JSON ", 1)[1].splitlines()[0])
    rps = data["requests"] / (data["duration_us"] / 1e6)
    return {"req_per_s": round(rps), "p50_ms": round(data["p50_us"] / 1000, 2),
            "p99_ms": round(data["p99_us"] / 1000, 2), "requests": data["requests"],
            "non_2xx": data["non2xx"], "socket_errors": data["socket_errors"]}


def pgbench(url):
    psql(db_url("postgres"), "drop database if exists pgbench")
    psql(db_url("postgres"), "create database pgbench")
    subprocess.run(["pgbench", "-i", "-q", "-s", "10", db_url("pgbench")], check=True,
                   capture_output=True)
    out = subprocess.run(["pgbench", "-S", "-M", "prepared", "-c", str(WRK_CONNECTIONS), "-j", "2",
                          "-T", str(WRK_SECONDS), db_url("pgbench")],
                         check=True, capture_output=True, text=True).stdout
    tps = float(re.search(r"tps = ([0-9.]+)", out).group(1))
    return {"tps": round(tps), "clients": WRK_CONNECTIONS, "mode": "-S -M prepared, scale 10"}


def tenantctl(url, *args, binary=None):
    t = time.perf_counter()
    p = subprocess.run([str(binary or RELEASE / "tenantctl"), *args], env=dict(os.environ, DATABASE_URL=url),
                       capture_output=True, text=True)
    elapsed = time.perf_counter() - t
    if p.returncode != 0:
        raise RuntimeError(f"tenantctl {args}: {p.returncode}\n{p.stdout[-2000:]}\n{p.stderr[-2000:]}")
    summary = [l for l in p.stdout.splitlines() if l.startswith("summary:")]
    return elapsed, summary[-1] if summary else ""


def bench_migrations(url, jobs):
    noop_s, noop_summary = tenantctl(url, "migrate-schemas", "--jobs", str(jobs))
    noop2_s, _ = tenantctl(url, "migrate-schemas", "--jobs", str(jobs))
    # One new trivial tenant migration, built into a scratch copy of tenantctl so the working
    # tree is never touched.
    scratch = Path(tempfile.mkdtemp(prefix="tenantry-bench-src-"))
    try:
        for item in ["Cargo.toml", "Cargo.lock", "crates", "migrations-public", "migrations-tenant"]:
            src = ROOT / item
            (shutil.copytree if src.is_dir() else shutil.copy2)(src, scratch / item)
        versions = [int(re.match(r"V(\d+)__", f.name).group(1)) for f in (scratch / "migrations-tenant").glob("V*.sql")]
        new = max(versions) + 1
        (scratch / "migrations-tenant" / f"V{new}__bench_trivial.sql").write_text(
            "create table bench_trivial (id integer primary key);\n")
        log(f"building tenantctl with tenant migration V{new} (scratch copy)")
        subprocess.run(["cargo", "build", "--release", "-q", "--bin", "tenantctl"], cwd=scratch, check=True,
                       env=dict(os.environ, CARGO_TARGET_DIR=str(ROOT / "target" / "bench-scratch")))
        binary = ROOT / "target" / "bench-scratch" / "release" / "tenantctl"
        apply_s, apply_summary = tenantctl(url, "migrate-schemas", "--jobs", str(jobs), binary=binary)
        after_s, _ = tenantctl(url, "migrate-schemas", "--jobs", str(jobs), binary=binary)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    tenants = int(re.search(r"\+ (\d+) tenants", apply_summary).group(1))
    return {"tenants": tenants, "jobs": jobs, "noop_s": round(min(noop_s, noop2_s), 3),
            "noop_summary": noop_summary, "new_migration_s": round(apply_s, 2),
            "new_migration_summary": apply_summary, "noop_after_s": round(after_s, 3)}


def machine_facts():
    cpu = ""
    try:
        cpu = next(l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name"))
    except (OSError, StopIteration):
        pass
    mem = ""
    try:
        mem = next(l.split(":", 1)[1].strip() for l in open("/proc/meminfo") if l.startswith("MemTotal"))
    except (OSError, StopIteration):
        pass
    pg = subprocess.run(["psql", "-tAc", "show server_version", os.environ["DATABASE_URL"]],
                        capture_output=True, text=True).stdout.strip()
    rustc = subprocess.run(["rustc", "--version"], capture_output=True, text=True).stdout.strip()
    return {"cores": os.cpu_count(), "cpu": cpu, "memory": mem, "kernel": platform.release(),
            "postgres": pg, "rustc": rustc,
            "note": "server, PostgreSQL (fsync=off, throwaway) and the load generator share the machine"}


def main():
    url = os.environ["DATABASE_URL"]
    everything = SECTIONS == "all"
    results = {"date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "machine": machine_facts(),
               "sections": SECTIONS}
    log("public schema")
    tenantctl(url, "migrate-schemas")
    # Limits stay on, far above what the loads send (section 7 measures what they cost).
    psql(url, "update public.plans set requests_per_hour = 1000000000 where requests_per_hour is not null")
    server = Server(url, bench_routes=True)
    try:
        results["rss_mib"] = {"start": server.rss_mib()}
        if everything:
            log("1. signup: 50 sequential registrations")
            results["signup"] = bench_signup(server)
            log(f"   {results['signup']}")
        tenants = TENANTS if everything else LIST_TENANTS + 1
        log(f"creating {tenants} tenants")
        t = time.perf_counter()
        create_tenants(server, tenants)
        results["tenant_creation"] = {"tenants": tenants, "seconds": round(time.perf_counter() - t, 1),
                                      "concurrency": 4}
        results["rss_mib"]["after_signups"] = server.rss_mib()
        slugs = [f"t{i:05d}" for i in range(LIST_TENANTS)]
        seed_projects(url, slugs)
        tokens = {s: login(server, s) for s in slugs}
        if everything:
            log("2. throughput: wrk list over 100 tenants, and pgbench -S")
            results["list"] = wrk(server, "/api/v1/projects?limit=20", slugs, tokens)
            log(f"   list {results['list']}")
            log("3. binding cost: 3 interleaved pairs of 5 s runs, bound vs. unbound, medians")
            bound, unbound = [], []
            for _ in range(3):
                bound.append(wrk(server, "/api/v1/projects?limit=20", slugs, tokens, seconds=5)["req_per_s"])
                unbound.append(wrk(server, "/api/v1/_bench/unbound-projects", slugs, tokens, seconds=5)["req_per_s"])
            results["binding"] = {"bound_req_per_s": bound, "unbound_req_per_s": unbound,
                                  "bound_median": statistics.median(bound),
                                  "unbound_median": statistics.median(unbound)}
            log(f"   {results['binding']}")
            results["rss_mib"]["after_list_load"] = server.rss_mib()
            log(f"   server RSS {results['rss_mib']}")
        if everything or SECTIONS == "ratelimit":
            log("7. rate-limit cost: 3 interleaved pairs of 5 s list runs, limiter on vs. off, medians")
            results["rate_limit"] = bench_rate_limit_cost(server, url, slugs, tokens)
            log(f"   {results['rate_limit']}")
        if SECTIONS == "ratelimit":
            server.stop()
            return report(results, {"rate_limit_cost_le_10pct": results["rate_limit"]["cost"] <= 0.10},
                          everything)
        results["work"] = bench_work(server, url, slugs, tokens, export_slug=f"t{LIST_TENANTS:05d}")
        results["rss_mib"]["after_work"] = server.rss_mib()
    finally:
        if server.proc.poll() is None:
            server.stop()
    results["pgbench"] = pgbench(url)
    log(f"   pgbench {results['pgbench']}")
    tps = results["pgbench"]["tps"]
    work = results["work"]
    work["task_list"]["ratio_to_pgbench"] = round(work["task_list"]["req_per_s"] / tps, 3)
    work["dashboard"]["ratio_to_pgbench"] = round(work["dashboard"]["req_per_s"] / tps, 3)
    targets = {
        "task_list_ge_25pct_of_pgbench": work["task_list"]["ratio_to_pgbench"] >= 0.25,
        "dashboard_ge_10pct_of_pgbench": work["dashboard"]["ratio_to_pgbench"] >= 0.10,
        "export_ge_200k_rows_per_s": work["export"]["rows_per_s"] >= 200_000,
        "export_rss_growth_le_30mib": work["export"]["rss_growth_mib"] <= 30,
    }
    if everything:
        results["list"]["ratio_to_pgbench"] = round(results["list"]["req_per_s"] / tps, 3)
        results["binding_cost"] = round(1 - results["binding"]["bound_median"] / results["binding"]["unbound_median"], 3)
        log("4. migrate-schemas over all tenants")
        results["migrate"] = bench_migrations(url, jobs=int(os.environ.get("BENCH_JOBS", "8")))
        log(f"   {results['migrate']}")
        targets.update({
            "signup_p50_le_100ms": results["signup"]["p50_ms"] <= 100,
            "migrate_noop_le_1s": results["migrate"]["noop_s"] <= 1,
            "migrate_new_le_20s": results["migrate"]["new_migration_s"] <= 20,
            "list_ge_30pct_of_pgbench": results["list"]["ratio_to_pgbench"] >= 0.30,
            "list_p99_le_20ms": results["list"]["p99_ms"] <= 20,
            "binding_cost_le_15pct": results["binding_cost"] <= 0.15,
            "server_rss_le_64mib": (results["rss_mib"]["after_list_load"] or 0) <= 64,
            "rate_limit_cost_le_10pct": results["rate_limit"]["cost"] <= 0.10,
        })
    return report(results, targets, everything)


def report(results, targets, everything):
    results["targets_met"] = targets
    out_dir = ROOT / "bench" / "results"
    out_dir.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    (out_dir / f"{stamp}.json").write_text(json.dumps(results, indent=2) + "\n")
    if everything:
        (out_dir / "latest.json").write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
