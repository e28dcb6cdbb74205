# -*- coding: utf-8 -*-
# Copyright: pgshift.aurora contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""dms_task's and dms_task_info's orchestration: read the task -> decide (dms_tasks.task_steps, drift of its
mappings and settings) -> create / stop / modify / start / delete, waiting between the calls -> the report
(task, table statistics, progress, CDC latency).

Calls: _aws/dms.py. Decides: dms_tasks.py, dms_task_settings.py, table_mappings.py, drift.py.
"""

from __future__ import annotations

import time

from ansible_collections.pgshift.aurora.plugins.module_utils import dms_task_settings, dms_tasks, drift, table_mappings
from ansible_collections.pgshift.aurora.plugins.module_utils._aws import common
from ansible_collections.pgshift.aurora.plugins.module_utils._aws import dms as dms_api

NO_LATENCY = dict(source_seconds=None, target_seconds=None)


def argument_spec():
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
    spec.update(common.aws_argument_spec())
    return spec


class TaskFailed(Exception):
    def __init__(self, msg, raw):
        super().__init__(msg)
        self.raw = raw


def task_report(dms, cloudwatch, raw, warn, cache):
    """task (with its tags), table_statistics, progress and cdc_latency for one described task.

    Table statistics exist once the task has started; CDC latency only for a task with CDC. A failure
    to read either is a warning (through warn), not an error: the task's own state is what counts.
    """
    ident = raw.get("ReplicationTaskIdentifier")
    rows = []
    if dms_tasks.ever_started(raw) and raw.get("Status") not in ("creating", "deleting"):
        try:
            rows = [dms_tasks.table_row(s) for s in dms_api.table_statistics(dms, raw["ReplicationTaskArn"])]
        except common.AwsError as exc:
            warn("table statistics of %s not available: %s" % (ident, exc))
    latency = dict(NO_LATENCY)
    if raw.get("MigrationType") in ("cdc", "full-load-and-cdc") and dms_tasks.ever_started(raw) and cloudwatch is not None:
        try:
            instance_id = dms_api.instance_identifier(dms, raw.get("ReplicationInstanceArn"), cache)
            if instance_id:
                latency = dms_api.cdc_latency(cloudwatch, instance_id, ident)
        except common.AwsError as exc:
            warn("CDC latency of %s not available from CloudWatch: %s" % (ident, exc))
    out = dms_tasks.task_result(raw)
    out["tags"] = dms_api.list_tags(dms, raw["ReplicationTaskArn"])
    return dict(task=out, table_statistics=rows, progress=dms_tasks.progress(rows, raw), cdc_latency=latency)


def describe_tasks(dms, cloudwatch, identifiers, prefix, warn):
    """dms_task_info's result: the tasks named (or whose identifier starts with prefix), each reported, with the
    missing ones, the failed ones and the summary fields."""
    raws, missing = [], []
    if identifiers:
        for ident in identifiers:
            raw = dms_api.find_task(dms, ident)
            if raw is None:
                missing.append(ident)
            else:
                raws.append(raw)
    else:
        raws = [t for t in dms_api.all_tasks(dms) if t.get("ReplicationTaskIdentifier", "").startswith(prefix)]
        raws.sort(key=lambda t: t["ReplicationTaskIdentifier"])
    cache = {}
    tasks, failed = [], []
    for raw in raws:
        tasks.append(task_report(dms, cloudwatch, raw, warn, cache))
        msg = dms_tasks.task_failure(raw)
        if msg:
            failed.append(dict(identifier=raw["ReplicationTaskIdentifier"], msg=msg))
    return dict(changed=False, tasks=tasks, missing=missing, failed_tasks=failed,
                all_full_load_complete=bool(raws) and not missing and all(dms_tasks.full_load_done(r) for r in raws),
                max_cdc_latency_seconds=dms_tasks.max_latency(t["cdc_latency"] for t in tasks))


class Runner:
    """One dms_task run. module: params, check_mode, warn(), fail_json() (AnsibleModule or a test's stand-in)."""

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
        verdict, raw = common.poll(self.find, lambda t: dms_tasks.wait_verdict(condition, t),
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
        msg = dms_tasks.task_failure(raw)
        if msg is None and (raw.get("ReplicationTaskStats") or {}).get("TablesErrored"):
            msg = "replication task %s has %s table(s) in error" % (self.ident, raw["ReplicationTaskStats"]["TablesErrored"])
        instance = dms_api.instance_identifier(self.api, raw.get("ReplicationInstanceArn"), self.cache)
        return "%s: %s" % (msg, dms_tasks.failure_advice(raw, instance))

    def report(self, raw):
        if raw is None:
            return dict(task={}, table_statistics=[], progress=dms_tasks.progress([], None), cdc_latency=dict(NO_LATENCY))
        return task_report(self.api, self.cw, raw, self.module.warn, self.cache)

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
        kind = dms_tasks.start_type(raw, self.p["start_type"])
        position = None
        # Never on resume-processing: that goes on from the task's own checkpoint.
        if self.p["cdc_start_position"] and raw.get("MigrationType") != "full-load" and kind != "resume-processing":
            position = self.p["cdc_start_position"]
        try:
            dms_api.start_task(self.api, self.ident, raw["ReplicationTaskArn"], kind, position)
        except common.AwsError as exc:
            if exc.code != "InvalidResourceStateFault":
                raise
            # Still creating or modifying: wait until it settles, then start.
            self.wait("settled")
            dms_api.start_task(self.api, self.ident, raw["ReplicationTaskArn"], kind, position)
        return kind

    def stop(self, raw):
        if raw.get("Status") in dms_tasks.BUSY:  # starting (then running) or stopping (then stopped)
            raw = self.wait("settled")
        if raw.get("Status") == "running":
            dms_api.stop_task(self.api, self.ident, raw["ReplicationTaskArn"])
            raw = self.wait("stopped")
        return raw

    def settled(self, raw):
        return self.wait("settled") if raw.get("Status") in dms_tasks.BUSY else raw

    def run(self):
        raw = self.find()
        if self.p["state"] == "absent":
            return self.absent(raw)
        return self.present(raw)

    def absent(self, raw):
        result = dict(changed=False)
        deleting = raw is not None and raw.get("Status") == "deleting"
        steps = [] if deleting else dms_tasks.task_steps(raw, "absent", False)
        self.actions = steps
        if deleting and not self.module.check_mode:  # deleted already (an earlier run that timed out): wait for it
            self.wait("absent")
        if steps:
            result.update(changed=True, diff=dict(before=dict(identifier=self.ident, status=raw.get("Status")),
                                                  after=dict(identifier=self.ident, state="absent")))
        if steps and not self.module.check_mode:
            raw = self.settled(self.stop(raw) if "stop" in steps else raw)
            dms_api.delete_task(self.api, self.ident, raw["ReplicationTaskArn"])
            self.wait("absent")
        result.update(self.report(None), actions=self.actions)
        return result

    def wanted(self):
        """(table mappings, settings sent on creation, settings compared and changed afterwards) from the options."""
        p = self.p
        try:
            mappings = table_mappings.normalise_table_mappings(p["table_mappings"]) if p["table_mappings"] not in (None, "") else None
            user_settings = drift.parse_json(p["task_settings"], "task_settings")
        except ValueError as exc:
            self.module.fail_json(msg="replication task %s: %s" % (self.ident, exc))
        return (mappings, dms_task_settings.task_settings(user_settings, p["lob_max_size_kb"]),
                dms_task_settings.user_task_settings(user_settings, p["lob_max_size_kb"]))

    def changes(self, raw, arns, mappings, user_set):
        """What differs on an existing task (paths), or a failure for what cannot change; None for a task to create."""
        p = self.p
        if raw is None:
            missing = [k for k in ("replication_instance", "source_endpoint", "target_endpoint", "migration_type", "table_mappings")
                       if not p[k]]
            if missing:
                self.module.fail_json(msg="replication task %s does not exist: set %s to create it" % (self.ident, ", ".join(missing)))
            return []
        fixed = [name for name, want, have in (("replication_instance", arns[0], raw.get("ReplicationInstanceArn")),
                                               ("source_endpoint", arns[1], raw.get("SourceEndpointArn")),
                                               ("target_endpoint", arns[2], raw.get("TargetEndpointArn")))
                 if want and want != have]
        if fixed:
            self.module.fail_json(msg="replication task %s: %s cannot change on an existing task: delete it (state=absent) "
                                      "and create it again" % (self.ident, ", ".join(fixed)), **self.report(raw))
        changes = []
        if p["migration_type"] and p["migration_type"] != raw.get("MigrationType"):
            changes.append("migration_type")
        if mappings is not None:
            changes.extend("table_mappings." + d for d in table_mappings.mappings_drift(mappings, raw.get("TableMappings")))
        have_settings = drift.parse_json(raw.get("ReplicationTaskSettings"), "the task's settings") or {}
        changes.extend("task_settings." + d for d in drift.drift(user_set, have_settings))
        return changes

    def diff(self, raw, tags, add, planned, changes, mappings, settings, user_set, arns):
        p = self.p
        before = {}
        if raw is not None:
            before = dict(identifier=self.ident, status=raw.get("Status"), migration_type=raw.get("MigrationType"),
                          table_mappings=drift.parse_json(raw.get("TableMappings"), "TableMappings"),
                          task_settings=drift.parse_json(raw.get("ReplicationTaskSettings"), "ReplicationTaskSettings"),
                          tags=tags)
        after = dict(identifier=self.ident, state=p["state"], migration_type=p["migration_type"] or before.get("migration_type"),
                     table_mappings=mappings if mappings is not None else before.get("table_mappings"),
                     task_settings=drift.deep_merge(before["task_settings"] or {}, user_set) if raw is not None else settings,
                     tags=(dict(p["tags"]) if p["purge_tags"] else dict(tags, **add)) if p["tags"] is not None else tags,
                     actions=planned)
        if raw is None:
            after.update(replication_instance=arns[0], source_endpoint=arns[1], target_endpoint=arns[2],
                         cdc_start_position=p["cdc_start_position"])
        else:
            after["changes"] = changes
        return dict(before=before, after=after)

    def present(self, raw):
        p = self.p
        result = dict(changed=False)
        mappings, settings, user_set = self.wanted()
        arns = (self.resolve("instance", p["replication_instance"]), self.resolve("endpoint", p["source_endpoint"]),
                self.resolve("endpoint", p["target_endpoint"]))
        tags = dms_api.list_tags(self.api, raw["ReplicationTaskArn"]) if raw else {}
        changes = self.changes(raw, arns, mappings, user_set)
        if raw is not None and dms_tasks.task_failure(raw) and p["state"] == "present" and not changes:
            raise TaskFailed(self.failure_message(raw), raw)

        steps = dms_tasks.task_steps(raw, p["state"], bool(changes))
        add, remove = drift.tag_changes(p["tags"], tags, p["purge_tags"]) if raw is not None else ({}, [])  # else: tagged on creation
        planned = [s if s != "start" else "start %s" % dms_tasks.start_type(raw or {}, p["start_type"]) for s in steps]
        if add or remove:
            planned.append("tag")
        self.actions = planned
        if planned:
            result.update(changed=True, diff=self.diff(raw, tags, add, planned, changes, mappings, settings, user_set, arns))
        if self.module.check_mode:
            result.update(self.report(raw), actions=self.actions)
            return result

        raw = self.apply(raw, steps, arns, mappings, settings, user_set, add, remove)
        if p["wait"]:
            raw = self.wait(p["wait"])
        else:
            raw = self.find()
        if raw is None:
            self.module.fail_json(msg="replication task %s disappeared" % self.ident)
        if dms_tasks.task_failure(raw):
            if p["state"] in ("present", "running"):
                raise TaskFailed(self.failure_message(raw), raw)
            self.module.warn(self.failure_message(raw))
        result.update(self.report(raw), actions=self.actions)
        return result

    def apply(self, raw, steps, arns, mappings, settings, user_set, add, remove):
        """Make the calls of steps (create, stop, modify, start), then the tags; self.actions the calls made."""
        p = self.p
        done = []
        for step in steps:
            if step == "create":
                args = dict(ReplicationInstanceArn=arns[0], SourceEndpointArn=arns[1], TargetEndpointArn=arns[2],
                            MigrationType=p["migration_type"], TableMappings=drift.to_json(mappings),
                            ReplicationTaskSettings=drift.to_json(settings))
                if p["cdc_start_position"] and p["migration_type"] != "full-load":
                    args["CdcStartPosition"] = p["cdc_start_position"]
                if p["tags"]:
                    args["Tags"] = dms_api.tag_list(p["tags"])
                raw = dms_api.create_task(self.api, self.ident, args)
            elif step == "stop":
                raw = self.stop(raw)
            elif step == "modify":
                raw = self.settled(raw)
                args = {}
                if user_set:
                    have_settings = drift.parse_json(raw.get("ReplicationTaskSettings"), "the task's settings") or {}
                    args["ReplicationTaskSettings"] = drift.to_json(dms_task_settings.modify_settings(have_settings, user_set))
                if p["migration_type"]:
                    args["MigrationType"] = p["migration_type"]
                if mappings is not None:
                    args["TableMappings"] = drift.to_json(mappings)
                dms_api.modify_task(self.api, self.ident, raw["ReplicationTaskArn"], args)
                raw = self.wait("settled")
            elif step == "start":
                step = "start %s" % self.start(raw)
                raw = self.find()
            done.append(step)
        if add or remove:
            dms_api.apply_tags(self.api, raw["ReplicationTaskArn"], add, remove)
            done.append("tag")
        self.actions = done
        return raw


def module_spec():
    return dict(argument_spec=argument_spec())


def run_module(module):
    runner = None
    try:
        runner = Runner(module, dms_api.api(module.params), dms_api.api(module.params, "cloudwatch"))
        result = runner.run()
    except TaskFailed as exc:
        extra = {}
        try:
            extra = runner.report(exc.raw)
        except common.AwsError:
            pass
        module.fail_json(msg=str(exc), actions=runner.actions, **extra)
    except common.AwsError as exc:
        module.fail_json(msg=str(exc), error_code=exc.code, actions=runner.actions if runner else [])
    except Exception as exc:  # pylint: disable=broad-except  # botocore configuration errors (profile, region) end here
        module.fail_json(msg=common.explain(exc, "replication task %s" % module.params["identifier"]))
    module.exit_json(**result)


def info_module_spec():
    spec = dict(identifiers=dict(type="list", elements="str"), identifier_prefix=dict(type="str"))
    spec.update(common.aws_argument_spec())
    return dict(argument_spec=spec, required_one_of=[("identifiers", "identifier_prefix")],
                mutually_exclusive=[("identifiers", "identifier_prefix")])


def run_info_module(module):
    """dms_task_info's run: describes the tasks, changes nothing."""
    p = module.params
    common.end_run(module, lambda: describe_tasks(dms_api.api(p), dms_api.api(p, "cloudwatch"), p["identifiers"],
                                                  p["identifier_prefix"], module.warn), "describing replication tasks")
