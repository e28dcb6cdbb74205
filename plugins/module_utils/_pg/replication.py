# -*- coding: utf-8 -*-
# Copyright: pgshift.aurora contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Replication objects: logical slots, publications and subscriptions - their DDL and the reads about them.

One place for what pg_native_stream (the forward streams) and aurora_cutover (the return stream, fresh
forward streams after a rollback) create and drop. Every statement is built with psycopg.sql; the ``*_sql``
functions only build it, the others run it through their ``journal`` (a ``journal.Journal``: recorded, masked,
skipped in check mode).
"""

from __future__ import annotations

import time

try:
    import psycopg
    from psycopg import sql
except ImportError:  # pragma: no cover - the module reports the missing library
    psycopg = None
    sql = None

from ansible_collections.pgshift.aurora.plugins.module_utils import native
from ansible_collections.pgshift.aurora.plugins.module_utils._pg import db


class SlotBusy(Exception):
    """A slot's WAL sender would not go away, even terminated; the message says how to drop it by hand."""


# ----------------------------------------------------------------------------------------------
# Reads
# ----------------------------------------------------------------------------------------------

def slots(conn, names):
    """{name: {slot_name, plugin, database, slot_type, active, active_pid, confirmed_flush_lsn, wal_status,
    retained_bytes}} of the named slots."""
    return dict((r["slot_name"], r) for r in db.rows(
        conn, "SELECT slot_name, plugin, database, slot_type, active, active_pid, "
              "confirmed_flush_lsn::text AS confirmed_flush_lsn, wal_status, "
              "pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn)::bigint AS retained_bytes "
              "FROM pg_replication_slots WHERE slot_name = ANY(%s)", (list(names),)))


def subscriptions(conn):
    """{name: {subname, enabled, slot_name, publications}} of this database."""
    return dict((r["subname"], r) for r in db.rows(
        conn, "SELECT subname, subenabled AS enabled, subslotname AS slot_name, subpublications AS publications "
              "FROM pg_subscription WHERE subdbid = (SELECT oid FROM pg_database WHERE datname = current_database())"))


def publication(conn, name):
    """The publication `name`: {all_tables, tables: [{schema, name}] (sorted)} or None."""
    pub = db.first(conn, "SELECT puballtables FROM pg_publication WHERE pubname = %s", (name,))
    if pub is None:
        return None
    return dict(all_tables=pub["puballtables"],
                tables=[dict(schema=s, name=n) for s, n in publication_tables(conn, [name])])


def publications(conn, prefix):
    """The publications whose name starts with prefix, sorted (left(), not starts_with(): also on a
    source older than PostgreSQL 11, which the plan reads)."""
    return [r["pubname"] for r in db.rows(conn, "SELECT pubname FROM pg_publication WHERE left(pubname, length(%s)) = "
                                                "%s ORDER BY 1", (prefix, prefix))]


def publication_tables(conn, names):
    """The tables listed in the publications (pg_publication_rel), as (schema, name), sorted."""
    return [(r["nspname"], r["relname"]) for r in db.rows(
        conn, "SELECT DISTINCT n.nspname, c.relname FROM pg_publication_rel r JOIN pg_publication p ON p.oid = r.prpubid "
              "JOIN pg_class c ON c.oid = r.prrelid JOIN pg_namespace n ON n.oid = c.relnamespace "
              "WHERE p.pubname = ANY(%s) ORDER BY 1, 2", (list(names),))]


# ----------------------------------------------------------------------------------------------
# Slots
# ----------------------------------------------------------------------------------------------

def create_slot(conn, name, *, journal):
    """A logical slot (pgoutput) starting at the current WAL position; its LSN (None in check mode)."""
    cur = journal.run(conn, sql.SQL("SELECT lsn::text FROM pg_create_logical_replication_slot({}, 'pgoutput')")
                      .format(sql.Literal(name)))
    return cur.fetchone()[0] if cur is not None else None


def drop_slot(conn, name, wait=15.0, *, journal, on_wait=None, clock=time.monotonic, sleep=time.sleep):
    """Drop slot `name` once its WAL sender has gone: waited for `wait` seconds, then terminated (again whenever
    a new one takes the slot) and waited for up to `wait` more seconds; SlotBusy when it stays.

    Returns False when there is no such slot, else True (in check mode the drop is only recorded).
    on_wait(pid, retained_bytes, seconds_left, terminated): told at each look while a WAL sender holds the slot.
    """
    found = slots(conn, [name]).get(name)
    if found is None:
        return False
    stmt = sql.SQL("SELECT pg_drop_replication_slot({})").format(sql.Literal(name))
    if journal.check_mode:
        journal.run(conn, stmt)
        return True
    deadline = clock() + max(wait, 0.0)
    terminated, recorded = None, False
    while True:
        if found is None:
            return True
        pid = found["active_pid"] if found["active"] else None
        if pid is None:
            try:
                if not recorded:
                    recorded = True
                    journal.run(conn, stmt)
                else:
                    conn.execute(stmt)
                return True
            except (psycopg.errors.ObjectInUse, psycopg.errors.UndefinedObject):
                pass  # taken again in between, or gone: look again
        else:
            if on_wait is not None:
                on_wait(pid, found.get("retained_bytes"), deadline - clock(), terminated is not None)
            if clock() > deadline:
                if terminated is not None and terminated == pid:
                    raise SlotBusy("replication slot %s is still used by process %d after it was terminated: drop it "
                                   "by hand (SELECT pg_drop_replication_slot('%s'))" % (name, pid, name))
                journal.run(conn, sql.SQL("SELECT pg_terminate_backend({})").format(sql.Literal(int(pid))))
                terminated = pid
                deadline = clock() + max(wait, 1.0)
        sleep(0.05)
        found = slots(conn, [name]).get(name)


# ----------------------------------------------------------------------------------------------
# Publications
# ----------------------------------------------------------------------------------------------

def publication_sql(name, tables):
    """CREATE PUBLICATION name [FOR TABLE ...]; tables: [{schema, name, only}] (ONLY for an inheritance parent's
    own rows)."""
    if not tables:
        return sql.SQL("CREATE PUBLICATION {}").format(sql.Identifier(name))
    return sql.SQL("CREATE PUBLICATION {} FOR TABLE {}").format(
        sql.Identifier(name), sql.SQL(", ").join(native.table_ref(t) for t in tables))


def alter_publication_sql(name, verb, tables):
    """ALTER PUBLICATION name ADD|DROP TABLE ... (verb: 'ADD' or 'DROP'); DROP always names ONLY the table."""
    refs = [native.table_ref(dict(t, only=True) if verb == "DROP" else t) for t in tables]
    return sql.SQL("ALTER PUBLICATION {} " + verb + " TABLE {}").format(sql.Identifier(name), sql.SQL(", ").join(refs))


def drop_publication_sql(name):
    return sql.SQL("DROP PUBLICATION IF EXISTS {}").format(sql.Identifier(name))


def create_publication(conn, name, tables, *, journal):
    """Create the publication (tables as publication_sql takes them)."""
    journal.run(conn, publication_sql(name, tables))


def alter_publication(conn, name, verb, tables, *, journal):
    """Add tables to (verb 'ADD') or remove them from (verb 'DROP') the publication (alter_publication_sql)."""
    journal.run(conn, alter_publication_sql(name, verb, tables))


def drop_publication(conn, name, *, journal):
    """DROP PUBLICATION IF EXISTS name."""
    journal.run(conn, drop_publication_sql(name))


# ----------------------------------------------------------------------------------------------
# Subscriptions
# ----------------------------------------------------------------------------------------------

def subscription_options(slot, enabled, server_version, origin_none=False, disable_on_error=None):
    """The WITH (...) options of a subscription on the slot made beforehand (no slot created, nothing copied), in
    order: disable_on_error listed from PostgreSQL 15 when given, origin = none from 16 when origin_none."""
    options = [("create_slot", False), ("slot_name", slot), ("copy_data", False), ("enabled", bool(enabled))]
    if disable_on_error is not None and server_version >= 150000:
        options.append(("disable_on_error", bool(disable_on_error)))
    if origin_none and server_version >= 160000:
        options.append(("origin", "none"))
    return options


def subscription_sql(name, conninfo, server_version, publication=None, slot=None, enabled=True, origin_none=False,
                     disable_on_error=None):
    """CREATE SUBSCRIPTION name CONNECTION conninfo PUBLICATION publication (default name) WITH (...) on slot
    (default name)."""
    opts = sql.SQL(", ").join(sql.SQL("{} = {}").format(sql.SQL(k), sql.Literal(v)) for k, v in subscription_options(
        slot or name, enabled, server_version, origin_none, disable_on_error))
    return sql.SQL("CREATE SUBSCRIPTION {} CONNECTION {} PUBLICATION {} WITH ({})").format(
        sql.Identifier(name), sql.Literal(conninfo), sql.Identifier(publication or name), opts)


def drop_subscription_sql(name):
    return sql.SQL("DROP SUBSCRIPTION IF EXISTS {}").format(sql.Identifier(name))


def create_subscription(conn, name, conninfo, publication=None, slot=None, enabled=True, origin_none=False,
                        disable_on_error=None, *, journal):
    """Create the subscription (subscription_sql, for this server's version). The conninfo's password must be among
    the journal's secrets: the text recorded is masked, never the statement run."""
    journal.run(conn, subscription_sql(name, conninfo, conn.info.server_version, publication, slot, enabled,
                                       origin_none, disable_on_error))


def drop_subscription(conn, name, detach=True, *, journal):
    """Drop the subscription; with detach, disable it and detach it from its slot first (the slot stays on the
    publisher, dropped separately)."""
    if detach:
        for clause in ("DISABLE", "SET (slot_name = NONE)"):
            alter_subscription(conn, name, clause, journal=journal)
    journal.run(conn, drop_subscription_sql(name))


def alter_subscription_sql(name, clause):
    """ALTER SUBSCRIPTION name <clause> (a fixed clause: ENABLE, DISABLE, SET (slot_name = NONE))."""
    return sql.SQL("ALTER SUBSCRIPTION {} " + clause).format(sql.Identifier(name))


def alter_subscription(conn, name, clause, *, journal):
    """ALTER SUBSCRIPTION name <clause> (alter_subscription_sql)."""
    journal.run(conn, alter_subscription_sql(name, clause))


def refresh_subscription_sql(name, copy_data):
    return sql.SQL("ALTER SUBSCRIPTION {} REFRESH PUBLICATION WITH (copy_data = {})").format(
        sql.Identifier(name), sql.Literal(bool(copy_data)))


def refresh_subscription(conn, name, copy_data, *, journal):
    """ALTER SUBSCRIPTION name REFRESH PUBLICATION WITH (copy_data = ...): take in the publication's table list."""
    journal.run(conn, refresh_subscription_sql(name, copy_data))


def alter_subscription_connection(conn, name, conninfo, *, journal):
    """ALTER SUBSCRIPTION .. CONNECTION '<conninfo>', then ENABLE."""
    stmt = sql.SQL("ALTER SUBSCRIPTION {} CONNECTION {}").format(sql.Identifier(name), sql.Literal(conninfo))
    journal.run(conn, stmt)
    alter_subscription(conn, name, "ENABLE", journal=journal)


def subscription_state(conn, name):
    """The subscription `name` of this database as the return-stream check reads it: {enabled, worker_pid,
    tables (in pg_subscription_rel: what the subscriber found in the publication)} or None."""
    return db.first(conn, "SELECT s.subenabled AS enabled, (SELECT w.pid FROM pg_stat_subscription w WHERE "
                          "w.subid = s.oid AND w.relid IS NULL AND w.pid IS NOT NULL LIMIT 1) AS worker_pid, (SELECT "
                          "count(*) FROM pg_subscription_rel r WHERE r.srsubid = s.oid) AS tables FROM pg_subscription "
                          "s WHERE s.subname = %s AND s.subdbid = (SELECT oid FROM pg_database WHERE datname = "
                          "current_database())", (name,))


def slot_sender(conn, name):
    """The WAL sender using slot `name` as this (publishing) server sees it: {pid, usename, state,
    application_name, client_addr, ssl, ssl_version} or None when nobody uses the slot."""
    return db.first(conn, "SELECT r.pid, r.usename::text AS usename, r.state, r.application_name, "
                          "r.client_addr::text AS client_addr, s.ssl, s.version AS ssl_version FROM "
                          "pg_replication_slots l JOIN pg_stat_replication r ON r.pid = l.active_pid LEFT JOIN "
                          "pg_stat_ssl s ON s.pid = r.pid WHERE l.slot_name = %s", (name,))
