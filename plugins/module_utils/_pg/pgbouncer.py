# -*- coding: utf-8 -*-
# Copyright: pgshift.aurora contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""PgBouncer's admin console (PAUSE / RESUME a database, RELOAD, SHOW) and its configuration files on disk.

The switch's edit of the [databases] entry is decided in ``module_utils/pgbouncer_conf.py``; here the
files are read and replaced byte for byte, and the edit's undo record is kept in the cutover log.

The console speaks the simple query protocol only; psycopg sends a statement without
parameters that way. Database names are checked against a strict pattern before they are
put into a command (the console has no quoting of its own).
"""

from __future__ import annotations

import json
import os
import re
import tempfile
import threading
import time

try:
    import psycopg
    from psycopg import sql
except ImportError:  # pragma: no cover - reported by the module
    psycopg = None
    sql = None

from ansible_collections.pgshift.aurora.plugins.module_utils._pg import db, freeze

_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")


class PgBouncerError(Exception):
    """The admin console refused or could not be reached; the message says what to check."""


def check_name(name):
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise PgBouncerError("%r is not a PgBouncer database name this module accepts (letters, digits, _ . -)" % name)
    return name


class AdminConsole:
    """One admin-console connection (autocommit, simple protocol)."""

    def __init__(self, host, port, user, password=None, connect_timeout=10):
        self.params = dict(host=host, port=int(port), user=user, password=password, connect_timeout=connect_timeout)
        self.conn = self._connect()

    def _connect(self):
        p = self.params
        kwargs = dict(host=p["host"], port=p["port"], dbname="pgbouncer", user=p["user"], autocommit=True,
                      connect_timeout=p["connect_timeout"], sslmode="disable", application_name="pgshift.aurora",
                      prepare_threshold=None)  # the console speaks the simple protocol only: never prepare
        if p["password"]:
            kwargs["password"] = p["password"]
        try:
            return psycopg.connect(**kwargs)
        except psycopg.Error as exc:
            message = str(exc).replace(p["password"] or "\0", "********")
            raise PgBouncerError("cannot reach PgBouncer's admin console at %s:%s as %s: %s (check "
                                 "traffic_switch_pgbouncer host, port, admin_user and admin_password, and that the "
                                 "user is in admin_users)" % (p["host"], p["port"], p["user"], message.strip())) from None

    def close(self):
        try:
            self.conn.close()
        except Exception:  # closing is best effort
            pass

    def command(self, verb, database=None):
        stmt = sql.SQL(verb) if database is None else sql.SQL("{} {}").format(sql.SQL(verb), sql.SQL(check_name(database)))
        try:
            self.conn.execute(stmt)
        except psycopg.Error as exc:
            raise PgBouncerError("PgBouncer refused %s%s: %s" % (verb, (" " + database) if database else "",
                                                                 str(exc).strip())) from None

    def show(self, what):
        if what not in ("POOLS", "CLIENTS", "SERVERS", "DATABASES", "STATS", "CONFIG"):
            raise PgBouncerError("SHOW %s is not supported here" % what)
        cur = self.conn.execute(sql.SQL("SHOW " + what))
        names = [d.name for d in cur.description]
        return [dict(zip(names, row)) for row in cur.fetchall()]

    def database(self, name):
        for row in self.show("DATABASES"):
            if row.get("name") == name:
                return row
        return None

    def resume(self, database):
        """RESUME database; a database that is not paused is fine."""
        try:
            self.command("RESUME", database)
        except PgBouncerError as exc:
            if "not paused" not in str(exc) and "not suspended" not in str(exc):
                raise
            return False
        return True

    def pause(self, database, timeout):
        """PAUSE database, waiting at most timeout seconds for the running transactions to end.

        PAUSE returns once every server connection of the database is released: new client queries
        wait inside PgBouncer. When it takes longer than timeout the pause is undone (RESUME on a
        second connection) and PgBouncerError raised: clients carry on against the old server.
        Returns the seconds PAUSE took.
        """
        check_name(database)
        outcome = {}

        def run():
            try:
                self.command("PAUSE", database)
                outcome["ok"] = True
            except Exception as exc:  # reported by the caller
                outcome["error"] = exc

        started = time.monotonic()
        worker = threading.Thread(target=run, daemon=True)
        worker.start()
        worker.join(max(timeout, 0.0))
        if worker.is_alive():
            other = AdminConsole(**self.params)
            try:
                other.resume(database)
            finally:
                other.close()
            worker.join(10)
            self.close()
            self.conn = self._connect()
            raise PgBouncerError("PAUSE %s did not finish within %.1f s (a transaction through PgBouncer is still "
                                 "running): RESUME sent, clients continue on the old server" % (database, timeout))
        if "error" in outcome:
            raise outcome["error"]
        return time.monotonic() - started

    def reload(self):
        self.command("RELOAD")

    def wait_database(self, name, host, port, timeout=5.0):
        """Wait until SHOW DATABASES shows name pointing at host:port (RELOAD applied)."""
        deadline = time.monotonic() + timeout
        while True:
            row = self.database(name)
            if row and str(row.get("host")) == str(host) and int(row.get("port")) == int(port):
                return row
            if time.monotonic() > deadline:
                raise PgBouncerError("PgBouncer still points %s at %s:%s after RELOAD (expected %s:%s): check that "
                                     "databases_file is the file pgbouncer.ini includes" % (
                                         name, (row or {}).get("host"), (row or {}).get("port"), host, port))
            time.sleep(0.02)


class Consoles:
    """A run's PgBouncer consoles: the one it PAUSEs, RELOADs and RESUMEs on (opened when first needed), and
    one of their own at a journal's coordinates {host, port, admin_user} (the run's admin password)."""

    def __init__(self, options, connect_timeout):
        self.options = options or {}
        self.connect_timeout = connect_timeout
        self.shared = None

    def console(self):
        if self.shared is None:
            o = self.options
            self.shared = AdminConsole(o["host"], o["port"], o["admin_user"], o["admin_password"], self.connect_timeout)
        return self.shared

    def at(self, coords):
        o = self.options
        return AdminConsole(coords.get("host") or o.get("host"), coords.get("port") or o.get("port"),
                            coords.get("admin_user") or o.get("admin_user"), o.get("admin_password"),
                            self.connect_timeout)

    def drop(self):
        """Close the shared console (the next console() opens a new one)."""
        if self.shared is not None:
            self.shared.close()
            self.shared = None


def read_file(path):
    """The text of a configuration file with every byte kept (no newline translation; bytes that are not
    UTF-8 survive as surrogates and are written back as they were)."""
    with open(path, "rb") as f:
        return f.read().decode("utf-8", "surrogateescape")


def rewrite_file(path, content):
    """Replace path with content atomically (temp file in the same directory, same mode and owner, rename),
    only when content differs; returns the old content (None when there was no file).

    A symlink is followed: the file it points at is replaced, the link stays.
    """
    path = os.path.realpath(path)
    try:
        old = read_file(path)
        st = os.stat(path)
    except FileNotFoundError:
        old, st = None, None
    if old == content:
        return old
    directory = os.path.dirname(path)
    fd, tmp = tempfile.mkstemp(prefix=".pgshift-", dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(content.encode("utf-8", "surrogateescape"))
            f.flush()
            os.fsync(f.fileno())
        if st is not None:
            os.chmod(tmp, st.st_mode & 0o7777)
            try:
                os.chown(tmp, st.st_uid, st.st_gid)
            except PermissionError:
                pass
        else:
            os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except Exception:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return old


# ----------------------------------------------------------------------------------------------
# What the switch changed in the databases file, kept in the cutover log for the rollback
# ----------------------------------------------------------------------------------------------

SWITCH_EVENT = "pgbouncer_entry"


def keep_switch(conn, migration, run_id, direction, record, journal):
    """Log the undo record of a switch (pgbouncer_conf.switch_entry: offsets and host/port/dbname, no secret)."""
    freeze.log_event(conn, migration, run_id, direction, SWITCH_EVENT, journal, json.dumps(record, sort_keys=True))


def forget_switch(conn, migration, run_id, journal):
    freeze.unlog_event(conn, migration, run_id, SWITCH_EVENT, journal)


def kept_switch(conn, migration, database):
    """(at, record) of the latest forward switch of migration that changed database's entry, or None."""
    if not freeze.log_exists(conn):
        return None
    found = db.rows(conn, sql.SQL("SELECT detail, at FROM {} WHERE migration = %s AND event = %s AND "
                                  "direction = 'forward' ORDER BY at DESC").format(
        sql.Identifier(freeze.LOG_SCHEMA, freeze.LOG_TABLE)), (migration, SWITCH_EVENT))
    for row in found:
        try:
            record = json.loads(row["detail"] or "")
        except ValueError:
            continue
        if isinstance(record, dict) and record.get("database") == database:
            return row["at"], record
    return None
