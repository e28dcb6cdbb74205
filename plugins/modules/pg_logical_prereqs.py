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
  - pgshift.aurora.in_process
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
  vcpus:
    description:
      - The vCPUs of the smaller of the two instances (source and target), when known. The suggestion is then
        at most one stream per two vCPUs (RV(stream_cap)), since each stream takes a WAL decoder on the source
        and an apply worker on the target.
      - Unset, the suggestion is not capped by cores.
    type: int
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
  description: How many parallel streams the sizes and write rates call for, at most RV(stream_cap).
  returned: always
  type: int
  sample: 2
vcpus:
  description: The O(vcpus) the suggestion was capped by (null when not given).
  returned: always
  type: int
  sample: 4
stream_cap:
  description: The most streams O(vcpus) carry (one per two vCPUs, at least one); null without O(vcpus).
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


from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible_collections.pgshift.aurora.plugins.module_utils._pg.connection import PSYCOPG_IMPORT_ERROR
from ansible_collections.pgshift.aurora.plugins.module_utils.runners import prereqs as runner


def main():
    module = AnsibleModule(supports_check_mode=True, **runner.module_spec())
    if PSYCOPG_IMPORT_ERROR:
        module.fail_json(msg=missing_required_lib("psycopg"), exception=PSYCOPG_IMPORT_ERROR)
    runner.run_module(module)


if __name__ == "__main__":
    main()
