"""schema/roles.py: roles to create, and what a target login that is not a superuser (the RDS/Aurora master
user) needs."""

from __future__ import annotations

from psycopg import sql

from ansible_collections.pgshift.aurora.plugins.module_utils.schema import predata, roles
from schema_data import HARD_ROLE, SRC_DB, entries, hard, hard_entries


def role(name, **kw):
    r = dict(name=name, superuser=False, inherit=True, createrole=False, createdb=False, login=False,
             replication=False, connection_limit=-1, bypassrls=False, member_of=[])
    r.update(kw)
    return r


def test_roles_are_created_without_superuser_and_without_passwords():
    source = [role("app_owner"), role("app_user", login=True, member_of=[dict(role="app_owner", admin=False)]),
              role("rds_admin", superuser=True, login=True, replication=True, bypassrls=True, createdb=True,
                   member_of=[dict(role="rds_superuser", admin=True)]),
              role("postgres", superuser=True), role("pg_read_all_data")]
    plan = roles.plan_roles(source, ["postgres"], target_superuser=False)
    assert [p["name"] for p in plan] == ["app_owner", "app_user", "rds_admin"]
    admin = plan[2]
    assert admin["attributes"] == ["LOGIN", "INHERIT", "CREATEDB"]
    assert admin["dropped_attributes"] == ["REPLICATION", "BYPASSRLS", "SUPERUSER"]
    assert admin["member_of"] == []  # rds_superuser is neither created nor on the target
    assert plan[1]["member_of"] == [dict(role="app_owner", admin=False)]
    texts = [s.as_string(None) for p in plan for s in roles.role_statements(p)]
    assert texts == ['CREATE ROLE "app_owner" WITH NOLOGIN INHERIT', 'CREATE ROLE "app_user" WITH LOGIN INHERIT',
                     'CREATE ROLE "rds_admin" WITH LOGIN INHERIT CREATEDB']
    assert not any("PASSWORD" in t or "SUPERUSER" in t for t in texts)
    assert roles.membership_statement("app_user", plan[1]["member_of"][0]).as_string(None) == \
        'GRANT "app_owner" TO "app_user"'


def test_a_superuser_target_login_keeps_replication_and_bypassrls_but_never_superuser():
    plan = roles.plan_roles([role("rep", login=True, replication=True, bypassrls=True, superuser=True,
                                  connection_limit=5)], [], target_superuser=True)
    assert plan[0]["attributes"] == ["LOGIN", "INHERIT", "REPLICATION", "BYPASSRLS"]
    assert plan[0]["dropped_attributes"] == ["SUPERUSER"]
    assert roles.role_statements(plan[0])[0].as_string(None) == \
        'CREATE ROLE "rep" WITH LOGIN INHERIT REPLICATION BYPASSRLS CONNECTION LIMIT 5'


def test_owner_requirements_of_hard_names():
    es = hard_entries()
    needs = roles.owner_requirements([e for e in es if e["cls"] == "pre"])
    assert needs["roles"] == {"app_owner"}
    assert needs["creates"] == {("app_owner", None), ("app_owner", "Shipping Ops"), ("app_owner", 'eu.west "archive"')}
    # Indexes and constraints are not given to anyone: they belong to their table.
    only_keys = roles.owner_requirements([hard(es, 3268), hard(es, 3266)])
    assert only_keys == dict(roles={"app_owner"}, creates=set())


MASTER = dict(name="dbadmin", superuser=False, createdb=True, createrole=True)


def can(set_=True, usage=True, admin=False, superuser=False):
    return dict(set=set_, usage=usage, admin=admin, superuser=superuser)


def db_facts(**kw):
    facts = dict(name="app", exists=True, owner="app_owner", source_owner="app_owner", create=set(),
                 restored_schemas={})
    facts.update(kw)
    return facts


def sql_of(plan):
    return [p["sql"].as_string(None) for p in plan["problems"]]


def test_a_master_that_can_act_as_every_owner_needs_nothing():
    needs = dict(roles={"app_owner"}, creates={("app_owner", "Shipping Ops")})
    plan = roles.plan_privileges(needs, MASTER, {"app_owner": can()}, set(), db_facts(),
                                 {"Shipping Ops": dict(owner="app_owner", create={"app_owner"})}, 180000)
    assert plan == dict(grants=[], database_owner=None, problems=[])


def test_roles_the_copy_creates_and_roles_the_master_administers_are_granted_to_it():
    needs = dict(roles={"app_owner", HARD_ROLE, "reader"}, creates=set())
    facts = {"app_owner": can(set_=False, usage=False, admin=True), "reader": can(set_=True, usage=False, admin=True)}
    plan = roles.plan_privileges(needs, MASTER, facts, {HARD_ROLE}, db_facts(), {}, 180000)
    assert plan["problems"] == [] and plan["grants"] == [HARD_ROLE, "app_owner", "reader"]
    assert roles.role_grant_sql(HARD_ROLE, sql.SQL("CURRENT_USER"), 180000).as_string(None) == \
        'GRANT "Ops ""Team"" é" TO CURRENT_USER WITH INHERIT TRUE, SET TRUE'
    assert roles.role_grant_sql("app_owner", sql.SQL("CURRENT_USER"), 150000).as_string(None) == \
        'GRANT "app_owner" TO CURRENT_USER'


def test_an_owner_the_master_cannot_act_as_nor_grant_stops_before_anything_with_the_sql_to_run():
    needs = dict(roles={HARD_ROLE, "app_owner"}, creates=set())
    facts = {HARD_ROLE: can(set_=False, usage=False), "app_owner": can()}
    plan = roles.plan_privileges(needs, MASTER, facts, set(), db_facts(), {}, 180000)
    assert plan["grants"] == []
    assert sql_of(plan) == ['GRANT "Ops ""Team"" é" TO "dbadmin" WITH INHERIT TRUE, SET TRUE']
    message = roles.privilege_message(plan["problems"], "dbadmin")
    assert message.startswith("the target login dbadmin lacks privileges the schema copy needs; nothing was changed")
    assert 'GRANT "Ops ""Team"" é" TO "dbadmin" WITH INHERIT TRUE, SET TRUE;' in message
    assert 'no ADMIN OPTION on it' in message
    # Before PostgreSQL 16 CREATEROLE may grant any role that is not a superuser.
    assert roles.plan_privileges(needs, MASTER, facts, set(), db_facts(), {}, 150000)["grants"] == [HARD_ROLE]
    # A superuser login needs nothing.
    assert roles.plan_privileges(needs, dict(MASTER, superuser=True), facts, set(), db_facts(), {}, 180000) == \
        dict(grants=[], database_owner=None, problems=[])


def test_a_database_the_master_created_gets_the_sources_owner():
    """Aurora's DatabaseName: the target database exists and belongs to the master user; its public schema
    (owned by pg_database_owner) would not let app_owner own anything there."""
    needs = dict(roles={"app_owner"}, creates={("app_owner", "public"), ("app_owner", None)})
    public = {"public": dict(owner="pg_database_owner", create=set())}
    plan = roles.plan_privileges(needs, MASTER, {"app_owner": can()}, set(), db_facts(owner="dbadmin"), public,
                                 180000)
    assert plan == dict(grants=[], database_owner="app_owner", problems=[])
    # Without CREATEDB the master may not give the database away: then app_owner lacks CREATE.
    plan = roles.plan_privileges(needs, dict(MASTER, createdb=False), {"app_owner": can()}, set(),
                                 db_facts(owner="dbadmin"), public, 180000)
    assert plan["database_owner"] is None
    assert sql_of(plan) == ['GRANT CREATE ON DATABASE "app" TO "app_owner"',
                            'GRANT CREATE ON SCHEMA "public" TO "app_owner"']
    # Giving the database away needs SET ROLE to its new owner: granted first when the master may.
    plan = roles.plan_privileges(needs, MASTER, {"app_owner": can(set_=False, usage=False, admin=True)}, set(),
                                 db_facts(owner="dbadmin"), public, 180000)
    assert plan == dict(grants=["app_owner"], database_owner="app_owner", problems=[])
    # A database of another owner is left alone.
    plan = roles.plan_privileges(needs, MASTER, {"app_owner": can()}, set(), db_facts(owner="someone"), public,
                                 180000)
    assert plan["database_owner"] is None and len(plan["problems"]) == 2


def test_schemas_the_owner_cannot_create_in_are_named_with_their_grant():
    needs = dict(roles={"app_owner", HARD_ROLE},
                 creates={("app_owner", "Shipping Ops"), (HARD_ROLE, 'eu.west "archive"'), (HARD_ROLE, "Shipping Ops"),
                          (HARD_ROLE, None)})
    facts = {"app_owner": can(), HARD_ROLE: can()}
    schemas = {"Shipping Ops": dict(owner="app_owner", create={"app_owner"})}
    restored = {'eu.west "archive"': "app_owner"}
    plan = roles.plan_privileges(needs, MASTER, facts, set(), db_facts(restored_schemas=restored), schemas, 180000)
    assert sql_of(plan) == [
        'GRANT CREATE ON DATABASE "app" TO "Ops ""Team"" é"',
        'GRANT CREATE ON SCHEMA "Shipping Ops" TO "Ops ""Team"" é"',
        'CREATE SCHEMA "eu.west ""archive""" AUTHORIZATION "app_owner"; '
        'GRANT CREATE ON SCHEMA "eu.west ""archive""" TO "Ops ""Team"" é"',
    ]


def test_roles_the_copy_grants_to_others_need_admin_option():
    needs = dict(roles=set(), creates=set(), grantable={"app_owner", "new_reader"})
    plan = roles.plan_privileges(needs, MASTER, {"app_owner": can(admin=False)}, {"new_reader"}, db_facts(), {},
                                 180000)
    assert sql_of(plan) == ['GRANT "app_owner" TO "dbadmin" WITH ADMIN OPTION']


def test_a_source_login_that_cannot_lock_tables_is_told_whose_member_to_become():
    rows = [dict(owner=HARD_ROLE, tables=4, examples=[["Shipping Ops", "order"], ['eu.west "archive"', "Zöll_Tarife"],
                                                      ["public", "t"]])]
    message = roles.unreadable_message(rows, "dbadmin", 160000)
    assert message.startswith("pg_dump cannot dump the source: the source login dbadmin cannot read (lock) 4 table(s)")
    assert '4 table(s) of "Ops ""Team"" é" ("Shipping Ops"."order", "eu.west ""archive"""."Zöll_Tarife", ' \
           'public.t, ...)' in message
    assert 'GRANT "Ops ""Team"" é" TO "dbadmin" WITH INHERIT TRUE;' in message


def test_extensions_and_what_describes_them_ask_nothing_of_their_source_owner():
    """CREATE EXTENSION makes the target login the extension's owner (its comment is then the login's to set):
    the source's owner of btree_gist (the operator) is no role the master must act as."""
    es = entries()
    ext = [e for e in es if e["dump_id"] in (2, 3936)]
    assert [e["owner"] for e in ext] == ["postgres", "postgres"]
    assert roles.owner_requirements(ext) == dict(roles=set(), creates=set())
    needs = roles.owner_requirements([e for e in es if e["cls"] == "pre"])
    assert needs["roles"] == {"app_owner"}
    assert needs["creates"] == {("app_owner", None), ("app_owner", "public"), ("app_owner", "billing")}


def test_the_post_stage_needs_the_owners_of_the_tables_it_builds_on():
    es = entries()
    held = [e for e in es if e["cls"] == "held"]
    # parcels_stats belongs to the operator, its table to app_owner: CREATE STATISTICS needs the table's owner.
    stats = next(e for e in held if e["desc"] == "STATISTICS")
    assert stats["owner"] == "postgres"
    stats["info"] = dict(stats["info"], table_owner="app_owner")
    # bookings_r_excl: an exclusion constraint on a table of the operator's.
    assert roles.post_requirements(held) == dict(roles={"app_owner", "postgres"}, creates=set())
    assert roles.post_requirements([stats]) == dict(roles={"app_owner"}, creates=set())
    assert roles.post_requirements([dict(desc="EVENT TRIGGER", owner="postgres", info={})])["roles"] == set()


def test_roles_with_hard_names_are_identifiers_everywhere():
    source = [role(HARD_ROLE, login=True, member_of=[dict(role='Readers "EU"', admin=True)]),
              role('Readers "EU"')]
    plan = roles.plan_roles(source, [], target_superuser=False)
    texts = [s.as_string(None) for p in plan for s in roles.role_statements(p)]
    assert texts == ['CREATE ROLE "Ops ""Team"" é" WITH LOGIN INHERIT',
                     'CREATE ROLE "Readers ""EU""" WITH NOLOGIN INHERIT']
    assert roles.membership_statement(HARD_ROLE, plan[0]["member_of"][0]).as_string(None) == \
        'GRANT "Readers ""EU""" TO "Ops ""Team"" é" WITH ADMIN OPTION'
    stmt, dummy = predata.database_statement('App "EU" ö', dict(SRC_DB, locale_provider="c"), 180000)
    assert stmt.as_string(None).startswith('CREATE DATABASE "App ""EU"" ö" WITH TEMPLATE template0')
