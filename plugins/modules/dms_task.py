#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: pgshift.aurora contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: dms_task
short_description: An AWS DMS replication task's whole life (create, modify, start, wait, stop, delete)
version_added: 0.3.0
description:
  - Makes the DMS replication task O(identifier) exist with the given table mappings and settings, and brings it
    to O(state). Task settings are merged over recommended defaults for PostgreSQL to Aurora PostgreSQL (see
    O(task_settings)).
  - Idempotent and drift-free; compares only what is set against what the service returns (the service adds
    defaults to the settings and the mappings). A change to a running task is stop, modify, resume
    (C(resume-processing)).
  - Replication instance and endpoints cannot change on an existing task; the module fails and says so.
  - Waits, when asked, until the task is ready, running, done with its full load, or stopped (O(wait)).
  - A failed task (status C(failed), or stopped with an error) fails the module with the task's
    C(LastFailureMessage) and C(StopReason), and says where to look (the CloudWatch log group
    C(dms-tasks-<replication instance>)).
  - Returns the task, per-table statistics, a progress summary and the CDC latency from CloudWatch.
  - In check mode nothing changes; with C(--diff) the task that would be created or changed is shown with its
    table mappings and settings. In check mode, instances and endpoints that do not exist yet (created earlier in
    the same check run) are shown by name.
author:
  - pgshift.aurora developers (@pgshift)
extends_documentation_fragment:
  - pgshift.aurora.aws
  - pgshift.aurora.in_process
options:
  identifier:
    description: The replication task identifier.
    type: str
    required: true
  replication_instance:
    description: The replication instance, identifier or ARN. Needed to create the task.
    type: str
  source_endpoint:
    description: The source endpoint, identifier or ARN. Needed to create the task.
    type: str
  target_endpoint:
    description: The target endpoint, identifier or ARN. Needed to create the task.
    type: str
  migration_type:
    description: What the task does. Needed to create the task.
    type: str
    choices: [full-load, cdc, full-load-and-cdc]
  table_mappings:
    description:
      - The table mappings (selection and transformation rules), as a dict or a JSON string; typically one stream of
        the replication plan. Needed to create the task. Rules are matched by C(rule-name) when compared.
    type: raw
  task_settings:
    description:
      - Task settings merged over the recommended defaults (the values set here win), key by key, when the task is
        created. On an existing task only the keys set here (and the LOB mode when O(lob_max_size_kb) is set) are
        compared and changed, everything else is left as it is; so a task stopped or started by identifier alone
        keeps its settings.
      - "Defaults: C(FullLoadSettings.TargetTablePrepMode=DO_NOTHING) (the schema is copied first; DMS must not drop
        or truncate it), C(FullLoadSettings.MaxFullLoadSubTasks=8), C(TargetMetadata.SupportLobs=true) with the LOB
        mode from O(lob_max_size_kb), C(ValidationSettings.EnableValidation=true) (5 threads),
        C(Logging.EnableLogging=true), C(ErrorBehavior) logging data errors and suspending a failing table, failing
        when no table is captured."
      - C(session_replication_role) on the target is set by the target endpoint's after-connect script (see
        M(pgshift.aurora.dms_endpoint) option C(session_replication_role)), not by a task setting.
    type: dict
  lob_max_size_kb:
    description:
      - The largest LOB value of the tables, in KiB (the assessment's LOB sizing). Set, the task uses limited LOB mode
        with C(LobMaxSize) at least that (fast, and nothing is truncated); not set, full LOB mode (slower, never truncates).
    type: float
  cdc_start_position:
    description: Where CDC starts (an LSN, a checkpoint, or a date); used when creating and when starting.
    type: str
  tags:
    description: Tags; when set, the task's tags are made equal (see O(purge_tags)).
    type: dict
  purge_tags:
    description: Remove the tags not in O(tags). Tags starting with C(aws:) are never removed.
    type: bool
    default: true
  state:
    description:
      - C(present) the task exists (a running task is left running); C(running) it runs (started when needed);
        C(stopped) it exists and does not run; C(absent) it does not exist (stopped first when running, and the
        module waits until it is gone, within O(wait_timeout)).
    type: str
    choices: [present, running, stopped, absent]
    default: present
  start_type:
    description:
      - How to start it when it must be started. Default C(start-replication) the first time, C(resume-processing)
        after. A task already running is not restarted, whatever this says (C(reload-target) on a running task does
        nothing; stop it first).
    type: str
    choices: [start-replication, resume-processing, reload-target]
  wait:
    description:
      - What to wait for before returning. C(ready) the task is created or modified and can be started;
        C(running) it runs; C(full_load_complete) the full load is done (for C(full-load-and-cdc), running with every
        table loaded, the console's "Load complete, replication ongoing"; for C(full-load), stopped after its load; a table in
        error fails the module); C(stopped) it stopped. Not set, the module returns after its calls.
    type: str
    choices: [ready, running, full_load_complete, stopped]
  wait_timeout:
    description: Seconds to wait at most (for O(wait), and for the stops and deletions the module makes).
    type: int
    default: 3600
  poll_interval:
    description: Seconds between two polls while waiting.
    type: float
    default: 15
"""

EXAMPLES = r"""
- name: One task per plan stream, started, waiting for its full load
  pgshift.aurora.dms_task:
    identifier: pgshift-orders-s1
    replication_instance: pgshift-orders
    source_endpoint: pgshift-orders-source
    target_endpoint: pgshift-orders-target
    migration_type: full-load-and-cdc
    table_mappings:
      rules:
        - rule-type: selection
          rule-id: "1"
          rule-name: "1"
          object-locator: {schema-name: public, table-name: orders}
          rule-action: include
    lob_max_size_kb: 2048
    task_settings:
      Logging:
        EnableLogging: true
    state: running
    wait: full_load_complete
    wait_timeout: 86400
    aws_region: eu-west-1
  register: task

- name: Print its progress
  ansible.builtin.debug:
    msg: "{{ task.progress.percent }}% loaded, CDC latency {{ task.cdc_latency.target_seconds }} s"

- name: Stop it at the cutover
  pgshift.aurora.dms_task:
    identifier: pgshift-orders-s1
    state: stopped
    wait: stopped
    aws_region: eu-west-1

- name: Delete it
  pgshift.aurora.dms_task:
    identifier: pgshift-orders-s1
    state: absent
    aws_region: eu-west-1
"""

RETURN = r"""
task:
  description:
    - The task as the service describes it, in snake_case, with C(table_mappings) and C(task_settings) parsed
      (their own keys as DMS spells them) and C(tags). Empty when absent.
  returned: always
  type: dict
  sample:
    replication_task_identifier: pgshift-orders-s1
    status: running
    migration_type: full-load-and-cdc
    replication_task_stats: {full_load_progress_percent: 100, tables_loaded: 3, tables_loading: 0, tables_errored: 0}
    table_mappings: {rules: []}
    task_settings: {FullLoadSettings: {TargetTablePrepMode: DO_NOTHING}}
    tags: {}
table_statistics:
  description: One entry per table once the task has started.
  returned: always
  type: list
  elements: dict
  sample:
    - {schema: public, table: orders, state: Table completed, full_load_rows: 120000, inserts: 15, updates: 3,
       deletes: 0, ddls: 0, validation_state: Validated}
progress:
  description: Tables total, loaded, loading (or queued), errored, full-load rows (null without table statistics) and percent.
  returned: always
  type: dict
  sample: {tables_total: 3, tables_loaded: 3, tables_loading: 0, tables_errored: 0, full_load_rows: 120345, percent: 100}
cdc_latency:
  description:
    - Latest CloudWatch C(CDCLatencySource) and C(CDCLatencyTarget) (AWS/DMS, 1-minute averages of the last 10
      minutes), in seconds; null without datapoints.
  returned: always
  type: dict
  sample: {source_seconds: 1.0, target_seconds: 3.0}
actions:
  description: The calls made (or that would be made in check mode), in order.
  returned: always
  type: list
  elements: str
  sample: [stop, modify, start resume-processing]
"""

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible_collections.pgshift.aurora.plugins.module_utils._aws import common
from ansible_collections.pgshift.aurora.plugins.module_utils.runners import dms_task as runner


def main():
    module = AnsibleModule(supports_check_mode=True, **runner.module_spec())
    if common.BOTO3_IMPORT_ERROR:
        module.fail_json(msg=missing_required_lib("boto3"), exception=common.BOTO3_IMPORT_ERROR)
    runner.run_module(module)


if __name__ == "__main__":
    main()
