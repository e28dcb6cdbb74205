"""DMS task states, steps, waits, failures and progress (module_utils/dms_tasks.py)."""

from __future__ import annotations

import pytest

from ansible_collections.pgshift.aurora.plugins.module_utils import dms_tasks


@pytest.mark.parametrize("status,state,modify,steps", [
    (None, "present", False, ["create"]),
    (None, "running", False, ["create", "start"]),
    (None, "stopped", False, ["create"]),
    (None, "absent", False, []),
    ("ready", "present", False, []),
    ("ready", "running", False, ["start"]),
    ("ready", "running", True, ["modify", "start"]),
    ("running", "running", False, []),
    ("starting", "running", False, []),
    ("running", "running", True, ["stop", "modify", "start"]),
    ("running", "present", True, ["stop", "modify", "start"]),
    ("running", "present", False, []),
    ("running", "stopped", False, ["stop"]),
    ("running", "stopped", True, ["stop", "modify"]),
    ("stopped", "present", True, ["modify"]),
    ("stopped", "running", False, ["start"]),
    ("failed", "running", False, ["start"]),
    ("stopped", "stopped", False, []),
    ("running", "absent", False, ["stop", "delete"]),
    ("stopped", "absent", True, ["delete"]),
])
def test_task_steps(status, state, modify, steps):
    current = None if status is None else {"Status": status}
    assert dms_tasks.task_steps(current, state, modify) == steps


def test_start_type():
    assert dms_tasks.start_type({"Status": "ready"}, None) == "start-replication"
    assert dms_tasks.start_type({"Status": "stopped"}, None) == "resume-processing"
    assert dms_tasks.start_type({"Status": "ready", "ReplicationTaskStartDate": "2026-01-01"}, None) == "resume-processing"
    assert dms_tasks.start_type({"Status": "stopped"}, "reload-target") == "reload-target"
    assert dms_tasks.start_type({}, None) == "start-replication"


def test_task_failure():
    assert dms_tasks.task_failure({"Status": "running"}) is None
    assert dms_tasks.task_failure({"Status": "stopped", "StopReason": "Stop Reason NORMAL", "LastFailureMessage": "old"}) is None
    assert dms_tasks.task_failure({"Status": "stopped", "StopReason": "Stop Reason FULL_LOAD_ONLY_FINISHED"}) is None
    assert dms_tasks.task_failure({"ReplicationTaskIdentifier": "t", "Status": "failed"}) == "replication task t is failed: (no LastFailureMessage)"
    assert dms_tasks.task_failure({"ReplicationTaskIdentifier": "t", "Status": "stopped", "StopReason": "Stop Reason STOPPED_DUE_TO_LOW_DISK",
                                  "LastFailureMessage": "disk"}) == "replication task t is stopped: disk [Stop Reason STOPPED_DUE_TO_LOW_DISK]"
    assert "dms-tasks-ri" in dms_tasks.failure_advice({}, "ri")


def full(status, percent, loading=0, queued=0, errored=0, kind="full-load-and-cdc", **extra):
    t = {"Status": status, "MigrationType": kind, "ReplicationTaskStats": {
        "FullLoadProgressPercent": percent, "TablesLoading": loading, "TablesQueued": queued, "TablesErrored": errored, "TablesLoaded": 1}}
    t.update(extra)
    return t


def test_wait_verdicts():
    assert dms_tasks.wait_verdict("ready", {"Status": "creating"}) is None
    assert dms_tasks.wait_verdict("ready", {"Status": "ready"}) == "ok"
    assert dms_tasks.wait_verdict("ready", {"Status": "stopped"}) == "ok"
    assert dms_tasks.wait_verdict("ready", {"Status": "modifying"}) is None
    assert dms_tasks.wait_verdict("running", {"Status": "starting"}) is None
    assert dms_tasks.wait_verdict("running", {"Status": "running"}) == "ok"
    assert dms_tasks.wait_verdict("running", {"Status": "failed"}) == "failed"
    assert dms_tasks.wait_verdict("stopped", {"Status": "stopping"}) is None
    assert dms_tasks.wait_verdict("stopped", {"Status": "stopped", "StopReason": "Stop Reason NORMAL"}) == "ok"
    assert dms_tasks.wait_verdict("stopped", {"Status": "stopped", "StopReason": "Stop Reason FATAL_ERROR"}) == "failed"
    assert dms_tasks.wait_verdict("stopped", {"Status": "ready"}) == "ok"  # never started: not running either
    assert dms_tasks.wait_verdict("stopped", None) == "gone"
    # settled: the module's own waits between calls; an earlier failure does not stop a fix-and-restart.
    assert dms_tasks.wait_verdict("settled", {"Status": "modifying"}) is None
    assert dms_tasks.wait_verdict("settled", {"Status": "failed", "LastFailureMessage": "x"}) == "ok"
    assert dms_tasks.wait_verdict("settled", {"Status": "stopped", "StopReason": "Stop Reason FATAL_ERROR"}) == "ok"
    assert dms_tasks.wait_verdict("absent", None) == "ok"
    assert dms_tasks.wait_verdict("absent", {"Status": "deleting"}) is None
    with pytest.raises(ValueError):
        dms_tasks.wait_verdict("soon", {"Status": "running"})


def test_full_load_complete():
    wait = "full_load_complete"
    assert dms_tasks.wait_verdict(wait, full("running", 40, loading=2)) is None
    assert dms_tasks.wait_verdict(wait, full("running", 100, queued=1)) is None
    assert dms_tasks.wait_verdict(wait, full("running", 100)) == "ok"
    assert dms_tasks.wait_verdict(wait, full("starting", 100)) is None
    assert dms_tasks.wait_verdict(wait, full("running", 60, errored=1)) == "failed"
    assert dms_tasks.wait_verdict(wait, full("Load complete, replication ongoing", 100)) == "ok"
    # A full-load task is done when it stops after its load, not while running.
    assert dms_tasks.wait_verdict(wait, full("running", 100, kind="full-load")) is None
    assert dms_tasks.wait_verdict(wait, full("stopped", 100, kind="full-load", StopReason="Stop Reason FULL_LOAD_ONLY_FINISHED")) == "ok"
    # A CDC-only task has no full load.
    assert dms_tasks.wait_verdict(wait, full("running", 0, kind="cdc")) == "ok"


def test_progress_from_table_statistics_and_from_task_stats():
    rows = [dms_tasks.table_row(s) for s in (
        {"SchemaName": "p", "TableName": "a", "TableState": "Table completed", "FullLoadRows": 10},
        {"SchemaName": "p", "TableName": "b", "TableState": "Full load", "FullLoadRows": 5},
        {"SchemaName": "p", "TableName": "c", "TableState": "Before load"},
        {"SchemaName": "p", "TableName": "d", "TableState": "Table error", "FullLoadRows": 1})]
    assert rows[2]["full_load_rows"] == 0 and rows[0]["validation_state"] is None
    assert dms_tasks.progress(rows, {"ReplicationTaskStats": {"FullLoadProgressPercent": 40}}) == dict(
        tables_total=4, tables_loaded=1, tables_loading=2, tables_errored=1, full_load_rows=16, percent=40)
    assert dms_tasks.progress(rows, {})["percent"] == 25
    assert dms_tasks.progress([], full("running", 70, loading=1, queued=2, errored=1)) == dict(
        tables_total=5, tables_loaded=1, tables_loading=3, tables_errored=1, full_load_rows=None, percent=70)
    assert dms_tasks.progress([], None)["tables_total"] == 0
    line = dms_tasks.progress_line("t", "running", dms_tasks.progress(rows, {}), {"source_seconds": 1.0, "target_seconds": 2.0})
    assert line == "t: running, 25% (1/4 tables loaded, 2 loading, 1 errored), CDC latency source 1.0s target 2.0s"


def test_max_latency():
    assert dms_tasks.max_latency([{"source_seconds": 1.0, "target_seconds": 4.0}, {"source_seconds": None, "target_seconds": 9.5}]) == 9.5
    assert dms_tasks.max_latency([{"source_seconds": None, "target_seconds": None}]) is None
    assert dms_tasks.max_latency([]) is None


def test_task_result_parses_mappings_and_settings():
    out = dms_tasks.task_result({"ReplicationTaskIdentifier": "t", "TableMappings": '{"rules": []}',
                                "ReplicationTaskSettings": '{"Logging": {"EnableLogging": true}}', "ReplicationTaskStats": {"TablesLoaded": 1}})
    assert out == {"replication_task_identifier": "t", "table_mappings": {"rules": []},
                   "task_settings": {"Logging": {"EnableLogging": True}}, "replication_task_stats": {"tables_loaded": 1}}
