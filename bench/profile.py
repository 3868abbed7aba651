#!/usr/bin/env python3
"""A flame graph of the release server under the list load of `bench/run.py` (section 2).

Run through `just profile` (bench/run.sh's services, then this): creates 100 tenants x 50
projects, starts wrk on `GET /api/v1/projects?limit=20` rotating over them at 64 connections,
and samples the server with `perf record --call-graph dwarf` meanwhile. Writes
bench/results/flamegraph-list.svg (inferno: `cargo install inferno`) and prints the heaviest
frames. Needs perf (linux-perf) with `perf_event_paranoid` <= 2 for one's own processes.
"""

import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import run  # noqa: E402  (bench/run.py: Server, tenants, seeding, wrk)

SECONDS = int(os.environ.get("PROFILE_SECONDS", "15"))
FREQUENCY = os.environ.get("PROFILE_FREQUENCY", "199")
OUT = run.ROOT / "bench" / "results" / "flamegraph-list.svg"


def main():
    url = os.environ["DATABASE_URL"]
    run.tenantctl(url, "migrate-schemas")
    run.psql(url, "update public.plans set requests_per_hour = 1000000000 where requests_per_hour is not null")
    server = run.Server(url)
    perf_data = tempfile.mktemp(prefix="tenantry-perf-", suffix=".data")
    try:
        run.log(f"creating {run.LIST_TENANTS} tenants")
        run.create_tenants(server, run.LIST_TENANTS)
        slugs = [f"t{i:05d}" for i in range(run.LIST_TENANTS)]
        run.seed_projects(url, slugs)
        tokens = {s: run.login(server, s) for s in slugs}
        run.log("warming up")
        run.wrk(server, "/api/v1/projects?limit=20", slugs, tokens, seconds=3)
        run.log(f"profiling the server for {SECONDS} s under the list load")
        perf = subprocess.Popen(["perf", "record", "-F", FREQUENCY, "--call-graph", "dwarf,16384",
                                 "-p", str(server.proc.pid), "-o", perf_data, "--", "sleep", str(SECONDS)],
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        result = {}
        load = threading.Thread(target=lambda: result.update(
            run.wrk(server, "/api/v1/projects?limit=20", slugs, tokens, seconds=SECONDS)))
        load.start()
        load.join()
        _, err = perf.communicate(timeout=120)
        if perf.returncode != 0:
            raise RuntimeError(f"perf record failed: {err}")
        run.log(f"   load during the profile: {result}")
    finally:
        server.stop()
    script = subprocess.run(["perf", "script", "-i", perf_data], capture_output=True, check=True).stdout
    folded = subprocess.run(["inferno-collapse-perf"], input=script, capture_output=True, check=True).stdout
    os.unlink(perf_data)
    svg = subprocess.run(["inferno-flamegraph", "--title", "tenantry-server: GET /api/v1/projects?limit=20, "
                          "100 tenants, wrk 64 connections", "--width", "1600"],
                         input=folded, capture_output=True, check=True).stdout
    OUT.write_bytes(svg)
    folded_path = OUT.with_suffix(".folded")
    folded_path.write_bytes(folded)
    run.log(f"wrote {OUT} and {folded_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
