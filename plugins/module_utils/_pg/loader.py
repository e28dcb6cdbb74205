# -*- coding: utf-8 -*-
# Copyright: pgshift.aurora contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The native engine's I/O: the exported snapshot, the parallel COPY and its progress table.

How a load runs (the decisions are in native.py):

- A replication connection to the source creates the stream's slot with an exported
  snapshot (``CREATE_REPLICATION_SLOT ... (SNAPSHOT 'export')``) and stays open, idle,
  until every unit is copied: the snapshot can be imported only while it is.
- N worker threads, each with its own source and target connection. A source connection
  imports the snapshot (``BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY; SET TRANSACTION
  SNAPSHOT``) and keeps that transaction for all its units; the target writes each unit in
  one transaction (``session_replication_role = replica`` when allowed, so no trigger or
  foreign key fires; ``synchronous_commit = off``, a crash restarts the load anyway).
- A unit is a table (truncated in the same transaction, then ``COPY ... FREEZE``) or one key
  range of a big table (truncated before the copy). Data streams chunk by chunk from
  ``COPY (SELECT ...) TO STDOUT`` into ``COPY ... FROM STDIN``, binary when the types allow
  it, text otherwise or when a binary copy of a table with user-defined types fails.
- Progress per unit goes to ``pgshift.load_progress`` on the target through a separate
  autocommit connection, so others see it while the copy runs.
"""

from __future__ import annotations

import ctypes
import errno
import os
import queue
import shutil
import signal
import subprocess
import threading
import time

try:
    import psycopg
    from psycopg import errors as pg_errors
    from psycopg import sql
    from psycopg.rows import dict_row
except ImportError:  # pragma: no cover - the module reports the missing library
    psycopg = pg_errors = sql = dict_row = None

from ansible_collections.pgshift.aurora.plugins.module_utils import native
from ansible_collections.pgshift.aurora.plugins.module_utils._pg.connection import (
    PgConnectError, conninfo_kwargs, explain_connect_error, scrub)

WRITE_BATCH = 256 * 1024        # bytes gathered from the source before one write to the target
PROGRESS_INTERVAL = 1.0         # seconds between progress updates of a unit being copied


RELAY_BLOCK = 1024 * 1024      # bytes moved from the source's psql to the target's at a time
PIPE_SIZE = 1024 * 1024        # the relay pipes' capacity (Linux' default limit for a user: fewer wake-ups)


class RelayError(Exception):
    """A psql of the relay failed; the message holds its error (scrubbed by the caller)."""


def _die_with_parent():  # pragma: no cover - runs in the child between fork and exec
    """The psql processes get SIGKILL when this process dies (Linux), so the target's transaction never
    commits a unit whose copy did not end."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def find_psql(path=None):
    """psql for the relay: `path` when it is an executable, else psql on PATH, else the newest Debian
    /usr/lib/postgresql/<major>/bin/psql; None when there is none."""
    if path:  # the given psql, or none: never silently another one
        return path if os.path.isfile(path) and os.access(path, os.X_OK) else None
    candidates = [shutil.which("psql")]
    majors = []
    if os.path.isdir("/usr/lib/postgresql"):
        majors = sorted((int(d) for d in os.listdir("/usr/lib/postgresql") if d.isdigit()), reverse=True)
    candidates.extend("/usr/lib/postgresql/%d/bin/psql" % m for m in majors)
    for candidate in candidates:
        if candidate and os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return candidate
    return None


def relay_env(params, application_name):
    """libpq environment of a relay psql: the connection (password included) never goes on its command line."""
    kwargs = conninfo_kwargs(params)
    env = dict((k, v) for k, v in os.environ.items() if not k.startswith("PG"))
    names = dict(host="PGHOST", port="PGPORT", dbname="PGDATABASE", user="PGUSER", password="PGPASSWORD",
                 sslmode="PGSSLMODE", sslrootcert="PGSSLROOTCERT", connect_timeout="PGCONNECT_TIMEOUT",
                 client_encoding="PGCLIENTENCODING")
    for key, var in names.items():
        if kwargs.get(key) not in (None, ""):
            env[var] = str(kwargs[key])
    env["PGAPPNAME"] = application_name
    env["PGOPTIONS"] = ""
    return env


def relay_command(psql, statements, conn=None):
    """psql's argument list: each statement its own -c, in one session, stopping at the first error."""
    argv = [psql, "--no-psqlrc", "--quiet", "--set", "ON_ERROR_STOP=1", "--no-align", "--tuples-only"]
    for stmt in statements:
        argv.extend(["--command", stmt if isinstance(stmt, str) else stmt.as_string(conn)])
    return argv


def relay_process(psql, params, application_name, statements, stdout):
    # psql prints the COPY data (source) or "COPY <n>" (target, without --quiet for that) on stdout
    argv = relay_command(psql, statements)
    if not stdout:
        argv.remove("--quiet")
    return subprocess.Popen(  # pylint: disable=consider-using-with
        argv, env=relay_env(params, application_name), stdin=None if stdout else subprocess.PIPE,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, preexec_fn=_die_with_parent, close_fds=True)


def grow_pipe(fd, size=PIPE_SIZE):
    """Best effort: a larger pipe buffer (F_SETPIPE_SZ, Linux), so each psql wakes up less often."""
    try:
        import fcntl
        fcntl.fcntl(fd, getattr(fcntl, "F_SETPIPE_SZ", 1031), size)
    except (ImportError, OSError, ValueError):
        pass


def relay(src_fd, dst_fd, on_block, block=RELAY_BLOCK):
    """Move the bytes of pipe `src_fd` into pipe `dst_fd` until the source's end; returns the byte count.

    splice(2) moves them inside the kernel (no copy through this process); where it is missing or refused,
    read and write. on_block(total bytes so far) runs after each block and may raise to stop. A closed
    reader on dst_fd raises BrokenPipeError."""
    splice = getattr(os, "splice", None)
    total = 0
    while True:
        if splice is not None:
            try:
                moved = splice(src_fd, dst_fd, block)
            except OSError as exc:
                if exc.errno not in (errno.EINVAL, errno.ENOSYS) or total:
                    raise
                splice = None  # pipes that splice refuses (before any byte moved): read and write instead
                continue
            if not moved:
                return total
        else:
            chunk = os.read(src_fd, block)
            if not chunk:
                return total
            view = memoryview(chunk)
            while view:
                view = view[os.write(dst_fd, view):]
            moved = len(chunk)
        total += moved
        on_block(total)


def _kill(proc):
    if proc.poll() is None:
        proc.kill()
        proc.wait()
    for stream in (proc.stdin, proc.stdout, proc.stderr):
        if stream is not None:
            try:
                stream.close()
            except OSError:
                pass


def _psql_error(stderr):
    text = (stderr or b"").decode("utf-8", "replace").strip()
    return text or "psql ended without a message"


def _copied_rows(stdout):
    """The row count of the target's `COPY <n>` command tag."""
    for line in (stdout or b"").decode("utf-8", "replace").splitlines():
        if line.startswith("COPY "):
            try:
                return int(line.split()[1])
            except (IndexError, ValueError):
                break
    raise RelayError("the target's psql did not report the rows it copied")


def _rows_estimate(unit, nbytes):
    if unit.get("est_bytes") and unit.get("est_rows"):
        return int(unit["est_rows"] * min(1.0, float(nbytes) / unit["est_bytes"]))
    return 0


class LoadError(Exception):
    """A unit could not be copied; the message names it and never holds a secret."""


class _Aborted(Exception):
    """Another worker failed: this one stops its unit (rolled back)."""


def connect_as(params, application_name, autocommit=True, **extra):
    """connect() with an application_name of our own (to find a load's sessions) and extra libpq options."""
    kwargs = conninfo_kwargs(params)
    kwargs["application_name"] = application_name
    kwargs.update(extra)
    try:
        return psycopg.connect(autocommit=autocommit, **kwargs)
    except psycopg.Error as exc:
        raise PgConnectError(scrub(explain_connect_error(params, str(exc)), [params.get("login_password")])) from None


# ----------------------------------------------------------------------------------------------
# Slot and snapshot
# ----------------------------------------------------------------------------------------------

def create_slot(params, name, server_version, export, application_name):
    """Create the stream's logical slot through the replication protocol.

    Returns (connection, consistent LSN, snapshot name). With export the connection must stay
    open (and idle) while the snapshot is used; without it, it is closed and None is returned.
    """
    conn = connect_as(params, application_name, replication="database")
    try:
        row = conn.execute(native.create_slot_command(name, server_version, export=export)).fetchone()
    except Exception:
        conn.close()
        raise
    lsn, snapshot = row[1], row[2]
    if not export:
        conn.close()
        return None, lsn, None
    return conn, lsn, snapshot


def begin_snapshot(conn, snapshot):
    """Start a transaction that sees the exported snapshot (again after an error)."""
    if conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
        conn.execute("ROLLBACK")
    conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
    conn.execute(sql.SQL("SET TRANSACTION SNAPSHOT {}").format(sql.Literal(snapshot)))


# ----------------------------------------------------------------------------------------------
# Catalog reads the load needs
# ----------------------------------------------------------------------------------------------

COLUMNS_QUERY = """
SELECT n.nspname AS schema, c.relname AS table, a.attname AS name, a.atttypid::int AS type_oid,
       t.typtype::text AS typtype, format_type(a.atttypid, a.atttypmod) AS type_name,
       coalesce(e.oid, b.oid, t.oid)::int AS resolved_oid, coalesce(e.typtype, b.typtype, t.typtype)::text AS resolved_typtype,
       a.attgenerated <> '' AS generated
FROM pg_attribute a
JOIN pg_class c ON c.oid = a.attrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
JOIN pg_type t ON t.oid = a.atttypid
LEFT JOIN pg_type b ON b.oid = nullif(t.typbasetype, 0)
LEFT JOIN pg_type e ON e.oid = nullif(coalesce(b.typelem, t.typelem), 0) AND coalesce(b.typcategory, t.typcategory) = 'A'
WHERE a.attnum > 0 AND NOT a.attisdropped AND (n.nspname, c.relname) IN (SELECT * FROM unnest(%s::text[], %s::text[]))
ORDER BY n.nspname, c.relname, a.attnum
"""


def columns(conn, tables):
    """{(schema, name): [column dicts]} for the tables that exist; a missing table has no entry."""
    result = {}
    if not tables:
        return result
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(COLUMNS_QUERY, ([t["schema"] for t in tables], [t["name"] for t in tables]))
        for row in cur.fetchall():
            result.setdefault((row["schema"], row["table"]), []).append(row)
    return result


def tables_with_children(conn, tables):
    """{(schema, name)} of the given tables that have inheritance children (regular tables only)."""
    if not tables:
        return set()
    rows = conn.execute(
        "SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE c.relkind = 'r' AND EXISTS (SELECT 1 FROM pg_inherits i WHERE i.inhparent = c.oid) "
        "AND (n.nspname, c.relname) IN (SELECT * FROM unnest(%s::text[], %s::text[]))",
        ([t["schema"] for t in tables], [t["name"] for t in tables])).fetchall()
    return set((r[0], r[1]) for r in rows)


def key_bounds(conn, table):
    """(min, max) of the table's split key under the current (imported) snapshot."""
    ident = sql.Identifier(table["schema"], table["name"])
    key = sql.Identifier(table["split_key"])
    source = sql.SQL("ONLY {}").format(ident) if table["only"] else ident
    row = conn.execute(sql.SQL("SELECT min({k})::bigint, max({k})::bigint FROM {t}").format(k=key, t=source)).fetchone()
    return row[0], row[1]


# ----------------------------------------------------------------------------------------------
# Progress table (on the target)
# ----------------------------------------------------------------------------------------------

PROGRESS_DDL = [
    "CREATE SCHEMA IF NOT EXISTS pgshift",
    """CREATE TABLE IF NOT EXISTS pgshift.load_progress (
    stream text NOT NULL,
    table_name text NOT NULL,
    unit text NOT NULL,
    state text NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'copying', 'copied', 'failed')),
    rows bigint NOT NULL DEFAULT 0,
    bytes bigint NOT NULL DEFAULT 0,
    est_rows bigint,
    est_bytes bigint,
    key_column text,
    key_lower bigint,
    key_upper bigint,
    format text,
    lsn pg_lsn,
    started_at timestamptz,
    finished_at timestamptz,
    updated_at timestamptz NOT NULL DEFAULT now(),
    error text,
    PRIMARY KEY (stream, table_name, unit))""",
]

PROGRESS_COLUMNS = ("stream", "table_name", "unit", "state", "rows", "bytes", "est_rows", "est_bytes", "key_column",
                    "key_lower", "key_upper", "format", "lsn", "started_at", "finished_at", "error")


def progress_exists(conn):
    return conn.execute("SELECT to_regclass('pgshift.load_progress') IS NOT NULL").fetchone()[0]


def read_progress(conn, stream=None, prefix=None):
    """load_progress rows (times as epoch seconds, lsn as text) of one stream or of a name prefix; [] without the table."""
    if not progress_exists(conn):
        return []
    query = ("SELECT stream, table_name, unit, state, rows, bytes, est_rows, est_bytes, key_column, key_lower, "
             "key_upper, format, lsn::text AS lsn, extract(epoch FROM started_at)::float8 AS started_at, "
             "extract(epoch FROM finished_at)::float8 AS finished_at, error FROM pgshift.load_progress ")
    if stream is not None:
        rows = conn.execute(query + "WHERE stream = %s ORDER BY table_name, unit", (stream,))
    else:
        rows = conn.execute(query + "WHERE starts_with(stream, %s) ORDER BY stream, table_name, unit", (prefix or "",))
    names = [d.name for d in rows.description]
    return [dict(zip(names, r)) for r in rows.fetchall()]


def clear_progress(conn, stream):
    """Remove a stream's rows; the table and the schema go when nothing else is left in them."""
    if not progress_exists(conn):
        return
    conn.execute("DELETE FROM pgshift.load_progress WHERE stream = %s", (stream,))
    if conn.execute("SELECT NOT EXISTS (SELECT 1 FROM pgshift.load_progress)").fetchone()[0]:
        conn.execute("DROP TABLE pgshift.load_progress")
        if conn.execute("SELECT to_regclass('pgshift.deferred_keys') IS NOT NULL").fetchone()[0] and conn.execute(
                "SELECT NOT EXISTS (SELECT 1 FROM pgshift.deferred_keys)").fetchone()[0]:
            conn.execute("DROP TABLE pgshift.deferred_keys")
        empty = conn.execute("SELECT NOT EXISTS (SELECT 1 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                             "WHERE n.nspname = 'pgshift') AND NOT EXISTS (SELECT 1 FROM pg_proc p JOIN pg_namespace n "
                             "ON n.oid = p.pronamespace WHERE n.nspname = 'pgshift') AND NOT EXISTS (SELECT 1 FROM "
                             "pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace WHERE n.nspname = 'pgshift')"
                             ).fetchone()[0]
        if empty:
            conn.execute("DROP SCHEMA IF EXISTS pgshift")


# ----------------------------------------------------------------------------------------------
# Keys dropped for the copy and built after it (native.deferrable_keys decides which)
# ----------------------------------------------------------------------------------------------

KEYS_QUERY = """
SELECT n.nspname AS schema, c.relname, k.conname AS name, k.contype::text AS contype, c.relkind::text AS relkind,
       c.relispartition AS is_partition, k.condeferrable AS deferrable, k.condeferred AS initially_deferred,
       pg_get_indexdef(k.conindid) AS indexdef, ic.relname AS index_name, i.indisreplident AS replident,
       EXISTS (SELECT 1 FROM pg_constraint f WHERE f.contype = 'f' AND f.conindid = k.conindid) AS referenced
FROM pg_constraint k
JOIN pg_class c ON c.oid = k.conrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
JOIN pg_index i ON i.indexrelid = k.conindid
JOIN pg_class ic ON ic.oid = k.conindid
WHERE k.contype IN ('p', 'u') AND (n.nspname, c.relname) IN (SELECT * FROM unnest(%s::text[], %s::text[]))
ORDER BY n.nspname, c.relname, k.conname
"""

DEFERRED_DDL = """CREATE TABLE IF NOT EXISTS pgshift.deferred_keys (
    stream text NOT NULL,
    table_name text NOT NULL,
    name text NOT NULL,
    schema text NOT NULL,
    relname text NOT NULL,
    contype text NOT NULL,
    is_deferrable boolean NOT NULL,
    is_initially_deferred boolean NOT NULL,
    replident boolean NOT NULL,
    index_name text NOT NULL,
    indexdef text NOT NULL,
    dropped_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (stream, table_name, name))"""

DEFERRED_COLUMNS = ("table_name", "name", "schema", "relname", "contype", "is_deferrable", "is_initially_deferred",
                    "replident", "index_name", "indexdef")


def target_keys(conn, tables):
    """The primary keys and unique constraints of these tables on the target (KEYS_QUERY rows + table)."""
    if not tables:
        return []
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(KEYS_QUERY, ([t["schema"] for t in tables], [t["name"] for t in tables]))
        rows = cur.fetchall()
    for row in rows:
        row["table"] = native.qualified(row["schema"], row["relname"])
    return rows


def deferred_keys(conn, stream=None, prefix=None):
    """The keys a stream (or the streams of a name prefix) dropped and did not build again ([] without the table)."""
    if not conn.execute("SELECT to_regclass('pgshift.deferred_keys') IS NOT NULL").fetchone()[0]:
        return []
    with conn.cursor(row_factory=dict_row) as cur:
        if stream is not None:
            cur.execute("SELECT stream, " + ", ".join(DEFERRED_COLUMNS) + " FROM pgshift.deferred_keys WHERE "
                        "stream = %s ORDER BY table_name, name", (stream,))
        else:
            cur.execute("SELECT stream, " + ", ".join(DEFERRED_COLUMNS) + " FROM pgshift.deferred_keys WHERE "
                        "starts_with(stream, %s) ORDER BY stream, table_name, name", (prefix or "",))
        rows = cur.fetchall()
    for row in rows:
        row["table"] = row.pop("table_name")
        row["deferrable"] = row.pop("is_deferrable")
        row["initially_deferred"] = row.pop("is_initially_deferred")
    return rows


def drop_keys(conn, stream, keys):
    """Record each key in pgshift.deferred_keys and drop it, in one transaction (a crash loses neither)."""
    with conn.transaction():
        conn.execute(DEFERRED_DDL)
        for key in keys:
            conn.execute(
                "INSERT INTO pgshift.deferred_keys (stream, " + ", ".join(DEFERRED_COLUMNS) + ") VALUES "
                "(%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING",
                (stream, key["table"], key["name"], key["schema"], key["relname"], key["contype"], key["deferrable"],
                 key["initially_deferred"], key["replident"], key["index_name"], key["indexdef"]))
            conn.execute(native.drop_key(key))


KEY_EXISTS_QUERY = (
    "SELECT EXISTS (SELECT 1 FROM pg_constraint k JOIN pg_class c ON c.oid = k.conrelid "
    "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = %s AND c.relname = %s AND k.conname = %s)")


def _build_key(conn, stream, key):
    """One key, in one transaction; returns whether it existed already (then only its record goes)."""
    with conn.transaction():
        exists = conn.execute(KEY_EXISTS_QUERY, (key["schema"], key["relname"], key["name"])).fetchone()[0]
        if not exists:
            for stmt in native.key_statements(key):
                conn.execute(stmt)
        conn.execute("DELETE FROM pgshift.deferred_keys WHERE stream = %s AND table_name = %s AND name = %s",
                     (stream, key["table"], key["name"]))
    return exists


def build_keys(params, stream, keys, workers, application_name, maintenance_work_mem=None, secrets=()):
    """Build the deferred keys again, `workers` tables at a time, in the order given.

    Each key in one transaction: its unique index, the constraint on it, the replica identity,
    and the removal of its record. Returns [{table, name, seconds}]; raises LoadError naming the
    key that failed (the others are still built; the failed one stays recorded for the next run).
    """
    work = queue.Queue()
    by_table = {}
    for key in keys:
        by_table.setdefault(key["table"], []).append(key)
    for table in by_table.values():  # one table per worker at a time: ALTER TABLE locks it
        work.put(table)
    done, errors = [], []
    lock = threading.Lock()

    def worker():
        try:
            conn = connect_as(params, application_name)
        except PgConnectError as exc:
            with lock:
                errors.append("could not connect to build the keys: %s" % exc)
            return
        try:
            conn.execute("SET statement_timeout = 0")
            if maintenance_work_mem:
                conn.execute(sql.SQL("SET maintenance_work_mem = {}").format(sql.Literal(maintenance_work_mem)))
            while True:
                try:
                    table_keys = work.get_nowait()
                except queue.Empty:
                    return
                for key in table_keys:
                    started = time.time()
                    try:
                        exists = _build_key(conn, stream, key)
                    except psycopg.Error as exc:
                        with lock:
                            errors.append("building %s of %s again failed: %s" % (
                                key["name"], key["table"], scrub(str(exc).strip(), secrets)))
                        continue
                    with lock:
                        done.append(dict(table=key["table"], name=key["name"], seconds=round(time.time() - started, 3),
                                         rebuilt=not exists))
        finally:
            conn.close()

    threads = [threading.Thread(target=worker, name="pgshift-keys-%d" % i)
               for i in range(max(1, min(workers, len(keys))))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise LoadError("; ".join(errors))
    return done


class Progress:
    """Writes one stream's unit states to pgshift.load_progress (thread-safe, autocommit)."""

    def __init__(self, conn, stream):
        self.conn = conn
        self.stream = stream
        self.lock = threading.Lock()

    def ensure(self):
        """Create the schema and table when missing; serialised, as streams start in parallel and two
        concurrent CREATE ... IF NOT EXISTS of the same object can still collide."""
        with self.lock, self.conn.transaction():
            self.conn.execute("SELECT pg_advisory_xact_lock(hashtext('pgshift.load_progress'))")
            for stmt in PROGRESS_DDL:
                self.conn.execute(stmt)

    def reset(self, units, lsn):
        """The stream's rows, replaced by one pending row per unit of the load at `lsn`."""
        with self.lock, self.conn.transaction():
            self.conn.execute("DELETE FROM pgshift.load_progress WHERE stream = %s", (self.stream,))
            with self.conn.cursor() as cur:
                cur.executemany(
                    "INSERT INTO pgshift.load_progress (stream, table_name, unit, est_rows, est_bytes, key_column, "
                    "key_lower, key_upper, lsn) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)",
                    [(self.stream, u["table"], u["unit"], u["est_rows"], u["est_bytes"], u["key"], u["lower"],
                      u["upper"], lsn) for u in units])

    def _set(self, unit, assignments, values):
        with self.lock:
            self.conn.execute(
                "UPDATE pgshift.load_progress SET " + assignments + ", updated_at = now() "
                "WHERE stream = %s AND table_name = %s AND unit = %s",
                tuple(values) + (self.stream, unit["table"], unit["unit"]))

    def started(self, unit, fmt):
        self._set(unit, "state = 'copying', format = %s, rows = 0, bytes = 0, started_at = now(), "
                        "finished_at = NULL, error = NULL", (fmt,))

    def advanced(self, unit, rows, nbytes):
        self._set(unit, "rows = %s, bytes = %s", (rows, nbytes))

    def copied(self, unit, rows, nbytes, fmt):
        self._set(unit, "state = 'copied', rows = %s, bytes = %s, format = %s, finished_at = now()",
                  (rows, nbytes, fmt))

    def failed(self, unit, error):
        self._set(unit, "state = 'failed', error = %s, finished_at = now()", (error,))

    def back_to_pending(self, unit):
        self._set(unit, "state = 'pending', rows = 0, bytes = 0, started_at = NULL", ())


# ----------------------------------------------------------------------------------------------
# The parallel copy
# ----------------------------------------------------------------------------------------------

class Loader:
    """Copies the units under an exported snapshot with `workers` threads.

    plan: {(schema, name): {columns: [names], format: 'binary'|'text', meta: [column dicts]}}.
    run() returns the per-unit results and the warnings; it raises LoadError (after every
    worker stopped and rolled back its unit) when a unit fails.
    """

    def __init__(self, source_params, target_params, snapshot, units, plan, workers, progress, application_name,
                 secrets=(), psql=None, psql_min_bytes=0):
        self.source_params = source_params
        self.target_params = target_params
        self.snapshot = snapshot
        self.units = units
        self.plan = plan
        self.workers = max(1, min(workers, len(units) or 1))
        self.progress = progress
        self.application_name = application_name
        self.secrets = [s for s in secrets if s]
        self.queue = queue.Queue()
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.results = []
        self.errors = []
        self.warnings = []
        self.replica_role = None
        self.psql = psql
        self.psql_min_bytes = psql_min_bytes

    def run(self):
        for unit in self.units:
            self.queue.put(unit)
        threads = [threading.Thread(target=self._worker, args=(i,), name="pgshift-load-%d" % i)
                   for i in range(self.workers)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        if self.errors:
            raise LoadError(self.errors[0])
        return self.results, self.warnings

    # --- one worker ---------------------------------------------------------------------------

    def _fail(self, message):
        with self.lock:
            self.errors.append(scrub(message, self.secrets))
        self.stop.set()

    def _worker(self, number):
        src = tgt = None
        try:
            src = connect_as(self.source_params, self.application_name)
            src.execute("SET statement_timeout = 0")
            src.execute("SET idle_in_transaction_session_timeout = 0")
            begin_snapshot(src, self.snapshot)
            tgt = connect_as(self.target_params, self.application_name)
            tgt.execute("SET statement_timeout = 0")
            tgt.execute("SET synchronous_commit = off")
            self._replica_role(tgt)
            while not self.stop.is_set():
                try:
                    unit = self.queue.get_nowait()
                except queue.Empty:
                    break
                self._copy_unit(number, src, tgt, unit)
        except PgConnectError as exc:
            self._fail("load worker %d could not connect: %s" % (number, exc))
        except Exception as exc:  # any other failure stops every worker; the message goes to the module
            self._fail("load worker %d failed: %s" % (number, exc))
        finally:
            for conn in (src, tgt):
                if conn is not None:
                    try:
                        conn.close()
                    except Exception:  # closing a broken connection: nothing left to do
                        pass

    def _replica_role(self, tgt):
        try:
            tgt.execute("SET session_replication_role = replica")
            allowed = True
        except pg_errors.InsufficientPrivilege:
            allowed = False
        with self.lock:
            if self.replica_role is None:
                self.replica_role = allowed
                if not allowed:
                    self.warnings.append(
                        "the target user may not set session_replication_role = replica: triggers and foreign keys "
                        "present on the target tables fire during the load (create them after it, as copy_schema "
                        "does, or load as a superuser)")

    def _copy_unit(self, number, src, tgt, unit):
        table = self.plan[(unit["schema"], unit["name"])]
        fmt = table["format"]
        tried = []
        while True:
            tried.append(fmt)
            self.progress.started(unit, fmt)
            started = time.time()
            try:
                if self.psql and (unit.get("est_bytes") or 0) >= self.psql_min_bytes:
                    rows, nbytes = self._stream_psql(unit, table["columns"], fmt)
                    relay = "psql"
                else:
                    rows, nbytes = self._stream(src, tgt, unit, table["columns"], fmt)
                    relay = "python"
            except _Aborted:
                self.progress.back_to_pending(unit)
                return
            except (psycopg.Error, RelayError) as exc:
                message = scrub(str(exc).strip(), self.secrets)
                retry = native.fallback_format(fmt, table["meta"])
                if retry and retry not in tried and not self.stop.is_set():
                    with self.lock:
                        self.warnings.append("%s: the binary copy failed (%s); copied in text format instead" % (
                            unit["table"], message.splitlines()[0] if message else type(exc).__name__))
                    # the failed COPY aborted the source transaction: import the snapshot again
                    begin_snapshot(src, self.snapshot)
                    fmt = retry
                    continue
                error = "copying %s (unit %s, %s format) failed: %s" % (unit["table"], unit["unit"], fmt, message)
                self._fail(error)
                self.progress.failed(unit, error)
                return
            seconds = time.time() - started
            self.progress.copied(unit, rows, nbytes, fmt)
            with self.lock:
                self.results.append(dict(table=unit["table"], unit=unit["unit"], rows=rows, bytes=nbytes,
                                         format=fmt, seconds=round(seconds, 3), worker=number, relay=relay))
            return

    def _stream_psql(self, unit, cols, fmt):
        """One unit through two psql processes: COPY TO STDOUT under the snapshot on the source, COPY FROM STDIN
        on the target in one transaction; this thread passes the bytes along in large blocks. The target's
        transaction commits only after the source's psql ended without error: on any failure (or when the
        loader stops, or this process dies: PR_SET_PDEATHSIG) the target's psql is killed and its
        transaction rolled back. (rows, bytes)."""
        source_sql = [
            "SET statement_timeout = 0", "SET idle_in_transaction_session_timeout = 0",
            "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY",
            sql.SQL("SET TRANSACTION SNAPSHOT {}").format(sql.Literal(self.snapshot)),
            native.copy_out(unit, cols, fmt), "COMMIT"]
        target_sql = ["SET statement_timeout = 0", "SET synchronous_commit = off", "BEGIN"]
        if self.replica_role:
            target_sql.append("SET LOCAL session_replication_role = replica")
        if unit["truncate"]:
            target_sql.append(native.truncate([unit]))
        target_sql.extend([native.copy_in(unit, cols, fmt, freeze=unit["truncate"]), "COMMIT"])
        src = relay_process(self.psql, self.source_params, self.application_name, source_sql, stdout=True)
        try:
            tgt = relay_process(self.psql, self.target_params, self.application_name, target_sql, stdout=False)
        except Exception:
            _kill(src)
            raise
        state = dict(last=time.time())

        def on_block(nbytes):
            if self.stop.is_set():
                raise _Aborted()
            now = time.time()
            if now - state["last"] >= PROGRESS_INTERVAL:
                state["last"] = now
                # rows are counted by the target at the end: until then, estimated from the bytes
                self.progress.advanced(unit, _rows_estimate(unit, nbytes), nbytes)

        try:
            grow_pipe(src.stdout.fileno())
            grow_pipe(tgt.stdin.fileno())
            nbytes = relay(src.stdout.fileno(), tgt.stdin.fileno(), on_block)
            src_err = src.stderr.read()
            if src.wait() != 0:
                raise RelayError("the copy out of the source failed: %s" % _psql_error(src_err))
            tgt.stdin.close()
            out = tgt.stdout.read()
            tgt_err = tgt.stderr.read()
            if tgt.wait() != 0:
                raise RelayError("the copy into the target failed: %s" % _psql_error(tgt_err))
        except BrokenPipeError:
            # the target's psql ended early: its error says why
            _kill(src)
            tgt_err = tgt.stderr.read()
            tgt.wait()
            raise RelayError("the copy into the target failed: %s" % _psql_error(tgt_err)) from None
        finally:
            _kill(src)
            _kill(tgt)
        return _copied_rows(out), nbytes

    def _stream(self, src, tgt, unit, cols, fmt):
        """One unit: COPY out of the source into the target in one target transaction; (rows, bytes)."""
        out_sql = native.copy_out(unit, cols, fmt)
        nbytes = 0
        chunks = 0
        last = time.time()
        with tgt.transaction():
            if unit["truncate"]:
                tgt.execute(native.truncate([unit]))
            with src.cursor() as scur, tgt.cursor() as tcur:
                with scur.copy(out_sql) as out, tcur.copy(native.copy_in(unit, cols, fmt, freeze=unit["truncate"])) as inp:
                    buf = bytearray()
                    for chunk in out:
                        if self.stop.is_set():
                            raise _Aborted()
                        buf += chunk
                        chunks += 1
                        if len(buf) >= WRITE_BATCH:
                            inp.write(buf)
                            nbytes += len(buf)
                            buf = bytearray()
                            now = time.time()
                            if now - last >= PROGRESS_INTERVAL:
                                last = now
                                # one chunk per row (binary adds its trailer): an estimate until COPY ends
                                self.progress.advanced(unit, chunks, nbytes)
                    if buf:
                        inp.write(buf)
                        nbytes += len(buf)
                rows = tcur.rowcount
        return rows, nbytes
