# -*- coding: utf-8 -*-
# Copyright: pgshift.aurora contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""DMS replication task settings, pure: recommended defaults for PostgreSQL -> Aurora PostgreSQL, the LOB
mode from the assessment, what the user sets, and what a modification sends."""

from __future__ import annotations

import math

from ansible_collections.pgshift.aurora.plugins.module_utils.drift import deep_merge

# Recommended for PostgreSQL -> Aurora PostgreSQL when the schema is copied first (copy_schema phase).
RECOMMENDED_TASK_SETTINGS = {
    "FullLoadSettings": {
        # The schema (tables, without secondary indexes and constraints held back) already exists:
        # DMS must neither drop nor truncate it.
        "TargetTablePrepMode": "DO_NOTHING",
        "MaxFullLoadSubTasks": 8,
    },
    "TargetMetadata": {
        "SupportLobs": True,
    },
    "ValidationSettings": {
        "EnableValidation": True,
        "ThreadCount": 5,
    },
    "Logging": {
        "EnableLogging": True,
    },
    "ErrorBehavior": {
        "DataErrorPolicy": "LOG_ERROR",
        "TableErrorPolicy": "SUSPEND_TABLE",
        "FailOnNoTablesCaptured": True,
    },
}

DEFAULT_LOB_CHUNK_KB = 64


def lob_settings(lob_max_size_kb):
    """TargetMetadata LOB settings so that nothing is truncated.

    lob_max_size_kb: the largest LOB value in KiB (from the assessment), or None when unknown.
    Known: limited LOB mode with LobMaxSize at least that size (rounded up to a whole KiB, 1 at least).
    Unknown: full LOB mode (slower, never truncates).
    """
    if lob_max_size_kb is None:
        return {"FullLobMode": True, "LimitedSizeLobMode": False, "LobChunkSize": DEFAULT_LOB_CHUNK_KB}
    size = max(1, int(math.ceil(float(lob_max_size_kb))))
    return {"FullLobMode": False, "LimitedSizeLobMode": True, "LobMaxSize": size}


def task_settings(user_settings, lob_max_size_kb=None):
    """The settings to send: recommended defaults, the LOB mode, then what the user set (the user wins)."""
    merged = deep_merge(RECOMMENDED_TASK_SETTINGS, {"TargetMetadata": lob_settings(lob_max_size_kb)})
    return deep_merge(merged, user_settings or {})


def user_task_settings(user_settings, lob_max_size_kb=None):
    """What the playbook itself sets: its task_settings, and the LOB mode when lob_max_size_kb is given.

    On an existing task only these are compared and changed: the recommended defaults apply when the
    task is created, and a task that only gets stopped or started keeps its settings.
    """
    lob = {"TargetMetadata": lob_settings(lob_max_size_kb)} if lob_max_size_kb is not None else {}
    return deep_merge(lob, user_settings or {})


# Set by DMS itself (the task's CloudWatch log group and stream): never sent back.
READ_ONLY_SETTINGS = (("Logging", "CloudWatchLogGroup"), ("Logging", "CloudWatchLogStream"))


def modify_settings(have, user_set):
    """The settings sent to modify_replication_task: the task's current ones with the user's over them,
    without the read-only ones, so nothing the playbook does not set changes whatever the API does with
    a partial document."""
    out = deep_merge(have or {}, user_set)
    for section, key in READ_ONLY_SETTINGS:
        if isinstance(out.get(section), dict):
            out[section].pop(key, None)
    return out
