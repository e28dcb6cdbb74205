# -*- coding: utf-8 -*-
# Copyright: pgshift.aurora contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Planner statistics on a server (SQL): which tables have them, who may gather them, ANALYZE.

Decisions (which tables need statistics, in which order they are analysed) are in module_utils/analyze.py.
Relations are named by their OID or by (schema, name), never by a formatted string.
"""

from __future__ import annotations

from ansible_collections.pgshift.aurora.plugins.module_utils import analyze, scope
from ansible_collections.pgshift.aurora.plugins.module_utils._pg import catalog, db

try:
    from psycopg import sql
except ImportError:  # pragma: no cover - the module reports the missing library
    sql = None

TOOL_SCHEMAS = ("pgshift",)  # the migration's own bookkeeping, never the application's
ANALYZE_ONLY_VERSION = 180000  # ANALYZE ONLY (a parent without its children) exists from PostgreSQL 18
MAINTAIN_VERSION = 170000  # the MAINTAIN privilege and pg_maintain exist from PostgreSQL 17

# What the planner has for each relation; counted from pg_stats (the rows this login may see: those of the
# columns it can SELECT), pg_class and the cumulative statistics (readable by every login).
STATISTICS_SQL = """
SELECT c.oid::bigint AS oid,
       c.reltuples::float8 AS reltuples,
       CASE WHEN c.relkind = 'r' THEN {heap_bytes} ELSE 0 END AS heap_bytes,
       s.last_analyze IS NOT NULL OR s.last_autoanalyze IS NOT NULL AS analysed,
       greatest(s.last_analyze, s.last_autoanalyze) AS analysed_at,
       coalesce(s.n_mod_since_analyze, 0) AS mod_since_analyze,
       (SELECT count(*) FROM pg_stats st
         WHERE st.schemaname = n.nspname AND st.tablename = c.relname AND NOT st.inherited) AS own_stats,
       (SELECT count(*) FROM pg_stats st
         WHERE st.schemaname = n.nspname AND st.tablename = c.relname AND st.inherited) AS inherited_stats,
       has_any_column_privilege(c.oid, 'SELECT') AS stats_visible,
       {can_analyze} AS can_analyze,
       pg_get_userbyid(c.relowner) AS owner
  FROM pg_class c
  JOIN pg_namespace n ON n.oid = c.relnamespace
  LEFT JOIN pg_stat_all_tables s ON s.relid = c.oid
  CROSS JOIN (SELECT datdba FROM pg_database WHERE datname = current_database()) d
 WHERE c.oid = ANY(%(oids)s::oid[])
"""
# The main fork's size takes an AccessShareLock (pg_relation_size). Without locks (lock_free): pg_class's
# relpages, and at least one block when the cumulative statistics saw rows arrive (a table loaded by COPY
# or by the apply workers and never vacuumed or analysed still has relpages = 0).
HEAP_BYTES = "pg_relation_size(c.oid, 'main')"
HEAP_BYTES_LOCK_FREE = ("greatest(c.relpages::bigint * current_setting('block_size')::bigint, "
                        "CASE WHEN coalesce(s.n_live_tup, 0) + coalesce(s.n_tup_ins, 0) > 0 "
                        "THEN current_setting('block_size')::bigint ELSE 0 END)")
CAN_ANALYZE_17 = "(has_table_privilege(c.oid, 'MAINTAIN') OR pg_has_role(d.datdba, 'USAGE'))"
CAN_ANALYZE_OLD = "(pg_has_role(c.relowner, 'USAGE') OR pg_has_role(d.datdba, 'USAGE'))"

LOGIN_SQL = """
SELECT current_user AS login,
       pg_get_userbyid(d.datdba) AS database_owner,
       pg_has_role(d.datdba, 'USAGE') AS owns_database,
       {maintain} AS has_pg_maintain
  FROM pg_database d WHERE d.datname = current_database()
"""


def statistics(conn, oids, lock_free=False):
    """{oid: {reltuples, heap_bytes, analysed, analysed_at, mod_since_analyze, own_stats, inherited_stats,
    stats_visible, can_analyze, owner}} for these relations (lock_free: see HEAP_BYTES_LOCK_FREE)."""
    if not oids:
        return {}
    version = conn.info.server_version
    query = STATISTICS_SQL.format(can_analyze=CAN_ANALYZE_17 if version >= MAINTAIN_VERSION else CAN_ANALYZE_OLD,
                                  heap_bytes=HEAP_BYTES_LOCK_FREE if lock_free else HEAP_BYTES)
    return dict((r["oid"], r) for r in db.rows(conn, query, dict(oids=list(oids))))


def login_facts(conn):
    """{login, database_owner, owns_database, has_pg_maintain} of the connected login (for what it may analyse)."""
    maintain = "pg_has_role('pg_maintain', 'USAGE')" if conn.info.server_version >= MAINTAIN_VERSION else "false"
    return db.rows(conn, LOGIN_SQL.format(maintain=maintain))[0]


def read_tables(conn, filters=None, lock_free=False):
    """Every table in scope (ordinary tables, partition leaves and partitioned parents, inheritance parents and
    children; not foreign tables nor materialized views; not the pgshift schema), each with what the planner has
    for it: analyze.observe()'s records. lock_free: read nothing that takes a table lock (a cutover's preflight
    must not wait behind a lock some session holds on the target)."""
    filters = filters or {}
    selected = scope.select(catalog.relations(conn, lock_free=lock_free), **filters)
    selected = [r for r in selected if r["relkind"] in ("r", "p") and r["schema"] not in TOOL_SCHEMAS]
    return analyze.observe(selected, statistics(conn, [r["oid"] for r in selected], lock_free=lock_free))


def analyze_statement(schema, name, only):
    """ANALYZE of one relation; only: without its partitions or inheritance children (PostgreSQL 18+)."""
    return sql.SQL("ANALYZE {}{}").format(sql.SQL("ONLY ") if only else sql.SQL(""),
                                          sql.Identifier(schema, name))


def run_analyze(conn, schema, name, only, journal):
    """ANALYZE one relation through the journal (recorded, run unless check mode); returns its text as shown."""
    stmt = analyze_statement(schema, name, only)
    journal.run(conn, stmt)
    return journal.text(stmt, conn)
