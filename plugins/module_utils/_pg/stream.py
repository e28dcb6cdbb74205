# -*- coding: utf-8 -*-
# Copyright: pgshift.aurora contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What only pg_native_stream needs on top of _pg/replication.py (the publication, slot and subscription
statements and reads, the slot's drop): one stream's observation of both servers, stopping the sessions of its
load and clearing its load progress.

Every statement that changes something runs through a ``journal.Journal``; reads use ``_pg.db``.
The copy itself is in _pg/loader.py; the decisions in native.py.
"""

from __future__ import annotations

from ansible_collections.pgshift.aurora.plugins.module_utils import native
from ansible_collections.pgshift.aurora.plugins.module_utils._pg import db, loader, replication


# ----------------------------------------------------------------------------------------------
# What exists
# ----------------------------------------------------------------------------------------------

LOAD_SESSIONS = "SELECT pid FROM pg_stat_activity WHERE application_name = %s AND pid <> pg_backend_pid() ORDER BY pid"


def observe(src, tgt, name):
    """What native.decide() and native.absent_steps() need: the publication (with all_tables), the slot, the
    sessions of a load of this stream on either side, the subscription and the load's progress rows."""
    obs = dict(database=db.one(src, "SELECT current_database()"), publication=replication.publication(src, name))
    obs["slot"] = replication.slots(src, [name]).get(name)
    app = native.load_application_name(name)
    obs["loading_pids"] = [r["pid"] for r in db.rows(src, LOAD_SESSIONS, (app,))]
    obs["target_loading_pids"] = [r["pid"] for r in db.rows(tgt, LOAD_SESSIONS, (app,))]
    obs["subscription"] = replication.subscriptions(tgt).get(name)
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
