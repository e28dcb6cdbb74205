# -*- coding: utf-8 -*-
# Copyright: pgshift.aurora contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The database side of the cutover: the read-only freeze, sessions, the cutover log and marker,
the freeze journal, the run lock, the streams' positions, sequences, finishing (materialized views,
triggers, foreign keys) and quick counts. Every statement is built with psycopg.sql; those that change
something run through journal.Journal (recorded, secrets masked), reads through _pg/db.py. The
replication objects (slots, publications, subscriptions) are in _pg/replication.py; the decisions live
in cutover.py.
"""

from __future__ import annotations

import json
import re
import time

try:
    import psycopg
    from psycopg import sql
except ImportError:  # pragma: no cover - reported by the module
    psycopg = None
    sql = None

from ansible_collections.pgshift.aurora.plugins.module_utils.scope import qualified, quote_ident
from ansible_collections.pgshift.aurora.plugins.module_utils._pg.db import first, one, rows

LOG_SCHEMA = "pgshift"
LOG_TABLE = "cutover_log"


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


TERMINATE_WAIT_MS = 5000  # how long the ended sessions may take to exit (a commit in flight finishes first)


def wait_exited(conn, pids, wait_ms=TERMINATE_WAIT_MS, interval=0.01):
    """The pids still in pg_stat_activity after waiting up to wait_ms for them to leave ([] when all left).
    conn must be in autocommit (every connection of connection.connect is): inside a transaction
    pg_stat_activity is a snapshot taken once, and the wait would never see a session leave."""
    deadline = time.monotonic() + wait_ms / 1000.0
    left = list(pids)
    while left:
        left = [r["pid"] for r in rows(conn, "SELECT pid FROM pg_stat_activity WHERE pid = ANY(%s)", (left,))]
        if not left or time.monotonic() >= deadline:
            break
        time.sleep(interval)
    return left


def terminate_sessions(conn, roles, journal, database=None, since=None, wait_ms=TERMINATE_WAIT_MS):
    """End the sessions of the roles in `database` (this connection's by default) and no other, only those
    started at or after `since` when given. Found first, then signalled one by one (a WHERE clause may run its
    functions before its filters), then waited for together until every one has exited: pg_terminate_backend
    only signals, and a freeze must not return while a signalled session can still commit. (Its timeout
    argument, PostgreSQL 13+, would wait for each session in turn, in steps of 100 ms.) Returns (ended pids,
    [(pid, role, error)] of those that could not be ended: pg_signal_backend ends any non-superuser's session,
    never a superuser's; or one still there after wait_ms)."""
    found = rows(conn, "SELECT pid, usename::text AS role FROM pg_stat_activity WHERE backend_type = 'client backend' "
                       "AND usename = ANY(%s) AND pid <> pg_backend_pid() AND datname = coalesce(%s, current_database()) "
                       "AND (%s::timestamptz IS NULL OR backend_start >= %s::timestamptz)",
                 (list(roles), database, since, since))
    signalled, failed = [], []
    for r in found:
        try:
            cur = journal.run(conn, sql.SQL("SELECT pg_terminate_backend({})").format(sql.Literal(int(r["pid"]))))
        except psycopg.errors.InsufficientPrivilege as exc:
            failed.append((r["pid"], r["role"], str(exc).strip()))
            continue
        if cur is not None:  # None in check mode: recorded, not run
            cur.fetchone()  # false: the session had ended already (wait_exited finds it gone)
            signalled.append(r)
    left = set(wait_exited(conn, [r["pid"] for r in signalled], wait_ms)) if signalled else set()
    ended = [r["pid"] for r in signalled if r["pid"] not in left]
    failed.extend((r["pid"], r["role"], "the session was still there %d ms after pg_terminate_backend" % wait_ms)
                  for r in signalled if r["pid"] in left)
    return ended, failed


# ----------------------------------------------------------------------------------------------
# read_only freeze: ALTER ROLE ... SET default_transaction_read_only
# ----------------------------------------------------------------------------------------------

READ_ONLY = "default_transaction_read_only"
SETTING_NAME = re.compile(r"[a-z_][a-z0-9_.]*")


def role_settings(conn, roles, database, setting=READ_ONLY):
    """{role: value or None}: `setting` as ALTER ROLE .. IN DATABASE `database` SET left it for each role; with
    database None, as ALTER ROLE .. SET (every database) left it."""
    found = dict((r, None) for r in roles)
    if database is None:
        where, params = "s.setdatabase = 0", (list(roles),)
    else:
        where, params = "s.setdatabase = (SELECT oid FROM pg_database WHERE datname = %s)", (database, list(roles))
    for r in rows(conn, "SELECT a.rolname, s.setconfig FROM pg_db_role_setting s JOIN pg_roles a ON a.oid = s.setrole "
                        "WHERE " + where + " AND a.rolname = ANY(%s)", params):
        for item in r["setconfig"] or []:
            name, value = item.partition("=")[::2]
            if name == setting:
                found[r["rolname"]] = value
    return found


def set_role_setting(conn, role, database, value, journal, setting=READ_ONLY):
    """ALTER ROLE role IN DATABASE database SET setting = value (RESET when value is None)."""
    if not SETTING_NAME.fullmatch(setting):
        raise ValueError("%r is not a setting name" % setting)
    if value is None:
        stmt = sql.SQL("ALTER ROLE {} IN DATABASE {} RESET {}").format(
            sql.Identifier(role), sql.Identifier(database), sql.SQL(setting))
    else:
        stmt = sql.SQL("ALTER ROLE {} IN DATABASE {} SET {} = {}").format(
            sql.Identifier(role), sql.Identifier(database), sql.SQL(setting), sql.Literal(str(value)))
    journal.run(conn, stmt)


def current_database(conn):
    return one(conn, "SELECT current_database()")


def role_read_only_settings(conn, roles):
    """{role: 'on'|'off'|None}: default_transaction_read_only of each role in this connection's database; where
    that is not set, the value an earlier version of this collection set for every database (ALTER ROLE .. SET)."""
    here = role_settings(conn, roles, current_database(conn))
    everywhere = role_settings(conn, roles, None)
    return dict((r, here[r] if here[r] is not None else everywhere[r]) for r in roles)


def read_only_blockers(conn, roles):
    """Why this login cannot make the roles read-only in this database (sentences, empty when it can): a
    superuser role (the master user of RDS and Aurora is not one: it can neither change a superuser's settings
    nor end its sessions), or, on PostgreSQL 16+, a role it holds no ADMIN OPTION on (it has it on the roles it
    created)."""
    found = rows(conn, "SELECT r.rolname, r.rolsuper, me.rolsuper AS me_super, me.rolcreaterole AS me_createrole, "
                       "CASE WHEN current_setting('server_version_num')::int >= 160000 THEN "
                       "pg_has_role(current_user, r.oid, 'USAGE WITH ADMIN OPTION') END AS admin "
                       "FROM pg_roles r, pg_roles me WHERE me.rolname = current_user AND r.rolname = ANY(%s) "
                       "ORDER BY 1", (list(roles),))
    problems = []
    for r in found:
        if r["me_super"]:
            continue
        if r["rolsuper"]:
            problems.append("role %s is a superuser: %s, not a superuser, can neither change its settings nor end "
                            "its sessions (and a superuser can switch read-only off itself); use freeze_method "
                            "pgbouncer or command" % (quote_ident(r["rolname"]), "this login"))
        elif r["admin"] is False or (r["admin"] is None and not r["me_createrole"]):
            problems.append("this login may not change role %s (PostgreSQL 16+ needs ADMIN OPTION on it: GRANT %s TO "
                            "<this login> WITH ADMIN OPTION, as a role with ADMIN OPTION on it)" % (
                                quote_ident(r["rolname"]), quote_ident(r["rolname"])))
    return problems


def role_passwords(conn, roles):
    """{role: verifier or None} from pg_authid, or None when this login may not read it (RDS, Aurora)."""
    try:
        found = rows(conn, "SELECT rolname, rolpassword FROM pg_authid WHERE rolname = ANY(%s)", (list(roles),))
    except Exception:  # insufficient privilege (autocommit: nothing to roll back); the caller says so
        return None
    return dict((r["rolname"], r["rolpassword"]) for r in found)


def set_role_password(conn, role, verifier, journal):
    """ALTER ROLE .. PASSWORD '<verifier>': PostgreSQL stores a SCRAM or md5 verifier as it is (a secret of the
    journal: shown masked)."""
    journal.add_secret(verifier)
    journal.run(conn, sql.SQL("ALTER ROLE {} PASSWORD {}").format(sql.Identifier(role), sql.Literal(verifier)))


def existing_roles(conn, roles):
    found = rows(conn, "SELECT rolname FROM pg_roles WHERE rolname = ANY(%s) ORDER BY 1", (list(roles),))
    return [r["rolname"] for r in found]


def set_read_only(conn, roles, on, journal):
    """ALTER ROLE r IN DATABASE <this one> SET default_transaction_read_only = on (or RESET) for each role; when
    resetting, a read-only setting for every database left by an earlier version is reset too."""
    database = current_database(conn)
    everywhere = role_settings(conn, roles, None) if not on else {}
    for role in roles:
        set_role_setting(conn, role, database, "on" if on else None, journal)
        if everywhere.get(role) == "on":
            journal.run(conn, sql.SQL("ALTER ROLE {} RESET default_transaction_read_only").format(sql.Identifier(role)))


# ----------------------------------------------------------------------------------------------
# The cutover log (and the marker row)
# ----------------------------------------------------------------------------------------------

def ensure_log(conn, journal):
    ensure_journal(conn, journal)
    # A uuid key, not a sequence: with DMS the log is replicated, and sequences are not.
    journal.run(conn, sql.SQL("CREATE TABLE IF NOT EXISTS {} (id uuid PRIMARY KEY DEFAULT gen_random_uuid(), "
                              "migration text NOT NULL, "
                              "run_id text NOT NULL, direction text NOT NULL, event text NOT NULL, detail text, "
                              "at timestamptz NOT NULL DEFAULT clock_timestamp())").format(
        sql.Identifier(LOG_SCHEMA, LOG_TABLE)))


def log_exists(conn):
    return bool(one(conn, "SELECT to_regclass(%s) IS NOT NULL", ("%s.%s" % (LOG_SCHEMA, LOG_TABLE),)))


def log_event(conn, migration, run_id, direction, event, journal, detail=None):
    journal.run(conn, sql.SQL("INSERT INTO {} (migration, run_id, direction, event, detail) VALUES (%s, %s, %s, %s, "
                              "%s)").format(sql.Identifier(LOG_SCHEMA, LOG_TABLE)),
                (migration, run_id, direction, event, detail))


def unlog_event(conn, migration, run_id, event, journal):
    journal.run(conn, sql.SQL("DELETE FROM {} WHERE migration = %s AND run_id = %s AND event = %s").format(
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
    return first(conn, sql.SQL("SELECT direction, run_id, at FROM {} WHERE migration = %s AND event = 'switched' "
                               "ORDER BY at DESC LIMIT 1").format(sql.Identifier(LOG_SCHEMA, LOG_TABLE)), (migration,))


def drop_log(conn, journal):
    journal.run(conn, sql.SQL("DROP TABLE IF EXISTS {}").format(sql.Identifier(LOG_SCHEMA, LOG_TABLE)))


def switch_logged(conn, migration, run_id):
    """Whether this side's cutover log has the 'switched' row of that run."""
    if not log_exists(conn):
        return False
    return bool(one(conn, sql.SQL("SELECT count(*) FROM {} WHERE migration = %s AND run_id = %s AND event = 'switched'")
                    .format(sql.Identifier(LOG_SCHEMA, LOG_TABLE)), (migration, run_id)))


# ----------------------------------------------------------------------------------------------
# The freeze journal: written (and committed: autocommit) on the frozen side before a freeze takes
# effect, closed when it is undone or the switch completed (cutover.freeze_recovery decides)
# ----------------------------------------------------------------------------------------------

JOURNAL_TABLE = "freeze_journal"
JOURNAL_COLUMNS = ("id::text AS id, migration, run_id, direction, side, method, done, restore, owner_pid, owner_started, "
                   "started_at, finished_at, undone_at, outcome, note")


def ensure_journal(conn, journal):
    journal.run(conn, sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(LOG_SCHEMA)))
    # owner_pid/owner_started: the session of the run that froze; while it lives, the freeze is that run's own.
    journal.run(conn, sql.SQL("CREATE TABLE IF NOT EXISTS {} (id uuid PRIMARY KEY DEFAULT gen_random_uuid(), "
                              "migration text NOT NULL, run_id text NOT NULL, direction text NOT NULL, "
                              "side text NOT NULL, method text NOT NULL, done jsonb NOT NULL, restore jsonb NOT NULL, "
                              "owner_pid int, owner_started timestamptz, started_at timestamptz NOT NULL DEFAULT "
                              "clock_timestamp(), finished_at timestamptz, undone_at timestamptz, outcome text, "
                              "note text)").format(
        sql.Identifier(LOG_SCHEMA, JOURNAL_TABLE)))


def journal_exists(conn):
    return bool(one(conn, "SELECT to_regclass(%s) IS NOT NULL", ("%s.%s" % (LOG_SCHEMA, JOURNAL_TABLE),)))


def journal_freeze(conn, migration, run_id, direction, side, method, done, restore, journal):
    """Write the entry (this session is its owner); returns it as open_freezes() reads it."""
    ensure_journal(conn, journal)
    query = sql.SQL("INSERT INTO {} (migration, run_id, direction, side, method, done, restore, owner_pid, "
                    "owner_started) SELECT %s, %s, %s, %s, %s, %s::jsonb, %s::jsonb, pid, backend_start FROM "
                    "pg_stat_activity WHERE pid = pg_backend_pid() RETURNING " + JOURNAL_COLUMNS).format(
        sql.Identifier(LOG_SCHEMA, JOURNAL_TABLE))
    cur = journal.run(conn, query, (migration, run_id, direction, side, method, json.dumps(done), json.dumps(restore)))
    return dict(zip([d.name for d in cur.description], cur.fetchone()))


def open_freezes(conn, migration):
    """The migration's entries neither finished nor undone, newest first, each with owner_alive: whether the
    session that wrote it still exists. [] without a journal."""
    if not journal_exists(conn):
        return []
    return rows(conn, sql.SQL("SELECT " + JOURNAL_COLUMNS + ", EXISTS (SELECT 1 FROM pg_stat_activity a WHERE a.pid = "
                              "j.owner_pid AND a.backend_start = j.owner_started) AS owner_alive FROM {} j WHERE "
                              "migration = %s AND finished_at IS NULL AND undone_at IS NULL ORDER BY started_at DESC")
                .format(sql.Identifier(LOG_SCHEMA, JOURNAL_TABLE)), (migration,))


def other_open_freezes(conn, migration):
    """Open entries of other migrations in this database (their runs recover them): [{migration, run_id}]."""
    if not journal_exists(conn):
        return []
    return rows(conn, sql.SQL("SELECT migration, run_id FROM {} WHERE migration <> %s AND finished_at IS NULL AND "
                              "undone_at IS NULL ORDER BY started_at").format(
        sql.Identifier(LOG_SCHEMA, JOURNAL_TABLE)), (migration,))


def close_freeze(conn, entry_id, outcome, journal, note=""):
    """Mark the entry undone ('undone') or finished (any other outcome, e.g. 'switched')."""
    column = "undone_at" if outcome == "undone" else "finished_at"
    journal.run(conn, sql.SQL("UPDATE {} SET {} = clock_timestamp(), outcome = %s, note = %s WHERE id = %s::uuid").format(
        sql.Identifier(LOG_SCHEMA, JOURNAL_TABLE), sql.Identifier(column)), (outcome, note, entry_id))


def drop_journal(conn, journal):
    journal.run(conn, sql.SQL("DROP TABLE IF EXISTS {}").format(sql.Identifier(LOG_SCHEMA, JOURNAL_TABLE)))


# ----------------------------------------------------------------------------------------------
# One step machine at a time per migration: a session advisory lock on the source
# ----------------------------------------------------------------------------------------------

RUN_LOCK_CLASS = "pgshift.aurora_cutover"


def try_run_lock(conn, migration):
    """Take the migration's run lock for this session (released when the session ends, so a run whose process
    died holds nothing). Returns None when taken, else the pid of the session that holds it (0 if unknown)."""
    if one(conn, "SELECT pg_try_advisory_lock(hashtext(%s), hashtext(%s))", (RUN_LOCK_CLASS, migration)):
        return None
    holder = one(conn, sql.SQL(
        "SELECT l.pid FROM pg_locks l WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 2 "
        "AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database()) "
        "AND l.classid = hashtext(%s)::oid AND l.objid = hashtext(%s)::oid"), (RUN_LOCK_CLASS, migration))
    return holder or 0


# ----------------------------------------------------------------------------------------------
# Statements inside the freeze: bounded by the pause budget left
# ----------------------------------------------------------------------------------------------

class StatementTimeout(Exception):
    """A statement inside the freeze was cut short by the statement_timeout or lock_timeout the pause budget
    left gave it; the message names it and the side."""

    def __init__(self, message, detail):
        super().__init__(message)
        self.detail = detail


def statement_text(query, conn):
    try:
        text = query.as_string(conn) if hasattr(query, "as_string") else str(query)
    except Exception:  # shown in a message only
        text = str(query)
    return " ".join(text.split())[:300]


class Bounded:
    """A connection whose statements end within a budget.

    budget(statement text) -> ms or None (it may raise: a spent budget). Before a statement with a budget,
    statement_timeout and lock_timeout are set for the session to it - again only when more than slack_ms of
    the budget went by since they were set, so a statement ends at most slack_ms after the budget's end; with
    none, they are RESET (the role's and database's defaults) if they had been set. A statement cut short by
    them raises StatementTimeout. Everything else is the connection's (cursors are bounded the same way)."""

    def __init__(self, conn, budget, side, slack_ms=50):
        self._conn, self._budget, self._side, self._slack = conn, budget, side, slack_ms
        self._set_ms = None

    def __getattr__(self, name):
        return getattr(self._conn, name)

    def _before(self, query):
        text = statement_text(query, self._conn)
        ms = self._budget(text)
        if ms is None:
            if self._set_ms is not None:
                self._conn.execute("RESET statement_timeout; RESET lock_timeout")
                self._set_ms = None
        elif self._set_ms is None or self._set_ms - ms > self._slack:
            self._conn.execute("SELECT set_config('statement_timeout', %s, false), set_config('lock_timeout', %s, "
                               "false)", (str(ms), str(ms)))
            self._set_ms = ms
        return text

    def _run(self, execute, query, params, kwargs):
        text = self._before(query)
        try:
            return execute(query, params, **kwargs)
        except (psycopg.errors.QueryCanceled, psycopg.errors.LockNotAvailable) as exc:
            if self._set_ms is None:
                raise
            kind = "lock_timeout" if isinstance(exc, psycopg.errors.LockNotAvailable) else "statement_timeout"
            raise StatementTimeout("on the %s, %s cut short %s after %d ms (the write pause budget left): %s" % (
                self._side, kind, text, self._set_ms, str(exc).strip().splitlines()[0]), dict(
                    statement=text, side=self._side, timeout=kind, timeout_ms=self._set_ms)) from None

    def execute(self, query, params=None, **kwargs):
        return self._run(self._conn.execute, query, params, kwargs)

    def cursor(self, *args, **kwargs):
        return _BoundedCursor(self, self._conn.cursor(*args, **kwargs))


class _BoundedCursor:
    def __init__(self, owner, cur):
        self._owner, self._cur = owner, cur

    def __getattr__(self, name):
        return getattr(self._cur, name)

    def __enter__(self):
        self._cur.__enter__()
        return self

    def __exit__(self, *exc):
        return self._cur.__exit__(*exc)

    def execute(self, query, params=None, **kwargs):
        self._owner._run(self._cur.execute, query, params, kwargs)
        return self


# ----------------------------------------------------------------------------------------------
# Streams: positions (the slots, publications and subscriptions themselves: _pg/replication.py)
# ----------------------------------------------------------------------------------------------

def current_lsn(conn):
    return one(conn, "SELECT pg_current_wal_lsn()::text")


def nudge(conn):
    """A tiny committed transaction: an xid and a commit record, nothing else. It writes no WAL before its commit, so
    its commit is not flushed at once (the WAL writer flushes it within wal_writer_delay): it moves a WAL sender
    on, it proves nothing flushed."""
    conn.execute("SELECT txid_current()")


# synchronous_commit for the one transaction of the statement: as the session has it, `local` where that is off
# (so its commit record is flushed before the statement returns)
SYNC_COMMIT = ("SELECT set_config('synchronous_commit', CASE current_setting('synchronous_commit') WHEN 'off' THEN "
               "'local' ELSE current_setting('synchronous_commit') END, true)")


def _logged_position(conn, migration, run_id, direction, event, detail, journal):
    """A row of the cutover log committed with synchronous_commit at least local, in one statement that returns the
    WAL insert position read right after the row was written, inside its transaction (text)."""
    stmt = sql.SQL("WITH s AS (" + SYNC_COMMIT + "), m AS (INSERT INTO {} (migration, run_id, direction, event, "
                   "detail) VALUES (%s, %s, %s, %s, %s) RETURNING id) SELECT pg_current_wal_insert_lsn()::text "
                   "FROM m, s").format(sql.Identifier(LOG_SCHEMA, LOG_TABLE))
    cur = journal.run(conn, stmt, (migration, run_id, direction, event, detail))
    row = cur.fetchone() if cur is not None else None
    return row[0] if row else None


def mark_barrier(conn, migration, run_id, direction, journal):
    """On the old side, once the freeze took effect: the marker row in the cutover log, and the barrier, the WAL
    insert position read right after the row was written, inside its transaction. Every commit before the freeze
    ends at or before it; the marker's commit record, flushed when the statement returns (synchronous_commit at
    least local), ends after it: so the WAL senders decode past the barrier at once and tell their subscribers so.
    Returns the barrier LSN (text)."""
    return _logged_position(conn, migration, run_id, direction, "marker", None, journal)


def stream_receipts(conn, names):
    """{subscription: received_lsn (text) or None} for the subscriptions `names` of this database: the last
    position the subscription's apply worker received (pg_stat_subscription; None when no apply worker runs).
    Table synchronization workers and, from PostgreSQL 16, parallel apply workers are left out."""
    version = conn.info.server_version
    leader = ("w.worker_type = 'apply'" if version >= 170000 else
              "w.leader_pid IS NULL" if version >= 160000 else "true")
    found = rows(conn, "SELECT s.subname, max(w.received_lsn)::text AS received FROM pg_subscription s "
                       "LEFT JOIN pg_stat_subscription w ON w.subid = s.oid AND w.relid IS NULL AND w.pid IS NOT NULL "
                       "AND " + leader + " WHERE s.subname = ANY(%s) AND s.subdbid = (SELECT oid FROM pg_database "
                       "WHERE datname = current_database()) GROUP BY s.subname", (list(names),))
    received = dict((n, None) for n in names)
    received.update((r["subname"], r["received"]) for r in found)
    return received


def flush_barrier(conn, migration, run_id, direction, barrier_lsn, journal):
    """On the new side, once every stream's apply worker received a position past the barrier
    (cutover.barrier_behind): a 'barrier' row in its cutover log, committed with synchronous_commit at least
    local. Flushing that commit flushes all WAL written before it, so every transaction the apply workers
    committed (asynchronously) up to the barrier is on disk when this returns. Returns the new side's WAL insert
    position read just before that commit (text)."""
    return _logged_position(conn, migration, run_id, direction, "barrier", barrier_lsn, journal)


def senders(conn):
    """{pid: {pid, state, replay_lag (s)}} of this (publishing) server's WAL senders."""
    return dict((r["pid"], r) for r in rows(conn, "SELECT pid, state, extract(epoch FROM replay_lag)::float8 AS "
                                                  "replay_lag FROM pg_stat_replication"))


def apply_workers(conn):
    """{subscription name: {subname, pid}} of the apply workers running on this (subscribing) server."""
    return dict((r["subname"], r) for r in rows(conn, "SELECT subname, pid FROM pg_stat_subscription WHERE relid IS "
                                                      "NULL AND pid IS NOT NULL"))


def replica_identities(conn, tables):
    """{(schema, name): relreplident} ('d' default, 'f' full, 'i' index, 'n' nothing) of the tables."""
    found = rows(conn, "SELECT n.nspname, c.relname, c.relreplident::text AS ident FROM pg_class c "
                       "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE (n.nspname, c.relname) IN "
                       "(SELECT * FROM unnest(%s::text[], %s::text[]))",
                 ([s for s, n in tables], [n for s, n in tables]))
    return dict(((r["nspname"], r["relname"]), r["ident"]) for r in found)


def set_replica_identity_full(conn, schema, name, journal):
    journal.run(conn, sql.SQL("ALTER TABLE {} REPLICA IDENTITY FULL").format(sql.Identifier(schema, name)))


def user_tables(conn):
    """(schema, name) of every ordinary or partition leaf table outside the system and pgshift schemas."""
    return [(r["nspname"], r["relname"]) for r in rows(
        conn, "SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
              "WHERE c.relkind = 'r' AND c.relpersistence = 'p' AND n.nspname NOT IN ('pg_catalog', "
              "'information_schema', 'pgshift') AND n.nspname NOT LIKE 'pg\\_%%' ORDER BY 1, 2")]


# ----------------------------------------------------------------------------------------------
# Sequences
# ----------------------------------------------------------------------------------------------

SEQUENCES_EXIST = ("SELECT u.s, u.n FROM unnest(%s::text[], %s::text[]) AS u(s, n) JOIN pg_namespace ns ON "
                   "ns.nspname = u.s JOIN pg_class c ON c.relnamespace = ns.oid AND c.relname = u.n AND c.relkind = 'S'")


def _setval_call(schema, name, value):
    seq = sql.Literal(sql.Identifier(schema, name).as_string(None))
    return sql.SQL("setval({}, {}, true)").format(seq, sql.Literal(int(value)))


def setval_sql(schema, name, value):
    """SELECT setval('<schema and name, each quoted>', value, true): the next nextval() returns value + increment.
    The name is given quoted as identifiers, so the server finds exactly that sequence."""
    return sql.SQL("SELECT ") + _setval_call(schema, name, value)


def setval_all(conn, changes, journal=None):
    """setval() on every (schema, name, value) of `changes`, each sequence found by its schema and name, in one
    statement after one look that they all exist (inside the freeze, every round trip lengthens the write pause).
    Returns the statement's text (None for no change); LookupError naming the first missing sequence, before
    any is set."""
    changes = [(schema, name, int(value)) for schema, name, value in changes]
    if not changes:
        return None
    pairs = ([c[0] for c in changes], [c[1] for c in changes])
    found = set((r["s"], r["n"]) for r in rows(conn, SEQUENCES_EXIST, pairs))
    missing = [c for c in changes if (c[0], c[1]) not in found]
    if missing:
        raise LookupError("sequence %s does not exist" % qualified(missing[0][0], missing[0][1]))
    stmt = sql.SQL("SELECT ") + sql.SQL(", ").join(_setval_call(*c) for c in changes)
    if journal is not None:
        journal.run(conn, stmt)
    else:
        conn.execute(stmt)
    return stmt.as_string(None)


# ----------------------------------------------------------------------------------------------
# Finishing: materialized views, triggers, foreign keys
# ----------------------------------------------------------------------------------------------

MATVIEW_READS = """
WITH RECURSIVE edge(rel, refclass, ref) AS (
    SELECT r.ev_class, d.refclassid, d.refobjid FROM pg_rewrite r
      JOIN pg_depend d ON d.classid = 'pg_rewrite'::regclass AND d.objid = r.oid
     WHERE d.refobjid <> r.ev_class
    UNION
    SELECT i.inhparent, 'pg_class'::regclass, i.inhrelid FROM pg_inherits i
), reach(mv, refclass, ref) AS (
    SELECT e.rel, e.refclass, e.ref FROM edge e JOIN pg_class m ON m.oid = e.rel AND m.relkind = 'm'
    UNION
    SELECT r.mv, e.refclass, e.ref FROM reach r
      JOIN pg_class c ON r.refclass = 'pg_class'::regclass AND c.oid = r.ref AND c.relkind IN ('v', 'p', 'r')
      JOIN edge e ON e.rel = c.oid
)
SELECT n.nspname AS schema, m.relname AS name,
       coalesce(bool_or((r.refclass = 'pg_proc'::regclass AND r.ref >= 16384) OR c.relkind = 'f'), false) AS opaque,
       coalesce(jsonb_agg(DISTINCT jsonb_build_array(cn.nspname, c.relname)) FILTER (WHERE c.relkind = 'm'),
                '[]') AS reads,
       string_agg(DISTINCT format('%s:%s:%s:%s:%s', s.relid, s.n_tup_ins, s.n_tup_upd, s.n_tup_del, s.n_live_tup),
                  ',') AS counters
  FROM pg_class m JOIN pg_namespace n ON n.oid = m.relnamespace
  LEFT JOIN reach r ON r.mv = m.oid
  LEFT JOIN pg_class c ON r.refclass = 'pg_class'::regclass AND c.oid = r.ref
  LEFT JOIN pg_namespace cn ON cn.oid = c.relnamespace
  LEFT JOIN pg_stat_user_tables s ON s.relid = c.oid AND c.relkind = 'r'
 WHERE m.relkind = 'm' AND n.nspname NOT IN ('pg_catalog', 'information_schema')
 GROUP BY 1, 2 ORDER BY 1, 2
"""


def matview_fingerprints(conn):
    """({(schema, name): fingerprint or None}, {(schema, name): [(schema, name) of matviews it reads]}).

    The fingerprint: the change counters (pg_stat_user_tables n_tup_ins/upd/del, n_live_tup) of every table the
    materialized view reads, through views, partitions and inheritance children. None (always refreshed) when it
    calls a function of its own or reads a foreign table: what those read is not known."""
    prints, reads = {}, {}
    for r in rows(conn, MATVIEW_READS):
        key = (r["schema"], r["name"])
        prints[key] = None if r["opaque"] else (r["counters"] or "")
        reads[key] = [tuple(x) for x in r["reads"] if tuple(x) != key]
    return prints, reads


def matviews(conn):
    return [(r["schemaname"], r["matviewname"]) for r in rows(
        conn, "SELECT schemaname, matviewname FROM pg_matviews WHERE schemaname NOT IN ('pg_catalog', "
              "'information_schema') ORDER BY 1, 2")]


def refresh_matview(conn, schema, name, journal):
    journal.run(conn, sql.SQL("REFRESH MATERIALIZED VIEW {}").format(sql.Identifier(schema, name)))


def triggers(conn):
    """{(schema, table, trigger): tgenabled} of user triggers."""
    return dict(((r["nspname"], r["relname"], r["tgname"]), r["tgenabled"]) for r in rows(
        conn, "SELECT n.nspname, c.relname, t.tgname, t.tgenabled::text AS tgenabled FROM pg_trigger t "
              "JOIN pg_class c ON c.oid = t.tgrelid JOIN pg_namespace n ON n.oid = c.relnamespace "
              "WHERE NOT t.tgisinternal AND n.nspname NOT IN ('pg_catalog', 'information_schema', 'pgshift')"))


TRIGGER_STATES = dict(O="ENABLE", D="DISABLE", R="ENABLE REPLICA", A="ENABLE ALWAYS")


def set_trigger(conn, schema, table, trigger, state, journal):
    journal.run(conn, sql.SQL("ALTER TABLE {} " + TRIGGER_STATES[state] + " TRIGGER {}").format(
        sql.Identifier(schema, table), sql.Identifier(trigger)))


def foreign_keys(conn):
    """{(schema, table, constraint): validated} of foreign keys."""
    return dict(((r["nspname"], r["relname"], r["conname"]), r["convalidated"]) for r in rows(
        conn, "SELECT n.nspname, c.relname, k.conname, k.convalidated FROM pg_constraint k "
              "JOIN pg_class c ON c.oid = k.conrelid JOIN pg_namespace n ON n.oid = c.relnamespace "
              "WHERE k.contype = 'f' AND c.relispartition IS NOT TRUE"))


def validate_fk(conn, schema, table, constraint, journal):
    journal.run(conn, sql.SQL("ALTER TABLE {} VALIDATE CONSTRAINT {}").format(sql.Identifier(schema, table),
                                                                              sql.Identifier(constraint)))


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
