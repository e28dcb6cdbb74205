"""module_utils/report_index.py: what the migration report shows, from the phases' JSON reports (trimmed real
reports in tests/unit/fixtures/report), and the renderer's output (escaping, determinism, the history kept)."""

from __future__ import annotations

import copy
import json
import os
import shutil

import pytest

from ansible_collections.pgshift.aurora.plugins.module_utils import report_index as ri

FIXTURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures", "report")


def load(name):
    with open(os.path.join(FIXTURES, name), encoding="utf-8") as handle:
        return handle.read() if name.endswith(".csv") else json.load(handle)


@pytest.fixture
def reports():
    return dict((n[:-5], load(n)) for n in sorted(os.listdir(FIXTURES)) if n.endswith(".json"))


def shifted(rehearsal, started_at, run_id, factor):
    r = copy.deepcopy(rehearsal)
    r["started_at"], r["run_id"] = started_at, run_id
    for e in r["timeline"]:
        e["at"], e["seconds"] = round(e["at"] * factor, 3), round(e["seconds"] * factor, 3)
    r["write_pause_seconds"] = round(r["write_pause_seconds"] * factor, 3)
    r["total_seconds"] = round(r["total_seconds"] * factor, 3)
    return r


# ---------------------------------------------------------------------------------------------------- sections

def test_phase_rows_mark_the_phases_not_run(reports):
    rows = dict((r["key"], r) for r in ri.phase_rows(reports))
    assert rows["assessment"]["ran"] and rows["assessment"]["outcome"] == "GO"
    assert rows["replication"]["outcome"] == "caught_up" and rows["rehearsal"]["outcome"] == "rehearsed"
    assert rows["validation"]["at"] == "2026-12-06T10:50:00Z"
    assert rows["rollback"] == dict(key="rollback", title="Rollback", playbook="rollback", ran=False, at=None,
                                    outcome="not run yet")
    assert [r["key"] for r in ri.phase_rows({})][:2] == ["assessment", "preparation"]


def test_assessment_section_keeps_each_finding_with_its_fix(reports):
    a = copy.deepcopy(reports["assessment"])
    a["blockers"] = [dict(id="no_primary_key", severity="blocker", object='"eu.west ""archive"""."t"', side="source",
                          detail="no key", remediation="add one")]
    section = ri.assessment_section(a)
    assert section["blockers"] == [dict(id="no_primary_key", severity="blocker", object='"eu.west ""archive"""."t"',
                                        side="source", detail="no key", fix="add one")]
    assert [w["id"] for w in section["warnings"]] == [
        "inheritance_children", "inheritance_children", "max_slot_wal_keep_size"]
    assert section["warnings"][2]["fix"].startswith("cap it below")
    assert ri.assessment_section(None) is None


def test_plan_section_lists_streams_and_tables_largest_first(reports):
    plan = ri.plan_section(ri.plan_of(reports))
    assert [(s["name"], s["tables"], s["rows"]) for s in plan["streams"]] == [
        ("pgshift_shipping_s1", 2, 1000010), ("pgshift_shipping_s2", 37, 75418)]
    assert plan["tables"][0]["table"] == "public.pgbench_accounts"
    sizes = [t["bytes"] for t in plan["tables"]]
    assert sizes == sorted(sizes, reverse=True)
    assert plan["not_replicated"] == [dict(table="public.session_cache", reason=reports["plan"]["not_replicated"][0]["reason"])]


def test_plan_of_falls_back_on_the_replication_reports_plan(reports):
    assert ri.plan_of(dict(replication=dict(plan=dict(streams=[], totals={})))) == dict(streams=[], totals={})
    assert ri.plan_of({}) is None and ri.plan_section(None) is None


def test_lag_csv_is_cut_into_the_waits_that_appended_it():
    rows = ri.parse_lag_csv(load("replication-lag.csv"))
    assert len(rows) == 6 and rows[0]["stream"] == "pgshift_shipping_s1" and rows[0]["lag_bytes"] == 211528.0
    waits = ri.lag_waits(rows)
    # 0.1, 0.3 then 0.0 again: a second wait.
    assert [len(w["rows"]) for w in waits] == [4, 2]
    assert waits[1]["offset"] > waits[0]["end"]
    series = ri.lag_series(rows)
    assert series["wait_starts"] == [waits[1]["offset"]]
    s1 = series["streams"]["pgshift_shipping_s1"]
    assert s1["lag_bytes"] == [211528.0, 6624.0, 2232.0] and s1["x"] == sorted(s1["x"])


def test_parse_lag_csv_skips_empty_lines_and_keeps_missing_values_as_none():
    rows = ri.parse_lag_csv("elapsed_seconds,stream,state,lag_bytes\n1.5,s1,copying,\n,,,\n")
    assert rows == [dict(stream="s1", state="copying", elapsed_seconds=1.5, lag_bytes=None, lag_seconds=None,
                         retained_bytes=None, rows_copied=None, bytes_copied=None, load_percent=None)]


def test_load_series_draws_only_what_was_measured(reports):
    series = ri.load_series(reports["replication"], ri.parse_lag_csv(load("replication-lag.csv")))
    s1 = series[0]
    assert s1["stream"] == "pgshift_shipping_s1" and s1["points"] == [(0.0, 0.0), (2.225, 1000010.0)]
    # The first wait's polls only (the catch-up wait is not the load).
    assert s1["polls"] == [(0.1, 1000010.0), (0.3, 1000010.0)]
    assert s1["tables"][0] == ("public.pgbench_accounts", 2.193, 1000000.0)
    assert ri.load_series(None, []) == [] and ri.load_series(dict(loads=[dict(stream="x")]), []) == []


def test_validation_section_shows_the_first_differing_keys(reports):
    v = copy.deepcopy(reports["validation"])
    v["verdict"] = "NO-GO"
    v["tables"][1].update(result="different", difference_count=7, differences=[
        dict(kind="missing", key=[5, "2025-01-01"]), dict(kind="changed", key=[6, "x"], columns=["At"]),
        dict(kind="extra", key=[9, "y"])])
    section = ri.validation_section(v, first=2)
    assert section["verdict"] == "NO-GO" and len(section["tables"]) == 1
    t = section["tables"][0]
    assert t["table"] == '"Shipping Ops"."Events.2025-02"' and t["count"] == 7 and t["more"] == 5
    assert len(t["first"]) == 2 and "missing" in t["first"][0] and "(columns At)" in t["first"][1]
    assert ri.validation_section(reports["validation"])["tables"] == []


def test_gantt_bars_and_write_pause(reports):
    chart = ri.gantt(reports["rehearsal"])
    assert [b["label"] for b in chart["bars"]][:3] == ["1 preflight", "2 freeze", "3 barrier"]
    assert chart["bars"][7]["label"] == "2 freeze (undo)" and chart["bars"][7]["kind"] == "undo"
    # The pause starts with the freeze and lasts write_pause_seconds: it ends when the freeze is undone.
    start, end = chart["pause"]
    assert start == 0.063 and end == pytest.approx(0.063 + 0.116)
    undo = chart["bars"][7]
    assert end == pytest.approx(undo["start"] + undo["seconds"], abs=0.002)
    cut = ri.gantt(reports["cutover"])
    switch = [b for b in cut["bars"] if b["step"] == "switch"][0]
    assert cut["pause"][1] == pytest.approx(switch["start"] + switch["seconds"], abs=0.002)
    assert ri.gantt(None) is None and ri.gantt(dict(status="failed")) is None


def test_history_name_is_the_rehearsals_utc_start(reports):
    assert ri.history_name(reports["rehearsal"]) == "rehearsal-20261206T105003Z-faeaea6a5923.json"
    assert ri.HISTORY_PATTERN.match(ri.history_name(reports["rehearsal"]))
    assert ri.history_name(reports["cutover"]) is None  # not a rehearsal
    assert ri.history_name(dict(reports["rehearsal"], started_at=None)) is None
    assert ri.history_name(dict(reports["rehearsal"], run_id="../../x")) == "rehearsal-20261206T105003Z-x.json"


def test_history_compares_rehearsals_oldest_first(reports):
    last = reports["rehearsal"]
    slow = shifted(last, "2026-12-05T22:00:00Z", "aaaa", 3)
    hist = ri.history([last, slow, copy.deepcopy(last)])  # the same rehearsal twice counts once
    assert [r["run_id"] for r in hist["rows"]] == ["aaaa", "faeaea6a5923"]
    assert hist["steps"] == ["preflight", "freeze", "barrier", "sequences", "finishing", "verify", "return_path"]
    assert hist["rows"][0]["barrier"] == 0.012 and hist["rows"][1]["barrier"] == 0.004
    assert hist["rows"][1]["lag_at_freeze"] == 12152 and hist["rows"][1]["write_pause"] == 0.116
    assert hist["verdict"]["holds"] is True and "the plan holds" in hist["verdict"]["text"]
    assert "1 earlier one(s) paused 0.348 s to 0.348 s" in hist["verdict"]["text"]


def test_history_verdict_says_when_the_plan_does_not_hold(reports):
    over = dict(reports["rehearsal"], write_pause_seconds=12.5, over_budget=True)
    verdict = ri.history([over])["verdict"]
    assert verdict["holds"] is False and "over the budget 10.0 s" in verdict["text"]
    failed = dict(reports["rehearsal"], status="aborted")
    assert "ended aborted" in ri.history([failed])["verdict"]["text"]
    assert ri.history([])["verdict"]["holds"] is None


def test_rollback_section_prefers_the_cutovers_plan(reports):
    rb = ri.rollback_section(reports, "inv/hosts.yml")
    assert rb["from_report"] == "cutover" and rb["plan"] == reports["cutover"]["rollback_plan"]
    assert rb["commands"][1] == "ansible-playbook pgshift.aurora.rollback -i inv/hosts.yml"
    assert rb["serving"] == "target"
    assert ri.rollback_section({})["plan"] == []


def test_runbook_uses_the_last_rehearsals_durations(reports):
    older = shifted(reports["rehearsal"], "2026-12-05T22:00:00Z", "aaaa", 3)
    rows = ri.runbook(reports, [older], "inv/hosts.yml")
    by_step = dict((r["what"].split(":")[0].strip(), r) for r in rows)
    assert by_step["freeze"]["measured"] == 0.013 and by_step["freeze"]["source"] == "last rehearsal"
    # Steps only a cutover runs come from the last cutover.
    assert by_step["switch"]["measured"] == 0.01 and by_step["switch"]["source"] == "last cutover"
    commands = [r["command"] for r in rows if r["command"]]
    assert "ansible-playbook pgshift.aurora.cutover -i inv/hosts.yml" in commands
    assert "ansible-playbook pgshift.aurora.rollback -i inv/hosts.yml" in commands
    assert any(r["checkpoint"] and "GO" in r["checkpoint"] for r in rows)
    # Offsets add up the measured durations.
    assert rows[0]["at"] == "T+00:00.0" and rows[-1]["at"] == "T+00:01.7"


def test_runbook_lines_without_any_report():
    text = "\n".join(ri.runbook_lines({}))
    assert "not run yet" in text and "No rollback plan recorded yet" in text
    assert "ansible-playbook pgshift.aurora.cutover -i <inventory>" in text


def test_runbook_lines_escape_table_cells(reports):
    r = copy.deepcopy(reports)
    r["cutover"]["rollback_plan"] = ["a | b"]
    assert "1. a \\| b" in ri.runbook_lines(r)


def test_helpers():
    assert ri.human_bytes(1536) == "1.5 KiB" and ri.human_bytes(12) == "12 B"
    assert ri.seconds_text(None) == "-" and ri.seconds_text(75) == "1 min 15 s" and ri.seconds_text(0.0123) == "0.0123 s"
    assert ri.seconds_text(7300) == "2 h 01 min"


# ---------------------------------------------------------------------------------------------------- rendering

from ansible_collections.pgshift.aurora.plugins.action import report_files as rf  # noqa: E402  pylint: disable=wrong-import-position
from ansible_collections.pgshift.aurora.plugins.plugin_utils import report_render as render  # noqa: E402  pylint: disable=wrong-import-position


@pytest.fixture
def report_dir(tmp_path):
    directory = tmp_path / "reports"
    shutil.copytree(FIXTURES, directory)
    return directory


def test_index_is_deterministic_and_keeps_the_rehearsal(report_dir):
    written = rf.write_index(str(report_dir), "inv/hosts.yml")
    kept = report_dir / "rehearsals" / "rehearsal-20261206T105003Z-faeaea6a5923.json"
    assert sorted(written) == sorted([str(kept), str(report_dir / "index.html"), str(report_dir / "runbook.md")])
    assert kept.read_text() == (report_dir / "rehearsal.json").read_text()
    first = (report_dir / "index.html").read_text()
    # The same data gives the same bytes: nothing written the second time.
    assert rf.write_index(str(report_dir), "inv/hosts.yml") == []
    assert (report_dir / "index.html").read_text() == first
    assert first.count("<svg") == 6 and "http://" not in first.replace("http://www.w3.org/", "")
    assert "<script" not in first and "https://" not in first and "<dc:date>" not in first


def test_index_escapes_every_value(report_dir):
    plan = json.loads((report_dir / "plan.json").read_text())
    plan["streams"][0]["name"] = "<script>alert(1)</script>"
    plan["streams"][0]["tables"][0]["qualified"] = 'Ops "Team" é & <b>'
    (report_dir / "plan.json").write_text(json.dumps(plan))
    rf.write_index(str(report_dir), None)
    page = (report_dir / "index.html").read_text()
    assert "<script>" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "Ops &quot;Team&quot; é &amp; &lt;b&gt;" in page


def test_index_with_nothing_run_says_so(tmp_path):
    rf.write_index(str(tmp_path), None)
    page = (tmp_path / "index.html").read_text()
    assert page.count("not run yet") >= 11 and "<svg" not in page
    assert not (tmp_path / "rehearsals").exists()


def test_index_check_mode_writes_nothing(report_dir):
    written = rf.write_index(str(report_dir), None, check_mode=True)
    assert str(report_dir / "index.html") in written and not (report_dir / "index.html").exists()
    assert not (report_dir / "rehearsals").exists()


def test_index_reports_an_unreadable_report(report_dir):
    (report_dir / "validation.json").write_text("{not json")
    rf.write_index(str(report_dir), None)
    page = (report_dir / "index.html").read_text()
    assert "validation.json could not be read" in page


def test_a_report_that_cannot_be_read_is_a_clear_error(report_dir):
    (report_dir / "replication-lag.csv").write_bytes(b"stream,lag_bytes\n\xff\xfe\n")
    with pytest.raises(rf.ReportError, match="cannot read the reports in .* to build index.html"):
        rf.write_index(str(report_dir), None)
    assert not (report_dir / "index.html").exists()


def run_action(args, task_vars=None):
    """The report_files action run in this process, as a task with these args."""
    from types import SimpleNamespace

    task = SimpleNamespace(args=args, check_mode=False, async_val=0, action="pgshift.aurora.report_files")
    action = rf.ActionModule(task, SimpleNamespace(_shell=SimpleNamespace(tmpdir=None)), play_context=None,
                             loader=None, templar=None)
    action._load_name = "pgshift.aurora.report_files"
    return action.run(task_vars=task_vars or {})


def test_action_rebuilds_the_index_unless_told_not_to(report_dir):
    def run(args):
        return run_action(args, dict(ansible_inventory_sources=["inv/hosts.yml"]))

    out = run(dict(dir=str(report_dir), files=[], index=False))
    assert "index" not in out and not (report_dir / "index.html").exists()
    out = run(dict(dir=str(report_dir), files=[dict(name="x.md", content="x\n")]))
    assert str(report_dir / "index.html") in out["index"] and out["changed"] is False
    assert "pgshift.aurora.cutover -i inv/hosts.yml" in (report_dir / "runbook.md").read_text()


def test_action_warns_without_failing_when_the_index_cannot_be_built(report_dir):
    """The phase's files are written; the migration report's failure is a warning with what to do."""
    (report_dir / "replication-lag.csv").write_bytes(b"stream,lag_bytes\n\xff\xfe\n")
    out = run_action(dict(dir=str(report_dir), files=[dict(name="phase.md", content="done\n")]))
    assert not out.get("failed") and (report_dir / "phase.md").read_text() == "done\n"
    assert "to build index.html" in out["index_error"]
    assert any(w.startswith("index.html and runbook.md were not rebuilt: ") for w in out["warnings"])
    assert not (report_dir / "index.html").exists()


def test_a_later_run_with_nothing_to_load_keeps_the_initial_load(report_dir):
    """replicate run again once streaming loads nothing: its replication.json has no loads, and the load figure
    comes from initial-load.json (what the run that loaded wrote); without it the section says not run yet."""
    replication = json.loads((report_dir / "replication.json").read_text())
    loads = replication["loads"]
    assert loads
    (report_dir / "replication.json").write_text(json.dumps(dict(replication, loads=[])))
    rf.write_index(str(report_dir), None)
    assert "not run yet: the initial load" in (report_dir / "index.html").read_text()
    (report_dir / "initial-load.json").write_text(json.dumps(dict(phase="replicate", loads=loads)))
    rf.write_index(str(report_dir), None)
    page = (report_dir / "index.html").read_text()
    assert "not run yet: the initial load" not in page and 'id="fig-load"' in page


def test_action_warns_when_a_report_is_shaped_unexpectedly(report_dir, monkeypatch):
    """Whatever the renderer trips on, the phase's files are written and the task warns, naming the error."""

    def broken(*args, **kwargs):
        raise KeyError("timeline")

    monkeypatch.setattr(render, "render", broken)
    out = run_action(dict(dir=str(report_dir), files=[dict(name="phase.md", content="done\n")]))
    assert not out.get("failed") and (report_dir / "phase.md").read_text() == "done\n"
    assert out["index_error"] == "KeyError: 'timeline'"
    assert any("were not rebuilt (KeyError" in w for w in out["warnings"])
