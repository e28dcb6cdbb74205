#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: pgshift.aurora contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: pg_logical_prereqs
short_description: Assess and prepare a PostgreSQL database for logical replication
version_added: 0.1.0
description:
  - Inspects one database, the migration's source (RDS for PostgreSQL) or its target
    (Aurora PostgreSQL), and returns findings, each with an id, a severity
    (C(blocker), C(warning), C(info)), the object concerned, a detail and a remediation.
  - Checks settings (C(wal_level), C(rds.logical_replication), slots, WAL senders, workers,
    C(max_slot_wal_keep_size), C(wal_sender_timeout)), the migration user's privileges, tables
    without a usable replica identity, inheritance and declarative partitions, what logical
    replication does not carry (unlogged tables, large objects, materialized views, sequences,
    DDL, foreign tables), LOB columns with the largest value sampled, generated columns,
    user-defined types, triggers, rules, event triggers, extensions, encodings and collations,
    long-running and prepared transactions, inactive slots, sizes and write rates.
  - >-
    Connects as the admin user (O(login_user)): on RDS and Aurora the master user, which is not a superuser.
    It checks what the later phases do as that user - open replication connections (slots), act as the owner
    of every migrated object (publications, replica identity, the schema copy), create subscriptions
    (C(pg_create_subscription) on the target, and on the source for the rollback path), CREATE on the
    database - and what the migration user needs (replication, and on the source USAGE and SELECT). Each
    privilege it lacks is a finding that names the exact SQL (names quoted) or AWS CLI command that fixes it,
    and who can run it.
  - With O(state=present) it makes what can be made safely and only what the admin user may do (the
    migration user, created with its password set from a SCRAM verifier computed on the controller, and
    its grants; the admin's membership in the owner roles it holds ADMIN OPTION on; REPLICA IDENTITY FULL
    on the listed tables; C(ALTER SYSTEM) for self-managed servers; the RDS parameter group through the
    API) and reports the restart or reboot that is still needed; it never restarts PostgreSQL, and
    reboots RDS only when O(rds_reboot=true). What was asked explicitly and cannot be done fails before
    anything is changed.
  - In check mode it changes nothing and returns the SQL (RV(queries)) and API calls
    (RV(api_calls)) it would make. A second run in fix mode changes nothing.
author:
  - pgshift.aurora developers (@pgshift)
extends_documentation_fragment:
  - pgshift.aurora.postgres
  - pgshift.aurora.filters
options:
  role:
    description:
      - Which side of the migration this database is. The checks differ.
    type: str
    required: true
    choices: [source, target]
  engine:
    description:
      - The replication engine the migration will use; some findings are more severe for one
        (for example a table without a primary key is a blocker for C(dms) even with REPLICA IDENTITY FULL).
    type: str
    default: native
    choices: [native, dms]
  state:
    description:
      - C(assessed) only reads. C(present) applies the fixes that are safe, then assesses again.
    type: str
    default: assessed
    choices: [assessed, present]
  migration_user:
    description:
      - The user that replication runs as. Defaults to O(login_user).
    type: str
  migration_password:
    description:
      - Password to create O(migration_user) with when it does not exist (fix mode only).
      - Sent to the server only as a SCRAM-SHA-256 verifier computed here (with SASLprep, as PostgreSQL
        does), so it is in no statement the server logs. Never logged, never returned; RV(queries) shows
        C(PASSWORD '********').
    type: str
  planned_streams:
    description:
      - How many parallel replication streams (slots, subscriptions or DMS tasks) the migration
        will run; slot, sender and worker capacities are checked against it.
      - C(0) means automatic, the RV(suggested_streams) computed from sizes and write rates.
    type: int
    default: 1
  reserved_slots:
    description:
      - Slots and senders to keep free on top of the planned streams (table synchronisation,
        tools, a second attempt).
    type: int
    default: 2
  fail_on:
    description:
      - Fail when a finding of this severity or worse remains. C(never) only reports.
    type: str
    default: blocker
    choices: [blocker, warning, never]
  replica_identity_full:
    description:
      - Tables (C(schema.table)) to give REPLICA IDENTITY FULL in fix mode, typically tables without
        a primary key. A partitioned table's leaves get it too.
    type: list
    elements: str
    default: []
  system_settings:
    description:
      - In fix mode on a self-managed server, raise C(wal_level), slots, senders and workers with
        C(ALTER SYSTEM) (needs a superuser). A restart is still needed and is reported in RV(restart_pending).
    type: bool
    default: false
  source_facts:
    description:
      - For O(role=target), the RV(source_facts) returned by the source's run, to compare versions,
        encodings, collations and extensions.
    type: dict
  long_transaction_seconds:
    description: Transactions open longer than this are reported.
    type: int
    default: 300
  lob_sample_rows:
    description: Rows read at most per LOB column to find its largest value.
    type: int
    default: 10000
  lob_sample_timeout:
    description: Milliseconds allowed per LOB column sample.
    type: int
    default: 5000
  lock_timeout:
    description:
      - Milliseconds fix mode waits for a table lock (ALTER TABLE ... REPLICA IDENTITY) before giving up
        and rolling every change back, so a busy table never queues the application behind it.
    type: int
    default: 5000
  write_rate_sample_seconds:
    description:
      - When above 0, measure each table's write rate over this many seconds.
      - When below 0, use the average since the statistics were reset.
      - C(0) (automatic) uses that average when the statistics cover an hour or more, and a
        3-second sample otherwise (a fresh server or a bulk load just done would mislead it).
    type: float
    default: 0
  rds_instance_id:
    description:
      - The RDS instance of this database. With it, fix mode changes the instance's DB parameter
        group through the RDS API instead of C(ALTER SYSTEM).
    type: str
  rds_parameter_group:
    description:
      - >-
        The DB parameter group of the RDS instance (O(role=source)) or the DB cluster parameter group of the
        Aurora cluster (O(role=target) with O(aurora_cluster_id)), named in the AWS CLI commands the findings
        give. Informational: fix mode changes the group attached to O(rds_instance_id), read through the API.
    type: str
  aurora_cluster_id:
    description:
      - The Aurora cluster of this database (O(role=target)); with it the findings give the DB cluster parameter
        group commands. O(rds_instance_id) is then its writer instance (the one to reboot).
    type: str
  rds_reboot:
    description:
      - With O(state=present) on the source - reboot the RDS instance when its parameter group waits for a reboot
        (changed by this run or an earlier one, or logical replication still off on the live server), wait until
        it is available with its parameter group in sync, reconnect and assess again.
    type: bool
    default: false
  rds_reboot_timeout:
    description: Seconds to wait for the instance after the reboot.
    type: int
    default: 1800
  aws_region:
    description: AWS region of the RDS instance.
    type: str
  aws_endpoint_url:
    description: Endpoint of the RDS API; point it at a local stand-in (moto) in the lab.
    type: str
  aws_access_key:
    description: AWS access key id; defaults to the usual boto3 sources.
    type: str
  aws_secret_key:
    description: AWS secret access key. Never logged nor returned.
    type: str
  aws_session_token:
    description: AWS session token. Never logged nor returned.
    type: str
  aws_profile:
    description: AWS profile to use.
    type: str
requirements:
  - psycopg >= 3.1
  - boto3 (only with O(rds_instance_id))
notes:
  - Supports check mode and diff mode.
  - The connected user need not be a superuser; on RDS and Aurora it is the master user (rds_superuser).
    What it may not do is reported, with the statement for the role that can.
seealso:
  - name: Logical replication restrictions
    description: What PostgreSQL's logical replication does not replicate.
    link: https://www.postgresql.org/docs/current/logical-replication-restrictions.html
"""

EXAMPLES = r"""
- name: Assess the source (report only)
  pgshift.aurora.pg_logical_prereqs:
    login_host: "{{ db_host }}"
    login_port: "{{ db_port }}"
    login_db: "{{ db_name }}"
    login_user: "{{ db_admin_user }}"
    login_password: "{{ db_admin_password }}"
    ssl_mode: verify-full
    ca_cert: /etc/ssl/rds/global-bundle.pem
    role: source
    migration_user: pgshift
    planned_streams: 4
    fail_on: never
  register: source_assessment

- name: Assess the target against the source
  pgshift.aurora.pg_logical_prereqs:
    login_host: "{{ hostvars[groups['target'][0]].db_host }}"
    login_db: app
    login_user: postgres
    login_password: "{{ target_admin_password }}"
    role: target
    planned_streams: 4
    source_facts: "{{ source_assessment.source_facts }}"

- name: Prepare an RDS source (parameter group, migration user, replica identity)
  pgshift.aurora.pg_logical_prereqs:
    login_host: mydb.abcdefgh.eu-west-1.rds.amazonaws.com
    login_db: app
    login_user: postgres
    login_password: "{{ vault_rds_master_password }}"
    role: source
    state: present
    migration_user: pgshift
    migration_password: "{{ vault_pgshift_password }}"
    replica_identity_full:
      - public.carrier_rates
    rds_instance_id: mydb
    aws_region: eu-west-1
    rds_reboot: false
"""

RETURN = r"""
findings:
  description: Every finding, blockers first.
  returned: always
  type: list
  elements: dict
  sample:
    - id: no_replica_identity
      severity: blocker
      object: public.carrier_rates
      detail: 1 table(s) have neither a primary key nor a usable replica identity
      remediation: add a primary key, or ALTER TABLE ... REPLICA IDENTITY FULL
checks:
  description: Every check run, with C(pass) or the worst severity it found.
  returned: always
  type: dict
  sample: {"wal_level": "pass", "no_replica_identity": "blocker"}
summary:
  description: Number of findings per severity.
  returned: always
  type: dict
  sample: {"blocker": 1, "warning": 3, "info": 9}
server:
  description: Version and flavour of the server.
  returned: always
  type: dict
  sample: {"version_num": 150018, "version": "15.18", "is_rds": false, "is_aurora": false}
settings:
  description: The replication-related settings, live and configured.
  returned: always
  type: dict
sizes:
  description: Database size, migrated bytes and rows, write rate, and the largest tables.
  returned: always
  type: dict
suggested_streams:
  description: How many parallel streams the sizes and write rates call for.
  returned: always
  type: int
  sample: 2
planned_streams:
  description: The number of streams the capacity checks used (O(planned_streams), or the suggestion when it is 0).
  returned: always
  type: int
  sample: 2
lob:
  description: LOB columns with the largest value sampled, and the DMS LOB mode that truncates nothing.
  returned: when role is source
  type: dict
source_facts:
  description: What a target assessment compares with (pass it as O(source_facts)).
  returned: when role is source
  type: dict
write_counters:
  description:
    - A reading of every replicated table's write counters (inserts + updates + deletes) with the server's clock
      and since when its statistics count. Pass it to M(pgshift.aurora.pg_replication_plan) as
      O(pgshift.aurora.pg_replication_plan#module:write_counters) to plan with the write rates since this
      assessment instead of sampling.
  returned: when role is source
  type: dict
  sample: {"taken_at": 1795000000.123, "stats_since": 1794990000.0, "database": "app",
           "tables": [["public", "pgbench_accounts", 120345]]}
restart_pending:
  description: Settings configured but waiting for a PostgreSQL restart.
  returned: always
  type: list
  elements: str
reboot_pending:
  description: Whether the RDS instance must reboot for the parameter group to apply.
  returned: always
  type: bool
queries:
  description: The SQL run (or that would run in check mode); passwords are masked.
  returned: always
  type: list
  elements: str
api_calls:
  description:
    - The AWS API calls made (or that would be made in check mode); C(change) is true for the
      calls that change something.
  returned: always
  type: list
  elements: dict
"""

import traceback

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

try:
    from psycopg import errors as pg_errors
    from psycopg import sql
except ImportError:  # reported in main() through PSYCOPG_IMPORT_ERROR
    pg_errors = sql = None

from ansible_collections.pgshift.aurora.plugins.module_utils import parameter_groups, plan, prereqs, scope
from ansible_collections.pgshift.aurora.plugins.module_utils._aws import common
from ansible_collections.pgshift.aurora.plugins.module_utils._aws import rds as rds_api
from ansible_collections.pgshift.aurora.plugins.module_utils._pg import catalog
from ansible_collections.pgshift.aurora.plugins.module_utils._pg.connection import (
    PSYCOPG_IMPORT_ERROR, PgConnectError, connect, postgres_argument_spec, scrub)


def argument_spec():
    spec = postgres_argument_spec()
    spec.update(
        role=dict(type="str", required=True, choices=["source", "target"]),
        engine=dict(type="str", default="native", choices=["native", "dms"]),
        state=dict(type="str", default="assessed", choices=["assessed", "present"]),
        migration_user=dict(type="str"),
        migration_password=dict(type="str", no_log=True),
        planned_streams=dict(type="int", default=1),
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


class Prereqs:
    """Wiring: read, decide (pure functions), act, report."""

    def __init__(self, module):
        self.module = module
        self.p = module.params
        self.secrets = [self.p.get("login_password"), self.p.get("migration_password"),
                        self.p.get("aws_secret_key"), self.p.get("aws_session_token")]
        self.queries = []
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
        return prereqs.suggest_streams(prereqs.sizes(facts, tables))

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

    def run(self):
        conn = connect(self.p)
        try:
            facts, tables = self.gather(conn)
            changed = False
            diff = dict(before={}, after={})
            reboot_pending = False
            if self.p["state"] == "present":
                changed, reboot_pending = self.fix(conn, facts, tables, diff)
                if changed and not self.module.check_mode:
                    facts, tables = self.gather(conn, earlier=facts)
            if self.p["rds_instance_id"] and not reboot_pending:
                reboot_pending = self.rds_reboot_needed(facts)
            if reboot_pending and self.wants_reboot():
                # Opt-in reboot, whether this run or an earlier one changed the group; then wait until the
                # instance is available with its parameters in sync, reconnect and look again.
                changed = True
                if self.module.check_mode:
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
        if self.module._diff and changed:
            result["diff"] = diff
        message = prereqs.failure_message(findings, self.p["fail_on"])
        if message and self.module.check_mode and changed:
            # The findings are those before the fixes check mode did not make: a real run
            # assesses again after fixing, so only it can decide go or no-go.
            self.module.warn("check mode: fixes not applied, findings are from before them; "
                             + message.splitlines()[0])
            message = None
        if message:
            self.module.fail_json(msg=scrub(message, self.secrets), **result)
        self.module.exit_json(**result)

    def fix(self, conn, facts, tables, diff):
        try:
            actions = prereqs.plan_fixes(facts, self.opts(facts, tables))
        except ValueError as exc:
            self.module.fail_json(msg=scrub(str(exc), self.secrets), changed=False)
        sql_actions = [a for a in actions if a["kind"] == "sql"]
        setting_actions = [a for a in actions if a["kind"] == "setting"]
        for a in actions:
            self.queries.append(a["display"])
            diff["before"][a["key"]] = a["before"]
            diff["after"][a["key"]] = a["after"]
        rds_changes, group, reboot_pending = self.plan_rds(facts, tables)
        for c in rds_changes:
            key = "parameter_group.%s.%s" % (group, c["ParameterName"])
            diff["before"][key] = self._rds_current.get(c["ParameterName"])
            diff["after"][key] = c["ParameterValue"]
        changed = bool(actions or rds_changes)
        if self.module.check_mode or not changed:
            if rds_changes:
                self.api_calls.append(dict(service="rds", operation="modify_db_parameter_group",
                                           parameters=dict(DBParameterGroupName=group, Parameters=rds_changes),
                                           change=True))
            return changed, reboot_pending or bool(rds_changes)
        if sql_actions:
            # One transaction: a failure leaves every grant and replica identity as it was.
            try:
                with conn.transaction():
                    conn.execute(sql.SQL("SET LOCAL lock_timeout = {}").format(sql.Literal(self.p["lock_timeout"])))
                    for a in sql_actions:
                        conn.execute(a["sql"])
            except pg_errors.LockNotAvailable:
                self.module.fail_json(
                    msg="a table was busy: its lock was not granted within lock_timeout (%d ms) while running %r; "
                        "every change of this run was rolled back. Run again when the long transactions holding it "
                        "end (see pg_locks / pg_stat_activity), or raise lock_timeout" % (
                            self.p["lock_timeout"], a["display"]),
                    changed=False, queries=self.queries)
        for a in setting_actions:
            conn.execute(a["sql"])  # ALTER SYSTEM cannot run inside a transaction block
        if setting_actions and facts["admin"].get("can_reload", True):
            conn.execute("SELECT pg_reload_conf()")
            self.queries.append("SELECT pg_reload_conf()")
        elif setting_actions:
            self.module.warn("the admin user %s may not run pg_reload_conf(): the settings changed take effect at "
                             "the next restart (or SELECT pg_reload_conf() as a superuser for those that need no "
                             "restart)" % facts["admin"]["name"])
        if rds_changes:
            reboot_pending = self.apply_rds(group, rds_changes) or reboot_pending
        return changed, reboot_pending

    # --- RDS parameter group -------------------------------------------------------------------

    def rds_client(self):
        if common.BOTO3_IMPORT_ERROR:
            self.module.fail_json(msg=missing_required_lib("boto3"), exception=common.BOTO3_IMPORT_ERROR)
        return rds_api.api(self.p)

    def aws(self, operation, api_params, call):
        """Run call() (one or more _aws/rds.py calls), recorded as operation(api_params)."""
        self.api_calls.append(dict(service="rds", operation=operation, parameters=api_params,
                                   change=not operation.startswith("describe_")))
        try:
            return call()
        except rds_api.RebootTimeout as exc:
            self.module.fail_json(msg=str(exc), api_calls=self.api_calls, queries=self.queries, changed=True)
        except common.AwsError as exc:  # the message says what failed and what to do
            self.module.fail_json(msg=scrub(str(exc), self.secrets), api_calls=self.api_calls, queries=self.queries)

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
            self.module.fail_json(
                msg="RDS instance %s uses the default parameter group %s, which cannot be changed: create a custom "
                    "DB parameter group (family of the instance's engine), attach it to the instance, then run "
                    "again" % (self.p["rds_instance_id"], group), api_calls=self.api_calls, changed=False)
        current = self.aws("describe_db_parameters", dict(DBParameterGroupName=group),
                           lambda: rds_api.describe_parameters(rds, group, "instance", set(desired)))
        self._rds_current = dict((name, p["value"]) for name, p in current.items())
        changes, refused = parameter_groups.compare_parameters(current, desired)
        if refused:
            self.module.fail_json(msg="RDS parameter group %s: %s" % (group, "; ".join(refused)),
                                  api_calls=self.api_calls, changed=False)
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
            suggested_streams=prereqs.suggest_streams(size_summary),
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


def main():
    module = AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True)
    if PSYCOPG_IMPORT_ERROR:
        module.fail_json(msg=missing_required_lib("psycopg"), exception=PSYCOPG_IMPORT_ERROR)
    problems = validate(module.params)
    if problems:
        module.fail_json(msg="invalid options: " + "; ".join(problems))
    runner = Prereqs(module)
    try:
        runner.run()
    except PgConnectError as exc:
        module.fail_json(msg=str(exc))
    except Exception as exc:  # an unexpected database error: say it without any secret
        module.fail_json(msg=scrub("pg_logical_prereqs failed: %s" % exc, runner.secrets),
                         exception=scrub(traceback.format_exc(), runner.secrets),
                         queries=runner.queries, api_calls=runner.api_calls)


if __name__ == "__main__":
    main()
