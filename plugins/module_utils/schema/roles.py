# -*- coding: utf-8 -*-
# Copyright: pgshift.aurora contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Roles and privileges of the schema copy: the roles to create (without passwords), their memberships, and
what a target login that is not a superuser (the RDS/Aurora master user) must be granted before anything
changes, or what stops the run with the SQL to run. Pure.
"""

from __future__ import annotations

from ansible_collections.pgshift.aurora.plugins.module_utils import scope
from ansible_collections.pgshift.aurora.plugins.module_utils.schema.toc import (
    PG_CLASS, PG_COLLATION, PG_CONVERSION, PG_EVENT_TRIGGER, PG_EXTENSION, PG_FOREIGN_DATA_WRAPPER, PG_FOREIGN_SERVER,
    PG_LANGUAGE, PG_NAMESPACE, PG_OPCLASS, PG_OPERATOR, PG_OPFAMILY, PG_PROC, PG_STATISTIC_EXT, PG_TS_CONFIG,
    PG_TS_DICT, PG_TYPE)

try:
    from psycopg import sql
except ImportError:  # pragma: no cover - the module reports the missing library
    sql = None

# Catalogs whose objects pg_restore gives to their owner (ALTER ... OWNER TO): the owner must be a role
# the target login can SET ROLE to, with CREATE on the object's schema (or on the database, for a schema).
OWNED_CLASSES = frozenset([PG_NAMESPACE, PG_CLASS, PG_TYPE, PG_PROC, PG_COLLATION, PG_STATISTIC_EXT,
                           PG_EVENT_TRIGGER, PG_CONVERSION, PG_OPERATOR, PG_OPCLASS, PG_OPFAMILY, PG_TS_CONFIG,
                           PG_TS_DICT, PG_FOREIGN_DATA_WRAPPER, PG_FOREIGN_SERVER, PG_LANGUAGE])


def acl_grantees(source_db):
    """The roles the source database's privileges are granted to (PUBLIC is no role)."""
    return sorted(set(item["grantee"] for item in source_db.get("acl") or [] if item.get("grantee") is not None))


ANY_SCHEMA = "*"  # default privileges and event triggers that are not tied to a schema


def plan_roles(source_roles, target_existing, target_superuser):
    """The roles to create on the target, without passwords.

    source_roles: NEEDED_ROLES_SQL rows; target_existing: role names the target has.
    Built-in roles (pg_*) and roles the target has are left alone. SUPERUSER is never
    given (RDS and Aurora forbid it); REPLICATION and BYPASSRLS only when the target
    login is a superuser (a self-managed target): each dropped attribute is listed.
    Memberships are granted between roles that this run creates or the target has.
    """
    existing = set(target_existing)
    plan = []
    for r in source_roles:
        name = r["name"]
        if name in existing or name.startswith("pg_"):
            continue
        attrs = ["LOGIN" if r["login"] else "NOLOGIN", "INHERIT" if r["inherit"] else "NOINHERIT"]
        dropped = []
        if r.get("createdb"):
            attrs.append("CREATEDB")
        if r.get("createrole"):
            attrs.append("CREATEROLE")
        for flag, word in (("replication", "REPLICATION"), ("bypassrls", "BYPASSRLS")):
            if r.get(flag):
                if target_superuser:
                    attrs.append(word)
                else:
                    dropped.append(word)
        if r.get("superuser"):
            dropped.append("SUPERUSER")
        plan.append(dict(name=name, attributes=attrs, connection_limit=r.get("connection_limit"),
                         dropped_attributes=dropped, member_of=list(r.get("member_of") or [])))
    creatable = set(p["name"] for p in plan) | existing
    for p in plan:
        grants = []
        for item in p.pop("member_of"):
            if item["role"] in creatable and item["role"] != p["name"]:
                grants.append(dict(role=item["role"], admin=bool(item.get("admin"))))
        p["member_of"] = grants
    return plan


def role_statements(role):
    stmts = [sql.SQL("CREATE ROLE {} WITH {}").format(
        sql.Identifier(role["name"]), sql.SQL(" ").join(sql.SQL(a) for a in role["attributes"]))]
    if role.get("connection_limit") not in (None, -1):
        stmts[0] = sql.SQL("{} CONNECTION LIMIT {}").format(stmts[0], sql.Literal(int(role["connection_limit"])))
    return stmts


def membership_statement(role, grant):
    stmt = sql.SQL("GRANT {} TO {}").format(sql.Identifier(grant["role"]), sql.Identifier(role))
    if grant.get("admin"):
        stmt = sql.SQL("{} WITH ADMIN OPTION").format(stmt)
    return stmt


# --------------------------------------------------------------------------------------------
# What a target login that is not a superuser needs (the RDS/Aurora master user)
# --------------------------------------------------------------------------------------------

def owner_requirements(entries):
    """What restoring these entries asks of the roles that will own them.

    Returns dict(roles=set of role names the target login must act as: pg_restore gives each object to
    its owner (ALTER ... OWNER TO needs SET ROLE to it) and grants privileges, comments and sets default
    privileges as that owner (privileges of the role: INHERIT); creates=set of (role, schema): the role
    will own an object in that schema and needs CREATE on it, or (role, None) for a schema it will own,
    which needs CREATE on the database). Roles and schemas are names as the catalog holds them.
    """
    roles, creates = set(), set()
    for e in entries:
        owner = e.get("owner")
        if not owner or e.get("class") == PG_EXTENSION:
            continue  # CREATE EXTENSION makes the login its owner on the target, whoever owns it on the source
        roles.add(owner)
        info = e.get("info") or {}
        if e.get("classid") not in OWNED_CLASSES or (e["classid"] == PG_CLASS and info.get("relkind") in ("i", "I")):
            continue
        if e["classid"] == PG_NAMESPACE:
            creates.add((owner, None))
        elif e.get("schema") is not None:
            creates.add((owner, e["schema"]))
    return dict(roles=roles, creates=creates)


def post_requirements(held):
    """The roles whose privileges the post stage needs: the owners of the tables (and domains) it builds
    indexes, constraints, triggers, rules, policies and statistics on. Event triggers need a superuser."""
    roles = set()
    for e in held:
        if e["desc"] == "EVENT TRIGGER":
            continue
        owner = (e.get("info") or {}).get("table_owner") if e["desc"] == "STATISTICS" else e.get("owner")
        if owner:
            roles.add(owner)
    return dict(roles=roles, creates=set())


def role_grant_sql(role, member, version):
    """GRANT role TO member so that member can both SET ROLE to it and use its privileges."""
    stmt = sql.SQL("GRANT {} TO {}").format(sql.Identifier(role), member)
    if version >= 160000:
        stmt = sql.SQL("{} WITH INHERIT TRUE, SET TRUE").format(stmt)
    return stmt


def grant_to_login(role, version):
    """GRANT role TO CURRENT_USER (role_grant_sql): what the target login grants itself before it acts as role."""
    return role_grant_sql(role, sql.SQL("CURRENT_USER"), version)


def plan_privileges(needs, login, roles, created, database, schemas, version):
    """What the target login must be given before the schema copy changes anything, or what stops it.

    needs: owner_requirements() (plus grantable=set of existing roles plan_roles grants to others);
    login: dict(name, superuser, createdb, createrole) of the target login; roles: {name: dict(set, usage,
    admin, superuser)} of the needed roles that exist on the target (can the login SET ROLE to it, use its
    privileges, grant it); created: roles this run creates (on 16+ the creator holds ADMIN OPTION on them);
    database: dict(name, exists, owner (on the target), source_owner, create=set of roles with CREATE on it);
    schemas: {name: dict(owner, create=set of roles with CREATE on it)} of the target's existing schemas the
    restore puts objects in, restored: {schema: owner} the restore creates (database.restored_schemas);
    version: the target's server_version_num.

    Returns dict(grants=[roles to grant to the login (role_grant_sql)], database_owner=the role to give the
    existing target database to (its owner is the login: it was created by the master user, as Aurora's
    DatabaseName does; the source's is another) or None, problems=[dict(problem, sql)]): when problems is
    not empty nothing may be changed; each names the SQL that solves it.
    """
    problems, grants = [], []
    member = sql.Identifier(login["name"])
    db_owner_after = database.get("owner") if database.get("exists") else database.get("source_owner")
    database_owner = None
    if database.get("exists") and database.get("owner") == login["name"] and database.get("source_owner") \
            and database["source_owner"] != login["name"] and (login.get("createdb") or login.get("superuser")):
        database_owner = db_owner_after = database["source_owner"]
    if login.get("superuser"):
        return dict(grants=[], database_owner=database_owner, problems=[])
    wanted = set(needs.get("roles") or ())
    if database_owner:
        wanted.add(database_owner)
    for name in sorted(wanted):
        if name == login["name"] or name.startswith("pg_"):
            continue
        facts = roles.get(name)
        if facts is None and name not in created:
            continue  # missing on the target and not created: pg_restore says so (create_roles)
        if facts is not None and facts.get("set") and facts.get("usage"):
            continue
        if name in created or (facts or {}).get("admin") or (
                version < 160000 and login.get("createrole") and not (facts or {}).get("superuser")):
            grants.append(name)
            continue
        problems.append(dict(
            problem="the target login %s cannot act as role %s (objects of the schema are given to it and granted "
                    "as it) and cannot grant that role to itself (no ADMIN OPTION on it): run this as a role that "
                    "has ADMIN OPTION on %s (the role that created it, or the operator)" % (
                        scope.quote_ident(login["name"]), scope.quote_ident(name), scope.quote_ident(name)),
            sql=role_grant_sql(name, member, version)))
    for name in sorted(set(needs.get("grantable") or ()) - set(created)):
        facts = roles.get(name) or {}
        if facts.get("admin") or (version < 160000 and login.get("createrole") and not facts.get("superuser")):
            continue
        problems.append(dict(
            problem="the schema copy grants role %s to roles it creates, and the target login %s has no ADMIN "
                    "OPTION on it: run this as a role that has it" % (scope.quote_ident(name),
                                                                      scope.quote_ident(login["name"])),
            sql=sql.SQL("GRANT {} TO {} WITH ADMIN OPTION").format(sql.Identifier(name), member)))
    restored = database.get("restored_schemas") or {}
    for role, schema_name in sorted(needs.get("creates") or (), key=lambda x: (x[0], x[1] or "")):
        if schema_name is None:
            if role == db_owner_after or role in (database.get("create") or ()) or not database.get("exists"):
                continue  # (a new database: its owner is the source's; the others are granted by the restore)
            problems.append(dict(
                problem="role %s will own a schema but has no CREATE privilege on the target database %s" % (
                    scope.quote_ident(role), scope.quote_ident(database["name"])),
                sql=sql.SQL("GRANT CREATE ON DATABASE {} TO {}").format(
                    sql.Identifier(database["name"]), sql.Identifier(role))))
        elif schema_name in restored:
            if restored[schema_name] == role:
                continue
            problems.append(dict(
                problem="role %s will own objects in schema %s, which the restore creates for %s: pg_restore gives "
                        "schema privileges last, so create the schema and grant CREATE on it first (a second run "
                        "then leaves the schema as it is)" % (scope.quote_ident(role), scope.quote_ident(schema_name),
                                                              scope.quote_ident(restored[schema_name])),
                sql=sql.SQL("CREATE SCHEMA {} AUTHORIZATION {}; GRANT CREATE ON SCHEMA {} TO {}").format(
                    sql.Identifier(schema_name), sql.Identifier(restored[schema_name]), sql.Identifier(schema_name),
                    sql.Identifier(role))))
        elif schema_name in schemas:
            target_schema = schemas[schema_name]
            if role == target_schema.get("owner") or role in (target_schema.get("create") or ()) or (
                    target_schema.get("owner") == "pg_database_owner" and role == db_owner_after):
                continue
            problems.append(dict(
                problem="role %s will own objects in schema %s of the target database %s but has no CREATE "
                        "privilege on that schema (ALTER ... OWNER TO needs it)" % (
                            scope.quote_ident(role), scope.quote_ident(schema_name),
                            scope.quote_ident(database["name"])),
                sql=sql.SQL("GRANT CREATE ON SCHEMA {} TO {}").format(
                    sql.Identifier(schema_name), sql.Identifier(role))))
    return dict(grants=grants, database_owner=database_owner, problems=problems)


RESTORE_PRIVILEGE_HINT = (
    "The target login lacked a privilege during the restore. As a login that is not a superuser it must be able to "
    "SET ROLE to (and have the privileges of) every role the schema's objects belong to, and each of those roles "
    "needs CREATE on the schemas its objects go to (CREATE on the database for a schema it owns). The database was "
    "created or kept, nothing of the schema was restored: grant what is missing on the target and run again.")


def privilege_message(problems, login, conn=None):
    """The error for plan_privileges() problems: what is missing and the SQL to run, nothing changed."""
    lines = ["the target login %s lacks privileges the schema copy needs; nothing was changed. Run this SQL on the "
             "target, then run again:" % scope.quote_ident(login)]
    for p in problems:
        lines.append("- %s:\n    %s;" % (p["problem"], p["sql"].as_string(conn)))
    return "\n".join(lines)


def unreadable_message(rows, login, version):
    """The error when the source login cannot lock tables pg_dump dumps (UNREADABLE_TABLES_SQL rows)."""
    lines = ["pg_dump cannot dump the source: the source login %s cannot read (lock) %d table(s); nothing was "
             "changed. Make it a member of their owner on the source (as a role with ADMIN OPTION on it, the role "
             "that created it, or the master user that did), then run again:" % (
                 scope.quote_ident(login), sum(r["tables"] for r in rows))]
    for r in rows:
        examples = ", ".join(scope.qualified(s, n) for s, n in r["examples"] or [])
        grant = sql.SQL("GRANT {} TO {}").format(sql.Identifier(r["owner"]), sql.Identifier(login))
        if version >= 160000:
            grant = sql.SQL("{} WITH INHERIT TRUE").format(grant)
        more = ", ..." if r["tables"] > len(r["examples"] or []) else ""
        lines.append("- %d table(s) of %s (%s%s):\n    %s;" % (
            r["tables"], scope.quote_ident(r["owner"]), examples, more, grant.as_string(None)))
    return "\n".join(lines)
