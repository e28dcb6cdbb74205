#!/usr/bin/env python
"""Benchmark: full-content comparison of a source and a target, pg_validate vs reladiff vs pgcopydb.

Self-contained (it does not use the lab): two clusters of its own on fixed ports, shaped like RDS
and Aurora by tests/integration/pgcluster.py (the master user dbadmin, not a superuser, member of
rds_superuser and of the application's owner app_owner; TLS required for every role but the
operator, verify-full with the session's CA; a password that needs escaping): a PostgreSQL 16
source on 25460 and a PostgreSQL 18 target on 25461 (.venv/pgshift-pg/16 and 18), the source
filled (as the operator, untimed) with `pgbench -i -s SCALE` (BENCH_SCALE, 50 by default; its
tables then given to app_owner, as the lab does) plus the demo dataset, and the target a copy made
with pg_dump | psql. Every tool connects as a DBA would on RDS: the master user over TLS
(verify-full with the CA; the peers get it in their connection URIs, the password in their
environment, never on a command line). Then, on the same tables and the same data, in the same run:

- pg_validate: the module, run as Ansible runs it (quiesced mode, parallel 2, defaults
  otherwise: schema and sequence checks included). Rows/s = source rows compared / wall time.
- reladiff (PyPI, installed into .venv on demand - never a requirement of the collection):
  `reladiff <src> <table> <tgt> <table> -k <primary key> -c % -j 2 -s` per table with a primary
  key (reladiff needs a key), all columns compared. Rows/s = the same tables' rows / sum of the
  wall times. Per-table failures are recorded.
- pgcopydb: `pgcopydb compare data` (recorded as unavailable when the installed pgcopydb has
  no `compare` command, with its message).

Then one row of pgbench_accounts is changed and one deleted on the target and both
pg_validate and reladiff run again on pgbench_accounts: what each reports (keys) and its time.

Prints JSON, also written to bench/results/validate/<UTC start>-<commit>.json (tracked in git, with the commit
and the machine). Never asserts on time.
Throughput runs --repeat times (default 3), the tools interleaved; the median run of each is
reported (every run's rows/s too). The machine is shared: single runs vary.
Options: --scale N, --repeat N, --keep (leave the clusters running and print where they are).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import subprocess
import sys
import time
import urllib.parse

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(REPO, ".build", "collections"))
sys.path.insert(0, os.path.join(REPO, "tests", "integration"))

sys.path.insert(0, os.path.join(REPO, "bench"))

import benchlab  # noqa: E402  (write_result: the tracked result file)
from modrunner import run_module  # noqa: E402
from pgcluster import ADMIN_PASSWORD, APP_OWNER, MASTER_PASSWORD, MASTER_USER, Cluster, ca_cert, pg16_bin_dir, wheel_bin_dir  # noqa: E402
from validate_data import copy_db, load_demo  # noqa: E402

VENV_BIN = os.path.join(REPO, ".venv", "bin")
SOURCE_PORT, TARGET_PORT = 25460, 25461
DB = "bench"
PARALLEL = 2


def log(msg):
    print("bench/validate: %s" % msg, file=sys.stderr, flush=True)


def start(bin_dir, port, name):
    cluster = Cluster(bin_dir, settings=dict(shared_buffers="256MB", max_wal_size="4GB", checkpoint_timeout="30min",
                                             work_mem="32MB"), name=name)
    cluster.port = port
    return cluster.start()


def ensure_reladiff():
    exe = os.path.join(VENV_BIN, "reladiff")
    if os.path.exists(exe):
        return exe, None
    log("installing reladiff[postgresql] into .venv (bench only)")
    proc = subprocess.run([os.path.join(VENV_BIN, "pip"), "install", "-q", "reladiff[postgresql]"],
                          capture_output=True, text=True, check=False)
    if proc.returncode != 0 or not os.path.exists(exe):
        return None, (proc.stderr or proc.stdout).strip()[-2000:]
    return exe, None


def url(cluster):
    """A peer's connection URI: the master user over TLS verify-full, no password (peer_env gives it)."""
    return "postgresql://%s@127.0.0.1:%d/%s?%s" % (urllib.parse.quote(MASTER_USER, safe=""), cluster.port, DB,
                                                   urllib.parse.urlencode(dict(sslmode="verify-full",
                                                                               sslrootcert=ca_cert())))


def peer_env(**extra):
    """A peer's environment: the master user's password for libpq (never on a command line, never printed)."""
    env = dict(os.environ, PGPASSWORD=MASTER_PASSWORD, PGSSLMODE="verify-full", PGSSLROOTCERT=ca_cert())
    env.update(extra)
    return env


def pattern(schema, name):
    """An include_tables pattern that names exactly this table (pg_validate: inside double quotes every character
    is itself, two double quotes are one)."""
    return '"%s"."%s"' % (schema.replace('"', '""'), name.replace('"', '""'))


def reladiff_can_name(schema, name):
    """reladiff takes a table as schema.table and splits it at the dots: a name with a dot or a double quote
    cannot be given to it."""
    return not any(c in schema + name for c in '."')


def keyed_tables(cluster):
    """[(table, [key columns], rows, pg_validate pattern, schema, name)] of every table with a primary key,
    largest first."""
    rows = cluster.query(DB, """
        SELECT n.nspname, c.relname, array_agg(a.attname ORDER BY k.n), c.reltuples::bigint
        FROM pg_index i JOIN pg_class c ON c.oid = i.indrelid JOIN pg_namespace n ON n.oid = c.relnamespace
        CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, n)
        JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
        WHERE i.indisprimary AND c.relkind = 'r' AND c.relpersistence = 'p'
          AND n.nspname NOT IN ('pg_catalog', 'information_schema')
        GROUP BY 1, 2, 4 ORDER BY 4 DESC, 1, 2""")
    result = []
    for schema, name, key, est in rows:
        count = cluster.query(DB, "SELECT count(*) FROM ONLY %s" % pattern(schema, name), operator=True)[0][0]
        result.append(("%s.%s" % (schema, name), list(key), count, pattern(schema, name), schema, name))
    return result


def run_pg_validate(source, target, tables=None, **extra):
    params = source.module_params(DB)
    params.update(("target_" + k, v) for k, v in target.module_params(DB).items())
    params.update(mode="quiesced", parallel=PARALLEL)
    if tables:
        params["include_tables"] = list(tables)  # patterns
    params.update(extra)
    t0 = time.time()
    result, raw = run_module("pg_validate", params)
    seconds = time.time() - t0
    if result.get("failed"):
        return dict(ok=False, error=result.get("msg"), seconds=round(seconds, 2))
    rows = result["summary"]["rows_compared"]
    return dict(ok=True, verdict=result["verdict"], seconds=round(seconds, 2), rows=rows,
                rows_per_second=round(rows / seconds, 1), tables=result["summary"]["tables"],
                differences=dict((t["table"], t["differences"]) for t in result["tables"] if t["differences"]),
                module_seconds=result["summary"]["seconds"])


def run_reladiff(exe, source, target, table, key, stats=True):
    schema, name = table.split(".", 1)
    cmd = [exe, url(source), "%s.%s" % (schema, name), url(target), "%s.%s" % (schema, name), "-c", "%",
           "-j", str(PARALLEL), "--case-sensitive"]
    for k in key:
        cmd += ["-k", k]
    if stats:
        cmd.append("-s")
    t0 = time.time()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=peer_env(), check=False, timeout=3600)
    seconds = time.time() - t0
    out = (proc.stdout + proc.stderr).strip().replace(MASTER_PASSWORD, "<password>")
    return dict(ok=proc.returncode == 0, seconds=round(seconds, 2), output=out[-600:])


def run_pgcopydb(source, target):
    env = peer_env(PGCOPYDB_SOURCE_PGURI=url(source), PGCOPYDB_TARGET_PGURI=url(target),
                   PG_CONFIG=os.path.join(wheel_bin_dir(18), "pg_config"))
    t0 = time.time()
    try:
        proc = subprocess.run(["pgcopydb", "compare", "data", "--json"], capture_output=True, text=True, env=env,
                              check=False, timeout=3600, start_new_session=True)
    except FileNotFoundError as exc:
        return dict(ok=False, error="pgcopydb is not installed: %s" % exc)
    seconds = time.time() - t0
    out = (proc.stdout + proc.stderr).strip().replace(MASTER_PASSWORD, "<password>")
    if proc.returncode != 0:
        version = subprocess.run(["pgcopydb", "version"], capture_output=True, text=True, check=False).stdout.strip()
        return dict(ok=False, seconds=round(seconds, 2), version=version.splitlines()[-1:] or version,
                    error="pgcopydb compare data failed (exit %d): %s" % (
                        proc.returncode, " / ".join(line.strip() for line in out.splitlines() if "unknown" in line.lower()
                                                    or "error" in line.lower())[:400] or out[-400:]))
    return dict(ok=True, seconds=round(seconds, 2), output=out[-2000:])


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--scale", type=int, default=int(os.environ.get("BENCH_SCALE", "50")))
    parser.add_argument("--keep", action="store_true")
    parser.add_argument("--repeat", type=int, default=3, help="rounds of both tools, interleaved; the median is reported")
    args = parser.parse_args()
    started = datetime.datetime.now(datetime.timezone.utc)
    result = dict(benchmark="validate", scale=args.scale, parallel=PARALLEL, source="PostgreSQL 16 (port %d)" % SOURCE_PORT,
                  target="PostgreSQL 18 (port %d)" % TARGET_PORT,
                  connections="tools and modules: the master user %s (not a superuser) over TLS verify-full; setup and "
                              "checks: the clusters' operator" % MASTER_USER)
    source = target = None
    try:
        log("starting the clusters on %d and %d" % (SOURCE_PORT, TARGET_PORT))
        source = start(pg16_bin_dir(), SOURCE_PORT, "bench-validate-source")
        target = start(wheel_bin_dir(18), TARGET_PORT, "bench-validate-target")
        source.create_database(DB)
        target.create_database(DB)
        t0 = time.time()
        log("pgbench -i -s %d and the demo dataset on the source" % args.scale)
        # the operator's set-up (untimed): pgbench through its own connection, then its tables given to the
        # application's owner as the lab does (the master user reads them as a member of app_owner)
        subprocess.run([os.path.join(pg16_bin_dir(), "pgbench"), "-i", "-q", "-s", str(args.scale), "-h", "127.0.0.1",
                        "-p", str(SOURCE_PORT), "-U", "postgres", DB], check=True,
                       env=dict(os.environ, PGPASSWORD=ADMIN_PASSWORD, PGSSLMODE="disable"),
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        source.execute(DB, ["ALTER TABLE public.%s OWNER TO %s" % (t, APP_OWNER) for t in
                            ("pgbench_accounts", "pgbench_branches", "pgbench_tellers", "pgbench_history")],
                       operator=True)
        load_demo(source, DB)
        log("copying to the target (pg_dump | psql)")
        copy_db(source, DB, target, DB)
        for c in (source, target):
            c.execute(DB, ["VACUUM ANALYZE", "CHECKPOINT"], operator=True)
        result["setup_seconds"] = round(time.time() - t0, 1)

        every_keyed = keyed_tables(source)
        # the same tables for both tools: those reladiff can be given (pg_validate compares the others too, in
        # pg_validate_all_tables)
        tables = [t for t in every_keyed if reladiff_can_name(t[4], t[5])]
        result["keyed_tables"] = len(every_keyed)
        result["keyed_rows"] = sum(t[2] for t in every_keyed)
        result["compared_tables"] = len(tables)
        result["compared_rows"] = sum(t[2] for t in tables)
        result["not_nameable_by_reladiff"] = [t[0] for t in every_keyed if t not in tables]

        log("pg_validate, every table")
        result["pg_validate_all_tables"] = run_pg_validate(source, target)

        exe, error = ensure_reladiff()
        if exe is None:
            result["reladiff"] = dict(ok=False, error="reladiff could not be installed: %s" % error)
        names = [t[3] for t in tables]
        runs = dict(pg_validate=[], reladiff=[], pg_validate_accounts=[], reladiff_accounts=[])
        for number in range(args.repeat):
            log("round %d/%d: pg_validate on the tables with a primary key" % (number + 1, args.repeat))
            runs["pg_validate"].append(run_pg_validate(source, target, tables=names))
            runs["pg_validate_accounts"].append(run_pg_validate(source, target, tables=["public.pgbench_accounts"],
                                                                check_schema=False, check_sequences=False))
            if exe is None:
                continue
            log("round %d/%d: reladiff, table by table" % (number + 1, args.repeat))
            per_table, seconds, rows, failed = [], 0.0, 0, []
            for table, key, count, dummy, dummy, dummy in tables:
                r = run_reladiff(exe, source, target, table, key)
                per_table.append(dict(table=table, rows=count, **r))
                if r["ok"]:
                    seconds += r["seconds"]
                    rows += count
                else:
                    failed.append(table)
            runs["reladiff"].append(dict(ok=not failed, seconds=round(seconds, 2), rows=rows,
                                         rows_per_second=round(rows / seconds, 1) if seconds else None,
                                         failed_tables=failed, tables=per_table))
            acc = per_table[[t[0] for t in tables].index("public.pgbench_accounts")]
            runs["reladiff_accounts"].append(dict(acc, rows_per_second=round(acc["rows"] / acc["seconds"], 1)))

        def median(items):
            good = sorted((r for r in items if r.get("ok")), key=lambda r: r["rows_per_second"] or 0)
            return good[len(good) // 2] if good else (items[0] if items else None)

        result["pg_validate"] = median(runs["pg_validate"])
        result["pg_validate"]["runs_rows_per_second"] = [r.get("rows_per_second") for r in runs["pg_validate"]]
        if exe is not None:
            result["reladiff"] = median(runs["reladiff"])
            result["reladiff"]["runs_rows_per_second"] = [r.get("rows_per_second") for r in runs["reladiff"]]
            if result["pg_validate"].get("ok") and result["reladiff"].get("ok"):
                result["speedup_vs_reladiff"] = round(result["pg_validate"]["rows_per_second"]
                                                      / result["reladiff"]["rows_per_second"], 2)
            ours, theirs = median(runs["pg_validate_accounts"]), median(runs["reladiff_accounts"])
            result["pgbench_accounts_only"] = dict(
                pg_validate=ours, reladiff=theirs,
                pg_validate_runs=[r.get("rows_per_second") for r in runs["pg_validate_accounts"]],
                reladiff_runs=[r.get("rows_per_second") for r in runs["reladiff_accounts"]])
            if ours and ours.get("ok") and theirs and theirs.get("ok"):
                result["pgbench_accounts_only"]["speedup_vs_reladiff"] = round(
                    ours["rows_per_second"] / theirs["rows_per_second"], 2)
        log("pgcopydb compare data")
        result["pgcopydb"] = run_pgcopydb(source, target)

        log("one changed and one deleted row in pgbench_accounts, both tools again")
        target.execute(DB, ["UPDATE pgbench_accounts SET abalance = abalance + 1 WHERE aid = 1234567 % (100000 * {0}) + 1"
                            .format(args.scale), "DELETE FROM pgbench_accounts WHERE aid = 4242"])
        result["with_differences"] = dict(
            injected=["changed aid %d" % (1234567 % (100000 * args.scale) + 1), "missing aid 4242"],
            pg_validate=run_pg_validate(source, target, tables=["public.pgbench_accounts"], check_schema=False,
                                        check_sequences=False))
        if exe is not None:
            r = run_reladiff(exe, source, target, "public.pgbench_accounts", ["aid"], stats=False)
            r["output"] = r["output"][-400:]
            result["with_differences"]["reladiff"] = r
    finally:
        if args.keep and source is not None:
            log("clusters kept: %s and %s" % (source.data, target.data if target else "-"))
        else:
            for c in (source, target):
                if c is not None:
                    c.stop()
    path = benchlab.write_result("validate", result, started)
    print(json.dumps(result, indent=2))
    log("result: %s" % os.path.relpath(path, REPO))


if __name__ == "__main__":
    main()
