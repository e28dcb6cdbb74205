# -*- coding: utf-8 -*-
# Copyright: pgshift.aurora contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""pg_logical_prereqs' orchestration: read the database (_pg/catalog.py) -> decide (prereqs.py: findings, the
fixes) -> with state=present, fix through the journal (_pg/fixes.py) and the RDS parameter group (_aws/rds.py),
reboot when asked, read again -> the result.
"""

from __future__ import annotations

import traceback

from ansible.module_utils.basic import missing_required_lib

from ansible_collections.pgshift.aurora.plugins.module_utils import parameter_groups, plan, prereqs, scope
from ansible_collections.pgshift.aurora.plugins.module_utils.journal import Journal
from ansible_collections.pgshift.aurora.plugins.module_utils._aws import common
from ansible_collections.pgshift.aurora.plugins.module_utils._aws import rds as rds_api
from ansible_collections.pgshift.aurora.plugins.module_utils._pg import catalog, fixes
from ansible_collections.pgshift.aurora.plugins.module_utils._pg.connection import (
    PgConnectError, connect, postgres_argument_spec, scrub)


def argument_spec():
    spec = postgres_argument_spec()
    spec.update(
        role=dict(type="str", required=True, choices=["source", "target"]),
        engine=dict(type="str", default="native", choices=["native", "dms"]),
        state=dict(type="str", default="assessed", choices=["assessed", "present"]),
        migration_user=dict(type="str"),
        migration_password=dict(type="str", no_log=True),
        planned_streams=dict(type="int", default=1),
        vcpus=dict(type="int"),
        reserved_slots=dict(type="int", default=2),
        fail_on=dict(type="str", default="blocker", choices=["blocker", "warning", "never"]),
        replica_identity_full=dict(type="list", elements="str", default=[]),
        system_settings=dict(type="bool", default=False),
        source_facts=dict(type="dict"),
        long_transaction_seconds=dict(type="int", default=300),
        lob_sample_rows=dict(type="int", default=10000),
        lob_sample_timeout=dict(type="int", default=5000),
        write_rate_sample_seconds=dict(type="float", default=0),
        lock_timeout=dict(type="int", default=5000),
        rds_instance_id=dict(type="str"),
        rds_parameter_group=dict(type="str"),
        aurora_cluster_id=dict(type="str"),
        rds_reboot=dict(type="bool", default=False),
        rds_reboot_timeout=dict(type="int", default=1800),
    )
    spec.update(common.aws_argument_spec(aliases=False))
    spec.update(scope.filter_argument_spec())
    return spec


def validate(p):
    """Bad input fails before anything is touched."""
    problems = []
    if p["planned_streams"] < 0:
        problems.append("planned_streams must be 0 (automatic) or more (got %d)" % p["planned_streams"])
    if p["reserved_slots"] < 0:
        problems.append("reserved_slots cannot be negative")
    problems.extend(prereqs.vcpus_problems(p["vcpus"]))
    for name in p["replica_identity_full"]:
        try:
            scope.split_qualified(name)
        except ValueError as exc:
            problems.append("replica_identity_full: %s" % exc)
    if p["state"] == "present" and p["role"] == "target" and p["replica_identity_full"]:
        problems.append("replica_identity_full applies to the source only")
    if p["rds_instance_id"] and not p["aws_region"] and not p["aws_endpoint_url"]:
        problems.append("rds_instance_id needs aws_region")
    user = p["migration_user"] or ""
    if len(user.encode("utf-8")) > 63:
        problems.append("migration_user is %d bytes long: PostgreSQL keeps 63 bytes of a name, so the role created "
                        "would not have this name; choose a shorter one" % len(user.encode("utf-8")))
    return problems


class PrereqsFailure(Exception):
    """The run stops; the message says why and what to do, `extra` goes into the module's result."""

    def __init__(self, msg, **extra):
        super().__init__(msg)
        self.extra = extra


class Prereqs:
    """One run of pg_logical_prereqs: read (_pg/catalog.py), decide (prereqs.py), fix (_pg/fixes.py, the RDS
    parameter group through _aws/rds.py), report."""

    def __init__(self, params, check_mode=False, diff=False):
        self.p = params
        self.check_mode = bool(check_mode)
        self.diff = bool(diff)
        self.secrets = [s for s in (params.get("login_password"), params.get("migration_password"),
                                    params.get("aws_secret_key"), params.get("aws_session_token")) if s]
        self.journal = Journal(check_mode, self.secrets)
        self.warnings = []
        self.api_calls = []
        self.user = self.p["migration_user"] or self.p["login_user"]
        self._rds = None
        self._rds_current = {}
        self._rds_group = None  # the instance's parameter group, once read through the API
        self.filters = scope.filters_from(self.p)

    def gather(self, conn, earlier=None):
        known = (earlier["write_rates"], earlier["write_rate_method"]) if earlier else None
        return catalog.gather(conn, self.p["role"], self.user, self.filters,
                              lob_sample_rows=self.p["lob_sample_rows"],
                              lob_sample_timeout_ms=self.p["lob_sample_timeout"],
                              write_rate_seconds=self.p["write_rate_sample_seconds"],
                              long_transaction_seconds=self.p["long_transaction_seconds"],
                              known_write_rates=known,
                              other_owners=(self.p["source_facts"] or {}).get("owners") or ()
                              if self.p["role"] == "target" else ())

    def planned_streams(self, facts, tables):
        if self.p["planned_streams"] > 0:
            return self.p["planned_streams"]
        if self.p["role"] == "target" and (self.p["source_facts"] or {}).get("planned_streams"):
            return int(self.p["source_facts"]["planned_streams"])
        return prereqs.suggest_streams(prereqs.sizes(facts, tables), vcpus=self.p["vcpus"])

    def opts(self, facts, tables):
        return dict(role=self.p["role"], engine=self.p["engine"], planned_streams=self.planned_streams(facts, tables),
                    reserved_slots=self.p["reserved_slots"], long_transaction_seconds=self.p["long_transaction_seconds"],
                    migration_user=self.user, migration_password=self.p["migration_password"],
                    rds=bool(self.p["rds_instance_id"]) or facts["server"]["is_rds"],
                    source=self.p["source_facts"], tables=tables,
                    replica_identity_full=self.p["replica_identity_full"], system_settings=self.p["system_settings"],
                    aws=dict(instance_id=self.p["rds_instance_id"],
                             parameter_group=self.p["rds_parameter_group"] or self._rds_group,
                             cluster_id=self.p["aurora_cluster_id"], region=self.p["aws_region"]))

    @property
    def queries(self):
        return self.journal.queries

    def fail(self, msg, **extra):
        raise PrereqsFailure(self.journal.scrub(msg), **extra)

    def run(self):
        """(result, the message to fail with or None); raises PrereqsFailure (or PgConnectError)."""
        conn = connect(self.p)
        try:
            facts, tables = self.gather(conn)
            changed = False
            diff = dict(before={}, after={})
            reboot_pending = False
            if self.p["state"] == "present":
                changed, reboot_pending = self.fix(conn, facts, tables, diff)
                if changed and not self.check_mode:
                    facts, tables = self.gather(conn, earlier=facts)
            if self.p["rds_instance_id"] and not reboot_pending:
                reboot_pending = self.rds_reboot_needed(facts)
            if reboot_pending and self.wants_reboot():
                # Opt-in reboot, whether this run or an earlier one changed the group; then wait until the
                # instance is available with its parameters in sync, reconnect and look again.
                changed = True
                if self.check_mode:
                    self.api_calls.append(dict(service="rds", operation="reboot_db_instance",
                                               parameters=dict(DBInstanceIdentifier=self.p["rds_instance_id"]),
                                               change=True))
                else:
                    conn.close()
                    self.reboot()
                    conn = connect(self.p)
                    facts, tables = self.gather(conn, earlier=facts)
                    reboot_pending = self.rds_reboot_needed(facts)
        finally:
            conn.close()
        findings, checks = prereqs.evaluate(facts, self.opts(facts, tables))
        result = self.result(facts, tables, findings, checks, changed, reboot_pending)
        if self.diff and changed:
            result["diff"] = diff
        message = prereqs.failure_message(findings, self.p["fail_on"])
        if message and self.check_mode and changed:
            # The findings are those before the fixes check mode did not make: a real run
            # assesses again after fixing, so only it can decide go or no-go.
            self.warnings.append("check mode: fixes not applied, findings are from before them; "
                                 + message.splitlines()[0])
            message = None
        return result, message and self.journal.scrub(message)

    def fix(self, conn, facts, tables, diff):
        try:
            actions = prereqs.plan_fixes(facts, self.opts(facts, tables))
        except ValueError as exc:
            self.fail(str(exc), changed=False)
        for a in actions:
            diff["before"][a["key"]] = a["before"]
            diff["after"][a["key"]] = a["after"]
        rds_changes, group, reboot_pending = self.plan_rds(facts, tables)
        for c in rds_changes:
            key = "parameter_group.%s.%s" % (group, c["ParameterName"])
            diff["before"][key] = self._rds_current.get(c["ParameterName"])
            diff["after"][key] = c["ParameterValue"]
        changed = bool(actions or rds_changes)
        if self.check_mode or not changed:
            fixes.record(self.journal, actions)
            if rds_changes:
                self.api_calls.append(dict(service="rds", operation="modify_db_parameter_group",
                                           parameters=dict(DBParameterGroupName=group, Parameters=rds_changes),
                                           change=True))
            return changed, reboot_pending or bool(rds_changes)
        try:
            not_reloaded = fixes.apply(conn, self.journal, actions, self.p["lock_timeout"],
                                       facts["admin"].get("can_reload", True))
        except fixes.LockBusy as exc:
            self.fail("a table was busy: its lock was not granted within lock_timeout (%d ms) while running %r; "
                      "every change of this run was rolled back. Run again when the long transactions holding it "
                      "end (see pg_locks / pg_stat_activity), or raise lock_timeout" % (
                          self.p["lock_timeout"], str(exc)), changed=False, queries=self.queries)
        if not_reloaded:
            self.warnings.append("the admin user %s may not run pg_reload_conf(): the settings changed take effect "
                                 "at the next restart (or SELECT pg_reload_conf() as a superuser for those that need "
                                 "no restart)" % facts["admin"]["name"])
        if rds_changes:
            reboot_pending = self.apply_rds(group, rds_changes) or reboot_pending
        return changed, reboot_pending

    # --- RDS parameter group -------------------------------------------------------------------

    def rds_client(self):
        if common.BOTO3_IMPORT_ERROR:
            self.fail(missing_required_lib("boto3"), exception=common.BOTO3_IMPORT_ERROR)
        return rds_api.api(self.p)

    def aws(self, operation, api_params, call):
        """Run call() (one or more _aws/rds.py calls), recorded as operation(api_params)."""
        self.api_calls.append(dict(service="rds", operation=operation, parameters=api_params,
                                   change=not operation.startswith("describe_")))
        try:
            return call()
        except rds_api.RebootTimeout as exc:
            self.fail(str(exc), api_calls=self.api_calls, queries=self.queries, changed=True)
        except common.AwsError as exc:  # the message says what failed and what to do
            self.fail(str(exc), api_calls=self.api_calls, queries=self.queries)

    def plan_rds(self, facts, tables):
        """(changes, group, reboot_pending) for the instance's parameter group."""
        if not self.p["rds_instance_id"] or self.p["role"] != "source":
            return [], None, False
        rds = self.rds_client()
        self._rds = rds
        instance_id = self.p["rds_instance_id"]
        inst = self.aws("describe_db_instances",
                        dict(DBInstanceIdentifier=instance_id), lambda: rds_api.describe_instance(rds, instance_id))
        group = inst["parameter_group"]
        self._rds_group = group
        desired = parameter_groups.desired_parameters(prereqs.desired_settings(facts, self.opts(facts, tables)))
        if not desired:
            return [], group, inst["apply_status"] == "pending-reboot"
        if parameter_groups.is_default_group(group):
            self.fail(
                "RDS instance %s uses the default parameter group %s, which cannot be changed: create a custom "
                "DB parameter group (family of the instance's engine), attach it to the instance, then run "
                "again" % (self.p["rds_instance_id"], group), api_calls=self.api_calls, changed=False)
        current = self.aws("describe_db_parameters", dict(DBParameterGroupName=group),
                           lambda: rds_api.describe_parameters(rds, group, "instance", set(desired)))
        self._rds_current = dict((name, p["value"]) for name, p in current.items())
        changes, refused = parameter_groups.compare_parameters(current, desired)
        if refused:
            self.fail("RDS parameter group %s: %s" % (group, "; ".join(refused)), api_calls=self.api_calls,
                      changed=False)
        return changes, group, inst["apply_status"] == "pending-reboot"

    def apply_rds(self, group, changes):
        rds = self._rds
        self.aws("modify_db_parameter_group", dict(DBParameterGroupName=group, Parameters=changes),
                 lambda: rds_api.modify_parameters(rds, group, "instance", changes))
        return any(c["ApplyMethod"] == "pending-reboot" for c in changes)

    def wants_reboot(self):
        return bool(self.p["rds_instance_id"] and self.p["rds_reboot"] and self.p["role"] == "source"
                    and self.p["state"] == "present")

    def reboot(self):
        rds = self._rds or self.rds_client()
        instance_id = self.p["rds_instance_id"]
        self.aws("reboot_db_instance", dict(DBInstanceIdentifier=instance_id),
                 lambda: rds_api.reboot_and_wait(rds, instance_id, self.p["rds_reboot_timeout"]))

    def rds_reboot_needed(self, facts):
        """After the group is right, a reboot is still pending while the live settings lag behind."""
        if self.p["role"] != "source":
            return False
        live = (facts["settings"].get("rds.logical_replication") or {}).get("setting")
        if live is not None:
            return live != "on"
        return (facts["settings"].get("wal_level") or {}).get("setting") != "logical"

    # --- result ------------------------------------------------------------------------------

    def result(self, facts, tables, findings, checks, changed, reboot_pending):
        summary = dict((s, 0) for s in prereqs.SEVERITIES)
        for f in findings:
            summary[f["severity"]] += 1
        size_summary = prereqs.sizes(facts, tables)
        size_summary["write_rate_method"] = facts.get("write_rate_method")
        result = dict(
            changed=changed,
            findings=findings,
            checks=checks,
            summary=summary,
            server=dict(version_num=facts["server"]["version_num"], version=facts["server"]["version_short"],
                        is_rds=facts["server"]["is_rds"], is_aurora=facts["server"]["is_aurora"],
                        in_recovery=facts["server"]["in_recovery"]),
            database=dict((k, v) for k, v in (facts.get("database") or {}).items()
                          if k not in ("stats_age_seconds", "clock_epoch", "stats_since_epoch")),
            settings=dict((name, dict(setting=s["setting"], unit=s["unit"], context=s["context"],
                                      configured=prereqs.configured_value(facts, name)))
                          for name, s in facts["settings"].items()),
            sizes=size_summary,
            suggested_streams=prereqs.suggest_streams(size_summary, vcpus=self.p["vcpus"]),
            vcpus=self.p["vcpus"],
            stream_cap=prereqs.vcpu_stream_cap(self.p["vcpus"]),
            planned_streams=self.planned_streams(facts, tables),
            restart_pending=prereqs.restart_pending(facts),
            reboot_pending=bool(reboot_pending),
            queries=self.queries,
            api_calls=self.api_calls,
        )
        if self.p["role"] == "source":
            lobs = prereqs.lob_columns(facts, tables)
            result["lob"] = dict(columns=lobs, recommendation=prereqs.recommend_lob_mode(lobs))
            result["source_facts"] = catalog.facts_for_target(facts)
            result["source_facts"]["planned_streams"] = result["planned_streams"]
            db = facts.get("database") or {}
            if db.get("clock_epoch") is not None:
                result["write_counters"] = plan.write_counter_reading(
                    prereqs.replicated_tables(tables), db["clock_epoch"], db["stats_since_epoch"], db.get("name"))
        return result


def module_spec():
    return dict(argument_spec=argument_spec())


def run_module(module):
    problems = validate(module.params)
    if problems:
        module.fail_json(msg="invalid options: " + "; ".join(problems))
    runner = Prereqs(module.params, check_mode=module.check_mode, diff=module._diff)  # pylint: disable=protected-access
    try:
        result, message = runner.run()
    except PrereqsFailure as exc:
        for warning in runner.warnings:
            module.warn(scrub(warning, runner.secrets))
        module.fail_json(msg=str(exc), **exc.extra)
    except PgConnectError as exc:
        module.fail_json(msg=str(exc))
    except Exception as exc:  # pylint: disable=broad-except  # an unexpected database error: said without any secret
        module.fail_json(msg=scrub("pg_logical_prereqs failed: %s" % exc, runner.secrets),
                         exception=scrub(traceback.format_exc(), runner.secrets),
                         queries=runner.queries, api_calls=runner.api_calls)
    for warning in runner.warnings:
        module.warn(scrub(warning, runner.secrets))
    if message:
        module.fail_json(msg=message, **result)
    module.exit_json(**result)
