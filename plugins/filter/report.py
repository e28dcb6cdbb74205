# -*- coding: utf-8 -*-
# Copyright: pgshift.aurora contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filters that build a phase's report data (its .json) from the modules' results.

The roles' templates keep only the Markdown layout of that data (docs: assessment_report.yml,
preparation_report.yml, schema_report.yml and cleanup_report.yml next to this file).

- ``assessment_report``: phase 0 (roles/assess), from the two pg_logical_prereqs results: findings,
  checks, the GO / NO-GO decision and the gate.
- ``preparation_report``: phase 1 (roles/prepare_source), from the pg_logical_prereqs results: what was
  changed (or would be), the restarts and reboots still needed, what remains, the gate.
- ``schema_report``: phase 3 (roles/copy_schema), from the pg_schema_copy result: what the stage created,
  held back, validated, what logical replication does not carry, the lines the play prints.
- ``cleanup_report``: phase 8 (roles/cleanup, native engine), from what the run saw: the streams before and
  after, what each removal did, the return stream.

Pure functions of their arguments (the time is one of them), unit-tested in tests/unit/test_report_data.py.
"""

from __future__ import annotations

import json
import re
from datetime import datetime, timezone

from ansible.errors import AnsibleFilterError

SIDES = ("source", "target")
# The severities each fail_on setting stops on.
GATE_LEVELS = {"blocker": ["blocker"], "warning": ["blocker", "warning"], "never": []}


def _now():
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _gate_levels(fail_on, option):
    try:
        return GATE_LEVELS[fail_on]
    except KeyError:
        raise AnsibleFilterError("%s must be one of blocker, warning, never, got %r" % (option, fail_on)) from None


def _gate_line(side, finding):
    return "- [%s %s] %s (%s): %s. Fix: %s" % (
        side, finding["severity"], finding["id"], finding["object"], finding["detail"],
        finding.get("remediation") or "see the report")


def _side(sides, name):
    info = sides.get(name) or {}
    if "host" not in info or "endpoint" not in info:
        raise AnsibleFilterError("the %s side needs its host and endpoint" % name)
    return info


# Phase 0 ---------------------------------------------------------------------------------------------------------

def assessed_side(side, host, endpoint, result):
    """One side of assessment.json from its pg_logical_prereqs result; a result without findings (unreachable,
    wrong password, ...) becomes a `connection` blocker."""
    result = result or {}
    assessed = "findings" in result
    error = None if assessed else result.get("msg", "unknown error")
    if assessed:
        findings, summary = result["findings"], result["summary"]
    else:
        findings = [dict(
            id="connection", severity="blocker", object=endpoint,
            detail="the %s could not be assessed: %s" % (side, error),
            remediation="check db_host, db_port, db_name, db_admin_user/db_user and their passwords, db_sslmode and "
                        "that the server is running and reachable from this machine, then run assess again")]
        summary = dict(blocker=1, warning=0, info=0)
    return dict(
        host=host,
        endpoint=endpoint,
        assessed=assessed,
        error=error,
        server=result.get("server", {}),
        database=result.get("database", {}),
        summary=summary,
        findings=findings,
        checks=result.get("checks", {}),
        sizes=result.get("sizes", {}),
        suggested_streams=result.get("suggested_streams"),
        planned_streams=result.get("planned_streams"),
        vcpus=result.get("vcpus"),
        stream_cap=result.get("stream_cap"),
        lob=result.get("lob"),
        settings=result.get("settings", {}),
        restart_pending=result.get("restart_pending", []),
        write_counters=result.get("write_counters"))


def check_table(sides):
    """Every check either side ran, in the order they were first seen, with each side's result."""
    ids = []
    for name in SIDES:
        for check_id in sides[name]["checks"]:
            if check_id not in ids:
                ids.append(check_id)
    return [dict([("id", check_id)] + [
        (name, sides[name]["checks"].get(check_id, "not run" if sides[name]["assessed"] else "not assessed"))
        for name in SIDES]) for check_id in ids]


def decide(blockers, warnings, sides, fail_on, deferred_ids):
    """(decision, reason, gate findings): GO or NO-GO, and the findings fail_on stops on. Blockers a later phase
    of the same run fixes (deferred_ids) pass the blocker gate."""
    levels = _gate_levels(fail_on, "assess_fail_on")
    skipped = deferred_ids if fail_on == "blocker" else []
    gate = [f for f in blockers + warnings if f["severity"] in levels and f["id"] not in skipped]
    if blockers and not gate and fail_on == "blocker":
        deferred = [f for f in blockers if f["id"] in deferred_ids]
        ids = []
        for f in deferred:
            if f["id"] not in ids:
                ids.append(f["id"])
        return "GO", ("only blocker(s) the preparation fixes: %d (%s), deferred to prepare_source, which fails if "
                      "any remains" % (len(deferred), ", ".join(ids))), gate
    if blockers:
        return "NO-GO", "%d blocker(s) (source %d, target %d): fix them, then run assess again" % (
            len(blockers), sides["source"]["summary"]["blocker"], sides["target"]["summary"]["blocker"]), gate
    if gate:
        return "NO-GO", ("no blocker, but %d warning(s) and assess_fail_on is warning: resolve or accept them"
                         % len(warnings)), gate
    if warnings:
        return "GO", "no blocker; %d warning(s) to review" % len(warnings), gate
    return "GO", "no blocker, no warning", gate


def assessment_report(results, sides, migration_name, engine, streams, filters, fail_on="blocker",
                      deferred_blockers=None, generated_at=None):
    """assessment.json (the fact assess_report).

    results: {'source': <pg_logical_prereqs result>, 'target': <its result>}. sides: {'source': {'host': ...,
    'endpoint': ...}, 'target': {...}}. streams: the migration_streams setting. filters: the four scope lists.
    deferred_blockers: the finding ids prepare_source fixes, when this run defers them to it (else empty).
    """
    deferred_ids = list(deferred_blockers or [])
    assessed, blockers, warnings = {}, [], []
    for name in SIDES:
        info = _side(sides, name)
        assessed[name] = assessed_side(name, info["host"], info["endpoint"], (results or {}).get(name))
        for f in assessed[name]["findings"]:
            if f["severity"] == "blocker":
                blockers.append(dict(f, side=name))
            elif f["severity"] == "warning":
                warnings.append(dict(f, side=name))
    decision, reason, gate = decide(blockers, warnings, assessed, fail_on, deferred_ids)
    return dict(
        phase="assess",
        generated_at=generated_at or _now(),
        migration_name=migration_name,
        engine=engine,
        streams_setting=str(streams),
        filters=dict((key, (filters or {}).get(key, [])) for key in (
            "include_schemas", "exclude_schemas", "include_tables", "exclude_tables")),
        fail_on=fail_on,
        decision=decision,
        decision_reason=reason,
        gate_failed=len(gate) > 0,
        deferred_blockers=deferred_ids,
        gate_lines=[_gate_line(f["side"], f) for f in gate],
        blockers=blockers,
        warnings=warnings,
        checks=check_table(assessed),
        source=assessed["source"],
        target=assessed["target"])


# Phase 1 ---------------------------------------------------------------------------------------------------------

def _status(result, check):
    if result is None:
        return "not run (an earlier step failed)"
    if result.get("skipped", False):
        return "skipped (prepare_source_target is false)"
    if result.get("failed", False) or "findings" not in result:
        return "failed"
    return "checked (check mode)" if check else "prepared"


def restart_needed(pending, settings, queries):
    """The settings that need a restart: the module's restart_pending, plus those this run changed with ALTER
    SYSTEM whose context is postmaster (restart_pending, read right after pg_reload_conf(), can miss them)."""
    restart = list(pending)
    for query in queries:
        if not query.startswith("ALTER SYSTEM SET "):
            continue
        name = query.split(" ")[3]
        if ((settings or {}).get(name) or {}).get("context", "") == "postmaster" and name not in restart:
            restart.append(name)
    return restart


def prepared_side(name, host, endpoint, result, check):
    """One side of preparation.json from its pg_logical_prereqs result (None: never ran)."""
    status = _status(result, check)
    ran = result is not None and "findings" in result
    result = result if result is not None else {}
    findings = result.get("findings", []) if ran else []
    queries = result.get("queries", [])
    api_calls = result.get("api_calls", [])
    return dict(
        host=host,
        endpoint=endpoint,
        status=status,
        error=result.get("msg", "unknown error") if status == "failed" else None,
        changed=result.get("changed", False) if ran else False,
        server=(result.get("server") or {}).get("version") if ran else None,
        queries=queries,
        # AWS calls that change something (describe_* only read).
        changes=len(queries) + len(api_changes(api_calls)),
        api_calls=api_calls,
        diff=result.get("diff"),
        restart_pending=restart_needed(result.get("restart_pending", []) if ran else [], result.get("settings"),
                                       queries),
        reboot_pending=result.get("reboot_pending", False) if ran else False,
        summary=result.get("summary") if ran else None,
        remaining=[f for f in findings if f["severity"] in ("blocker", "warning")])


def api_changes(api_calls):
    return [c for c in api_calls if not re.match("^describe", c["operation"])]


def preparation_report(results, sides, migration_name, engine, options, fail_on="never", check_mode=False,
                       error=None, report_path="", show_statements=40, generated_at=None):
    """preparation.json (the fact prepare_source_report).

    results: {'source': <pg_logical_prereqs result or None when it never ran>, 'target': ...}. sides: {'source':
    {'host': ..., 'endpoint': ..., 'rds_instance_id': ...}, 'target': {...}}. options: what the run was asked to
    do (system_settings, rds_reboot, replica_identity_full, target). report_path: the report without its
    extension, for the last summary line. show_statements: SQL statements per side listed in summary_lines.
    """
    levels = _gate_levels(fail_on, "prepare_source_fail_on")
    check = bool(check_mode)
    prepared, pending_lines, summary_lines, gate_lines = {}, [], [], []
    totals = dict(changes=0, blocker=0, warning=0)
    for name in SIDES:
        info = _side(sides, name)
        host, endpoint = info["host"], info["endpoint"]
        result = (results or {}).get(name)
        side = prepared[name] = prepared_side(name, host, endpoint, result, check)
        ran = result is not None and "findings" in result
        remaining = side["remaining"]
        totals["changes"] += side["changes"]
        totals["blocker"] += len([f for f in remaining if f["severity"] == "blocker"])
        totals["warning"] += len([f for f in remaining if f["severity"] == "warning"])
        if ran:
            queries = side["queries"]
            if side["changes"]:
                summary_lines.append("%s %s (%s): %s %d change(s):" % (
                    name, host, endpoint, "would make" if check else "made", side["changes"]))
                summary_lines.extend("    " + q for q in queries[:show_statements])
                if len(queries) > show_statements:
                    summary_lines.append("    ... and %d more statement(s), all in the report" % (
                        len(queries) - show_statements))
                summary_lines.extend("    AWS %s.%s %s" % (c["service"], c["operation"], json.dumps(c["parameters"]))
                                     for c in api_changes(side["api_calls"]))
            else:
                summary_lines.append("%s %s (%s): nothing to change" % (name, host, endpoint))
            needed = "WOULD BE NEEDED" if check else "NEEDED"
            if side["restart_pending"]:
                pending_lines.append(
                    "RESTART %s on the %s %s (%s): PostgreSQL must restart for %s to take effect; restart it before "
                    "the replicate phase." % (needed, name, host, endpoint, ", ".join(side["restart_pending"])))
            if side["reboot_pending"]:
                pending_lines.append(
                    "REBOOT %s on the %s %s: RDS instance %s must reboot for its parameter group to apply (logical "
                    "replication stays off until then); reboot it in a maintenance window, or run again with "
                    "prepare_source_rds_reboot=true." % (needed, name, host, info.get("rds_instance_id", "?")))
            if not check:
                gate_lines.extend(_gate_line(name, f) for f in remaining if f["severity"] in levels)
        elif side["status"] == "failed":
            summary_lines.append("%s %s (%s): FAILED: %s" % (name, host, endpoint, result.get("msg", "unknown error")))
        else:
            summary_lines.append("%s %s: %s" % (name, host, side["status"]))
    summary_lines.insert(0, ("CHECK MODE, nothing was changed: a real run would make %d change(s)" if check
                             else "%d change(s) made") % totals["changes"])
    summary_lines.append(
        "remaining after the preparation%s: %d blocker(s), %d warning(s) (details in the report; the assess phase "
        "is the gate)" % (" (check mode: as found before the changes)" if check else "", totals["blocker"],
                          totals["warning"]))
    summary_lines.append("report: %s.md (and .json)" % report_path)
    return dict(
        phase="prepare_source",
        generated_at=generated_at or _now(),
        check_mode=check,
        migration_name=migration_name,
        engine=engine,
        changes=totals["changes"],
        error=error,
        restart_or_reboot_pending=len(pending_lines) > 0,
        pending_lines=pending_lines,
        summary_lines=summary_lines,
        fail_on=fail_on,
        gate_lines=gate_lines,
        options=options,
        source=prepared["source"],
        target=prepared["target"])


# Phase 3 ---------------------------------------------------------------------------------------------------------

def _kind_counts(items):
    """'2 index, 1 trigger': how many of each kind, kinds in alphabetical order."""
    counts = {}
    for item in items:
        counts[item["kind"]] = counts.get(item["kind"], 0) + 1
    return ", ".join("%d %s" % (counts[kind], kind) for kind in sorted(counts))


def _listed(names):
    return " (%s)" % ", ".join(names) if names else ""


def _schema_lines(r, stage, check, error, show_statements, report_path):
    """The lines the play prints about a schema copy (summary_lines)."""
    lines = []
    queries = r.get("queries", [])
    created = r.get("created", [])
    held = r.get("held_back", [])
    db, roles, nr = r.get("database", {}), r.get("roles", {}), r.get("not_replicated", {})
    if error:
        lines.append("THE SCHEMA COPY FAILED (stage %s): %s" % (stage, error))
    elif check:
        restores = [c for c in r.get("commands", []) if re.search("pg_restore --use-list", c)]
        lines.append("CHECK MODE, nothing was changed: stage %s would run %d statement(s)%s" % (
            stage, len(queries), (" and restore %d schema entries" % len(created)) if restores else ""))
    else:
        lines.append("stage %s: %s" % (stage, "changes made" if r.get("changed", False) else
                                       "nothing to change, the target already has " + (
                                           "the pre-data schema" if stage == "pre" else "every held-back object")))
    if stage == "pre" and db:
        props = "%s, %s/%s, %s" % (db["encoding"], db["collate"], db["ctype"], db["locale_provider"])
        if not db["existed"]:
            lines.append("target database %s: %s as on the source (%s), owner %s" % (
                db["name"], "created" if db["created"] else "would be created", props, db["owner"]))
        elif db.get("owner_was"):
            lines.append("target database %s: exists; %s to %s, the owner of the source database (was %s)" % (
                db["name"], "would be given" if check else "given", db["owner"], db["owner_was"]))
        else:
            lines.append("target database %s: exists (owner %s)" % (db["name"], db["owner"]))
    if stage == "pre" and roles:
        if roles.get("created"):
            lines.append("%d role(s) %s WITHOUT passwords: %s; set their passwords on the target before the "
                         "application connects there" % (len(roles["created"]),
                                                         "would be created" if check else "created",
                                                         ", ".join(roles["created"])))
        else:
            lines.append("roles: the target has every role the schema needs")
        for name, dropped in (roles.get("attributes_dropped") or {}).items():
            lines.append("    role %s created without %s (not allowed on the target)" % (name, ", ".join(dropped)))
    if created:
        lines.append("%s %d %s (%s)" % (
            ("would restore" if check else "restored") if stage == "pre" else ("would create" if check else "created"),
            len(created), "schema entries" if stage == "pre" else "object(s)", _kind_counts(created)))
    if r.get("validated"):
        lines.append("%s %d constraint(s)" % ("would validate" if check else "validated", len(r["validated"])))
    lines.extend("    %s %s: %s, as on the source" % (s["kind"], s["object"], s["state"]) for s in r.get("states", []))
    if held:
        lines.append("held back %s: %d (%s)" % (
            "for stage post" if stage == "pre" else "by stage pre", len(held), _kind_counts(held)))
    if nr:
        lines.append(
            "not carried by logical replication: %d unlogged table(s)%s, %d materialized view(s) to refresh at "
            "cutover%s, %d foreign table(s), %d large object(s), %d sequence(s) to synchronise at cutover" % (
                len(nr["unlogged_tables"]), _listed(nr["unlogged_tables"]),
                len(nr["materialized_views"]), _listed(nr["materialized_views"]),
                len(nr["foreign_tables"]), int(nr["large_objects"]), len(nr["sequences"])))
    lines.extend("    CONFLICT: %s %s %s" % (c["type"], c["object"], c["problem"]) for c in r.get("conflicts", []))
    lines.extend("WARNING: %s" % w for w in r.get("warning_messages", []))
    lines.extend("NOTE: %s" % n for n in r.get("notes", []) if not re.match("^roles created without passwords", n))
    if queries and stage == "post":
        lines.append("statements %s:" % ("that would run" if check else "run"))
        lines.extend("    " + q.replace("\n", " ") for q in queries[:show_statements])
        if len(queries) > show_statements:
            lines.append("    ... and %d more, all in the report" % (len(queries) - show_statements))
    lines.append("report: %s.md (and .json)" % report_path)
    return lines


def schema_report(result, stage, sides, migration_name, check_mode=False, error=None, report_path="",
                  show_statements=30, generated_at=None):
    """schema.json / schema-post.json (the fact copy_schema_report).

    result: pg_schema_copy's result (or the failed one; {} when it never ran). stage: pre or post. sides:
    {'source': {'host': ..., 'endpoint': ...}, 'target': {...}}. error: what stopped the run (None when nothing
    did). report_path: the report without its extension, for the last summary line. show_statements: post-stage
    statements listed in summary_lines (the report has them all). `queries` and `commands` are the module's,
    which never hold a password.
    """
    r = result or {}
    check = bool(check_mode)
    source, target = _side(sides, "source"), _side(sides, "target")
    return dict(
        phase="copy_schema",
        stage=stage,
        generated_at=generated_at or _now(),
        check_mode=check,
        migration_name=migration_name,
        source=dict(host=source["host"], endpoint=source["endpoint"]),
        target=dict(host=target["host"], endpoint=target["endpoint"]),
        changed=r.get("changed", False),
        error=error,
        summary_lines=_schema_lines(r, stage, check, error, int(show_statements), report_path),
        database=r.get("database", {}),
        roles=r.get("roles", {}),
        extensions=r.get("extensions", []),
        created=r.get("created", []),
        held_back=r.get("held_back", []),
        excluded=r.get("excluded", []),
        existing=r.get("existing", []),
        validated=r.get("validated", []),
        states=r.get("states", []),
        not_replicated=r.get("not_replicated", {}),
        conflicts=r.get("conflicts", []),
        not_handled=r.get("not_handled", []),
        warnings=r.get("warning_messages", []),
        notes=r.get("notes", []),
        counts=r.get("summary", {}),
        timings=r.get("timings", {}),
        tools=r.get("tools", {}),
        queries=r.get("queries", []),
        commands=r.get("commands", []))


# Phase 8 ---------------------------------------------------------------------------------------------------------

def _stream_names(result):
    """The names of a pg_replication_status result's streams; None when it never ran."""
    if not isinstance(result, dict) or "streams" not in result:
        return None
    return [s["name"] for s in result["streams"]]


def cleanup_report(removals, before=None, reverse=None, serving=None, after=None, migration_name=None,
                   check_mode=False, status="", error="", generated_at=None):
    """cleanup.json: what the native engine's cleanup found, removed and left.

    removals: each stream's removal result (pg_native_stream state=absent, its job's result). before, after: the
    pg_replication_status results before and after (None or without streams when the run stopped before it
    looked). reverse: aurora_cutover mode=cleanup's result. serving: aurora_cutover mode=status's result.
    status: why the run stopped (refused, failed, incomplete), empty when it did not.
    """
    removals = removals or []
    queries = []
    for removal in removals:
        queries.extend(removal.get("queries") or [])
    queries.extend((reverse or {}).get("queries", []))
    return dict(
        phase="cleanup",
        generated_at=generated_at or _now(),
        migration_name=migration_name,
        check_mode=bool(check_mode),
        status=status or ("checked" if check_mode else "removed"),
        error=error or None,
        before=_stream_names(before),
        removed=[r.get("stream") for r in removals if r.get("failed") is not True],
        queries=queries,
        serving=(serving or {}).get("serving"),
        return_stream_removed=(reverse or {}).get("removed", []),
        left=_stream_names(after))


class FilterModule:
    def filters(self):
        return dict(assessment_report=assessment_report, preparation_report=preparation_report,
                    schema_report=schema_report, cleanup_report=cleanup_report)
