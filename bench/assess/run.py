#!/usr/bin/env python
"""Benchmark: the assessment of the source, and its LOB sizing against the naive peer.

What a DBA would otherwise run to size LOBs for DMS is an exact full scan,
`SELECT max(octet_length(col)) FROM table` for every LOB column. The assessment
samples instead (bounded rows and time per column). This prints, as JSON:
the whole assessment's wall time, both LOB sizings' times, and whether the sample
found the same largest value as the exact scan.

On a production-shaped lab of its own (bench/benchlab.py: ports 25474 source, 25475 target,
26474 PgBouncer, 25534 moto; lab_root .build/bench-assess; pgbench scale --scale, default
BENCH_SCALE else 50, plus the demo dataset), left down afterwards (--keep leaves it up). The
assessment (pg_logical_prereqs, run as Ansible runs it) and both LOB sizings connect as the
inventory says: the master user dbadmin (not a superuser) over TLS verify-full with the lab's CA;
the dataset's size is read by the lab's operator. Each sizing runs --repeat times (default 3),
interleaved; the median is reported with every run. Never asserts on time.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import benchlab  # noqa: E402  (bench/benchlab.py)
import psycopg  # noqa: E402

from ansible_collections.pgshift.aurora.plugins.module_utils import prereqs, scope  # noqa: E402
from ansible_collections.pgshift.aurora.plugins.module_utils._pg import catalog  # noqa: E402

REPO = benchlab.REPO
PORTS = dict(source=25474, target=25475, pgbouncer=26474, moto=25534)


def run_assessment(lab):
    args = dict(lab.module_login("source"), role="source", migration_user=lab.source["db_user"], fail_on="never",
                planned_streams=0)
    env = dict(os.environ, PYTHONPATH=benchlab.COLLECTIONS)
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(dict(ANSIBLE_MODULE_ARGS=args), f)
    try:
        start = time.monotonic()
        proc = subprocess.run([sys.executable, os.path.join(REPO, "plugins", "modules", "pg_logical_prereqs.py"),
                               f.name], capture_output=True, text=True, env=env, check=False)
        elapsed = time.monotonic() - start
    finally:
        os.unlink(f.name)
    start = proc.stdout.find("{")
    if start < 0:
        raise SystemExit("the assessment printed no JSON: %s" % benchlab.tail(proc.stdout + proc.stderr, 2000))
    result = json.loads(proc.stdout[start:])
    if result.get("failed"):
        raise SystemExit("assessment failed: %s" % result.get("msg"))
    return elapsed, result


def lob_columns(conn):
    rels = scope.select(catalog.relations(conn))
    physical = {t["oid"]: t for t in prereqs.physical_tables(rels)}
    cols = [c for c in catalog.columns(conn, list(physical), conn.info.server_version) if prereqs.is_lob(c)]
    return physical, cols


def sampled(conn, physical, cols):
    found = {}
    t0 = time.monotonic()
    for c in cols:
        t = physical[c["oid"]]
        found[(t["qualified"], c["name"])] = catalog.lob_max_bytes(
            conn, t["schema"], t["name"], c["name"], c["base_type"] == "bytea", prereqs.est_rows(t), 10000, 5000)[0]
    return time.monotonic() - t0, found


def exact(conn, physical, cols):
    found = {}
    t0 = time.monotonic()
    for c in cols:
        t = physical[c["oid"]]
        expr = "octet_length({})" if c["base_type"] == "bytea" else "octet_length({}::text)"
        query = psycopg.sql.SQL("SELECT max(" + expr + ") FROM ONLY {}.{}").format(
            psycopg.sql.Identifier(c["name"]), psycopg.sql.Identifier(t["schema"]), psycopg.sql.Identifier(t["name"]))
        found[(t["qualified"], c["name"])] = conn.execute(query).fetchone()[0]
    return time.monotonic() - t0, found


def median_and_runs(values):
    return dict(seconds=round(statistics.median(values), 3), runs=[round(v, 3) for v in values],
                min=round(min(values), 3), max=round(max(values), 3))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scale", type=int, default=int(os.environ.get("BENCH_SCALE") or 50))
    ap.add_argument("--repeat", type=int, default=3, help="rounds (assessment, sampled and exact sizing interleaved)")
    ap.add_argument("--keep", action="store_true", help="leave the lab up")
    opts = ap.parse_args()
    lab = benchlab.Lab("assess", PORTS, opts.scale)
    try:
        lab.up()
        with lab.operator("source") as conn:
            rows = conn.execute("SELECT sum(reltuples)::bigint, pg_database_size(current_database()) FROM pg_class "
                                "WHERE relkind = 'r'").fetchone()
            version = benchlab.server_version(conn)
        runs = dict(assessment=[], sampled=[], exact=[])
        result = found_s = found_e = None
        cols = []
        for number in range(opts.repeat):
            benchlab.log("assess", "round %d/%d" % (number + 1, opts.repeat))
            elapsed, result = run_assessment(lab)
            runs["assessment"].append(elapsed)
            with lab.admin("source") as conn:  # the master user over TLS, as the module connects
                physical, cols = lob_columns(conn)
                secs, found_s = sampled(conn, physical, cols)
                runs["sampled"].append(secs)
                secs, found_e = exact(conn, physical, cols)
                runs["exact"].append(secs)
    finally:
        lab.close(keep=opts.keep)
    largest_sampled = max([v or 0 for v in found_s.values()] or [0])
    largest_exact = max([v or 0 for v in found_e.values()] or [0])
    out = dict(
        benchmark="assess",
        collection_commit=benchlab.collection_commit(),
        lab=dict(ports=PORTS, scale=opts.scale, source_version=version, connections=lab.connections(
            peers="the exact scan: the master user over TLS, the connection the sampled sizing uses", application=False)),
        repeat=opts.repeat,
        dataset=dict(database_bytes=rows[1], rows_estimate=rows[0], tables=result["sizes"]["tables"]),
        assessment=dict(median_and_runs(runs["assessment"]), findings=len(result["findings"]),
                        blockers=result["summary"]["blocker"], suggested_streams=result["suggested_streams"]),
        lob_sizing=dict(pgshift_sampled=dict(median_and_runs(runs["sampled"]), largest_bytes=largest_sampled),
                        peer_exact_full_scan=dict(median_and_runs(runs["exact"]), largest_bytes=largest_exact),
                        columns=len(cols), same_largest_value=largest_sampled == largest_exact,
                        columns_where_sample_was_lower=sum(1 for k in found_e
                                                           if (found_s[k] or 0) < (found_e[k] or 0))),
    )
    text = json.dumps(out, indent=2)
    print(text)
    os.makedirs(benchlab.RESULTS, exist_ok=True)
    with open(os.path.join(benchlab.RESULTS, "assess.json"), "w", encoding="utf-8") as f:
        f.write(text + "\n")


if __name__ == "__main__":
    main()
