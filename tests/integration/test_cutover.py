"""aurora_cutover on two real clusters (PG16 source -> PG18 target, shaped like RDS and Aurora: the module
runs as the master user over TLS verify-full) behind a real PgBouncer, with a writer going through
PgBouncer the whole time.

Each test makes its own databases, application role, PgBouncer and migration name; the forward
stream is a plain publication + subscription named as the native engine names them. Every test
that moves traffic checks, row by row, that both sides hold the same rows and that the writer's
gap-free ledger is complete exactly once.
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import subprocess
import tempfile
import threading
import time

import psycopg
import pytest
from psycopg import sql

from ansible_collections.pgshift.aurora.plugins.module_utils import native, replication_conn
from ansible_collections.pgshift.aurora.plugins.module_utils._pg import freeze as freeze_db
from modrunner import run_module
from pgcluster import ADMIN_PASSWORD, MASTER_PASSWORD, MASTER_USER, _as_postgres, ca_cert, free_port, wait_for

MODULE = "aurora_cutover"
APP_PASSWORD = "it-app-secret-42"
PGB_ADMIN = "pgb_admin"
PGB_PASSWORD = "it-pgbouncer-secret-7"
SECRETS = (ADMIN_PASSWORD, MASTER_PASSWORD, APP_PASSWORD, PGB_PASSWORD)

SCHEMA = [
    "CREATE TABLE public.accounts (id bigserial PRIMARY KEY, balance bigint NOT NULL DEFAULT 0)",
    "CREATE TABLE public.ledger (client_id int NOT NULL, seq bigint NOT NULL, note text, "
    "written_at timestamptz NOT NULL DEFAULT now(), PRIMARY KEY (client_id, seq))",
    "CREATE TABLE public.audit (id bigserial PRIMARY KEY, what text)",
    "CREATE FUNCTION public.audit_fn() RETURNS trigger LANGUAGE plpgsql AS "
    "$$BEGIN INSERT INTO public.audit (what) VALUES (TG_OP); RETURN NEW; END$$",
    "CREATE TRIGGER accounts_audit AFTER INSERT OR UPDATE ON public.accounts FOR EACH ROW "
    "EXECUTE FUNCTION public.audit_fn()",
    "CREATE MATERIALIZED VIEW public.account_totals AS SELECT count(*) AS n, sum(balance) AS total "
    "FROM public.accounts",
]


class PgBouncer:
    """A PgBouncer of the test's own (transaction pooling), run as postgres, with a databases file."""

    def __init__(self, db, port, app):
        self.root = tempfile.mkdtemp(prefix="pgshift-it-pgb-")
        self.port = free_port()
        self.db = db
        self.databases = os.path.join(self.root, "databases.ini")
        with open(self.databases, "w") as f:
            f.write("[databases]\n%s = host=127.0.0.1 port=%d dbname=%s\n" % (db, port, db))
        with open(os.path.join(self.root, "userlist.txt"), "w") as f:
            f.write('"%s" "%s"\n"%s" "%s"\n' % (app, APP_PASSWORD, PGB_ADMIN, PGB_PASSWORD))
        with open(os.path.join(self.root, "pgbouncer.ini"), "w") as f:
            f.write("[pgbouncer]\nlisten_addr = 127.0.0.1\nlisten_port = %d\nunix_socket_dir =\n"
                    "pidfile = %s/pgbouncer.pid\nlogfile = %s/pgbouncer.log\nauth_type = scram-sha-256\n"
                    "auth_file = %s/userlist.txt\nadmin_users = %s\npool_mode = transaction\n"
                    "default_pool_size = 5\nmax_client_conn = 50\nignore_startup_parameters = extra_float_digits\n"
                    # the servers take TLS only (hostssl), verified against the test CA, as the lab's PgBouncer does
                    "server_tls_sslmode = verify-full\nserver_tls_ca_file = %s\n"
                    "%%include %s\n" % (self.port, self.root, self.root, self.root, PGB_ADMIN, ca_cert(),
                                        self.databases))
        if os.geteuid() == 0:
            pw = pwd.getpwnam("postgres")
            for path in [self.root] + [os.path.join(self.root, n) for n in os.listdir(self.root)]:
                os.chown(path, pw.pw_uid, pw.pw_gid)
            os.chmod(os.path.join(self.root, "userlist.txt"), 0o600)

    def start(self):
        subprocess.run(_as_postgres(["pgbouncer", "--daemon", "--quiet", os.path.join(self.root, "pgbouncer.ini")]),
                       check=True)
        assert wait_for(lambda: os.path.exists(os.path.join(self.root, "pgbouncer.pid")), 10)
        return self

    def stop(self):
        try:
            with open(os.path.join(self.root, "pgbouncer.pid")) as f:
                os.kill(int(f.read().strip()), 15)
        except (OSError, ValueError):
            pass
        time.sleep(0.2)
        shutil.rmtree(self.root, ignore_errors=True)

    def points_at(self):
        with open(self.databases) as f:
            text = f.read()
        return int(text.split("port=")[1].split()[0])


class Writer(threading.Thread):
    """One application client through PgBouncer: a gap-free ledger (seq 1, 2, 3 ...) and balance updates."""

    def __init__(self, port, db, app, client_id, pause=0.005):
        super().__init__(daemon=True)
        self.port, self.db, self.app, self.client_id, self.pause = port, db, app, client_id, pause
        self.seq = 0
        self.errors = []
        self.stop_event = threading.Event()

    def run(self):
        conn = None
        while not self.stop_event.is_set():
            try:
                if conn is None or conn.closed:
                    conn = psycopg.connect(host="127.0.0.1", port=self.port, dbname=self.db,
                                           user=self.app, password=APP_PASSWORD, autocommit=False,
                                           prepare_threshold=None)
                with conn.transaction():
                    conn.execute("INSERT INTO public.ledger (client_id, seq) VALUES (%s, %s)",
                                 (self.client_id, self.seq + 1))
                    conn.execute("UPDATE public.accounts SET balance = balance + 1 WHERE id = %s",
                                 (self.seq % 20 + 1,))
                    conn.execute("INSERT INTO public.accounts (balance) VALUES (%s)", (self.seq,))
                self.seq += 1
            except psycopg.Error as exc:
                self.errors.append(str(exc).strip())
                try:
                    conn.close()
                except Exception:
                    pass
                conn = None
                time.sleep(0.05)
            time.sleep(self.pause)
        if conn is not None:
            conn.close()

    def stop(self):
        self.stop_event.set()
        self.join(30)


@pytest.fixture
def pair(source_cluster, target_cluster, new_db, new_role):
    """Source and target databases with the same schema, an app role on both, a forward stream, a PgBouncer."""
    migration = new_role("co")
    sdb, tdb = new_db(source_cluster), new_db(target_cluster)
    # The target's database must have the same name as the source's for PgBouncer's single entry.
    with target_cluster.connect() as conn:
        conn.execute("DROP DATABASE %s" % tdb)
        conn.execute("CREATE DATABASE %s OWNER app_owner" % sdb)
    app = "app_%s" % migration
    for cluster in (source_cluster, target_cluster):
        with cluster.master_connect() as conn:  # application roles are the master user's, as on RDS
            conn.execute("DROP ROLE IF EXISTS %s" % app)
            conn.execute("CREATE ROLE %s LOGIN PASSWORD '%s'" % (app, APP_PASSWORD))
        with cluster.connect(sdb) as conn:
            for stmt in SCHEMA:
                conn.execute(stmt)
            conn.execute("GRANT SELECT, INSERT, UPDATE ON ALL TABLES IN SCHEMA public TO %s" % app)
            conn.execute("GRANT USAGE ON ALL SEQUENCES IN SCHEMA public TO %s" % app)
    with source_cluster.connect(sdb) as conn:
        conn.execute("INSERT INTO public.accounts (balance) SELECT 0 FROM generate_series(1, 20)")
    stream = "pgshift_%s_s1" % migration
    with source_cluster.connect(sdb) as conn:
        conn.execute("CREATE PUBLICATION %s FOR TABLE public.accounts, public.ledger, public.audit" % stream)
    conninfo = replication_conn.subscription_conninfo("127.0.0.1", source_cluster.port, sdb, MASTER_USER, MASTER_PASSWORD,
                                                      "verify-full", ca_cert())
    with target_cluster.master_connect(sdb) as conn:
        conn.execute(sql.SQL("CREATE SUBSCRIPTION {} CONNECTION {} PUBLICATION {} WITH (copy_data = true)").format(
            sql.Identifier(stream), sql.Literal(conninfo), sql.Identifier(stream)))
    unsynced = "SELECT count(*) FROM pg_subscription_rel WHERE srsubstate <> 'r'"
    assert wait_for(lambda: target_cluster.query(sdb, unsynced)[0][0] == 0, 60)
    # Planner statistics on the target, as replicate.yml leaves them (pg_analyze): the preflight's statistics gate.
    target_cluster.execute(sdb, "ANALYZE public.accounts, public.ledger, public.audit")
    bouncer = PgBouncer(sdb, source_cluster.port, app).start()
    env = dict(source=source_cluster, target=target_cluster, db=sdb, migration=migration, app=app, bouncer=bouncer,
               writers=[])
    try:
        yield env
    finally:
        for w in env["writers"]:
            w.stop()
        bouncer.stop()
        drop_streams((source_cluster, target_cluster), sdb, migration)
        with source_cluster.connect(sdb, operator=True) as conn:
            conn.execute("DROP OWNED BY %s" % app)
        with target_cluster.connect() as conn:
            conn.execute("DROP DATABASE IF EXISTS %s WITH (FORCE)" % sdb)
        for cluster in (source_cluster, target_cluster):
            with cluster.connect() as conn:
                conn.execute("DROP ROLE IF EXISTS %s" % app)


def drop_streams(clusters, db, migration):
    """Test teardown: the migration's subscriptions (detached from their slots) and slots, on every cluster."""
    for cluster in clusters:
        with cluster.connect(db, operator=True) as conn:
            for (sub,) in conn.execute("SELECT subname FROM pg_subscription WHERE subname LIKE %s",
                                       ("pgshift_%s_%%" % migration,)).fetchall():
                conn.execute("ALTER SUBSCRIPTION %s DISABLE" % sub)
                conn.execute("ALTER SUBSCRIPTION %s SET (slot_name = NONE)" % sub)
                conn.execute("DROP SUBSCRIPTION %s" % sub)
    for cluster in clusters:
        with cluster.connect() as conn:
            for (slot,) in conn.execute("SELECT slot_name FROM pg_replication_slots WHERE slot_name LIKE %s",
                                        ("pgshift_%s_%%" % migration,)).fetchall():
                wait_for(lambda: not conn.execute("SELECT active FROM pg_replication_slots WHERE slot_name = %s",
                                                  (slot,)).fetchone()[0], 10)
                conn.execute("SELECT pg_drop_replication_slot(%s)", (slot,))


def params(env, **extra):
    src, tgt = env["source"], env["target"]
    p = src.module_params(env["db"])
    p.update(("target_" + k, v) for k, v in tgt.module_params(env["db"]).items())
    p.update(source_ssl_mode_for_target="verify-full", source_ssl_root_cert_for_target=ca_cert(),
             target_ssl_mode_for_source="verify-full", target_ssl_root_cert_for_source=ca_cert(),
             migration=env["migration"], app_roles=[env["app"]], freeze_timeout=15, barrier_timeout=15,
             max_transaction_seconds=30, preflight_wait=5,
             # these tests cut over without a rehearsal first (test_cutover_return_path.py covers that gate)
             return_path_requirement="ignore",
             pgbouncer=dict(host="127.0.0.1", port=env["bouncer"].port, admin_user=PGB_ADMIN,
                            admin_password=PGB_PASSWORD, database=env["db"], databases_file=env["bouncer"].databases))
    p.update(extra)
    return p


def cutover(env, **extra):
    result, raw = run_module(MODULE, params(env, **extra))
    for secret in SECRETS:
        assert secret not in raw, "a secret leaked into the module output"
    return result


def start_writer(env, client_id):
    w = Writer(env["bouncer"].port, env["db"], env["app"], client_id)
    w.start()
    env["writers"].append(w)
    assert wait_for(lambda: w.seq > 5, 20), w.errors
    return w


def table_rows(cluster, db, table):
    return cluster.query(db, "SELECT t::text FROM %s t ORDER BY 1" % table)


def wait_same(env, tables=("public.accounts", "public.ledger", "public.audit"), timeout=30):
    src, tgt, db = env["source"], env["target"], env["db"]

    def same():
        return all(table_rows(src, db, t) == table_rows(tgt, db, t) for t in tables)
    assert wait_for(same, timeout), "source and target differ"


def ledger_exact(cluster, db, writers):
    for w in writers:
        n, distinct, top = cluster.query(db, "SELECT count(*), count(DISTINCT seq), coalesce(max(seq), 0) "
                                             "FROM public.ledger WHERE client_id = %s", (w.client_id,))[0]
        assert n == distinct == top == w.seq, (w.client_id, n, distinct, top, w.seq)


def stop_writers(env):
    for w in env["writers"]:
        w.stop()


def test_cutover_rollback_and_cutover_again_with_writes_going_on(pair):
    env = pair
    src, tgt, db = env["source"], env["target"], env["db"]
    writer = start_writer(env, 1)

    result = cutover(env, sequence_gap=100)
    assert not result.get("failed"), result.get("msg")
    assert result["status"] == "switched" and result["serving"] == "target"
    assert env["bouncer"].points_at() == tgt.port
    assert [e["step"] for e in result["timeline"] if e["kind"] == "step"] == [
        "preflight", "freeze", "barrier", "sequences", "finishing", "verify", "return_path", "switch",
        "replication", "postcheck"]
    assert 0 < result["write_pause_seconds"] < result["freeze_timeout"]
    moved = dict((s["sequence"], s) for s in result["sequences_moved"])
    assert "public.accounts_id_seq" in moved
    src_next = src.query(db, "SELECT last_value FROM public.accounts_id_seq")[0][0]
    assert tgt.query(db, "SELECT last_value FROM public.accounts_id_seq")[0][0] >= src_next + 100
    # writes now land on the target and come back to the source through the return stream
    before = writer.seq
    assert wait_for(lambda: writer.seq > before + 20, 20)
    assert tgt.query(db, "SELECT count(*) FROM pg_subscription")[0][0] == 0
    assert src.query(db, "SELECT subname FROM pg_subscription")[0][0] == "pgshift_%s_r1" % env["migration"]
    stop_writers(env)
    assert writer.errors == []
    wait_same(env)
    ledger_exact(tgt, db, [writer])
    # the trigger fired on the target for the writes after the switch, once
    assert tgt.query(db, "SELECT count(*) FROM public.audit")[0][0] == \
        tgt.query(db, "SELECT count(*) FROM public.accounts")[0][0] + writer.seq

    status = cutover(env, mode="status")
    assert status["serving"] == "target"

    writer2 = start_writer(env, 2)
    back = cutover(env, direction="reverse")
    assert not back.get("failed"), back.get("msg")
    assert back["status"] == "switched" and back["serving"] == "source"
    assert env["bouncer"].points_at() == src.port
    before = writer2.seq
    assert wait_for(lambda: writer2.seq > before + 20, 20)
    # fresh forward stream: the target follows the source again
    assert tgt.query(db, "SELECT subname FROM pg_subscription")[0][0] == "pgshift_%s_s1" % env["migration"]
    assert src.query(db, "SELECT count(*) FROM pg_subscription")[0][0] == 0
    wait_for(lambda: False, 0.5)
    again = cutover(env)
    assert not again.get("failed"), again.get("msg")
    assert again["status"] == "switched"
    stop_writers(env)
    assert writer2.errors == []
    wait_same(env)
    ledger_exact(src, db, [writer, writer2])
    ledger_exact(tgt, db, [writer, writer2])
    assert cutover(env, mode="status")["serving"] == "target"

    gone = cutover(env, mode="cleanup")
    assert gone["changed"]
    assert src.query(db, "SELECT count(*) FROM pg_subscription")[0][0] == 0
    assert tgt.query(db, "SELECT count(*) FROM pg_publication WHERE pubname LIKE 'pgshift%%'")[0][0] == 0
    assert tgt.query("postgres", "SELECT count(*) FROM pg_replication_slots WHERE slot_name LIKE %s",
                     ("pgshift_%s_%%" % env["migration"],))[0][0] == 0


def assert_source_serving(env, result):
    assert result.get("failed") and result["status"] == "aborted"
    assert env["bouncer"].points_at() == env["source"].port
    assert result["serving"] == "source"
    assert ADMIN_PASSWORD not in json.dumps(result)
    # no leftovers of the return path, the forward stream intact
    tgt, db = env["target"], env["db"]
    assert tgt.query(db, "SELECT count(*) FROM pg_publication")[0][0] == 0
    assert tgt.query(db, "SELECT subenabled FROM pg_subscription")[0][0] is True


def test_the_barrier_holds_every_commit_made_before_the_freeze(pair):
    """The target's apply is held back (a lock on the ledger) when the freeze takes effect and let go 1.5 s later
    (an after_freeze hook ends the locking session in the background): the barrier waits for it. Right after the
    barrier (an after_barrier hook, writes still frozen) the target has every ledger row the source has; its flush
    left a 'barrier' row in the target's cutover log."""
    env = pair
    src, tgt, db = env["source"], env["target"], env["db"]
    writers = [start_writer(env, 1), start_writer(env, 2)]
    query = "SELECT count(*) || ':' || coalesce(sum(seq), 0) FROM public.ledger"
    psql = "psql 'host=127.0.0.1 port=%d dbname=%s user=postgres' -tAc \"" + query + "\""
    same = ('s=$(%s) && t=$(%s) && test -n "$s" && test "$s" = "$t" || { echo "source $s, target $t" >&2; exit 1; }'
            % (psql % (src.port, db), psql % (tgt.port, db)))
    locker = tgt.connect(db, autocommit=False)
    locker.execute("LOCK TABLE public.ledger IN EXCLUSIVE MODE")  # the apply waits; reads do not
    release = ("(sleep 1.5; psql 'host=127.0.0.1 port=%d dbname=postgres user=postgres' -c 'SELECT "
               "pg_terminate_backend(%d)') >/dev/null 2>&1 &" % (tgt.port, locker.info.backend_pid))
    os.environ["PGPASSWORD"] = ADMIN_PASSWORD
    try:
        result = cutover(env, hooks=dict(after_freeze=release, after_barrier=same), max_lag_seconds=3600,
                         max_lag_bytes=1 << 40)
    finally:
        os.environ.pop("PGPASSWORD", None)
        locker.close()
    assert not result.get("failed"), result.get("msg")
    assert result["status"] == "switched"
    barrier = [e for e in result["timeline"] if e["kind"] == "step" and e["step"] == "barrier"][0]["detail"]
    assert barrier["barrier_lsn"] == result["positions"]["barrier_lsn"]
    assert native.lsn_to_int(barrier["flushed_on_new_side"]) > 0
    assert tgt.query(db, "SELECT detail FROM pgshift.cutover_log WHERE event = 'barrier'", operator=True) == [
        (barrier["barrier_lsn"],)]
    stop_writers(env)
    for w in writers:
        assert w.errors == []
    wait_same(env)
    ledger_exact(tgt, db, writers)


@pytest.mark.parametrize("fault", ["failing_hook", "killed_connection", "barrier_timeout", "verify_mismatch"])
def test_a_broken_cutover_leaves_the_source_serving_and_a_second_one_succeeds(pair, fault):
    env = pair
    src, tgt, db = env["source"], env["target"], env["db"]
    writer = start_writer(env, 1)
    extra = {}
    if fault == "failing_hook":
        extra = dict(hooks=dict(after_sequences="echo boom >&2; exit 3"))
    elif fault == "killed_connection":
        # a hook that kills the module's own connection to the target between two steps
        extra = dict(hooks=dict(after_sequences="psql 'host=127.0.0.1 port=%d dbname=%s user=postgres' -c "
                                                "\"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE "
                                                "application_name = 'pgshift.aurora' AND pid <> pg_backend_pid()\""
                                                % (tgt.port, db)))
        os.environ["PGPASSWORD"] = ADMIN_PASSWORD
    elif fault == "barrier_timeout":
        tgt.execute(db, "ALTER SUBSCRIPTION pgshift_%s_s1 DISABLE" % env["migration"], operator=True)
        extra = dict(barrier_timeout=1, max_lag_seconds=3600, max_lag_bytes=1 << 40)
    try:
        if fault == "barrier_timeout":
            # preflight refuses a disabled stream
            result = cutover(env, **extra)
            assert result["failed"] and result["failed_step"] == "preflight"
            assert "disabled" in result["msg"]
            # a stream that is enabled but cannot keep up: hold its apply on a lock
            tgt.execute(db, "ALTER SUBSCRIPTION pgshift_%s_s1 ENABLE" % env["migration"], operator=True)
            locker = tgt.connect(db, autocommit=False)
            locker.execute("LOCK TABLE public.ledger IN ACCESS EXCLUSIVE MODE")
            try:
                time.sleep(1)
                result = cutover(env, barrier_timeout=1, max_lag_seconds=3600, max_lag_bytes=1 << 40)
            finally:
                locker.rollback()
                locker.close()
            assert result["failed_step"] == "barrier", result.get("msg")
            assert "not reached" in result["msg"]
        elif fault == "verify_mismatch":
            # a row on the target only: the counts differ
            tgt.execute(db, "INSERT INTO public.ledger (client_id, seq) VALUES (999, 1)")
            result = cutover(env, verify_tables=5)
            assert result["failed_step"] == "verify", result.get("msg")
            tgt.execute(db, "DELETE FROM public.ledger WHERE client_id = 999")
        else:
            result = cutover(env, **extra)
            if fault == "failing_hook":
                assert result["failed_step"] == "sequences" and "exited with status 3" in result["msg"]
            else:
                assert result["failed_step"] in ("finishing", "sequences"), result.get("msg")
    finally:
        os.environ.pop("PGPASSWORD", None)
    assert_source_serving(env, result)
    assert "freeze" in [u["step"] for u in result["undone"]] or result["failed_step"] == "preflight"
    before = writer.seq
    assert wait_for(lambda: writer.seq > before + 10, 20), "the writer is stuck after the undo"
    stop_writers(env)
    assert writer.errors == []
    wait_same(env)
    ledger_exact(src, db, [writer])
    ledger_exact(tgt, db, [writer])

    writer2 = start_writer(env, 2)
    again = cutover(env)
    assert not again.get("failed"), again.get("msg")
    assert again["status"] == "switched"
    before = writer2.seq
    assert wait_for(lambda: writer2.seq > before + 10, 20)
    stop_writers(env)
    assert writer2.errors == []
    wait_same(env)
    ledger_exact(tgt, db, [writer, writer2])
    ledger_exact(src, db, [writer, writer2])


def test_rehearsal_with_read_only_freeze_changes_nothing(pair):
    env = pair
    src, tgt, db = env["source"], env["target"], env["db"]
    result = cutover(env, rehearsal=True, freeze_method="read_only", switch_method="none",
                     report_dir=os.path.join(tempfile.gettempdir(), "pgshift-it-rehearsal-%s" % env["migration"]))
    assert not result.get("failed"), result.get("msg")
    assert result["status"] == "rehearsed" and result["serving"] == "source"
    # the freeze first: the way back is proven on the return slot outside the write pause, then removed
    assert [u["step"] for u in result["undone"]] == ["freeze", "return_path"]
    assert src.query("postgres", "SELECT count(*) FROM pg_db_role_setting s JOIN pg_roles r ON r.oid = s.setrole "
                                 "WHERE r.rolname = %s", (env["app"],))[0][0] == 0
    assert env["bouncer"].points_at() == src.port
    assert tgt.query(db, "SELECT count(*) FROM pg_publication")[0][0] == 0
    report = os.path.join(tempfile.gettempdir(), "pgshift-it-rehearsal-%s" % env["migration"], "rehearsal.md")
    with open(report) as f:
        text = f.read()
    assert "# Rehearsal of the cutover" in text and "| 6 | verify | step | ok |" in text
    shutil.rmtree(os.path.dirname(report))
    # the app still writes on the source
    w = start_writer(env, 3)
    stop_writers(env)
    assert w.errors == []


def test_a_second_run_of_the_migration_is_refused_while_one_is_in_progress(pair):
    """The step machine runs in the background (the role waits for it): one run per migration at a time. A session
    that holds the migration's run lock on the source (as a run in progress does) makes a second run refuse,
    naming that session, before it changes anything; once the lock is released, the run goes."""
    env = pair
    src = env["source"]
    report_dir = os.path.join(tempfile.gettempdir(), "pgshift-it-runlock-%s" % env["migration"])
    with src.master_connect(env["db"]) as holder:
        assert freeze_db.try_run_lock(holder, env["migration"]) is None
        pid = holder.info.backend_pid
        result = cutover(env, rehearsal=True, freeze_method="read_only", switch_method="none", report_dir=report_dir)
        assert result.get("failed") and result["status"] == "refused", result
        assert "another run of migration %s" % env["migration"] in result["msg"]
        assert "pid %d" % pid in result["msg"]
        # nothing was done: no freeze journal entry, no report, the source serves
        assert not os.path.exists(os.path.join(report_dir, "rehearsal.json"))
        assert env["bouncer"].points_at() == src.port
        # a second holder of the same migration's lock is refused too, and told who holds it
        with src.master_connect(env["db"]) as other:
            assert freeze_db.try_run_lock(other, env["migration"]) == pid
    result = cutover(env, rehearsal=True, freeze_method="read_only", switch_method="none", report_dir=report_dir)
    assert not result.get("failed"), result.get("msg")
    assert result["status"] == "rehearsed"
    shutil.rmtree(report_dir)


def test_route53_switch_with_read_only_freeze(pair, moto_server):
    import boto3
    env = pair
    src, tgt, db = env["source"], env["target"], env["db"]
    r53 = boto3.client("route53", endpoint_url=moto_server, region_name="us-east-1",
                       aws_access_key_id="testing", aws_secret_access_key="testing")
    zone = r53.create_hosted_zone(Name="%s.example.internal." % env["migration"], CallerReference=env["migration"])
    zone_id = zone["HostedZone"]["Id"].split("/")[-1]
    record = "db.%s.example.internal." % env["migration"]
    r53.change_resource_record_sets(HostedZoneId=zone_id, ChangeBatch=dict(Changes=[dict(
        Action="CREATE", ResourceRecordSet=dict(Name=record, Type="CNAME", TTL=1,
                                                ResourceRecords=[dict(Value="blue.example.internal")]))]))
    route53 = dict(zone_id=zone_id, record_name=record, source_value="blue.example.internal",
                   target_value="green.example.internal", endpoint_url=moto_server, access_key="testing",
                   secret_key="testing")
    result = cutover(env, freeze_method="read_only", switch_method="route53", route53=route53)
    assert not result.get("failed"), result.get("msg")
    assert result["status"] == "switched"
    found = r53.list_resource_record_sets(HostedZoneId=zone_id)["ResourceRecordSets"]
    values = [r["ResourceRecords"][0]["Value"] for r in found if r["Name"] == record]
    assert values == ["green.example.internal"]
    # the old side stays fenced: the application role is read-only on the source
    with psycopg.connect(host="127.0.0.1", port=src.port, dbname=db, user=env["app"], password=APP_PASSWORD) as c:
        with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
            c.execute("INSERT INTO public.ledger (client_id, seq) VALUES (7, 1)")
    # rollback by DNS: the record points at the source again and the source is writable
    back = cutover(env, direction="reverse", freeze_method="read_only", switch_method="route53", route53=route53)
    assert not back.get("failed"), back.get("msg")
    found = r53.list_resource_record_sets(HostedZoneId=zone_id)["ResourceRecordSets"]
    assert [r["ResourceRecords"][0]["Value"] for r in found if r["Name"] == record] == ["blue.example.internal"]
    with psycopg.connect(host="127.0.0.1", port=src.port, dbname=db, user=env["app"], password=APP_PASSWORD,
                         autocommit=True) as c:
        c.execute("INSERT INTO public.ledger (client_id, seq) VALUES (7, 1)")
    assert wait_for(lambda: tgt.query(db, "SELECT count(*) FROM public.ledger WHERE client_id = 7")[0][0] == 1, 20)


def test_dms_engine_barrier_is_the_marker_row(pair):
    """engine=dms: the preflight reads the DMS tasks given, the barrier waits for the marker row on the
    target. A native subscription that also carries pgshift.cutover_log stands in for the DMS task (and
    is stopped by an after_switch hook, as a DBA would stop the tasks)."""
    env = pair
    src, tgt, db = env["source"], env["target"], env["db"]
    stream = "pgshift_%s_s1" % env["migration"]
    ddl = ("CREATE SCHEMA IF NOT EXISTS pgshift; CREATE TABLE IF NOT EXISTS pgshift.cutover_log (id uuid PRIMARY KEY "
           "DEFAULT gen_random_uuid(), migration text NOT NULL, run_id text NOT NULL, direction text NOT NULL, event text NOT NULL, "
           "detail text, at timestamptz NOT NULL DEFAULT clock_timestamp())")
    src.execute(db, ddl)
    tgt.execute(db, ddl)
    src.execute(db, "ALTER PUBLICATION %s ADD TABLE pgshift.cutover_log" % stream, operator=True)
    tgt.execute(db, "ALTER SUBSCRIPTION %s REFRESH PUBLICATION WITH (copy_data = false)" % stream, operator=True)
    writer = start_writer(env, 4)
    tasks = [dict(task=dict(replication_task_identifier="pgshift-x-s1", status="stopped"),
                  cdc_latency=dict(source_seconds=0.0, target_seconds=1.0))]
    refused = cutover(env, engine="dms", dms_tasks=tasks)
    assert refused["failed"] and refused["failed_step"] == "preflight" and "pgshift-x-s1 is stopped" in refused["msg"]
    tasks[0]["task"]["status"] = "running"
    stop_task = ("psql 'host=127.0.0.1 port=%d dbname=%s user=postgres' -c 'ALTER SUBSCRIPTION %s DISABLE'"
                 % (tgt.port, db, stream))
    os.environ["PGPASSWORD"] = ADMIN_PASSWORD
    try:
        result = cutover(env, engine="dms", dms_tasks=tasks, hooks=dict(after_switch=stop_task))
    finally:
        os.environ.pop("PGPASSWORD", None)
    assert not result.get("failed"), result.get("msg")
    barrier = [e for e in result["timeline"] if e["step"] == "barrier" and e["kind"] == "step"][0]
    assert barrier["status"] == "ok"
    marker = tgt.query(db, "SELECT count(*) FROM pgshift.cutover_log WHERE run_id = %s AND event = 'marker'",
                       (result["run_id"],))[0][0]
    assert marker == 1
    before = writer.seq
    assert wait_for(lambda: writer.seq > before + 10, 20)
    stop_writers(env)
    assert writer.errors == []
    wait_same(env)
    ledger_exact(tgt, db, [writer])


def test_a_switch_that_does_not_take_effect_is_undone(pair, tmp_path):
    """PgBouncer reloads a file other than the one rewritten: the switch sees the entry unchanged, puts the
    file back, and the machine undoes the return path and the freeze; the writer never stops."""
    env = pair
    src, tgt, db = env["source"], env["target"], env["db"]
    writer = start_writer(env, 5)
    wrong = tmp_path / "not-included.ini"
    with open(env["bouncer"].databases) as f:
        copy = f.read()  # the entry is there, but PgBouncer does not read this file
    wrong.write_text(copy)
    p = dict(params(env)["pgbouncer"], databases_file=str(wrong))
    result = cutover(env, pgbouncer=p)
    assert result["failed"] and result["failed_step"] == "switch" and "still points" in result["msg"]
    assert [u["step"] for u in result["undone"]] == ["return_path", "freeze"]
    assert wrong.read_text() == copy
    assert env["bouncer"].points_at() == src.port
    assert cutover(env, mode="status")["serving"] == "source"
    before = writer.seq
    assert wait_for(lambda: writer.seq > before + 10, 20)
    again = cutover(env)
    assert not again.get("failed"), again.get("msg")
    stop_writers(env)
    assert writer.errors == []
    wait_same(env)
    ledger_exact(tgt, db, [writer])


def test_check_mode_and_a_role_without_password_on_the_target(pair):
    """Check mode runs the preflight only. A role created without a password on the target (as a schema
    copy creates it) gets a verifier in the preflight, so it logs in after the switch. As on RDS and Aurora
    the master user cannot read pg_authid: without app_role_secrets (or a SCRAM auth_file) the preflight
    can only warn; with them, the verifier is made on the controller and set (the password never shown)."""
    env = pair
    src, tgt, db = env["source"], env["target"], env["db"]
    tgt.execute("postgres", "ALTER ROLE %s PASSWORD NULL" % env["app"])
    result, raw = run_module(MODULE, params(env), check_mode=True)
    assert not result.get("failed"), result.get("msg")
    assert result["status"] == "checked" and result["would_run"][-1] == "postcheck"
    assert env["bouncer"].points_at() == src.port
    (preflight,) = [e for e in result["preflight"]["timeline"] if e["step"] == "preflight"]
    assert preflight["detail"]["role_passwords"] == "not checked for %s" % env["app"]
    writer = start_writer(env, 6)
    result = cutover(env, app_role_secrets={env["app"]: APP_PASSWORD})
    assert not result.get("failed"), result.get("msg")
    assert "ALTER ROLE \"%s\" PASSWORD '********'" % env["app"] in result["queries"]
    assert APP_PASSWORD not in json.dumps(result)
    # the role logs in on the target with its password (TLS, as every role but the operator)
    with psycopg.connect(host="127.0.0.1", port=tgt.port, dbname=db, user=env["app"], password=APP_PASSWORD,
                         sslmode="verify-full", sslrootcert=ca_cert()) as c:
        assert c.execute("SELECT current_user").fetchone()[0] == env["app"]
    before = writer.seq
    assert wait_for(lambda: writer.seq > before + 10, 20)
    stop_writers(env)
    assert writer.errors == []
    wait_same(env)
    ledger_exact(tgt, db, [writer])


# --------------------------------------------------------------------------------------------
# Names that need quoting in the cutover's SQL (freeze.py), as the master user on PG16 and PG18
# --------------------------------------------------------------------------------------------

def test_finishing_and_verify_statements_take_hard_names_as_separate_parts(source_cluster, target_cluster, new_db):
    from ansible_collections.pgshift.aurora.plugins.module_utils._pg import freeze as db
    from ansible_collections.pgshift.aurora.plugins.module_utils.journal import Journal

    journal = Journal()
    ops, archive = "Shipping Ops", 'eu.west "archive"'
    order, lines, dotted = (ops, "order"), (ops, "Order Lines"), ("eu", "west.order")
    ident = sql.Identifier

    def ddl(target):
        return [
            sql.SQL("CREATE SCHEMA {}").format(ident(ops)), sql.SQL("CREATE SCHEMA {}").format(ident(archive)),
            sql.SQL("CREATE SCHEMA eu"), sql.SQL("CREATE SCHEMA {}").format(ident("eu.west")),
            sql.SQL("CREATE TABLE {} ({} bigint PRIMARY KEY, {} numeric)").format(
                ident(*order), ident("Order No."), ident('Unit "Price"')),
            sql.SQL("CREATE TABLE {} (id int PRIMARY KEY, {} bigint)").format(ident(*lines), ident("Order No.")),
            sql.SQL("CREATE TABLE {} (id int)").format(ident(*dotted)),
            # the same text once joined with a dot: another table, which must never be counted for it
            sql.SQL("CREATE TABLE {} (id int)").format(ident("eu.west", "order")),
            sql.SQL("ALTER TABLE {} ADD CONSTRAINT {} FOREIGN KEY ({}) REFERENCES {}{}").format(
                ident(*lines), ident("lines of order"), ident("Order No."), ident(*order),
                sql.SQL(" NOT VALID" if target else "")),
            sql.SQL("CREATE FUNCTION {}() RETURNS trigger LANGUAGE plpgsql AS $$BEGIN RETURN NEW; END$$").format(
                ident(ops, "audit it")),
            sql.SQL("CREATE TRIGGER {} AFTER INSERT ON {} FOR EACH ROW EXECUTE FUNCTION {}()").format(
                ident("audit order"), ident(*order), ident(ops, "audit it")),
            sql.SQL("ALTER TABLE {} {} TRIGGER {}").format(
                ident(*order), sql.SQL("DISABLE" if target else "ENABLE ALWAYS"), ident("audit order")),
            sql.SQL("CREATE MATERIALIZED VIEW {} AS SELECT count(*) AS {} FROM {} WITH NO DATA").format(
                ident(archive, "Order Totals"), ident("Order Count"), ident(*order)),
        ]

    old_db, new_db_ = new_db(source_cluster), new_db(target_cluster)
    source_cluster.execute(old_db, ddl(False) + [
        sql.SQL("INSERT INTO {} SELECT g, g FROM generate_series(1, 40) g").format(ident(*order)),
        sql.SQL("INSERT INTO {} SELECT g, g FROM generate_series(1, 20) g").format(ident(*lines)),
        sql.SQL("INSERT INTO {} SELECT g FROM generate_series(1, 5) g").format(ident(*dotted))])
    target_cluster.execute(new_db_, ddl(True) + [
        sql.SQL("INSERT INTO {} SELECT g, g FROM generate_series(1, 40) g").format(ident(*order)),
        sql.SQL("INSERT INTO {} SELECT g, g FROM generate_series(1, 20) g").format(ident(*lines)),
        sql.SQL("INSERT INTO {} SELECT g FROM generate_series(1, 5) g").format(ident(*dotted)),
        sql.SQL("INSERT INTO {} SELECT g FROM generate_series(1, 3) g").format(ident("eu.west", "order"))])

    with source_cluster.master_connect(old_db) as old, target_cluster.master_connect(new_db_) as new:
        assert db.matviews(new) == [(archive, "Order Totals")]
        db.refresh_matview(new, archive, "Order Totals", journal)
        assert journal.queries[-1] == 'REFRESH MATERIALIZED VIEW "eu.west ""archive"""."Order Totals"'
        assert new.execute(sql.SQL("SELECT {} FROM {}").format(ident("Order Count"), ident(archive, "Order Totals"))
                           ).fetchone()[0] == 40

        trig, validate, missing = db.finishing_diff(db.triggers(old), db.triggers(new), db.foreign_keys(old),
                                                    db.foreign_keys(new))
        assert trig == [(ops, "order", "audit order", "A")]
        assert validate == [(ops, "Order Lines", "lines of order")] and missing == []
        db.set_trigger(new, *trig[0], journal)
        assert journal.queries[-1] == \
            'ALTER TABLE "Shipping Ops"."order" ENABLE ALWAYS TRIGGER "audit order"'
        db.validate_fk(new, *validate[0], journal)
        assert journal.queries[-1] == \
            'ALTER TABLE "Shipping Ops"."Order Lines" VALIDATE CONSTRAINT "lines of order"'
        assert db.finishing_diff(db.triggers(old), db.triggers(new), db.foreign_keys(old), db.foreign_keys(new)) \
            == ([], [], [])

        tables = [order, lines, dotted]
        assert wait_for(lambda: len(db.busiest_tables(old, tables, 3)[0]) == 3, 20)
        counted, skipped = db.busiest_tables(old, tables, 2)
        assert counted == [order, lines] and skipped == []
        counted, skipped = db.busiest_tables(old, tables, 3, max_rows=30)
        assert (order in skipped) == (old.execute(sql.SQL("SELECT reltuples > 30 FROM pg_class WHERE oid = {}::regclass")
                                                  .format(sql.Literal(ident(*order).as_string(old)))).fetchone()[0])
        assert [db.count_rows(new, *t) for t in tables] == [40, 20, 5]
        assert db.name_of(*dotted) == 'eu."west.order"' and db.ident_of("lines of order") == '"lines of order"'
