# -*- coding: utf-8 -*-
# Copyright: pgshift.aurora contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What the migration report (report_dir/index.html and runbook.md) shows, from the phases' JSON reports.

Pure functions only: they take the parsed JSON documents (dicts, as the phases wrote them) and return the
rows, series, bars and lines the controller-side renderer (plugins/plugin_utils/report_render.py) draws and
writes. No I/O, no third-party import: the unit tests call them with small dicts shaped like the real reports.
"""

from __future__ import annotations

import csv
import io
import re

from ansible_collections.pgshift.aurora.plugins.module_utils.validate import describe_difference

# The phases in their order: the report key (the JSON file's name without .json), its title, the playbook.
PHASES = (
    ("assessment", "Assessment", "assess"),
    ("preparation", "Source preparation", "prepare_source"),
    ("schema", "Schema copy (before the data)", "copy_schema"),
    ("replication", "Replication (plan, initial load, CDC)", "replicate"),
    ("schema-post", "Held-back indexes, constraints, triggers", "copy_schema"),
    ("analyze", "Planner statistics (ANALYZE)", "replicate"),
    ("validation", "Validation", "validate"),
    ("rehearsal", "Cutover rehearsal", "rehearsal"),
    ("cutover", "Cutover", "cutover"),
    ("rollback", "Rollback", "rollback"),
    ("cleanup", "Cleanup", "cleanup"),
)

# initial-load.json: the last run of replicate that loaded something (a later run with nothing to load keeps it).
REPORT_FILES = tuple(key + ".json" for key, title, playbook in PHASES) + ("plan.json", "initial-load.json")
HISTORY_DIR = "rehearsals"
HISTORY_PATTERN = re.compile(r"^rehearsal-\d{8}T\d{6}Z(-[A-Za-z0-9]+)?\.json$")


def num(value, default=0.0):
    """A number from a JSON value, or default when it is not one."""
    if isinstance(value, bool) or value is None:
        return default
    try:
        return float(value)
    except (TypeError, ValueError):
        return default


def human_bytes(value):
    """1536 -> '1.5 KiB'."""
    value = num(value)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(value) < 1024 or unit == "TiB":
            return ("%d %s" % (value, unit)) if unit == "B" else ("%.1f %s" % (value, unit))
        value /= 1024.0
    return "%.1f TiB" % value  # pragma: no cover


def seconds_text(value):
    """0.0123 -> '0.012 s', 75 -> '1 min 15 s', None -> '-'."""
    if value is None:
        return "-"
    value = num(value)
    if value < 60:
        return "%.3g s" % value if value < 10 else "%.1f s" % value
    minutes, seconds = divmod(int(round(value)), 60)
    if minutes < 60:
        return "%d min %02d s" % (minutes, seconds)
    hours, minutes = divmod(minutes, 60)
    return "%d h %02d min" % (hours, minutes)


def phase_rows(reports):
    """One row per phase: key, title, playbook, whether its report exists, when it was written and its outcome."""
    rows = []
    for key, title, playbook in PHASES:
        report = reports.get(key)
        if not isinstance(report, dict):
            rows.append(dict(key=key, title=title, playbook=playbook, ran=False, at=None, outcome="not run yet"))
            continue
        outcome = (report.get("decision") or report.get("verdict") or report.get("status")
                   or ("failed" if report.get("error") else "written"))
        at = report.get("generated_at") or report.get("finished_at") or report.get("started_at") or report.get("at")
        rows.append(dict(key=key, title=title, playbook=playbook, ran=True, at=at, outcome=str(outcome)))
    return rows


def assessment_section(assessment):
    """Decision and the blockers then warnings, each with what to do about it; None when not run."""
    if not isinstance(assessment, dict):
        return None

    def finding(f):
        return dict(id=f.get("id"), severity=f.get("severity"), object=f.get("object"), side=f.get("side"),
                    detail=f.get("detail"), fix=f.get("remediation"))

    return dict(decision=assessment.get("decision"), reason=assessment.get("decision_reason"),
                generated_at=assessment.get("generated_at"),
                blockers=[finding(f) for f in assessment.get("blockers") or []],
                warnings=[finding(f) for f in assessment.get("warnings") or []])


def plan_of(reports):
    """The replication plan: plan.json, else the one replication.json carries; None when neither exists."""
    plan = reports.get("plan")
    if isinstance(plan, dict) and plan.get("streams") is not None:
        return plan
    replication = reports.get("replication")
    if isinstance(replication, dict) and isinstance(replication.get("plan"), dict):
        return replication["plan"]
    return None


def plan_section(plan):
    """Streams (name, tables, rows, bytes, estimated load time, share of the writes) and their tables."""
    if not isinstance(plan, dict):
        return None
    streams, tables = [], []
    for s in plan.get("streams") or []:
        streams.append(dict(name=s.get("name"), tables=s.get("table_count", len(s.get("tables") or [])),
                            rows=s.get("rows"), bytes=s.get("bytes"),
                            estimated_load_seconds=s.get("estimated_load_seconds"),
                            writes_per_second=s.get("writes_per_second"), writes_share=s.get("writes_share")))
        for t in s.get("tables") or []:
            tables.append(dict(stream=s.get("name"), table=t.get("qualified") or t.get("name"), kind=t.get("kind"),
                               rows=t.get("rows"), bytes=t.get("bytes"), split=t.get("split"),
                               primary_key=t.get("primary_key") or []))
    tables.sort(key=lambda t: (-num(t["bytes"]), str(t["stream"]), str(t["table"])))
    not_replicated = [dict(table=n.get("qualified") or n.get("name"), reason=n.get("reason"))
                      for n in plan.get("not_replicated") or []]
    return dict(streams=streams, tables=tables, totals=plan.get("totals") or {}, not_replicated=not_replicated,
                warnings=list(plan.get("warnings") or []), engine=plan.get("engine"))


def parse_lag_csv(text):
    """replication-lag.csv (one row per stream and poll, appended by every wait) as dicts with numbers."""
    rows = []
    for raw in csv.DictReader(io.StringIO(text or "")):
        if not raw.get("stream"):
            continue
        row = dict(stream=raw["stream"], state=raw.get("state") or "")
        for field in ("elapsed_seconds", "lag_bytes", "lag_seconds", "retained_bytes", "rows_copied",
                      "bytes_copied", "load_percent"):
            value = raw.get(field)
            row[field] = None if value in (None, "") else num(value, None)
        rows.append(row)
    return rows


def lag_waits(rows):
    """Cut the CSV's rows into the waits that appended them: each wait's elapsed time starts again at zero.
    Returns [{"offset", "end", "rows"}]: the waits placed end to end (the time between two waits is not
    recorded, so none is drawn)."""
    waits, current, last = [], [], None
    for row in rows:
        at = row.get("elapsed_seconds") or 0.0
        if last is not None and at < last:
            waits.append(current)
            current = []
        current.append(row)
        last = at
    if current:
        waits.append(current)
    placed, offset = [], 0.0
    for wait in waits:
        end = max(r.get("elapsed_seconds") or 0.0 for r in wait)
        placed.append(dict(offset=offset, end=offset + end, rows=wait))
        # Half a poll's worth of room between two waits keeps them apart on the plot.
        offset += end + max(0.1, end * 0.02)
    return placed


def lag_series(rows):
    """Per stream, the lag over the waits placed end to end: {stream: {"x", "lag_bytes", "lag_seconds"}}, and
    the x where each wait after the first begins."""
    series = {}
    placed = lag_waits(rows)
    for wait in placed:
        for row in wait["rows"]:
            s = series.setdefault(row["stream"], dict(x=[], lag_bytes=[], lag_seconds=[]))
            s["x"].append(round(wait["offset"] + (row.get("elapsed_seconds") or 0.0), 3))
            s["lag_bytes"].append(row.get("lag_bytes") or 0.0)
            s["lag_seconds"].append(row.get("lag_seconds") or 0.0)
    return dict(streams=series, wait_starts=[w["offset"] for w in placed[1:]])


def load_series(replication, lag_rows):
    """The initial load of each stream over time, from what was measured and nothing else.

    The load job reports per stream its wall time (``load.seconds``) and rows, and per table only how long its
    copy took (no start time), so the job itself gives two points: 0 rows at its start, every row at its end.
    The wait that watched the loads (the first wait in replication-lag.csv, started as the loads were) adds
    the rows copied it saw at each poll. Returns [{"stream", "rows", "seconds", "points": [(s, rows)],
    "polls": [(s, rows)], "tables": [(table, seconds, rows)]}]."""
    if not isinstance(replication, dict):
        return []
    first_wait = lag_waits(lag_rows or [])[:1]
    polls = {}
    for wait in first_wait:
        for row in wait["rows"]:
            if row.get("rows_copied") is not None:
                polls.setdefault(row["stream"], []).append((row.get("elapsed_seconds") or 0.0, row["rows_copied"]))
    out = []
    for job in replication.get("loads") or []:
        load = job.get("load") or {}
        name = job.get("stream") or (job.get("item") or {}).get("name")
        if not name or not load:
            continue
        seconds, rows = num(load.get("seconds")), num(load.get("rows"))
        tables = sorted(((t.get("table"), num(t.get("seconds")), num(t.get("rows"))) for t in load.get("tables") or []),
                        key=lambda t: (-t[1], str(t[0])))
        out.append(dict(stream=name, rows=rows, seconds=seconds, workers=load.get("workers"),
                        points=[(0.0, 0.0), (seconds, rows)], polls=polls.get(name, []), tables=tables))
    out.sort(key=lambda s: str(s["stream"]))
    return out


def validation_section(validation, first=5):
    """Verdict, summary, reasons, and per table that is not equal its first differing keys."""
    if not isinstance(validation, dict):
        return None
    tables = []
    for t in validation.get("tables") or []:
        if t.get("result") == "equal":
            continue
        diffs = t.get("differences") or []
        tables.append(dict(table=t.get("table"), result=t.get("result"), key=t.get("key") or [],
                           count=t.get("difference_count", len(diffs)), error=t.get("error"),
                           first=[describe_difference(d) for d in diffs[:first]],
                           more=max(0, t.get("difference_count", len(diffs)) - min(first, len(diffs)))))
    return dict(verdict=validation.get("verdict"), summary=validation.get("summary") or {},
                reasons=list(validation.get("reasons") or []), tables=tables,
                finished_at=validation.get("finished_at"), mode=validation.get("mode"),
                skipped=list(validation.get("skipped") or []), override=validation.get("override"))


def step_label(entry):
    label = "%s %s" % (entry.get("number", "-"), entry.get("step"))
    if entry.get("kind") not in (None, "step"):
        label += " (%s)" % entry["kind"]
    return label


def freeze_start(report):
    for e in report.get("timeline") or []:
        if e.get("step") == "freeze" and e.get("kind", "step") == "step":
            return num(e.get("at"))
    return None


def gantt(report):
    """The step machine's timeline as bars (label, start, seconds, kind, status), in order, and the write pause
    (from the freeze's start, as long as write_pause_seconds)."""
    if not isinstance(report, dict) or not report.get("timeline"):
        return None
    bars = [dict(label=step_label(e), step=e.get("step"), start=num(e.get("at")), seconds=num(e.get("seconds")),
                 kind=e.get("kind") or "step", status=e.get("status") or "", message=e.get("message") or "")
            for e in report["timeline"]]
    pause = None
    start = freeze_start(report)
    if start is not None and report.get("write_pause_seconds") is not None:
        pause = (start, start + num(report["write_pause_seconds"]))
    return dict(bars=bars, pause=pause, status=report.get("status"), started_at=report.get("started_at"),
                write_pause_seconds=report.get("write_pause_seconds"), freeze_timeout=report.get("freeze_timeout"),
                over_budget=report.get("over_budget"), total_seconds=report.get("total_seconds"),
                failed_step=report.get("failed_step"), reason=report.get("reason"), run_id=report.get("run_id"),
                serving=report.get("serving"), rehearsal=bool(report.get("rehearsal")))


def history_name(report):
    """rehearsal-<UTC start, compact>-<run id>.json for a rehearsal's report; None for anything else (a
    cutover, a rollback, a run the step machine did not report)."""
    if not isinstance(report, dict) or not report.get("rehearsal") or not report.get("timeline"):
        return None
    match = re.match(r"^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})", str(report.get("started_at") or ""))
    if not match:
        return None
    run_id = re.sub(r"[^A-Za-z0-9]", "", str(report.get("run_id") or ""))[:32]
    return "rehearsal-%s%s%sT%s%s%sZ%s.json" % (match.groups() + ("-" + run_id if run_id else "",))


def _step_seconds(report, step):
    for e in report.get("timeline") or []:
        if e.get("step") == step and e.get("kind", "step") == "step":
            return num(e.get("seconds"))
    return None


def lag_at_freeze(report):
    """The largest stream lag (bytes) the preflight measured, the last reading before the freeze."""
    for e in report.get("timeline") or []:
        if e.get("step") == "preflight" and isinstance(e.get("detail"), dict):
            return e["detail"].get("max_lag_bytes")
    return None


def history(rehearsals):
    """Compare rehearsals (oldest first): columns (the steps seen, in the machine's order) and one row each with
    write pause, barrier wait, lag at freeze, total and the duration of each step; then a verdict on the last
    one against the budget and the earlier ones."""
    unique = {}
    for r in rehearsals:
        if isinstance(r, dict) and r.get("timeline"):
            unique.setdefault((str(r.get("started_at") or ""), str(r.get("run_id") or "")), r)
    ordered = [unique[k] for k in sorted(unique)]
    steps = []
    for r in ordered:
        for e in sorted(r["timeline"], key=lambda e: num(e.get("number"), 99)):
            if e.get("kind", "step") == "step" and e.get("step") not in steps:
                steps.append(e.get("step"))
    rows = []
    for r in ordered:
        rows.append(dict(started_at=r.get("started_at"), run_id=r.get("run_id"), status=r.get("status"),
                         write_pause=r.get("write_pause_seconds"), budget=r.get("freeze_timeout"),
                         over_budget=bool(r.get("over_budget")), barrier=_step_seconds(r, "barrier"),
                         lag_at_freeze=lag_at_freeze(r), total=r.get("total_seconds"),
                         steps=dict((s, _step_seconds(r, s)) for s in steps)))
    return dict(steps=steps, rows=rows, verdict=history_verdict(rows))


def history_verdict(rows):
    """Whether the last rehearsal says the night's plan holds: it rehearsed, its write pause is within the
    budget, and how it compares with the earlier rehearsals' worst pause."""
    if not rows:
        return dict(holds=None, text="no rehearsal yet: run rehearsal.yml before the night")
    last = rows[-1]
    problems = []
    if last["status"] != "rehearsed":
        problems.append("the last rehearsal ended %s" % last["status"])
    pause, budget = last["write_pause"], last["budget"]
    if last["over_budget"] or (pause is not None and budget is not None and num(pause) > num(budget)):
        problems.append("its write pause %s is over the budget %s" % (seconds_text(pause), seconds_text(budget)))
    text = "last rehearsal %s: write pause %s (budget %s)" % (
        last["started_at"], seconds_text(pause), seconds_text(budget))
    earlier = [num(r["write_pause"]) for r in rows[:-1] if r["write_pause"] is not None]
    if earlier and pause is not None:
        text += ", the %d earlier one(s) paused %s to %s" % (len(earlier), seconds_text(min(earlier)),
                                                             seconds_text(max(earlier)))
    if problems:
        return dict(holds=False, text="%s - the plan does NOT hold: %s" % (text, "; ".join(problems)))
    return dict(holds=True, text="%s - the plan holds" % text)


def rollback_section(reports, inventory="<inventory>"):
    """What rollback.yml would do (the plan the last cutover or rehearsal recorded) and the commands."""
    source = None
    for key in ("cutover", "rehearsal"):
        r = reports.get(key)
        if isinstance(r, dict) and r.get("rollback_plan"):
            source = key
            break
    plan = list(reports[source]["rollback_plan"]) if source else []
    commands = ["ansible-playbook pgshift.aurora.rollback -i %s --check" % inventory,
                "ansible-playbook pgshift.aurora.rollback -i %s" % inventory,
                "ansible-playbook pgshift.aurora.validate -i %s" % inventory]
    serving = (reports.get("cutover") or {}).get("serving") if isinstance(reports.get("cutover"), dict) else None
    return dict(plan=plan, from_report=source, commands=commands, serving=serving)


def _clock(seconds):
    """Offset from T0 as T+mm:ss.s (or T+h:mm:ss)."""
    seconds = max(0.0, num(seconds))
    minutes, rest = divmod(seconds, 60)
    if minutes >= 60:
        hours, minutes = divmod(int(minutes), 60)
        return "T+%d:%02d:%02d" % (hours, minutes, int(rest))
    return "T+%02d:%04.1f" % (int(minutes), rest)


CUTOVER_STEPS = ("preflight", "freeze", "barrier", "sequences", "finishing", "verify", "return_path", "switch",
                 "replication", "postcheck")


def runbook(reports, rehearsals=(), inventory="<inventory>"):
    """The night's plan as rows (at, what, command, measured, checkpoint): the last checks, the go/no-go
    points, each cutover step with its measured duration (the last rehearsal's; the steps a rehearsal does not
    run from the last cutover), then the rollback. Offsets add up measured durations only."""
    hist = history(list(rehearsals) + ([reports["rehearsal"]] if isinstance(reports.get("rehearsal"), dict) else []))
    last = None
    if hist["rows"]:
        wanted = hist["rows"][-1]
        for r in list(rehearsals) + [reports.get("rehearsal")]:
            if isinstance(r, dict) and r.get("started_at") == wanted["started_at"] and r.get("run_id") == wanted["run_id"]:
                last = r
    cutover = reports.get("cutover") if isinstance(reports.get("cutover"), dict) else None
    validation = reports.get("validation") if isinstance(reports.get("validation"), dict) else None
    replication = reports.get("replication") if isinstance(reports.get("replication"), dict) else None
    inv = inventory
    rows = []
    t = 0.0

    def add(what, command=None, measured=None, source=None, checkpoint=None):
        rows.append(dict(at=_clock(t), what=what, command=command, measured=measured, source=source,
                         checkpoint=checkpoint))

    catch_up = None
    if replication:
        catch_up = (replication.get("caught_up") or {}).get("elapsed_seconds")
    add("Replication caught up: every stream streaming within the lag limits",
        "ansible-playbook pgshift.aurora.replicate -i %s" % inv, catch_up,
        "replication.json (last catch-up wait)" if catch_up is not None else None,
        "GO only when replication.json says caught_up (now: %s)" % (replication.get("status") if replication else "not run yet"))
    t += num(catch_up)
    v_seconds = (validation.get("summary") or {}).get("seconds") if validation else None
    add("Validate: counts, checksums, sequences", "ansible-playbook pgshift.aurora.validate -i %s" % inv, v_seconds,
        "validation.json" if v_seconds is not None else None,
        "GO only on verdict GO (last: %s)" % (validation.get("verdict") if validation else "not run yet"))
    t += num(v_seconds)
    r_total = last.get("total_seconds") if last else None
    add("Rehearse once more (measures the write pause, proves the way back, switches nothing)",
        "ansible-playbook pgshift.aurora.rehearsal -i %s" % inv, r_total,
        "rehearsal %s" % last.get("started_at") if last else None,
        "GO only if status rehearsed and the write pause fits the budget (%s)" % hist["verdict"]["text"])
    t += num(r_total)
    add("Announce the write pause; the team confirms GO", None, None, None,
        "GO / NO-GO: DBA, application owner, on-call agree")
    add("Cutover starts", "ansible-playbook pgshift.aurora.cutover -i %s" % inv, None, None, None)
    measured = {}
    for source_name, report in (("last cutover", cutover), ("last rehearsal", last)):
        for e in (report or {}).get("timeline") or []:
            if e.get("kind", "step") == "step":
                measured[e.get("step")] = (num(e.get("seconds")), source_name)
    order = list(CUTOVER_STEPS)
    for report in (last, cutover):
        for e in (report or {}).get("timeline") or []:
            if e.get("kind", "step") == "step" and e.get("step") not in order:
                order.append(e.get("step"))
    notes = {
        "preflight": "lag, validation age, statistics, return path checked; stops here if any fails",
        "freeze": "writes paused on the source (the write pause starts)",
        "barrier": "every stream confirmed the source's position after the freeze",
        "sequences": "sequences moved source -> target",
        "finishing": "materialized views, triggers, foreign keys",
        "verify": "row counts of the small tables compared",
        "return_path": "reverse stream target -> source created (the way back)",
        "switch": "traffic moved to the target (the write pause ends)",
        "replication": "the return stream proven to stream",
        "postcheck": "no application session left on the source",
    }
    for step in order:
        seconds, source_name = measured.get(step, (None, None))
        add("  %s: %s" % (step, notes.get(step, "step of the machine")), None, seconds, source_name,
            "automatic: the machine undoes what it did and stops" if step in ("preflight", "barrier", "verify") else None)
        t += num(seconds)
    add("Check the application on the target; validate again",
        "ansible-playbook pgshift.aurora.validate -i %s" % inv, None, None,
        "GO to stay on the target, or NO-GO: roll back now (the commands below)")
    for command in rollback_section(reports, inv)["commands"][:2]:
        add("Rollback if NO-GO", command, None, None, None)
    add("When the target is kept: clean up slots, subscriptions, publications",
        "ansible-playbook pgshift.aurora.cleanup -i %s" % inv, None, None, "only once rollback is no longer wanted")
    return rows


def runbook_lines(reports, rehearsals=(), inventory="<inventory>"):
    """runbook.md's lines (Markdown). Values from the reports are put in code spans or tables as plain text."""
    rows = runbook(reports, rehearsals, inventory)
    rb = rollback_section(reports, inventory)
    lines = ["# Cutover runbook", "",
             "Generated from the reports in this directory. Times are offsets from T0 (the start of the last",
             "checks) adding up the durations measured by the last rehearsal (and the last cutover for the steps",
             "only a cutover runs); the time people take to decide is not included: add it.", "",
             "| at | step | command | measured | go / no-go |", "|---|---|---|---|---|"]
    for r in rows:
        measured = "-" if r["measured"] is None else "%s (%s)" % (seconds_text(r["measured"]), r["source"])
        lines.append("| %s | %s | %s | %s | %s |" % (
            r["at"], _md_cell(r["what"]), ("`%s`" % _md_cell(r["command"])) if r["command"] else "",
            _md_cell(measured), _md_cell(r["checkpoint"] or "")))
    lines += ["", "## Rollback", ""]
    if rb["plan"]:
        lines.append("What `rollback.yml` does (recorded by the %s):" % rb["from_report"])
        lines.append("")
        lines += ["%d. %s" % (i + 1, _md_cell(p)) for i, p in enumerate(rb["plan"])]
    else:
        lines.append("No rollback plan recorded yet: it is written by the rehearsal and the cutover.")
    lines += ["", "Commands:", ""] + ["    %s" % c for c in rb["commands"]] + [""]
    return lines


def _md_cell(text):
    return str(text).replace("|", "\\|").replace("\n", " ")
