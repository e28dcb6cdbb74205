"""The freeze of aurora_cutover on the RDS/Aurora-shaped clusters (PG16 source, PG18 target, the module as the
master user over TLS verify-full) behind a real PgBouncer, with a writer going through PgBouncer:

- crash-safe: the module SIGKILLed inside the freeze (PgBouncer paused, or the application role read-only)
  leaves writes frozen; mode=recover (or the next run, first) undoes it from pgshift.freeze_journal; nothing
  is lost and the next cutover succeeds;
- the read_only freeze is scoped to the database: another database of the same role keeps taking writes and
  the role's settings elsewhere are untouched; a superuser role is refused before anything freezes;
- bounded: a statement inside the freeze that would outlast the pause budget is cut short by lock_timeout, the
  freeze is undone, the report names the statement; materialized views are refreshed before the freeze and,
  inside it, only when their tables changed.

The fixtures follow test_cutover.py's (its PgBouncer and writer are reused).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time

import psycopg
import pytest
from psycopg import sql

import test_cutover as base
from ansible_collections.pgshift.aurora.plugins.module_utils import replication_conn
from modrunner import COLLECTIONS, REPO, run_module
from pgcluster import MASTER_PASSWORD, MASTER_USER, ca_cert, wait_for

EXTRA_SCHEMA = [
    # never written: counted by the verify step (the budget test locks it on the target)
    "CREATE TABLE public.quiet (id int PRIMARY KEY)",
    "CREATE TABLE public.settings (name text PRIMARY KEY, value text)",
    # reads a table nobody writes: refreshed before the freeze, not again inside it
    "CREATE MATERIALIZED VIEW public.settings_count AS SELECT count(*) AS n FROM public.settings",
]
TABLES = ("public.accounts", "public.ledger", "public.audit", "public.quiet", "public.settings")


@pytest.fixture
def pair(source_cluster, target_cluster, new_db, new_role):
    """As test_cutover.pair, with two more tables (one never written) and a matview on one of them; the target's
    tables analysed (the preflight wants planner statistics there)."""
    migration = new_role("fz")
    sdb, tdb = new_db(source_cluster), new_db(target_cluster)
    with target_cluster.connect() as conn:
        conn.execute("DROP DATABASE %s" % tdb)
        conn.execute("CREATE DATABASE %s OWNER app_owner" % sdb)
    app = "app_%s" % migration
    for cluster in (source_cluster, target_cluster):
        with cluster.master_connect() as conn:  # application roles are the master user's, as on RDS
            conn.execute("DROP ROLE IF EXISTS %s" % app)
            conn.execute("CREATE ROLE %s LOGIN PASSWORD '%s'" % (app, base.APP_PASSWORD))
        with cluster.connect(sdb) as conn:
            for stmt in base.SCHEMA + EXTRA_SCHEMA:
                conn.execute(stmt)
            conn.execute("GRANT SELECT, INSERT, UPDATE ON ALL TABLES IN SCHEMA public TO %s" % app)
            conn.execute("GRANT USAGE ON ALL SEQUENCES IN SCHEMA public TO %s" % app)
    with source_cluster.connect(sdb) as conn:
        conn.execute("INSERT INTO public.accounts (balance) SELECT 0 FROM generate_series(1, 20)")
        conn.execute("INSERT INTO public.quiet SELECT generate_series(1, 10)")
        conn.execute("INSERT INTO public.settings VALUES ('a', '1'), ('b', '2')")
    stream = "pgshift_%s_s1" % migration
    with source_cluster.connect(sdb) as conn:
        conn.execute("CREATE PUBLICATION %s FOR TABLE %s" % (stream, ", ".join(TABLES)))
    conninfo = replication_conn.subscription_conninfo("127.0.0.1", source_cluster.port, sdb, MASTER_USER, MASTER_PASSWORD,
                                                      "verify-full", ca_cert())
    with target_cluster.master_connect(sdb) as conn:
        conn.execute(sql.SQL("CREATE SUBSCRIPTION {} CONNECTION {} PUBLICATION {} WITH (copy_data = true)").format(
            sql.Identifier(stream), sql.Literal(conninfo), sql.Identifier(stream)))
    unsynced = "SELECT count(*) FROM pg_subscription_rel WHERE srsubstate <> 'r'"
    assert wait_for(lambda: target_cluster.query(sdb, unsynced)[0][0] == 0, 60)
    target_cluster.execute(sdb, "ANALYZE")
    bouncer = base.PgBouncer(sdb, source_cluster.port, app).start()
    env = dict(source=source_cluster, target=target_cluster, db=sdb, migration=migration, app=app, bouncer=bouncer,
               writers=[], procs=[])
    try:
        yield env
    finally:
        for proc in env["procs"]:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        for w in env["writers"]:
            w.stop()
        bouncer.stop()
        base.drop_streams((source_cluster, target_cluster), sdb, migration)
        with source_cluster.connect(sdb, operator=True) as conn:
            conn.execute("DROP OWNED BY %s" % app)
        with target_cluster.connect() as conn:
            conn.execute("DROP DATABASE IF EXISTS %s WITH (FORCE)" % sdb)
        for cluster in (source_cluster, target_cluster):
            with cluster.connect() as conn:
                conn.execute("DROP ROLE IF EXISTS %s" % app)


def params(env, **extra):
    return base.params(env, **extra)


def cutover(env, **extra):
    result, raw = run_module(base.MODULE, params(env, **extra))
    for secret in base.SECRETS:
        assert secret not in raw, "a secret leaked into the module output"
    return result


def start_cutover(env, **extra):
    """aurora_cutover in the background, in a process group of its own (SIGKILLed as a whole)."""
    payload = dict(params(env, **extra), _ansible_check_mode=False, _ansible_diff=False, _ansible_verbosity=0)
    args = tempfile.NamedTemporaryFile("w", suffix=".json", delete=False)
    json.dump(dict(ANSIBLE_MODULE_ARGS=payload), args)
    args.close()
    out = tempfile.TemporaryFile("w+")
    procenv = dict(os.environ, PYTHONPATH=COLLECTIONS + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.Popen([sys.executable, os.path.join(REPO, "plugins", "modules", base.MODULE + ".py"), args.name],
                            stdout=out, stderr=subprocess.STDOUT, env=procenv, start_new_session=True)
    proc.output, proc.argfile = out, args.name
    env["procs"].append(proc)
    return proc


def finish(proc, timeout=120):
    proc.wait(timeout)
    os.unlink(proc.argfile)
    proc.output.seek(0)
    raw = proc.output.read()
    for secret in base.SECRETS:
        assert secret not in raw, "a secret leaked into the module output"
    return json.loads(raw[raw.find("{"):])


def kill(proc):
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(30)
    os.unlink(proc.argfile)


def journal(env, side="source"):
    cluster = env[side]
    if not cluster.query(env["db"], "SELECT to_regclass('pgshift.freeze_journal') IS NOT NULL", operator=True)[0][0]:
        return []
    return cluster.query(env["db"], "SELECT run_id, method, undone_at IS NOT NULL, finished_at IS NOT NULL, outcome, "
                                    "restore FROM pgshift.freeze_journal ORDER BY started_at", operator=True)


def paused(env):
    with psycopg.connect(host="127.0.0.1", port=env["bouncer"].port, dbname="pgbouncer", user=base.PGB_ADMIN,
                         password=base.PGB_PASSWORD, autocommit=True, prepare_threshold=None) as c:
        cur = c.execute("SHOW DATABASES")
        names = [d.name for d in cur.description]
        for row in cur.fetchall():
            row = dict(zip(names, row))
            if row["name"] == env["db"]:
                return bool(int(row["paused"]))
    return None


def role_settings(cluster, role):
    """Every pg_db_role_setting row of the role: {database name or '*': sorted settings}."""
    found = cluster.query("postgres", "SELECT coalesce(d.datname, '*'), s.setconfig FROM pg_db_role_setting s "
                                      "JOIN pg_roles r ON r.oid = s.setrole LEFT JOIN pg_database d ON "
                                      "d.oid = s.setdatabase WHERE r.rolname = %s", (role,))
    return dict((db, sorted(conf)) for db, conf in found)


def app_connect(env, dbname, side="source"):
    cluster = env[side]
    return psycopg.connect(host="127.0.0.1", port=cluster.port, dbname=dbname, user=env["app"],
                           password=base.APP_PASSWORD, sslmode="verify-full", sslrootcert=ca_cert(), autocommit=True)


def stalled(writer, seconds=1.5):
    before = writer.seq
    time.sleep(seconds)
    return writer.seq == before


def wait_file(path, proc, timeout=90):
    assert wait_for(lambda: os.path.exists(path) or proc.poll() is not None, timeout), "the hook never ran"
    if not os.path.exists(path):
        proc.output.seek(0)
        raise AssertionError("the module ended before the hook: %s" % proc.output.read()[-3000:])


# --------------------------------------------------------------------------------------------
# Crash-safe
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("method,then", [("pgbouncer", "recover"), ("read_only", "recover"),
                                         ("pgbouncer", "cutover")])
def test_a_controller_killed_inside_the_freeze_is_recovered_and_nothing_is_lost(pair, tmp_path, method, then):
    env = pair
    src, tgt, db = env["source"], env["target"], env["db"]
    writer = base.start_writer(env, 1)
    frozen = tmp_path / "frozen"
    proc = start_cutover(env, freeze_method=method, freeze_timeout=120, barrier_timeout=120,
                         hooks=dict(before_barrier="touch %s; exec sleep 110" % frozen))
    wait_file(str(frozen), proc)
    # frozen: the writer waits in PgBouncer (pgbouncer) or is refused (read_only)
    assert stalled(writer)
    if method == "pgbouncer":
        assert paused(env) is True
    else:
        assert role_settings(src, env["app"]) == {db: ["default_transaction_read_only=on"]}
    (entry,) = journal(env)
    run_id, restore = entry[0], entry[5]
    assert entry[1:4] == (method, False, False)
    assert base.PGB_PASSWORD not in json.dumps(restore)
    if method == "read_only":
        assert restore == dict(roles={env["app"]: None}, database=db)
    else:
        assert restore["pgbouncer"]["database"] == db and restore["pgbouncer"]["port"] == env["bouncer"].port

    kill(proc)
    # nobody undid it: writes stay frozen
    assert stalled(writer, 2.0)
    if method == "pgbouncer":
        assert paused(env) is True

    if then == "recover":
        recovered = cutover(env, mode="recover")
        assert not recovered.get("failed"), recovered.get("msg")
        assert recovered["changed"] and recovered["status"] == "recovered" and recovered["serving"] == "source"
        (item,) = recovered["recovered"]
        assert (item["run_id"], item["side"], item["method"], item["outcome"]) == (run_id, "source", method, "undone")
        assert any(("RESUME %s" % db) in q if method == "pgbouncer" else "IN DATABASE" in q
                   for q in recovered["queries"])
    else:
        # the next cutover undoes it before anything else and says so
        result = cutover(env)
        assert not result.get("failed"), result.get("msg")
        assert [(r["run_id"], r["outcome"]) for r in result["recovered"]] == [(run_id, "undone")]
        assert any("undid the pgbouncer freeze of run %s" % run_id in str(w) for w in result["warnings"])
        assert result["status"] == "switched"
    before = writer.seq
    assert wait_for(lambda: writer.seq > before + 10, 30), "writes do not flow after the recovery"
    assert journal(env)[0][2:5] == (True, False, "undone")
    if method == "read_only":
        assert role_settings(src, env["app"]) == {}
    else:
        assert paused(env) is False

    if then == "recover":
        again = cutover(env, mode="recover")
        assert not again["changed"] and again["status"] == "nothing_to_recover" and again["recovered"] == []
        result = cutover(env, freeze_method=method)
        assert not result.get("failed"), result.get("msg")
        assert result["status"] == "switched" and result["recovered"] == []
    # the cutover's own freeze is journaled and finished by its switch
    assert [(r[0], r[4]) for r in journal(env)][-1] == (result["run_id"], "switched")
    assert env["bouncer"].points_at() == tgt.port
    before = writer.seq
    assert wait_for(lambda: writer.seq > before + 10, 30)
    base.stop_writers(env)
    if method == "pgbouncer":
        assert writer.errors == []  # clients waited inside PgBouncer, none failed
    base.wait_same(env, TABLES)
    base.ledger_exact(tgt, db, [writer])
    base.ledger_exact(src, db, [writer])


# --------------------------------------------------------------------------------------------
# read_only: only the database
# --------------------------------------------------------------------------------------------

def test_read_only_freeze_reaches_only_the_database(pair, new_db, new_role, tmp_path):
    env = pair
    src, db, app = env["source"], env["db"], env["app"]
    other = new_db(src)
    src.execute(other, ["CREATE TABLE public.notes (id serial PRIMARY KEY, note text)",
                        "GRANT INSERT, SELECT ON public.notes TO %s" % app,
                        "GRANT USAGE ON SEQUENCE public.notes_id_seq TO %s" % app])
    with src.master_connect() as c:
        # settings of the role elsewhere, and a previous value in the frozen database, all to be kept as they are
        c.execute("ALTER ROLE %s SET work_mem = '8MB'" % app)
        c.execute("ALTER ROLE %s IN DATABASE %s SET statement_timeout = '5min'" % (app, other))
        c.execute("ALTER ROLE %s IN DATABASE %s SET default_transaction_read_only = off" % (app, db))
    settings_before = role_settings(src, app)
    assert settings_before[db] == ["default_transaction_read_only=off"]
    elsewhere = app_connect(env, other)  # a session in the other database, open across the freeze
    frozen = tmp_path / "frozen"
    proc = start_cutover(env, rehearsal=True, freeze_method="read_only", switch_method="none", freeze_timeout=60,
                         hooks=dict(before_barrier="touch %s; exec sleep 4" % frozen))
    try:
        wait_file(str(frozen), proc)
        # the other database takes writes, from the session that was there and from new ones
        elsewhere.execute("INSERT INTO public.notes (note) VALUES ('during the freeze, old session')")
        with app_connect(env, other) as c:
            c.execute("INSERT INTO public.notes (note) VALUES ('during the freeze, new session')")
            assert c.execute("SHOW default_transaction_read_only").fetchone()[0] == "off"
        with app_connect(env, db) as c:
            assert c.execute("SHOW default_transaction_read_only").fetchone()[0] == "on"
            with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
                c.execute("INSERT INTO public.ledger (client_id, seq) VALUES (9, 1)")
        result = finish(proc)
    finally:
        elsewhere.close()
    assert not result.get("failed"), result.get("msg")
    assert result["status"] == "rehearsed"
    freeze = [e for e in result["timeline"] if e["step"] == "freeze" and e["kind"] == "step"][0]
    assert freeze["detail"]["database"] == db and freeze["detail"]["roles"] == [app]
    for value in ("on", "off"):
        assert 'ALTER ROLE "%s" IN DATABASE "%s" SET default_transaction_read_only = \'%s\'' % (
            app, db, value) in result["queries"]
    # exactly as before: the previous value in this database, the others and the global ones untouched
    assert role_settings(src, app) == settings_before
    assert src.query(other, "SELECT count(*) FROM public.notes")[0][0] == 2
    with app_connect(env, db) as c:
        c.execute("INSERT INTO public.ledger (client_id, seq) VALUES (9, 1)")
    with src.master_connect() as c:
        c.execute("ALTER ROLE %s RESET ALL" % app)
    src.execute(other, "DROP OWNED BY %s" % app, operator=True)  # its grants there: the role goes after the test

    # a superuser application role: the master user can neither change it nor end its sessions - no-go
    boss = new_role("boss")
    for cluster in (src, env["target"]):
        cluster.execute("postgres", "CREATE ROLE %s LOGIN SUPERUSER" % boss, operator=True)
    try:
        refused = cutover(env, rehearsal=True, freeze_method="read_only", switch_method="none", app_roles=[boss])
        assert refused["failed"] and refused["failed_step"] == "preflight", refused.get("msg")
        assert "role %s is a superuser" % boss in refused["msg"] and "nor end its sessions" in refused["msg"]
        assert refused["write_pause_seconds"] is None
        assert [r[4] for r in journal(env)] == ["undone"]  # the rehearsal's; nothing journaled for the refusal
    finally:
        for cluster in (src, env["target"]):
            cluster.execute("postgres", "DROP ROLE %s" % boss, operator=True)


# --------------------------------------------------------------------------------------------
# Bounded by the pause budget
# --------------------------------------------------------------------------------------------

def test_a_statement_over_the_budget_undoes_the_freeze_and_is_named(pair, tmp_path):
    env = pair
    src, tgt, db = env["source"], env["target"], env["db"]
    writer = base.start_writer(env, 1)
    # inside the freeze, a session on the target takes public.quiet (nobody writes it) for 6 s: the verify step's
    # count of it waits on the lock
    lock = ("(psql 'host=127.0.0.1 port=%d dbname=%s user=postgres' -c 'BEGIN; LOCK TABLE public.quiet IN ACCESS "
            "EXCLUSIVE MODE; SELECT pg_sleep(6); COMMIT' >/dev/null 2>&1 &); sleep 0.5" % (tgt.port, db))
    reports = tmp_path / "reports"
    os.environ["PGPASSWORD"] = base.ADMIN_PASSWORD
    try:
        result = cutover(env, freeze_timeout=4, verify_tables=10, report_dir=str(reports),
                         hooks=dict(before_verify=lock))
    finally:
        os.environ.pop("PGPASSWORD", None)
    assert result["failed"] and result["status"] == "aborted" and result["failed_step"] == "verify", result.get("msg")
    count = 'SELECT count(*) FROM ONLY "public"."quiet"'
    failed = [e for e in result["timeline"] if e["status"] == "failed" and e["kind"] == "step"][0]
    assert failed["detail"]["statement"] == count and failed["detail"]["side"] == "target"
    # whichever of the two (both are the budget left) fired first
    assert failed["detail"]["timeout"] in ("statement_timeout", "lock_timeout")
    assert 0 < failed["detail"]["timeout_ms"] < 4000
    assert "on the target, %s cut short %s after" % (failed["detail"]["timeout"], count) in result["msg"]
    assert count in (reports / "cutover.md").read_text()
    # cut short at the budget, not later; undone; the source serves
    assert result["write_pause_seconds"] < 4 + 1.5
    assert result["undone"] == [dict(step="freeze", status="ok", message="undone")]
    assert env["bouncer"].points_at() == src.port and result["serving"] == "source"
    assert paused(env) is False and journal(env)[-1][4] == "undone"
    before = writer.seq
    assert wait_for(lambda: writer.seq > before + 10, 20), "the writer is stuck after the undo"

    # the next one succeeds; inside the freeze only the matview whose table changed is refreshed again (the
    # hook before the freeze leaves the apply worker time to publish its table counters: at most once a second)
    result = cutover(env, hooks=dict(before_freeze="sleep 1.5"))
    assert not result.get("failed"), result.get("msg")
    (preflight,) = [e for e in result["timeline"] if e["step"] == "preflight" and e["kind"] == "step"]
    assert preflight["detail"]["matviews_refreshed"] == 2
    (finishing,) = [e for e in result["timeline"] if e["step"] == "finishing" and e["kind"] == "step"]
    assert finishing["detail"]["matviews_refreshed"] == 1 and finishing["detail"]["matviews_unchanged"] == 1
    assert 'REFRESH MATERIALIZED VIEW "public"."settings_count"' in result["queries"]
    assert result["queries"].count('REFRESH MATERIALIZED VIEW "public"."account_totals"') == 2
    base.stop_writers(env)
    assert writer.errors == []
    base.wait_same(env, TABLES)
    base.ledger_exact(tgt, db, [writer])
    assert tgt.query(db, "SELECT n FROM public.account_totals")[0][0] > 20


# --------------------------------------------------------------------------------------------
# Through the playbook: cutover.yml -e cutover_mode=recover
# --------------------------------------------------------------------------------------------

def test_playbook_recover_undoes_a_dead_runs_freeze(source_cluster, target_cluster, new_db, new_role, tmp_path):
    """What a controller killed inside a read_only freeze leaves (the role read-only in the database, the journal
    entry of a session that is gone) is undone by cutover.yml -e cutover_mode=recover, which writes recover.json/.md;
    a second run finds nothing to do. Both end the play with 0."""
    import yaml

    from ansible_collections.pgshift.aurora.plugins.module_utils._pg import freeze as db
    from ansible_collections.pgshift.aurora.plugins.module_utils.journal import Journal
    from modrunner import run_playbook

    migration, app = new_role("pbrec"), new_role("pbrecapp")
    sdb, tdb = new_db(source_cluster), new_db(target_cluster)
    for cluster in (source_cluster, target_cluster):
        with cluster.master_connect() as c:
            c.execute("CREATE ROLE %s LOGIN" % app)
    try:
        with source_cluster.master_connect(sdb) as c:
            db.ensure_journal(c, Journal())
            c.execute("ALTER ROLE %s IN DATABASE %s SET default_transaction_read_only = on" % (app, sdb))
            c.execute("INSERT INTO pgshift.freeze_journal (migration, run_id, direction, side, method, done, restore, "
                      "owner_pid, owner_started) VALUES (%s, 'deadrun', 'forward', 'source', 'read_only', %s, %s, "
                      "2147483000, now())", (migration, json.dumps(dict(read_only_roles=[app], database=sdb)),
                                             json.dumps(dict(roles={app: None}, database=sdb))))
        root, reports = tmp_path / "inventory", tmp_path / "reports"
        (root / "host_vars").mkdir(parents=True)
        (root / "group_vars" / "all").mkdir(parents=True)
        (root / "hosts.yml").write_text(yaml.safe_dump(dict(all=dict(
            vars=dict(ansible_connection="local", ansible_python_interpreter="{{ ansible_playbook_python }}"),
            children=dict(source=dict(hosts={"it-source": None}), target=dict(hosts={"it-target": None}))))))
        for host, cluster, dbname in (("it-source", source_cluster, sdb), ("it-target", target_cluster, tdb)):
            (root / "host_vars" / (host + ".yml")).write_text(yaml.safe_dump(dict(
                db_host="127.0.0.1", db_port=cluster.port, db_name=dbname, db_user=MASTER_USER,
                db_password=MASTER_PASSWORD, db_sslmode="verify-full", db_sslrootcert=ca_cert())))
        (root / "group_vars" / "all" / "migration.yml").write_text(yaml.safe_dump(dict(
            migration_name=migration, migration_engine="native", migration_streams=1, traffic_switch="none",
            migration_app_roles=[app], report_dir=str(reports))))

        def recover():
            rc, out, dummy = run_playbook("pgshift.aurora.cutover", str(root / "hosts.yml"), "-e",
                                          "cutover_mode=recover", cwd=str(tmp_path), timeout=300,
                                          secrets=base.SECRETS)
            assert rc == 0, out[-3000:]
            return json.loads((reports / "recover.json").read_text()), (reports / "recover.md").read_text()

        found, text = recover()
        assert found["status"] == "recovered" and found["done"] is True
        assert [(r["run_id"], r["outcome"]) for r in found["recovered"]] == [("deadrun", "undone")]
        assert "run `deadrun` (read_only freeze of the source" in text
        assert role_settings(source_cluster, app) == {}
        assert source_cluster.query(sdb, "SELECT undone_at IS NOT NULL FROM pgshift.freeze_journal",
                                    operator=True) == [(True,)]
        found, text = recover()
        assert found["status"] == "nothing_to_recover" and found["recovered"] == []
    finally:
        for cluster in (source_cluster, target_cluster):
            cluster.execute("postgres", "DROP ROLE IF EXISTS %s" % app)
