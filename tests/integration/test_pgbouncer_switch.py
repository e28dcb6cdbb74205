"""aurora_cutover's PgBouncer switch with a PgBouncer that serves several databases (issue 12, item 2).

A real PgBouncer (loopback, ports of its own) serves three databases with options of their own - the
migrated one and another on the source (PG16, RDS-shaped), a third on the target (PG18) - plus the
fallback entry ``*``, comments, blank lines and a CRLF line. A writer goes through PgBouncer the whole
time. The cutover (PAUSE, switch, RESUME) must change nothing but the migrated entry's address; the
rollback must give the file back byte for byte. Once with ``[databases]`` in an included file
(``databases_file`` is pgbouncer.ini: the %include is followed), once inline in pgbouncer.ini.
"""

from __future__ import annotations

import os
import pwd
import tempfile
import threading
import time

import psycopg
import pytest
from psycopg import sql

from ansible_collections.pgshift.aurora.plugins.module_utils import replication_conn
from modrunner import run_module
from pgcluster import ADMIN_PASSWORD, MASTER_PASSWORD, MASTER_USER, ca_cert, free_port, wait_for
from test_cutover import PgBouncer, drop_streams

MODULE = "aurora_cutover"
APP_PASSWORD = "it-pgb-switch-app-9"
PGB_ADMIN = "pgb_admin"
PGB_PASSWORD = "it-pgb-switch-admin-3"
SECRETS = (ADMIN_PASSWORD, MASTER_PASSWORD, APP_PASSWORD, PGB_PASSWORD)
# connect_query with quotes at two levels and '=' inside: the SQL literal is 'a=b it''s'
TAG = "a=b it's"
CONNECT_QUERY = "'SELECT set_config(''pgshift.tag'', ''a=b it''''s'', false)'"
SHOWN = ("host", "port", "database", "force_user", "pool_size", "min_pool_size", "reserve_pool", "pool_mode",
         "max_connections")


class Bouncer(PgBouncer):
    """A PgBouncer of the test's own serving several databases; layout 'include' or 'inline' (started and
    stopped as test_cutover's: its own __init__ writes the configuration)."""

    def __init__(self, layout, app, entries):
        self.root = tempfile.mkdtemp(prefix="pgshift-it-pgbsw-")
        self.port = free_port()
        self.ini = os.path.join(self.root, "pgbouncer.ini")
        with open(os.path.join(self.root, "userlist.txt"), "w") as f:
            f.write('"%s" "%s"\n"%s" "%s"\n' % (app, APP_PASSWORD, PGB_ADMIN, PGB_PASSWORD))
        main = (";; pgshift integration test: one PgBouncer, several databases\n\n"
                "[pgbouncer]\nlisten_addr = 127.0.0.1\nlisten_port = %d\nunix_socket_dir =\n"
                "pidfile = %s/pgbouncer.pid\nlogfile = %s/pgbouncer.log\nauth_type = scram-sha-256\n"
                "auth_file = %s/userlist.txt\nadmin_users = %s\npool_mode = transaction\n"
                "default_pool_size = 5\nmax_client_conn = 50\nignore_startup_parameters = extra_float_digits\n"
                "server_tls_sslmode = verify-full\nserver_tls_ca_file = %s\n" % (
                    self.port, self.root, self.root, self.root, PGB_ADMIN, ca_cert()))
        if layout == "include":
            self.databases = os.path.join(self.root, "databases.ini")
            with open(self.databases, "wb") as f:
                f.write(entries.encode())
            main += "\n%%include %s\n" % self.databases
        else:
            self.databases = self.ini
            main += "\n" + entries + "\n[users]\n%s = pool_mode=transaction\n" % app
        with open(self.ini, "wb") as f:
            f.write(main.encode())
        if os.geteuid() == 0:
            pw = pwd.getpwnam("postgres")
            for path in [self.root] + [os.path.join(self.root, n) for n in os.listdir(self.root)]:
                os.chown(path, pw.pw_uid, pw.pw_gid)
            os.chmod(os.path.join(self.root, "userlist.txt"), 0o600)
            os.chmod(self.databases, 0o640)

    def raw(self):
        with open(self.databases, "rb") as f:
            return f.read()

    def show_databases(self):
        with psycopg.connect(host="127.0.0.1", port=self.port, dbname="pgbouncer", user=PGB_ADMIN,
                             password=PGB_PASSWORD, autocommit=True, prepare_threshold=None) as c:
            cur = c.execute("SHOW DATABASES")
            names = [d.name for d in cur.description]
            return dict((r[0], dict((k, v) for k, v in zip(names, r) if k in SHOWN)) for r in cur.fetchall())

    def reach(self, db, app):
        """(server port, database, pgshift.tag) as a client of db through PgBouncer sees them."""
        with psycopg.connect(host="127.0.0.1", port=self.port, dbname=db, user=app, password=APP_PASSWORD,
                             autocommit=True, prepare_threshold=None) as c:
            return c.execute("SELECT inet_server_port(), current_database(), "
                             "current_setting('pgshift.tag', true)").fetchone()


class Writer(threading.Thread):
    """The application: one row a few milliseconds through PgBouncer; counts what it wrote, keeps errors."""

    def __init__(self, port, db, app):
        super().__init__(daemon=True)
        self.port, self.db, self.app = port, db, app
        self.n, self.errors = 0, []
        self.stop_event = threading.Event()

    def run(self):
        conn = None
        while not self.stop_event.is_set():
            try:
                if conn is None or conn.closed:
                    conn = psycopg.connect(host="127.0.0.1", port=self.port, dbname=self.db, user=self.app,
                                           password=APP_PASSWORD, autocommit=True, prepare_threshold=None)
                conn.execute("INSERT INTO public.ticks (n) VALUES (%s)", (self.n + 1,))
                self.n += 1
            except psycopg.Error as exc:
                self.errors.append(str(exc).strip())
                conn = None
                time.sleep(0.05)
            time.sleep(0.005)
        if conn is not None:
            conn.close()

    def stop(self):
        self.stop_event.set()
        self.join(30)


@pytest.fixture(params=["include", "inline"])
def setup(request, source_cluster, target_cluster, new_db, new_role):
    src, tgt = source_cluster, target_cluster
    migration = new_role("pgbsw")
    app = "app_%s" % migration
    sdb = new_db(src)  # the migrated database; the target's has the same name
    reports = new_db(src)  # another database on the source, not migrated
    crm = new_db(tgt)  # a database elsewhere (on the target cluster)
    with tgt.connect() as conn:
        conn.execute("CREATE DATABASE %s OWNER app_owner" % sdb)
    for cluster in (src, tgt):
        with cluster.master_connect() as conn:
            conn.execute("DROP ROLE IF EXISTS %s" % app)
            conn.execute("CREATE ROLE %s LOGIN PASSWORD '%s'" % (app, APP_PASSWORD))
        with cluster.connect(sdb) as conn:
            conn.execute("CREATE TABLE public.ticks (id bigserial PRIMARY KEY, n int NOT NULL)")
            conn.execute("GRANT SELECT, INSERT ON public.ticks TO %s" % app)
            conn.execute("GRANT USAGE ON SEQUENCE public.ticks_id_seq TO %s" % app)
    stream = "pgshift_%s_s1" % migration
    with src.connect(sdb) as conn:
        conn.execute("INSERT INTO public.ticks (n) SELECT -g FROM generate_series(1, 10) g")  # not the writer's
        conn.execute("CREATE PUBLICATION %s FOR TABLE public.ticks" % stream)
    conninfo = replication_conn.subscription_conninfo("127.0.0.1", src.port, sdb, MASTER_USER, MASTER_PASSWORD,
                                                      "verify-full", ca_cert())
    with tgt.master_connect(sdb) as conn:
        conn.execute(sql.SQL("CREATE SUBSCRIPTION {} CONNECTION {} PUBLICATION {}").format(
            sql.Identifier(stream), sql.Literal(conninfo), sql.Identifier(stream)))
    assert wait_for(lambda: tgt.query(sdb, "SELECT count(*) FROM pg_subscription_rel WHERE srsubstate <> 'r'")[0][0]
                    == 0, 60)
    for cluster in (src, tgt):  # planner statistics on both sides, as replicate.yml leaves them
        cluster.execute(sdb, "ANALYZE public.ticks")
    names = dict(app=sdb, reports="reports_%s" % migration, crm="crm_%s" % migration)
    migrated = ("%s   =   host=127.0.0.1 port=%d dbname=%s pool_size=4 max_db_connections=6 "
                "connect_query=%s" % (sdb, src.port, sdb, CONNECT_QUERY))
    entries = (";; three databases, each with options of its own\n"
               "# and the fallback entry\n"
               "[databases]\n"
               "%s = host=127.0.0.1 port=%d dbname=%s pool_size=2 reserve_pool=1 pool_mode=session "
               "auth_user=%s\r\n"
               "\n"
               "%s\n"
               "; %s = host=127.0.0.1 port=1 (an old entry, commented out)\n"
               "%s = host=127.0.0.1 port=%d dbname=%s pool_size=3 min_pool_size=0\n"
               "* = host=127.0.0.1 port=%d\n" % (
                   names["reports"], src.port, reports, PGB_ADMIN, migrated, sdb, names["crm"], tgt.port, crm,
                   src.port))
    bouncer = Bouncer(request.param, app, entries).start()
    env = dict(source=src, target=tgt, db=sdb, reports=reports, crm=crm, names=names, migration=migration,
               app=app, bouncer=bouncer, migrated=migrated, writers=[])
    try:
        yield env
    finally:
        for w in env["writers"]:
            w.stop()
        bouncer.stop()
        drop_streams((src, tgt), sdb, migration)
        with tgt.connect() as conn:
            conn.execute("DROP DATABASE IF EXISTS %s WITH (FORCE)" % sdb)
        for cluster in (src, tgt):
            with cluster.connect() as conn:
                for db in (sdb, reports, crm):
                    if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (db,)).fetchone():
                        with cluster.connect(db, operator=True) as c:
                            c.execute("DROP OWNED BY %s" % app)
                conn.execute("DROP ROLE IF EXISTS %s" % app)


def cutover(env, **extra):
    src, tgt = env["source"], env["target"]
    p = src.module_params(env["db"])
    p.update(("target_" + k, v) for k, v in tgt.module_params(env["db"]).items())
    p.update(source_ssl_mode_for_target="verify-full", source_ssl_root_cert_for_target=ca_cert(),
             target_ssl_mode_for_source="verify-full", target_ssl_root_cert_for_source=ca_cert(),
             migration=env["migration"], app_roles=[env["app"]], freeze_timeout=15, barrier_timeout=15,
             max_transaction_seconds=30, preflight_wait=10, rehearsal=False, freeze_method="pgbouncer",
             # the rehearsal's proof of the way back is not what these tests are about
             return_path_requirement="ignore",
             switch_method="pgbouncer",
             pgbouncer=dict(host="127.0.0.1", port=env["bouncer"].port, admin_user=PGB_ADMIN,
                            admin_password=PGB_PASSWORD, database=env["db"],
                            databases_file=env["bouncer"].ini))
    p.update(extra)
    result, raw = run_module(MODULE, p)
    for secret in SECRETS:
        assert secret not in raw, "a secret leaked into the module output"
    return result


def test_switch_changes_only_the_migrated_entry_and_rollback_gives_the_file_back(setup):
    env = setup
    src, tgt, db, names, bouncer = env["source"], env["target"], env["db"], env["names"], env["bouncer"]
    original = bouncer.raw()
    shown = bouncer.show_databases()
    assert bouncer.reach(names["app"], env["app"]) == (src.port, db, TAG)
    assert bouncer.reach(names["reports"], env["app"])[:2] == (src.port, env["reports"])
    assert bouncer.reach(names["crm"], env["app"])[:2] == (tgt.port, env["crm"])
    writer = Writer(bouncer.port, db, env["app"])
    writer.start()
    env["writers"].append(writer)
    assert wait_for(lambda: writer.n > 20, 20), writer.errors

    result = cutover(env)
    assert not result.get("failed"), result.get("msg")
    assert result["status"] == "switched" and result["serving"] == "target"
    switch = [e for e in result["timeline"] if e["step"] == "switch" and e["kind"] == "step"][0]
    assert switch["detail"]["entry_change"] == "changed"
    # the file: the migrated entry's port, nothing else (host and dbname are the same on both sides here)
    migrated = env["migrated"]
    moved = migrated.replace("port=%d" % src.port, "port=%d" % tgt.port)
    assert bouncer.raw() == original.replace(migrated.encode(), moved.encode())
    # through PgBouncer: the migrated database reaches the target (its connect_query still runs), the others
    # where they did, with the options they had
    assert bouncer.reach(names["app"], env["app"]) == (tgt.port, db, TAG)
    assert bouncer.reach(names["reports"], env["app"])[:2] == (src.port, env["reports"])
    assert bouncer.reach(names["crm"], env["app"])[:2] == (tgt.port, env["crm"])
    now = bouncer.show_databases()
    for name in (names["reports"], names["crm"]):
        assert now[name] == shown[name]
    assert now[names["app"]] == dict(shown[names["app"]], port=tgt.port)
    assert now[names["app"]]["pool_size"] == 4 and now[names["app"]]["max_connections"] == 6
    before = writer.n
    assert wait_for(lambda: writer.n > before + 20, 20), writer.errors

    back = cutover(env, direction="reverse")
    assert not back.get("failed"), back.get("msg")
    assert back["status"] == "switched" and back["serving"] == "source"
    switch = [e for e in back["timeline"] if e["step"] == "switch" and e["kind"] == "step"][0]
    assert switch["detail"]["entry_change"] == "restored"
    assert not [w for w in back.get("report_warnings", []) if "PgBouncer" in w]
    assert bouncer.raw() == original
    now = bouncer.show_databases()
    assert [now[name] for name in names.values()] == [shown[name] for name in names.values()]
    assert bouncer.reach(names["app"], env["app"]) == (src.port, db, TAG)
    before = writer.n
    assert wait_for(lambda: writer.n > before + 20, 20), writer.errors
    writer.stop()
    assert writer.errors == []
    # every row written through PgBouncer, on both sides, exactly once
    mine = "SELECT count(*), count(DISTINCT n), max(n) FROM public.ticks WHERE n > 0"
    assert src.query(db, mine)[0] == (writer.n,) * 3
    assert wait_for(lambda: tgt.query(db, mine)[0] == (writer.n,) * 3, 30)


def test_a_database_only_served_by_the_fallback_is_refused_and_nothing_changes(setup):
    """The migrated database's own entry removed: PgBouncer serves it through `*`. The switch refuses (the
    fallback serves everything else too) and says what to do; the freeze is undone, the file untouched."""
    env = setup
    bouncer, src = env["bouncer"], env["source"]
    without = bouncer.raw().replace(env["migrated"].encode() + b"\n", b"")
    with open(bouncer.databases, "wb") as f:
        f.write(without)
    with psycopg.connect(host="127.0.0.1", port=bouncer.port, dbname="pgbouncer", user=PGB_ADMIN,
                         password=PGB_PASSWORD, autocommit=True, prepare_threshold=None) as c:
        c.execute("RELOAD")
    # the autodb made from * answers (and is what SHOW DATABASES lists for it once used)
    assert bouncer.reach(env["db"], env["app"])[:2] == (src.port, env["db"])
    result = cutover(env)
    assert result.get("failed") and result["status"] == "aborted" and result["failed_step"] == "switch"
    assert "only through the fallback entry *" in result["msg"] and "never changes *" in result["msg"]
    assert [u["step"] for u in result["undone"]] == ["return_path", "freeze"]
    assert bouncer.raw() == without
    assert bouncer.reach(env["db"], env["app"])[:2] == (src.port, env["db"])
