# -*- coding: utf-8 -*-
# Copyright: pgshift.aurora contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Catalog reads: what a PostgreSQL database holds that matters to logical replication.

Every function here only reads (SELECT) and returns plain, JSON-serialisable data;
deciding what the data means is the job of the pure functions in prereqs.py.
"""

from __future__ import annotations

import time

from ansible_collections.pgshift.aurora.plugins.module_utils import names, prereqs, scope
from ansible_collections.pgshift.aurora.plugins.module_utils._pg import db, replication

try:
    from psycopg import errors as pg_errors
    from psycopg import sql
except ImportError:  # pragma: no cover - the module reports the missing library
    pg_errors = sql = None

# pgshift is the migration's own bookkeeping (load progress, deferred keys, the cutover log): never migrated.
SYSTEM_SCHEMA_FILTER = (
    "n.nspname NOT IN ('pg_catalog', 'information_schema', 'pgshift') "
    "AND n.nspname NOT LIKE 'pg\\_toast%' AND n.nspname NOT LIKE 'pg\\_temp%'"
)
# Used only in queries sent without parameters: a literal % needs no escaping there.

SETTING_NAMES = [
    "wal_level",
    "rds.logical_replication",
    "max_replication_slots",
    "max_wal_senders",
    "max_worker_processes",
    "max_logical_replication_workers",
    "max_sync_workers_per_subscription",
    "max_parallel_apply_workers_per_subscription",
    "max_slot_wal_keep_size",
    "wal_sender_timeout",
    "wal_receiver_timeout",
    "track_commit_timestamp",
    "server_encoding",
    "shared_preload_libraries",
]

INTERESTING_ROLES = [
    "rds_superuser",
    "rds_replication",
    "pg_create_subscription",
    "pg_read_all_data",
    "pg_read_all_settings",
]


def server_facts(conn):
    row = db.first(
        conn,
        "SELECT current_setting('server_version_num')::int AS version_num, version() AS version, "
        "current_setting('server_version') AS version_short, pg_is_in_recovery() AS in_recovery, "
        "EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'rds_superuser') AS is_rds, "
        "EXISTS (SELECT 1 FROM pg_proc WHERE proname = 'aurora_version') AS is_aurora, "
        "current_user AS login_user",
    )
    return row


def settings(conn):
    rows = db.rows(
        conn,
        "SELECT name, setting, unit, context, vartype, source, pending_restart, boot_val "
        "FROM pg_settings WHERE name = ANY(%s)",
        (SETTING_NAMES,),
    )
    return {r["name"]: r for r in rows}


def file_settings(conn):
    """Values configured in files (postgresql.auto.conf included) but maybe not live yet.

    Rows waiting for a restart carry an error ("setting could not be applied"):
    they are exactly the ones wanted here, so errors are not filtered out.
    Needs superuser or pg_read_all_settings; returns {} when not allowed.
    """
    try:
        with conn.transaction():
            rows = db.rows(
                conn,
                "SELECT name, setting FROM pg_file_settings WHERE name = ANY(%s) AND setting IS NOT NULL "
                "ORDER BY seqno",
                (SETTING_NAMES,),
            )
    except pg_errors.InsufficientPrivilege:
        return {}
    result = {}
    for r in rows:
        result[r["name"]] = r["setting"]  # the last one in file order wins, as in PostgreSQL
    return result


def database_facts(conn):
    return db.first(
        conn,
        "SELECT d.datname AS name, pg_encoding_to_char(d.encoding) AS encoding, d.datcollate AS collate, "
        "d.datctype AS ctype, pg_database_size(d.oid) AS size_bytes, "
        "pg_get_userbyid(d.datdba) AS owner, "
        "extract(epoch FROM now() - coalesce(s.stats_reset, pg_postmaster_start_time()))::bigint AS stats_age_seconds, "
        "extract(epoch FROM clock_timestamp())::float8 AS clock_epoch, "
        "extract(epoch FROM coalesce(s.stats_reset, pg_postmaster_start_time()))::float8 AS stats_since_epoch "
        "FROM pg_database d LEFT JOIN pg_stat_database s ON s.datid = d.oid "
        "WHERE d.datname = current_database()",
    )


def admin_facts(conn, version_num, names):
    """The connected user (the master user on RDS/Aurora) and what it may do with each role in names.

    For each role that exists: whether the admin is a member (may SET ROLE to it: on 16+ through
    memberships with the SET option), has its privileges (USAGE: inherited), and holds ADMIN OPTION
    on it -- read from pg_auth_members through every membership of the admin, recursively, as
    PostgreSQL's is_admin_of_role() does (pg_has_role has no documented ADMIN form) -- and which roles
    hold ADMIN OPTION on it directly (who can grant it). Also whether the admin may grant CREATE on
    the database, and, from 15, which replication settings it may ALTER SYSTEM.
    """
    can_set = "pg_has_role(current_user, r.oid, 'SET')" if version_num >= 160000 \
        else "pg_has_role(current_user, r.oid, 'MEMBER')"
    me = db.first(
        conn,
        "SELECT r.rolname AS name, r.rolsuper AS superuser, r.rolcreaterole AS createrole, "
        "r.rolcreatedb AS createdb, r.rolreplication AS replication, r.rolinherit AS inherit, "
        "has_database_privilege(current_database(), 'CREATE') AS create_on_database, "
        "has_database_privilege(current_database(), 'CREATE WITH GRANT OPTION') AS grant_create_on_database, "
        "has_function_privilege('pg_catalog.pg_reload_conf()', 'EXECUTE') AS can_reload "
        "FROM pg_roles r WHERE r.rolname = current_user",
    )
    rows = db.rows(
        conn,
        "WITH RECURSIVE mine(oid) AS ("
        "  SELECT oid FROM pg_roles WHERE rolname = current_user"
        "  UNION SELECT m.roleid FROM pg_auth_members m JOIN mine ON m.member = mine.oid) "
        "SELECT r.rolname AS name, r.rolsuper AS superuser, r.rolcanlogin AS can_login, "
        "pg_has_role(current_user, r.oid, 'MEMBER') AS member, "
        "pg_has_role(current_user, r.oid, 'USAGE') AS usage, "
        + can_set + " AS set, "
        "EXISTS (SELECT 1 FROM pg_auth_members m WHERE m.roleid = r.oid AND m.admin_option "
        "        AND m.member IN (SELECT oid FROM mine)) AS admin, "
        "ARRAY(SELECT u.rolname::text FROM pg_auth_members m JOIN pg_roles u ON u.oid = m.member "
        "      WHERE m.roleid = r.oid AND m.admin_option ORDER BY 1) AS admin_holders "
        "FROM pg_roles r WHERE r.rolname = ANY(%s)",
        (sorted(set(n for n in names if n)),),
    )
    me["roles"] = {r["name"]: r for r in rows}
    me["alter_system"] = alter_system_privileges(conn, version_num, me["superuser"])
    return me


# The settings fix mode may raise with ALTER SYSTEM (prereqs.desired_settings).
ALTER_SYSTEM_SETTINGS = ["wal_level", "max_replication_slots", "max_wal_senders", "max_worker_processes",
                         "max_logical_replication_workers", "max_sync_workers_per_subscription"]


def alter_system_privileges(conn, version_num, superuser):
    """{setting: may the connected user ALTER SYSTEM SET it} (GRANT ALTER SYSTEM ON PARAMETER exists from 15)."""
    if superuser:
        return dict((name, True) for name in ALTER_SYSTEM_SETTINGS)
    if version_num < 150000:
        return dict((name, False) for name in ALTER_SYSTEM_SETTINGS)
    rows = db.rows(conn, "SELECT s.name, has_parameter_privilege(s.name, 'ALTER SYSTEM') AS allowed "
                         "FROM pg_settings s WHERE s.name = ANY(%s)", (ALTER_SYSTEM_SETTINGS,))
    return dict((r["name"], r["allowed"]) for r in rows)


def object_owners(conn, oids):
    """Who owns what the migration moves: [{'owner', 'superuser', 'kind', 'count'}].

    The migrated relations (by OID), their schemas, and the sequences, types and functions in
    those schemas (extension members left out): the roles the admin must be able to act as.
    """
    return db.rows(
        conn,
        "WITH rels AS (SELECT oid, relowner, relnamespace FROM pg_class WHERE oid = ANY(%(oids)s::oid[])), "
        "nsp AS (SELECT DISTINCT relnamespace AS oid FROM rels), "
        "objs AS ("
        "  SELECT relowner AS owner, 'relation' AS kind FROM rels "
        "  UNION ALL SELECT n.nspowner, 'schema' FROM pg_namespace n WHERE n.oid IN (SELECT oid FROM nsp) "
        "  UNION ALL SELECT c.relowner, 'sequence' FROM pg_class c WHERE c.relkind = 'S' "
        "    AND c.relnamespace IN (SELECT oid FROM nsp) AND NOT EXISTS (SELECT 1 FROM pg_depend d "
        "    WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid AND d.deptype = 'e') "
        "  UNION ALL SELECT t.typowner, 'type' FROM pg_type t WHERE t.typnamespace IN (SELECT oid FROM nsp) "
        "    AND t.typtype IN ('e', 'd', 'r', 'c', 'm') "
        "    AND (t.typtype <> 'c' OR (SELECT relkind FROM pg_class WHERE oid = t.typrelid) = 'c') "
        "    AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_type'::regclass "
        "    AND d.objid = t.oid AND d.deptype = 'e') "
        "  UNION ALL SELECT p.proowner, 'function' FROM pg_proc p WHERE p.pronamespace IN (SELECT oid FROM nsp) "
        "    AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_proc'::regclass "
        "    AND d.objid = p.oid AND d.deptype = 'e')) "
        "SELECT r.rolname::text AS owner, r.rolsuper AS superuser, o.kind, count(*)::int AS count "
        "FROM objs o JOIN pg_roles r ON r.oid = o.owner GROUP BY 1, 2, 3 ORDER BY 1, 3",
        dict(oids=list(oids)),
    )


def role_facts(conn, names):
    # SET on session_replication_role (what a DMS target endpoint runs as its user): a privilege on the
    # parameter from PostgreSQL 15, a superuser's alone before.
    set_srr = ("r.rolsuper OR has_parameter_privilege(r.oid, 'session_replication_role', 'SET')"
               if conn.info.server_version >= 150000 else "r.rolsuper")
    set_srr_grant = ("has_parameter_privilege(current_user, 'session_replication_role', 'SET WITH GRANT OPTION')"
                     if conn.info.server_version >= 150000 else "false")
    rows = db.rows(
        conn,
        "SELECT r.rolname AS name, r.rolsuper AS superuser, r.rolreplication AS replication, "
        "(" + set_srr + ") AS can_set_replication_role, "
        "(" + set_srr_grant + ") AS admin_can_grant_set_replication_role, "
        "r.rolcanlogin AS can_login, r.rolcreaterole AS createrole, "
        "ARRAY(SELECT b.rolname FROM pg_roles b WHERE b.rolname = ANY(%s) AND b.oid <> r.oid "
        "      AND pg_has_role(r.oid, b.oid, 'MEMBER') ORDER BY 1) AS member_of, "
        "has_database_privilege(r.oid, current_database(), 'CREATE') AS create_on_database, "
        "has_database_privilege(r.oid, current_database(), 'CONNECT') AS connect_on_database "
        "FROM pg_roles r WHERE r.rolname = ANY(%s)",
        (INTERESTING_ROLES, list(names)),
    )
    return {r["name"]: r for r in rows}


def relations(conn, user=None, admin=False, lock_free=False):
    """Every user table-like relation (tables, partitioned tables, foreign tables, matviews).

    user: what that role may do with each (SELECT, owner, schema USAGE). admin: what the connected
    user may do (own it, grant SELECT on it, grant USAGE on its schema). lock_free: sizes from pg_class
    (relpages, as of the last VACUUM/ANALYZE) instead of pg_total_relation_size, which takes an
    AccessShareLock on every table and so waits behind any ACCESS EXCLUSIVE lock (a cutover's preflight).
    """
    if user:
        privs = sql.SQL(
            "has_table_privilege({u}, c.oid, 'SELECT') AS user_can_select, "
            "pg_has_role({u}, c.relowner, 'USAGE') AS user_owns, "
            "has_schema_privilege({u}, n.oid, 'USAGE') AS user_schema_usage"
        ).format(u=sql.Literal(user))
    else:
        privs = sql.SQL("NULL::bool AS user_can_select, NULL::bool AS user_owns, NULL::bool AS user_schema_usage")
    if admin:
        privs = sql.SQL("{}, {}").format(privs, sql.SQL(
            "pg_has_role(c.relowner, 'USAGE') AS admin_owns, "
            "has_table_privilege(c.oid, 'SELECT WITH GRANT OPTION') AS admin_grant_select, "
            "has_schema_privilege(n.oid, 'USAGE WITH GRANT OPTION') AS admin_grant_usage, "
            "pg_get_userbyid(n.nspowner) AS schema_owner"))
    query = sql.SQL(
        "SELECT c.oid::bigint AS oid, n.nspname AS schema, c.relname AS name, c.relkind::text AS relkind, "
        "c.relpersistence::text AS persistence, c.relreplident::text AS replident, c.relispartition AS is_partition, "
        "pg_get_userbyid(c.relowner) AS owner, "
        "CASE WHEN c.reltuples < 0 THEN NULL ELSE c.reltuples::bigint END AS est_rows, "
        "CASE WHEN c.relkind IN ('r', 'm') THEN {size} ELSE 0 END AS bytes, "
        "EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = c.oid AND i.indisprimary) AS has_pk, "
        "EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = c.oid AND i.indisreplident) AS has_replident_index, "
        "ARRAY(SELECT h.inhparent::bigint FROM pg_inherits h WHERE h.inhrelid = c.oid ORDER BY 1) AS parents, "
        "EXISTS (SELECT 1 FROM pg_inherits h WHERE h.inhparent = c.oid) AS has_children, "
        "s.n_live_tup AS live_rows, s.n_tup_ins AS ins, s.n_tup_upd AS upd, s.n_tup_del AS del, "
        "{privs} "
        "FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "LEFT JOIN pg_stat_user_tables s ON s.relid = c.oid "
        "WHERE c.relkind IN ('r', 'p', 'f', 'm') AND " + SYSTEM_SCHEMA_FILTER + " "
        "AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass "
        "                AND d.objid = c.oid AND d.deptype = 'e') "
        "ORDER BY n.nspname, c.relname"
    ).format(privs=privs, size=sql.SQL(
        "c.relpages::bigint * current_setting('block_size')::bigint" if lock_free else "pg_total_relation_size(c.oid)"))
    return db.rows(conn, query)


AUTO_SAMPLE_SECONDS = 3
MIN_AVERAGE_SECONDS = 3600


def write_rate_method(sample_seconds, stats_age_seconds):
    """'average' (since the statistics were reset) or 'sample' (two reads of the counters).

    0 means automatic: statistics younger than an hour (a fresh server, a bulk load
    just done) do not describe the steady write rate, so they are sampled instead.
    """
    if sample_seconds and sample_seconds > 0:
        return "sample"
    if sample_seconds is not None and sample_seconds < 0:
        return "average"
    return "average" if stats_age_seconds >= MIN_AVERAGE_SECONDS else "sample"


def write_rates(conn, tables, sample_seconds, stats_age_seconds):
    """({oid: writes per second}, how it was measured) for relations as relations() returns them."""
    if write_rate_method(sample_seconds, stats_age_seconds) == "average":
        age = float(max(1, stats_age_seconds or 0))
        rates = {t["oid"]: ((t.get("ins") or 0) + (t.get("upd") or 0) + (t.get("del") or 0)) / age for t in tables}
        return rates, "average over %ds since the statistics were reset" % (stats_age_seconds or 0)
    seconds = sample_seconds if sample_seconds and sample_seconds > 0 else AUTO_SAMPLE_SECONDS
    return sample_write_rates(conn, [t["oid"] for t in tables], seconds), "sampled over %ss" % seconds


def write_counters(conn, oids):
    rows = db.rows(
        conn,
        "SELECT relid::bigint AS oid, n_tup_ins + n_tup_upd + n_tup_del AS writes "
        "FROM pg_stat_user_tables WHERE relid = ANY(%s::oid[])",
        (list(oids),),
    )
    return {r["oid"]: r["writes"] for r in rows}


def sample_write_rates(conn, oids, seconds):
    """Writes per second per table over a short window (statistics counters, two reads)."""
    first = write_counters(conn, oids)
    time.sleep(seconds)
    conn.execute("SELECT pg_stat_clear_snapshot()")
    second = write_counters(conn, oids)
    return {oid: max(0, second.get(oid, 0) - first.get(oid, 0)) / float(seconds) for oid in oids}


def columns(conn, oids, version_num):
    generated = "a.attgenerated::text" if version_num >= 120000 else "''::text"
    query = (
        "SELECT a.attrelid::bigint AS oid, a.attname AS name, format_type(a.atttypid, a.atttypmod) AS type, "
        "coalesce(bt.typname, t.typname) AS base_type, coalesce(bt.typcategory, t.typcategory)::text AS category, "
        "a.atttypmod AS typmod, t.typtype::text AS typtype, " + generated + " AS generated, "
        "a.attidentity::text AS identity "
        "FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid "
        "LEFT JOIN pg_type bt ON t.typtype = 'd' AND bt.oid = t.typbasetype "
        "WHERE a.attrelid = ANY(%s::oid[]) AND a.attnum > 0 AND NOT a.attisdropped "
        "ORDER BY a.attrelid, a.attnum"
    )
    return db.rows(conn, query, (list(oids),))


def user_types(conn):
    return db.rows(
        conn,
        "SELECT n.nspname AS schema, t.typname AS name, t.typtype::text AS typtype "
        "FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace "
        "WHERE t.typtype IN ('e', 'd', 'r', 'c') AND " + SYSTEM_SCHEMA_FILTER + " "
        "AND (t.typtype <> 'c' OR (SELECT relkind FROM pg_class WHERE oid = t.typrelid) = 'c') "
        "AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_type'::regclass "
        "                AND d.objid = t.oid AND d.deptype = 'e') "
        "ORDER BY 1, 2",
    )


def triggers(conn, oids, version_num):
    clone_filter = "AND tg.tgparentid = 0 " if version_num >= 130000 else ""
    return db.rows(
        conn,
        "SELECT tg.tgrelid::bigint AS oid, tg.tgname AS name, tg.tgenabled::text AS enabled, "
        "p.proname AS function "
        "FROM pg_trigger tg JOIN pg_proc p ON p.oid = tg.tgfoid "
        "WHERE NOT tg.tgisinternal AND tg.tgrelid = ANY(%s::oid[]) " + clone_filter + "ORDER BY 1, 2",
        (list(oids),),
    )


def rules(conn):
    """Rewrite rules on tables (not the _RETURN rule of views), with the table's OID."""
    return db.rows(
        conn,
        "SELECT r.ev_class::bigint AS oid, n.nspname AS schema, c.relname AS table, r.rulename AS name "
        "FROM pg_rewrite r JOIN pg_class c ON c.oid = r.ev_class JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE r.rulename <> '_RETURN' AND " + SYSTEM_SCHEMA_FILTER + " ORDER BY 2, 3, 4",
    )


def event_triggers(conn):
    return db.rows(
        conn,
        "SELECT e.evtname AS name, e.evtevent AS event, e.evtenabled::text AS enabled "
        "FROM pg_event_trigger e WHERE NOT EXISTS (SELECT 1 FROM pg_depend d "
        "WHERE d.classid = 'pg_event_trigger'::regclass AND d.objid = e.oid AND d.deptype = 'e') ORDER BY 1",
    )


def extensions(conn):
    return db.rows(conn, "SELECT extname AS name, extversion AS version FROM pg_extension ORDER BY 1")


def available_extensions(conn):
    rows = db.rows(conn, "SELECT name, default_version FROM pg_available_extensions ORDER BY 1")
    return {r["name"]: r["default_version"] for r in rows}


def sequences(conn):
    return db.rows(
        conn,
        "SELECT n.nspname AS schema, c.relname AS name, "
        "EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid "
        "        AND d.deptype IN ('a', 'i') AND d.refclassid = 'pg_class'::regclass) AS owned "
        "FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE c.relkind = 'S' AND " + SYSTEM_SCHEMA_FILTER + " ORDER BY 1, 2",
    )


def large_object_count(conn):
    return db.first(conn, "SELECT count(*) AS n FROM pg_largeobject_metadata")["n"]


def long_transactions(conn, min_seconds):
    return db.rows(
        conn,
        "SELECT pid, usename AS user, datname AS database, state, application_name, "
        "extract(epoch FROM now() - xact_start)::bigint AS age_seconds "
        "FROM pg_stat_activity WHERE xact_start IS NOT NULL AND pid <> pg_backend_pid() "
        "AND backend_type = 'client backend' AND now() - xact_start > make_interval(secs => %s) "
        "ORDER BY xact_start",
        (min_seconds,),
    )


def prepared_transactions(conn):
    return db.rows(
        conn,
        "SELECT gid, owner, database, extract(epoch FROM now() - prepared)::bigint AS age_seconds "
        "FROM pg_prepared_xacts ORDER BY prepared",
    )


def replication_slots(conn, version_num):
    wal_status = "wal_status" if version_num >= 130000 else "NULL::text"
    return db.rows(
        conn,
        "SELECT slot_name AS name, plugin, slot_type AS type, database, active, temporary, "
        + wal_status + " AS wal_status, "
        "CASE WHEN pg_is_in_recovery() OR restart_lsn IS NULL THEN NULL "
        "     ELSE pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn)::bigint END AS retained_bytes "
        "FROM pg_replication_slots ORDER BY slot_name",
    )


def wal_senders_in_use(conn):
    return db.first(conn, "SELECT count(*) AS n FROM pg_stat_replication")["n"]


def lob_max_bytes(conn, schema, table, column, is_bytea, est_rows, sample_rows, timeout_ms):
    """Largest value of one column, sampled with a row and a time bound.

    Returns (max_bytes or None, how) where how says whether the table was read
    whole, sampled, or the time bound stopped it.
    """
    length = sql.SQL("octet_length({c})") if is_bytea else sql.SQL("octet_length({c}::text)")
    length = length.format(c=sql.Identifier(column))
    rel = sql.SQL("ONLY {s}.{t}").format(s=sql.Identifier(schema), t=sql.Identifier(table))
    if est_rows and est_rows > sample_rows:
        percent = max(0.01, min(100.0, 100.0 * sample_rows / float(est_rows)))
        source = sql.SQL("(SELECT {c} FROM {rel} TABLESAMPLE SYSTEM ({p}) LIMIT {n}) s").format(
            c=sql.Identifier(column), rel=rel, p=sql.Literal(percent), n=sql.Literal(sample_rows))
        how = "sampled"
    else:
        source = sql.SQL("(SELECT {c} FROM {rel} LIMIT {n}) s").format(
            c=sql.Identifier(column), rel=rel, n=sql.Literal(sample_rows))
        how = "scanned"
    query = sql.SQL("SELECT max({len}) AS m FROM {src}").format(len=length, src=source)
    try:
        with conn.transaction():
            conn.execute(sql.SQL("SET LOCAL statement_timeout = {}").format(sql.Literal(int(timeout_ms))))
            row = db.first(conn, query)
    except pg_errors.QueryCanceled:
        return None, "timeout"
    except pg_errors.InsufficientPrivilege:
        return None, "no privilege"
    return row["m"], how


def gather(conn, role, migration_user, filters, lob_sample_rows=10000, lob_sample_timeout_ms=5000,
           write_rate_seconds=0, long_transaction_seconds=300, known_write_rates=None, other_owners=()):
    """Everything evaluate() needs about one database, and the migrated tables.

    Returns (facts, tables): tables are the in-scope relations, classified.
    known_write_rates: (rates, method) from an earlier gather in the same run, so a
    second look (after fixes) does not sample again.
    other_owners: role names that own migrated objects on the other side (the target is checked
    against the source's owners, which the schema copy will make own objects there).
    """
    server = server_facts(conn)
    version_num = server["version_num"]
    facts = dict(server=server, settings=settings(conn), file_settings=file_settings(conn),
                 database=database_facts(conn))
    facts["roles"] = role_facts(conn, {server["login_user"], migration_user})
    user_exists = migration_user in facts["roles"]
    tables = scope.select(relations(conn, migration_user if user_exists else None, admin=True), **filters)
    oids = [t["oid"] for t in tables]
    facts["owners"] = object_owners(conn, oids)
    # The database's owner stands for pg_database_owner (the owner of public from 15).
    facts["admin"] = admin_facts(conn, version_num, set(INTERESTING_ROLES) | {migration_user}
                                 | {(facts["database"] or {}).get("owner")}
                                 | {o["owner"] for o in facts["owners"]} | set(other_owners or ()))
    facts["columns"] = columns(conn, oids, version_num)
    facts["triggers"] = triggers(conn, oids, version_num)
    facts["rules"] = rules(conn)
    facts["event_triggers"] = event_triggers(conn)
    facts["extensions"] = extensions(conn)
    facts["long_transactions"] = long_transactions(conn, long_transaction_seconds)
    facts["prepared_transactions"] = prepared_transactions(conn)
    facts["slots"] = replication_slots(conn, version_num)
    facts["wal_senders_in_use"] = wal_senders_in_use(conn)
    physical = prereqs.physical_tables(tables)
    if known_write_rates is not None:
        rates, method = known_write_rates
    else:
        # The target's own writes say nothing about the migration: no sampling there.
        rates, method = write_rates(conn, physical, write_rate_seconds if role == "source" else -1,
                                    (facts["database"] or {}).get("stats_age_seconds") or 0)
    facts["write_rates"] = {str(k): v for k, v in rates.items()}
    facts["write_rate_method"] = method
    if role == "target":
        facts["available_extensions"] = available_extensions(conn)
        return facts, tables
    facts["types"] = user_types(conn)
    facts["sequences"] = sequences(conn)
    facts["large_objects"] = large_object_count(conn)
    by_oid = {t["oid"]: t for t in physical}
    samples = {}
    for col in facts["columns"]:
        t = by_oid.get(col["oid"])
        if t is None or not prereqs.is_lob(col):
            continue
        samples["%s/%s" % (col["oid"], col["name"])] = lob_max_bytes(
            conn, t["schema"], t["name"], col["name"], col["base_type"] == "bytea", prereqs.est_rows(t),
            lob_sample_rows, lob_sample_timeout_ms)
    facts["lob_samples"] = samples
    return facts, tables


def facts_for_target(facts):
    """What the target's assessment compares with (returned by the source's run)."""
    database = facts.get("database") or {}
    return dict(version_num=facts["server"]["version_num"], version=facts["server"]["version_short"],
                encoding=database.get("encoding"), collate=database.get("collate"), ctype=database.get("ctype"),
                extensions=[dict(name=e["name"], version=e["version"]) for e in facts.get("extensions", [])],
                owners=sorted({o["owner"] for o in facts.get("owners", [])}))


# --- what pg_replication_plan reads besides the relations ---------------------------------------

def primary_keys(conn, oids):
    """{oid: [{name, type, base_type}]} in key order."""
    rows = db.rows(
        conn,
        "SELECT i.indrelid::bigint AS oid, a.attname AS name, format_type(a.atttypid, a.atttypmod) AS type, "
        "coalesce(bt.typname, t.typname) AS base_type "
        "FROM pg_index i CROSS JOIN LATERAL unnest(i.indkey::int2[]) WITH ORDINALITY AS k(attnum, ord) "
        "JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum "
        "JOIN pg_type t ON t.oid = a.atttypid "
        "LEFT JOIN pg_type bt ON t.typtype = 'd' AND bt.oid = t.typbasetype "
        "WHERE i.indisprimary AND i.indrelid = ANY(%s::oid[]) ORDER BY 1, k.ord",
        (list(oids),),
    )
    result = {}
    for r in rows:
        result.setdefault(r["oid"], []).append(dict(name=r["name"], type=r["type"], base_type=r["base_type"]))
    return result


def own_rows(conn, tables):
    """{oid: bool or None}: whether an inheritance parent holds rows of its own (None: not allowed to read)."""
    result = {}
    for t in tables:
        query = sql.SQL("SELECT EXISTS (SELECT 1 FROM ONLY {}.{}) AS own").format(
            sql.Identifier(t["schema"]), sql.Identifier(t["name"]))
        try:
            with conn.transaction():
                result[t["oid"]] = db.rows(conn, query)[0]["own"]
        except pg_errors.InsufficientPrivilege:
            result[t["oid"]] = None
    return result


def publications(conn, migration_name):
    """(names, tables) of the publications named like the migration's streams."""
    found = names.stream_names(replication.publications(conn, names.stream_prefix(migration_name)), migration_name)
    if not found:
        return [], []
    rows = db.rows(conn, "SELECT pubname, schemaname, tablename FROM pg_publication_tables WHERE pubname = ANY(%s) "
                         "ORDER BY 1, 2, 3", (found,))
    return found, rows
