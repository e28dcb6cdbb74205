#!/usr/bin/env python
"""Benchmark: the assessment of the lab's source, and its LOB sizing against the naive peer.

What a DBA would otherwise run to size LOBs for DMS is an exact full scan,
`SELECT max(octet_length(col)) FROM table` for every LOB column. The assessment
samples instead (bounded rows and time per column). This prints, as JSON:
the whole assessment's wall time, both LOB sizings' times, and whether the sample
found the same largest value as the exact scan.

Needs the lab up (tools/bench.sh brings it up). Never asserts on time.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(REPO, ".build", "collections"))

import psycopg  # noqa: E402  (after the path set-up)
import yaml  # noqa: E402

from ansible_collections.pgshift.aurora.plugins.module_utils import prereqs, scope  # noqa: E402
from ansible_collections.pgshift.aurora.plugins.module_utils._pg import catalog  # noqa: E402


def lab_source():
    with open(os.path.join(REPO, "inventories", "lab", "host_vars", "lab-source.yml")) as f:
        hv = yaml.safe_load(f)
    return dict(host=hv["db_host"], port=hv["db_port"], dbname=hv["db_name"], user=hv["db_admin_user"],
                password=hv["db_admin_password"])


def run_assessment(src):
    args = dict(login_host=src["host"], login_port=src["port"], login_db=src["dbname"], login_user=src["user"],
                login_password=src["password"], ssl_mode="disable", role="source", migration_user="pgshift",
                fail_on="never", planned_streams=0)
    env = dict(os.environ, PYTHONPATH=os.path.join(REPO, ".build", "collections"))
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(dict(ANSIBLE_MODULE_ARGS=args), f)
    start = time.monotonic()
    proc = subprocess.run([sys.executable, os.path.join(REPO, "plugins", "modules", "pg_logical_prereqs.py"), f.name],
                          capture_output=True, text=True, env=env, check=False)
    elapsed = time.monotonic() - start
    os.unlink(f.name)
    result = json.loads(proc.stdout[proc.stdout.find("{"):])
    if result.get("failed"):
        raise SystemExit("assessment failed: %s" % result.get("msg"))
    return elapsed, result


def lob_sizing(conn):
    rels = scope.select(catalog.relations(conn))
    physical = {t["oid"]: t for t in prereqs.physical_tables(rels)}
    cols = [c for c in catalog.columns(conn, list(physical), 150000) if prereqs.is_lob(c)]
    sampled, exact = {}, {}
    t0 = time.monotonic()
    for c in cols:
        t = physical[c["oid"]]
        sampled[(t["qualified"], c["name"])] = catalog.lob_max_bytes(
            conn, t["schema"], t["name"], c["name"], c["base_type"] == "bytea", prereqs.est_rows(t), 10000, 5000)[0]
    t1 = time.monotonic()
    for c in cols:
        t = physical[c["oid"]]
        expr = "octet_length({})" if c["base_type"] == "bytea" else "octet_length({}::text)"
        query = psycopg.sql.SQL("SELECT max(" + expr + ") FROM ONLY {}.{}").format(
            psycopg.sql.Identifier(c["name"]), psycopg.sql.Identifier(t["schema"]), psycopg.sql.Identifier(t["name"]))
        exact[(t["qualified"], c["name"])] = conn.execute(query).fetchone()[0]
    t2 = time.monotonic()
    largest_sampled = max([v or 0 for v in sampled.values()] or [0])
    largest_exact = max([v or 0 for v in exact.values()] or [0])
    return dict(columns=len(cols), sampled_seconds=round(t1 - t0, 3), exact_full_scan_seconds=round(t2 - t1, 3),
                largest_sampled_bytes=largest_sampled, largest_exact_bytes=largest_exact,
                same_largest_value=largest_sampled == largest_exact,
                columns_where_sample_was_lower=sum(1 for k in exact if (sampled[k] or 0) < (exact[k] or 0)))


def main():
    src = lab_source()
    with psycopg.connect(autocommit=True, **src) as conn:
        rows = conn.execute("SELECT sum(reltuples)::bigint, pg_database_size(current_database()) FROM pg_class "
                            "WHERE relkind = 'r'").fetchone()
        lob = lob_sizing(conn)
    elapsed, result = run_assessment(src)
    out = dict(
        benchmark="assess",
        dataset=dict(database_bytes=rows[1], rows_estimate=rows[0], tables=result["sizes"]["tables"]),
        assessment=dict(seconds=round(elapsed, 3), findings=len(result["findings"]),
                        blockers=result["summary"]["blocker"], suggested_streams=result["suggested_streams"]),
        lob_sizing=dict(pgshift_sampled=dict(seconds=lob["sampled_seconds"],
                                             largest_bytes=lob["largest_sampled_bytes"]),
                        peer_exact_full_scan=dict(seconds=lob["exact_full_scan_seconds"],
                                                  largest_bytes=lob["largest_exact_bytes"]),
                        columns=lob["columns"], same_largest_value=lob["same_largest_value"],
                        columns_where_sample_was_lower=lob["columns_where_sample_was_lower"]),
    )
    print(json.dumps(out, indent=2))
    os.makedirs(os.path.join(REPO, "bench", "results"), exist_ok=True)
    with open(os.path.join(REPO, "bench", "results", "assess.json"), "w") as f:
        json.dump(out, f, indent=2)


if __name__ == "__main__":
    main()
