# -*- coding: utf-8 -*-
# Copyright: pgshift.aurora contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The database side of the cutover: the read-only freeze, sessions, the cutover log and marker,
the return (reverse) stream, sequences, finishing (materialized views, triggers, foreign keys)
and quick counts. Every statement is built with psycopg.sql; the decisions live in cutover.py.
"""

from __future__ import annotations

import time

try:
    from psycopg import sql
except ImportError:  # pragma: no cover - reported by the module
    sql = None

from ansible_collections.pgshift.aurora.plugins.module_utils.scope import qualified, quote_ident

LOG_SCHEMA = "pgshift"
LOG_TABLE = "cutover_log"


def rows(conn, query, params=None):
    cur = conn.execute(query, params)
    if cur.description is None:
        return []
    names = [d.name for d in cur.description]
    return [dict(zip(names, r)) for r in cur.fetchall()]


def one(conn, query, params=None):
    return conn.execute(query, params).fetchone()[0]


# ----------------------------------------------------------------------------------------------
# Sessions and transactions
# ----------------------------------------------------------------------------------------------

def long_transactions(conn, exclude_users=()):
    """Client sessions with an open transaction, oldest first (seconds open)."""
    return rows(conn, "SELECT pid, usename AS user, application_name AS application, state, "
                      "extract(epoch FROM clock_timestamp() - xact_start)::float8 AS seconds "
                      "FROM pg_stat_activity WHERE backend_type = 'client backend' AND xact_start IS NOT NULL "
                      "AND pid <> pg_backend_pid() AND datname = current_database() "
                      "AND NOT (usename = ANY(%s)) ORDER BY xact_start", (list(exclude_users),))


def app_sessions(conn, roles):
    """Client sessions of the application roles on this database."""
    return rows(conn, "SELECT pid, usename AS user, application_name AS application, state, "
                      "client_addr::text AS client FROM pg_stat_activity WHERE backend_type = 'client backend' "
                      "AND usename = ANY(%s) AND pid <> pg_backend_pid() AND datname = current_database()",
                (list(roles),))


def terminate_sessions(conn, roles):
    """End every session of the roles (found first, then ended one by one: a WHERE clause may run its
    functions before its filters)."""
    pids = [r["pid"] for r in rows(conn, "SELECT pid FROM pg_stat_activity WHERE backend_type = 'client backend' "
                                         "AND usename = ANY(%s) AND pid <> pg_backend_pid()", (list(roles),))]
    ended = []
    for pid in pids:
        if one(conn, "SELECT pg_terminate_backend(%s)", (pid,)):
            ended.append(pid)
    return ended


# ----------------------------------------------------------------------------------------------
# read_only freeze: ALTER ROLE ... SET default_transaction_read_only
# ----------------------------------------------------------------------------------------------

def role_read_only_settings(conn, roles):
    """{role: 'on'|'off'|None} - default_transaction_read_only set for the role in every database (or missing)."""
    found = dict((r, None) for r in roles)
    for r in rows(conn, "SELECT a.rolname, s.setconfig FROM pg_db_role_setting s JOIN pg_roles a ON a.oid = s.setrole "
                        "WHERE s.setdatabase = 0 AND a.rolname = ANY(%s)", (list(roles),)):
        for item in r["setconfig"] or []:
            name, value = item.partition("=")[::2]
            if name == "default_transaction_read_only":
                found[r["rolname"]] = value
    return found


def role_passwords(conn, roles):
    """{role: verifier or None} from pg_authid, or None when this login may not read it (RDS, Aurora)."""
    try:
        found = rows(conn, "SELECT rolname, rolpassword FROM pg_authid WHERE rolname = ANY(%s)", (list(roles),))
    except Exception:  # insufficient privilege (autocommit: nothing to roll back); the caller says so
        return None
    return dict((r["rolname"], r["rolpassword"]) for r in found)


def set_role_password(conn, role, verifier):
    """ALTER ROLE .. PASSWORD '<verifier>': PostgreSQL stores a SCRAM or md5 verifier as it is."""
    conn.execute(sql.SQL("ALTER ROLE {} PASSWORD {}").format(sql.Identifier(role), sql.Literal(verifier)))
    return "ALTER ROLE %s PASSWORD '********'" % quote_ident(role)


def existing_roles(conn, roles):
    found = rows(conn, "SELECT rolname FROM pg_roles WHERE rolname = ANY(%s) ORDER BY 1", (list(roles),))
    return [r["rolname"] for r in found]


def set_read_only(conn, roles, on):
    """ALTER ROLE r SET default_transaction_read_only = on (or RESET) for each role; returns the statements."""
    done = []
    for role in roles:
        if on:
            stmt = sql.SQL("ALTER ROLE {} SET default_transaction_read_only = on").format(sql.Identifier(role))
        else:
            stmt = sql.SQL("ALTER ROLE {} RESET default_transaction_read_only").format(sql.Identifier(role))
        conn.execute(stmt)
        done.append(stmt.as_string(conn))
    return done


# ----------------------------------------------------------------------------------------------
# The cutover log (and the marker row)
# ----------------------------------------------------------------------------------------------

def ensure_log(conn):
    conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(LOG_SCHEMA)))
    # A uuid key, not a sequence: with DMS the log is replicated, and sequences are not.
    conn.execute(sql.SQL("CREATE TABLE IF NOT EXISTS {} (id uuid PRIMARY KEY DEFAULT gen_random_uuid(), "
                         "migration text NOT NULL, "
                         "run_id text NOT NULL, direction text NOT NULL, event text NOT NULL, detail text, "
                         "at timestamptz NOT NULL DEFAULT clock_timestamp())").format(
        sql.Identifier(LOG_SCHEMA, LOG_TABLE)))


def log_exists(conn):
    return bool(one(conn, "SELECT to_regclass(%s) IS NOT NULL", ("%s.%s" % (LOG_SCHEMA, LOG_TABLE),)))


def log_event(conn, migration, run_id, direction, event, detail=None):
    conn.execute(sql.SQL("INSERT INTO {} (migration, run_id, direction, event, detail) VALUES (%s, %s, %s, %s, %s)")
                 .format(sql.Identifier(LOG_SCHEMA, LOG_TABLE)), (migration, run_id, direction, event, detail))


def unlog_event(conn, migration, run_id, event):
    conn.execute(sql.SQL("DELETE FROM {} WHERE migration = %s AND run_id = %s AND event = %s").format(
        sql.Identifier(LOG_SCHEMA, LOG_TABLE)), (migration, run_id, event))


def marker_seen(conn, migration, run_id):
    if not log_exists(conn):
        return False
    return bool(one(conn, sql.SQL("SELECT count(*) FROM {} WHERE migration = %s AND run_id = %s AND event = 'marker'")
                    .format(sql.Identifier(LOG_SCHEMA, LOG_TABLE)), (migration, run_id)))


def last_switch(conn, migration):
    """The latest 'switched' event of the migration on this side: {direction, at, run_id} or None."""
    if not log_exists(conn):
        return None
    found = rows(conn, sql.SQL("SELECT direction, run_id, at FROM {} WHERE migration = %s AND event = 'switched' "
                               "ORDER BY at DESC LIMIT 1").format(sql.Identifier(LOG_SCHEMA, LOG_TABLE)),
                 (migration,))
    return found[0] if found else None


def drop_log(conn):
    conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(sql.Identifier(LOG_SCHEMA, LOG_TABLE)))


# ----------------------------------------------------------------------------------------------
# Streams: positions, subscriptions, slots, publications
# ----------------------------------------------------------------------------------------------

def current_lsn(conn):
    return one(conn, "SELECT pg_current_wal_lsn()::text")


def nudge(conn):
    """A tiny committed transaction (an xid, a synchronously flushed commit record, nothing else)."""
    conn.execute("SELECT txid_current()")


def slots(conn, names):
    return dict((r["slot_name"], r) for r in rows(
        conn, "SELECT slot_name, active, active_pid, confirmed_flush_lsn::text AS confirmed_flush_lsn "
              "FROM pg_replication_slots WHERE slot_name = ANY(%s)", (list(names),)))


def subscriptions(conn):
    """{name: {enabled, slot_name, publications}} of this database."""
    return dict((r["subname"], r) for r in rows(
        conn, "SELECT subname, subenabled AS enabled, subslotname AS slot_name, subpublications AS publications "
              "FROM pg_subscription WHERE subdbid = (SELECT oid FROM pg_database WHERE datname = current_database())"))


def publications(conn, prefix):
    return [r["pubname"] for r in rows(conn, "SELECT pubname FROM pg_publication WHERE starts_with(pubname, %s) "
                                             "ORDER BY 1", (prefix,))]


def publication_tables(conn, names):
    """The tables listed in the publications (pg_publication_rel), as (schema, name), sorted."""
    return [(r["nspname"], r["relname"]) for r in rows(
        conn, "SELECT DISTINCT n.nspname, c.relname FROM pg_publication_rel r JOIN pg_publication p ON p.oid = r.prpubid "
              "JOIN pg_class c ON c.oid = r.prrelid JOIN pg_namespace n ON n.oid = c.relnamespace "
              "WHERE p.pubname = ANY(%s) ORDER BY 1, 2", (list(names),))]


def replica_identities(conn, tables):
    """{(schema, name): relreplident} ('d' default, 'f' full, 'i' index, 'n' nothing) of the tables."""
    found = rows(conn, "SELECT n.nspname, c.relname, c.relreplident::text AS ident FROM pg_class c "
                       "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE (n.nspname, c.relname) IN "
                       "(SELECT * FROM unnest(%s::text[], %s::text[]))",
                 ([s for s, n in tables], [n for s, n in tables]))
    return dict(((r["nspname"], r["relname"]), r["ident"]) for r in found)


def set_replica_identity_full(conn, schema, name):
    stmt = sql.SQL("ALTER TABLE {} REPLICA IDENTITY FULL").format(sql.Identifier(schema, name))
    conn.execute(stmt)
    return stmt.as_string(conn)


def user_tables(conn):
    """(schema, name) of every ordinary or partition leaf table outside the system and pgshift schemas."""
    return [(r["nspname"], r["relname"]) for r in rows(
        conn, "SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
              "WHERE c.relkind = 'r' AND c.relpersistence = 'p' AND n.nspname NOT IN ('pg_catalog', "
              "'information_schema', 'pgshift') AND n.nspname NOT LIKE 'pg\\_%%' ORDER BY 1, 2")]


def create_publication(conn, name, tables):
    refs = sql.SQL(", ").join(sql.SQL("ONLY {}").format(sql.Identifier(s, n)) for s, n in tables)
    stmt = sql.SQL("CREATE PUBLICATION {} FOR TABLE {}").format(sql.Identifier(name), refs)
    conn.execute(stmt)
    return stmt.as_string(conn)


def drop_publication(conn, name):
    stmt = sql.SQL("DROP PUBLICATION IF EXISTS {}").format(sql.Identifier(name))
    conn.execute(stmt)
    return stmt.as_string(conn)


def create_slot(conn, name):
    """A logical slot (pgoutput) starting at the current WAL position; returns its LSN."""
    return one(conn, "SELECT lsn::text FROM pg_create_logical_replication_slot(%s, 'pgoutput')", (name,))


def drop_slot(conn, name, wait=15.0):
    """Drop a slot once its walsender has gone (terminated after `wait` seconds); False when there was none."""
    deadline = time.monotonic() + wait
    while True:
        found = slots(conn, [name]).get(name)
        if found is None:
            return False
        if not found["active"]:
            try:
                conn.execute("SELECT pg_drop_replication_slot(%s)", (name,))
                return True
            except Exception:  # became active again in between: try again
                if time.monotonic() > deadline + wait:
                    raise
        elif time.monotonic() > deadline:
            conn.execute("SELECT pg_terminate_backend(%s)", (found["active_pid"],))
        time.sleep(0.05)


def drop_subscription(conn, name):
    """Disable, detach from its slot and drop (the slot is dropped separately, on the publisher)."""
    done = []
    for clause in ("DISABLE", "SET (slot_name = NONE)"):
        stmt = sql.SQL("ALTER SUBSCRIPTION {} " + clause).format(sql.Identifier(name))
        conn.execute(stmt)
        done.append(stmt.as_string(conn))
    stmt = sql.SQL("DROP SUBSCRIPTION IF EXISTS {}").format(sql.Identifier(name))
    conn.execute(stmt)
    done.append(stmt.as_string(conn))
    return done


def create_subscription(conn, name, conninfo, publication, origin_none):
    """On the slot `name` made beforehand: no slot created, nothing copied; origin=none where supported."""
    options = [("create_slot", False), ("slot_name", name), ("copy_data", False), ("enabled", True)]
    if origin_none and conn.info.server_version >= 160000:
        options.append(("origin", "none"))
    opts = sql.SQL(", ").join(sql.SQL("{} = {}").format(sql.SQL(k), sql.Literal(v)) for k, v in options)
    return sql.SQL("CREATE SUBSCRIPTION {} CONNECTION {} PUBLICATION {} WITH ({})").format(
        sql.Identifier(name), sql.Literal(conninfo), sql.Identifier(publication), opts)


def subscription_state(conn, name):
    """The subscription `name` of this database as the return-stream check reads it: {enabled, worker_pid,
    tables (in pg_subscription_rel: what the subscriber found in the publication)} or None."""
    found = rows(conn, "SELECT s.subenabled AS enabled, (SELECT w.pid FROM pg_stat_subscription w WHERE w.subid = s.oid "
                       "AND w.relid IS NULL AND w.pid IS NOT NULL LIMIT 1) AS worker_pid, (SELECT count(*) FROM "
                       "pg_subscription_rel r WHERE r.srsubid = s.oid) AS tables FROM pg_subscription s WHERE "
                       "s.subname = %s AND s.subdbid = (SELECT oid FROM pg_database WHERE datname = current_database())",
                 (name,))
    return found[0] if found else None


def slot_sender(conn, name):
    """The WAL sender using slot `name` as this (publishing) server sees it: {pid, usename, state,
    application_name, client_addr, ssl, ssl_version} or None when nobody uses the slot."""
    found = rows(conn, "SELECT r.pid, r.usename::text AS usename, r.state, r.application_name, "
                       "r.client_addr::text AS client_addr, s.ssl, s.version AS ssl_version FROM pg_replication_slots l "
                       "JOIN pg_stat_replication r ON r.pid = l.active_pid LEFT JOIN pg_stat_ssl s ON s.pid = r.pid "
                       "WHERE l.slot_name = %s", (name,))
    return found[0] if found else None


def alter_subscription_connection(conn, name, conninfo):
    """ALTER SUBSCRIPTION .. CONNECTION '<conninfo>' then ENABLE: the statements (the caller shows them masked)."""
    stmts = [sql.SQL("ALTER SUBSCRIPTION {} CONNECTION {}").format(sql.Identifier(name), sql.Literal(conninfo)),
             sql.SQL("ALTER SUBSCRIPTION {} ENABLE").format(sql.Identifier(name))]
    for stmt in stmts:
        conn.execute(stmt)
    return stmts


# ----------------------------------------------------------------------------------------------
# Sequences
# ----------------------------------------------------------------------------------------------

SETVAL_QUERY = ("SELECT setval(c.oid, %s, true) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                "WHERE n.nspname = %s AND c.relname = %s AND c.relkind = 'S'")


def setval(conn, schema, name, value):
    """setval(sequence, value, true) on the sequence found by its schema and name (never a name parsed from
    text): the next nextval() returns value + increment. Returns the statement as a person would type it;
    LookupError when there is no such sequence."""
    if conn.execute(SETVAL_QUERY, (int(value), schema, name)).fetchone() is None:
        raise LookupError("sequence %s does not exist" % qualified(schema, name))
    return setval_display(schema, name, value)


def setval_display(schema, name, value):
    """SELECT setval('<quoted name>', value, true), for the queries shown (the text a person can run)."""
    return sql.SQL("SELECT setval({}, {}, true)").format(
        sql.Literal(sql.Identifier(schema, name).as_string(None)), sql.Literal(int(value))).as_string(None)


# ----------------------------------------------------------------------------------------------
# Finishing: materialized views, triggers, foreign keys
# ----------------------------------------------------------------------------------------------

def matviews(conn):
    return [(r["schemaname"], r["matviewname"]) for r in rows(
        conn, "SELECT schemaname, matviewname FROM pg_matviews WHERE schemaname NOT IN ('pg_catalog', "
              "'information_schema') ORDER BY 1, 2")]


def refresh_matview(conn, schema, name):
    stmt = sql.SQL("REFRESH MATERIALIZED VIEW {}").format(sql.Identifier(schema, name))
    conn.execute(stmt)
    return stmt.as_string(conn)


def triggers(conn):
    """{(schema, table, trigger): tgenabled} of user triggers."""
    return dict(((r["nspname"], r["relname"], r["tgname"]), r["tgenabled"]) for r in rows(
        conn, "SELECT n.nspname, c.relname, t.tgname, t.tgenabled::text AS tgenabled FROM pg_trigger t "
              "JOIN pg_class c ON c.oid = t.tgrelid JOIN pg_namespace n ON n.oid = c.relnamespace "
              "WHERE NOT t.tgisinternal AND n.nspname NOT IN ('pg_catalog', 'information_schema', 'pgshift')"))


TRIGGER_STATES = dict(O="ENABLE", D="DISABLE", R="ENABLE REPLICA", A="ENABLE ALWAYS")


def set_trigger(conn, schema, table, trigger, state):
    stmt = sql.SQL("ALTER TABLE {} " + TRIGGER_STATES[state] + " TRIGGER {}").format(
        sql.Identifier(schema, table), sql.Identifier(trigger))
    conn.execute(stmt)
    return stmt.as_string(conn)


def foreign_keys(conn):
    """{(schema, table, constraint): validated} of foreign keys."""
    return dict(((r["nspname"], r["relname"], r["conname"]), r["convalidated"]) for r in rows(
        conn, "SELECT n.nspname, c.relname, k.conname, k.convalidated FROM pg_constraint k "
              "JOIN pg_class c ON c.oid = k.conrelid JOIN pg_namespace n ON n.oid = c.relnamespace "
              "WHERE k.contype = 'f' AND c.relispartition IS NOT TRUE"))


def validate_fk(conn, schema, table, constraint):
    stmt = sql.SQL("ALTER TABLE {} VALIDATE CONSTRAINT {}").format(sql.Identifier(schema, table),
                                                                   sql.Identifier(constraint))
    conn.execute(stmt)
    return stmt.as_string(conn)


def finishing_diff(old_triggers, new_triggers, old_fks, new_fks):
    """(trigger changes [(schema, table, trigger, state)], fks to validate, fks missing) - pure."""
    trig = [(s, t, g, state) for (s, t, g), state in sorted(old_triggers.items())
            if (s, t, g) in new_triggers and new_triggers[(s, t, g)] != state]
    validate = [k for k, ok in sorted(old_fks.items()) if ok and k in new_fks and not new_fks[k]]
    missing = [k for k in sorted(old_fks) if k not in new_fks]
    return trig, validate, missing


# ----------------------------------------------------------------------------------------------
# Verify: counts of the busiest tables
# ----------------------------------------------------------------------------------------------

def busiest_tables(conn, tables, limit, max_rows=None):
    """(counted, skipped): the `limit` tables among `tables` [(schema, name)] with the most writes since the
    statistics were reset, those estimated (pg_class.reltuples) above max_rows set apart as skipped."""
    if not tables or limit <= 0:
        return [], []
    found = rows(conn, "SELECT s.schemaname, s.relname, s.n_tup_ins + s.n_tup_upd + s.n_tup_del AS writes, "
                       "c.reltuples::float8 AS estimate FROM pg_stat_user_tables s JOIN pg_class c ON c.oid = s.relid "
                       "WHERE (s.schemaname, s.relname) IN (SELECT * FROM unnest(%s::text[], %s::text[])) "
                       "ORDER BY writes DESC, 1, 2 LIMIT %s",
                 ([s for s, n in tables], [n for s, n in tables], limit))
    counted, skipped = [], []
    for r in found:
        too_big = max_rows is not None and max_rows > 0 and (r["estimate"] or 0) > max_rows
        (skipped if too_big else counted).append((r["schemaname"], r["relname"]))
    return counted, skipped


def count_rows(conn, schema, name):
    return one(conn, sql.SQL("SELECT count(*) FROM ONLY {}").format(sql.Identifier(schema, name)))


def name_of(schema, name):
    return qualified(schema, name)


def ident_of(name):
    """One name as shown in messages (quoted as quote_ident() would)."""
    return quote_ident(name)
