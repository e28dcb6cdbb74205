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
    """The freeze of the old side; one subclass per freeze_method (FREEZES), chosen once by the runner.

    conn(side): an open (autocommit) connection as the admin; journal: the run's journal.Journal; shell(command,
    what): runs a command (StepFailed when it fails); consoles: the run's _pg.pgbouncer.Consoles (the console
    PAUSE runs on, and one at a journal's coordinates with the run's own password); params: the module's."""

    method = None
    pauses_pgbouncer = False  # the switch RESUMEs it (towards the new side)

    def __init__(self, conn, journal, shell, consoles, params, run_id, old_side, clock=time.monotonic,
                 sleep=time.sleep):
        self.conn, self.journal, self.shell, self.consoles = conn, journal, shell, consoles
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
        """Why the freeze could not take effect (sentences)."""
        return []

    def before(self, old, database):
        """What the journal keeps to undo it (read_only: each role's setting before)."""
        return None

    def take(self, machine, old, database):
        """Make the freeze take effect (after its journal entry): the step's detail."""
        raise NotImplementedError

    def freeze(self, machine):
        """Journal what the freeze does and what undoes it on the old side, then freeze."""
        old = self.conn(self.old)
        database = db.current_database(old)
        done, restore = cutover.freeze_journal_entry(self.method, database, self.coordinates(),
                                                     self.before(old, database))
        self.entry = db.journal_freeze(old, self.migration, self.run_id, self.p["direction"], self.old, self.method,
                                       done, restore, self.journal)
        return self.take(machine, old, database)

    def undo(self, machine):
        """Undo this run's freeze from its journal entry and close the entry."""
        if self.entry is None:  # it failed before its journal entry, so before taking effect
            return dict(self.undo_unjournaled(), method=self.method, note="the freeze had not taken effect")
        detail = self.apply(cutover.freeze_undo_steps(self.entry), self.old)
        db.close_freeze(self.conn(self.old), self.entry["id"], "undone", self.journal, "undone by run %s" % self.run_id)
        self.entry = None
        return dict(detail, method=self.method)

    def undo_unjournaled(self):
        return {}

    def switched(self, machine):
        """The switch completed: the freeze (a read-only fence) is the new state, its entry is finished."""
        if self.entry is not None:
            db.close_freeze(self.conn(self.old), self.entry["id"], "switched", self.journal,
                            "switch completed by run %s" % self.run_id)
            self.entry = None

    def apply(self, steps, side):
        """Run freeze_undo_steps on the side's connection; a dict of what was done."""
        done = dict(resumed=[], roles=[], sessions_ended=0, commands=0)
        conn = self.conn(side)
        for step in steps:
            if step["do"] == "resume":
                console = self.consoles.at(step)
                try:
                    console.resume(step["database"])
                finally:
                    console.close()
                self.journal.note("RESUME %s (PgBouncer %s:%s)" % (step["database"], step.get("host"), step.get("port")))
                done["resumed"].append(step["database"])
            elif step["do"] == "role_setting":
                db.set_role_setting(conn, step["role"], step["database"], step["value"], self.journal)
                done["roles"].append(step["role"])
            elif step["do"] == "end_sessions":
                # sessions started while the roles were read-only keep it for their lifetime
                ended, failed = db.terminate_sessions(conn, step["roles"], self.journal, step["database"],
                                                      step["since"])
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
                    db.close_freeze(conn, entry["id"], decision["outcome"], self.journal, "%s (by run %s)" % (
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
            db.validate_fk(new, schema, table, constraint, self.journal)
        detail["foreign_keys_validated"] = len(validate)
        if self.p["refresh_matviews"]:
            prints, reads = db.matview_fingerprints(new)
            for schema, name in cutover.matview_order(list(prints), reads):
                db.refresh_matview(new, schema, name, self.journal)
            self.matview_prints = prints
            detail["matviews_refreshed"] = len(prints)
        return detail

    def refresh_changed(self, new):
        """Inside the freeze: refresh the materialized views whose base tables changed since before_freeze (all of
        them when it did not run). Returns (refreshed, unchanged)."""
        prints, reads = db.matview_fingerprints(new)
        stale = cutover.matviews_to_refresh(self.matview_prints or {}, prints, reads)
        for schema, name in stale:
            db.refresh_matview(new, schema, name, self.journal)
        return len(stale), len(prints) - len(stale)


class PgBouncerFreeze(Freeze):
    """PAUSE the database in PgBouncer: clients wait there (the switch RESUMEs them towards the new side)."""

    method = "pgbouncer"
    pauses_pgbouncer = True

    def take(self, machine, old, database):
        database = self.p["pgbouncer"]["database"]
        seconds = self.consoles.console().pause(database, max(machine.wait_limit(self.p["freeze_timeout"]), 0.1))
        self.journal.note("PAUSE %s" % database)
        return dict(method="pgbouncer", pause_seconds=round(seconds, 3))

    def undo(self, machine):
        self.consoles.drop()  # a PAUSE may still wait on the run's console: RESUME goes through one of its own
        return Freeze.undo(self, machine)

    def undo_unjournaled(self):
        return self.apply([dict(self.coordinates(), do="resume")], self.old)  # a RESUME is harmless all the same


class ReadOnlyFreeze(Freeze):
    """default_transaction_read_only for the application roles in the old side's database, their sessions there
    ended."""

    method = "read_only"

    def problems(self):
        old = self.conn(self.old)
        return db.read_only_blockers(old, db.existing_roles(old, self.p["app_roles"]))

    def before(self, old, database):
        self.roles = db.existing_roles(old, self.p["app_roles"])
        problems = db.read_only_blockers(old, self.roles)
        if problems:
            raise cutover.StepFailed("the read_only freeze cannot take effect: " + "; ".join(problems))
        return db.role_settings(old, self.roles, database)

    def take(self, machine, old, database):
        for role in self.roles:
            db.set_role_setting(old, role, database, "on", self.journal)
        ended, failed = db.terminate_sessions(old, self.roles, self.journal, database)
        if failed:
            sessions = ", ".join("%s of %s" % (f[0], f[1]) for f in failed)
            raise cutover.StepFailed("could not end the session(s) %s in database %s: the freeze would leave them "
                                     "writing (%s)" % (sessions, database, failed[0][2]))
        return dict(method="read_only", roles=self.roles, database=database, sessions_ended=len(ended))


class CommandFreeze(Freeze):
    """freeze_command stops the writes; unfreeze_command undoes it."""

    method = "command"

    def take(self, machine, old, database):
        return dict(method="command", **self.shell(self.p["freeze_command"], "freeze_command"))


FREEZES = dict((cls.method, cls) for cls in (PgBouncerFreeze, ReadOnlyFreeze, CommandFreeze))


def freeze_for(method, *args, **kwargs):
    """The freeze strategy of freeze_method."""
    return FREEZES[method](*args, **kwargs)


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
