# -*- coding: utf-8 -*-
# Copyright: pgshift.aurora contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""aurora_cutover's runbook: the steps of a cutover, rehearsal or rollback over the strategies chosen once.

The steps, in the order cutover.STEPS runs them (cutover.Machine times them, keeps the pause budget and
undoes what was done when one fails before the switch):

    preflight   -> step_preflight, then what need not be inside the freeze (Freeze.before_freeze)
    freeze      -> self.freezer   (runners/freeze.py: pgbouncer, read_only, command)
    barrier     -> step_barrier   (the old side's WAL position confirmed by self.streams)
    sequences   -> step_sequences
    finishing   -> step_finishing
    verify      -> step_verify
    return_path -> self.streams.prepare()   (runners/streams.py: native forward, DMS, native reverse)
    switch      -> self.switcher.move()     (runners/switch.py: pgbouncer, route53, command, none)
    replication -> self.streams.replicate()
    postcheck   -> step_postcheck

and the other modes (status, prepare, cleanup, recover, resume_reverse). Every statement that changes
something runs through self.journal (its text is RV(queries), secrets masked); the SQL is in _pg/.
"""

from __future__ import annotations

import datetime
import json
import os
import subprocess
import threading
import time
import traceback
import uuid

from ansible_collections.pgshift.aurora.plugins.module_utils import analyze, cutover, native, progress
from ansible_collections.pgshift.aurora.plugins.module_utils import names as naming
from ansible_collections.pgshift.aurora.plugins.module_utils import replication_conn, role_secrets
from ansible_collections.pgshift.aurora.plugins.module_utils.journal import Journal, mask
from ansible_collections.pgshift.aurora.plugins.module_utils._pg import freeze as db
from ansible_collections.pgshift.aurora.plugins.module_utils._pg import pgbouncer as bouncer
from ansible_collections.pgshift.aurora.plugins.module_utils._pg import replication, stats
from ansible_collections.pgshift.aurora.plugins.module_utils._pg.connection import (
    PgConnectError, connect, postgres_argument_spec, scrub)
from ansible_collections.pgshift.aurora.plugins.module_utils._pg.pgbouncer import PgBouncerError
from ansible_collections.pgshift.aurora.plugins.module_utils.runners import freeze as freezes
from ansible_collections.pgshift.aurora.plugins.module_utils.runners import return_path as return_path_runner
from ansible_collections.pgshift.aurora.plugins.module_utils.runners import streams as stream_kinds
from ansible_collections.pgshift.aurora.plugins.module_utils.runners import switch as switches

TARGET = "target_"


def utcnow():
    return datetime.datetime.now(datetime.timezone.utc)


class Failed(Exception):
    """The run stops with fail_json: msg and the rest of the result."""

    def __init__(self, msg, **result):
        super().__init__(msg)
        self.msg = msg
        self.result = result


class Cutover:
    """params: the module's options (defaults applied); check_mode. main() returns what exit_json returns or raises
    Failed; notices are the warnings for module.warn (masked)."""

    def __init__(self, params, check_mode=False):
        self.p = p = params
        self.check_mode = check_mode
        pgb = p.get("pgbouncer") or {}
        r53 = p.get("route53") or {}
        self.secrets = [s for s in (p.get("login_password"), p.get("target_login_password"), pgb.get("admin_password"),
                                    r53.get("access_key"), r53.get("secret_key"), p.get("source_replication_password"),
                                    p.get("target_replication_password")) if s]
        self.journal = Journal(check_mode, self.secrets)
        self.warnings = []
        self.notices = []
        self.conns = {}
        self.run_lock = None
        self.run_id = uuid.uuid4().hex[:12]
        self.old, self.new = cutover.sides(p["direction"])
        self.migration = p["migration"]
        self.forward_prefix = naming.stream_prefix(self.migration)
        self.reverse_name = naming.reverse_name(self.migration)
        self.positions = {}
        self.sequences_moved = []
        self.created = dict(slots=[], publications=[], subscriptions=[])
        self.machine = None
        self.tracking = None
        self.recovered = []
        self.return_path_proof = None
        self.consoles = bouncer.Consoles(pgb, p["connect_timeout"])
        self.freezer = freezes.freeze_for(p["freeze_method"], self.conn, self.journal, self.shell, self.consoles, p,
                                          self.run_id, self.old)
        self.switcher = switches.switch_for(p["switch_method"], self)
        self.streams = stream_kinds.streams_for(p["direction"], p["engine"], self)

    @property
    def queries(self):
        return self.journal.queries

    # --- plumbing ------------------------------------------------------------------------------

    def conn(self, side):
        if side not in self.conns or self.conns[side].closed:
            params = dict((k, self.p[k]) for k in postgres_argument_spec()) if side == "source" else \
                native.unprefixed(self.p, postgres_argument_spec(), TARGET)
            # statements inside the freeze end within the pause budget left (statement_budget)
            self.conns[side] = db.Bounded(connect(params), self.statement_budget, side)
        return self.conns[side]

    def statement_budget(self, what):
        return self.machine.statement_budget_ms(what) if self.machine is not None else None

    def close(self):
        for c in list(self.conns.values()) + ([self.run_lock] if self.run_lock is not None else []):
            try:
                c.close()
            except Exception:  # best effort
                pass
        self.consoles.drop()

    def scrub(self, text):
        return mask(text, self.secrets)

    def side_address(self, side):
        pgb = self.p.get("pgbouncer") or {}
        if side == "source":
            return (pgb.get("source_host") or self.p["login_host"], pgb.get("source_port") or self.p["login_port"],
                    self.p["login_db"])
        return (pgb.get("target_host") or self.p["target_login_host"],
                pgb.get("target_port") or self.p["target_login_port"], self.p["target_login_db"])

    def shell(self, command, what, extra_env=None, timeout=None):
        timeout = max(self.p["hook_timeout"] if timeout is None else timeout, 0.001)
        env = dict(os.environ, PGSHIFT_MIGRATION=self.migration, PGSHIFT_DIRECTION=self.p["direction"],
                   PGSHIFT_OLD_SIDE=self.old, PGSHIFT_NEW_SIDE=self.new, **(extra_env or {}))
        try:
            proc = subprocess.run(command, shell=True, env=env, capture_output=True, text=True,
                                  timeout=timeout, check=False)
        except subprocess.TimeoutExpired:
            raise cutover.StepFailed("%s did not end within %.3g s" % (what, timeout)) from None
        out = self.scrub((proc.stdout + proc.stderr).strip()[-500:])
        if proc.returncode != 0:
            raise cutover.StepFailed("%s exited with status %d: %s" % (what, proc.returncode, out))
        return dict(command=self.scrub(command), output=out)

    def write_report(self, base, report, markdown):
        if self.p["report_dir"]:
            os.makedirs(self.p["report_dir"], exist_ok=True)
            with open(os.path.join(self.p["report_dir"], base + ".json"), "w") as f:
                json.dump(report, f, indent=2, default=str)
            with open(os.path.join(self.p["report_dir"], base + ".md"), "w") as f:
                f.write(markdown(report))

    # --- 1 preflight ---------------------------------------------------------------------------

    def step_preflight(self, machine):
        p = self.p
        reasons, detail = self.streams.gate()
        reasons = list(reasons)
        if p["direction"] == "forward":
            report = None
            if p["validation_report"] and os.path.exists(p["validation_report"]):
                with open(p["validation_report"]) as f:
                    report = json.load(f)
            go_v, why_v = cutover.validation_gate(report, p["validation_requirement"], p["validation_max_age"], utcnow())
            detail["validation"] = why_v
            if not go_v:
                reasons.append(why_v)
            if not p["rehearsal"]:
                go_r, why_r = self.return_path_gate()
                detail["return_path"] = why_r
                if not go_r:
                    reasons.append(why_r)
        admin = [p["login_user"], p["target_login_user"]]
        go_t, why_t = cutover.long_transaction_gate(db.long_transactions(self.conn(self.old), admin),
                                                    p["max_transaction_seconds"])
        reasons += why_t
        if p["direction"] == "forward":  # tables the planner never measured (pgshift.aurora.pg_analyze)
            why_s, detail["statistics"], overridden = cutover.statistics_gate(
                analyze.blockers(stats.read_tables(self.conn(self.new), lock_free=True)), p["statistics_override"],
                p["statistics_override_reason"])
            reasons += why_s
            if overridden:  # warned (check mode too); the report keeps it in the preflight's detail
                self.notices.append(detail["statistics"])
        if p["app_roles"]:
            missing = sorted(set(p["app_roles"]) - set(db.existing_roles(self.conn(self.new), p["app_roles"])))
            if missing:
                reasons.append("application role(s) %s do not exist on the %s: they could not log in after the "
                               "switch (create them with the same password first)" % (", ".join(missing), self.new))
            else:
                detail["role_passwords"] = self.role_passwords(reasons)
        self.switcher.preflight(reasons)
        if not self.check_mode:
            for side in ("source", "target"):
                db.ensure_log(self.conn(side), self.journal)
        if reasons:
            raise cutover.StepFailed("preflight no-go: " + "; ".join(reasons), detail)
        return detail

    def before_freeze(self, machine):
        """The preflight, then what need not be inside the freeze: foreign keys validated and materialized views
        refreshed on the new side (runners/freeze.py)."""
        detail = self.step_preflight(machine)
        problems = self.freezer.problems()
        if problems:
            raise cutover.StepFailed("preflight no-go: " + "; ".join(problems), detail)
        detail.update(self.freezer.before_freeze(self.conn(self.old), self.conn(self.new)))
        return detail

    def role_passwords(self, reasons):
        """The application roles must log in on the new side with the same password (PgBouncer's SCRAM
        pass-through even needs the same verifier). Verifiers the controller can give (PgBouncer's auth_file,
        app_role_secrets: role_secrets.desired_verifiers) are set; for the other roles, copy a missing or
        different verifier from the old side where pg_authid can be read, or say no-go; where it cannot
        (RDS, Aurora), a warning that names them."""
        roles = list(self.p["app_roles"])
        given = {}
        if self.p["copy_role_passwords"]:
            userlist = {}
            auth_file = (self.p.get("pgbouncer") or {}).get("auth_file")
            if auth_file:
                try:
                    with open(auth_file) as f:
                        userlist = role_secrets.parse_userlist(f.read())
                except OSError as exc:
                    self.warnings.append("could not read PgBouncer's auth_file %s (%s): the application roles' "
                                         "verifiers come from app_role_secrets only" % (auth_file, exc.strerror))
            try:
                given = role_secrets.desired_verifiers(roles, self.p["app_role_secrets"], userlist)
            except ValueError as exc:
                reasons.append(str(exc))
        new = self.conn(self.new)
        existing = set(db.existing_roles(new, roles))
        done = []
        for role in roles:
            if role not in given:
                continue
            if role not in existing:
                reasons.append("application role %s does not exist on the %s: run copy_schema (it creates the "
                               "roles) or create it" % (role, self.new))
                continue
            if self.check_mode:
                done.append("%s (check mode: would set from %s)" % (role, given[role][1]))
                continue
            db.set_role_password(new, role, given[role][0], self.journal)
            done.append("%s (from %s)" % (role, given[role][1]))
        rest = [r for r in roles if r not in given]
        if not rest:
            return "set for %s" % ", ".join(done) if done else "same"
        old_pw = db.role_passwords(self.conn(self.old), rest)
        new_pw = db.role_passwords(new, rest)
        if old_pw is None or new_pw is None:
            self.warnings.append(
                "could not read pg_authid (not a superuser, as on RDS and Aurora) to give %s the old side's "
                "password on the %s: set app_role_secrets (cutover_app_role_secrets) or pgbouncer.auth_file, or "
                "make sure they log in there with the same password" % (", ".join(rest), self.new))
            return ("set for %s; " % ", ".join(done) if done else "") + "not checked for %s" % ", ".join(rest)
        copied = list(done)
        for role in rest:
            if old_pw.get(role) and old_pw.get(role) != new_pw.get(role):
                if self.check_mode:
                    copied.append(role + " (check mode: would copy)")
                    continue
                if not self.p["copy_role_passwords"]:
                    reasons.append("role %s has %s password on the %s than on the %s: it could not log in (through "
                                   "PgBouncer's SCRAM pass-through) after the switch; set copy_role_passwords" % (
                                       role, "no" if not new_pw.get(role) else "another", self.new, self.old))
                    continue
                db.set_role_password(new, role, old_pw[role], self.journal)
                copied.append(role)
        return "copied for %s" % ", ".join(copied) if copied else "same"

    # --- 2 freeze (runners/freeze.py) ------------------------------------------------------------

    def step_freeze(self, machine):
        return self.freezer.freeze(machine)

    def undo_freeze(self, machine):
        return self.freezer.undo(machine)

    # --- 3 barrier -----------------------------------------------------------------------------

    def step_barrier(self, machine):
        """The old side's WAL position once the freeze took effect (written with the marker row), proven on the new
        side: every stream's apply worker received past it, then the new side's WAL flushed
        (cutover.barrier_behind says why that proves every commit before it applied and on disk); dms: the
        marker row arrived."""
        old, new = self.conn(self.old), self.conn(self.new)
        lsn = db.mark_barrier(old, self.migration, self.run_id, self.p["direction"], self.journal)
        self.positions["barrier_lsn"] = lsn
        target = native.lsn_to_int(lsn)
        limit = min(self.p["barrier_timeout"], max(machine.remaining(), 0.0))
        start = time.monotonic()
        deadline, nudged = start + limit, start
        polls = 0
        while True:
            polls += 1
            done, behind = self.streams.barrier(target)
            if done:
                detail = dict(barrier_lsn=lsn, polls=polls, wait_seconds=round(time.monotonic() - start, 3))
                if not self.streams.marker:
                    detail["flushed_on_new_side"] = db.flush_barrier(new, self.migration, self.run_id,
                                                                     self.p["direction"], lsn, self.journal)
                return detail
            if time.monotonic() > deadline:
                raise cutover.StepFailed("barrier %s not reached within %.1f s (barrier_timeout %s, pause budget "
                                         "left): %s" % (lsn, limit, self.p["barrier_timeout"], ", ".join(behind)),
                                         dict(barrier_lsn=lsn))
            if not self.streams.marker and time.monotonic() - nudged > 0.1:
                # The marker's flushed commit moves every WAL sender past the barrier at once; should a keepalive
                # saying so not come, a commit on the old side makes its WAL senders send one.
                db.nudge(old)
                nudged = time.monotonic()
            time.sleep(0.005 if polls < 100 else 0.05)

    # --- 4 sequences, 5 finishing, 6 verify ------------------------------------------------------

    def sequence_plan(self, gap):
        """sequence_plan(old, new, gap) without the cutover's own log (pgshift schema)."""
        from ansible_collections.pgshift.aurora.plugins.module_utils._pg import sequences
        old, new = self.conn(self.old), self.conn(self.new)
        found = {}

        def gather():  # both sides read at the same time, each on its own connection (as step_verify counts)
            try:
                found["new"] = sequences.gather_sequences(new)
            except Exception as exc:  # raised below, from the main thread
                found["error"] = exc
        worker = threading.Thread(target=gather, daemon=True)
        worker.start()
        try:
            found["old"] = sequences.gather_sequences(old)
        finally:
            worker.join()
        if "error" in found:
            raise found["error"]
        plan = sequences.sequence_plan(found["old"], found["new"], gap)
        return [e for e in plan if e["schema"] != db.LOG_SCHEMA]

    def step_sequences(self, machine):
        plan = self.sequence_plan(self.p["sequence_gap"])
        new = self.conn(self.new)
        changes = cutover.sequence_changes(plan)
        db.setval_all(new, [(c["schema"], c["name"], c["set_to"]) for c in changes], self.journal)
        missing = [e["sequence"] for e in plan if e.get("status") == "missing_on_target"]
        if missing:
            self.warnings.append("sequences missing on the %s: %s" % (self.new, ", ".join(missing)))
        self.sequences_moved = changes
        return dict(sequences=len(plan), moved=len(changes), missing=len(missing))

    def step_finishing(self, machine):
        old, new = self.conn(self.old), self.conn(self.new)
        refreshed = unchanged = 0
        if self.p["refresh_matviews"]:
            refreshed, unchanged = self.freezer.refresh_changed(new)
        trig, validate, missing = db.finishing_diff(db.triggers(old), db.triggers(new), db.foreign_keys(old),
                                                    db.foreign_keys(new))
        for schema, table, trigger, state in trig:
            db.set_trigger(new, schema, table, trigger, state, self.journal)
        for schema, table, constraint in validate:
            db.validate_fk(new, schema, table, constraint, self.journal)
        if missing:
            raise cutover.StepFailed("foreign key(s) %s exist on the %s but not on the %s: run copy_schema's post "
                                     "stage first" % (", ".join("%s on %s" % (db.ident_of(c), db.name_of(s, t))
                                                                for s, t, c in missing),
                                                      self.old, self.new))
        return dict(matviews_refreshed=refreshed, matviews_unchanged=unchanged, triggers_changed=len(trig),
                    foreign_keys_validated=len(validate))

    def step_verify(self, machine):
        old, new = self.conn(self.old), self.conn(self.new)
        tables, skipped = db.busiest_tables(old, self.streams.replicated_tables(), self.p["verify_tables"],
                                            self.p["verify_max_rows"])
        found = dict(old={}, new={})

        def count(side, conn):
            try:
                for schema, name in tables:
                    found[side][(schema, name)] = db.count_rows(conn, schema, name)
            except Exception as exc:  # reported below, from the main thread
                found["error"] = exc
        # both sides counted at the same time (each on its own connection): half the pause
        worker = threading.Thread(target=count, args=("new", new), daemon=True)
        worker.start()
        count("old", old)
        worker.join()
        if "error" in found:
            raise found["error"]
        counts = [dict(table=db.name_of(s_, n_), old=found["old"][(s_, n_)], new=found["new"][(s_, n_)])
                  for s_, n_ in tables]
        behind = [e["sequence"] for e in self.sequence_plan(0) if e.get("status") == "behind"]
        go, why = cutover.verify_gate(counts, self.streams.marker_seen(), behind)
        detail = dict(tables_counted=len(counts), rows=sum(c["new"] for c in counts),
                      tables_too_big_to_count=len(skipped))
        if not go:
            raise cutover.StepFailed("verify no-go: " + "; ".join(why), detail)
        return detail

    # --- 7 return path (runners/streams.py) ------------------------------------------------------

    def step_return_path(self, machine):
        return self.streams.prepare()

    def return_publication(self, src, tgt):
        """The return publication on the target: the forward streams' tables (ONLY), REPLICA IDENTITY FULL
        mirrored (tables without a key need it there too, or their updates and deletes could not be published
        back). Returns the tables."""
        tables = self.streams.replicated_tables()
        if not tables:
            raise cutover.StepFailed("the forward publications list no table: nothing to replicate back")
        src_ident, tgt_ident = db.replica_identities(src, tables), db.replica_identities(tgt, tables)
        for (schema, name), ident in sorted(src_ident.items()):
            if ident == "f" and tgt_ident.get((schema, name)) != "f":
                db.set_replica_identity_full(tgt, schema, name, self.journal)
        replication.create_publication(tgt, self.reverse_name, [dict(schema=s, name=n, only=True) for s, n in tables],
                                       journal=self.journal)
        self.created["publications"].append(("target", self.reverse_name))
        return tables

    def return_slot(self, tgt):
        lsn = replication.create_slot(tgt, self.reverse_name, journal=self.journal)
        self.created["slots"].append(("target", self.reverse_name))
        return lsn

    def undo_return_path(self, machine):
        dropped = []
        for side, name in self.created["subscriptions"]:  # the rehearsal's proof
            if name in replication.subscriptions(self.conn(side)):
                replication.drop_subscription(self.conn(side), name, journal=self.journal)
                dropped.append("subscription %s on the %s" % (name, side))
        for side, name in reversed(self.created["slots"]):
            if replication.drop_slot(self.conn(side), name, journal=self.journal):
                dropped.append("slot %s on the %s" % (name, side))
        for side, name in reversed(self.created["publications"]):
            replication.drop_publication(self.conn(side), name, journal=self.journal)
            dropped.append("publication %s on the %s" % (name, side))
        return dict(dropped=dropped)

    def remove_reverse(self, src, tgt):
        """The return stream pgshift_<m>_r1: subscription on the source, slot and publication on the target."""
        removed = []
        if self.reverse_name in replication.subscriptions(src):
            replication.drop_subscription(src, self.reverse_name, journal=self.journal)
            removed.append("subscription")
        if replication.drop_slot(tgt, self.reverse_name, journal=self.journal):
            removed.append("slot")
        if self.reverse_name in replication.publications(tgt, self.reverse_name):
            replication.drop_publication(tgt, self.reverse_name, journal=self.journal)
            removed.append("publication")
        return removed

    # --- the way back (runners/return_path.py) --------------------------------------------------

    def peer(self, who):
        """(user, password, peer_connection) of a subscription that connects to `who` (source or target): as its
        replication user (the admin only when none is given), at the address that server reaches."""
        p = self.p
        prefix = "" if who == "source" else TARGET
        user = p[who + "_replication_user"] or p[prefix + "login_user"]
        password = p[who + "_replication_password"]
        if password is None and not p[who + "_replication_user"]:
            password = p[prefix + "login_password"]
        other = "target" if who == "source" else "source"
        peer = replication_conn.peer_connection(dict(
            db_host=p[prefix + "login_host"], db_port=p[prefix + "login_port"], db_sslmode=p[prefix + "ssl_mode"],
            db_replication_host=p["%s_host_for_%s" % (who, other)], db_replication_port=p["%s_port_for_%s" % (who, other)],
            db_replication_sslmode=p["%s_ssl_mode_for_%s" % (who, other)],
            db_replication_sslrootcert=p["%s_ssl_root_cert_for_%s" % (who, other)]), "the " + who)
        return user, password, peer

    def reverse_peer(self):
        """(connection, password) of the return stream: how the source server reaches the target."""
        user, password, peer = self.peer("target")
        return cutover.return_path_connection(user, peer["host"], peer["port"], self.p["target_login_db"],
                                              peer["sslmode"], peer["sslrootcert"]), password

    def forward_conninfo(self):
        """The connection string of the fresh forward subscriptions after a rollback: the target reaching the source."""
        user, password, peer = self.peer("source")
        return replication_conn.subscription_conninfo(peer["host"], peer["port"], self.p["login_db"], user, password,
                                                      peer["sslmode"], peer["sslrootcert"])

    def return_path(self):
        connection, password = self.reverse_peer()
        return return_path_runner.ReturnPath(self.conn("source"), self.conn("target"), self.reverse_name, connection,
                                             password, self.journal, timeout=self.p["return_path_timeout"],
                                             on_wait=self.return_path_waiting)

    def establish_return_path(self):
        """Step 9 of a cutover: the source subscribes to the return slot and streams, or the error that says there
        is no way back (what was made of it removed)."""
        runner = None
        try:
            runner = self.return_path()
            return runner.establish()
        except (cutover.StepFailed, replication_conn.ReplicationConnError) as exc:
            raise self.no_way_back(runner, exc) from None

    def return_path_gate(self):
        """The preflight's check of the last rehearsal's proof of the way back (cutover.return_path_gate)."""
        p = self.p
        path = p["rehearsal_report"] or (os.path.join(p["report_dir"], "rehearsal.json") if p["report_dir"] else None)
        report = None
        if path and os.path.exists(path):
            try:
                with open(path) as f:
                    report = json.load(f)
            except (OSError, ValueError) as exc:
                return False, "could not read the rehearsal report %s (%s): run rehearsal.yml again" % (path, exc)
        try:
            connection = self.reverse_peer()[0]
        except replication_conn.ReplicationConnError as exc:
            return False, str(exc)
        return cutover.return_path_gate(report, p["return_path_requirement"], p["return_path_max_age"], utcnow(),
                                        connection, self.migration)

    def prove_return_path(self, machine):
        """The rehearsal's check, after its freeze is undone: the source server subscribes to the return slot
        made in step 7 and streams; the subscription is removed with the return path (undo_return_path).
        The result goes to rehearsal.json (return_path_proof) for the cutover's preflight."""
        def now():
            return utcnow().strftime("%Y-%m-%dT%H:%M:%SZ")
        try:
            runner = self.return_path()
        except replication_conn.ReplicationConnError as exc:
            self.return_path_proof = dict(status="failed", proven_at=now(), error=str(exc), connection=None)
            raise cutover.StepFailed("the way back could not be proven: %s" % exc) from None
        self.created["subscriptions"].append(("source", self.reverse_name))
        try:
            detail = runner.establish()
        except cutover.StepFailed as exc:
            self.return_path_proof = dict(exc.detail, status="failed", proven_at=now(), error=str(exc),
                                          connection=runner.connection)
            raise cutover.StepFailed("the way back could not be proven: %s" % exc, exc.detail) from None
        self.return_path_proof = dict(detail, status="ok", proven_at=now(), error=None)
        return dict(detail, message="the way back proven: the source server streams from the target as %s" % (
            runner.describe()))

    def no_way_back(self, runner, exc):
        """After the switch the return stream could not be made: remove what is left of it (a slot nobody reads
        holds the target's WAL), warn loudly, and give the machine the error that says so."""
        try:
            removed = runner.remove() if runner is not None else []
            left = ""
        except Exception as err:  # still say what happened first
            removed, left = [], " COULD NOT DROP the return slot %s on the target (%s): drop it by hand " \
                                "(SELECT pg_drop_replication_slot('%s')) before it fills the disk." % (
                                    self.reverse_name, return_path_runner.first_line(err), self.reverse_name)
        msg = ("the target serves, but THERE IS NO WAY BACK: %s. %s%s Fix the cause, then run cutover.yml -e "
               "cutover_mode=resume_reverse (aurora_cutover mode=resume_reverse): it makes the return stream again; "
               "what the target takes until then will not reach the source" % (
                   str(exc).rstrip("."), "Removed so that nothing holds the target's WAL: %s." % ", ".join(removed)
                   if removed else "", left))
        self.warnings.append("NO WAY BACK: " + msg)
        return cutover.ReturnPathFailed(msg, dict(getattr(exc, "detail", None) or {}, removed=removed))

    # --- 8 switch (runners/switch.py), 9 replication, 10 postcheck -------------------------------

    def step_switch(self, machine):
        """Make the new side's application roles writable, log the switch on both sides, move the traffic, close
        the freeze's journal entry.

        When moving the traffic fails, the log rows and the roles are put back before the error goes up
        (the machine then undoes the return path and the freeze): the old side serves, as before.
        """
        p = self.p
        new = self.conn(self.new)
        detail = {}
        fenced = []
        if p["app_roles"]:
            settings = db.role_read_only_settings(new, db.existing_roles(new, p["app_roles"]))
            fenced = [r for r, v in settings.items() if v == "on"]
            db.set_read_only(new, fenced, False, self.journal)
            detail["roles_made_writable"] = fenced
        for side in ("source", "target"):
            db.log_event(self.conn(side), self.migration, self.run_id, p["direction"], "switched", self.journal,
                         self.positions.get("barrier_lsn"))
        try:
            detail.update(self.switcher.move())
        except Exception:
            for side in ("source", "target"):
                try:
                    db.unlog_event(self.conn(side), self.migration, self.run_id, "switched", self.journal)
                except Exception:  # the error that matters is the switch's
                    pass
            try:
                db.set_read_only(new, fenced, True, self.journal)
            except Exception:
                pass
            raise
        try:
            self.freezer.switched(machine)
        except Exception as exc:  # the switch is done; a later run closes the entry (its switch is logged)
            self.warnings.append("could not mark the freeze journal entry finished: %s" % exc)
        return detail

    def step_replication(self, machine):
        return self.streams.replicate()

    def step_postcheck(self, machine):
        p = self.p
        left = []
        if p["app_roles"]:
            deadline = time.monotonic() + self.switcher.settle_seconds()
            while True:
                left = db.app_sessions(self.conn(self.old), p["app_roles"])
                if not left or time.monotonic() > deadline:
                    break
                time.sleep(0.2)
            if left:
                self.warnings.append("%d application session(s) still connected to the %s after the switch: %s" % (
                    len(left), self.old, ", ".join("%s pid %s" % (s["user"], s["pid"]) for s in left)))
        return dict(app_sessions_on_old_side=len(left))

    # --- progress (progress_file) ----------------------------------------------------------------

    def show_progress(self, doing, done=None, wait_left=None, force=True):
        """Rewrite the progress file: steps done of the plan, steps/s, ETA, what runs or is waited for."""
        track = self.tracking
        if track is None:
            return
        if done is not None:
            track["done"] = done
        track["file"].write(progress.steps_progress(len(track["steps"]), track["done"], time.monotonic() - track["start"],
                                                    self.scrub(doing), wait_left=wait_left), force=force)

    def tracked(self, steps, actions):
        """The actions, each announcing its step in the progress file before it runs."""
        def announce(index, step, action):
            def run(machine):
                self.show_progress("step %d/%d: %s" % (index + 1, len(steps), step), done=index)
                return action(machine)
            return run
        return dict((step, announce(steps.index(step), step, action) if step in steps else action)
                    for step, action in actions.items())

    def return_path_waiting(self, problems, left):
        """ReturnPath's wait: what the return stream still lacks, and how long it may still take."""
        self.show_progress("return stream %s: waiting until it streams (%s)" % (
            self.reverse_name, "; ".join(problems) or "checking"), wait_left=left, force=False)

    # --- one run at a time, and freezes left by runs that died -----------------------------------

    def hold_run_lock(self):
        """One step machine at a time per migration (a cutover, rehearsal, rollback, recover, resume_reverse or
        cleanup): a session advisory lock on the source, held on a connection of its own until this run ends
        (a run whose process died holds nothing). A second run is refused, saying which session holds it."""
        self.run_lock = connect(dict((k, self.p[k]) for k in postgres_argument_spec()))
        # a session whose process was just killed may take a moment to end on the server: a few seconds' grace
        deadline = time.monotonic() + 5.0
        holder = db.try_run_lock(self.run_lock, self.migration)
        while holder is not None and time.monotonic() < deadline:
            time.sleep(0.2)
            holder = db.try_run_lock(self.run_lock, self.migration)
        if holder is not None:
            raise Failed(self.scrub(
                "another run of migration %s (a cutover, rehearsal, rollback, recover or cleanup) is in progress: its "
                "session on the source is pid %s. It goes on in the background even when its ansible-playbook was "
                "interrupted (its progress: <report_dir>/<phase>-progress.json); wait for it to end, then run again"
                % (self.migration, holder or "unknown")), status="refused", serving=self.old, queries=self.queries)

    def recover_first(self):
        """Undo the unfinished freezes left by runs that died (check mode: only say so)."""
        try:
            found, warnings = self.freezer.recover(self.check_mode)
        except cutover.StepFailed as exc:
            raise Failed(self.scrub("an unfinished freeze is in effect: %s" % exc), status="refused",
                         serving=self.old, queries=self.queries) from None
        for item in found:
            warnings.append("%s the %s freeze of run %s on the %s (started %s): %s" % (
                "would undo" if self.check_mode else "undid", item["method"], item["run_id"], item["side"],
                item["started_at"], item["note"]))
        if self.check_mode:
            self.notices.extend(warnings)
        self.warnings.extend(warnings)
        self.recovered = found
        return found

    # --- modes ---------------------------------------------------------------------------------

    def serving(self):
        last = []
        for side in ("source", "target"):
            event = db.last_switch(self.conn(side), self.migration)
            if event:
                last.append(event)
        if not last:
            # No cutover log (never switched, or cleanup dropped it after a cutover): the switch (PgBouncer's
            # entry) says where the application goes, when it can.
            return self.switcher.serving() or "source", None
        latest = max(last, key=lambda e: e["at"])
        return ("target" if latest["direction"] == "forward" else "source"), latest

    def status(self):
        side, event = self.serving()
        return dict(changed=False, serving=side, last_switch=dict(
            direction=event["direction"], run_id=event["run_id"], at=event["at"].isoformat()) if event else None,
            queries=self.queries)

    def prepare(self):
        missing = [s for s in ("source", "target") if not db.log_exists(self.conn(s))]
        for side in missing:
            db.ensure_log(self.conn(side), self.journal)
        return dict(changed=bool(missing), created=missing, queries=self.queries)

    def recover(self):
        """mode=recover: only the unfinished freezes."""
        found = self.recover_first()
        if not self.check_mode:
            self.notices.extend(self.warnings)
        return dict(changed=bool(found) and not self.check_mode, status="recovered" if found else
                    "nothing_to_recover", recovered=found, serving=self.serving()[0], queries=self.queries)

    def cleanup(self):
        side, event = self.serving()
        src, tgt = self.conn("source"), self.conn("target")
        if self.check_mode:
            return dict(changed=False, serving=side, queries=[])
        self.recover_first()
        removed = self.remove_reverse(src, tgt)
        for s in ("source", "target"):
            if db.log_exists(self.conn(s)):
                db.drop_log(self.conn(s), self.journal)
                removed.append("cutover_log on the %s" % s)
            if db.journal_exists(self.conn(s)):
                db.drop_journal(self.conn(s), self.journal)
                removed.append("freeze_journal on the %s" % s)
        return dict(changed=bool(removed), serving=side, removed=removed, queries=self.queries)

    def resume_reverse(self):
        """mode=resume_reverse: after a cutover left without its return stream (switched_without_return_path),
        make it again as cutover.resume_reverse_plan says, check that it streams, write resume_reverse.md/.json."""
        side, event = self.serving()
        try:
            runner = self.return_path()
        except replication_conn.ReplicationConnError as exc:
            raise Failed(str(exc), status="refused", serving=side, queries=self.queries) from None
        state = runner.state()
        streaming = bool(state["subscription"]) and runner.check()[0]
        plan = cutover.resume_reverse_plan(side, state["publication"], state["slot"], state["subscription"], streaming)
        if plan["refuse"]:
            raise Failed("resume_reverse: %s; nothing was changed" % plan["refuse"], status="refused", serving=side,
                         queries=self.queries)
        info = dict(actions=plan["actions"], gap=plan["gap"], found=state, connection=runner.connection,
                    switched_at=event["at"].isoformat() if event else None)
        if self.check_mode:
            return dict(changed=False, status="checked", serving=side, return_path=info, queries=self.queries)
        src, tgt = self.conn("source"), self.conn("target")
        status, error, timeline, t0 = "resumed", None, [], time.monotonic()
        if not plan["actions"]:
            info.update(runner.detail(runner.check(), 0.0))
        try:
            for action in plan["actions"]:
                a0 = time.monotonic()
                entry = dict(step=action, number=None, kind="resume", status="failed", at=round(a0 - t0, 3),
                             time=utcnow().strftime("%Y-%m-%dT%H:%M:%S.%fZ"), seconds=0.0, message="", detail={})
                timeline.append(entry)
                if action == "drop_subscription":
                    runner.drop_subscription()
                elif action == "drop_slot":
                    runner.drop_slot()
                elif action == "create_publication":
                    entry["detail"] = dict(tables=len(self.return_publication(src, tgt)))
                elif action == "create_slot":
                    info["gap_to_lsn"] = self.return_slot(tgt)
                    entry["detail"] = dict(slot_lsn=info["gap_to_lsn"])
                else:
                    info.update(runner.establish(action))
                    entry["message"] = "streams from the target as %s" % runner.describe()
                entry.update(status="ok", seconds=round(time.monotonic() - a0, 3))
        except Exception as exc:  # a server's error creating the publication or slot too: nothing left behind
            status, error = "switched_without_return_path", self.no_way_back(runner, exc)
            timeline[-1].update(message=str(error), seconds=round(time.monotonic() - timeline[-1]["at"] - t0, 3))
        if plan["gap"]:
            info["gap_from_lsn"] = self.return_slot_lsn_of_cutover()
            if error is None:
                self.warnings.append(
                    "the return stream %s starts at the target's LSN %s: what the target took from the switch (%s, WAL "
                    "from %s) until then is NOT on the source - a rollback would lose it; bring the source up to date "
                    "(or do not roll back) before rollback.yml" % (
                        self.reverse_name, info.get("gap_to_lsn"), info["switched_at"] or "time unknown",
                        info["gap_from_lsn"] or "unknown"))
        report = json.loads(self.scrub(json.dumps(dict(
            status=status, migration=self.migration, serving=side, at=utcnow().strftime("%Y-%m-%dT%H:%M:%SZ"),
            return_path=info, timeline=timeline, error=str(error) if error else None, warnings=list(self.warnings),
            queries=self.queries), default=str)))
        self.write_report("resume_reverse", report, cutover.render_resume_markdown)
        self.notices.extend(self.warnings)
        report["report_warnings"] = report.pop("warnings")
        if error is not None:
            raise Failed(self.scrub("resume_reverse: %s" % error), changed=True, **report)
        return dict(report, changed=bool(plan["actions"]))

    def return_slot_lsn_of_cutover(self):
        """The return slot's LSN the cutover recorded (cutover.json), where the target's changes not on the
        source begin; None when unknown."""
        path = os.path.join(self.p["report_dir"], "cutover.json") if self.p["report_dir"] else None
        try:
            with open(path) as f:
                return (json.load(f).get("positions") or {}).get("return_slot_lsn")
        except (OSError, TypeError, ValueError):
            return None

    def check_run(self):
        """Check mode of mode=run: the preflight only, and what would run."""
        machine = cutover.Machine(["preflight"], dict(preflight=self.step_preflight), clock=time.monotonic,
                                  wallclock=utcnow, freeze_timeout=self.p["freeze_timeout"])
        result = machine.run()
        if result["status"] == "aborted":
            raise Failed(self.scrub("check mode: %s" % result["reason"]), status="aborted", failed_step="preflight",
                         preflight=result, serving=self.old, queries=self.queries)
        return dict(changed=False, status="checked", preflight=result, serving=self.old,
                    would_run=cutover.plan_steps(self.p["rehearsal"]), queries=self.queries)

    def machine_for(self, steps):
        """The step machine of mode=run over this run's steps, hooks and undo."""
        p = self.p
        hooks = {}
        for hook_name, command in (p["hooks"] or {}).items():
            hooks[hook_name] = (lambda m, c=command, n=hook_name: self.shell(
                c, "hook " + n, dict(PGSHIFT_STEP=n.split("_", 1)[1]), timeout=m.wait_limit(p["hook_timeout"])))
        actions = dict((step, getattr(self, "step_" + step)) for step in cutover.STEPS)
        actions.update(preflight=self.before_freeze)
        undo = dict(freeze=self.undo_freeze, return_path=self.undo_return_path)
        if p["progress_file"]:
            self.tracking = dict(file=progress.ProgressFile(p["progress_file"]), steps=steps, done=0,
                                 start=time.monotonic())
            actions = self.tracked(steps, actions)
        return cutover.Machine(steps, actions, undo=undo, hooks=hooks, freeze_timeout=p["freeze_timeout"],
                               clock=time.monotonic, wallclock=utcnow, rehearsal=p["rehearsal"],
                               rehearsal_check=self.prove_return_path
                               if p["rehearsal"] and p["direction"] == "forward" else None)

    def run(self):
        """mode=run: the cutover, rehearsal or rollback; its report (cutover/rehearsal/rollback .json and .md)."""
        p = self.p
        opts = dict(p, pgbouncer_database=(p.get("pgbouncer") or {}).get("database"),
                    route53_record=(p.get("route53") or {}).get("record_name"))
        problems = cutover.check_options(opts)
        if problems:
            raise Failed("invalid options: " + "; ".join(problems))
        self.recover_first()
        started_at = utcnow()
        if self.check_mode:
            return self.check_run()
        steps = cutover.plan_steps(p["rehearsal"])
        self.machine = self.machine_for(steps)
        result = self.machine.run()
        self.show_progress("%s%s" % (result["status"], ": %s" % result["reason"] if result.get("reason") else ""),
                           done=len(result.get("steps_done") or []))
        serving = self.new if result["status"] in ("switched", "failed_after_switch",
                                                   "switched_without_return_path") else self.old
        report = dict(result, direction=p["direction"], rehearsal=p["rehearsal"], migration=self.migration,
                      old_side=self.old, new_side=self.new, freeze_method=p["freeze_method"],
                      switch_method=p["switch_method"], engine=p["engine"], freeze_timeout=p["freeze_timeout"],
                      started_at=started_at.strftime("%Y-%m-%dT%H:%M:%SZ"), positions=self.positions,
                      sequences_moved=self.sequences_moved, serving=serving, run_id=self.run_id,
                      rollback_plan=cutover.rollback_plan(p["direction"], p["freeze_method"], p["switch_method"],
                                                          self.migration, self.reverse_name),
                      warnings=list(self.warnings), queries=self.queries)
        if self.return_path_proof is not None:
            report["return_path_proof"] = self.return_path_proof
        report["recovered"] = self.recovered
        report = json.loads(self.scrub(json.dumps(report, default=str)))
        base = "rehearsal" if p["rehearsal"] else ("cutover" if p["direction"] == "forward" else "rollback")
        self.write_report(base, report, cutover.render_markdown)
        self.notices.extend(self.warnings)
        # in the report file; exit_json's own `warnings` key is reserved (module.warn)
        report["report_warnings"] = report.pop("warnings")
        changed = result["status"] != "aborted" or bool(result["undone"])
        if result["status"] in ("aborted", "failed_after_switch", "switched_without_return_path"):
            if result["status"] == "switched_without_return_path":
                what = "Status switched_without_return_path: the %s serves with no return stream" % self.new
            elif result["status"] == "aborted":
                what = ("nothing switched; what was done is undone (%s) and the %s serves as before: fix the cause "
                        "and run again" % (", ".join("%s %s" % (u["step"], u["status"]) for u in result["undone"])
                                           or "nothing to undo", self.old))
            else:
                what = ("traffic is on the %s; the steps after the switch did not finish: fix the cause; the return "
                        "path may be incomplete" % self.new)
            raise Failed(self.scrub("%s stopped at step %s: %s. %s" % (
                "rehearsal" if p["rehearsal"] else "cutover" if p["direction"] == "forward" else "rollback",
                result["failed_step"], result["reason"], what)), changed=changed, **report)
        return dict(report, changed=changed)

    MODES = ("run", "status", "cleanup", "prepare", "recover", "resume_reverse")

    def main(self):
        """The mode asked for: what exit_json returns (Failed for fail_json)."""
        mode = self.p["mode"]
        if mode in ("status", "prepare"):
            return getattr(self, mode)()
        if not self.check_mode:
            self.hold_run_lock()
        return getattr(self, mode)()


SSL_CHOICES = list(replication_conn.SSL_MODES)


def argument_spec():
    spec = postgres_argument_spec()
    spec.update(native.prefixed_spec(postgres_argument_spec(), TARGET))
    spec.update(
        migration=dict(type="str", required=True),
        mode=dict(type="str", choices=["run", "status", "cleanup", "prepare", "recover", "resume_reverse"],
                  default="run"),
        direction=dict(type="str", choices=list(cutover.DIRECTIONS), default="forward"),
        rehearsal=dict(type="bool", default=False),
        engine=dict(type="str", choices=list(cutover.ENGINES), default="native"),
        dms_tasks=dict(type="list", elements="dict", default=[]),
        freeze_method=dict(type="str", choices=list(cutover.FREEZE_METHODS), default="pgbouncer"),
        freeze_command=dict(type="str"),
        unfreeze_command=dict(type="str"),
        switch_method=dict(type="str", choices=list(cutover.SWITCH_METHODS), default="pgbouncer"),
        switch_command=dict(type="str"),
        freeze_timeout=dict(type="float", default=10),
        barrier_timeout=dict(type="float", default=30),
        max_lag_bytes=dict(type="int", default=16777216),
        max_lag_seconds=dict(type="float", default=5),
        max_transaction_seconds=dict(type="float", default=5),
        statistics_override=dict(type="bool", default=False),
        statistics_override_reason=dict(type="str"),
        preflight_wait=dict(type="float", default=15),
        copy_role_passwords=dict(type="bool", default=True),
        validation_report=dict(type="path"),
        validation_requirement=dict(type="str", choices=["required", "if_present", "ignore"], default="if_present"),
        validation_max_age=dict(type="int", default=0),
        rehearsal_report=dict(type="path"),
        return_path_requirement=dict(type="str", choices=list(cutover.RETURN_PATH_REQUIREMENTS), default="required"),
        return_path_max_age=dict(type="int", default=0),
        return_path_timeout=dict(type="float", default=30),
        progress_file=dict(type="path"),
        sequence_gap=dict(type="int", default=1000),
        verify_tables=dict(type="int", default=5),
        verify_max_rows=dict(type="int", default=500000),
        refresh_matviews=dict(type="bool", default=True),
        app_roles=dict(type="list", elements="str", default=[]),
        app_role_secrets=dict(type="dict", default={}, no_log=True),
        pgbouncer=dict(type="dict", options=dict(
            host=dict(type="str", default="127.0.0.1"),
            port=dict(type="int", default=6432),
            admin_user=dict(type="str", default="pgbouncer"),
            admin_password=dict(type="str", no_log=True),
            database=dict(type="str", required=True),
            databases_file=dict(type="path"),
            auth_file=dict(type="path"),
            source_host=dict(type="str"),
            source_port=dict(type="int"),
            target_host=dict(type="str"),
            target_port=dict(type="int"),
        )),
        route53=dict(type="dict", options=dict(
            zone_id=dict(type="str", required=True),
            record_name=dict(type="str", required=True),
            record_type=dict(type="str", default="CNAME"),
            source_value=dict(type="str", required=True),
            target_value=dict(type="str", required=True),
            ttl=dict(type="int"),
            wait_ttl=dict(type="bool", default=True),
            region=dict(type="str", default="us-east-1"),
            endpoint_url=dict(type="str"),
            access_key=dict(type="str", no_log=True),
            secret_key=dict(type="str", no_log=True),
        )),
        hooks=dict(type="dict", default={}),
        hook_timeout=dict(type="float", default=60),
        source_replication_user=dict(type="str"),
        source_replication_password=dict(type="str", no_log=True),
        target_replication_user=dict(type="str"),
        target_replication_password=dict(type="str", no_log=True),
        source_host_for_target=dict(type="str"),
        target_host_for_source=dict(type="str"),
        source_port_for_target=dict(type="int"),
        source_ssl_mode_for_target=dict(type="str", choices=SSL_CHOICES),
        source_ssl_root_cert_for_target=dict(type="str"),
        target_port_for_source=dict(type="int"),
        target_ssl_mode_for_source=dict(type="str", choices=SSL_CHOICES),
        target_ssl_root_cert_for_source=dict(type="str"),
        report_dir=dict(type="path"),
    )
    return spec


def module_spec():
    return dict(argument_spec=argument_spec())


def run_module(module):
    runner = Cutover(module.params, module.check_mode)
    try:
        result = runner.main()
    except Failed as exc:
        result = dict(exc.result, failed=True, msg=exc.msg)
    except (PgConnectError, PgBouncerError) as exc:
        result = dict(failed=True, msg=scrub(str(exc), runner.secrets), queries=runner.queries)
    except Exception as exc:  # pylint: disable=broad-except  # outside the step machine: said without any secret
        result = dict(failed=True, msg=scrub("aurora_cutover failed: %s" % exc, runner.secrets),
                      exception=scrub(traceback.format_exc(), runner.secrets), queries=runner.queries)
    finally:
        runner.close()
    for notice in runner.notices:
        module.warn(scrub(notice, runner.secrets))
    if result.pop("failed", False):
        module.fail_json(**result)
    module.exit_json(**result)
