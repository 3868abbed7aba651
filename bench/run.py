#!/usr/bin/env python3
"""Tenantry benchmarks against a release build on throwaway local services.

Run through `just bench` (bench/run.sh), which starts PostgreSQL and Redis and exports
DATABASE_URL and REDIS_URL. Every load targets 127.0.0.1 and is bounded in time.

1. signup: 50 sequential POST /api/v1/register (real argon2id hashing) - p50/p99
2. throughput: wrk GET /api/v1/projects?limit=20 over 100 tenants x 50 projects, beside
   pgbench -S (prepared) on the same server in the same run
3. binding cost: the same list through a bench-only route that skips tenant binding (a public
   checkout, then the schema-qualified query: two round trips, where the bound list takes one);
   rotation cost: the list rotating over the 100 tenants vs. the same load on one tenant
4. migrate-schemas over 1,000 tenants: a no-op run, then one new trivial tenant migration
5. server RSS (VmRSS, and its anonymous / file-backed parts) at start, after the 1,050 sign-ups,
   after the 10 s list load, and after all the list sections
6. work inside a tenant: GET /api/v1/tasks?assignee=me&status=todo,in_progress&ordering=due_at
   and GET /api/v1/dashboard over 100 tenants x 2,000 tasks; a CSV export of 100,000 tasks
   (rows/s, server RSS growth sampled during the export)

7. rate-limit cost: the list of section 2 against a server with RATE_LIMITS=on (every plan's
   quota raised so nothing trips: the limiter still runs its Redis script on every request) and
   one with RATE_LIMITS=off, 3 interleaved pairs of 5 s runs, medians; the cost is
   1 - on / off (target <= 10 %)
7. jobs: the worker's daily overdue check over 1,000 tenants x 200 tasks (20 overdue, open,
   assigned to the owner, who also leads the projects), emails to the .eml transport: the wall
   time from the tick to the last email written, and each worker's peak RSS (VmHWM); one worker,
   then two, on a fresh database of its own

BENCH_SECTIONS=list runs only sections 2 and 3 (list, binding and rotation cost, pgbench), on 101
tenants; BENCH_SECTIONS=work runs only section 6 (with pgbench beside it), on 101 tenants;
BENCH_SECTIONS=ratelimit runs only section 7, on 101 tenants; BENCH_SECTIONS=jobs runs only
section 8.
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
JOB_TENANTS = int(os.environ.get("BENCH_JOB_TENANTS", "1000"))
JOB_TASKS = 200
JOB_OVERDUE = 20


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
    def __init__(self, database_url, bench_routes=False, rate_limits=True, extra_env=None):
        self.port = free_port()
        self.database_url = database_url
        # Every sign-up comes from one address: the base host's per-address limit is raised (the
        # plans' quotas are raised in the database, see main), the limiter stays on unless asked.
        env = dict(os.environ, DATABASE_URL=database_url, BASE_DOMAIN=BASE,
                   ANON_REQUESTS_PER_HOUR="1000000000", RATE_LIMITS="on" if rate_limits else "off",
                   BIND_ADDR=f"127.0.0.1:{self.port}", RUST_LOG="warn",
                   JWT_SECRET="bench-secret-bench-secret-bench-secret-0",
                   DB_POOL_SIZE=os.environ.get("BENCH_DB_POOL_SIZE", "16"), SIGNUP_RATE_PER_HOUR="0", TENANTRY_BENCH_ROUTES="1" if bench_routes else "0")
        env.update(extra_env or {})
        self.log = open(tempfile.mktemp(prefix="tenantry-bench-server-"), "w")
        # BENCH_SERVER_PREFIX runs the server under a tool, e.g. "valgrind --tool=massif".
        self.proc = subprocess.Popen([*os.environ.get("BENCH_SERVER_PREFIX", "").split(), str(RELEASE / "tenantry-server")], env=env,
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

    def rss_parts_mib(self):
        """The server's resident memory split into anonymous (heap, stacks) and file-backed
        (the binary's own pages) parts, from /proc."""
        parts = {}
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            key = line.split(":")[0]
            if key in ("RssAnon", "RssFile"):
                parts[key[3:].lower()] = round(int(line.split()[1]) / 1024, 1)
        return parts

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


def local_zone_after_eight():
    """A region time zone whose local time is now between 09:00 and 21:00, so a tick now is
    past the overdue check's 08:00 and far from midnight."""
    from zoneinfo import ZoneInfo
    now = datetime.now(timezone.utc)
    for zone in ["UTC", "Europe/Berlin", "Asia/Dubai", "Asia/Bangkok", "Asia/Tokyo", "Pacific/Auckland",
                 "Pacific/Honolulu", "America/Los_Angeles", "America/Chicago", "America/New_York",
                 "America/Sao_Paulo", "Atlantic/Azores", "Asia/Karachi", "Australia/Brisbane"]:
        if 9 <= now.astimezone(ZoneInfo(zone)).hour < 21:
            return zone
    return "UTC"


def seed_overdue(url, slugs, zone):
    """Per tenant: two projects led by the owner, JOB_TASKS tasks of which JOB_OVERDUE are open,
    assigned to the owner and 1 to 20 days overdue; the rest due ahead or done. The tenant's
    time zone is `zone`."""
    stmts = [f"update public.company_settings set timezone = '{zone}';"]
    for slug in slugs:
        schema = "tenant_" + slug.replace("-", "_")
        owner = (f"(select m.user_id from public.memberships m join public.companies c on c.id = m.company_id "
                 f"where c.slug = '{slug}' and m.role = 'owner')")
        stmts.append(f"""
insert into {schema}.projects (id, name, description, status, owner_id)
select gen_random_uuid(), 'project ' || g, '', 'active', {owner} from generate_series(1, 2) g;
insert into {schema}.project_members (project_id, user_id, role)
select id, owner_id, 'lead' from {schema}.projects on conflict do nothing;
with p as (select array_agg(id order by id) as ids from {schema}.projects),
     o as (select {owner} as id)
insert into {schema}.tasks (id, project_id, title, description, status, priority, assignee_id,
                            created_by, due_at, completed_at, tags, position)
select gen_random_uuid(), p.ids[1 + g % 2], 'task ' || g, '',
       case when g <= {JOB_OVERDUE} then 'todo' when g % 3 = 0 then 'done' else 'in_progress' end,
       'medium', o.id, o.id,
       case when g <= {JOB_OVERDUE} then now() - g * interval '1 day' else now() + g * interval '1 hour' end,
       case when g > {JOB_OVERDUE} and g % 3 = 0 then now() end, '{{}}', g
  from generate_series(1, {JOB_TASKS}) g, p, o;""")
    for i in range(0, len(stmts), 100):
        psql(url, "\n".join(stmts[i:i + 100]))


def overdue_run(url, workers, mail_dir):
    """One overdue check by `workers` worker processes, from a tick a few seconds ahead (the only
    tick of their schedule) until every tenant's run is finished and every email is written."""
    import threading
    from zoneinfo import ZoneInfo  # noqa: F401 (the seeding picked the zone)
    # Nothing of an earlier run counts: its claims, notifications and emails go.
    psql(url, "delete from public.job_runs where job like 'reminders.overdue%'; delete from public.outbox;")
    psql(url, "do $$ declare s text; begin for s in select schema_name from public.companies loop "
              "execute format('delete from %I.notifications', s); end loop; end $$;")
    shutil.rmtree(mail_dir, ignore_errors=True)
    Path(mail_dir).mkdir(parents=True)
    tick = datetime.now(timezone.utc).replace(microsecond=0) + __import__("datetime").timedelta(seconds=6)
    cron = f"{tick.second} {tick.minute} {tick.hour} * * *"
    prefix = f"bench{int(time.time())}w{workers}"
    env = dict(os.environ, DATABASE_URL=url, MAIL_DIR=mail_dir, RUST_LOG="warn", BASE_DOMAIN=BASE,
               WORKER_QUEUE_PREFIX=prefix, WORKER_OVERDUE_CRON=cron, WORKER_FANOUT_WINDOW_SECS="0",
               WORKER_REMINDER_CRON="0 0 0 1 1 *", WORKER_CLEANUP_CRON="0 0 0 1 1 *")
    env.pop("METRICS_ADDR", None)
    logs = [open(tempfile.mktemp(prefix="tenantry-bench-worker-"), "w") for _ in range(workers)]
    procs = [subprocess.Popen([str(RELEASE / "tenantry-worker")], env=env, stdout=l, stderr=subprocess.STDOUT)
             for l in logs]
    peaks = [0.0] * workers

    def hwm(pid):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
        return 0.0
    try:
        deadline = time.time() + 600
        while time.time() < deadline:
            for i, p in enumerate(procs):
                peaks[i] = max(peaks[i], hwm(p.pid))
            out = subprocess.run(["psql", "-tA", "-F", " ", url, "-c",
                                  "select (select count(*) from public.job_runs where job = 'reminders.overdue' "
                                  "and status in ('done', 'skipped')), "
                                  "(select count(*) from public.outbox), "
                                  "(select count(*) from public.outbox where dispatched_at is null)"],
                                 capture_output=True, text=True, check=True).stdout.split()
            finished, emails, pending = map(int, out)
            if finished >= JOB_TENANTS and pending == 0 and datetime.now(timezone.utc) > tick:
                break
            time.sleep(0.5)
        else:
            raise RuntimeError(f"overdue run with {workers} worker(s) did not finish: {out}")
        span = subprocess.run(["psql", "-tA", "-F", " ", url, "-c",
                               "select extract(epoch from (select max(dispatched_at) from public.outbox) - "
                               "(select min(claimed_at) from public.job_runs where job = 'reminders.overdue.fanout')), "
                               "(select count(*) from public.job_runs where job = 'reminders.overdue' and status = 'done'), "
                               "(select sum((outcome->>'overdue_tasks')::int) from public.job_runs where job = 'reminders.overdue')"],
                              capture_output=True, text=True, check=True).stdout.split()
        files = len(list(Path(mail_dir).glob("*.eml")))
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait(timeout=40)
    return {"workers": workers, "tenants_done": int(span[1]), "overdue_tasks": int(float(span[2] or 0)),
            "emails": emails, "eml_files": files, "seconds": round(float(span[0]), 2),
            "peak_rss_mib": [round(x, 1) for x in peaks]}


def bench_jobs(url):
    """Section 7 on a database of its own."""
    psql(db_url("postgres"), "drop database if exists bench_jobs")
    psql(db_url("postgres"), "create database bench_jobs")
    jobs_url = db_url("bench_jobs")
    tenantctl(jobs_url, "migrate-schemas")
    server = Server(jobs_url)
    try:
        log(f"7. jobs: creating {JOB_TENANTS} tenants")
        create_tenants(server, JOB_TENANTS)
    finally:
        server.stop()
    zone = local_zone_after_eight()
    slugs = [f"t{i:05d}" for i in range(JOB_TENANTS)]
    log(f"   seeding {JOB_TASKS} tasks ({JOB_OVERDUE} overdue) per tenant, time zone {zone}")
    seed_overdue(jobs_url, slugs, zone)
    psql(jobs_url, "analyze")
    mail_dir = tempfile.mkdtemp(prefix="tenantry-bench-mail-")
    out = {"tenants": JOB_TENANTS, "tasks_per_tenant": JOB_TASKS, "overdue_per_tenant": JOB_OVERDUE,
           "timezone": zone}
    for workers in (1, 2):
        out[f"workers_{workers}"] = overdue_run(jobs_url, workers, mail_dir)
        log(f"   {out[f'workers_{workers}']}")
    shutil.rmtree(mail_dir, ignore_errors=True)
    psql(db_url("postgres"), "drop database if exists bench_jobs")
    return out


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
    if SECTIONS == "jobs":
        return jobs_only(url)
    results = {"date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "machine": machine_facts(),
               "sections": SECTIONS}
    log("public schema")
    tenantctl(url, "migrate-schemas")
    # Limits stay on, far above what the loads send (section 7 measures what they cost).
    psql(url, "update public.plans set requests_per_hour = 1000000000 where requests_per_hour is not null")
    server = Server(url, bench_routes=True)
    try:
        results["rss_mib"] = {"start": server.rss_mib()}
        results["rss_parts_mib"] = {"start": server.rss_parts_mib()}
        if everything:
            log("1. signup: 50 sequential registrations")
            results["signup"] = bench_signup(server)
            log(f"   {results['signup']}")
        # The list section alone signs up just enough tenants, unless BENCH_TENANTS says how many
        # (the RSS target is measured after 1,000 sign-ups: BENCH_TENANTS=1000).
        tenants = TENANTS if everything or "BENCH_TENANTS" in os.environ else LIST_TENANTS + 1
        log(f"creating {tenants} tenants")
        t = time.perf_counter()
        create_tenants(server, tenants)
        results["tenant_creation"] = {"tenants": tenants, "seconds": round(time.perf_counter() - t, 1),
                                      "concurrency": 4}
        results["rss_mib"]["after_signups"] = server.rss_mib()
        results["rss_parts_mib"]["after_signups"] = server.rss_parts_mib()
        slugs = [f"t{i:05d}" for i in range(LIST_TENANTS)]
        seed_projects(url, slugs)
        tokens = {s: login(server, s) for s in slugs}
        if everything or SECTIONS == "list":
            log("2. throughput: wrk list over 100 tenants, and pgbench -S")
            results["list"] = wrk(server, "/api/v1/projects?limit=20", slugs, tokens)
            log(f"   list {results['list']}")
            # The RSS target's moment: after the sign-ups and one 10 s list load (before the
            # bench-only unbound route of section 3 adds statements of its own).
            results["rss_mib"]["after_list_load"] = server.rss_mib()
            results["rss_parts_mib"]["after_list_load"] = server.rss_parts_mib()
            log("3. binding cost: 3 interleaved pairs of 5 s runs, bound vs. unbound, medians")
            bound, unbound = [], []
            for _ in range(3):
                bound.append(wrk(server, "/api/v1/projects?limit=20", slugs, tokens, seconds=5)["req_per_s"])
                unbound.append(wrk(server, "/api/v1/_bench/unbound-projects", slugs, tokens, seconds=5)["req_per_s"])
            results["binding"] = {"bound_req_per_s": bound, "unbound_req_per_s": unbound,
                                  "bound_median": statistics.median(bound),
                                  "unbound_median": statistics.median(unbound)}
            log(f"   {results['binding']}")
            log("3b. rotation cost: 3 interleaved pairs of 5 s runs, 100 tenants vs. one, medians")
            rotating, single = [], []
            for _ in range(3):
                rotating.append(wrk(server, "/api/v1/projects?limit=20", slugs, tokens, seconds=5)["req_per_s"])
                single.append(wrk(server, "/api/v1/projects?limit=20", slugs[:1], tokens, seconds=5)["req_per_s"])
            results["rotation"] = {"rotating_req_per_s": rotating, "one_tenant_req_per_s": single,
                                   "rotating_median": statistics.median(rotating),
                                   "one_tenant_median": statistics.median(single)}
            log(f"   {results['rotation']}")
            results["rss_mib"]["after_list_sections"] = server.rss_mib()
            results["rss_parts_mib"]["after_list_sections"] = server.rss_parts_mib()
            log(f"   server RSS {results['rss_mib']}")
        if everything or SECTIONS == "ratelimit":
            log("7. rate-limit cost: 3 interleaved pairs of 5 s list runs, limiter on vs. off, medians")
            results["rate_limit"] = bench_rate_limit_cost(server, url, slugs, tokens)
            log(f"   {results['rate_limit']}")
        if SECTIONS == "list":
            server.stop()
            return list_only(url, results)
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
        results["rotation_cost"] = round(1 - results["rotation"]["rotating_median"] / results["rotation"]["one_tenant_median"], 3)
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
            "rotation_cost_le_10pct": results["rotation_cost"] <= 0.10,
            "server_rss_le_64mib": (results["rss_mib"]["after_list_load"] or 0) <= 64,
            "rate_limit_cost_le_10pct": results["rate_limit"]["cost"] <= 0.10,
        })
    if everything:
        results["jobs"] = bench_jobs(url)
        targets.update(jobs_targets(results["jobs"]))
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


def jobs_targets(jobs):
    one, two = jobs["workers_1"], jobs["workers_2"]
    return {
        "overdue_1000_tenants_le_20s": one["seconds"] <= 20,
        "overdue_worker_rss_le_80mib": max(one["peak_rss_mib"] + two["peak_rss_mib"]) <= 80,
        "overdue_two_workers_faster": two["seconds"] < one["seconds"],
    }


def list_only(url, results):
    """BENCH_SECTIONS=list: sections 2 and 3 (list, binding and rotation cost) and pgbench."""
    results["pgbench"] = pgbench(url)
    log(f"   pgbench {results['pgbench']}")
    results["list"]["ratio_to_pgbench"] = round(results["list"]["req_per_s"] / results["pgbench"]["tps"], 3)
    results["binding_cost"] = round(1 - results["binding"]["bound_median"] / results["binding"]["unbound_median"], 3)
    results["rotation_cost"] = round(1 - results["rotation"]["rotating_median"] / results["rotation"]["one_tenant_median"], 3)
    return report(results, {
        "list_ge_30pct_of_pgbench": results["list"]["ratio_to_pgbench"] >= 0.30,
        "list_p99_le_20ms": results["list"]["p99_ms"] <= 20,
        "rotation_cost_le_10pct": results["rotation_cost"] <= 0.10,
        "server_rss_le_64mib": (results["rss_mib"]["after_list_load"] or 0) <= 64,
    }, everything=False)


def jobs_only(url):
    results = {"date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "machine": machine_facts(),
               "sections": "jobs"}
    results["jobs"] = bench_jobs(url)
    return report(results, jobs_targets(results["jobs"]), everything=False)


if __name__ == "__main__":
    sys.exit(main())
