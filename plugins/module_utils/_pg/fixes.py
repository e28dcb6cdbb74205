# -*- coding: utf-8 -*-
# Copyright: pgshift.aurora contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Running pg_logical_prereqs' fixes (prereqs.plan_fixes' actions) through the journal."""

from __future__ import annotations

try:
    from psycopg import errors as pg_errors
    from psycopg import sql
except ImportError:  # pragma: no cover - the module reports the missing library
    pg_errors = sql = None


class LockBusy(Exception):
    """A table's lock was not granted within lock_timeout; every change was rolled back. args[0]: the statement."""


def record(journal, actions):
    """Check mode: what would run, in order."""
    for a in actions:
        journal.add_secret(a.get("secret"))
        journal.run(None, a["sql"])


def apply(conn, journal, actions, lock_timeout, can_reload):
    """Run the actions: the SQL ones in one transaction under lock_timeout (a failure leaves every grant and
    replica identity as it was; raises LockBusy with the statement shown), then the settings (ALTER SYSTEM cannot
    run in a transaction block) and, when allowed, pg_reload_conf(). Returns whether settings changed but could not
    be reloaded."""
    for a in actions:
        journal.add_secret(a.get("secret"))
    statements = [a for a in actions if a["kind"] == "sql"]
    settings = [a for a in actions if a["kind"] == "setting"]
    if statements:
        a = None
        try:
            with conn.transaction():
                conn.execute(sql.SQL("SET LOCAL lock_timeout = {}").format(sql.Literal(lock_timeout)))
                for a in statements:
                    journal.run(conn, a["sql"])
        except pg_errors.LockNotAvailable:
            raise LockBusy(journal.text(a["sql"], conn)) from None
    for a in settings:
        journal.run(conn, a["sql"])
    if settings and can_reload:
        journal.run(conn, "SELECT pg_reload_conf()")
    return bool(settings) and not can_reload
