# -*- coding: utf-8 -*-
# Copyright: pgshift.aurora contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Render the migration report (index.html, runbook.md) from the JSON reports in a report directory.

Controller side: used by the report_files action after it wrote a phase's files. What is shown comes from the
pure functions of module_utils/report_index.py; this file reads the directory, draws the figures (svg_chart.py:
SVG inlined in the page, the page needs no network, and no plotting library on the controller) and writes the HTML
and Markdown text. Every value taken from a report is HTML-escaped.
"""

from __future__ import annotations

import html
import json
import os

from ansible_collections.pgshift.aurora.plugins.module_utils import report_index as ri
from ansible_collections.pgshift.aurora.plugins.plugin_utils import svg_chart

COLORS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22",
          "#17becf")
KIND_COLORS = dict(step="#4c72b0", undo="#999999", check="#55a868")


def e(value):
    """HTML-escaped text of any value (None as a dash)."""
    return html.escape("-" if value is None else str(value), quote=True)


# ------------------------------------------------------------------------------------------------------------
# Reading the directory

def read_reports(report_dir):
    """The phases' JSON reports present in report_dir ({key: dict}), the lag CSV's text, the kept rehearsals,
    and the files that could not be read ({name: error})."""
    reports, unreadable = {}, {}
    for name in ri.REPORT_FILES:
        path = os.path.join(report_dir, name)
        if not os.path.isfile(path):
            continue
        try:
            with open(path, encoding="utf-8") as handle:
                data = json.load(handle)
        except (OSError, ValueError) as exc:
            unreadable[name] = str(exc)
            continue
        if isinstance(data, dict):
            reports[name[:-len(".json")]] = data
        else:
            unreadable[name] = "not a JSON object"
    lag_text = None
    lag_path = os.path.join(report_dir, "replication-lag.csv")
    if os.path.isfile(lag_path):
        with open(lag_path, encoding="utf-8") as handle:
            lag_text = handle.read()
    rehearsals = []
    history_dir = os.path.join(report_dir, ri.HISTORY_DIR)
    if os.path.isdir(history_dir):
        for name in sorted(os.listdir(history_dir)):
            if not ri.HISTORY_PATTERN.match(name):
                continue
            try:
                with open(os.path.join(history_dir, name), encoding="utf-8") as handle:
                    data = json.load(handle)
            except (OSError, ValueError) as exc:
                unreadable[ri.HISTORY_DIR + "/" + name] = str(exc)
                continue
            if isinstance(data, dict):
                rehearsals.append(data)
    return reports, lag_text, rehearsals, unreadable


def history_entry(report_dir):
    """(name, text) of rehearsal.json to keep in report_dir/rehearsals/ when it is a rehearsal not kept yet,
    else None. The copy is the report's exact text."""
    path = os.path.join(report_dir, "rehearsal.json")
    if not os.path.isfile(path):
        return None
    try:
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
        name = ri.history_name(json.loads(text))
    except (OSError, ValueError):
        return None
    if name is None or os.path.exists(os.path.join(report_dir, ri.HISTORY_DIR, name)):
        return None
    return name, text


# ------------------------------------------------------------------------------------------------------------
# Figures (svg_chart: 7.5 x height inches at 100 px an inch, as the page has always laid them out)

def _chart(name, width, height):
    return svg_chart.Chart(name, width * 100, height * 100)


def plan_figure(plan):
    streams = plan["streams"]
    chart = _chart("plan", 7.5, 0.5 + 0.45 * max(1, len(streams)))
    ax = chart.panels[0]
    names = [str(s["name"]) for s in streams]
    sizes = [ri.num(s["bytes"]) / 1048576.0 for s in streams]
    y = list(range(len(names)))
    ax.hbars(y, sizes, [COLORS[i % len(COLORS)] for i in y])
    for i, s in enumerate(streams):
        ax.text(sizes[i], i, " %s tables, %s rows" % (s["tables"], "{:,}".format(int(ri.num(s["rows"])))))
    ax.ycats = names
    ax.xlabel = "planned size (MiB)"
    ax.xlim = [0, max(sizes + [1.0]) * 1.45]
    return chart.render()


def load_figure(series):
    polled = any(s["polls"] for s in series)
    chart = _chart("load", 7.5, 3.2)
    if polled:
        left, right = chart.grid(1, 2, sharey=True)
    else:
        left, right = chart.panels[0], None
    for i, s in enumerate(series):
        color = COLORS[i % len(COLORS)]
        xs, ys = zip(*s["points"])
        left.line(xs, ys, color, dash="--", marker="o", label=str(s["stream"]))
        if right is not None and s["polls"]:
            px, py = zip(*s["polls"])
            right.line(px, py, color, marker="x", label=str(s["stream"]))
    left.title = "load jobs: start and end"
    left.xlabel = "seconds since the stream's load started"
    left.ylabel = "rows loaded"
    left.ylim = [0, None]
    left.xlim = [0, None]
    left.legend()
    if right is not None:
        right.title = "rows copied, as each poll of the wait saw them"
        right.xlabel = "seconds since the wait started"
        right.xlim = [0, None]
        right.ylim = [0, None]
    return chart.render()


def lag_figure(lag):
    chart = _chart("lag", 7.5, 4.2)
    top, bottom = chart.grid(2, 1, sharex=True)
    for i, (stream, s) in enumerate(sorted(lag["streams"].items())):
        color = COLORS[i % len(COLORS)]
        top.line(s["x"], [b / 1024.0 for b in s["lag_bytes"]], color, marker=".", label=stream)
        bottom.line(s["x"], s["lag_seconds"], color, marker=".", label=stream)
    for axis in (top, bottom):
        for x in lag["wait_starts"]:
            axis.rule(x, "#999999", dash=":")
        axis.ylim = [0, None]
    top.ylabel = "lag (KiB)"
    bottom.ylabel = "lag (s)"
    bottom.xlabel = "seconds of waiting (the waits end to end; dotted: the next wait starts)"
    top.legend()
    return chart.render()


def gantt_figure(chart_data, name):
    bars = chart_data["bars"]
    chart = _chart(name, 7.5, 0.7 + 0.32 * len(bars))
    ax = chart.panels[0]
    end = max([b["start"] + b["seconds"] for b in bars] + [ri.num(chart_data["total_seconds"]), 0.001])
    if chart_data["pause"]:
        start, stop = chart_data["pause"]
        ax.band(start, stop, "#d62728", label="write pause %s" % ri.seconds_text(stop - start))
        ax.rule(start, "#d62728")
        ax.rule(stop, "#d62728")
        end = max(end, stop)
    widths = [max(b["seconds"], end * 0.002) for b in bars]
    ax.hbars(list(range(len(bars))), widths, [
        "#d62728" if b["status"] not in ("ok", "") else KIND_COLORS.get(b["kind"], "#4c72b0") for b in bars],
        lefts=[b["start"] for b in bars])
    for i, b in enumerate(bars):
        ax.text(b["start"] + widths[i] + end * 0.005, i, ri.seconds_text(b["seconds"]), size=svg_chart.SMALL_FONT)
    ax.ycats = [b["label"] for b in bars]
    ax.xlim = [0, end * 1.12]
    ax.xlabel = "seconds since the start of the run"
    if chart_data["pause"]:
        ax.legend()
    return chart.render()


def history_figure(hist):
    rows = hist["rows"]
    chart = _chart("history", 7.5, 3.4)
    left, right = chart.grid(1, 2, width_ratios=(3, 2))
    labels = ["#%d\n%s" % (i + 1, str(r["started_at"] or "")[11:19]) for i, r in enumerate(rows)]
    x = list(range(len(rows)))
    bottom = [0.0] * len(rows)
    for j, step in enumerate(hist["steps"]):
        values = [ri.num(r["steps"].get(step)) for r in rows]
        left.bars(x, values, COLORS[j % len(COLORS)], bottoms=bottom, label=str(step))
        bottom = [b + v for b, v in zip(bottom, values)]
    left.line(x, [ri.num(r["write_pause"]) for r in rows], "black", marker="D", label="write pause")
    left.line(x, [ri.num(r["barrier"]) for r in rows], "#555555", dash=":", marker="v", label="barrier wait")
    left.xcats = labels
    left.ylabel = "seconds"
    # room above the tallest bar for the legend (nine entries or so, over the bars otherwise)
    tallest = max(bottom + [ri.num(r["write_pause"]) for r in rows] + [ri.num(r["barrier"]) for r in rows] + [0.0])
    left.ylim = [0, (tallest or 1.0) * 1.6]
    left.title = "step durations per rehearsal"
    left.legend(columns=2)
    right.bars(x, [ri.num(r["lag_at_freeze"]) / 1024.0 for r in rows], "#8172b2")
    right.xcats = labels
    right.ylabel = "KiB"
    right.ylim = [0, None]
    right.title = "largest stream lag before the freeze"
    return chart.render()


# ------------------------------------------------------------------------------------------------------------
# HTML

CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;color:#222;background:#f6f7f9}
header{background:#1f2d3d;color:#fff;padding:14px 24px}header h1{margin:0;font-size:20px}
header p{margin:4px 0 0;font-size:13px;color:#cfd8e3}
main{max-width:1100px;margin:0 auto;padding:8px 24px 40px}
section{background:#fff;border:1px solid #dde2e8;border-radius:6px;margin:16px 0;padding:12px 18px}
h2{font-size:17px;margin:4px 0 10px}h3{font-size:14px;margin:14px 0 6px}
table{border-collapse:collapse;font-size:12.5px;margin:6px 0;width:100%}
th,td{border:1px solid #dde2e8;padding:3px 6px;text-align:left;vertical-align:top}
th{background:#eef1f5}td.n{text-align:right;font-variant-numeric:tabular-nums}
.notrun{color:#777;font-style:italic}.go{color:#1a7f37;font-weight:bold}.nogo{color:#c62828;font-weight:bold}
.blocker{border-left:4px solid #c62828;padding-left:8px;margin:8px 0}
.warning{border-left:4px solid #e0a800;padding-left:8px;margin:8px 0}
.fix{color:#1f4e79}figure{margin:8px 0}figcaption{font-size:12px;color:#555}
svg.figure{max-width:100%;height:auto;display:block}
code,pre{font-family:ui-monospace,Menlo,Consolas,monospace;font-size:12px}
pre{background:#f0f2f5;padding:8px;border-radius:4px;white-space:pre-wrap}
nav a{color:#cfd8e3;margin-right:12px;font-size:13px}
"""


def _table(head, rows, numeric=()):
    out = ["<table><thead><tr>%s</tr></thead><tbody>" % "".join("<th>%s</th>" % e(h) for h in head)]
    for row in rows:
        out.append("<tr>%s</tr>" % "".join(
            '<td class="n">%s</td>' % e(v) if i in numeric else "<td>%s</td>" % e(v) for i, v in enumerate(row)))
    out.append("</tbody></table>")
    return "".join(out)


def _outcome(value):
    text = str(value)
    good = text in ("GO", "caught_up", "rehearsed", "switched", "done", "ok", "written")
    bad = text in ("NO-GO", "failed", "aborted", "not_caught_up") or text.startswith("failed")
    cls = "go" if good else ("nogo" if bad else "")
    return '<span class="%s">%s</span>' % (cls, e(text)) if cls else e(text)


def _not_run(what, playbook):
    return '<p class="notrun">not run yet: %s (ansible-playbook pgshift.aurora.%s)</p>' % (e(what), e(playbook))


def _figure_html(name, svg_text, caption):
    return '<figure id="fig-%s">%s<figcaption>%s</figcaption></figure>' % (e(name), svg_text, e(caption))


def section_phases(reports, unreadable):
    rows = ri.phase_rows(reports)
    body = ["<table><thead><tr><th>phase</th><th>playbook</th><th>outcome</th><th>written</th></tr></thead><tbody>"]
    for r in rows:
        outcome = _outcome(r["outcome"]) if r["ran"] else '<span class="notrun">not run yet</span>'
        body.append("<tr><td>%s</td><td><code>pgshift.aurora.%s</code></td><td>%s</td><td>%s</td></tr>" % (
            e(r["title"]), e(r["playbook"]), outcome, e(r["at"] or "")))
    body.append("</tbody></table>")
    for name, error in sorted(unreadable.items()):
        body.append('<p class="nogo">%s could not be read: %s</p>' % (e(name), e(error)))
    return body


def section_assessment(reports):
    a = ri.assessment_section(reports.get("assessment"))
    if a is None:
        return [_not_run("the assessment", "assess")]
    out = ["<p>Decision: %s - %s (%s)</p>" % (_outcome(a["decision"]), e(a["reason"]), e(a["generated_at"]))]
    for kind, items in (("blocker", a["blockers"]), ("warning", a["warnings"])):
        out.append("<h3>%ss (%d)</h3>" % (kind.capitalize(), len(items)))
        if not items:
            out.append("<p>none</p>")
        for f in items:
            out.append('<div class="%s"><b>%s</b> <code>%s</code> (%s)<br>%s<br><span class="fix">fix: %s</span></div>'
                       % (kind, e(f["id"]), e(f["object"]), e(f["side"]), e(f["detail"]), e(f["fix"])))
    return out


def section_plan(reports):
    plan = ri.plan_section(ri.plan_of(reports))
    if plan is None:
        return [_not_run("the replication plan", "replicate")], []
    t = plan["totals"]
    out = ["<p>Engine %s: %s stream(s), %s table(s), %s rows, %s; estimated load %s.</p>" % (
        e(plan["engine"]), e(t.get("streams", len(plan["streams"]))), e(t.get("tables")),
        e("{:,}".format(int(ri.num(t.get("rows"))))), e(ri.human_bytes(t.get("bytes"))),
        e(ri.seconds_text(t.get("estimated_load_seconds"))))]
    out.append(_table(("stream", "tables", "rows", "size", "estimated load", "writes/s", "share of writes"),
                      [(s["name"], s["tables"], "{:,}".format(int(ri.num(s["rows"]))), ri.human_bytes(s["bytes"]),
                        ri.seconds_text(s["estimated_load_seconds"]), s["writes_per_second"], s["writes_share"])
                       for s in plan["streams"]], numeric=(1, 2, 3, 4, 5, 6)))
    figs = []
    if plan["streams"]:
        figs.append(_figure_html("plan", plan_figure(plan), "Planned size of each stream."))
    out.append("<details><summary>%d table(s), largest first</summary>" % len(plan["tables"]))
    out.append(_table(("stream", "table", "kind", "rows", "size", "split", "primary key"),
                      [(t["stream"], t["table"], t["kind"], "{:,}".format(int(ri.num(t["rows"]))),
                        ri.human_bytes(t["bytes"]), t["split"], ", ".join(str(k) for k in t["primary_key"]) or "none")
                       for t in plan["tables"]], numeric=(3, 4, 5)))
    out.append("</details>")
    if plan["not_replicated"]:
        out.append("<h3>Not replicated</h3>")
        out.append(_table(("table", "reason"), [(n["table"], n["reason"]) for n in plan["not_replicated"]]))
    return out, figs


def section_load(reports, lag_rows):
    # replication.json of a run that had nothing left to load has no loads: the last run that loaded kept them
    series = ri.load_series(reports.get("replication"), lag_rows) or ri.load_series(reports.get("initial-load"), lag_rows)
    if not series:
        return [_not_run("the initial load", "replicate")]
    out = [_figure_html("load", load_figure(series),
                        "Rows loaded per stream. Left: what each load job measured, its start and its end (the "
                        "dashed line between them is the average rate, not a measurement; per table only the "
                        "copy's duration is recorded, listed below). Right: the rows copied each poll of the wait "
                        "saw (replication-lag.csv); the wait starts once the loads are launched and the held-back "
                        "indexes scheduled, on its own clock.")]
    out.append(_table(("stream", "rows", "wall time", "workers", "slowest tables (copy seconds)"),
                      [(s["stream"], "{:,}".format(int(s["rows"])), ri.seconds_text(s["seconds"]), s["workers"],
                        ", ".join("%s %s" % (t[0], ri.seconds_text(t[1])) for t in s["tables"][:3]))
                       for s in series], numeric=(1, 2, 3)))
    return out


def section_lag(lag_rows):
    if not lag_rows:
        return [_not_run("replication-lag.csv (the replication waits)", "replicate")]
    lag = ri.lag_series(lag_rows)
    return [_figure_html("lag", lag_figure(lag),
                         "Replication lag of each stream at every poll of the waits (replication-lag.csv); the "
                         "waits are drawn end to end, the time between two waits is not recorded.")]


def section_validation(reports):
    v = ri.validation_section(reports.get("validation"))
    if v is None:
        return [_not_run("the validation", "validate")]
    s = v["summary"]
    out = ["<p>Verdict: %s (%s mode, finished %s%s)</p>" % (
        _outcome(v["verdict"]), e(v["mode"]), e(v["finished_at"]), ", OVERRIDDEN" if v["override"] else "")]
    out.append(_table(("tables", "equal", "different", "errors", "rows compared", "differences", "schema differences",
                       "sequences not ok", "seconds"),
                      [(s.get("tables"), s.get("tables_equal"), s.get("tables_different"), s.get("tables_error"),
                        s.get("rows_compared"), s.get("differences"), s.get("schema_differences"),
                        s.get("sequences_not_ok"), s.get("seconds"))], numeric=tuple(range(9))))
    if v["reasons"]:
        out.append("<h3>Reasons</h3><ul>%s</ul>" % "".join("<li>%s</li>" % e(r) for r in v["reasons"]))
    if v["tables"]:
        out.append("<h3>Tables that differ (first differing keys)</h3>")
        out.append(_table(("table", "result", "key", "differences", "first differences"),
                          [(t["table"], t["result"], ", ".join(str(k) for k in t["key"]), t["count"],
                            "; ".join(t["first"]) + (" (+%d more)" % t["more"] if t["more"] else "")
                            + ((" error: %s" % t["error"]) if t["error"] else "")) for t in v["tables"]],
                          numeric=(3,)))
    else:
        out.append("<p>No table differs.</p>")
    if v["skipped"]:
        skipped = "; ".join("%s (%s)" % (k.get("table"), k.get("reason")) for k in v["skipped"])
        out.append("<p>Skipped: %s</p>" % e(skipped))
    return out


def section_timelines(reports):
    out = []
    for key, title, playbook in (("rehearsal", "Last rehearsal", "rehearsal"), ("cutover", "Cutover", "cutover"),
                                 ("rollback", "Rollback", "rollback")):
        chart = ri.gantt(reports.get(key))
        out.append("<h3>%s</h3>" % e(title))
        if chart is None:
            out.append(_not_run(title.lower(), playbook))
            continue
        out.append("<p>Status %s; write pause %s (budget %s)%s; total %s; started %s; the %s serves.</p>" % (
            _outcome(chart["status"]), e(ri.seconds_text(chart["write_pause_seconds"])),
            e(ri.seconds_text(chart["freeze_timeout"])), " OVER BUDGET" if chart["over_budget"] else "",
            e(ri.seconds_text(chart["total_seconds"])), e(chart["started_at"]), e(chart["serving"])))
        if chart["failed_step"]:
            out.append('<p class="nogo">failed at %s: %s</p>' % (e(chart["failed_step"]), e(chart["reason"])))
        out.append(_figure_html("gantt-%s" % key, gantt_figure(chart, "gantt-%s" % key),
                                "Steps of the %s (blue: step, green: check, grey: undo, red: failed); the red band is "
                                "the write pause." % title.lower()))
    return out


def section_history(rehearsals):
    hist = ri.history(rehearsals)
    if not hist["rows"]:
        return [_not_run("no rehearsal kept yet", "rehearsal")]
    v = hist["verdict"]
    out = ['<p class="%s">%s</p>' % ("go" if v["holds"] else "nogo", e(v["text"]))]
    head = ["#", "started", "status", "write pause", "barrier wait", "lag before freeze", "total"] + hist["steps"]
    rows = []
    for i, r in enumerate(hist["rows"]):
        rows.append([i + 1, r["started_at"], r["status"], ri.seconds_text(r["write_pause"]),
                     ri.seconds_text(r["barrier"]),
                     "-" if r["lag_at_freeze"] is None else ri.human_bytes(r["lag_at_freeze"]),
                     ri.seconds_text(r["total"])] + [ri.seconds_text(r["steps"].get(s)) for s in hist["steps"]])
    out.append(_table(head, rows, numeric=tuple([0] + list(range(3, len(head))))))
    out.append(_figure_html("history", history_figure(hist),
                            "Each kept rehearsal (report_dir/rehearsals/): its steps' durations stacked, the write "
                            "pause and the barrier wait, and the largest stream lag the preflight read before the "
                            "freeze."))
    return out


def section_rollback(reports, inventory):
    rb = ri.rollback_section(reports, inventory)
    out = []
    if rb["plan"]:
        out.append("<p>What rollback.yml would do (as the %s recorded it):</p><ol>%s</ol>" % (
            e(rb["from_report"]), "".join("<li>%s</li>" % e(p) for p in rb["plan"])))
    else:
        out.append(_not_run("no rollback plan recorded yet (the rehearsal and the cutover record it)", "rehearsal"))
    if rb["serving"]:
        out.append("<p>Serving the application now (cutover.json): %s</p>" % e(rb["serving"]))
    out.append("<p>Commands:</p><pre>%s</pre>" % e("\n".join(rb["commands"])))
    return out


SECTIONS = (
    ("phases", "Phases"),
    ("assessment", "Assessment: blockers and warnings"),
    ("plan", "Replication plan"),
    ("load", "Initial load"),
    ("lag", "Replication lag"),
    ("validation", "Validation"),
    ("timelines", "Rehearsal and cutover timelines"),
    ("history", "Rehearsal history"),
    ("rollback", "Rollback plan"),
)


def render_html(reports, lag_rows, rehearsals, unreadable, inventory):
    plan_body, plan_figs = section_plan(reports)
    bodies = dict(
        phases=section_phases(reports, unreadable),
        assessment=section_assessment(reports),
        plan=plan_figs + plan_body,
        load=section_load(reports, lag_rows),
        lag=section_lag(lag_rows),
        validation=section_validation(reports),
        timelines=section_timelines(reports),
        history=section_history(rehearsals),
        rollback=section_rollback(reports, inventory),
    )
    names = set()
    stamps = []
    for r in reports.values():
        if r.get("migration_name") or r.get("migration"):
            names.add(str(r.get("migration_name") or r.get("migration")))
        stamp = r.get("generated_at") or r.get("finished_at") or r.get("started_at")
        if stamp:
            stamps.append(str(stamp))
    title = "Migration %s" % ", ".join(sorted(names)) if names else "Migration report"
    parts = ['<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">',
             '<meta name="viewport" content="width=device-width, initial-scale=1">',
             "<title>%s - pgshift.aurora</title><style>%s</style></head><body>" % (e(title), CSS),
             "<header><h1>%s</h1><p>pgshift.aurora migration report; newest report %s. The runbook: "
             '<a style="color:#fff" href="runbook.md">runbook.md</a></p><nav>%s</nav></header><main>' % (
                 e(title), e(max(stamps) if stamps else "-"),
                 "".join('<a href="#%s">%s</a>' % (key, e(head)) for key, head in SECTIONS))]
    for key, head in SECTIONS:
        parts.append('<section id="%s"><h2>%s</h2>%s</section>' % (key, e(head), "\n".join(bodies[key])))
    parts.append("</main></body></html>\n")
    return "\n".join(parts)


def render(report_dir, inventory=None):
    """{"index.html": text, "runbook.md": text} for report_dir, and the rehearsal to keep (name, text) or None."""
    inventory = inventory or "<inventory>"
    keep = history_entry(report_dir)
    reports, lag_text, rehearsals, unreadable = read_reports(report_dir)
    if keep is not None:
        rehearsals.append(json.loads(keep[1]))
    lag_rows = ri.parse_lag_csv(lag_text) if lag_text else []
    page = render_html(reports, lag_rows, rehearsals, unreadable, inventory)
    runbook = "\n".join(ri.runbook_lines(reports, rehearsals, inventory))
    return {"index.html": page, "runbook.md": runbook}, keep
