# -*- coding: utf-8 -*-
# Copyright: pgshift.aurora contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The pre-data stage's plan: which archive entries the target lacks (the ``pg_restore -L`` list), the target
database as on the source (CREATE DATABASE, its privileges and settings), and what logical replication does not
carry. Pure: statements are built with psycopg.sql, run by the runner through the journal.
"""

from __future__ import annotations

from ansible_collections.pgshift.aurora.plugins.module_utils import scope

try:
    from psycopg import sql
except ImportError:  # pragma: no cover - the module reports the missing library
    sql = None


def plan_restore(entries, present, attached):
    """The pre-data entries the target lacks, in archive order (session entries first when any).

    present: keys (object_key) of the objects the target has; attached: keys of the target's
    partitions and partition indexes that are attached to their parent. An entry that
    is a catalog object is restored when the target lacks the object; an entry that
    describes another (comment, privileges, ownership, default) when that one is
    restored; an ATTACH when the partition is restored or not attached yet.
    """
    pre = [e for e in entries if e["cls"] == "pre"]
    chosen = set()
    changed = True
    while changed:
        changed = False
        for e in pre:
            if e["dump_id"] in chosen:
                continue
            deps_chosen = any(d in chosen for d in e["deps"])
            if e["desc"] in ("TABLE ATTACH", "INDEX ATTACH"):
                need = deps_chosen or not e.get("child") or e["child"] not in attached
            elif e["key"]:
                need = e["key"] not in present
            else:
                need = deps_chosen
            if need:
                chosen.add(e["dump_id"])
                changed = True
    if not chosen:
        return []
    return [e for e in entries if e["cls"] == "session" or e["dump_id"] in chosen]


def restore_list(selected):
    """The text of the ``pg_restore -L`` list file for these entries."""
    return "".join(e["line"] + "\n" for e in selected)


PROVIDERS = dict(c="libc", i="icu", b="builtin")


def database_facts(name, source_db, existed):
    """The result's `database`: the target database's name, whether it existed, and the properties of the
    source's it is (or would be) created with."""
    return dict(name=name, existed=existed, created=False, owner=source_db["owner"], encoding=source_db["encoding"],
                collate=source_db["collate"], ctype=source_db["ctype"],
                locale_provider=PROVIDERS.get(source_db["locale_provider"], "libc"), locale=source_db["locale"])


def new_database(name, source_db, target_version):
    """The statements of a target database created as the source's: (create, after the roles (owner and
    privileges), settings, warnings)."""
    create, warnings = database_statement(name, source_db, target_version)
    after = [owner_statement(name, source_db["owner"])] + database_acl_statements(name, source_db)
    settings = [database_setting_statement(name, s) for s in source_db["settings"] or []]
    return [create], after, settings, warnings


def owner_statement(name, owner):
    return sql.SQL("ALTER DATABASE {} OWNER TO {}").format(sql.Identifier(name), sql.Identifier(owner))


def extensions(entries):
    """The extensions the pre-data restore creates (their names)."""
    return sorted(set(e["info"]["extname"] for e in entries if e["cls"] == "pre" and e["desc"] == "EXTENSION"
                      and e["info"].get("extname")))


def missing_extensions_message(missing):
    return ("the target cannot create extension(s) %s that the source's schema uses: install them on the target (on "
            "Aurora: check the supported extensions of its version) or leave the objects that use them out "
            "(exclude_schemas/exclude_tables); nothing was changed" % ", ".join(missing))


def probe_candidates(entries, present, inventory_classes):
    """The pre-data entries of catalogs the inventory does not cover (operators, casts, ...) that may be on the
    target already: looked up there one by one (by their address)."""
    return [e for e in entries if e["cls"] == "pre" and e["key"] and e["classid"] not in inventory_classes
            and e["key"] not in present and e["info"].get("address_type")]


def database_statement(name, source_db, target_version):
    """CREATE DATABASE as on the source (owner set afterwards, once the role exists); (statement, warnings)."""
    warnings = []
    parts = [sql.SQL("CREATE DATABASE {} WITH TEMPLATE template0 ENCODING {}").format(
        sql.Identifier(name), sql.Literal(source_db["encoding"]))]
    provider = PROVIDERS.get(source_db.get("locale_provider") or "c", "libc")
    if target_version >= 150000:
        parts.append(sql.SQL("LOCALE_PROVIDER {}").format(sql.SQL(provider)))
    elif provider != "libc":
        warnings.append("the source database uses the %s locale provider, the target (before PostgreSQL 15) only "
                        "libc: created with LC_COLLATE/LC_CTYPE only" % provider)
    parts.append(sql.SQL("LC_COLLATE {} LC_CTYPE {}").format(sql.Literal(source_db["collate"]),
                                                             sql.Literal(source_db["ctype"])))
    if provider == "icu" and target_version >= 150000 and source_db.get("locale"):
        parts.append(sql.SQL("ICU_LOCALE {}").format(sql.Literal(source_db["locale"])))
        if source_db.get("icu_rules") and target_version >= 160000:
            parts.append(sql.SQL("ICU_RULES {}").format(sql.Literal(source_db["icu_rules"])))
    if provider == "builtin":
        if target_version >= 170000:
            parts.append(sql.SQL("BUILTIN_LOCALE {}").format(sql.Literal(source_db.get("locale") or "C")))
        else:
            warnings.append("the source database uses the builtin locale provider, which the target does not have")
    if source_db.get("connection_limit") not in (None, -1):
        parts.append(sql.SQL("CONNECTION LIMIT {}").format(sql.Literal(int(source_db["connection_limit"]))))
    return sql.SQL(" ").join(parts), warnings


# GUCs whose value pg_dump writes unquoted (list syntax).
LIST_SETTINGS = frozenset(["search_path", "temp_tablespaces", "session_preload_libraries",
                           "shared_preload_libraries", "local_preload_libraries", "unix_socket_directories"])


def database_setting_statement(name, setting):
    """ALTER DATABASE name SET from one pg_db_role_setting entry ('work_mem=64MB')."""
    key, dummy, value = setting.partition("=")
    if key in LIST_SETTINGS:
        # A list value as stored ('"$user", public') is valid SQL syntax as it is.
        rendered = sql.SQL(value)
    else:
        rendered = sql.Literal(value)
    return sql.SQL("ALTER DATABASE {} SET {} = {}").format(sql.Identifier(name), sql.Identifier(key), rendered)


def database_acl_statements(name, source_db):
    """REVOKE/GRANT on the new database as on the source (nothing when the source keeps the defaults)."""
    if not source_db.get("has_acl"):
        return []
    stmts = [sql.SQL("REVOKE ALL ON DATABASE {} FROM PUBLIC").format(sql.Identifier(name))]
    for item in source_db.get("acl") or []:
        privilege = item["privilege"]
        if privilege not in ("CONNECT", "CREATE", "TEMPORARY"):
            continue
        grantee = item.get("grantee")  # None: PUBLIC (a role may be named "PUBLIC": it is an identifier)
        target = sql.SQL("PUBLIC") if grantee is None else sql.Identifier(grantee)
        stmts.append(sql.SQL("GRANT {} ON DATABASE {} TO {}").format(sql.SQL(privilege), sql.Identifier(name), target))
    return stmts


def column_label(column):
    """[schema, table, column] as separate values -> 'schema.table.column', quoted for display (None stays None)."""
    if not column:
        return None
    return "%s.%s" % (scope.qualified(column[0], column[1]), scope.quote_ident(column[2]))


def not_replicated(relations, sequences, large_objects):
    """What logical replication cannot carry, from the in-scope relations (scope.select rows)."""
    return dict(
        unlogged_tables=[r["qualified"] for r in relations if r.get("persistence") == "u"
                         and r["relkind"] in ("r", "p")],
        materialized_views=[r["qualified"] for r in relations if r["relkind"] == "m"],
        foreign_tables=[r["qualified"] for r in relations if r["relkind"] == "f"],
        large_objects=int(large_objects or 0),
        sequences=[dict(sequence=scope.qualified(s["schema"], s["name"]), owned_by=column_label(s.get("owned_by")),
                        identity=bool(s.get("identity"))) for s in sequences],
    )
