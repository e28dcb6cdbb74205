# -*- coding: utf-8 -*-
# Copyright: pgshift.aurora contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""One native stream's replication objects on both servers: what exists (reads), the publication and
subscription statements, the subscription's connection string, the load's sessions and the slot's drop.

Every statement that changes something runs through a ``journal.Journal``; reads use ``_pg.db``.
The copy itself is in _pg/loader.py; the decisions in native.py.
"""

from __future__ import annotations

import time

try:
    from psycopg import errors as pg_errors
    from psycopg import sql
except ImportError:  # pragma: no cover - the module reports the missing library
    pg_errors = sql = None

from ansible_collections.pgshift.aurora.plugins.module_utils import native, replication_conn
from ansible_collections.pgshift.aurora.plugins.module_utils._pg import db, loader

# ----------------------------------------------------------------------------------------------
# Statements
# ----------------------------------------------------------------------------------------------


def create_publication(name, tables):
    if not tables:
        return sql.SQL("CREATE PUBLICATION {}").format(sql.Identifier(name))
    return sql.SQL("CREATE PUBLICATION {} FOR TABLE {}").format(
        sql.Identifier(name), sql.SQL(", ").join(native.table_ref(t) for t in tables))


def alter_publication(name, verb, tables):
    """ALTER PUBLICATION name ADD|DROP TABLE ... (verb: 'ADD' or 'DROP'); DROP always names ONLY the table."""
    refs = [native.table_ref(dict(t, only=True) if verb == "DROP" else t) for t in tables]
    return sql.SQL("ALTER PUBLICATION {} " + verb + " TABLE {}").format(sql.Identifier(name), sql.SQL(", ").join(refs))


def drop_publication(name):
    return sql.SQL("DROP PUBLICATION IF EXISTS {}").format(sql.Identifier(name))


def subscription_options(name, enabled, target_version):
    """The WITH (...) options of the stream's subscription, in order."""
    options = [("create_slot", False), ("slot_name", name), ("copy_data", False), ("enabled", bool(enabled))]
    if target_version >= 150000:
        options.append(("disable_on_error", False))
    return options


def create_subscription(name, conninfo, enabled, target_version):
    opts = sql.SQL(", ").join(sql.SQL("{} = {}").format(sql.SQL(k), sql.Literal(v))
                              for k, v in subscription_options(name, enabled, target_version))
    return sql.SQL("CREATE SUBSCRIPTION {} CONNECTION {} PUBLICATION {} WITH ({})").format(
        sql.Identifier(name), sql.Literal(conninfo), sql.Identifier(name), opts)


def alter_subscription(name, clause):
    return sql.SQL("ALTER SUBSCRIPTION {} " + clause).format(sql.Identifier(name))


def refresh_subscription(name, copy_data):
    return sql.SQL("ALTER SUBSCRIPTION {} REFRESH PUBLICATION WITH (copy_data = {})").format(
        sql.Identifier(name), sql.Literal(bool(copy_data)))


def drop_subscription(name):
    return sql.SQL("DROP SUBSCRIPTION IF EXISTS {}").format(sql.Identifier(name))


def subscription_conninfo(p):
    """The connection string the target's subscription opens to the source, from pg_native_stream's options
    (source_* as the target server reaches the source, else the controller's login_*)."""
    user = p["source_replication_user"] or p["login_user"]
    password = p["source_replication_password"]
    if password is None and not p["source_replication_user"]:
        password = p["login_password"]
    return replication_conn.subscription_conninfo(
        p["source_host"] or p["login_host"], p["source_port"] or p["login_port"], p["source_db"] or p["login_db"],
        user, password, p["source_ssl_mode"] or p["ssl_mode"], p["source_ssl_root_cert"])


# ----------------------------------------------------------------------------------------------
# What exists
# ----------------------------------------------------------------------------------------------

LOAD_SESSIONS = "SELECT pid FROM pg_stat_activity WHERE application_name = %s AND pid <> pg_backend_pid() ORDER BY pid"


def observe(src, tgt, name):
    """What native.decide() and native.absent_steps() need: the publication (with all_tables), the slot, the
    sessions of a load of this stream on either side, the subscription and the load's progress rows."""
    obs = dict(database=db.one(src, "SELECT current_database()"))
    pub = db.first(src, "SELECT puballtables FROM pg_publication WHERE pubname = %s", (name,))
    obs["publication"] = None
    if pub is not None:
        tables = db.rows(
            src, "SELECT n.nspname AS schema, c.relname AS name FROM pg_publication p "
                 "JOIN pg_publication_rel r ON r.prpubid = p.oid JOIN pg_class c ON c.oid = r.prrelid "
                 "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE p.pubname = %s ORDER BY 1, 2", (name,))
        obs["publication"] = dict(tables=tables, all_tables=pub["puballtables"])
    obs["slot"] = db.first(
        src, "SELECT plugin, database, confirmed_flush_lsn::text AS confirmed_flush_lsn, active_pid, slot_type, "
             "pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn)::bigint AS retained_bytes "
             "FROM pg_replication_slots WHERE slot_name = %s", (name,))
    app = native.load_application_name(name)
    obs["loading_pids"] = [r["pid"] for r in db.rows(src, LOAD_SESSIONS, (app,))]
    obs["target_loading_pids"] = [r["pid"] for r in db.rows(tgt, LOAD_SESSIONS, (app,))]
    obs["subscription"] = db.first(
        tgt, "SELECT subenabled AS enabled, subslotname AS slot_name FROM pg_subscription WHERE subname = %s "
             "AND subdbid = (SELECT oid FROM pg_database WHERE datname = current_database())", (name,))
    obs["progress"] = loader.read_progress(tgt, name)
    return obs


# ----------------------------------------------------------------------------------------------
# Changes
# ----------------------------------------------------------------------------------------------

def stop_load(conn, name, journal):
    """Terminate the sessions of a load of this stream still running on this server."""
    journal.run(conn, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = %s "
                      "AND pid <> pg_backend_pid()", (native.load_application_name(name),))


def clear_progress(conn, name, journal):
    """The stream's load_progress rows (loader.clear_progress: the table goes when it is left empty)."""
    journal.note(journal.text("DELETE FROM pgshift.load_progress WHERE stream = %s", conn, (name,)))
    if not journal.check_mode:
        loader.clear_progress(conn, name)


class SlotBusy(Exception):
    """The slot's WAL sender still runs after it was terminated; the message says what to do."""


def drop_slot(conn, name, wait=15.0, journal=None, on_wait=None):
    """pg_drop_replication_slot(name) once its WAL sender stopped: wait up to `wait` seconds, then terminate the
    sender (and wait 10 s more). on_wait(pid, retained_bytes, seconds_left, terminated) is called while waiting.
    A slot that does not exist is no error. Raises SlotBusy when the sender outlives its termination."""
    stmt = sql.SQL("SELECT pg_drop_replication_slot({})").format(sql.Literal(name))
    journal.note(journal.text(stmt, conn))  # recorded once; run below, again while the slot is still in use
    if journal.check_mode:
        return
    deadline = time.time() + max(wait, 0)
    terminated = False
    while True:
        row = db.first(conn, "SELECT active_pid, pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn)::bigint AS "
                             "retained FROM pg_replication_slots WHERE slot_name = %s", (name,))
        if row is None:
            return
        if row["active_pid"] is not None:
            if on_wait is not None:
                on_wait(row["active_pid"], row["retained"], deadline - time.time(), terminated)
            if time.time() < deadline:
                time.sleep(0.2)
                continue
            if not terminated:
                journal.run(conn, sql.SQL("SELECT pg_terminate_backend({})").format(sql.Literal(row["active_pid"])))
                terminated = True
                deadline = time.time() + 10
                continue
            raise SlotBusy("replication slot %s is still used by process %d on the source after it was terminated: "
                           "drop it by hand (%s)" % (name, row["active_pid"], journal.text(stmt, conn)))
        try:
            conn.execute(stmt)
            return
        except pg_errors.ObjectInUse:
            time.sleep(0.2)
        except pg_errors.UndefinedObject:
            return
