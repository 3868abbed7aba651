"""`just bench-citus`: the same API on one PostgreSQL server and on a Citus cluster (coordinator +
2 workers on this machine), in one run.

1. list throughput and p99: wrk GET /api/v1/projects?limit=20 over BENCH_CITUS_TENANTS tenants x 50
   projects, single server and cluster interleaved (BENCH_CITUS_ROUNDS rounds of
   BENCH_WRK_SECONDS s each), medians;
2. the time to move a tenant with BENCH_MOVE_TASKS tasks (default 10,000) to the other worker
   (`tenantctl tenant move`: citus_schema_move, online by logical replication on the bench
   cluster, which commits synchronously).

On one machine the cluster is slower (three servers share the cores, every query goes through the
coordinator); the point is the figures, the move time, and that nothing answers an error.
"""

import json
import os
import statistics
import sys
import time
from datetime import datetime, timezone

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import run  # noqa: E402  (the shared helpers of `just bench`)

if os.environ.get("BENCH_BIN_DIR"):
    run.RELEASE = run.Path(os.environ["BENCH_BIN_DIR"]).resolve()

TENANTS = int(os.environ.get("BENCH_CITUS_TENANTS", "40"))
ROUNDS = int(os.environ.get("BENCH_CITUS_ROUNDS", "3"))
MOVE_TASKS = int(os.environ.get("BENCH_MOVE_TASKS", "10000"))


def prepare(url):
    run.tenantctl(url, "migrate-schemas")
    run.psql(url, "update public.plans set requests_per_hour = 1000000000 where requests_per_hour is not null")
    server = run.Server(url)
    run.create_tenants(server, TENANTS)
    slugs = [f"t{i:05d}" for i in range(TENANTS)]
    run.seed_projects(url, slugs)
    tokens = {s: run.login(server, s) for s in slugs}
    return server, slugs, tokens


def tenant_nodes(url):
    out = run.subprocess.run([str(run.RELEASE / "tenantctl"), "tenant", "list", "--json"],
                             env=dict(os.environ, DATABASE_URL=url), check=True,
                             capture_output=True, text=True).stdout
    return {r["slug"]: r.get("node") for r in json.loads(out)}


def bench_move(url):
    slug = "t00000"
    run.seed_tasks(url, [slug], MOVE_TASKS)
    nodes = tenant_nodes(url)
    workers = sorted({n for n in nodes.values() if n})
    from_node = nodes[slug]
    workers_all = json.loads(run.subprocess.run(
        [str(run.RELEASE / "tenantctl"), "cluster", "nodes", "--json"],
        env=dict(os.environ, DATABASE_URL=url), check=True, capture_output=True, text=True).stdout)
    to_node = next(n["node"] for n in workers_all if n["role"] == "worker" and n["node"] != from_node)
    t = time.perf_counter()
    run.tenantctl(url, "tenant", "move", slug, "--to", to_node)
    seconds = time.perf_counter() - t
    assert tenant_nodes(url)[slug] == to_node, "the tenant is on the target node"
    return {"tasks": MOVE_TASKS, "from": from_node, "to": to_node, "seconds": round(seconds, 2),
            "workers_in_use_before": workers}


def main():
    single_url = os.environ["SINGLE_DATABASE_URL"]
    citus_url = os.environ["CITUS_DATABASE_URL"]
    results = {"date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
               "machine": run.machine_facts(), "tenants": TENANTS, "rounds": ROUNDS,
               "wrk_seconds": run.WRK_SECONDS}
    run.log(f"single server and cluster: {TENANTS} tenants x {run.PROJECTS_PER_TENANT} projects each")
    single, single_slugs, single_tokens = prepare(single_url)
    citus, citus_slugs, citus_tokens = prepare(citus_url)
    try:
        runs = {"single": [], "citus": []}
        for r in range(ROUNDS):
            run.log(f"1. list, round {r + 1} of {ROUNDS}")
            runs["single"].append(run.wrk(single, "/api/v1/projects?limit=20", single_slugs, single_tokens))
            runs["citus"].append(run.wrk(citus, "/api/v1/projects?limit=20", citus_slugs, citus_tokens))
        results["list"] = {
            name: {"req_per_s_median": statistics.median(x["req_per_s"] for x in xs),
                   "p99_ms_median": statistics.median(x["p99_ms"] for x in xs),
                   "non_2xx": sum(x["non_2xx"] for x in xs),
                   "socket_errors": sum(x["socket_errors"] for x in xs), "runs": xs}
            for name, xs in runs.items()
        }
        run.log(f"   single {results['list']['single']['req_per_s_median']} req/s, "
                f"citus {results['list']['citus']['req_per_s_median']} req/s")
    finally:
        single.stop()
        citus.stop()
    run.log(f"2. moving a tenant with {MOVE_TASKS} tasks")
    results["move"] = bench_move(citus_url)
    run.log(f"   {results['move']}")
    results["errors"] = {name: v["non_2xx"] + v["socket_errors"] for name, v in results["list"].items()}
    out_dir = run.ROOT / "bench" / "results"
    out_dir.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    (out_dir / f"citus-{stamp}.json").write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))
    return 0 if not any(results["errors"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
