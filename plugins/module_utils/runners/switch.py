# -*- coding: utf-8 -*-
# Copyright: pgshift.aurora contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The cutover's switch of traffic to the new side: one strategy per switch_method (SWITCHES), chosen once.

Each strategy gets the run (runners/cutover.py's Cutover: its connections, journal, options and sides) and
says what it checks in the preflight, how it moves the traffic (putting its own change back when that
fails), how long the post-check waits for clients to leave the old side, and - for the status without a
cutover log - which side it points at.
"""

from __future__ import annotations

import os

from ansible.module_utils.basic import missing_required_lib

from ansible_collections.pgshift.aurora.plugins.module_utils import cutover, pgbouncer_conf
from ansible_collections.pgshift.aurora.plugins.module_utils._aws import common as aws_common
from ansible_collections.pgshift.aurora.plugins.module_utils._aws import route53
from ansible_collections.pgshift.aurora.plugins.module_utils._pg import pgbouncer as bouncer

SESSIONS_GRACE = 5.0  # seconds the post-check lets the application's sessions leave the old side


class Switch:
    """switch_method none: traffic is moved by someone else (the runbook says when)."""

    method = "none"

    def __init__(self, run):
        self.run = run
        self.p = run.p

    def preflight(self, reasons):
        """Add the reasons the switch could not work now."""

    def move(self):
        """Point the application at the new side: the step's detail; raises (its own change put back) when not."""
        return {}

    def settle_seconds(self):
        """How long the post-check waits for the application's sessions to leave the old side."""
        return SESSIONS_GRACE

    def serving(self):
        """The side the switch points at when there is no cutover log, or None when it cannot tell."""
        return None


class CommandSwitch(Switch):
    """switch_command moves the traffic (PGSHIFT_NEW_SIDE says where)."""

    method = "command"

    def move(self):
        return self.run.shell(self.p["switch_command"], "switch_command")


class PgBouncerSwitch(Switch):
    """The database's entry in PgBouncer's [databases] pointed at the new side, RELOAD, RESUME."""

    method = "pgbouncer"

    def preflight(self, reasons):
        run, pgb = self.run, self.p["pgbouncer"]
        row = run.consoles.console().database(pgb["database"])
        host, port, dbname = run.side_address(run.old)
        if row is None:
            reasons.append("PgBouncer has no database %s" % pgb["database"])
        elif int(row["port"]) != int(port) or str(row["host"]) != str(host):
            reasons.append("PgBouncer sends %s to %s:%s, not to the %s (%s:%s): is the application already "
                           "switched?" % (pgb["database"], row["host"], row["port"], run.old, host, port))

    def serving(self):
        pgb = self.p.get("pgbouncer") or {}
        if not pgb.get("databases_file"):
            return None
        try:
            found = pgbouncer_conf.find_entry(bouncer.read_file, os.path.abspath(pgb["databases_file"]),
                                              pgb["database"])
            return pgbouncer_conf.serving_side(found, self.run.side_address("source")[:2],
                                               self.run.side_address("target")[:2])
        except pgbouncer_conf.ConfError:
            return None

    def move(self):
        """Point the database's entry in PgBouncer's [databases] at the new side (only its host, port and
        dbname: every other line and option stays as it is; a rollback puts back the bytes the cutover
        changed, from the record the cutover kept in the log), RELOAD, check, RESUME."""
        run, pgb, journal = self.run, self.p["pgbouncer"], self.run.journal
        host, port, dbname = run.side_address(run.new)
        if not pgb["databases_file"]:
            raise cutover.StepFailed("switch_method=pgbouncer needs pgbouncer.databases_file")
        kept = None
        if self.p["direction"] == "reverse":
            found = [k for k in (bouncer.kept_switch(run.conn(side), run.migration, pgb["database"])
                                 for side in ("source", "target")) if k]
            kept = max(found, key=lambda k: k[0])[1] if found else None
        try:
            plan = pgbouncer_conf.plan_switch(bouncer.read_file, os.path.abspath(pgb["databases_file"]),
                                              pgb["database"], host, port, dbname, undo=kept)
        except pgbouncer_conf.ConfError as exc:
            raise cutover.StepFailed(str(exc)) from None
        if self.p["direction"] == "reverse" and not plan["restored"]:
            run.warnings.append("PgBouncer's entry for %s at %s:%d: host/port/dbname set to the %s's, the line not "
                                "restored byte for byte (%s)" % (pgb["database"], plan["path"], plan["line"],
                                                                 run.new, plan["note"] or "no record of the "
                                                                 "cutover's change in the cutover log"))
        if plan["record"] is not None and self.p["direction"] == "forward":
            for side in ("source", "target"):
                bouncer.keep_switch(run.conn(side), run.migration, run.run_id, "forward", plan["record"], journal)
        try:
            bouncer.rewrite_file(plan["path"], plan["after"])
            console = run.consoles.console()
            console.reload()
            console.wait_database(pgb["database"], host, port)
        except Exception:
            bouncer.rewrite_file(plan["path"], plan["before"])
            try:
                run.consoles.console().reload()
            except Exception:  # the undo of the freeze reports the console's state
                pass
            for side in ("source", "target"):
                try:
                    bouncer.forget_switch(run.conn(side), run.migration, run.run_id, journal)
                except Exception:  # the error that matters is the switch's
                    pass
            raise
        how = "restored" if plan["restored"] else "changed" if plan["after"] != plan["before"] else "unchanged"
        journal.note("RELOAD (%s -> %s:%s/%s; %s:%d %s)" % (pgb["database"], host, port, dbname, plan["path"],
                                                            plan["line"], how))
        if run.freezer.pauses_pgbouncer:
            run.consoles.console().resume(pgb["database"])
            journal.note("RESUME %s" % pgb["database"])
        return dict(pgbouncer=pgb["database"], now_at="%s:%s/%s" % (host, port, dbname),
                    entry="%s:%d" % (plan["path"], plan["line"]), entry_change=how)


class Route53Switch(Switch):
    """The application's DNS record (UPSERT) pointed at the new side's value; the post-check waits out the old
    record's TTL (wait_ttl)."""

    method = "route53"

    def __init__(self, run):
        Switch.__init__(self, run)
        self.previous = None

    def api(self):
        if aws_common.BOTO3_IMPORT_ERROR:
            raise cutover.StepFailed(missing_required_lib("boto3"))
        r = self.p["route53"]
        return route53.api(dict(aws_region=r["region"], aws_endpoint_url=r["endpoint_url"],
                                aws_access_key=r["access_key"], aws_secret_key=r["secret_key"]))

    def move(self):
        r = self.p["route53"]
        r53 = self.api()
        before = route53.current_record(r53, r["zone_id"], r["record_name"], r["record_type"])
        old_ttl = int(before["TTL"]) if before and "TTL" in before else 0
        value = r["target_value"] if self.run.new == "target" else r["source_value"]
        ttl = r["ttl"] if r["ttl"] is not None else (old_ttl or 60)
        wanted = cutover.route53_change(r["record_name"], r["record_type"], value, ttl)
        change = route53.change_records(r53, r["zone_id"], wanted)
        status = route53.wait_insync(r53, change)
        self.run.journal.note("route53 UPSERT %s %s -> %s (TTL %d)" % (r["record_name"], r["record_type"], value,
                                                                       ttl))
        self.previous = dict(old_ttl=old_ttl, value=(before or {}).get("ResourceRecords"))
        return dict(record=r["record_name"], value=value, change_status=status, old_ttl=old_ttl)

    def settle_seconds(self):
        if self.p["route53"]["wait_ttl"] and self.previous:
            return max(SESSIONS_GRACE, float(self.previous["old_ttl"]))
        return SESSIONS_GRACE


SWITCHES = dict((cls.method, cls) for cls in (PgBouncerSwitch, Route53Switch, CommandSwitch, Switch))


def switch_for(method, run):
    """The switch strategy of switch_method."""
    return SWITCHES[method](run)
