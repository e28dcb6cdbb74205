"""pg_logical_prereqs fix mode (state=present) on real clusters, verified in the catalogs.

Check mode returns the SQL and changes nothing; the real run makes the change; a second
run changes nothing; a failure leaves everything as it was.
"""

from __future__ import annotations

import uuid

import psycopg
import pytest
from psycopg import sql

from conftest import POOR_SOURCE_SETTINGS, ConfFileCluster
from pgcluster import ca_cert, pg16_bin_dir

SOURCE_SETUP = [
    "CREATE SCHEMA app",
    "CREATE TABLE app.items (id int PRIMARY KEY, label text)",
    "CREATE TABLE public.nopk (a int, b text)",
    "CREATE TABLE public.events (id int, at date NOT NULL) PARTITION BY RANGE (at)",
    "CREATE TABLE public.events_2024 PARTITION OF public.events FOR VALUES FROM ('2024-01-01') TO ('2025-01-01')",
    "CREATE TABLE public.events_default PARTITION OF public.events DEFAULT",
]
SOURCE_TABLES = ["app.items", "public.nopk", "public.events", "public.events_2024", "public.events_default"]


def sq(table):
    """A plain schema.table as the statements show it: "schema"."table"."""
    return '"%s"."%s"' % tuple(table.split("."))


def create_user(cluster, name):
    """A LOGIN role created by the master user, as a DBA creates it on RDS (the master holds ADMIN OPTION on it)."""
    with cluster.master_connect() as conn:
        conn.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(name)))
    return name


def tls_login(cluster, db, user, password):
    return psycopg.connect(host="127.0.0.1", port=cluster.port, dbname=db, user=user, password=password,
                           sslmode="verify-full", sslrootcert=ca_cert())


def role_state(cluster, db, user):
    rows = cluster.query(db, "SELECT r.rolreplication, has_database_privilege(r.oid, current_database(), 'CREATE'), "
                             "coalesce((SELECT pg_has_role(r.oid, b.oid, 'MEMBER') FROM pg_roles b "
                             "          WHERE b.rolname = 'pg_create_subscription'), false) "
                             "FROM pg_roles r WHERE r.rolname = %s", (user,))
    if not rows:
        return None
    replication, create, subscription = rows[0]
    return dict(replication=replication, create=create, subscription=subscription)


def table_state(cluster, db, user, tables):
    """{table: (replica identity, user can select)}, plus the user's USAGE on schema app."""
    state = {}
    for t in tables:
        (ident, select), = cluster.query(db, "SELECT c.relreplident::text, has_table_privilege(%s, c.oid, 'SELECT') "
                                             "FROM pg_class c WHERE c.oid = %s::regclass", (user, t))
        state[t] = (ident, select)
    (usage,), = cluster.query(db, "SELECT has_schema_privilege(%s, 'app', 'USAGE')", (user,))
    state["schema app usage"] = usage
    return state


def test_source_fix_check_mode_then_apply_then_idempotent(prereqs, source_cluster, source_db, new_role):
    user = create_user(source_cluster, new_role())
    source_cluster.execute(source_db, SOURCE_SETUP)
    opts = dict(role="source", state="present", migration_user=user, fail_on="blocker",
                replica_identity_full=["public.nopk", "public.events"])
    before_tables = table_state(source_cluster, source_db, user, SOURCE_TABLES)
    assert before_tables == dict([(t, ("d", False)) for t in SOURCE_TABLES] + [("schema app usage", False)])
    assert role_state(source_cluster, source_db, user) == dict(replication=False, create=False, subscription=False)

    # The master's grants: rds_replication (as on RDS) and, this server not being RDS, the REPLICATION
    # attribute (the master has it and created the user); no CREATE on the database (the master creates
    # the publications).
    expected = {
        'GRANT "rds_replication" TO "%s"' % user,
        'ALTER ROLE "%s" REPLICATION' % user,
        'GRANT USAGE ON SCHEMA "app" TO "%s"' % user,
    } | {'GRANT SELECT ON TABLE %s TO "%s"' % (sq(t), user) for t in SOURCE_TABLES} | {
        "ALTER TABLE %s REPLICA IDENTITY FULL" % sq(t) for t in SOURCE_TABLES if t != "app.items"}

    # Check mode: the SQL, and nothing changed; the blockers it would fix do not fail it.
    result = prereqs(source_cluster, source_db, check_mode=True, **opts)
    prereqs.ok(result)
    assert result["changed"] is True
    assert set(result["queries"]) == expected and len(result["queries"]) == len(expected)
    assert any(w.startswith("check mode: fixes not applied") for w in prereqs.warnings(result))
    assert table_state(source_cluster, source_db, user, SOURCE_TABLES) == before_tables
    assert role_state(source_cluster, source_db, user) == dict(replication=False, create=False, subscription=False)

    # The real run (with diff): every change made, and the assessment afterwards passes.
    result = prereqs(source_cluster, source_db, diff=True, **opts)
    prereqs.ok(result)
    assert result["changed"] is True
    assert set(result["queries"]) == expected
    assert role_state(source_cluster, source_db, user) == dict(replication=True, create=False, subscription=False)
    assert table_state(source_cluster, source_db, user, SOURCE_TABLES) == {
        "app.items": ("d", True), "public.nopk": ("f", True), "public.events": ("f", True),
        "public.events_2024": ("f", True), "public.events_default": ("f", True), "schema app usage": True}
    for check_id in ("no_replica_identity", "replication_privilege", "schema_usage", "select_privilege",
                     "create_privilege"):
        prereqs.passes(result, check_id)
    f = prereqs.one(result, "replica_identity_full")
    assert (f["severity"], f["object"]) == ("warning", "public.events_2024, public.events_default, public.nopk")
    assert result["diff"]["before"]["role.%s.replication" % user] is False
    assert result["diff"]["after"]["role.%s.replication" % user] is True
    assert result["diff"]["before"]["table.public.nopk.replica_identity"] == "default"
    assert result["diff"]["after"]["table.public.nopk.replica_identity"] == "full"

    # A second run, check mode or not, has nothing left to do.
    for check_mode in (True, False):
        result = prereqs.ok(prereqs(source_cluster, source_db, check_mode=check_mode, **opts))
        assert result["changed"] is False and result["queries"] == []
        assert not any("check mode" in w for w in prereqs.warnings(result))


NESTED = [
    "CREATE TABLE public.events (id int, kind text NOT NULL, at date NOT NULL) PARTITION BY RANGE (at)",
    "CREATE TABLE public.events_2024 PARTITION OF public.events FOR VALUES FROM ('2024-01-01') TO ('2025-01-01') "
    "PARTITION BY LIST (kind)",
    "CREATE TABLE public.events_2024_a PARTITION OF public.events_2024 FOR VALUES IN ('a')",
    "CREATE TABLE public.events_2024_b PARTITION OF public.events_2024 FOR VALUES IN ('b')",
    "CREATE TABLE public.events_default PARTITION OF public.events DEFAULT",
]
NESTED_LEAVES = ["public.events_2024_a", "public.events_2024_b", "public.events_default"]


def replident(cluster, db, tables):
    return dict((t, cluster.query(db, "SELECT relreplident::text FROM pg_class WHERE oid = %s::regclass", (t,))[0][0])
                for t in tables)


def test_replica_identity_full_reaches_every_leaf_of_a_nested_root(prereqs, source_cluster, source_db):
    source_cluster.execute(source_db, NESTED)
    result = prereqs.ok(prereqs(source_cluster, source_db, role="source", state="present",
                                replica_identity_full=["public.events"]))
    assert result["changed"] is True
    assert replident(source_cluster, source_db, ["public.events"] + NESTED_LEAVES) == dict(
        (t, "f") for t in ["public.events"] + NESTED_LEAVES)
    prereqs.passes(result, "no_replica_identity")


def test_replica_identity_full_on_a_sub_partitioned_partition_reaches_its_leaves(prereqs, source_cluster, source_db):
    source_cluster.execute(source_db, NESTED)
    result = prereqs.ok(prereqs(source_cluster, source_db, role="source", state="present",
                                replica_identity_full=["public.events_2024"]))
    assert replident(source_cluster, source_db, ["public.events_2024_a", "public.events_2024_b"]) == {
        "public.events_2024_a": "f", "public.events_2024_b": "f"}
    assert "public.events_2024_a" not in prereqs.one(result, "no_replica_identity")["object"]


def test_create_missing_user_with_a_password_never_shown(prereqs, source_cluster, source_db, new_role):
    user = new_role()
    password = "Mig'pw\"%s-{x}-" % uuid.uuid4().hex
    source_cluster.execute(source_db, ["CREATE TABLE public.items (id int PRIMARY KEY)"])
    opts = dict(role="source", state="present", migration_user=user, migration_password=password)

    result = prereqs.ok(prereqs(source_cluster, source_db, check_mode=True, diff=True, verbosity=4,
                                secrets=(password,), **opts))
    masked = "CREATE ROLE \"%s\" LOGIN REPLICATION PASSWORD '********'" % user
    assert result["queries"][:2] == [masked, 'GRANT "rds_replication" TO "%s"' % user]
    assert role_state(source_cluster, source_db, user) is None

    result = prereqs.ok(prereqs(source_cluster, source_db, diff=True, verbosity=4, secrets=(password,), **opts))
    assert result["changed"] is True and result["queries"][0] == masked
    assert 'GRANT SELECT ON TABLE "public"."items" TO "%s"' % user in result["queries"]
    assert role_state(source_cluster, source_db, user) == dict(replication=True, create=False, subscription=False)
    with tls_login(source_cluster, source_db, user, password) as conn:
        assert conn.execute("SELECT count(*) FROM public.items").fetchone() == (0,)
    for check_id in ("migration_user_missing", "replication_privilege", "select_privilege", "create_privilege"):
        prereqs.passes(result, check_id)

    result = prereqs.ok(prereqs(source_cluster, source_db, secrets=(password,), **opts))
    assert result["changed"] is False and result["queries"] == []


def test_names_that_need_quoting(prereqs, source_cluster, source_db, new_role):
    """A mixed-case, hyphenated user and a mixed-case table with a space are quoted in the SQL that runs."""
    user = "Mig-%s" % new_role("User")
    password = "pw-%s" % uuid.uuid4().hex
    source_cluster.execute(source_db, ['CREATE TABLE public."Order Items" (a int, b text)'])
    opts = dict(role="source", state="present", migration_user=user, migration_password=password,
                replica_identity_full=['public."Order Items"'])
    result = prereqs.ok(prereqs(source_cluster, source_db, secrets=(password,), **opts))
    assert result["changed"] is True
    assert 'ALTER TABLE "public"."Order Items" REPLICA IDENTITY FULL' in result["queries"]
    assert "CREATE ROLE \"%s\" LOGIN REPLICATION PASSWORD '********'" % user in result["queries"]
    assert role_state(source_cluster, source_db, user) == dict(replication=True, create=False, subscription=False)
    (ident, select), = source_cluster.query(source_db, "SELECT relreplident::text, has_table_privilege(%s, oid, "
                                                       "'SELECT') FROM pg_class WHERE relname = 'Order Items'",
                                            (user,), operator=True)
    assert (ident, select) == ("f", True)
    prereqs.passes(result, "no_replica_identity")
    result = prereqs.ok(prereqs(source_cluster, source_db, secrets=(password,), **opts))
    assert result["changed"] is False and result["queries"] == []


def test_missing_user_without_password_is_a_clear_error(prereqs, source_cluster, source_db, new_role):
    user = new_role()
    result = prereqs(source_cluster, source_db, role="source", state="present", migration_user=user)
    assert result["failed"] and result["changed"] is False
    assert "the migration user %s does not exist and no migration_password was given" % user in result["msg"]
    assert role_state(source_cluster, source_db, user) is None


def auto_conf(cluster, db):
    """What ALTER SYSTEM wrote (a value waiting for a restart has error 'setting could not be applied')."""
    rows = cluster.query(db, "SELECT name, setting FROM pg_file_settings "
                             "WHERE sourcefile LIKE '%%postgresql.auto.conf' ORDER BY seqno")
    return dict(rows)


SYSTEM_SETTINGS = dict(role="source", state="present", system_settings=True, fail_on="never")
ALTER_SYSTEM = ["ALTER SYSTEM SET \"max_replication_slots\" = '3'", "ALTER SYSTEM SET \"max_wal_senders\" = '3'",
                "ALTER SYSTEM SET \"wal_level\" = 'logical'"]


@pytest.fixture(scope="module")
def self_managed_poor_cluster(request):
    """A self-managed PostgreSQL 16 (no rds_superuser: not shaped like RDS), the poor settings in postgresql.conf
    so ALTER SYSTEM + restart applies; module_params give its superuser."""
    cluster = ConfFileCluster(pg16_bin_dir(), POOR_SOURCE_SETTINGS, name="selfmanaged", shape="superuser")
    cluster.start()
    request.addfinalizer(cluster.stop)
    return cluster


def test_system_settings_alter_system_then_restart(prereqs, self_managed_poor_cluster, new_db):
    cluster = self_managed_poor_cluster
    db = new_db(cluster)
    cluster.execute(db, ["CREATE TABLE public.items (id int PRIMARY KEY)"])

    result = prereqs.ok(prereqs(cluster, db, check_mode=True, **SYSTEM_SETTINGS))
    assert result["changed"] is True and result["queries"] == ALTER_SYSTEM
    assert auto_conf(cluster, db) == {}

    result = prereqs.ok(prereqs(cluster, db, **SYSTEM_SETTINGS))
    assert result["changed"] is True
    assert result["queries"] == ALTER_SYSTEM + ["SELECT pg_reload_conf()"]
    assert auto_conf(cluster, db) == {"max_replication_slots": "3", "max_wal_senders": "3", "wal_level": "logical"}
    assert {"wal_level", "max_replication_slots", "max_wal_senders"} <= set(result["restart_pending"])
    assert result["settings"]["wal_level"]["setting"] == "replica"
    assert result["settings"]["wal_level"]["configured"] == "logical"
    f = prereqs.one(result, "wal_level")  # live until the restart
    assert f["severity"] == "blocker" and "(configured logical, pending a restart)" in f["detail"]

    # While the restart is pending, a second run has nothing to do and still says so.
    result = prereqs.ok(prereqs(cluster, db, **SYSTEM_SETTINGS))
    assert result["changed"] is False and result["queries"] == []
    assert {"wal_level", "max_replication_slots", "max_wal_senders"} <= set(result["restart_pending"])

    cluster.restart()
    result = prereqs.ok(prereqs(cluster, db, **SYSTEM_SETTINGS))
    assert result["changed"] is False and result["queries"] == []
    assert result["restart_pending"] == []
    prereqs.passes(result, "wal_level")
    assert result["settings"]["wal_level"]["setting"] == "logical"
    assert result["settings"]["max_replication_slots"]["setting"] == "3"
    prereqs.passes(result, "max_replication_slots")


def test_system_settings_as_a_non_superuser_need_alter_system_on_each_parameter(prereqs, self_managed_poor_cluster,
                                                                                new_db, new_role):
    """A self-managed server whose admin is not a superuser: ALTER SYSTEM needs GRANT ALTER SYSTEM ON PARAMETER.
    Without it, nothing changes and the message gives the GRANTs; with them, the same run works."""
    cluster = self_managed_poor_cluster
    with cluster.connect() as conn:
        conn.execute("ALTER SYSTEM RESET ALL")
    cluster.restart()
    ops, password = new_role("ops"), "Ops-%s" % uuid.uuid4().hex
    cluster.execute("postgres", "CREATE ROLE %s LOGIN CREATEROLE PASSWORD '%s'" % (ops, password))
    db = new_db(cluster, "OWNER %s" % ops)
    params = cluster.module_params(db, login_user=ops, login_password=password, write_rate_sample_seconds=0.1,
                                   **SYSTEM_SETTINGS)
    try:
        result = prereqs.run_params(params, secrets=(password,))
        assert result["failed"] and result["changed"] is False
        assert result["msg"] == (
            "system_settings: the admin user %s may not ALTER SYSTEM SET max_replication_slots, max_wal_senders, "
            "wal_level: as a superuser, run GRANT ALTER SYSTEM ON PARAMETER \"max_replication_slots\" TO \"%s\"; "
            "GRANT ALTER SYSTEM ON PARAMETER \"max_wal_senders\" TO \"%s\"; GRANT ALTER SYSTEM ON PARAMETER "
            "\"wal_level\" TO \"%s\", or set them yourself (postgresql.conf) and restart; nothing was changed"
            % (ops, ops, ops, ops))
        assert auto_conf(cluster, db) == {}
        cluster.execute("postgres", result["msg"].split("run ")[1].split(", or set")[0].split("; "))
        result = prereqs.ok(prereqs.run_params(params, secrets=(password,)))
        assert result["queries"] == ALTER_SYSTEM  # no pg_reload_conf(): not granted to it, a restart applies them
        assert any("may not run pg_reload_conf()" in w for w in prereqs.warnings(result))
        assert auto_conf(cluster, db) == {"max_replication_slots": "3", "max_wal_senders": "3",
                                          "wal_level": "logical"}
    finally:
        with cluster.connect() as conn:
            conn.execute("ALTER SYSTEM RESET ALL")
            for name in ("max_replication_slots", "max_wal_senders", "wal_level"):
                conn.execute("REVOKE ALTER SYSTEM ON PARAMETER %s FROM %s" % (name, ops))
        cluster.restart()


def test_target_fix_gives_the_migration_user_replication_only(prereqs, target_cluster, target_db, new_role):
    """The master creates the subscriptions (pg_create_subscription through rds_superuser): the migration user
    only needs to replicate (the rollback path's subscription on the source logs in to the target as it)."""
    user = create_user(target_cluster, new_role("tmig"))
    opts = dict(role="target", state="present", migration_user=user, fail_on="blocker")
    expected = ['GRANT "rds_replication" TO "%s"' % user, 'ALTER ROLE "%s" REPLICATION' % user]

    result = prereqs.ok(prereqs(target_cluster, target_db, check_mode=True, **opts))
    assert result["changed"] is True and result["queries"] == expected
    assert role_state(target_cluster, target_db, user) == dict(replication=False, create=False, subscription=False)

    result = prereqs.ok(prereqs(target_cluster, target_db, **opts))
    assert result["changed"] is True and result["queries"] == expected
    assert role_state(target_cluster, target_db, user) == dict(replication=True, create=False, subscription=False)
    for check_id in ("replication_privilege", "create_privilege", "subscription_privilege"):
        prereqs.passes(result, check_id)

    result = prereqs.ok(prereqs(target_cluster, target_db, **opts))
    assert result["changed"] is False and result["queries"] == []


@pytest.mark.parametrize("listed, message", [
    ("public.nosuch", "replica_identity_full names public.nosuch, which is not a migrated table on this database"),
    ("app.items", "replica_identity_full names app.items, which is not a migrated table"),  # excluded by the filter
])
def test_unknown_table_fails_before_any_change(prereqs, source_cluster, source_db, new_role, listed, message):
    user = create_user(source_cluster, new_role())
    source_cluster.execute(source_db, SOURCE_SETUP)
    result = prereqs(source_cluster, source_db, role="source", state="present", migration_user=user,
                     exclude_schemas=["app"], replica_identity_full=["public.nopk", listed])
    assert result["failed"] and result["changed"] is False
    assert message in result["msg"]
    assert role_state(source_cluster, source_db, user) == dict(replication=False, create=False, subscription=False)
    assert table_state(source_cluster, source_db, user, SOURCE_TABLES) == dict(
        [(t, ("d", False)) for t in SOURCE_TABLES] + [("schema app usage", False)])


def test_failure_inside_the_fix_transaction_rolls_every_grant_back(prereqs, source_cluster, source_db, new_role):
    """Another session holds a lock on public.nopk: the grants and the first statements ran inside the
    fix transaction when ALTER TABLE ... REPLICA IDENTITY gives up after lock_timeout, and the single
    transaction undoes them all."""
    user = create_user(source_cluster, new_role())
    source_cluster.execute(source_db, SOURCE_SETUP)
    with source_cluster.connect(source_db, autocommit=False) as holder:
        holder.execute("SELECT count(*) FROM public.nopk")  # ACCESS SHARE, held until the end of the block
        result = prereqs(source_cluster, source_db, role="source", state="present", migration_user=user,
                         replica_identity_full=["public.events", "public.nopk"], lock_timeout=300)
        holder.rollback()
    assert result["failed"]
    assert "lock_timeout (300 ms)" in result["msg"] and "rolled back" in result["msg"]
    assert 'ALTER TABLE "public"."nopk" REPLICA IDENTITY FULL' in result["msg"]
    assert result["queries"].index('ALTER TABLE "public"."events" REPLICA IDENTITY FULL') < result["queries"].index(
        'ALTER TABLE "public"."nopk" REPLICA IDENTITY FULL')
    assert role_state(source_cluster, source_db, user) == dict(replication=False, create=False, subscription=False)
    assert table_state(source_cluster, source_db, user, SOURCE_TABLES) == dict(
        [(t, ("d", False)) for t in SOURCE_TABLES] + [("schema app usage", False)])
    # Once the lock is gone, the same run succeeds.
    result = prereqs(source_cluster, source_db, role="source", state="present", migration_user=user,
                     replica_identity_full=["public.events", "public.nopk"], lock_timeout=300)
    assert result["changed"] and not result.get("failed")
    assert table_state(source_cluster, source_db, user, ["public.nopk"])["public.nopk"][0] == "f"


@pytest.mark.parametrize("ddl,kind", [
    ("CREATE MATERIALIZED VIEW public.mv AS SELECT 1 AS x", "materialized view"),
    ("CREATE VIEW public.mv AS SELECT 1 AS x", None),
])
def test_replica_identity_full_refuses_what_is_not_a_table(prereqs, source_cluster, source_db, new_role, ddl, kind):
    user = create_user(source_cluster, new_role())
    source_cluster.execute(source_db, SOURCE_SETUP + [ddl])
    result = prereqs(source_cluster, source_db, role="source", state="present", migration_user=user,
                     replica_identity_full=["public.mv"])
    assert result["failed"]
    assert ("which is a %s, not a table" % kind if kind else "not a migrated table") in result["msg"]
    assert role_state(source_cluster, source_db, user) == dict(replication=False, create=False, subscription=False)
