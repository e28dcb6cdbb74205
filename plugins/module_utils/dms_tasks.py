# -*- coding: utf-8 -*-
# Copyright: pgshift.aurora contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""DMS replication tasks, pure: their states, the steps to reach a state, wait verdicts, failures, and
the progress and result built from what the service describes."""

from __future__ import annotations

import json
import re

from ansible.module_utils.common.dict_transformations import camel_dict_to_snake_dict

BUSY = ("creating", "modifying", "deleting", "moving", "testing", "starting", "stopping")

ACTIVE = ("running", "starting")

FAILED_STOP = re.compile(r"ERROR|LOW_MEMORY|LOW_DISK", re.I)


def ever_started(task):
    stats = task.get("ReplicationTaskStats") or {}
    return bool(task.get("ReplicationTaskStartDate") or stats.get("StartDate") or stats.get("FreshStartDate")
                or task.get("Status") in ("running", "stopping", "stopped", "failed"))


def start_type(task, requested):
    """The StartReplicationTaskType: the user's, else start-replication the first time, resume-processing after."""
    if requested:
        return requested
    return "resume-processing" if ever_started(task) else "start-replication"


def task_steps(task, state, modify_needed):
    """The steps to reach state from task (None: the task does not exist), in order.

    Steps: create, stop, modify, start, delete. A change to a running task is stop, modify, start
    (resume-processing). state is present | running | stopped | absent.
    """
    if state == "absent":
        if task is None:
            return []
        return (["stop"] if task.get("Status") in ACTIVE else []) + ["delete"]
    if task is None:
        return ["create", "start"] if state == "running" else ["create"]
    status = task.get("Status")
    active = status in ACTIVE
    steps = []
    if modify_needed:
        if active:
            steps.append("stop")
        steps.append("modify")
        if state == "running" or (state == "present" and active):
            steps.append("start")
        return steps
    if state == "running" and not active:
        steps.append("start")
    elif state == "stopped" and active:
        steps.append("stop")
    return steps


def task_failure(task):
    """The failure message of a failed task (status failed, or stopped with an error), else None."""
    status = task.get("Status")
    reason = task.get("StopReason") or ""
    last = task.get("LastFailureMessage") or ""
    if status == "failed" or (status == "stopped" and FAILED_STOP.search(reason)):
        return "replication task %s is %s: %s%s" % (
            task.get("ReplicationTaskIdentifier"), status, last or "(no LastFailureMessage)",
            " [%s]" % reason if reason else "")
    return None


def failure_advice(task, instance_id):
    return ("look at the CloudWatch log group dms-tasks-%s (stream dms-task-<task resource id>) and the task's "
            "table statistics; fix the cause and run again with state=running (resume-processing), or "
            "start_type=reload-target to load again" % (instance_id or "<replication instance>"))


def full_load_done(task):
    stats = task.get("ReplicationTaskStats") or {}
    status = (task.get("Status") or "").lower()
    if "load complete" in status:  # the console's "Load complete, replication ongoing"
        return True
    if task.get("MigrationType") == "cdc":
        return status == "running"
    loaded = (stats.get("FullLoadProgressPercent") == 100 and not stats.get("TablesLoading")
              and not stats.get("TablesQueued"))
    if task.get("MigrationType") == "full-load":
        return status == "stopped" and loaded and not task_failure(task)
    return status == "running" and loaded


def wait_verdict(condition, task):
    """For poll(): 'ok' when condition holds, 'failed' when the task failed, None to keep waiting.

    A task that does not exist (None) is 'ok' for absent, 'gone' otherwise. 'settled' (used between the
    module's own calls) only waits for the task to be neither creating, modifying, starting, stopping nor
    deleting, without failing on an earlier failure: a failed task must stay modifiable and restartable.
    """
    if condition == "absent":
        return "ok" if task is None else None
    if task is None:
        return "gone"
    status = task.get("Status")
    if condition == "settled":  # internal: nothing in progress, an earlier failure notwithstanding
        return "ok" if status not in BUSY else None
    if task_failure(task):
        return "failed"
    if condition == "ready":
        return "ok" if status not in BUSY else None
    if condition == "running":
        return "ok" if status == "running" else None
    if condition == "stopped":  # a task never started (ready) does not run either
        return "ok" if status in ("stopped", "ready") else None
    if condition == "full_load_complete":
        if (task.get("ReplicationTaskStats") or {}).get("TablesErrored"):
            return "failed"
        return "ok" if full_load_done(task) else None
    raise ValueError("unknown wait condition %s" % condition)


LOADED_STATES = ("table completed",)

LOADING_STATES = ("full load", "before load", "table loading")

ERRORED_STATES = ("table error", "table cancelled", "error")


def table_row(stat):
    return {
        "schema": stat.get("SchemaName"),
        "table": stat.get("TableName"),
        "state": stat.get("TableState"),
        "full_load_rows": stat.get("FullLoadRows", 0),
        "full_load_error_rows": stat.get("FullLoadErrorRows", 0),
        "inserts": stat.get("Inserts", 0),
        "updates": stat.get("Updates", 0),
        "deletes": stat.get("Deletes", 0),
        "ddls": stat.get("Ddls", 0),
        "validation_state": stat.get("ValidationState"),
        "validation_failed_records": stat.get("ValidationFailedRecords", 0),
        "validation_pending_records": stat.get("ValidationPendingRecords", 0),
    }


def progress(rows, task):
    """tables_total/loaded/loading/errored, full_load_rows and percent: from the table statistics when there
    are any, else from the task's ReplicationTaskStats."""
    stats = task.get("ReplicationTaskStats") or {} if task else {}
    if rows:
        states = [(r.get("state") or "").lower() for r in rows]
        loaded = sum(1 for s in states if s in LOADED_STATES)
        errored = sum(1 for s in states if s in ERRORED_STATES)
        loading = sum(1 for s in states if s in LOADING_STATES)
        total = len(rows)
        percent = stats.get("FullLoadProgressPercent")
        if percent is None:
            percent = int(100 * loaded / total) if total else 0
        return dict(tables_total=total, tables_loaded=loaded, tables_loading=loading, tables_errored=errored,
                    full_load_rows=sum(int(r.get("full_load_rows") or 0) for r in rows), percent=percent)
    loaded = stats.get("TablesLoaded") or 0
    loading = (stats.get("TablesLoading") or 0) + (stats.get("TablesQueued") or 0)
    errored = stats.get("TablesErrored") or 0
    return dict(tables_total=loaded + loading + errored, tables_loaded=loaded, tables_loading=loading,
                tables_errored=errored, full_load_rows=None, percent=stats.get("FullLoadProgressPercent") or 0)


def progress_line(task_id, status, prog, latency):
    lat = ""
    if latency and latency.get("target_seconds") is not None:
        lat = ", CDC latency source %ss target %ss" % (latency.get("source_seconds"), latency.get("target_seconds"))
    return "%s: %s, %s%% (%s/%s tables loaded, %s loading, %s errored)%s" % (
        task_id, status, prog["percent"], prog["tables_loaded"], prog["tables_total"], prog["tables_loading"],
        prog["tables_errored"], lat)


def max_latency(latencies):
    values = [v for lat in latencies if lat for v in lat.values() if v is not None]
    return max(values) if values else None


def task_result(raw):
    """The task in snake_case, table mappings and settings parsed (their own keys kept as the service spells them)."""
    task = dict((k, v) for k, v in raw.items() if k not in ("TableMappings", "ReplicationTaskSettings"))
    out = camel_dict_to_snake_dict(task)
    for key, field in (("table_mappings", "TableMappings"), ("task_settings", "ReplicationTaskSettings")):
        try:
            out[key] = json.loads(raw[field]) if raw.get(field) else None
        except ValueError:
            out[key] = raw.get(field)
    return out
