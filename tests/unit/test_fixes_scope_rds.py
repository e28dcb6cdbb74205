"""Fix planning, table scope and connection errors (the RDS parameter decisions: test_parameter_groups.py)."""

from __future__ import annotations

import pytest

from ansible_collections.pgshift.aurora.plugins.module_utils import journal, prereqs, scope, scram
from ansible_collections.pgshift.aurora.plugins.module_utils._pg import connection, fixes

from factsbuilder import admin, facts, opts, role, setting, table


def render(actions):
    return [a["sql"].as_string(None) for a in actions]


def shown(actions):
    """What `queries` shows for the actions (check mode: recorded, secrets masked)."""
    j = journal.Journal(check_mode=True)
    fixes.record(j, actions)
    return j.queries


# --- scope -------------------------------------------------------------------------------------

@pytest.mark.parametrize("schema,name,text", [
    ("public", "orders", "public.orders"),
    ("billing", "CustomsDeclarations", 'billing."CustomsDeclarations"'),
    ("public", 'we"ird', 'public."we""ird"'),
    ("public", "1st", 'public."1st"'),
])
def test_qualified_round_trip(schema, name, text):
    assert scope.qualified(schema, name) == text
    assert scope.split_qualified(text) == (schema, name)


def test_split_qualified_defaults_to_public_and_rejects_garbage():
    assert scope.split_qualified("orders") == ("public", "orders")
    for bad in ("a.b.c", 'a."b', ".x", "x."):
        with pytest.raises(ValueError, match="schema.table"):
            scope.split_qualified(bad)


def test_select_filters_and_partitions_follow_root():
    root = table("public", "shipments", relkind="p", oid=1, has_children=True)
    leaf = table("public", "shipments_2026_01", is_partition=True, parents=[1], oid=2)
    other = table("billing", "invoices", oid=3)
    rels = [root, leaf, other]
    assert [r["name"] for r in scope.select(rels)] == ["shipments", "shipments_2026_01", "invoices"]
    assert [r["name"] for r in scope.select(rels, exclude_tables=["public.shipments"])] == ["invoices"]
    assert [r["name"] for r in scope.select(rels, include_tables=["public.ship*"])] == [
        "shipments", "shipments_2026_01"]
    assert [r["name"] for r in scope.select(rels, include_schemas=["billing"])] == ["invoices"]
    assert [r["name"] for r in scope.select(rels, exclude_schemas=["billing"])] == [
        "shipments", "shipments_2026_01"]
    kinds = {r["name"]: (r["kind"], r["root"]) for r in scope.select(rels)}
    assert kinds["shipments_2026_01"] == ("partition", "public.shipments")
    assert kinds["invoices"] == ("table", "billing.invoices")


def test_classify_inheritance():
    parent = table("public", "events", has_children=True, oid=1)
    child = table("public", "events_1", parents=[1], oid=2)
    kinds = {r["name"]: r["kind"] for r in scope.classify([parent, child])}
    assert kinds == {"events": "inheritance_parent", "events_1": "inheritance_child"}


# --- fix planning ------------------------------------------------------------------------------

def test_plan_fixes_grants_only_what_is_missing():
    f = facts(tables=[table("public", "a", can_select=False), table("public", "b")],
              roles={"pgshift": role("pgshift", replication=False, create_on_database=False)})
    actions = prereqs.plan_fixes(f, opts(f))
    # The native engine's publications and subscriptions are the admin's: no CREATE for the migration user.
    assert render(actions) == [
        'ALTER ROLE "pgshift" REPLICATION',
        'GRANT SELECT ON TABLE "public"."a" TO "pgshift"',
    ]
    assert shown(actions) == render(actions)
    assert render(prereqs.plan_fixes(f, opts(f, engine="dms"))) == [
        'ALTER ROLE "pgshift" REPLICATION',
        'GRANT CREATE ON DATABASE "app" TO "pgshift"',
        'GRANT SELECT ON TABLE "public"."a" TO "pgshift"',
    ]
    assert prereqs.plan_fixes(facts(tables=[table("public", "a")]), opts(facts(tables=[table("public", "a")]))) == []


PASSWORD = "it's a \\ \"$ecret\" 100% "


def test_plan_fixes_creates_user_from_a_scram_verifier_never_the_password():
    f = facts(tables=[table("public", "a")], roles={})
    actions = prereqs.plan_fixes(f, opts(f, migration_password=PASSWORD))
    assert shown(actions)[0] == "CREATE ROLE \"pgshift\" LOGIN REPLICATION PASSWORD '********'"
    statement = actions[0]["sql"].as_string(None)
    assert PASSWORD not in statement and "ecret" not in statement
    verifier = statement.split("PASSWORD '")[1].rstrip("'")
    assert scram.verifier_matches(verifier, PASSWORD)
    assert all("ecret" not in q and "SCRAM" not in q for q in shown(actions))
    assert 'GRANT SELECT ON TABLE "public"."a" TO "pgshift"' in render(actions)
    assert 'GRANT USAGE ON SCHEMA "public" TO "pgshift"' in render(actions)


def test_plan_fixes_on_rds_uses_rds_replication():
    f = facts(roles={"pgshift": role("pgshift", replication=False)})
    f["server"]["is_rds"] = True
    f["settings"]["rds.logical_replication"] = setting("rds.logical_replication", "on")
    assert render(prereqs.plan_fixes(f, opts(f, rds=True))) == ['GRANT "rds_replication" TO "pgshift"']
    # Shaped like RDS but not RDS (the lab): membership and the REPLICATION attribute (which only works there).
    del f["settings"]["rds.logical_replication"]
    assert render(prereqs.plan_fixes(f, opts(f, rds=True))) == [
        'GRANT "rds_replication" TO "pgshift"', 'ALTER ROLE "pgshift" REPLICATION']


def test_plan_fixes_refuses_missing_user_without_password():
    f = facts(roles={})
    with pytest.raises(ValueError, match="migration_password"):
        prereqs.plan_fixes(f, opts(f))


def test_replica_identity_full_reaches_partition_leaves_and_is_idempotent():
    root = table("public", "rates", relkind="p", oid=1, has_children=True, has_pk=False)
    leaves = [table("public", "rates_%d" % i, is_partition=True, parents=[1], oid=50 + i, has_pk=False,
                    replident="f" if i == 0 else "d") for i in range(3)]
    f = facts(tables=[root] + leaves)
    actions = prereqs.plan_fixes(f, opts(f, replica_identity_full=["public.rates"]))
    assert render(actions) == [
        'ALTER TABLE "public"."rates" REPLICA IDENTITY FULL',
        'ALTER TABLE "public"."rates_1" REPLICA IDENTITY FULL',
        'ALTER TABLE "public"."rates_2" REPLICA IDENTITY FULL',
    ]
    with pytest.raises(ValueError, match="not a migrated table"):
        prereqs.plan_fixes(f, opts(f, replica_identity_full=["public.nope"]))


def test_target_fix_grants_no_pg_create_subscription_to_the_migration_user():
    """The admin creates the subscriptions; the migration user only logs in through them."""
    for version in (150000, 180000):
        f = facts(version_num=version, roles={"pgshift": role("pgshift")})
        assert prereqs.plan_fixes(f, opts(f, role_name="target")) == []


def test_system_settings_raise_never_lower_and_use_configured_values():
    f = facts(settings=dict(wal_level="replica", max_replication_slots=2, max_wal_senders=50))
    actions = prereqs.plan_fixes(f, opts(f, system_settings=True, streams=2))
    assert [(a["key"], a["after"]) for a in actions] == [
        ("setting.max_replication_slots", "4"), ("setting.wal_level", "logical")]
    f["file_settings"] = {"wal_level": "logical", "max_replication_slots": "4"}
    assert prereqs.plan_fixes(f, opts(f, system_settings=True, streams=2)) == []
    assert prereqs.restart_pending(f) == ["max_replication_slots", "wal_level"]


def test_system_settings_are_left_to_the_api_on_rds():
    f = facts(settings=dict(wal_level="replica"))
    assert prereqs.plan_fixes(f, opts(f, system_settings=True, rds=True)) == []
    assert prereqs.desired_settings(f, opts(f)) == {"wal_level": "logical"}


# --- connection errors -------------------------------------------------------------------------

PARAMS = dict(login_host="db.example", login_port=5432, login_db="app", login_user="pgshift",
              login_password="hunter2-secret", ssl_mode="require", ca_cert=None, connect_timeout=5)


@pytest.mark.parametrize("raw,needle", [
    ('FATAL:  password authentication failed for user "pgshift"', "authentication failed for user 'pgshift'"),
    ('connection to server at "db.example" (1.2.3.4), port 5432 failed: Connection refused',
     "cannot reach PostgreSQL at db.example:5432"),
    ('FATAL:  database "app" does not exist', "database 'app' does not exist"),
    ("timeout expired", "timed out after 5s"),
    ('FATAL:  no pg_hba.conf entry for host "1.2.3.4"', "pg_hba.conf"),
    ("fe_sendauth: no password supplied", "none was given"),
])
def test_explain_connect_error(raw, needle):
    assert needle in connection.explain_connect_error(PARAMS, raw)


def test_scrub_and_conninfo():
    assert connection.scrub("x hunter2-secret y", ["hunter2-secret", None]) == "x ******** y"
    kwargs = connection.conninfo_kwargs(dict(PARAMS, login_password=None))
    assert "password" not in kwargs and kwargs["sslmode"] == "require"


# --- fix planning as RDS's master user (not a superuser) ------------------------------------------------

def master(version_num=160004, replication=False, **roles):
    base = {
        "rds_superuser": dict(member=True, usage=True, set=True),
        "rds_replication": dict(member=True, usage=True, set=True, admin=True),
        "pg_create_subscription": dict(member=True, usage=True, set=True),
        "app_owner": dict(member=True, usage=True, set=True, admin=True),
    }
    base.update(roles)
    return admin(name="dbadmin", superuser=False, createrole=True, replication=replication, roles=base,
                 version_num=version_num)


def rds_facts(version_num=160004, managed=True, **kw):
    f = facts(version_num=version_num, **kw)
    f["server"]["is_rds"] = True
    if managed:
        f["settings"]["rds.logical_replication"] = setting("rds.logical_replication", "on")
    return f


def test_master_creates_the_user_on_rds_with_login_and_rds_replication_only():
    f = rds_facts(tables=[table("public", "a", owner="app_owner")], roles={}, admin=master(),
                  owners=[dict(owner="app_owner", superuser=False, kind="relation", count=1)])
    f["relations"][0]["schema_owner"] = "pg_database_owner"  # public, in a database the master's app_owner owns
    f["database"]["owner"] = "app_owner"
    actions = prereqs.plan_fixes(f, opts(f, rds=True, migration_password="pw"))
    assert shown(actions) == [
        "CREATE ROLE \"pgshift\" LOGIN PASSWORD '********'",
        'GRANT "rds_replication" TO "pgshift"',
        'GRANT USAGE ON SCHEMA "public" TO "pgshift"',
        'GRANT SELECT ON TABLE "public"."a" TO "pgshift"',
    ]


def test_master_with_replication_on_a_lab_like_server_gives_the_attribute_too():
    f = rds_facts(managed=False, roles={}, admin=master(replication=True))
    assert shown(prereqs.plan_fixes(f, opts(f, rds=True, migration_password="pw"))) == [
        "CREATE ROLE \"pgshift\" LOGIN REPLICATION PASSWORD '********'", 'GRANT "rds_replication" TO "pgshift"']
    # On 15 only a superuser may give REPLICATION: the grant alone; the finding says what is missing.
    f = rds_facts(version_num=150010, managed=False, roles={}, admin=master(150010, replication=True))
    assert shown(prereqs.plan_fixes(f, opts(f, rds=True, migration_password="pw"))) == [
        "CREATE ROLE \"pgshift\" LOGIN PASSWORD '********'", 'GRANT "rds_replication" TO "pgshift"']
    # An existing user the master did not create (no ADMIN OPTION on it): no ALTER ROLE.
    f = rds_facts(managed=False, roles={"pgshift": role("pgshift", replication=False)},
                  admin=master(replication=True, pgshift=dict(admin=False)))
    assert render(prereqs.plan_fixes(f, opts(f, rds=True))) == ['GRANT "rds_replication" TO "pgshift"']
    f["admin"]["roles"]["pgshift"]["admin"] = True
    assert render(prereqs.plan_fixes(f, opts(f, rds=True))) == [
        'GRANT "rds_replication" TO "pgshift"', 'ALTER ROLE "pgshift" REPLICATION']


def test_master_grants_only_what_it_may_grant():
    f = rds_facts(tables=[table("public", "mine", owner="app_owner", can_select=False),
                          table("public", "theirs", owner="other", can_select=False)],
                  admin=master(rds_replication=dict(member=True, usage=True, set=True, admin=False),
                               other=dict(member=False, usage=False, set=False, admin=False)),
                  roles={"pgshift": role("pgshift", replication=False)},
                  owners=[dict(owner="app_owner", superuser=False, kind="relation", count=1),
                          dict(owner="other", superuser=False, kind="relation", count=1)])
    assert render(prereqs.plan_fixes(f, opts(f, rds=True))) == ['GRANT SELECT ON TABLE "public"."mine" TO "pgshift"']
    # ... and the findings say the rest, with the statement and who runs it.
    found = {x["id"]: x for x in prereqs.evaluate(f, opts(f, rds=True))[0] if x["severity"] != "info"}
    assert found["select_privilege"]["remediation"] == (
        'prepare_source.yml runs it as dbadmin: GRANT SELECT ON TABLE "public"."mine" TO "pgshift"; '
        'as the owner other (or a member of it): GRANT SELECT ON TABLE "public"."theirs" TO "pgshift"')
    assert found["replication_privilege"]["remediation"] == \
        'GRANT "rds_replication" TO "pgshift" (as a role with ADMIN OPTION on rds_replication)'


def test_master_joins_the_owner_roles_it_holds_admin_option_on_first():
    f = rds_facts(tables=[table("app", "Zöll.Tarife", owner="App Owner", can_select=False, usage=False)],
                  admin=master(**{"App Owner": dict(member=False, usage=False, set=False, admin=True)}),
                  owners=[dict(owner="App Owner", superuser=False, kind="relation", count=1)])
    f["relations"][0]["schema_owner"] = "App Owner"
    actions = prereqs.plan_fixes(f, opts(f, rds=True, replica_identity_full=['app."Zöll.Tarife"']))
    assert render(actions) == [
        'GRANT "App Owner" TO "dbadmin" WITH INHERIT TRUE, SET TRUE',
        'GRANT USAGE ON SCHEMA "app" TO "pgshift"',
        'GRANT SELECT ON TABLE "app"."Zöll.Tarife" TO "pgshift"',
        'ALTER TABLE "app"."Zöll.Tarife" REPLICA IDENTITY FULL',
    ]
    assert [a["key"] for a in actions] == [
        'role.dbadmin.member."App Owner"', "schema.app.usage.pgshift", 'table.app."Zöll.Tarife".select.pgshift',
        'table.app."Zöll.Tarife".replica_identity']
    # On the target the schema copy makes the admin a member: preparation does not.
    assert prereqs.plan_fixes(f, opts(f, rds=True, role_name="target")) == []


def test_replica_identity_on_tables_the_master_cannot_own_fails_before_anything():
    f = rds_facts(tables=[table("public", "t", owner="other", has_pk=False)],
                  admin=master(other=dict(member=False, usage=False, set=False, admin=False)),
                  owners=[dict(owner="other", superuser=False, kind="relation", count=1)])
    with pytest.raises(ValueError, match=r'run as the owner: ALTER TABLE "public"."t" REPLICA IDENTITY FULL; '
                                         r'nothing was changed'):
        prereqs.plan_fixes(f, opts(f, rds=True, replica_identity_full=["public.t"]))


def test_master_without_createrole_cannot_create_the_user():
    f = rds_facts(roles={}, admin=master())
    f["admin"]["createrole"] = False
    with pytest.raises(ValueError, match='no CREATEROLE to create it: create it as a role with CREATEROLE '
                                         r'\(CREATE ROLE "pgshift" LOGIN'):
        prereqs.plan_fixes(f, opts(f, rds=True, migration_password="pw"))


def test_alter_system_only_where_the_admin_may():
    f = facts(version_num=160004, settings=dict(wal_level="replica"), admin=master())
    with pytest.raises(ValueError, match=r'may not ALTER SYSTEM SET wal_level: as a superuser, run GRANT ALTER '
                                         r'SYSTEM ON PARAMETER "wal_level" TO "dbadmin"'):
        prereqs.plan_fixes(f, opts(f, system_settings=True))
    f["admin"]["alter_system"] = {"wal_level": True}
    assert shown(prereqs.plan_fixes(f, opts(f, system_settings=True))) == [
        "ALTER SYSTEM SET \"wal_level\" = 'logical'"]
    # A server shaped like RDS (the lab): settings are never ALTER SYSTEM'd, whatever system_settings says.
    f["server"]["is_rds"] = True
    f["admin"]["alter_system"] = {}
    assert prereqs.plan_fixes(f, opts(f, system_settings=True, rds=True)) == []
