"""pg_logical_prereqs as RDS's master user (not a superuser), on clusters shaped like RDS and Aurora.

The module connects as ``dbadmin`` over TLS verify-full (pgcluster.module_params); the test sets
up as the operator. What the master lacks is a finding whose SQL, run verbatim by the role it names,
fixes it; preparation grants only what the master may grant; what was asked and cannot be done fails
before anything changes.
"""

from __future__ import annotations

import re

import psycopg
import pytest
from psycopg import sql

from pgcluster import MASTER_USER, ca_cert

HARD_OWNER = 'Ops "Team" é'
HARD_SCHEMA = 'eu.west "archive"'
HARD_TABLE = "Zöll.Tarife"


def master_statements(remediation):
    """The SQL statements a remediation names (each ends at ';' or at ' (as ...)')."""
    found = []
    for part in remediation.split("; "):
        part = re.sub(r"^prepare_source\.yml runs it[^:]*: ", "", part)
        part = re.sub(r" \(as .*\)$", "", part)
        found.append(part)
    return found


def test_owner_role_the_master_cannot_act_as_is_found_and_the_printed_grant_fixes_it(
        prereqs, source_cluster, source_db, new_role):
    user = source_cluster.create_migration_user(new_role(), "mig pw")
    with source_cluster.connect(source_db, operator=True) as conn:
        conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(HARD_OWNER)))
        conn.execute(sql.SQL("CREATE ROLE {} NOLOGIN").format(sql.Identifier(HARD_OWNER)))
        conn.execute(sql.SQL("CREATE SCHEMA {} AUTHORIZATION {}").format(
            sql.Identifier(HARD_SCHEMA), sql.Identifier(HARD_OWNER)))
        conn.execute(sql.SQL("CREATE TABLE {}.{} (id int PRIMARY KEY)").format(
            sql.Identifier(HARD_SCHEMA), sql.Identifier(HARD_TABLE)))
        conn.execute(sql.SQL("ALTER TABLE {}.{} OWNER TO {}").format(
            sql.Identifier(HARD_SCHEMA), sql.Identifier(HARD_TABLE), sql.Identifier(HARD_OWNER)))
    try:
        result = prereqs.ok(prereqs(source_cluster, source_db, role="source", migration_user=user))
        f = prereqs.one(result, "owner_roles")
        assert (f["severity"], f["object"]) == ("blocker", HARD_OWNER)
        assert '"Ops ""Team"" é" (1 relation, 1 schema)' in f["detail"]
        assert f["remediation"] == ('GRANT "Ops ""Team"" é" TO "dbadmin" WITH INHERIT TRUE, SET TRUE '
                                    '(as a role with ADMIN OPTION on "Ops ""Team"" é")')
        statements = master_statements(f["remediation"])
        assert statements == ['GRANT "Ops ""Team"" é" TO "dbadmin" WITH INHERIT TRUE, SET TRUE']
        # The migration user cannot read that table, and the master cannot grant it: the owner must.
        sel = prereqs.one(result, "select_privilege")
        assert 'GRANT SELECT ON TABLE "eu.west ""archive"""."Zöll.Tarife" TO "%s"' % user in sel["remediation"]
        assert "as the owner" in sel["remediation"]
        # Preparation changes nothing it may not: no GRANT of that owner, no SELECT on that table.
        fixed = prereqs.ok(prereqs(source_cluster, source_db, role="source", state="present", migration_user=user))
        assert not any(HARD_OWNER.split()[0] in q for q in fixed["queries"]), fixed["queries"]
        (can,), = source_cluster.query(source_db, "SELECT has_table_privilege(%s, c.oid, 'SELECT') FROM pg_class c "
                                                  "JOIN pg_namespace n ON n.oid = c.relnamespace "
                                                  "WHERE n.nspname = %s AND c.relname = %s",
                                       (user, HARD_SCHEMA, HARD_TABLE), operator=True)
        assert can is False
        # The role that can (the operator here) runs the printed statements verbatim: then all is well.
        source_cluster.execute(source_db, statements, operator=True)
        result = prereqs.ok(prereqs(source_cluster, source_db, role="source", state="present", migration_user=user))
        assert 'GRANT SELECT ON TABLE "eu.west ""archive"""."Zöll.Tarife" TO "%s"' % user in result["queries"]
        prereqs.passes(result, "owner_roles")
        prereqs.passes(result, "select_privilege")
        prereqs.passes(result, "schema_usage")
    finally:
        with source_cluster.connect(source_db, operator=True) as conn:
            conn.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(HARD_SCHEMA)))
            conn.execute(sql.SQL("REVOKE {} FROM {}").format(sql.Identifier(HARD_OWNER),
                                                             sql.Identifier(MASTER_USER)))
            conn.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(HARD_OWNER)))
            conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(HARD_OWNER)))


def test_master_joins_an_owner_role_it_created_then_fixes_replica_identity(prereqs, source_cluster, source_db,
                                                                           new_role):
    """On 16+ the master holds ADMIN OPTION on the roles it creates, without being their member: the
    assessment says preparation will grant it, preparation does, and can then act as that owner."""
    user = source_cluster.create_migration_user(new_role(), "mig pw")
    owner = new_role("Owner ")
    with source_cluster.master_connect() as conn:
        conn.execute(sql.SQL("CREATE ROLE {} NOLOGIN").format(sql.Identifier(owner)))
    source_cluster.execute(source_db, [
        sql.SQL("CREATE TABLE public.nokey (a int)"),
        sql.SQL("ALTER TABLE public.nokey OWNER TO {}").format(sql.Identifier(owner))], operator=True)
    opts = dict(role="source", migration_user=user, replica_identity_full=["public.nokey"])
    result = prereqs.ok(prereqs(source_cluster, source_db, **opts))
    f = prereqs.one(result, "owner_roles")
    assert f["severity"] == "blocker"
    assert f["remediation"].startswith("prepare_source.yml runs it (dbadmin holds ADMIN OPTION on them): "
                                       'GRANT "%s" TO "dbadmin" WITH INHERIT TRUE, SET TRUE' % owner)
    checked = prereqs.ok(prereqs(source_cluster, source_db, state="present", check_mode=True, **opts))
    assert checked["queries"][0] == 'GRANT "%s" TO "dbadmin" WITH INHERIT TRUE, SET TRUE' % owner
    assert 'ALTER TABLE "public"."nokey" REPLICA IDENTITY FULL' in checked["queries"]
    done = prereqs.ok(prereqs(source_cluster, source_db, state="present", **opts))
    assert done["queries"] == checked["queries"]
    (ident,), = source_cluster.query(source_db, "SELECT relreplident::text FROM pg_class "
                                                "WHERE oid = 'public.nokey'::regclass")
    assert ident == "f"
    prereqs.passes(done, "owner_roles")
    again = prereqs.ok(prereqs(source_cluster, source_db, state="present", **opts))
    assert again["changed"] is False and again["queries"] == []


def test_replica_identity_the_master_cannot_make_fails_before_changing_anything(prereqs, source_cluster, source_db,
                                                                                new_role):
    user = new_role()
    owner = new_role("stranger")
    source_cluster.execute(source_db, [
        "CREATE ROLE %s NOLOGIN" % owner,
        "CREATE TABLE public.nokey (a int)",
        "ALTER TABLE public.nokey OWNER TO %s" % owner], operator=True)
    result = prereqs(source_cluster, source_db, role="source", state="present", migration_user=user,
                     migration_password="pw", replica_identity_full=["public.nokey"])
    assert result["failed"] and result["changed"] is False
    assert 'run as the owner: ALTER TABLE "public"."nokey" REPLICA IDENTITY FULL; nothing was changed' in result["msg"]
    assert source_cluster.query(source_db, "SELECT 1 FROM pg_roles WHERE rolname = %s", (user,)) == []


def sixty_three_bytes(prefix):
    """A name of exactly 63 bytes (PostgreSQL's limit) ending in two-byte characters."""
    name = prefix
    while len((name + "é").encode()) <= 63:
        name += "é"
    return name + "x" * (63 - len(name.encode()))


def test_master_prepares_a_new_migration_user_that_can_replicate_over_tls(prereqs, source_cluster, source_db,
                                                                          new_role):
    user = sixty_three_bytes(new_role("Mig "))
    assert len(user.encode()) == 63
    password = "pw \\ ' \" $ % ok"
    source_cluster.execute(source_db, ["CREATE SCHEMA app", "CREATE TABLE app.items (id int PRIMARY KEY)",
                                       "INSERT INTO app.items VALUES (1)"])
    opts = dict(role="source", state="present", migration_user=user, migration_password=password)
    checked = prereqs.ok(prereqs(source_cluster, source_db, check_mode=True, secrets=(password,), **opts))
    assert checked["queries"] == [
        "CREATE ROLE \"%s\" LOGIN REPLICATION PASSWORD '********'" % user,
        'GRANT "rds_replication" TO "%s"' % user,
        'GRANT USAGE ON SCHEMA "app" TO "%s"' % user,
        'GRANT SELECT ON TABLE "app"."items" TO "%s"' % user,
    ]
    assert source_cluster.query(source_db, "SELECT 1 FROM pg_roles WHERE rolname = %s", (user,)) == []
    done = prereqs.ok(prereqs(source_cluster, source_db, secrets=(password,), **opts))
    assert done["queries"] == checked["queries"]
    for check_id in ("migration_user_missing", "replication_privilege", "schema_usage", "select_privilege"):
        prereqs.passes(done, check_id)
    (stored,), = source_cluster.query("postgres", "SELECT rolpassword FROM pg_authid WHERE rolname = %s", (user,),
                                      operator=True)
    assert stored.startswith("SCRAM-SHA-256$4096:")
    # The user logs in over TLS with the password, reads the table, and opens a replication connection.
    kwargs = dict(host="127.0.0.1", port=source_cluster.port, dbname=source_db, user=user, password=password,
                  sslmode="verify-full", sslrootcert=ca_cert())
    with psycopg.connect(**kwargs) as conn:
        assert conn.execute("SELECT id FROM app.items").fetchall() == [(1,)]
    with psycopg.connect(replication="database", autocommit=True, **kwargs) as conn:
        assert conn.execute("IDENTIFY_SYSTEM").fetchone()[3] == source_db
    again = prereqs.ok(prereqs(source_cluster, source_db, secrets=(password,), **opts))
    assert again["changed"] is False and again["queries"] == []


def test_target_subscription_privilege_is_the_masters(prereqs, target_cluster, target_db, new_role):
    user = target_cluster.create_migration_user(new_role(), "mig pw")
    result = prereqs.ok(prereqs(target_cluster, target_db, role="target", migration_user=user))
    for check_id in ("subscription_privilege", "admin_replication", "create_privilege", "replication_privilege"):
        prereqs.passes(result, check_id)
    # Without it (taken from rds_superuser for a moment), the finding names the grant.
    target_cluster.execute("postgres", "REVOKE pg_create_subscription FROM rds_superuser", operator=True)
    try:
        result = prereqs.ok(prereqs(target_cluster, target_db, role="target", migration_user=user))
    finally:
        target_cluster.execute("postgres", "GRANT pg_create_subscription TO rds_superuser", operator=True)
    f = prereqs.one(result, "subscription_privilege")
    assert (f["severity"], f["object"]) == ("blocker", MASTER_USER)
    assert f["remediation"].startswith('GRANT "pg_create_subscription" TO "dbadmin" (as ')


def test_target_checks_the_source_owners(prereqs, target_cluster, target_db, new_role):
    missing, present = new_role("gone"), new_role("there")
    target_cluster.execute("postgres", "CREATE ROLE %s NOLOGIN" % present, operator=True)
    try:
        result = prereqs.ok(prereqs(target_cluster, target_db, role="target", migration_user=MASTER_USER,
                                    source_facts=dict(version_num=160000, owners=[missing, present, "app_owner"])))
        found = {f["severity"]: f for f in prereqs.by_id(result, "owner_roles")}
        assert set(found) == {"info", "blocker"}
        assert found["info"]["object"] == missing
        assert 'CREATE ROLE "%s" NOLOGIN' % missing in found["info"]["remediation"]
        assert found["blocker"]["object"] == present
        assert found["blocker"]["remediation"].startswith(
            'GRANT "%s" TO "dbadmin" WITH INHERIT TRUE, SET TRUE' % present)
    finally:
        target_cluster.execute("postgres", "DROP ROLE %s" % present, operator=True)


def test_lab_like_server_with_settings_to_change_neither_alters_system_nor_fails(
        prereqs, poor_cluster, new_db, new_role):
    """rds_superuser exists (so it looks like RDS) but there is no instance to change: the settings are the
    operator's job; preparation makes the grants, tries no ALTER SYSTEM and says who must act."""
    db = new_db(poor_cluster)
    user = poor_cluster.create_migration_user(new_role(), "mig pw")
    poor_cluster.execute(db, ["CREATE TABLE public.items (id int PRIMARY KEY)"])
    result = prereqs.ok(prereqs(poor_cluster, db, role="source", state="present", migration_user=user,
                                system_settings=True))
    assert not any("ALTER SYSTEM" in q for q in result["queries"])
    assert result["queries"] == ['GRANT SELECT ON TABLE "public"."items" TO "%s"' % user]
    f = prereqs.one(result, "wal_level")
    assert f["remediation"].startswith("ALTER SYSTEM SET wal_level = logical; then restart PostgreSQL (as the "
                                       "server's operator, a superuser")
    assert result["api_calls"] == []
    (live,), = poor_cluster.query("postgres", "SELECT count(*) FROM pg_file_settings "
                                              "WHERE sourcefile LIKE '%%postgresql.auto.conf'", operator=True)
    assert live == 0


@pytest.fixture
def pg15_master(legacy_source_cluster, new_role):
    """A master-like user (CREATEROLE, not a superuser) on the PostgreSQL 15 cluster."""
    name = new_role("master15")
    legacy_source_cluster.execute("postgres", ["CREATE ROLE %s LOGIN CREATEROLE CREATEDB PASSWORD 'm15-secret'" % name,
                                               "GRANT pg_monitor TO %s" % name])
    yield name
    legacy_source_cluster.execute("postgres", ["DROP OWNED BY %s" % name, "DROP ROLE %s" % name])


def test_pg15_source_rollback_path_warning_names_why(prereqs, legacy_source_cluster, pg15_master, new_db, new_role):
    db = new_db(legacy_source_cluster, "OWNER %s" % pg15_master)
    user = new_role()
    params = legacy_source_cluster.module_params(db, login_user=pg15_master, login_password="m15-secret",
                                                 role="source", migration_user=user, fail_on="never",
                                                 write_rate_sample_seconds=0.1)
    result = prereqs.ok(prereqs.run_params(params, secrets=("m15-secret",)))
    f = prereqs.one(result, "subscription_privilege")
    assert f["severity"] == "warning"
    assert "the rollback path will not work" in f["detail"]
    assert "on PostgreSQL 15 only a superuser can create a subscription" in f["detail"]


def test_a_migration_user_name_longer_than_63_bytes_is_refused(prereqs, source_cluster, closed_port):
    params = source_cluster.module_params("postgres", login_port=closed_port, role="source",
                                          migration_user="é" * 32)
    result = prereqs.run_params(params)
    assert result["failed"] and "migration_user is 64 bytes long" in result["msg"]
