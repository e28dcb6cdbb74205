# -*- coding: utf-8 -*-
# Copyright: pgshift.aurora contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Reading rows: the one set of helpers every catalog read uses (writes go through journal.Journal.run), and a
session's or a transaction's timeouts."""

from __future__ import annotations


def rows(conn, query, params=None):
    """Every row as a dict (column name -> value); [] for a statement that returns none."""
    cur = conn.execute(query, params)
    if cur.description is None:
        return []
    names = [d.name for d in cur.description]
    return [dict(zip(names, r)) for r in cur.fetchall()]


def first(conn, query, params=None):
    """The first row as a dict, or None."""
    found = rows(conn, query, params)
    return found[0] if found else None


def one(conn, query, params=None):
    """The first column of the first row (None when there is no row)."""
    row = conn.execute(query, params).fetchone()
    return row[0] if row else None


def set_local(conn, name, milliseconds):
    """A timeout for the rest of the current transaction only."""
    conn.execute("SELECT set_config(%s, %s, true)", (name, "%dms" % max(1, int(milliseconds))))


def set_session(conn, name, milliseconds):
    """A timeout for the session."""
    conn.execute("SELECT set_config(%s, %s, false)", (name, "%dms" % max(1, int(milliseconds))))
