# -*- coding: utf-8 -*-
# Copyright: pgshift.aurora contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The blue/green cutover as a step machine (pure: no database, no network, no clock of its own).

The runbook (runners/cutover.py, for aurora_cutover) gives the machine one callable per step and a clock; the machine
runs them in order, times and records each (the timeline), applies the gates, keeps the pause
budget (``freeze_timeout``) and, when anything before the switch fails or runs over budget,
undoes what was done (in reverse order) so the old side serves as before.

Words used here: the *old* side serves the application when the run starts (the source for a
cutover, the target for a rollback); the *new* side is where traffic goes. A rollback is the
same machine with the sides swapped.

Steps (numbers as the runbook shows them):

1. ``preflight``  every stream old -> new streaming within the lag limits, validation passed,
   no long transaction on the old side that the freeze would wait on;
2. ``freeze``     writes stop on the old side (PgBouncer PAUSE, read-only roles or a command);
3. ``barrier``    the old side's WAL position after the freeze (or a marker row) confirmed by
   every stream;
4. ``sequences``  every sequence on the new side at least the old side's and above its columns;
5. ``finishing``  materialized views refreshed, triggers and foreign keys as on the old side;
6. ``verify``     counts of the busiest tables, the marker, the sequences;
7. ``return_path`` the new side publishes and its slot is created, still inside the freeze, so
   nothing written on the new side after the switch can be missed;
8. ``switch``     traffic to the new side (PgBouncer, Route 53, a command, or none);
9. ``replication`` the old -> new streams stop, the old side subscribes to the new side's slot;
10. ``postcheck`` no application session left on the old side.

A rehearsal runs steps 1-7 for real, then undoes them instead of switching.
"""

from __future__ import annotations

import datetime

STEPS = ("preflight", "freeze", "barrier", "sequences", "finishing", "verify", "return_path", "switch",
         "replication", "postcheck")
SWITCH_STEP = "switch"
BEFORE_SWITCH = STEPS[:STEPS.index(SWITCH_STEP)]
# Steps whose effect is undone when the run stops before the switch (and after a rehearsal).
UNDOABLE = ("freeze", "return_path")
# Steps that run while writes are frozen: they count against freeze_timeout.
FROZEN = ("barrier", "sequences", "finishing", "verify", "return_path", "switch")
# Steps whose statements and waits end within the pause budget left (statement_timeout, lock_timeout);
# not the switch, which is never cut short half way (its failure handling puts things back).
BOUNDED = ("freeze",) + FROZEN[:FROZEN.index(SWITCH_STEP)]

DIRECTIONS = ("forward", "reverse")
FREEZE_METHODS = ("pgbouncer", "read_only", "command")
SWITCH_METHODS = ("pgbouncer", "route53", "command", "none")
ENGINES = ("native", "dms")
STATUSES = ("switched", "rehearsed", "aborted", "failed_after_switch", "switched_without_return_path")


class StepFailed(Exception):
    """A step could not do its work or its gate said no-go; the message says why and what to do."""

    def __init__(self, message, detail=None):
        super().__init__(message)
        self.detail = detail or {}


class OverBudget(StepFailed):
    """The write pause would exceed freeze_timeout."""


def statement_timeout_ms(remaining_seconds, what, step, freeze_timeout):
    """The statement_timeout and lock_timeout (ms) of a statement inside the freeze: the pause budget left, at
    least 1 ms. OverBudget when nothing is left: the statement is not started."""
    if remaining_seconds <= 0:
        raise OverBudget("the write pause budget (freeze_timeout %s s) ran out in step %s before %s" % (
            _fmt(freeze_timeout), step, what or "the next statement"), dict(statement=what or ""))
    return max(int(remaining_seconds * 1000), 1)


class ReturnPathFailed(StepFailed):
    """After the switch, the return stream (new -> old) could not be created or does not stream: the new side
    serves with no way back. The machine reports it as its own status, not as a generic failure."""

    after_switch_status = "switched_without_return_path"


def plan_steps(rehearsal):
    """The steps a run goes through: up to the return path for a rehearsal, all of them otherwise."""
    if rehearsal:
        return list(BEFORE_SWITCH)
    return list(STEPS)


def step_number(name):
    return STEPS.index(name) + 1


def sides(direction):
    """(old, new): which side serves before the run and which after."""
    if direction not in DIRECTIONS:
        raise ValueError("direction must be one of %s (got %r)" % (", ".join(DIRECTIONS), direction))
    return ("source", "target") if direction == "forward" else ("target", "source")


def check_options(opts):
    """Problems of the cutover options (a list of sentences, empty when fine)."""
    problems = []
    if opts.get("direction") not in DIRECTIONS:
        problems.append("direction must be forward or reverse (rollback)")
    if opts.get("freeze_method") not in FREEZE_METHODS:
        problems.append("freeze_method must be one of %s" % ", ".join(FREEZE_METHODS))
    if opts.get("switch_method") not in SWITCH_METHODS:
        problems.append("switch_method must be one of %s" % ", ".join(SWITCH_METHODS))
    if opts.get("engine", "native") not in ENGINES:
        problems.append("engine must be native or dms")
    if (opts.get("freeze_timeout") or 0) <= 0:
        problems.append("freeze_timeout must be more than 0 seconds (the write pause budget)")
    if opts.get("freeze_method") == "command" and not opts.get("freeze_command"):
        problems.append("freeze_method=command needs freeze_command (and unfreeze_command to undo it)")
    if opts.get("freeze_method") == "command" and not opts.get("unfreeze_command"):
        problems.append("freeze_method=command needs unfreeze_command: a failed cutover must be able to undo "
                        "the freeze")
    if opts.get("switch_method") == "command" and not opts.get("switch_command"):
        problems.append("switch_method=command needs switch_command")
    if opts.get("freeze_method") == "read_only" and not opts.get("app_roles"):
        problems.append("freeze_method=read_only needs app_roles (the application's login roles to make read-only)")
    if "pgbouncer" in (opts.get("freeze_method"), opts.get("switch_method")) and not opts.get("pgbouncer_database"):
        problems.append("the pgbouncer freeze/switch needs pgbouncer (host, port, admin_user, admin_password, "
                        "database, databases_file)")
    if opts.get("switch_method") == "route53" and not opts.get("route53_record"):
        problems.append("switch_method=route53 needs route53 (zone_id, record_name, source_value, target_value)")
    if opts.get("freeze_method") == "pgbouncer" and opts.get("switch_method") not in ("pgbouncer",):
        problems.append("freeze_method=pgbouncer pauses the application inside PgBouncer: only switch_method="
                        "pgbouncer can resume it towards the new side (use read_only or command with %s)" % (
                            opts.get("switch_method")))
    if opts.get("hooks"):
        unknown = sorted(set(opts["hooks"]) - set(hook_names()))
        if unknown:
            problems.append("unknown hooks %s (known: %s)" % (", ".join(unknown), ", ".join(hook_names())))
    if opts.get("statistics_override") and not str(opts.get("statistics_override_reason") or "").strip():
        problems.append("statistics_override needs statistics_override_reason (who decided to cut over with tables "
                        "the planner has never measured, and why)")
    return problems


def hook_names():
    """before_<step> and after_<step> for every step."""
    names = []
    for step in STEPS:
        names.extend(["before_" + step, "after_" + step])
    return names


# ----------------------------------------------------------------------------------------------
# Gates (pure decisions on what the runner observed)
# ----------------------------------------------------------------------------------------------

def stream_gate(streams, max_lag_bytes, max_lag_seconds, engine="native"):
    """(go, reasons): every stream streams with its lag within the limits.

    streams: [{name, state, lag_bytes, lag_seconds, message}] (pg_replication_status) or for dms
    [{name, status, cdc_latency_seconds}].
    """
    reasons = []
    if not streams:
        return False, ["no replication stream found: nothing carries the changes to the new side"]
    for s in streams:
        if engine == "dms":
            if s.get("status") != "running":
                reasons.append("DMS task %s is %s, not running" % (s.get("name"), s.get("status")))
            elif s.get("cdc_latency_seconds") is None or s["cdc_latency_seconds"] > max_lag_seconds:
                reasons.append("DMS task %s CDC latency %s s is above max_lag_seconds %s" % (
                    s.get("name"), s.get("cdc_latency_seconds"), max_lag_seconds))
            continue
        if s.get("state") != "streaming":
            reasons.append("stream %s is %s: %s" % (s.get("name"), s.get("state"), s.get("message") or ""))
            continue
        if s.get("lag_bytes") is None or s["lag_bytes"] > max_lag_bytes:
            reasons.append("stream %s lags %s bytes (max_lag_bytes %d)" % (
                s.get("name"), s.get("lag_bytes"), max_lag_bytes))
        if s.get("lag_seconds") is None or s["lag_seconds"] > max_lag_seconds:
            reasons.append("stream %s lags %s s (max_lag_seconds %s)" % (
                s.get("name"), s.get("lag_seconds"), max_lag_seconds))
    return not reasons, reasons


def dms_streams(tasks):
    """pgshift.aurora.dms_task_info's tasks as the stream gate reads them: [{name, status, cdc_latency_seconds}].

    Each task: {task: {replication_task_identifier, status}, cdc_latency: {source_seconds, target_seconds}}
    (flat {name, status, cdc_latency_seconds} entries are taken as they are). The latency is the larger of
    the two CloudWatch figures; None without datapoints.
    """
    streams = []
    for t in tasks or []:
        task = t.get("task") or {}
        latencies = [v for v in (t.get("cdc_latency") or {}).values() if v is not None]
        latency = max(latencies) if latencies else t.get("cdc_latency_seconds")
        streams.append(dict(name=task.get("replication_task_identifier") or t.get("identifier") or t.get("name"),
                            status=task.get("status") or t.get("status"), cdc_latency_seconds=latency))
    return streams


def parse_time(text):
    """ISO 8601 (Z or offset) -> aware datetime, or None."""
    if not text:
        return None
    try:
        value = datetime.datetime.fromisoformat(str(text).replace("Z", "+00:00"))
    except ValueError:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=datetime.timezone.utc)
    return value


def validation_gate(report, requirement, max_age_seconds, now):
    """(go, reason) of the last validation.

    report: the parsed validation.json (verdict, finished_at, override) or None when missing;
    requirement: 'required' (a GO, or an override, is needed), 'if_present' (a NO-GO blocks, a
    missing report does not) or 'ignore'. now: aware datetime.
    """
    if requirement == "ignore":
        return True, "validation not required (validation_requirement=ignore)"
    if report is None:
        if requirement == "required":
            return False, "no validation report: run pgshift.aurora.validate first (or set validation_requirement)"
        return True, "no validation report (validation_requirement=if_present)"
    verdict = str(report.get("verdict", "")).upper()
    finished = parse_time(report.get("finished_at"))
    if verdict != "GO":
        if report.get("override"):
            return True, "validation said %s but was overridden (%s)" % (
                verdict or "nothing", report.get("override_reason") or "no reason")
        return False, "the last validation said %s: fix the differences and validate again" % (verdict or "nothing")
    if finished is None:
        return False, "the validation report has no finished_at: run pgshift.aurora.validate again"
    age = (now - finished).total_seconds()
    if max_age_seconds and age > max_age_seconds:
        return False, "the last validation (GO) finished %.0f s ago, more than validation_max_age %d s: validate " \
                      "again" % (age, max_age_seconds)
    return True, "validation GO, finished %.0f s ago" % age


def long_transaction_gate(transactions, limit_seconds):
    """(go, reasons): no transaction on the old side older than limit_seconds (it would hold the freeze)."""
    reasons = []
    for t in transactions:
        if (t.get("seconds") or 0) > limit_seconds:
            reasons.append("session %s (%s@%s) has had a transaction open for %.0f s (state %s): the freeze would "
                           "wait on it; end it or wait" % (
                               t.get("pid"), t.get("user"), t.get("application") or "-", t["seconds"], t.get("state")))
    return not reasons, reasons


def statistics_gate(blockers, override=False, override_reason=None, limit=10):
    """(reasons, note, overridden): no non-empty table on the new side without planner statistics.

    blockers: analyze.blockers() of the new side's tables (non-empty, never analysed nor imported: the planner
    would guess on the application's first queries). With override (check_options asks for its reason) the run
    goes on: note says so, with the reason and the tables, for the report and a warning.
    """
    if not blockers:
        return [], "every non-empty table has planner statistics", False
    names = ", ".join(b["table"] for b in blockers[:limit])
    if len(blockers) > limit:
        names += " and %d more" % (len(blockers) - limit)
    if override:
        return [], "statistics gate overridden (reason: %s): %d non-empty table(s) without planner statistics: %s" % (
            override_reason or "none given", len(blockers), names), True
    why = ("%d non-empty table(s) on the new side have no planner statistics: %s; run pgshift.aurora.pg_analyze on "
           "it (replicate.yml does, replicate_analyze) or set statistics_override with statistics_override_reason" % (
               len(blockers), names))
    return [why], why, False


def barrier_behind(received, names, barrier_lsn_int):
    """The streams (of `names`) whose apply worker on the new side has not yet received a position past the
    barrier, sorted; [] when every one has (native).

    received: {subscription: received position as an int, or None (no apply worker)}: pg_stat_subscription's
    received_lsn of each subscription's apply worker (_pg/freeze.stream_receipts). A worker handles the stream's
    messages one at a time, in commit order, and takes a message's position as received before handling it; a
    position strictly past the barrier comes only with a message after every transaction committed on the old
    side before the barrier (a later transaction's, or the WAL sender's keepalive once it decoded past the
    barrier). So when it shows one, each of those transactions is applied: committed on the new side, though
    asynchronously (subscriptions commit with synchronous_commit off). The caller then flushes the new side's WAL
    (_pg/freeze.flush_barrier) before the barrier counts as reached: only then would they survive a crash of the
    new side. Equal is not enough: the message at the barrier may be the last of those commits, still being
    applied."""
    return sorted(n for n in names if received.get(n) is None or received[n] <= barrier_lsn_int)


def barrier_done(received, names, barrier_lsn_int, engine="native", marker_seen=None):
    """Whether every stream's apply worker received a position past the barrier (native: barrier_behind; the WAL
    flush on the new side still to come), or the marker row arrived on the new side (dms)."""
    if engine == "dms":
        return bool(marker_seen)
    if not names:
        return False
    return not barrier_behind(received, names, barrier_lsn_int)


def verify_gate(counts, marker_ok, sequences_behind):
    """(go, reasons): counts equal, the marker there, no sequence behind.

    counts: [{table, old, new}]; sequences_behind: names still behind after the sequence step.
    """
    reasons = ["%s has %s rows on the old side and %s on the new one" % (c["table"], c["old"], c["new"])
               for c in counts if c["old"] != c["new"]]
    if marker_ok is False:
        reasons.append("the cutover marker row is not on the new side")
    for name in sequences_behind:
        reasons.append("sequence %s is still behind on the new side" % name)
    return not reasons, reasons


def sequence_changes(plan):
    """The setval() calls to make from a sequence_plan: [{sequence (display), schema, name, set_to, before,
    required_next}] for those not fine; the sequence is set by its schema and name."""
    changes = []
    for entry in plan:
        if entry.get("set_to") is not None and entry.get("status") != "missing_on_target":
            changes.append(dict(sequence=entry["sequence"], schema=entry["schema"], name=entry["name"],
                                set_to=entry["set_to"], before=entry.get("target_next"),
                                required_next=entry.get("required_next")))
    return changes


def route53_change(record_name, record_type, value, ttl):
    """The ChangeBatch that points record_name at value."""
    return dict(Comment="pgshift.aurora cutover", Changes=[dict(Action="UPSERT", ResourceRecordSet=dict(
        Name=record_name, Type=record_type, TTL=int(ttl), ResourceRecords=[dict(Value=value)]))])


# ----------------------------------------------------------------------------------------------
# The way back: the return stream new -> old (pure decisions; runners/return_path.py acts on them)
# ----------------------------------------------------------------------------------------------

# What says how the source server connects to the target for the return stream (never the password).
RETURN_PATH_KEYS = ("user", "host", "port", "dbname", "sslmode", "sslrootcert")
RETURN_PATH_REQUIREMENTS = ("required", "if_present", "ignore")


def return_path_connection(user, host, port, dbname, sslmode=None, sslrootcert=None):
    """The return stream's connection as the source server makes it, without the password (what the
    rehearsal records and the cutover's preflight compares)."""
    return dict(user=user, host=host, port=int(port) if port not in (None, "") else None, dbname=dbname,
                sslmode=sslmode or None, sslrootcert=sslrootcert or None)


def _describe(conn):
    return "%s@%s:%s/%s sslmode=%s%s" % (conn.get("user"), conn.get("host"), conn.get("port"), conn.get("dbname"),
                                         conn.get("sslmode") or "-", " sslrootcert=%s" % conn["sslrootcert"]
                                         if conn.get("sslrootcert") else "")


def return_path_gate(report, requirement, max_age_seconds, now, connection, migration):
    """(go, reason) of the way back, from the last rehearsal's report.

    report: the parsed rehearsal.json or None when there is none; its ``return_path_proof`` is
    {status ok|failed, error, proven_at, connection} (what the rehearsal's source server did).
    requirement: 'required' (a proof with today's connection settings is needed), 'if_present' (a
    failed, outdated or different proof blocks; no proof does not) or 'ignore'. connection: the
    return stream's settings now (return_path_connection). now: aware datetime.
    """
    run_it = "run rehearsal.yml (it creates the reverse subscription on the source, checks it streams and removes it)"
    if requirement == "ignore":
        return True, "the way back is not checked (return_path_requirement=ignore)"
    proof = (report or {}).get("return_path_proof")
    if report is not None and report.get("migration") not in (None, migration):
        proof = None
        what = "the last rehearsal.json is of migration %s, not %s" % (report.get("migration"), migration)
    elif report is not None and report.get("direction", "forward") != "forward":
        proof = None
        what = "the last rehearsal.json is of a rollback, not of the cutover"
    elif report is None:
        what = "no rehearsal report (rehearsal.json)"
    elif not proof:
        what = "the last rehearsal (status %s%s) did not prove the way back" % (
            report.get("status"), ", stopped at %s" % report["failed_step"] if report.get("failed_step") else "")
    if not proof:
        if requirement == "required":
            return False, "%s: the way back (the source subscribing to the target) was never proven: %s first, or " \
                          "set return_path_requirement" % (what, run_it)
        return True, "%s (return_path_requirement=if_present)" % what
    proven = parse_time(proof.get("proven_at"))
    when = "at %s" % proof.get("proven_at") if proof.get("proven_at") else ""
    if proof.get("status") != "ok":
        return False, "the last rehearsal %s could not create the return stream: %s. Fix that and %s again" % (
            when, str(proof.get("error") or "no reason recorded (the source server connecting to the target as %s)"
                      % _describe(proof.get("connection") or {})).rstrip("."), run_it)
    if proven is None:
        return False, "the last rehearsal's proof of the way back has no time: %s again" % run_it
    age = (now - proven).total_seconds()
    if max_age_seconds and age > max_age_seconds:
        return False, "the way back was proven %.0f s ago, more than return_path_max_age %d s: %s again" % (
            age, max_age_seconds, run_it)
    then = proof.get("connection") or {}
    differ = ["%s %s then, %s now" % (k, then.get(k), connection.get(k)) for k in RETURN_PATH_KEYS
              if str(then.get(k) if then.get(k) not in ("", None) else None) !=
              str(connection.get(k) if connection.get(k) not in ("", None) else None)]
    if differ:
        return False, "the way back was proven with other connection settings than the cutover would use (%s): " \
                      "%s again" % ("; ".join(differ), run_it)
    return True, "the way back proven by the rehearsal %.0f s ago (%s)" % (age, _describe(connection))


def return_stream_check(observed, user, tables, tls):
    """(ok, problems): the return stream really streams - the subscription on the source exists and is
    enabled, the source found the publication's `tables` tables on the target, its apply worker runs, and
    the target sees a WAL sender on the slot connected as `user` (with TLS when `tls`), streaming.

    observed: {subscription: None | {enabled, worker_pid, tables}, sender: None | {usename, state, ssl}}.
    """
    sub, sender = observed.get("subscription"), observed.get("sender")
    if sub is None:
        return False, ["the subscription does not exist on the source"]
    problems = []
    if not sub.get("enabled"):
        problems.append("the subscription is disabled on the source")
    if (sub.get("tables") or 0) != tables:
        problems.append("the source found %s of the %d tables of the publication on the target (none: the "
                        "publication was not found there)" % (sub.get("tables") or 0, tables))
    if not sub.get("worker_pid"):
        problems.append("no apply worker runs for it on the source (its server log says why)")
    if sender is None:
        problems.append("no WAL sender on the target uses the return slot: the source server is not connected")
    else:
        if sender.get("usename") != user:
            problems.append("the source server is connected to the target as %s, not as %s" % (
                sender.get("usename"), user))
        if tls and not sender.get("ssl"):
            problems.append("the source server is connected to the target without TLS")
        if sender.get("state") != "streaming":
            problems.append("the target's WAL sender is %s, not streaming" % sender.get("state"))
    return not problems, problems


RESUME_ACTIONS = ("drop_subscription", "drop_slot", "create_publication", "create_slot", "create_subscription",
                  "alter_connection")


def resume_reverse_plan(serving, publication, slot, subscription, streaming):
    """What cutover_mode=resume_reverse does: dict(refuse, actions, gap).

    serving: the side the cutover log says serves; publication/slot: whether the return publication and
    slot exist on the target; subscription: whether the return subscription exists on the source;
    streaming: whether return_stream_check passed. refuse: a sentence when there is nothing to resume;
    actions: in order, from RESUME_ACTIONS; gap: True when a new slot is made - the target's changes since
    the switch before it are not in the return stream (the source misses them).
    """
    if serving != "target":
        return dict(refuse="the source serves the application (no cutover is in effect): there is no return stream "
                           "to resume", actions=[], gap=False)
    if subscription and streaming:
        return dict(refuse=None, actions=[], gap=False)
    if slot and publication:
        # the slot kept every change since it was made: subscribe to it again (or repair the subscription)
        return dict(refuse=None, actions=["alter_connection"] if subscription else ["create_subscription"],
                    gap=False)
    actions = ["drop_subscription"] if subscription else []
    if slot:  # a slot older than its publication cannot decode the changes made before the publication
        actions.append("drop_slot")
    if not publication:
        actions.append("create_publication")
    return dict(refuse=None, actions=actions + ["create_slot", "create_subscription"], gap=True)


# ----------------------------------------------------------------------------------------------
# The freeze journal: a freeze writes what it does and what undoes it on the side it freezes
# (pgshift.freeze_journal, committed before it takes effect), so that a run started after a controller
# died inside the freeze can undo it. _pg/freeze.py reads and writes it, these decide.
# ----------------------------------------------------------------------------------------------

def freeze_journal_entry(method, database, pgbouncer=None, roles_before=None):
    """(done, restore): what a freeze will do and what undoes it, for the journal.

    database: the frozen side's database; pgbouncer: the console's {database, host, port, admin_user}
    (never its password: the run that recovers has it from its own options); roles_before: {role: its
    default_transaction_read_only in that database before the freeze, None when it had none}.
    """
    if method == "pgbouncer":
        pgb = dict((k, (pgbouncer or {}).get(k)) for k in ("database", "host", "port", "admin_user"))
        return dict(pause=pgb["database"]), dict(pgbouncer=pgb)
    if method == "read_only":
        roles = dict(sorted((roles_before or {}).items()))
        return dict(read_only_roles=sorted(roles), database=database), dict(roles=roles, database=database)
    return dict(command="freeze_command"), dict(command="unfreeze_command")


def open_freezes(entries):
    """The journal entries still in effect (neither finished by a switch nor undone), newest first: undone in
    that order, the oldest entry's 'before' values are the ones left."""
    left = [e for e in entries if not e.get("finished_at") and not e.get("undone_at")]
    return sorted(left, key=lambda e: e["started_at"], reverse=True)


def freeze_undo_steps(entry):
    """What undoes a journaled freeze, in order: [{do: resume|role_setting|end_sessions|command, ...}].

    read_only: each role's setting in the database put back as it was (RESET when it had none), then the
    application's sessions started since the freeze ended (they started read-only); pgbouncer: RESUME.
    """
    restore = entry.get("restore") or {}
    if entry["method"] == "pgbouncer":
        return [dict(restore.get("pgbouncer") or {}, do="resume")]
    if entry["method"] == "read_only":
        roles = restore.get("roles") or {}
        steps = [dict(do="role_setting", role=role, database=restore.get("database"), value=before)
                 for role, before in sorted(roles.items())]
        if roles:
            steps.append(dict(do="end_sessions", roles=sorted(roles), database=restore.get("database"),
                              since=entry.get("started_at")))
        return steps
    return [dict(do="command")]


def freeze_recovery(entry, switch_logged, owner_alive):
    """What a run does with an unfinished journal entry: dict(action, steps, outcome, note).

    action 'wait': the run that froze is still connected (its session on the frozen side lives), the
    freeze is that run's own; 'undo': undo it (steps, freeze_undo_steps) and mark it `outcome`.
    switch_logged: the cutover log has that run's 'switched' row, i.e. the controller died in or after the
    switch: clients waiting in PgBouncer are resumed wherever it points, a read-only fence and a command
    freeze stay as after any switch (the entry is marked 'switched').
    """
    run = entry.get("run_id")
    if owner_alive:
        return dict(action="wait", steps=[], outcome=None,
                    note="run %s is still connected to the %s: the freeze is that run's own" % (run, entry.get("side")))
    if not switch_logged:
        return dict(action="undo", steps=freeze_undo_steps(entry), outcome="undone",
                    note="undone: run %s died inside its %s freeze" % (run, entry["method"]))
    if entry["method"] == "pgbouncer":
        return dict(action="undo", steps=freeze_undo_steps(entry), outcome="switched",
                    note="run %s died in its switch (logged): PgBouncer resumed where it points now; check it with "
                         "mode=status" % run)
    return dict(action="undo", steps=[], outcome="switched",
                note="run %s died in its switch (logged): the %s freeze stays as after a switch (%s)" % (
                    run, entry["method"], "the old side read-only" if entry["method"] == "read_only"
                    else "unfreeze_command not run"))


# ----------------------------------------------------------------------------------------------
# Materialized views: refreshed on the new side before the freeze, again inside it only if changed
# ----------------------------------------------------------------------------------------------

def matview_order(matviews, reads):
    """The materialized views in an order where each comes after those it reads. reads: {mv: [mvs it reads]}."""
    done, order = set(), []

    def visit(mv, path):
        if mv in done or mv in path:
            return
        for dep in sorted(reads.get(mv) or []):
            if dep in matviews:
                visit(dep, path | {mv})
        done.add(mv)
        order.append(mv)
    for mv in sorted(matviews):
        visit(mv, frozenset())
    return order


def matviews_to_refresh(before, now, reads):
    """The materialized views to refresh again inside the freeze, in order: those whose base tables' change
    counters (before: at the refresh before the freeze, now: inside it) moved or are unknown, and those that
    read one of them. {mv: fingerprint}; reads: {mv: [mvs it reads]}."""
    stale = set(mv for mv in now if before.get(mv) is None or now.get(mv) is None or before[mv] != now[mv])
    changed = True
    while changed:
        changed = False
        for mv in now:
            if mv not in stale and any(dep in stale for dep in reads.get(mv) or []):
                stale.add(mv)
                changed = True
    return [mv for mv in matview_order(list(now), reads) if mv in stale]


# ----------------------------------------------------------------------------------------------
# The machine
# ----------------------------------------------------------------------------------------------

class Machine:
    """Runs the steps, keeps the timeline and the budget, undoes on failure.

    actions: {step: callable(machine) -> detail dict}; a callable raises StepFailed (or any
    exception) to stop the run. undo: {step: callable(machine) -> detail dict} for the
    UNDOABLE steps. hooks: {hook name: callable(machine) -> detail} run around the steps (a
    failing hook fails its step). clock: callable returning seconds (monotonic);
    wallclock: callable returning an aware datetime (for the timeline's times).
    """

    def __init__(self, steps, actions, undo=None, hooks=None, freeze_timeout=10.0, clock=None, wallclock=None,
                 rehearsal=False, rehearsal_check=None):
        self.steps = list(steps)
        # rehearsal_check(machine) -> detail: run after a rehearsal's freeze is undone, before the rest is
        # undone (the way back proven on the return slot, outside the measured pause); raising fails it.
        self.rehearsal_check = rehearsal_check
        self.actions = actions
        self.undo_actions = undo or {}
        self.hooks = hooks or {}
        self.freeze_timeout = float(freeze_timeout)
        self.clock = clock
        self.wallclock = wallclock
        self.rehearsal = rehearsal
        self.timeline = []
        self.done = []
        self.frozen_at = None
        self.unfrozen_at = None
        self.switched_at = None
        self.started = None
        self.status = None
        self.reason = None
        self.failed_step = None
        self.undone = []
        self.current = None  # the step running now
        self.undoing = False

    # --- budget --------------------------------------------------------------------------------

    def elapsed_frozen(self):
        if self.frozen_at is None:
            return 0.0
        end = self.unfrozen_at if self.unfrozen_at is not None else self.clock()
        return end - self.frozen_at

    def remaining(self):
        """Seconds of write pause left (the whole budget before the freeze)."""
        return self.freeze_timeout - self.elapsed_frozen()

    def check_budget(self, step):
        if self.frozen_at is not None and self.switched_at is None and self.remaining() < 0:
            raise OverBudget("the write pause reached %.3f s after step %s, over freeze_timeout %.3f s" % (
                self.elapsed_frozen(), step, self.freeze_timeout))

    def frozen_now(self):
        """Writes are frozen and the run is neither switching yet nor undoing."""
        return (self.frozen_at is not None and self.unfrozen_at is None and self.switched_at is None
                and not self.undoing)

    def statement_budget_ms(self, what=""):
        """statement_timeout / lock_timeout (ms) for the next statement: None outside the BOUNDED steps (before
        the freeze, in the switch, after it, while undoing), else the budget left; OverBudget when it is spent."""
        if not (self.frozen_now() and self.current in BOUNDED):
            return None
        return statement_timeout_ms(self.remaining(), what, self.current, self.freeze_timeout)

    def wait_limit(self, seconds):
        """How long a wait may last (a hook, PAUSE, the barrier): inside the freeze, the budget left at most."""
        if not self.frozen_now():
            return seconds
        return max(min(seconds, self.remaining()), 0.0)

    # --- records -------------------------------------------------------------------------------

    def record(self, step, status, started, seconds, detail=None, message=None, kind="step"):
        entry = dict(step=step, number=step_number(step) if step in STEPS else None, kind=kind, status=status,
                     at=round(started - self.started, 3), seconds=round(seconds, 3), detail=detail or {},
                     message=message or "")
        if self.wallclock is not None:
            # the wall-clock time the step started: now minus the time it took
            began = self.wallclock() - datetime.timedelta(seconds=self.clock() - started)
            entry["time"] = began.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        self.timeline.append(entry)
        return entry

    def _run_hook(self, name):
        hook = self.hooks.get(name)
        if hook is None:
            return
        t0 = self.clock()
        try:
            detail = hook(self) or {}
        except Exception as exc:
            self.record(name.split("_", 1)[1], "failed", t0, self.clock() - t0, message="hook %s failed: %s" % (
                name, exc), kind="hook")
            raise StepFailed("hook %s failed: %s" % (name, exc))
        self.record(name.split("_", 1)[1], "ok", t0, self.clock() - t0, detail=detail, message="hook %s" % name,
                    kind="hook")

    # --- running -------------------------------------------------------------------------------

    def run(self):
        self.started = self.clock()
        for step in self.steps:
            t0 = self.clock()
            self.current = step
            try:
                self._run_hook("before_" + step)
                if step == "freeze":
                    self.frozen_at = self.clock()
                detail = self.actions[step](self) or {}
                if step == SWITCH_STEP:
                    self.switched_at = self.clock()
                self._run_hook("after_" + step)
                if step in BEFORE_SWITCH:
                    self.check_budget(step)
            except Exception as exc:  # every failure is recorded, then decided on below
                detail = getattr(exc, "detail", None) or {}
                if step == "freeze" and self.frozen_at is not None:
                    # A freeze that failed half way may have taken effect (a PAUSE still waiting, some
                    # roles read-only already): undo it too; undoing a freeze that did not happen is harmless.
                    self.done.append(step)
                self.record(step, "failed", t0, self.clock() - t0, detail=detail, message=str(exc))
                self.failed_step = step
                self.reason = str(exc)
                if self.switched_at is None and step != SWITCH_STEP:
                    self.status = "aborted"
                    self.undo_all()
                elif step == SWITCH_STEP:
                    # The switch itself failed: traffic may not have moved; undo the freeze so the old
                    # side serves (the switch action is expected to put its own change back first).
                    self.status = "aborted"
                    self.undo_all()
                else:
                    self.status = getattr(exc, "after_switch_status", "failed_after_switch")
                return self.result()
            self.done.append(step)
            self.record(step, "ok", t0, self.clock() - t0, detail=detail)
        if self.rehearsal:
            self.status = "rehearsed"
            if self.rehearsal_check is not None:
                self.undo_all(only=("freeze",))
                self._rehearsal_check()
            self.undo_all()
        else:
            self.status = "switched"
        return self.result()

    def _rehearsal_check(self):
        t0 = self.clock()
        try:
            detail = self.rehearsal_check(self) or {}
        except Exception as exc:  # the rehearsal failed: recorded, the rest still undone
            self.record(self.steps[-1], "failed", t0, self.clock() - t0, detail=getattr(exc, "detail", None) or {},
                        message=str(exc), kind="check")
            self.status, self.failed_step, self.reason = "aborted", self.steps[-1], str(exc)
            return
        self.record(self.steps[-1], "ok", t0, self.clock() - t0, detail=detail, kind="check",
                    message=detail.pop("message", "") if isinstance(detail, dict) else "")

    def undo_all(self, only=None):
        self.undoing = True
        for step in reversed(self.done):
            if step not in UNDOABLE or step not in self.undo_actions:
                continue
            if (only is not None and step not in only) or any(u["step"] == step for u in self.undone):
                continue
            t0 = self.clock()
            try:
                detail = self.undo_actions[step](self) or {}
                status = "ok"
                message = "undone"
            except Exception as exc:  # keep undoing the rest; the report says what could not be undone
                detail = getattr(exc, "detail", None) or {}
                status = "failed"
                message = "could not undo %s: %s" % (step, exc)
            if step == "freeze":
                self.unfrozen_at = self.clock()
            self.record(step, status, t0, self.clock() - t0, detail=detail, message=message, kind="undo")
            self.undone.append(dict(step=step, status=status, message=message))

    def write_pause(self):
        """Seconds writes were paused: freeze -> switch done, or freeze -> freeze undone."""
        if self.frozen_at is None:
            return None
        end = self.switched_at if self.switched_at is not None else self.unfrozen_at
        if end is None:
            end = self.clock()
        return round(end - self.frozen_at, 3)

    def result(self):
        return dict(status=self.status, failed_step=self.failed_step, reason=self.reason,
                    write_pause_seconds=self.write_pause(), over_budget=bool(
                        self.write_pause() is not None and self.write_pause() > self.freeze_timeout),
                    timeline=self.timeline, undone=self.undone, steps_done=list(self.done),
                    total_seconds=round(self.clock() - self.started, 3))


# ----------------------------------------------------------------------------------------------
# What a rollback would do, and the report
# ----------------------------------------------------------------------------------------------

def rollback_plan(direction, freeze_method, switch_method, migration, reverse_stream):
    """Sentences: what running the other direction would do from here (for the report)."""
    old, new = sides(direction)
    if direction == "forward":
        return [
            "playbooks/rollback.yml (aurora_cutover direction=reverse) freezes writes on the target (%s)" % freeze_method,
            "waits until subscription %s on the source confirmed the target's WAL position after the freeze "
            "(slot %s on the target, created during this cutover's freeze)" % (reverse_stream, reverse_stream),
            "moves the sequences target -> source, switches traffic back to the source (%s)" % switch_method,
            "drops the reverse stream and creates fresh forward streams pgshift_%s_s<N> (slots on the source created "
            "during the rollback's freeze, subscriptions with copy_data=false) so a second cutover can run" % migration,
        ]
    return [
        "a second cutover (playbooks/cutover.yml) runs on the fresh forward streams made by this rollback",
        "its reverse stream %s is created again during its freeze" % reverse_stream,
    ]


def _fmt(value):
    if value is None:
        return "-"
    if isinstance(value, float):
        return "%.3f" % value
    return str(value)


def render_markdown(report):
    """The cutover / rehearsal / rollback report (markdown) from the module's result."""
    title = dict(forward="Cutover", reverse="Rollback")[report["direction"]]
    if report.get("rehearsal"):
        title = "Rehearsal of the %s" % title.lower()
    lines = ["# %s of migration `%s`" % (title, report["migration"]), ""]
    lines.append("- status: **%s**%s" % (report["status"], (" (step %s: %s)" % (
        report["failed_step"], report["reason"])) if report.get("failed_step") else ""))
    lines.append("- old side: %s, new side: %s; freeze %s, switch %s, engine %s" % (
        report["old_side"], report["new_side"], report["freeze_method"], report["switch_method"], report["engine"]))
    lines.append("- write pause: **%s s** (budget freeze_timeout %s s)" % (
        _fmt(report.get("write_pause_seconds")), _fmt(report.get("freeze_timeout"))))
    lines.append("- started %s, took %s s" % (report.get("started_at"), _fmt(report.get("total_seconds"))))
    positions = report.get("positions") or {}
    if positions:
        lines.append("- positions: " + ", ".join("%s %s" % (k, v) for k, v in sorted(positions.items())))
    preflight = next((e for e in report.get("timeline") or [] if e.get("step") == "preflight"), None)
    if (preflight or {}).get("detail", {}).get("statistics"):
        lines.append("- planner statistics: %s" % preflight["detail"]["statistics"])
    lines += ["", "## Timeline", "", "| t (s) | time (UTC) | # | step | kind | status | seconds | note |",
              "|---:|---|---:|---|---|---|---:|---|"]
    for e in report.get("timeline") or []:
        note = e.get("message") or ", ".join("%s=%s" % (k, v) for k, v in sorted((e.get("detail") or {}).items())
                                             if not isinstance(v, (list, dict)))
        lines.append("| %s | %s | %s | %s | %s | %s | %s | %s |" % (
            _fmt(e["at"]), e.get("time", "-"), _fmt(e.get("number")), e["step"], e["kind"], e["status"],
            _fmt(e["seconds"]), note.replace("|", "\\|").replace("\n", " ")[:300]))
    seqs = report.get("sequences_moved") or []
    lines += ["", "## Sequences moved (%d)" % len(seqs), ""]
    for s in seqs:
        lines.append("- `%s`: next %s -> %s" % (s["sequence"], _fmt(s.get("before")), _fmt(s.get("required_next"))))
    if not seqs:
        lines.append("- none needed")
    recovered = report.get("recovered") or []
    if recovered:
        lines += ["", "## Unfinished freezes undone before this run (%d)" % len(recovered), ""]
        lines += ["- run `%s` (%s freeze of the %s, started %s): %s" % (
            r.get("run_id"), r.get("method"), r.get("side"), r.get("started_at"), r.get("note")) for r in recovered]
    lines += ["", "## What a rollback would do", ""]
    lines += ["%d. %s" % (i, text) for i, text in enumerate(report.get("rollback_plan") or [], 1)]
    if report.get("return_path_proof"):
        lines += ["", "## The way back (proven by this rehearsal: the cutover's preflight reads it)", ""]
        lines += way_back_lines(report["return_path_proof"])
    lines.append("")
    return "\n".join(lines)


def way_back_lines(check):
    """Markdown lines of a return-stream check (a rehearsal's proof, a resume)."""
    conn = check.get("connection") or {}
    lines = ["- status: **%s**%s" % (check.get("status"), ", at %s" % check["proven_at"] if check.get("proven_at")
                                     else "")]
    if conn:
        lines.append("- the source server connects to the target as %s" % _describe(conn))
    seen = check.get("seen_by_target")
    if seen:
        lines.append("- the target saw it: user %s, TLS %s%s, WAL sender %s" % (
            seen.get("user"), "on" if seen.get("ssl") else "off", " (%s)" % seen["ssl_version"]
            if seen.get("ssl_version") else "", seen.get("state")))
    if check.get("tables") is not None:
        lines.append("- tables the source found in the return publication: %s" % check["tables"])
    if check.get("error"):
        lines.append("- error: %s" % str(check["error"]).replace("\n", " "))
    return lines


def render_resume_markdown(report):
    """resume_reverse.md: what mode=resume_reverse did to the return stream."""
    info = report.get("return_path") or {}
    lines = ["# The way back of migration `%s`: resume_reverse" % report.get("migration"), "",
             "- status: **%s** at %s; the %s serves" % (report.get("status"), report.get("at"), report.get("serving")),
             "- actions: %s" % (", ".join(info.get("actions") or []) or "none (the return stream streams)")]
    if info.get("gap"):
        lines.append("- **gap**: a new return slot starts at the target's LSN %s; the target's changes since the "
                     "switch (%s, from LSN %s) are not on the source" % (
                         _fmt(info.get("gap_to_lsn")), _fmt(info.get("switched_at")), _fmt(info.get("gap_from_lsn"))))
    lines += way_back_lines(dict(info, status=report.get("status"), error=report.get("error")))
    for w in report.get("warnings") or report.get("report_warnings") or []:
        lines.append("- warning: %s" % w)
    lines.append("")
    return "\n".join(lines)
