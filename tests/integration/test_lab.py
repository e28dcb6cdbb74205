"""The local lab, for real: playbooks/lab_up.yml, lab_load.yml and lab_down.yml.

The lab is shaped like RDS/Aurora: the inventory's admin is a master user that is not a
superuser, every role but the lab's operator must use TLS (verified against the lab's CA),
source 16 -> target 18, names and passwords that need quoting.

Brings the lab up once for the module (pgbench scale 1) from a copy of inventories/lab moved to free
loopback ports and a lab_root of its own (modrunner.lab_inventory), so neither a running lab (`make
lab-up`, `make demo`) nor a second run collides with it; checks what runs there, and takes it down again:
the fixture's teardown always runs lab_down. The tests run in file order; the last one takes the lab
down and checks that nothing answers.
"""

from __future__ import annotations

import os
import socket
import time

import boto3
import psycopg
import pytest
import yaml

from modrunner import free_lab_ports, lab_inventory, run_playbook

pytestmark = pytest.mark.lab

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
LAB_ROOT = os.path.join(REPO, ".build", "test-lab")
INVENTORY = os.path.join(REPO, "inventories", "lab")


def _load(*parts):
    with open(os.path.join(INVENTORY, *parts)) as f:
        return yaml.safe_load(f)


SOURCE = _load("host_vars", "lab-source.yml")
TARGET = _load("host_vars", "lab-target.yml")
MIGRATION = _load("group_vars", "all", "migration.yml")
LAB_VARS = _load("group_vars", "all", "lab.yml")
BOUNCER = MIGRATION["traffic_switch_pgbouncer"]
# Moved to free ports by the lab fixture (the dicts above too): {"inventory": hosts.yml of the copy, "aws_url"}.
LAB = {}
PORTS = []
SECRETS = (SOURCE["db_admin_password"], TARGET["db_admin_password"], SOURCE["db_password"],
           BOUNCER["admin_password"], LAB_VARS["lab_app_password"], LAB_VARS["lab_operator_password"])
CA = os.path.join(LAB_ROOT, "tls", "ca.crt")


def playbook(name, *extra):
    """Runs a lab playbook; returns (changed, output, seconds). Fails the test on error or leaked secret."""
    args = []
    for var in extra:
        args += ["-e", var]
    start = time.monotonic()
    rc, out, recap = run_playbook(os.path.join(REPO, "playbooks", name), LAB["inventory"], *args, secrets=SECRETS)
    seconds = time.monotonic() - start
    assert rc == 0, "%s failed (rc %d):\n%s" % (name, rc, out[-6000:])
    assert recap, "no PLAY RECAP in the output of %s:\n%s" % (name, out[-3000:])
    assert recap["unreachable"] == 0 and recap["failed"] == 0, out[-3000:]
    return recap["changed"], out, seconds


def answers(port):
    with socket.socket() as s:
        s.settimeout(1)
        return s.connect_ex(("127.0.0.1", port)) == 0


def running(pid):
    """True while the process exists and is not a zombie."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def connect(port, user, password, dbname, sslmode="verify-full", **kwargs):
    if sslmode != "disable":
        kwargs["sslrootcert"] = CA
    return psycopg.connect(host="127.0.0.1", port=port, user=user, password=password, dbname=dbname,
                           sslmode=sslmode, connect_timeout=10, **kwargs)


def operator(port, dbname="postgres"):
    """The lab's operator: the only superuser, the only role allowed in without TLS."""
    return connect(port, LAB_VARS["lab_operator_user"], LAB_VARS["lab_operator_password"], dbname,
                   sslmode="disable", autocommit=True)


def source_admin(dbname="app"):
    return connect(SOURCE["db_port"], SOURCE["db_admin_user"], SOURCE["db_admin_password"], dbname, autocommit=True)


def target_admin(dbname="app"):
    return connect(TARGET["db_port"], TARGET["db_admin_user"], TARGET["db_admin_password"], dbname, autocommit=True)


def through_bouncer():
    return connect(BOUNCER["port"], LAB_VARS["lab_app_user"], LAB_VARS["lab_app_password"], BOUNCER["database"],
                   sslmode="disable", autocommit=True)


def bouncer_console():
    # The admin console speaks the simple query protocol only: ClientCursor.
    return connect(BOUNCER["port"], BOUNCER["admin_user"], BOUNCER["admin_password"], "pgbouncer",
                   sslmode="disable", autocommit=True, cursor_factory=psycopg.ClientCursor)


def ledger_by_client(conn, first_client=0):
    rows = conn.execute("SELECT client_id, count(*), min(seq), max(seq) FROM ledger"
                        " WHERE client_id >= %s GROUP BY 1 ORDER BY 1", (first_client,)).fetchall()
    return {r[0]: r[1:] for r in rows}


def assert_gap_free(by_client):
    for client, (count, low, high) in by_client.items():
        assert (low, high) == (1, count), "ledger of client %d: %d rows, seq %d..%d" % (client, count, low, high)


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """The lab, up (scale 1) for the module on free ports; always taken down afterwards."""
    ports = free_lab_ports()
    SOURCE["db_port"], TARGET["db_port"], BOUNCER["port"] = ports["source"], ports["target"], ports["pgbouncer"]
    PORTS[:] = [ports["source"], ports["target"], ports["pgbouncer"], ports["moto"]]
    LAB["aws_url"] = "http://127.0.0.1:%d" % ports["moto"]
    LAB["inventory"] = lab_inventory(tmp_path_factory.mktemp("lab-inventory"), ports, LAB_ROOT)[0]
    # A lab of this checkout left over from an interrupted run is taken down first
    # (lab_down only signals the pids recorded under .lab).
    playbook("lab_down.yml")
    busy = [p for p in PORTS if answers(p)]
    assert not busy, "loopback ports %s are in use by something other than this checkout's lab" % busy
    try:
        changed, out, seconds = playbook("lab_up.yml", "lab_pgbench_scale=1")
        print("lab_up from scratch: %.1f s, %d changed" % (seconds, changed))
        yield {"changed": changed, "seconds": seconds}
    finally:
        playbook("lab_down.yml")


def test_clusters_versions_and_settings(lab):
    assert lab["changed"] > 0
    for conn_factory, major in ((source_admin, 16), (target_admin, 18)):
        with conn_factory("postgres") as conn:
            version = conn.execute("SELECT current_setting('server_version_num')::int").fetchone()[0]
            assert version // 10000 == major
            settings = dict(conn.execute(
                "SELECT name, setting FROM pg_settings WHERE name IN ('wal_level', 'track_commit_timestamp',"
                " 'max_replication_slots', 'max_wal_senders', 'listen_addresses', 'fsync', 'ssl')").fetchall())
            assert settings == {"wal_level": "logical", "track_commit_timestamp": "on",
                                "max_replication_slots": "16", "max_wal_senders": "16",
                                "listen_addresses": "127.0.0.1", "fsync": "on", "ssl": "on"}


def test_production_shape_admins_tls_roles(lab):
    """Admins are RDS-like master users, not superusers; TLS is required from every role but the operator."""
    master = SOURCE["db_admin_user"]
    for conn_factory, hv in ((source_admin, SOURCE), (target_admin, TARGET)):
        with conn_factory("postgres") as conn:
            row = conn.execute(
                "SELECT r.rolsuper, r.rolcreaterole, r.rolcreatedb, s.ssl, pg_has_role(current_user, 'rds_superuser',"
                " 'MEMBER') FROM pg_roles r, pg_stat_ssl s WHERE r.rolname = current_user AND s.pid = pg_backend_pid()"
            ).fetchone()
            assert row == (False, True, True, True, True)
            # What RDS does not let a master user do.
            for forbidden in ("ALTER SYSTEM SET work_mem = '8MB'", "SELECT count(*) FROM pg_authid",
                              "SELECT pg_read_file('postgresql.conf')"):
                with pytest.raises(psycopg.errors.InsufficientPrivilege):
                    conn.execute(forbidden)
            granted = {r[0] for r in conn.execute(
                "SELECT b.rolname FROM pg_auth_members m JOIN pg_roles a ON a.oid = m.member JOIN pg_roles b"
                " ON b.oid = m.roleid WHERE a.rolname = 'rds_superuser'").fetchall()}
            assert {"pg_monitor", "pg_signal_backend", "pg_read_all_settings", "pg_checkpoint", "rds_replication",
                    "pg_create_subscription"} <= granted
            assert conn.execute("SELECT has_parameter_privilege('rds_superuser', 'session_replication_role', 'SET')"
                                ).fetchone()[0]
        # Without TLS: refused for the master user, the migration user and the application's user.
        for user, password in ((master, hv["db_admin_password"]), (hv["db_user"], hv["db_password"]),
                               (LAB_VARS["lab_app_user"], LAB_VARS["lab_app_password"])):
            with pytest.raises(psycopg.OperationalError, match="no pg_hba.conf entry|no encryption"):
                connect(hv["db_port"], user, password, "postgres", sslmode="disable")
        # The operator is the only superuser, and the only role let in without TLS.
        with operator(hv["db_port"]) as conn:
            assert [r[0] for r in conn.execute("SELECT rolname FROM pg_roles WHERE rolsuper").fetchall()] == [
                LAB_VARS["lab_operator_user"]]
    # The application's roles were created by the master user (it holds ADMIN OPTION on them, as on RDS 16+),
    # the owner role is granted to it, and the target database was created by it.
    with source_admin("postgres") as conn:
        admin_of = {r[0] for r in conn.execute(
            "SELECT r.rolname FROM pg_auth_members m JOIN pg_roles r ON r.oid = m.roleid JOIN pg_roles u"
            " ON u.oid = m.member WHERE u.rolname = current_user AND m.admin_option").fetchall()}
        assert {"app_owner", LAB_VARS["lab_app_user"]} <= admin_of
        assert conn.execute("SELECT pg_has_role(current_user, 'app_owner', 'SET')").fetchone()[0]
        assert conn.execute("SELECT datdba::regrole::text FROM pg_database WHERE datname = 'app'").fetchone()[0] \
            == "app_owner"
    with target_admin("postgres") as conn:
        assert conn.execute("SELECT datdba::regrole::text FROM pg_database WHERE datname = 'app'").fetchone()[0] \
            == master


def test_source_dataset(lab):
    with source_admin() as conn:
        def one(sql, *args):
            return conn.execute(sql, args).fetchone()[0]

        kinds = dict(conn.execute(
            "SELECT n.nspname || '.' || c.relname, c.relkind FROM pg_class c JOIN pg_namespace n"
            " ON n.oid = c.relnamespace WHERE n.nspname IN ('public', 'billing')"
            " AND c.relkind IN ('r', 'p', 'm', 'v', 'S')").fetchall())
        expected = {
            "public.shipments": "p", "public.shipments_default": "r", "public.tracking_events": "r",
            "public.carrier_rates": "r", "public.customers": "r", "public.addresses": "r", "public.parcels": "r",
            "public.audit_log": "r", "public.documents": "r", "public.CustomsDeclarations": "r",
            "public.session_cache": "r", "public.ledger": "r", "public.lab_meta": "r",
            "public.shipment_daily_stats": "m", "public.open_invoices": "v",
            "billing.invoices": "r", "billing.VatRates": "r", "billing.invoice_no_seq": "S",
            "public.pgbench_accounts": "r", "public.pgbench_branches": "r", "public.pgbench_tellers": "r",
            "public.pgbench_history": "r",
        }
        for name, kind in expected.items():
            assert kinds.get(name) == kind, name

        # Declarative monthly partitions plus a DEFAULT partition, all with rows.
        parts = conn.execute(
            "SELECT c.relname, pg_get_expr(c.relpartbound, c.oid) FROM pg_inherits i JOIN pg_class c"
            " ON c.oid = i.inhrelid WHERE i.inhparent = 'public.shipments'::regclass ORDER BY 1").fetchall()
        assert len(parts) >= 4 and ("shipments_default", "DEFAULT") in parts
        for name in [p[0] for p in parts]:
            assert one('SELECT count(*) FROM public.%s' % name) > 0, name
        assert one("SELECT partstrat FROM pg_partitioned_table WHERE partrelid = 'public.shipments'::regclass") == "r"

        # Inheritance: children with CHECK constraints, routing trigger, no rows in the parent.
        children = [r[0] for r in conn.execute(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid"
            " WHERE i.inhparent = 'public.tracking_events'::regclass AND NOT c.relispartition").fetchall()]
        assert len(children) >= 4
        for child in children:
            assert one("SELECT count(*) FROM public.%s" % child) > 0, child
            assert one("SELECT count(*) FROM pg_constraint WHERE conrelid = %s::regclass AND contype = 'c'",
                       "public." + child) >= 1
        assert one("SELECT count(*) FROM ONLY public.tracking_events") == 0
        assert one("SELECT count(*) FROM pg_trigger WHERE tgrelid = 'public.tracking_events'::regclass"
                   " AND NOT tgisinternal AND tgtype & 2 = 2 AND tgtype & 4 = 4") == 1  # BEFORE INSERT

        # No primary key, no unique index.
        assert one("SELECT count(*) FROM pg_index WHERE indrelid = 'public.carrier_rates'::regclass"
                   " AND (indisprimary OR indisunique)") == 0
        assert one("SELECT count(*) FROM public.carrier_rates") > 0

        # Foreign keys: a deferrable initially deferred one and a self-reference.
        assert one("SELECT count(*) FROM pg_constraint WHERE contype = 'f' AND condeferrable AND condeferred"
                   " AND connamespace = 'public'::regnamespace") >= 1
        assert one("SELECT count(*) FROM pg_constraint WHERE contype = 'f' AND conrelid = confrelid"
                   " AND connamespace = 'public'::regnamespace") >= 1

        # Audit trigger (AFTER, row level) and its rows.
        audited = {r[0] for r in conn.execute(
            "SELECT tgrelid::regclass::text FROM pg_trigger WHERE NOT tgisinternal AND tgtype & 1 = 1"
            " AND tgtype & 2 = 0 AND tgfoid = 'public.audit_row'::regproc").fetchall()}
        assert {"customers", "parcels"} <= audited
        assert one("SELECT count(*) FROM public.audit_log") > 0

        # Identity columns and a standalone sequence used by a default.
        assert one("SELECT count(*) FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid"
                   " WHERE a.attidentity IN ('a', 'd') AND c.relnamespace IN"
                   " ('public'::regnamespace, 'billing'::regnamespace)") >= 3
        assert one("SELECT count(*) FROM pg_depend WHERE objid = 'billing.invoice_no_seq'::regclass"
                   " AND deptype IN ('a', 'i')") == 0
        assert "invoice_no_seq" in one("SELECT pg_get_expr(d.adbin, d.adrelid) FROM pg_attrdef d JOIN pg_attribute a"
                                       " ON a.attrelid = d.adrelid AND a.attnum = d.adnum"
                                       " WHERE d.adrelid = 'billing.invoices'::regclass"
                                       " AND a.attname = 'invoice_no'")

        # Types: enum, domain, jsonb, large text, bytea.
        column_types = {r[0] for r in conn.execute(
            "SELECT t.typtype::text || ':' || t.typname FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid"
            " JOIN pg_type t ON t.oid = a.atttypid WHERE c.relnamespace = 'public'::regnamespace"
            " AND a.attnum > 0 AND c.relkind IN ('r', 'p')").fetchall()}
        assert {"e:shipment_status", "d:country_code", "d:weight_kg", "b:jsonb", "b:bytea"} <= column_types
        assert one("SELECT count(*) FROM public.documents WHERE octet_length(body) > 1048576") >= 3
        assert one("SELECT count(*) FROM public.documents WHERE scan IS NOT NULL") > 0

        # Mixed-case identifiers, in both schemas.
        assert one('SELECT count("HsCode") FROM public."CustomsDeclarations"') > 0
        assert one('SELECT count(*) FROM billing."VatRates"') > 0

        assert one("SELECT relpersistence FROM pg_class WHERE oid = 'public.session_cache'::regclass") == "u"
        assert one("SELECT count(*) FROM public.shipment_daily_stats") > 0
        assert one("SELECT array_agg(attname::text ORDER BY attnum) FROM pg_attribute"
                   " WHERE attrelid = 'public.ledger_pkey'::regclass") == ["client_id", "seq"]

        # pgbench's tables at the scale asked for; every table owned by app_owner.
        assert one("SELECT count(*) FROM public.pgbench_branches") == 1
        assert one("SELECT count(*) FROM public.pgbench_accounts") == 100000
        assert one("SELECT array_agg(DISTINCT tableowner::text) FROM pg_tables WHERE schemaname NOT IN"
                   " ('pg_catalog', 'information_schema')") == ["app_owner"]

        # Names that need quoting: schemas and tables whose quoted form differs from the name, with rows,
        # and a role that needs quoting holding SELECT on them.
        hard = conn.execute(
            "SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE c.relkind = 'r' AND quote_ident(n.nspname) <> n.nspname").fetchall()
        assert len({s for s, name in hard}) >= 2 and len(hard) >= 5
        assert one("SELECT count(*) FROM pg_class WHERE octet_length(relname) = 63 AND relkind = 'r'") >= 1
        role = LAB_VARS.get("lab_hard_names_role", 'Ops "Team" é')
        assert one("SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
                   " WHERE c.relkind = 'r' AND quote_ident(n.nspname) <> n.nspname"
                   " AND has_table_privilege(%s, c.oid, 'SELECT')", role) == len(hard)
        assert one("SELECT value FROM public.lab_meta WHERE key = 'dataset_version'") == "1"


def test_target_database_is_empty(lab):
    with target_admin() as conn:
        objects = conn.execute(
            "SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE n.nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast')").fetchall()
        assert objects == []
        assert conn.execute("SELECT count(*) FROM pg_namespace WHERE nspname = 'billing'").fetchone()[0] == 0


def test_migration_user(lab):
    user, password = SOURCE["db_user"], SOURCE["db_password"]
    for port in (SOURCE["db_port"], TARGET["db_port"]):
        with connect(port, user, password, "app") as conn:
            assert conn.execute("SELECT rolreplication, rolsuper, rolcanlogin, pg_has_role('rds_replication', 'MEMBER')"
                                " FROM pg_roles WHERE rolname = current_user").fetchone() == (True, False, True, True)
    with source_admin() as conn:
        assert conn.execute("SELECT has_table_privilege(%s, 'public.customers', 'SELECT')",
                            (user,)).fetchone()[0] is False
        assert conn.execute("SELECT has_schema_privilege(%s, 'billing', 'USAGE')", (user,)).fetchone()[0] is False


def test_pgbouncer_routes_to_source(lab):
    with through_bouncer() as conn:
        port, user, branches = conn.execute(
            "SELECT inet_server_port(), current_user, (SELECT count(*) FROM pgbench_branches)").fetchone()
        assert (port, user, branches) == (SOURCE["db_port"], LAB_VARS["lab_app_user"], 1)
    with bouncer_console() as console:
        cur = console.cursor()
        cur.execute("SHOW DATABASES")
        names = [d.name for d in cur.description]
        rows = {r[names.index("name")]: r for r in cur.fetchall()}
        app = rows[BOUNCER["database"]]
        assert (app[names.index("host")], app[names.index("port")]) == ("127.0.0.1", SOURCE["db_port"])
        cur.execute("SHOW CONFIG")
        config = {r[0]: r[1] for r in cur.fetchall()}
        assert config["pool_mode"] == "transaction"
        assert config["max_client_conn"] == "200"
        assert config["admin_users"] == BOUNCER["admin_user"]
        cur.execute("RELOAD")  # the database list is an include file the cutover rewrites
    assert os.path.isfile(os.path.join(LAB_ROOT, "pgbouncer", "databases.ini"))
    assert os.stat(os.path.join(LAB_ROOT, "pgbouncer", "userlist.txt")).st_mode & 0o077 == 0


def test_moto_answers(lab):
    rds = boto3.client("rds", endpoint_url=LAB["aws_url"], region_name=MIGRATION["aws_region"],
                       aws_access_key_id=MIGRATION["aws_access_key"],
                       aws_secret_access_key=MIGRATION["aws_secret_key"])
    assert rds.describe_db_instances()["DBInstances"] == []


def test_background_load(lab):
    assert playbook("lab_load.yml", "lab_load_rate=100", "lab_load_duration=600")[0] > 0
    pidfile = os.path.join(LAB_ROOT, "load", "pgbench.pid")
    with open(pidfile) as f:
        pid = int(f.read())
    with open(os.path.join(LAB_ROOT, "load", "run.json")) as f:
        run = yaml.safe_load(f)
    first, clients = run["client_offset"], run["clients"]
    assert clients == 4
    with through_bouncer() as conn:
        before = ledger_by_client(conn, first)
        time.sleep(3)
        during = ledger_by_client(conn, first)
    assert sorted(during) == list(range(first, first + clients))
    assert sum(v[0] for v in during.values()) > sum(v[0] for v in before.values())
    assert_gap_free(during)

    # Starting it again changes nothing; stopping it ends pgbench.
    assert playbook("lab_load.yml")[0] == 0
    assert playbook("lab_load.yml", "lab_load_state=stopped")[0] > 0
    assert not os.path.exists(pidfile)
    assert not running(pid), "pgbench still runs"
    assert playbook("lab_load.yml", "lab_load_state=stopped")[0] == 0
    with through_bouncer() as conn:
        stopped = ledger_by_client(conn, first)
        time.sleep(1.5)
        assert ledger_by_client(conn, first) == stopped
    assert_gap_free(stopped)

    # A second run uses new client ids.
    playbook("lab_load.yml")
    with open(os.path.join(LAB_ROOT, "load", "run.json")) as f:
        assert yaml.safe_load(f)["client_offset"] == first + clients
    playbook("lab_load.yml", "lab_load_state=stopped")


def test_second_lab_up_changes_nothing(lab):
    changed, out = playbook("lab_up.yml", "lab_pgbench_scale=1")[:2]
    assert changed == 0, out[-4000:]


def test_lab_down_removes_everything(lab):
    playbook("lab_down.yml")
    assert not os.path.exists(LAB_ROOT)
    deadline = time.monotonic() + 10
    while any(answers(p) for p in PORTS) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert [p for p in PORTS if answers(p)] == []
    assert playbook("lab_down.yml")[0] == 0
