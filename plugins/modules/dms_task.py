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

import time

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible_collections.pgshift.aurora.plugins.module_utils import dms
from ansible_collections.pgshift.aurora.plugins.module_utils._aws import dms as dms_api


class TaskFailed(Exception):
    def __init__(self, msg, raw):
        super().__init__(msg)
        self.raw = raw


class Runner:
    def __init__(self, module, api, cw, sleep=time.sleep, clock=time.monotonic):
        self.module = module
        self.p = module.params
        self.api = api
        self.cw = cw
        self.ident = self.p["identifier"]
        self.cache = {}
        self.actions = []
        self.sleep = sleep
        self.clock = clock

    def find(self):
        return dms_api.find_task(self.api, self.ident)

    def wait(self, condition, timeout=None):
        verdict, raw = dms_api.poll(self.find, lambda t: dms.wait_verdict(condition, t),
                                    timeout if timeout is not None else self.p["wait_timeout"], self.p["poll_interval"],
                                    sleep=self.sleep, clock=self.clock)
        if verdict == "ok":
            return raw
        if verdict == "gone":
            self.module.fail_json(msg="replication task %s disappeared while waiting for it to be %s" % (self.ident, condition))
        if verdict == "failed":
            raise TaskFailed(self.failure_message(raw), raw)
        self.module.fail_json(msg="replication task %s: timed out after %ss waiting for it to be %s (status %s); the task "
                                  "goes on: run again with a longer wait_timeout, or look at its table statistics" % (
                                      self.ident, self.p["wait_timeout"], condition, raw.get("Status") if raw else "gone"),
                              **self.report(raw))

    def failure_message(self, raw):
        msg = dms.task_failure(raw)
        if msg is None and (raw.get("ReplicationTaskStats") or {}).get("TablesErrored"):
            msg = "replication task %s has %s table(s) in error" % (self.ident, raw["ReplicationTaskStats"]["TablesErrored"])
        instance = dms_api.instance_identifier(self.api, raw.get("ReplicationInstanceArn"), self.cache)
        return "%s: %s" % (msg, dms.failure_advice(raw, instance))

    def report(self, raw):
        if raw is None:
            return dict(task={}, table_statistics=[], progress=dms.progress([], None),
                        cdc_latency=dict(source_seconds=None, target_seconds=None))
        out = dms_api.task_report(self.api, self.cw, raw, self.module.warn, self.cache)
        out["task"]["tags"] = dms_api.list_tags(self.api, raw["ReplicationTaskArn"])
        return out

    def resolve(self, kind, ident):
        """ARN of the instance or endpoint ident; in check mode a missing one is shown by name."""
        if not ident:
            return None
        found = dms_api.find_instance(self.api, ident) if kind == "instance" else dms_api.find_endpoint(self.api, ident)
        if found is None:
            if self.module.check_mode:
                return "(%s %s, not created yet)" % (kind, ident)
            self.module.fail_json(msg="replication task %s: %s %s does not exist: create it first (pgshift.aurora.%s)" % (
                self.ident, kind, ident, "dms_replication_instance" if kind == "instance" else "dms_endpoint"))
        if kind == "instance":
            self.cache[found["ReplicationInstanceArn"]] = found["ReplicationInstanceIdentifier"]
            return found["ReplicationInstanceArn"]
        return found["EndpointArn"]

    def start(self, raw):
        kind = dms.start_type(raw, self.p["start_type"])
        args = dict(ReplicationTaskArn=raw["ReplicationTaskArn"], StartReplicationTaskType=kind)
        # Never on resume-processing: that goes on from the task's own checkpoint.
        if self.p["cdc_start_position"] and raw.get("MigrationType") != "full-load" and kind != "resume-processing":
            args["CdcStartPosition"] = self.p["cdc_start_position"]
        try:
            self.api.call("start_replication_task", doing="starting replication task %s (%s)" % (self.ident, kind), **args)
        except dms_api.DmsError as exc:
            if exc.code != "InvalidResourceStateFault":
                raise
            # Still creating or modifying: wait until it settles, then start.
            self.wait("settled")
            self.api.call("start_replication_task", doing="starting replication task %s (%s)" % (self.ident, kind), **args)
        return kind

    def stop(self, raw):
        if raw.get("Status") in dms.BUSY:  # starting (then running) or stopping (then stopped)
            raw = self.wait("settled")
        if raw.get("Status") == "running":
            self.api.call("stop_replication_task", doing="stopping replication task %s" % self.ident,
                          ReplicationTaskArn=raw["ReplicationTaskArn"])
            raw = self.wait("stopped")
        return raw

    def run(self):
        p = self.p
        raw = self.find()
        result = dict(changed=False)

        if p["state"] == "absent":
            deleting = raw is not None and raw.get("Status") == "deleting"
            steps = [] if deleting else dms.task_steps(raw, "absent", False)
            self.actions = steps
            if deleting and not self.module.check_mode:  # deleted already (an earlier run that timed out): wait for it
                self.wait("absent")
            if steps:
                result.update(changed=True, diff=dict(before=dict(identifier=self.ident, status=raw.get("Status")),
                                                      after=dict(identifier=self.ident, state="absent")))
            if steps and not self.module.check_mode:
                raw = self.stop(raw) if "stop" in steps else raw
                if raw.get("Status") in dms.BUSY:
                    raw = self.wait("settled")
                self.api.call("delete_replication_task", doing="deleting replication task %s" % self.ident,
                              ReplicationTaskArn=raw["ReplicationTaskArn"])
                self.wait("absent")
            result.update(self.report(None), actions=self.actions)
            return result

        try:
            mappings = dms.normalise_table_mappings(p["table_mappings"]) if p["table_mappings"] not in (None, "") else None
            user_settings = dms.parse_json(p["task_settings"], "task_settings")
        except ValueError as exc:
            self.module.fail_json(msg="replication task %s: %s" % (self.ident, exc))
        settings = dms.task_settings(user_settings, p["lob_max_size_kb"])  # on creation
        user_set = dms.user_task_settings(user_settings, p["lob_max_size_kb"])  # compared and changed afterwards
        instance_arn = self.resolve("instance", p["replication_instance"])
        source_arn = self.resolve("endpoint", p["source_endpoint"])
        target_arn = self.resolve("endpoint", p["target_endpoint"])

        tags = dms_api.list_tags(self.api, raw["ReplicationTaskArn"]) if raw else {}
        changes = []
        if raw is None:
            missing = [k for k in ("replication_instance", "source_endpoint", "target_endpoint", "migration_type", "table_mappings")
                       if not p[k]]
            if missing:
                self.module.fail_json(msg="replication task %s does not exist: set %s to create it" % (self.ident, ", ".join(missing)))
        else:
            fixed = [name for name, want, have in (("replication_instance", instance_arn, raw.get("ReplicationInstanceArn")),
                                                   ("source_endpoint", source_arn, raw.get("SourceEndpointArn")),
                                                   ("target_endpoint", target_arn, raw.get("TargetEndpointArn")))
                     if want and want != have]
            if fixed:
                self.module.fail_json(msg="replication task %s: %s cannot change on an existing task: delete it (state=absent) "
                                          "and create it again" % (self.ident, ", ".join(fixed)), **self.report(raw))
            if p["migration_type"] and p["migration_type"] != raw.get("MigrationType"):
                changes.append("migration_type")
            if mappings is not None:
                changes.extend("table_mappings." + d for d in dms.mappings_drift(mappings, raw.get("TableMappings")))
            have_settings = dms.parse_json(raw.get("ReplicationTaskSettings"), "the task's settings") or {}
            changes.extend("task_settings." + d for d in dms.drift(user_set, have_settings))

        if raw is not None:
            failed = dms.task_failure(raw)
            if failed and p["state"] == "present" and not changes:
                raise TaskFailed(self.failure_message(raw), raw)

        steps = dms.task_steps(raw, p["state"], bool(changes))
        add, remove = dms.tag_changes(p["tags"], tags, p["purge_tags"]) if raw is not None else ({}, [])  # else: tagged on creation
        planned = [s if s != "start" else "start %s" % dms.start_type(raw or {}, p["start_type"]) for s in steps]
        if add or remove:
            planned.append("tag")
        self.actions = planned
        if planned:
            before = {}
            if raw is not None:
                before = dict(identifier=self.ident, status=raw.get("Status"), migration_type=raw.get("MigrationType"),
                              table_mappings=dms.parse_json(raw.get("TableMappings"), "TableMappings"),
                              task_settings=dms.parse_json(raw.get("ReplicationTaskSettings"), "ReplicationTaskSettings"),
                              tags=tags)
            after = dict(identifier=self.ident, state=p["state"], migration_type=p["migration_type"] or before.get("migration_type"),
                         table_mappings=mappings if mappings is not None else before.get("table_mappings"),
                         task_settings=dms.deep_merge(before["task_settings"] or {}, user_set) if raw is not None else settings,
                         tags=(dict(p["tags"]) if p["purge_tags"] else dict(tags, **add)) if p["tags"] is not None else tags,
                         actions=planned)
            if raw is None:
                after.update(replication_instance=instance_arn, source_endpoint=source_arn, target_endpoint=target_arn,
                             cdc_start_position=p["cdc_start_position"])
            else:
                after["changes"] = changes
            result.update(changed=True, diff=dict(before=before, after=after))
        if self.module.check_mode:
            result.update(self.report(raw), actions=self.actions)
            return result

        done = []
        for step in steps:
            if step == "create":
                args = dict(ReplicationTaskIdentifier=self.ident, ReplicationInstanceArn=instance_arn, SourceEndpointArn=source_arn,
                            TargetEndpointArn=target_arn, MigrationType=p["migration_type"],
                            TableMappings=dms.to_json(mappings), ReplicationTaskSettings=dms.to_json(settings))
                if p["cdc_start_position"] and p["migration_type"] != "full-load":
                    args["CdcStartPosition"] = p["cdc_start_position"]
                if p["tags"]:
                    args["Tags"] = [dict(Key=str(k), Value=str(v)) for k, v in sorted(p["tags"].items())]
                raw = self.api.call("create_replication_task", doing="creating replication task %s" % self.ident, **args)["ReplicationTask"]
                done.append("create")
            elif step == "stop":
                raw = self.stop(raw)
                done.append("stop")
            elif step == "modify":
                if raw.get("Status") in dms.BUSY:
                    raw = self.wait("settled")
                args = dict(ReplicationTaskArn=raw["ReplicationTaskArn"])
                if user_set:
                    have_settings = dms.parse_json(raw.get("ReplicationTaskSettings"), "the task's settings") or {}
                    args["ReplicationTaskSettings"] = dms.to_json(dms.modify_settings(have_settings, user_set))
                if p["migration_type"]:
                    args["MigrationType"] = p["migration_type"]
                if mappings is not None:
                    args["TableMappings"] = dms.to_json(mappings)
                self.api.call("modify_replication_task", doing="modifying replication task %s" % self.ident, **args)
                raw = self.wait("settled")
                done.append("modify")
            elif step == "start":
                done.append("start %s" % self.start(raw))
                raw = self.find()
        if add or remove:
            dms_api.apply_tags(self.api, raw["ReplicationTaskArn"], add, remove)
            done.append("tag")
        self.actions = done

        if p["wait"]:
            raw = self.wait(p["wait"])
        else:
            raw = self.find()
        if raw is None:
            self.module.fail_json(msg="replication task %s disappeared" % self.ident)
        if dms.task_failure(raw):
            if p["state"] in ("present", "running"):
                raise TaskFailed(self.failure_message(raw), raw)
            self.module.warn(self.failure_message(raw))
        result.update(self.report(raw), actions=self.actions)
        return result


def main():
    spec = dict(
        identifier=dict(type="str", required=True),
        replication_instance=dict(type="str"),
        source_endpoint=dict(type="str"),
        target_endpoint=dict(type="str"),
        migration_type=dict(type="str", choices=["full-load", "cdc", "full-load-and-cdc"]),
        table_mappings=dict(type="raw"),
        task_settings=dict(type="dict"),
        lob_max_size_kb=dict(type="float"),
        cdc_start_position=dict(type="str"),
        tags=dict(type="dict"),
        purge_tags=dict(type="bool", default=True),
        state=dict(type="str", default="present", choices=["present", "running", "stopped", "absent"]),
        start_type=dict(type="str", choices=["start-replication", "resume-processing", "reload-target"]),
        wait=dict(type="str", choices=["ready", "running", "full_load_complete", "stopped"]),
        wait_timeout=dict(type="int", default=3600),
        poll_interval=dict(type="float", default=15),
    )
    spec.update(dms_api.aws_argument_spec())
    module = AnsibleModule(argument_spec=spec, supports_check_mode=True)
    if dms_api.BOTO3_IMPORT_ERROR:
        module.fail_json(msg=missing_required_lib("boto3"), exception=dms_api.BOTO3_IMPORT_ERROR)
    runner = None
    try:
        api = dms_api.Api(dms_api.make_client("dms", module.params))
        cw = dms_api.Api(dms_api.make_client("cloudwatch", module.params))
        runner = Runner(module, api, cw)
        result = runner.run()
    except TaskFailed as exc:
        extra = {}
        try:
            extra = runner.report(exc.raw)
        except dms_api.DmsError:
            pass
        module.fail_json(msg=str(exc), actions=runner.actions, **extra)
    except dms_api.DmsError as exc:
        module.fail_json(msg=str(exc), error_code=exc.code, actions=runner.actions if runner else [])
    except Exception as exc:  # botocore configuration errors (profile, region) end here
        module.fail_json(msg=dms_api.explain(exc, "replication task %s" % module.params["identifier"]))
    module.exit_json(**result)


if __name__ == "__main__":
    main()
