"""Report data built in Python (plugins/filter/report.py): assessment.json, preparation.json, schema.json and
cleanup.json."""

from __future__ import annotations

import json

import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.pgshift.aurora.plugins.filter.report import (
    FilterModule, assessment_report, check_table, cleanup_report, preparation_report, restart_needed,
    schema_report)

SIDES = dict(source=dict(host="src", endpoint="s:5432/app", rds_instance_id="db-1"),
             target=dict(host="tgt", endpoint="t:5432/app", rds_instance_id="?"))
FILTERS = dict(include_schemas=["sales"], exclude_schemas=[], include_tables=[], exclude_tables=["sales.tmp_*"])
AT = "2026-12-06T15:00:00Z"


def finding(fid, severity, remediation="do this", obj="public.t"):
    return dict(id=fid, severity=severity, object=obj, detail="%s found" % fid, remediation=remediation)


def assessed(findings, checks=None, **extra):
    summary = dict((s, len([f for f in findings if f["severity"] == s])) for s in ("blocker", "warning", "info"))
    return dict(dict(changed=False, findings=findings, summary=summary, checks=checks or {},
                     server=dict(version="16.4"), planned_streams=2), **extra)


def assess(source, target, fail_on="blocker", deferred=None):
    return assessment_report(dict(source=source, target=target), SIDES, migration_name="orders", engine="native",
                             streams=2, filters=FILTERS, fail_on=fail_on, deferred_blockers=deferred,
                             generated_at=AT)


def test_assessment_without_findings_is_a_go():
    r = assess(assessed([]), assessed([]))
    assert (r["decision"], r["decision_reason"], r["gate_failed"]) == ("GO", "no blocker, no warning", False)
    assert list(r)[:4] == ["phase", "generated_at", "migration_name", "engine"]
    assert r["streams_setting"] == "2" and r["filters"] == FILTERS and r["generated_at"] == AT
    assert r["source"]["host"] == "src" and r["source"]["error"] is None and r["source"]["planned_streams"] == 2
    json.dumps(r)  # what assessment.json holds


def test_blockers_are_a_no_go_with_one_gate_line_each_side_named():
    r = assess(assessed([finding("wal_level", "blocker")]), assessed([finding("create", "blocker", remediation=None)]))
    assert r["decision"] == "NO-GO" and r["gate_failed"]
    assert r["decision_reason"] == "2 blocker(s) (source 1, target 1): fix them, then run assess again"
    assert [b["side"] for b in r["blockers"]] == ["source", "target"]
    assert r["gate_lines"] == [
        "- [source blocker] wal_level (public.t): wal_level found. Fix: do this",
        "- [target blocker] create (public.t): create found. Fix: see the report"]


def test_an_unreachable_side_is_a_connection_blocker():
    r = assess(dict(failed=True, msg="cannot reach PostgreSQL at s:5432"), assessed([]))
    src = r["source"]
    assert src["assessed"] is False and src["error"] == "cannot reach PostgreSQL at s:5432"
    assert src["findings"][0]["id"] == "connection" and src["findings"][0]["object"] == "s:5432/app"
    assert "the source could not be assessed: cannot reach PostgreSQL" in src["findings"][0]["detail"]
    assert src["summary"] == dict(blocker=1, warning=0, info=0) and src["server"] == {}
    assert r["decision"] == "NO-GO"


@pytest.mark.parametrize("fail_on,decision,gated", [("blocker", "GO", False), ("warning", "NO-GO", True),
                                                    ("never", "GO", False)])
def test_warnings_stop_only_a_warning_gate(fail_on, decision, gated):
    r = assess(assessed([finding("lag", "warning")]), assessed([finding("info", "info")]), fail_on=fail_on)
    assert (r["decision"], r["gate_failed"]) == (decision, gated)
    assert len(r["warnings"]) == 1 and r["blockers"] == []


def test_blockers_the_preparation_fixes_are_deferred_to_it():
    source = assessed([finding("schema_usage", "blocker"), finding("schema_usage", "blocker", obj="other"),
                       finding("select_privilege", "blocker")])
    r = assess(source, assessed([]), deferred=["schema_usage", "select_privilege"])
    assert r["decision"] == "GO" and not r["gate_failed"] and r["gate_lines"] == []
    assert r["decision_reason"] == ("only blocker(s) the preparation fixes: 3 (schema_usage, select_privilege), "
                                    "deferred to prepare_source, which fails if any remains")
    assert r["deferred_blockers"] == ["schema_usage", "select_privilege"] and len(r["blockers"]) == 3
    # Any other blocker still stops the run, and never gates nothing.
    r = assess(assessed([finding("schema_usage", "blocker"), finding("wal_level", "blocker")]), assessed([]),
               deferred=["schema_usage"])
    assert r["decision"] == "NO-GO" and r["gate_lines"] == [
        "- [source blocker] wal_level (public.t): wal_level found. Fix: do this"]
    assert assess(assessed([finding("x", "blocker")]), assessed([]), fail_on="never")["gate_failed"] is False


def test_check_table_merges_both_sides_in_first_seen_order():
    sides = dict(source=dict(assessed=True, checks=dict(wal="pass", grants="blocker")),
                 target=dict(assessed=False, checks=dict(subscription="warning", wal="pass")))
    assert check_table(sides) == [dict(id="wal", source="pass", target="pass"),
                                  dict(id="grants", source="blocker", target="not assessed"),
                                  dict(id="subscription", source="not run", target="warning")]


def test_unknown_fail_on_is_refused():
    with pytest.raises(AnsibleFilterError, match="assess_fail_on must be one of"):
        assess(assessed([]), assessed([]), fail_on="sometimes")


# Phase 1 ---------------------------------------------------------------------------------------------------------

OPTIONS = dict(system_settings=False, rds_reboot=False, replica_identity_full=[], target=True)


def prepared(queries=(), api_calls=(), findings=(), **extra):
    return dict(dict(changed=bool(queries), findings=list(findings), summary=dict(blocker=0, warning=0, info=0),
                     queries=list(queries), api_calls=list(api_calls), server=dict(version="16.4")), **extra)


def prepare(source, target, check=False, fail_on="never", error=None, show=40):
    return preparation_report(dict(source=source, target=target), SIDES, migration_name="orders", engine="native",
                              options=OPTIONS, fail_on=fail_on, check_mode=check, error=error,
                              report_path="/r/preparation", show_statements=show, generated_at=AT)


def test_preparation_counts_statements_and_changing_api_calls():
    api = [dict(service="rds", operation="describe_db_instances", parameters={}),
           dict(service="rds", operation="modify_db_parameter_group", parameters={"Name": "g"})]
    r = prepare(prepared(["GRANT a TO m", "GRANT b TO m"], api), prepared())
    assert r["changes"] == 3 and r["source"]["changes"] == 3 and r["target"]["changes"] == 0
    assert r["summary_lines"] == [
        "3 change(s) made",
        "source src (s:5432/app): made 3 change(s):",
        "    GRANT a TO m",
        "    GRANT b TO m",
        '    AWS rds.modify_db_parameter_group {"Name": "g"}',
        "target tgt (t:5432/app): nothing to change",
        "remaining after the preparation: 0 blocker(s), 0 warning(s) (details in the report; the assess phase is the "
        "gate)",
        "report: /r/preparation.md (and .json)"]
    assert r["source"]["status"] == "prepared" and r["error"] is None and r["pending_lines"] == []


def test_check_mode_says_would_and_lists_a_bounded_number_of_statements():
    r = prepare(prepared(["S%d" % i for i in range(5)]), prepared(), check=True, show=2)
    assert r["check_mode"] is True and r["source"]["status"] == "checked (check mode)"
    assert r["summary_lines"][:5] == [
        "CHECK MODE, nothing was changed: a real run would make 5 change(s)",
        "source src (s:5432/app): would make 5 change(s):", "    S0", "    S1",
        "    ... and 3 more statement(s), all in the report"]
    assert "(check mode: as found before the changes)" in r["summary_lines"][-2]


def test_restart_needed_adds_postmaster_settings_this_run_changed():
    settings = dict(max_wal_senders=dict(context="postmaster"), work_mem=dict(context="user"))
    queries = ["ALTER SYSTEM SET max_wal_senders = 20", "ALTER SYSTEM SET work_mem = '4MB'",
               "ALTER SYSTEM SET wal_level = logical", "GRANT x TO y"]
    assert restart_needed(["wal_level"], settings, queries) == ["wal_level", "max_wal_senders"]
    assert restart_needed([], None, queries) == []


def test_restart_and_reboot_are_said_loudly():
    r = prepare(prepared(["ALTER SYSTEM SET max_wal_senders = 20"], restart_pending=["wal_level"],
                         settings=dict(max_wal_senders=dict(context="postmaster")), reboot_pending=True), prepared())
    assert r["restart_or_reboot_pending"] is True
    assert r["source"]["restart_pending"] == ["wal_level", "max_wal_senders"] and r["source"]["reboot_pending"]
    assert r["pending_lines"] == [
        "RESTART NEEDED on the source src (s:5432/app): PostgreSQL must restart for wal_level, max_wal_senders to "
        "take effect; restart it before the replicate phase.",
        "REBOOT NEEDED on the source src: RDS instance db-1 must reboot for its parameter group to apply (logical "
        "replication stays off until then); reboot it in a maintenance window, or run again with "
        "prepare_source_rds_reboot=true."]


def test_remaining_findings_gate_only_a_real_run():
    findings = [finding("select_privilege", "blocker"), finding("lag", "warning", remediation=""),
                finding("note", "info")]
    r = prepare(prepared(findings=findings), prepared(), fail_on="warning")
    assert r["gate_lines"] == ["- [source blocker] select_privilege (public.t): select_privilege found. Fix: do this",
                               "- [source warning] lag (public.t): lag found. Fix: see the report"]
    assert [f["id"] for f in r["source"]["remaining"]] == ["select_privilege", "lag"]
    assert "1 blocker(s), 1 warning(s)" in r["summary_lines"][-2]
    assert prepare(prepared(findings=findings), prepared(), fail_on="warning", check=True)["gate_lines"] == []
    assert prepare(prepared(findings=findings), prepared(), fail_on="never")["gate_lines"] == []


def test_failed_skipped_and_never_run_sides():
    r = prepare(dict(failed=True, msg="authentication failed for user 'master'", changed=False),
                dict(skipped=True, changed=False), error="Prepare the source failed")
    assert r["source"]["status"] == "failed" and r["source"]["error"] == "authentication failed for user 'master'"
    assert r["source"]["server"] is None and r["source"]["restart_pending"] == []
    assert r["target"]["status"] == "skipped (prepare_source_target is false)" and r["target"]["error"] is None
    assert r["summary_lines"][1:3] == ["source src (s:5432/app): FAILED: authentication failed for user 'master'",
                                       "target tgt: skipped (prepare_source_target is false)"]
    assert r["error"] == "Prepare the source failed"
    never = prepare(None, None)
    assert never["source"]["status"] == "not run (an earlier step failed)" and never["source"]["queries"] == []
    assert never["summary_lines"][1] == "source src: not run (an earlier step failed)"


def test_a_side_without_host_is_refused():
    with pytest.raises(AnsibleFilterError, match="the target side needs its host and endpoint"):
        preparation_report({}, dict(source=SIDES["source"]), "m", "native", OPTIONS)


def test_the_filters_are_registered():
    assert set(FilterModule().filters()) == {
        "assessment_report", "preparation_report", "schema_report", "cleanup_report"}


# Phase 8 ---------------------------------------------------------------------------------------------------------

def test_cleanup_that_removed_everything():
    removals = [dict(stream="pgshift_m_s1", changed=True, queries=["DROP SUBSCRIPTION a", "DROP PUBLICATION a"]),
                dict(stream="pgshift_m_s2", changed=True, queries=["DROP SUBSCRIPTION b"])]
    r = cleanup_report(removals, before=dict(streams=[dict(name="pgshift_m_s1"), dict(name="pgshift_m_s2")]),
                       reverse=dict(removed=["cutover log"], queries=["DROP TABLE pgshift.cutover_log"]),
                       serving=dict(serving="target"), after=dict(streams=[]), migration_name="m", status="",
                       error="", generated_at=AT)
    assert r == dict(phase="cleanup", generated_at=AT, migration_name="m", check_mode=False, status="removed",
                     error=None, before=["pgshift_m_s1", "pgshift_m_s2"], removed=["pgshift_m_s1", "pgshift_m_s2"],
                     queries=["DROP SUBSCRIPTION a", "DROP PUBLICATION a", "DROP SUBSCRIPTION b",
                              "DROP TABLE pgshift.cutover_log"],
                     serving="target", return_stream_removed=["cutover log"], left=[])


def test_cleanup_that_stopped_before_looking():
    r = cleanup_report([], migration_name="m", status="refused", error="run it with -e cleanup_confirm=true",
                       check_mode=True, generated_at=AT)
    assert (r["status"], r["error"], r["check_mode"]) == ("refused", "run it with -e cleanup_confirm=true", True)
    assert r["before"] is None and r["left"] is None and r["serving"] is None
    assert r["removed"] == [] and r["queries"] == [] and r["return_stream_removed"] == []
    assert cleanup_report(None, check_mode=True, generated_at=AT)["status"] == "checked"


def test_cleanup_lists_a_failed_removal_as_not_removed():
    removals = [dict(stream="s1", queries=["DROP SUBSCRIPTION s1"]), dict(stream="s2", failed=True, msg="busy")]
    r = cleanup_report(removals, before=dict(streams=[dict(name="s1"), dict(name="s2")]),
                       after=dict(skipped=True), status="failed", error="busy", generated_at=AT)
    assert r["removed"] == ["s1"] and r["queries"] == ["DROP SUBSCRIPTION s1"] and r["left"] is None


# Phase 3 ---------------------------------------------------------------------------------------------------------

DB = dict(name="app", existed=False, created=True, encoding="UTF8", collate="C", ctype="C", locale_provider="libc",
          owner="app_owner")
NOT_REPLICATED = dict(unlogged_tables=["public.scratch"], materialized_views=[], foreign_tables=["ext.remote"],
                      large_objects=2, sequences=["public.orders_id_seq"])


def schema(result, stage="pre", check=False, error=None, show=30):
    return schema_report(result, stage, SIDES, migration_name="orders", check_mode=check, error=error,
                         report_path="/r/schema", show_statements=show, generated_at=AT)


def kinds(*names):
    return [dict(kind=k, object="public.o%d" % i) for i, k in enumerate(names)]


def test_schema_pre_stage_that_made_the_database_and_roles():
    roles = dict(created=["app_ro", "app_rw"], attributes_dropped=dict(app_rw=["SUPERUSER"]))
    result = dict(changed=True, database=DB, roles=roles,
                  created=kinds("TABLE", "SEQUENCE", "TABLE"), held_back=kinds("INDEX", "FK CONSTRAINT", "INDEX"),
                  not_replicated=NOT_REPLICATED, warning_messages=["w1"],
                  notes=["roles created without passwords: app_ro, app_rw", "n1"], queries=["CREATE ROLE app_ro"],
                  summary=dict(created=3), commands=["pg_dump --schema-only"])
    r = schema(result)
    assert list(r)[:6] == ["phase", "stage", "generated_at", "check_mode", "migration_name", "source"]
    assert (r["phase"], r["stage"], r["changed"], r["error"], r["counts"]) == (
        "copy_schema", "pre", True, None, dict(created=3))
    assert r["source"] == dict(host="src", endpoint="s:5432/app")
    assert r["target"] == dict(host="tgt", endpoint="t:5432/app")
    assert r["warnings"] == ["w1"] and r["notes"] == result["notes"] and r["queries"] == ["CREATE ROLE app_ro"]
    assert r["summary_lines"] == [
        "stage pre: changes made",
        "target database app: created as on the source (UTF8, C/C, libc), owner app_owner",
        "2 role(s) created WITHOUT passwords: app_ro, app_rw; set their passwords on the target before the "
        "application connects there",
        "    role app_rw created without SUPERUSER (not allowed on the target)",
        "restored 3 schema entries (1 SEQUENCE, 2 TABLE)",
        "held back for stage post: 3 (1 FK CONSTRAINT, 2 INDEX)",
        "not carried by logical replication: 1 unlogged table(s) (public.scratch), 0 materialized view(s) to refresh"
        " at cutover, 1 foreign table(s), 2 large object(s), 1 sequence(s) to synchronise at cutover",
        "WARNING: w1",
        "NOTE: n1",
        "report: /r/schema.md (and .json)"]


def test_schema_pre_stage_on_an_existing_database():
    owned = dict(DB, existed=True, created=False, owner_was="postgres")
    r = schema(dict(changed=False, database=owned, roles=dict(created=[])), check=True)
    assert r["summary_lines"][1:3] == [
        "target database app: exists; would be given to app_owner, the owner of the source database (was postgres)",
        "roles: the target has every role the schema needs"]
    assert schema(dict(database=dict(owned, owner_was=None)))["summary_lines"][:2] == [
        "stage pre: nothing to change, the target already has the pre-data schema",
        "target database app: exists (owner app_owner)"]


def test_schema_check_mode_counts_statements_and_restored_entries():
    result = dict(changed=True, created=kinds("TABLE", "VIEW"), queries=["CREATE DATABASE app"],
                  commands=["pg_dump -s", "pg_restore --use-list /tmp/x.list -d app"])
    assert schema(result, check=True)["summary_lines"][:2] == [
        "CHECK MODE, nothing was changed: stage pre would run 1 statement(s) and restore 2 schema entries",
        "would restore 2 schema entries (1 TABLE, 1 VIEW)"]
    del result["commands"]
    assert schema(result, check=True)["summary_lines"][0] == (
        "CHECK MODE, nothing was changed: stage pre would run 1 statement(s)")


def test_schema_post_stage_lists_its_statements_up_to_show_statements():
    result = dict(changed=True, created=kinds("INDEX", "TRIGGER"), validated=["fk1"],
                  states=[dict(kind="TRIGGER", object="public.t.trg", state="disabled")],
                  conflicts=[dict(type="INDEX", object="public.i", problem="exists with another definition")],
                  queries=["CREATE INDEX i1\n  ON t (a)", "CREATE TRIGGER trg", "ALTER TABLE t VALIDATE CONSTRAINT fk1"])
    r = schema(result, stage="post", show=2)
    assert r["summary_lines"] == [
        "stage post: changes made",
        "created 2 object(s) (1 INDEX, 1 TRIGGER)",
        "validated 1 constraint(s)",
        "    TRIGGER public.t.trg: disabled, as on the source",
        "    CONFLICT: INDEX public.i exists with another definition",
        "statements run:",
        "    CREATE INDEX i1   ON t (a)",
        "    CREATE TRIGGER trg",
        "    ... and 1 more, all in the report",
        "report: /r/schema.md (and .json)"]
    assert r["queries"] == result["queries"] and r["validated"] == ["fk1"]
    assert schema(dict(), stage="post")["summary_lines"][0] == (
        "stage post: nothing to change, the target already has every held-back object")


def test_schema_report_of_a_failed_run():
    r = schema(dict(failed=True, msg="pg_dump failed", changed=False), stage="post", check=True, error="pg_dump failed")
    assert r["summary_lines"] == ["THE SCHEMA COPY FAILED (stage post): pg_dump failed",
                                  "report: /r/schema.md (and .json)"]
    assert (r["error"], r["changed"], r["check_mode"], r["created"], r["not_replicated"]) == (
        "pg_dump failed", False, True, [], {})
    assert schema(None)["database"] == {} and schema(None)["commands"] == []
