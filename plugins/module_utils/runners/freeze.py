# -*- coding: utf-8 -*-
# Copyright: pgshift.aurora contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The cutover's freeze of the old side: journaled before it takes effect, undone from the journal,
and recovered by any later run when the controller died inside it; and the work that is done on
the new side before the freeze so that the freeze stays short (materialized views, foreign keys).

The journal (``pgshift.freeze_journal`` on the frozen side, _pg/freeze.py) holds what the freeze
does and what undoes it: the PgBouncer database and console (never the admin password: the run
that recovers has it from its own options), or each application role's previous
``default_transaction_read_only`` in the database. It is written and committed before the freeze
takes effect and closed when it is undone or when the switch completed. A run finds the entries
left open by a run that died (its session on the frozen side is gone) and undoes them before
anything else (``cutover.freeze_recovery`` decides); ``mode=recover`` does only that.
"""

from __future__ import annotations

import time

from ansible_collections.pgshift.aurora.plugins.module_utils import cutover
from ansible_collections.pgshift.aurora.plugins.module_utils._pg import freeze as db


class Freeze:
    """conn(side): an open (autocommit) connection as the admin; record(text): a statement to show;
    shell(command, what): runs a command (StepFailed when it fails); console(coords): a PgBouncer
    admin console at {host, port, admin_user} with the run's own password; params: the module's."""

    def __init__(self, conn, record, shell, console, params, run_id, old_side, clock=time.monotonic,
                 sleep=time.sleep):
        self.conn, self.record, self.shell, self.console = conn, record, shell, console
        self.p = params
        self.migration = params["migration"]
        self.run_id = run_id
        self.old = old_side
        self.entry = None
        self.matview_prints = None
        self.clock, self.sleep = clock, sleep

    # --- the freeze and its undo ---------------------------------------------------------------

    def coordinates(self):
        pgb = self.p.get("pgbouncer") or {}
        return dict(database=pgb.get("database"), host=pgb.get("host"), port=pgb.get("port"),
                    admin_user=pgb.get("admin_user"))

    def problems(self):
        """Why the freeze could not take effect (sentences): for read_only, roles this login cannot freeze."""
        if self.p["freeze_method"] != "read_only":
            return []
        old = self.conn(self.old)
        return db.read_only_blockers(old, db.existing_roles(old, self.p["app_roles"]))

    def freeze(self, machine, pause):
        """Journal, then freeze. pause(database, timeout) -> seconds: PAUSE through the run's console."""
        p, method = self.p, self.p["freeze_method"]
        old = self.conn(self.old)
        database = db.current_database(old)
        roles, before = [], None
        if method == "read_only":
            roles = db.existing_roles(old, p["app_roles"])
            problems = db.read_only_blockers(old, roles)
            if problems:
                raise cutover.StepFailed("the read_only freeze cannot take effect: " + "; ".join(problems))
            before = db.role_settings(old, roles, database)
        done, restore = cutover.freeze_journal_entry(method, database, self.coordinates(), before)
        self.entry = db.journal_freeze(old, self.migration, self.run_id, p["direction"], self.old, method, done,
                                       restore)
        self.record("INSERT INTO pgshift.freeze_journal (run %s, %s freeze of the %s)" % (self.run_id, method, self.old))
        if method == "pgbouncer":
            database = p["pgbouncer"]["database"]
            seconds = pause(database, max(machine.wait_limit(p["freeze_timeout"]), 0.1))
            self.record("PAUSE %s" % database)
            return dict(method="pgbouncer", pause_seconds=round(seconds, 3))
        if method == "read_only":
            for role in roles:
                self.record(db.set_role_setting(old, role, database, "on"))
            ended, failed = db.terminate_sessions(old, roles, database)
            if failed:
                sessions = ", ".join("%s of %s" % (f[0], f[1]) for f in failed)
                raise cutover.StepFailed("could not end the session(s) %s in database %s: the freeze would leave them "
                                         "writing (%s)" % (sessions, database, failed[0][2]))
            return dict(method="read_only", roles=roles, database=database, sessions_ended=len(ended))
        return dict(method="command", **self.shell(p["freeze_command"], "freeze_command"))

    def undo(self, machine):
        """Undo this run's freeze from its journal entry and close the entry."""
        method = self.p["freeze_method"]
        if self.entry is None:
            # It failed before its journal entry, so before taking effect; a RESUME is harmless all the same.
            if method == "pgbouncer":
                self.apply([dict(self.coordinates(), do="resume")], self.old)
            return dict(method=method, note="the freeze had not taken effect")
        detail = self.apply(cutover.freeze_undo_steps(self.entry), self.old)
        db.close_freeze(self.conn(self.old), self.entry["id"], "undone", "undone by run %s" % self.run_id)
        self.entry = None
        return dict(detail, method=method)

    def switched(self, machine):
        """The switch completed: the freeze (a read-only fence) is the new state, its entry is finished."""
        if self.entry is not None:
            db.close_freeze(self.conn(self.old), self.entry["id"], "switched", "switch completed by run %s" % self.run_id)
            self.entry = None

    def apply(self, steps, side):
        """Run freeze_undo_steps on the side's connection; a dict of what was done."""
        done = dict(resumed=[], roles=[], sessions_ended=0, commands=0)
        conn = self.conn(side)
        for step in steps:
            if step["do"] == "resume":
                console = self.console(step)
                try:
                    console.resume(step["database"])
                finally:
                    console.close()
                self.record("RESUME %s (PgBouncer %s:%s)" % (step["database"], step.get("host"), step.get("port")))
                done["resumed"].append(step["database"])
            elif step["do"] == "role_setting":
                self.record(db.set_role_setting(conn, step["role"], step["database"], step["value"]))
                done["roles"].append(step["role"])
            elif step["do"] == "end_sessions":
                # sessions started while the roles were read-only keep it for their lifetime
                ended, failed = db.terminate_sessions(conn, step["roles"], step["database"], step["since"])
                done["sessions_ended"] += len(ended)
                if failed:
                    raise cutover.StepFailed("could not end the read-only session(s) %s: %s" % (
                        ", ".join(str(f[0]) for f in failed), failed[0][2]))
            elif step["do"] == "command":
                if not self.p.get("unfreeze_command"):
                    raise cutover.StepFailed("the freeze was made by freeze_command: give unfreeze_command to undo it")
                self.shell(self.p["unfreeze_command"], "unfreeze_command")
                done["commands"] += 1
        return done

    # --- freezes left by a run that died -------------------------------------------------------

    def recover(self, check_mode=False, wait=None):
        """Undo the migration's unfinished freezes on both sides (newest first); [what was found and done].

        An entry whose run is still connected is waited for (at most `wait` seconds: that run ends its
        freeze within its budget); StepFailed when it stays, or when an undo fails."""
        wait = (self.p["freeze_timeout"] + 10.0) if wait is None else wait
        found, warnings = [], []
        for side in ("source", "target"):
            conn = self.conn(side)
            for other in db.other_open_freezes(conn, self.migration):
                warnings.append("an unfinished freeze of migration %s (run %s) is on the %s: run mode=recover with "
                                "that migration" % (other["migration"], other["run_id"], side))
            deadline = self.clock() + wait
            for entry in cutover.open_freezes(db.open_freezes(conn, self.migration)):
                while entry is not None and entry["owner_alive"] and self.clock() < deadline:
                    self.sleep(0.2)
                    entry = dict((e["id"], e) for e in db.open_freezes(conn, self.migration)).get(entry["id"])
                if entry is None:
                    continue  # its run closed it
                decision = cutover.freeze_recovery(entry, db.switch_logged(conn, self.migration, entry["run_id"]),
                                                   entry["owner_alive"])
                if decision["action"] == "wait":
                    raise cutover.StepFailed("%s (%s freeze started %s, session pid %s): wait for it to end, or end that "
                                             "session if its controller is gone, then run again" % (
                                                 decision["note"], entry["method"], entry["started_at"],
                                                 entry["owner_pid"]))
                item = dict(run_id=entry["run_id"], side=side, method=entry["method"], direction=entry["direction"],
                            started_at=entry["started_at"].isoformat(), outcome=decision["outcome"],
                            note=decision["note"], steps=[describe(s) for s in decision["steps"]])
                if not check_mode:
                    try:
                        item["done"] = self.apply(decision["steps"], side)
                    except Exception as exc:
                        raise cutover.StepFailed("could not undo the unfinished %s freeze of run %s on the %s: %s" % (
                            entry["method"], entry["run_id"], side, exc)) from None
                    db.close_freeze(conn, entry["id"], decision["outcome"], "%s (by run %s)" % (
                        decision["note"], self.run_id))
                found.append(item)
        return found, warnings

    # --- before the freeze: what need not be inside it -----------------------------------------

    def before_freeze(self, old, new):
        """On the new side, before the freeze: the foreign keys the old side has validated are validated, the
        materialized views refreshed (their base tables' change counters kept, read before the refresh so a
        change during it counts as a change). StepFailed when a foreign key is missing on the new side."""
        detail = {}
        validate, missing = db.finishing_diff({}, {}, db.foreign_keys(old), db.foreign_keys(new))[1:]
        if missing:
            names = ", ".join("%s on %s" % (db.ident_of(c), db.name_of(s, t)) for s, t, c in missing)
            raise cutover.StepFailed("foreign key(s) %s exist on the %s but not on the new side: run copy_schema's "
                                     "post stage first" % (names, self.old))
        for schema, table, constraint in validate:
            self.record(db.validate_fk(new, schema, table, constraint))
        detail["foreign_keys_validated"] = len(validate)
        if self.p["refresh_matviews"]:
            prints, reads = db.matview_fingerprints(new)
            for schema, name in cutover.matview_order(list(prints), reads):
                self.record(db.refresh_matview(new, schema, name))
            self.matview_prints = prints
            detail["matviews_refreshed"] = len(prints)
        return detail

    def refresh_changed(self, new):
        """Inside the freeze: refresh the materialized views whose base tables changed since before_freeze (all of
        them when it did not run). Returns (refreshed, unchanged)."""
        prints, reads = db.matview_fingerprints(new)
        stale = cutover.matviews_to_refresh(self.matview_prints or {}, prints, reads)
        for schema, name in stale:
            self.record(db.refresh_matview(new, schema, name))
        return len(stale), len(prints) - len(stale)


def describe(step):
    """One undo step as a sentence for the report."""
    if step["do"] == "resume":
        return "RESUME %s on PgBouncer %s:%s" % (step.get("database"), step.get("host"), step.get("port"))
    if step["do"] == "role_setting":
        return "role %s in database %s: default_transaction_read_only %s" % (
            step["role"], step["database"], "RESET" if step["value"] is None else "= %s" % step["value"])
    if step["do"] == "end_sessions":
        return "end the sessions of %s in database %s started since the freeze" % (", ".join(step["roles"]),
                                                                                   step["database"])
    return "unfreeze_command"
