#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: pgshift.aurora contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: aurora_cutover
short_description: Blue/green cutover, rollback and rehearsal of a migration as a step machine with checkpoints
version_added: 0.3.0
description:
  - Moves the application from the source to the target (O(direction=forward)) or back (O(direction=reverse),
    the rollback) in timed steps, each with a go/no-go gate - 1 preflight (streams streaming within
    O(max_lag_bytes)/O(max_lag_seconds), the last validation passed, no long transaction on the old side,
    every non-empty table on the target with planner statistics),
    2 freeze of writes on the old side, 3 barrier (the old side's WAL position after the freeze confirmed by
    every stream; for O(engine=dms) a marker row written after the freeze seen on the new side), 4 sequences
    (every sequence on the new side at least the old side's and above its columns, plus O(sequence_gap)),
    5 finishing (materialized views refreshed, triggers enabled as on the old side, foreign keys validated),
    6 verify (counts of the busiest tables, the sequences), 7 return path (the new side's publication and slot
    created while writes are still frozen), 8 switch traffic, 9 replication (old -> new streams stopped, the
    old side subscribes to the new side's slot without copying), 10 post-check (no application session left
    on the old side).
  - If any step before the switch fails or the pause runs over O(freeze_timeout), what was done is undone
    (RESUME, or read-write again; the return slot dropped) and the module fails saying why; the old side serves
    as before and the forward streams are untouched, so the cutover can simply run again.
  - O(rehearsal=true) runs steps 1-7 for real, measures them, then undoes the freeze instead of switching. For a
    cutover it then proves the way back - the source server subscribes to the return slot as
    O(target_replication_user), the stream is checked and removed - and records it in rehearsal.json, which a
    cutover's preflight reads (O(return_path_requirement)).
  - After a rollback the old forward streams are gone; fresh forward streams (same names, slots created on the
    source during the rollback's freeze, subscriptions with C(copy_data=false)) are made, so a second cutover
    runs like the first.
  - O(mode=status) only tells which side serves; O(mode=cleanup) removes the return stream and the cutover log
    (the forward streams are removed by M(pgshift.aurora.pg_native_stream)).
author:
  - pgshift.aurora developers (@pgshift)
extends_documentation_fragment:
  - pgshift.aurora.postgres
  - pgshift.aurora.postgres_target
options:
  migration:
    description: The migration name; streams are C(pgshift_<migration>_s<N>), the return stream C(pgshift_<migration>_r1).
    type: str
    required: true
  mode:
    description:
      - C(run) the step machine, C(status) to read which side serves, C(cleanup) to remove the return stream and log.
      - C(prepare) only creates the cutover log C(pgshift.cutover_log) on both sides (idempotent). With
        O(engine=dms) run it before the DMS tasks start, with that table in a task's table mapping, so the
        marker row the barrier writes reaches the target (replicate.yml does both).
      - C(resume_reverse), after a cutover whose return stream could not be made (status
        C(switched_without_return_path)), makes it again once the cause is fixed - the return publication and slot
        on the target when they are gone, the subscription on the source - and checks that it streams. A new slot
        starts now, so what the target took between the switch and now is not in it (C(gap) in RV(return_path)).
      - C(recover) only undoes the freezes a run left in effect when its controller died inside the freeze (a
        PgBouncer PAUSE, application roles read-only), from the journal C(pgshift.freeze_journal) the freeze writes
        on the frozen side before it takes effect, and says what it did (RV(recovered)). Every other run (cutover,
        rehearsal, rollback, cleanup) does the same first.
    type: str
    choices: [run, status, cleanup, prepare, recover, resume_reverse]
    default: run
  direction:
    description: C(forward) moves traffic source -> target; C(reverse) (rollback) target -> source.
    type: str
    choices: [forward, reverse]
    default: forward
  rehearsal:
    description: Run steps 1-7 for real, then undo them instead of switching.
    type: bool
    default: false
  engine:
    description: The migration engine; C(dms) takes its streams from O(dms_tasks) and proves the barrier with a marker row.
    type: str
    choices: [native, dms]
    default: native
  dms_tasks:
    description:
      - For O(engine=dms), the C(tasks) returned by M(pgshift.aurora.dms_task_info) (each with C(task.status) and
        C(cdc_latency)). The table C(pgshift.cutover_log) must be in the tasks' table mappings.
    type: list
    elements: dict
    default: []
  freeze_method:
    description:
      - C(pgbouncer) PAUSEs the database in PgBouncer (clients wait, they do not fail); C(read_only) sets
        C(default_transaction_read_only) for O(app_roles) in the old side's database only (C(ALTER ROLE .. IN
        DATABASE)) and ends their sessions in that database; C(command) runs O(freeze_command).
      - C(read_only) needs what the master user of RDS and Aurora has - ADMIN OPTION on the roles (PostgreSQL 16+
        gives it on the roles it created) and C(pg_signal_backend) - and cannot freeze a superuser role (the
        preflight says no-go).
      - Every statement inside the freeze runs with C(statement_timeout) and C(lock_timeout) from the pause budget
        left; one cut short by them undoes the freeze, and the message names it.
    type: str
    choices: [pgbouncer, read_only, command]
    default: pgbouncer
  freeze_command:
    description: Shell command that stops writes (freeze_method=command).
    type: str
  unfreeze_command:
    description: Shell command that undoes O(freeze_command).
    type: str
  switch_method:
    description:
      - C(pgbouncer) (point the database's entry in PgBouncer's C([databases]) at the new side, RELOAD, RESUME),
        C(route53), C(command) or C(none).
    type: str
    choices: [pgbouncer, route53, command, none]
    default: pgbouncer
  switch_command:
    description: Shell command that moves traffic (switch_method=command); C(PGSHIFT_NEW_SIDE) says where to.
    type: str
  freeze_timeout:
    description: The write pause budget in seconds; running over it before the switch undoes the freeze.
    type: float
    default: 10
  barrier_timeout:
    description: Seconds the barrier may wait (never more than what is left of O(freeze_timeout)).
    type: float
    default: 30
  max_lag_bytes:
    description: Preflight - the largest lag in bytes a stream may have.
    type: int
    default: 16777216
  max_lag_seconds:
    description: Preflight - the largest lag in seconds a stream may have.
    type: float
    default: 5
  max_transaction_seconds:
    description: Preflight - no transaction on the old side may have been open longer than this.
    type: float
    default: 5
  statistics_override:
    description:
      - Preflight (forward) - go on although non-empty tables on the target have no planner statistics (never
        analysed nor imported; M(pgshift.aurora.pg_analyze) gives them some). Needs O(statistics_override_reason),
        which the report and a warning keep.
    type: bool
    default: false
  statistics_override_reason:
    description: Who decided to cut over with tables the planner has never measured, and why.
    type: str
  copy_role_passwords:
    description:
      - In the preflight, give each of O(app_roles) on the new side a password verifier so that it logs in
        there as it does on the old side (schema copies create roles without passwords; PgBouncer's SCRAM
        pass-through needs the same verifier on both servers). The verifier comes from O(pgbouncer.auth_file)
        when it holds the role's SCRAM secret, else from O(app_role_secrets), else (only where this login may
        read pg_authid, i.e. a superuser) from the old side; otherwise a warning.
    type: bool
    default: true
  app_role_secrets:
    description:
      - "Role name: its password or its SCRAM-SHA-256 verifier, for O(copy_role_passwords) on RDS and Aurora
        (where pg_authid cannot be read). A password becomes a SCRAM verifier on the controller: it never
        reaches a server, a log or RV(queries)."
    type: dict
    default: {}
  preflight_wait:
    description:
      - Seconds the preflight keeps looking while a stream is starting or over the lag limits (a rollback run
        right after the cutover finds its return stream still starting) before it says no-go.
    type: float
    default: 15
  validation_report:
    description: Path of validation.json (from pgshift.aurora.validate).
    type: path
  validation_requirement:
    description: C(required) (a GO needed), C(if_present) (a NO-GO blocks, no report does not) or C(ignore).
    type: str
    choices: [required, if_present, ignore]
    default: if_present
  validation_max_age:
    description: Seconds a GO stays valid (0 = no limit).
    type: int
    default: 0
  rehearsal_report:
    description:
      - Path of the last rehearsal's rehearsal.json (default O(report_dir)/rehearsal.json). A rehearsal records
        there whether the source server could subscribe to the target (C(return_path_proof)); a cutover's preflight
        reads it (O(return_path_requirement)).
    type: path
  return_path_requirement:
    description:
      - The cutover's preflight and the way back. C(required) - the last rehearsal must have proven it (the source
        server subscribed to the target's return slot, and streamed, as O(target_replication_user) with the
        connection settings the cutover would use now); C(if_present) - a failed, outdated or different proof
        blocks, no proof does not; C(ignore).
    type: str
    choices: [required, if_present, ignore]
    default: required
  return_path_max_age:
    description: Seconds a rehearsal's proof of the way back stays valid (0 = no limit).
    type: int
    default: 0
  return_path_timeout:
    description: Seconds the return stream may take to stream once its subscription is created (rehearsal, step 9,
      O(mode=resume_reverse)).
    type: float
    default: 30
  progress_file:
    description:
      - With O(mode=run), a JSON file rewritten as the step machine runs (steps done of how many, steps per second,
        ETA, the step running, and what the return stream's setup waits for and for how long at most), for
        M(pgshift.aurora.job_progress) when the module runs in the background. Never holds a password.
    type: path
  sequence_gap:
    description: Added to the source's next value and to the columns' maximum when setting sequences on the new side.
    type: int
    default: 1000
  verify_tables:
    description: How many of the busiest replicated tables the verify step counts on both sides.
    type: int
    default: 5
  verify_max_rows:
    description:
      - Tables estimated (C(pg_class.reltuples)) above this many rows are not counted in the verify step (a count of
        millions of rows would lengthen the write pause by seconds; the barrier already proves them). 0 counts all.
    type: int
    default: 500000
  refresh_matviews:
    description:
      - Refresh every materialized view on the new side in the preflight (before the freeze), and in the finishing
        step only those whose base tables' change counters (C(pg_stat_user_tables)) moved since then (or that read a
        function or foreign table). PostgreSQL publishes a session's table counters at most once a second (the apply
        worker at its next commit), so a change applied within a second before the freeze can go unseen - such a
        view keeps the rows of the refresh before the freeze; refresh it after the switch if it must be exact.
    type: bool
    default: true
  app_roles:
    description:
      - The application's login roles - made read-only by the read_only freeze, checked to exist on the new side,
        and looked for in the post-check. Read-only settings left by an earlier cutover on the new side are reset
        before the switch.
    type: list
    elements: str
    default: []
  pgbouncer:
    description: PgBouncer's admin console and the entry the switch rewrites.
    type: dict
    suboptions:
      host:
        description: "Admin console host."
        type: str
        default: 127.0.0.1
      port:
        description: "Admin console port."
        type: int
        default: 6432
      admin_user:
        description: "A user in PgBouncer's admin_users."
        type: str
        default: pgbouncer
      admin_password:
        description: "Its password."
        type: str
      database:
        description: "The database name clients use in PgBouncer."
        type: str
        required: true
      databases_file:
        description:
          - "The pgbouncer.ini PgBouncer runs with, or the file with its [databases] section that it includes
            (C(%include) lines are followed; relative ones from this file's directory)."
          - "The switch changes only the host, port and dbname of the O(pgbouncer.database) entry there; every
            other line, entry, option and comment stays byte for byte. The cutover keeps a record of that change
            (no secret in it) in C(pgshift.cutover_log), from which the rollback puts the entry's exact bytes
            back. An entry served only through the fallback C(*) is refused (give the database an entry of its own)."
        type: path
      auth_file:
        description:
          - "PgBouncer's auth_file, when the controller can read it: the application roles' SCRAM secrets there
            are what the new side must hold for PgBouncer's SCRAM pass-through (O(copy_role_passwords))."
        type: path
      source_host:
        description: "The source as PgBouncer reaches it (default login_host)."
        type: str
      source_port:
        description: "Its port (default login_port)."
        type: int
      target_host:
        description: "The target as PgBouncer reaches it (default target_login_host)."
        type: str
      target_port:
        description: "Its port (default target_login_port)."
        type: int
  route53:
    description: The DNS record the application uses (switch_method=route53).
    type: dict
    suboptions:
      zone_id:
        description: "Hosted zone id."
        type: str
        required: true
      record_name:
        description: "The record (fully qualified)."
        type: str
        required: true
      record_type:
        description: "Record type."
        type: str
        default: CNAME
      source_value:
        description: "The value pointing at the source."
        type: str
        required: true
      target_value:
        description: "The value pointing at the target."
        type: str
        required: true
      ttl:
        description: "TTL of the new record (default the current one)."
        type: int
      wait_ttl:
        description: "After the change, wait the old record's TTL before the post-check (clients' caches)."
        type: bool
        default: true
      region:
        description: "AWS region."
        type: str
        default: us-east-1
      endpoint_url:
        description: "AWS endpoint (the lab's moto server)."
        type: str
      access_key:
        description: "AWS access key."
        type: str
      secret_key:
        description: "AWS secret key."
        type: str
  hooks:
    description:
      - Shell commands run C(before_<step>) or C(after_<step>) (e.g. C(after_barrier)); a non-zero exit fails that
        step. C(PGSHIFT_STEP), C(PGSHIFT_DIRECTION), C(PGSHIFT_MIGRATION) are set.
    type: dict
    default: {}
  hook_timeout:
    description: Seconds a hook or command may run.
    type: float
    default: 60
  source_replication_user:
    description: The user the target's fresh forward subscriptions (after a rollback) connect to the source as.
    type: str
  source_replication_password:
    description: Its password.
    type: str
  target_replication_user:
    description: The user the source's return subscription connects to the target as (default target_login_user).
    type: str
  target_replication_password:
    description: Its password (default target_login_password).
    type: str
  source_host_for_target:
    description: The source as the target reaches it (default login_host).
    type: str
  target_host_for_source:
    description: The target as the source reaches it (default target_login_host).
    type: str
  source_port_for_target:
    description: The source's port as the target server reaches it (default login_port).
    type: int
  source_ssl_mode_for_target:
    description:
      - libpq C(sslmode) of the target's subscriptions to the source. Default C(require) when O(ssl_mode) uses
        TLS, else O(ssl_mode) (the controller's CA path is never given to a server).
    type: str
    choices: [disable, allow, prefer, require, verify-ca, verify-full]
  source_ssl_root_cert_for_target:
    description: C(sslrootcert) of those subscriptions, a path on the target server.
    type: str
  target_port_for_source:
    description: The target's port as the source server reaches it (default target_login_port).
    type: int
  target_ssl_mode_for_source:
    description:
      - libpq C(sslmode) of the source's return subscription to the target. Default C(require) when
        O(target_ssl_mode) uses TLS, else O(target_ssl_mode).
    type: str
    choices: [disable, allow, prefer, require, verify-ca, verify-full]
  target_ssl_root_cert_for_source:
    description: C(sslrootcert) of the return subscription, a path on the source server.
    type: str
  report_dir:
    description: Where cutover.md/.json (rollback.md, rehearsal.md) are written.
    type: path
notes:
  - Check mode runs the preflight only and returns what would be done.
  - One run per migration at a time. Every mode that changes things (run, recover, resume_reverse, cleanup) holds a
    session advisory lock on the source for the migration while it runs; a second run waits a few seconds, then
    fails with status C(refused), naming the session that holds it. The roles run the step machine in the
    background, so an interrupted C(ansible-playbook) leaves it running to its end; the lock keeps a new run from
    racing it. A run whose process died holds nothing (the lock ends with its session).
  - The module needs superuser-like rights on both sides (rds_superuser) to create subscriptions and slots and to
    set role defaults.
requirements:
  - psycopg >= 3.1
  - boto3 (switch_method=route53)
seealso:
  - module: pgshift.aurora.pg_replication_status
  - module: pgshift.aurora.pg_native_stream
"""

EXAMPLES = r"""
- name: Cut over through PgBouncer with a 5 s pause budget
  pgshift.aurora.aurora_cutover:
    login_host: source.internal
    login_db: app
    login_password: "{{ source_admin_password }}"
    target_login_host: aurora.internal
    target_login_db: app
    target_login_password: "{{ target_admin_password }}"
    migration: shipping
    freeze_timeout: 5
    app_roles: [app_user]
    pgbouncer:
      host: 127.0.0.1
      port: 6432
      admin_user: pgbouncer_admin
      admin_password: "{{ pgbouncer_admin_password }}"
      database: app
      databases_file: /etc/pgbouncer/databases.ini
    validation_report: reports/validation.json
    validation_requirement: required
    report_dir: reports

- name: Rehearse it (nothing switches)
  pgshift.aurora.aurora_cutover:
    login_host: source.internal
    target_login_host: aurora.internal
    migration: shipping
    rehearsal: true
    freeze_method: read_only
    switch_method: none
    app_roles: [app_user]
"""

RETURN = r"""
created:
  description: With O(mode=prepare), the sides where the cutover log was created.
  returned: mode=prepare
  type: list
  elements: str
  sample: [source, target]
recovered:
  description:
    - Unfinished freezes of runs whose controller died, undone before this run (C(mode=recover) - only that) - each
      with C(run_id), C(side), C(method), C(started_at), C(outcome) (C(undone), or C(switched) when that run had
      logged its switch), C(note) and C(steps).
  returned: mode=run, mode=recover, mode=cleanup
  type: list
  elements: dict
status:
  description:
    - C(switched), C(rehearsed), C(aborted) (undone before the switch; a rehearsal whose way back could not be
      proven), C(failed_after_switch), or C(switched_without_return_path) (the new side serves; the return stream
      could not be made, its slot is dropped; run O(mode=resume_reverse) once the cause is fixed).
    - With O(mode=resume_reverse), C(resumed) (the return stream streams) or C(checked) (check mode).
  returned: mode=run, mode=resume_reverse
  type: str
return_path_proof:
  description:
    - A rehearsal's proof of the way back, also in rehearsal.json - C(status) (ok, failed), C(proven_at), C(error),
      C(connection) (user, host, port, dbname, sslmode, sslrootcert of the source server's connection; never the
      password), C(seen_by_target) (the user and TLS the target saw), C(tables).
  returned: a rehearsal of the cutover that reached step 7
  type: dict
return_path:
  description:
    - With O(mode=resume_reverse) - C(actions) taken, C(gap) (true when a new slot was made), C(gap_from_lsn) and
      C(gap_to_lsn) (the target's WAL that is not on the source), and the check as in RV(return_path_proof).
  returned: mode=resume_reverse
  type: dict
serving:
  description: Which side serves the application after the run (C(source) or C(target)).
  returned: always
  type: str
timeline:
  description: Every step, hook and undo with its offset C(at) (s), C(time), C(seconds), C(status), C(message), C(detail).
  returned: mode=run
  type: list
  elements: dict
write_pause_seconds:
  description: Seconds writes were paused (freeze to switch, or freeze to undo).
  returned: mode=run
  type: float
sequences_moved:
  description: The sequences set on the new side (sequence, before, required_next).
  returned: mode=run
  type: list
  elements: dict
positions:
  description: LSNs - the barrier on the old side, the return slot's start on the new side.
  returned: mode=run
  type: dict
rollback_plan:
  description: What running the other direction would do from here.
  returned: mode=run
  type: list
  elements: str
queries:
  description: Statements run (passwords masked).
  returned: always
  type: list
  elements: str
"""

import datetime
import json
import os
import subprocess
import threading
import time
import traceback
import uuid

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible_collections.pgshift.aurora.plugins.module_utils import analyze
from ansible_collections.pgshift.aurora.plugins.module_utils import names as naming
from ansible_collections.pgshift.aurora.plugins.module_utils import cutover, native, replication_conn, role_secrets
from ansible_collections.pgshift.aurora.plugins.module_utils import pgbouncer_conf, progress
from ansible_collections.pgshift.aurora.plugins.module_utils._aws import rds as rds_api
from ansible_collections.pgshift.aurora.plugins.module_utils._pg import freeze as db
from ansible_collections.pgshift.aurora.plugins.module_utils._pg import pgbouncer as bouncer
from ansible_collections.pgshift.aurora.plugins.module_utils.runners import freeze as freeze_runner
from ansible_collections.pgshift.aurora.plugins.module_utils._pg import stats
from ansible_collections.pgshift.aurora.plugins.module_utils.runners import return_path as return_path_runner
from ansible_collections.pgshift.aurora.plugins.module_utils._pg.connection import (
    PSYCOPG_IMPORT_ERROR, PgConnectError, connect, postgres_argument_spec, scrub)

TARGET = "target_"
SSL_CHOICES = list(replication_conn.SSL_MODES)


def argument_spec():
    spec = postgres_argument_spec()
    spec.update(native.prefixed_spec(postgres_argument_spec(), TARGET))
    spec.update(
        migration=dict(type="str", required=True),
        mode=dict(type="str", choices=["run", "status", "cleanup", "prepare", "recover", "resume_reverse"],
                  default="run"),
        direction=dict(type="str", choices=list(cutover.DIRECTIONS), default="forward"),
        rehearsal=dict(type="bool", default=False),
        engine=dict(type="str", choices=list(cutover.ENGINES), default="native"),
        dms_tasks=dict(type="list", elements="dict", default=[]),
        freeze_method=dict(type="str", choices=list(cutover.FREEZE_METHODS), default="pgbouncer"),
        freeze_command=dict(type="str"),
        unfreeze_command=dict(type="str"),
        switch_method=dict(type="str", choices=list(cutover.SWITCH_METHODS), default="pgbouncer"),
        switch_command=dict(type="str"),
        freeze_timeout=dict(type="float", default=10),
        barrier_timeout=dict(type="float", default=30),
        max_lag_bytes=dict(type="int", default=16777216),
        max_lag_seconds=dict(type="float", default=5),
        max_transaction_seconds=dict(type="float", default=5),
        statistics_override=dict(type="bool", default=False),
        statistics_override_reason=dict(type="str"),
        preflight_wait=dict(type="float", default=15),
        copy_role_passwords=dict(type="bool", default=True),
        validation_report=dict(type="path"),
        validation_requirement=dict(type="str", choices=["required", "if_present", "ignore"], default="if_present"),
        validation_max_age=dict(type="int", default=0),
        rehearsal_report=dict(type="path"),
        return_path_requirement=dict(type="str", choices=list(cutover.RETURN_PATH_REQUIREMENTS), default="required"),
        return_path_max_age=dict(type="int", default=0),
        return_path_timeout=dict(type="float", default=30),
        progress_file=dict(type="path"),
        sequence_gap=dict(type="int", default=1000),
        verify_tables=dict(type="int", default=5),
        verify_max_rows=dict(type="int", default=500000),
        refresh_matviews=dict(type="bool", default=True),
        app_roles=dict(type="list", elements="str", default=[]),
        app_role_secrets=dict(type="dict", default={}, no_log=True),
        pgbouncer=dict(type="dict", options=dict(
            host=dict(type="str", default="127.0.0.1"),
            port=dict(type="int", default=6432),
            admin_user=dict(type="str", default="pgbouncer"),
            admin_password=dict(type="str", no_log=True),
            database=dict(type="str", required=True),
            databases_file=dict(type="path"),
            auth_file=dict(type="path"),
            source_host=dict(type="str"),
            source_port=dict(type="int"),
            target_host=dict(type="str"),
            target_port=dict(type="int"),
        )),
        route53=dict(type="dict", options=dict(
            zone_id=dict(type="str", required=True),
            record_name=dict(type="str", required=True),
            record_type=dict(type="str", default="CNAME"),
            source_value=dict(type="str", required=True),
            target_value=dict(type="str", required=True),
            ttl=dict(type="int"),
            wait_ttl=dict(type="bool", default=True),
            region=dict(type="str", default="us-east-1"),
            endpoint_url=dict(type="str"),
            access_key=dict(type="str", no_log=True),
            secret_key=dict(type="str", no_log=True),
        )),
        hooks=dict(type="dict", default={}),
        hook_timeout=dict(type="float", default=60),
        source_replication_user=dict(type="str"),
        source_replication_password=dict(type="str", no_log=True),
        target_replication_user=dict(type="str"),
        target_replication_password=dict(type="str", no_log=True),
        source_host_for_target=dict(type="str"),
        target_host_for_source=dict(type="str"),
        source_port_for_target=dict(type="int"),
        source_ssl_mode_for_target=dict(type="str", choices=SSL_CHOICES),
        source_ssl_root_cert_for_target=dict(type="str"),
        target_port_for_source=dict(type="int"),
        target_ssl_mode_for_source=dict(type="str", choices=SSL_CHOICES),
        target_ssl_root_cert_for_source=dict(type="str"),
        report_dir=dict(type="path"),
    )
    return spec


def utcnow():
    return datetime.datetime.now(datetime.timezone.utc)


class Cutover:
    """Wiring: connections, the step actions and their undo, the report."""

    def __init__(self, module):
        self.module = module
        self.p = module.params
        pgb = self.p.get("pgbouncer") or {}
        r53 = self.p.get("route53") or {}
        self.secrets = [self.p.get("login_password"), self.p.get("target_login_password"),
                        pgb.get("admin_password"), r53.get("access_key"), r53.get("secret_key"),
                        self.p.get("source_replication_password"), self.p.get("target_replication_password")]
        self.queries = []
        self.warnings = []
        self.conns = {}
        self.console = None
        self.run_lock = None
        self.run_id = uuid.uuid4().hex[:12]
        self.old, self.new = cutover.sides(self.p["direction"])
        self.migration = self.p["migration"]
        self.forward_prefix = naming.stream_prefix(self.migration)
        self.reverse_name = naming.reverse_name(self.migration)
        self.positions = {}
        self.sequences_moved = []
        self.created = dict(slots=[], publications=[])
        self.machine = None
        self.recovered = []
        self.freezer = freeze_runner.Freeze(self.conn, self.q, self.shell, self.pgb_at, self.p, self.run_id, self.old)
        self.route53_previous = None
        self.stream_names = []
        self.return_path_proof = None

    # --- plumbing ------------------------------------------------------------------------------

    def conn(self, side):
        if side not in self.conns or self.conns[side].closed:
            params = dict((k, self.p[k]) for k in postgres_argument_spec()) if side == "source" else \
                native.unprefixed(self.p, postgres_argument_spec(), TARGET)
            # statements inside the freeze end within the pause budget left (statement_budget)
            self.conns[side] = db.Bounded(connect(params), self.statement_budget, side)
        return self.conns[side]

    def statement_budget(self, what):
        return self.machine.statement_budget_ms(what) if self.machine is not None else None

    def pgb_at(self, coords):
        """A PgBouncer console at a journal's coordinates, with this run's admin password."""
        pgb = self.p.get("pgbouncer") or {}
        return bouncer.AdminConsole(coords.get("host") or pgb.get("host"), coords.get("port") or pgb.get("port"),
                                    coords.get("admin_user") or pgb.get("admin_user"), pgb.get("admin_password"),
                                    self.p["connect_timeout"])

    def close(self):
        for c in list(self.conns.values()) + ([self.run_lock] if self.run_lock is not None else []):
            try:
                c.close()
            except Exception:  # best effort
                pass
        if self.console is not None:
            self.console.close()

    def q(self, text):
        self.queries.append(scrub(text, self.secrets))

    def pgb(self):
        if self.console is None:
            pgb = self.p["pgbouncer"]
            self.console = bouncer.AdminConsole(pgb["host"], pgb["port"], pgb["admin_user"], pgb["admin_password"],
                                                self.p["connect_timeout"])
        return self.console

    def side_address(self, side):
        pgb = self.p.get("pgbouncer") or {}
        if side == "source":
            return (pgb.get("source_host") or self.p["login_host"], pgb.get("source_port") or self.p["login_port"],
                    self.p["login_db"])
        return (pgb.get("target_host") or self.p["target_login_host"],
                pgb.get("target_port") or self.p["target_login_port"], self.p["target_login_db"])

    def shell(self, command, what, extra_env=None, timeout=None):
        timeout = max(self.p["hook_timeout"] if timeout is None else timeout, 0.001)
        env = dict(os.environ, PGSHIFT_MIGRATION=self.migration, PGSHIFT_DIRECTION=self.p["direction"],
                   PGSHIFT_OLD_SIDE=self.old, PGSHIFT_NEW_SIDE=self.new, **(extra_env or {}))
        try:
            proc = subprocess.run(command, shell=True, env=env, capture_output=True, text=True,
                                  timeout=timeout, check=False)
        except subprocess.TimeoutExpired:
            raise cutover.StepFailed("%s did not end within %.3g s" % (what, timeout)) from None
        out = scrub((proc.stdout + proc.stderr).strip()[-500:], self.secrets)
        if proc.returncode != 0:
            raise cutover.StepFailed("%s exited with status %d: %s" % (what, proc.returncode, out))
        return dict(command=scrub(command, self.secrets), output=out)

    # --- the streams old -> new ----------------------------------------------------------------

    def streams(self):
        """[{name, state, lag_bytes, lag_seconds, confirmed_int, message}] of the streams old -> new."""
        old, new = self.conn(self.old), self.conn(self.new)
        subs = db.subscriptions(new)
        if self.p["direction"] == "forward":
            names = naming.stream_names(list(subs), self.migration)
        else:
            names = [n for n in subs if n == self.reverse_name]
        slots = db.slots(old, names)
        lsn = db.current_lsn(old)
        senders = dict((r["pid"], r) for r in db.rows(old, "SELECT pid, state, extract(epoch FROM replay_lag)::float8 "
                                                           "AS replay_lag FROM pg_stat_replication"))
        workers = dict((r["subname"], r) for r in db.rows(new, "SELECT subname, pid FROM pg_stat_subscription "
                                                               "WHERE relid IS NULL AND pid IS NOT NULL"))
        found = []
        for name in sorted(names):
            sub, slot = subs[name], slots.get(name)
            confirmed = slot["confirmed_flush_lsn"] if slot else None
            lag = native.lag_bytes(lsn, confirmed)
            sender = senders.get(slot["active_pid"]) if slot and slot["active_pid"] else None
            if slot is None:
                state, message = "error", "slot %s is missing on the %s" % (name, self.old)
            elif not sub["enabled"]:
                state, message = "disabled", "subscription %s is disabled on the %s" % (name, self.new)
            elif name not in workers:
                state, message = "starting", "subscription %s has no apply worker running" % name
            else:
                state, message = "streaming", "%s streams" % name
            found.append(dict(name=name, state=state, message=message, lag_bytes=lag, confirmed=confirmed,
                              confirmed_int=native.lsn_to_int(confirmed),
                              lag_seconds=native.lag_seconds(lag, sender["replay_lag"] if sender else None,
                                                             bool(sender and sender["state"] == "streaming"), None)))
        return found

    # --- steps ---------------------------------------------------------------------------------

    def step_preflight(self, machine):
        p = self.p
        reasons = []
        detail = {}
        if p["engine"] == "dms" and p["direction"] == "forward":
            tasks = cutover.dms_streams(p["dms_tasks"])
            go, why = cutover.stream_gate(tasks, p["max_lag_bytes"], p["max_lag_seconds"], engine="dms")
            detail["streams"] = len(tasks)
        else:
            # A stream just made (a rollback right after the cutover) may still be starting its apply
            # worker, or catching up: look again for up to preflight_wait seconds before saying no-go.
            deadline = time.monotonic() + p["preflight_wait"]
            while True:
                streams = self.streams()
                go, why = cutover.stream_gate(streams, p["max_lag_bytes"], p["max_lag_seconds"])
                if go or not streams or time.monotonic() > deadline:
                    break
                time.sleep(0.2)
            self.stream_names = [s["name"] for s in streams]
            detail.update(streams=len(streams), max_lag_bytes=max([s["lag_bytes"] or 0 for s in streams] or [0]))
        reasons += why
        if p["direction"] == "forward":
            report = None
            if p["validation_report"] and os.path.exists(p["validation_report"]):
                with open(p["validation_report"]) as f:
                    report = json.load(f)
            go_v, why_v = cutover.validation_gate(report, p["validation_requirement"], p["validation_max_age"], utcnow())
            detail["validation"] = why_v
            if not go_v:
                reasons.append(why_v)
            if not p["rehearsal"]:
                go_r, why_r = self.return_path_gate()
                detail["return_path"] = why_r
                if not go_r:
                    reasons.append(why_r)
        admin = [p["login_user"], p["target_login_user"]]
        go_t, why_t = cutover.long_transaction_gate(db.long_transactions(self.conn(self.old), admin),
                                                    p["max_transaction_seconds"])
        reasons += why_t
        if p["direction"] == "forward":  # tables the planner never measured (pgshift.aurora.pg_analyze)
            why_s, detail["statistics"], overridden = cutover.statistics_gate(
                analyze.blockers(stats.read_tables(self.conn(self.new), lock_free=True)), p["statistics_override"],
                p["statistics_override_reason"])
            reasons += why_s
            if overridden:  # printed now (check mode too); the report keeps it in the preflight's detail
                self.module.warn(detail["statistics"])
        if p["app_roles"]:
            missing = sorted(set(p["app_roles"]) - set(db.existing_roles(self.conn(self.new), p["app_roles"])))
            if missing:
                reasons.append("application role(s) %s do not exist on the %s: they could not log in after the "
                               "switch (create them with the same password first)" % (", ".join(missing), self.new))
            else:
                detail["role_passwords"] = self.role_passwords(reasons)
        if "pgbouncer" in (p["freeze_method"], p["switch_method"]):
            row = self.pgb().database(p["pgbouncer"]["database"])
            host, port, dbname = self.side_address(self.old)
            if row is None:
                reasons.append("PgBouncer has no database %s" % p["pgbouncer"]["database"])
            elif int(row["port"]) != int(port) or str(row["host"]) != str(host):
                reasons.append("PgBouncer sends %s to %s:%s, not to the %s (%s:%s): is the application already "
                               "switched?" % (p["pgbouncer"]["database"], row["host"], row["port"], self.old, host,
                                              port))
        if not self.module.check_mode:
            for side in ("source", "target"):
                db.ensure_log(self.conn(side))
        if reasons:
            raise cutover.StepFailed("preflight no-go: " + "; ".join(reasons), detail)
        return detail

    def role_passwords(self, reasons):
        """The application roles must log in on the new side with the same password (PgBouncer's SCRAM
        pass-through even needs the same verifier). Verifiers the controller can give (PgBouncer's auth_file,
        app_role_secrets: role_secrets.desired_verifiers) are set; for the other roles, copy a missing or
        different verifier from the old side where pg_authid can be read, or say no-go; where it cannot
        (RDS, Aurora), a warning that names them."""
        roles = list(self.p["app_roles"])
        given = {}
        if self.p["copy_role_passwords"]:
            userlist = {}
            auth_file = (self.p.get("pgbouncer") or {}).get("auth_file")
            if auth_file:
                try:
                    with open(auth_file) as f:
                        userlist = role_secrets.parse_userlist(f.read())
                except OSError as exc:
                    self.warnings.append("could not read PgBouncer's auth_file %s (%s): the application roles' "
                                         "verifiers come from app_role_secrets only" % (auth_file, exc.strerror))
            try:
                given = role_secrets.desired_verifiers(roles, self.p["app_role_secrets"], userlist)
            except ValueError as exc:
                reasons.append(str(exc))
        existing = set(db.existing_roles(self.conn(self.new), roles))
        done = []
        for role in roles:
            if role not in given:
                continue
            if role not in existing:
                reasons.append("application role %s does not exist on the %s: run copy_schema (it creates the "
                               "roles) or create it" % (role, self.new))
                continue
            if self.module.check_mode:
                done.append("%s (check mode: would set from %s)" % (role, given[role][1]))
                continue
            self.q(db.set_role_password(self.conn(self.new), role, given[role][0]))
            done.append("%s (from %s)" % (role, given[role][1]))
        rest = [r for r in roles if r not in given]
        if not rest:
            return "set for %s" % ", ".join(done) if done else "same"
        old_pw = db.role_passwords(self.conn(self.old), rest)
        new_pw = db.role_passwords(self.conn(self.new), rest)
        if old_pw is None or new_pw is None:
            self.warnings.append(
                "could not read pg_authid (not a superuser, as on RDS and Aurora) to give %s the old side's "
                "password on the %s: set app_role_secrets (cutover_app_role_secrets) or pgbouncer.auth_file, or "
                "make sure they log in there with the same password" % (", ".join(rest), self.new))
            return ("set for %s; " % ", ".join(done) if done else "") + "not checked for %s" % ", ".join(rest)
        copied = list(done)
        for role in rest:
            if old_pw.get(role) and old_pw.get(role) != new_pw.get(role):
                if self.module.check_mode:
                    copied.append(role + " (check mode: would copy)")
                    continue
                if not self.p["copy_role_passwords"]:
                    reasons.append("role %s has %s password on the %s than on the %s: it could not log in (through "
                                   "PgBouncer's SCRAM pass-through) after the switch; set copy_role_passwords" % (
                                       role, "no" if not new_pw.get(role) else "another", self.new, self.old))
                    continue
                self.q(db.set_role_password(self.conn(self.new), role, old_pw[role]))
                copied.append(role)
        return "copied for %s" % ", ".join(copied) if copied else "same"

    # --- the way back (runners/return_path.py) --------------------------------------------------

    def reverse_peer(self):
        """(connection, password) of the return stream: how the source server reaches the target, as the
        migration user (target_replication_user; the admin only when none is given)."""
        p = self.p
        user = p["target_replication_user"] or p["target_login_user"]
        password = p["target_replication_password"]
        if password is None and not p["target_replication_user"]:
            password = p["target_login_password"]
        peer = replication_conn.peer_connection(dict(
            db_host=p["target_login_host"], db_port=p["target_login_port"], db_sslmode=p["target_ssl_mode"],
            db_replication_host=p["target_host_for_source"], db_replication_port=p["target_port_for_source"],
            db_replication_sslmode=p["target_ssl_mode_for_source"],
            db_replication_sslrootcert=p["target_ssl_root_cert_for_source"]), "the target")
        return cutover.return_path_connection(user, peer["host"], peer["port"], p["target_login_db"], peer["sslmode"],
                                              peer["sslrootcert"]), password

    def return_path(self):
        connection, password = self.reverse_peer()
        return return_path_runner.ReturnPath(self.conn("source"), self.conn("target"), self.reverse_name, connection,
                                             password, self.q, timeout=self.p["return_path_timeout"],
                                             on_wait=self.return_path_waiting)

    # --- progress (progress_file) ----------------------------------------------------------------

    def show_progress(self, doing, done=None, wait_left=None, force=True):
        """Rewrite the progress file: steps done of the plan, steps/s, ETA, what runs or is waited for."""
        track = getattr(self, "tracking", None)
        if track is None:
            return
        if done is not None:
            track["done"] = done
        track["file"].write(progress.steps_progress(len(track["steps"]), track["done"], time.monotonic() - track["start"],
                                                    scrub(doing, self.secrets), wait_left=wait_left), force=force)

    def tracked(self, steps, actions):
        """The actions, each announcing its step in the progress file before it runs."""
        def announce(index, step, action):
            def run(machine):
                self.show_progress("step %d/%d: %s" % (index + 1, len(steps), step), done=index)
                return action(machine)
            return run
        return dict((step, announce(steps.index(step), step, action) if step in steps else action)
                    for step, action in actions.items())

    def return_path_waiting(self, problems, left):
        """ReturnPath's wait: what the return stream still lacks, and how long it may still take."""
        self.show_progress("return stream %s: waiting until it streams (%s)" % (
            self.reverse_name, "; ".join(problems) or "checking"), wait_left=left, force=False)

    def return_path_gate(self):
        """The preflight's check of the last rehearsal's proof of the way back (cutover.return_path_gate)."""
        p = self.p
        path = p["rehearsal_report"] or (os.path.join(p["report_dir"], "rehearsal.json") if p["report_dir"] else None)
        report = None
        if path and os.path.exists(path):
            try:
                with open(path) as f:
                    report = json.load(f)
            except (OSError, ValueError) as exc:
                return False, "could not read the rehearsal report %s (%s): run rehearsal.yml again" % (path, exc)
        try:
            connection = self.reverse_peer()[0]
        except replication_conn.ReplicationConnError as exc:
            return False, str(exc)
        return cutover.return_path_gate(report, p["return_path_requirement"], p["return_path_max_age"], utcnow(),
                                        connection, self.migration)

    def prove_return_path(self, machine):
        """The rehearsal's check, after its freeze is undone: the source server subscribes to the return slot
        made in step 7 and streams; the subscription is removed with the return path (undo_return_path).
        The result goes to rehearsal.json (return_path_proof) for the cutover's preflight."""
        def now():
            return utcnow().strftime("%Y-%m-%dT%H:%M:%SZ")
        try:
            runner = self.return_path()
        except replication_conn.ReplicationConnError as exc:
            self.return_path_proof = dict(status="failed", proven_at=now(), error=str(exc), connection=None)
            raise cutover.StepFailed("the way back could not be proven: %s" % exc) from None
        self.created.setdefault("subscriptions", []).append(("source", self.reverse_name))
        try:
            detail = runner.establish()
        except cutover.StepFailed as exc:
            self.return_path_proof = dict(exc.detail, status="failed", proven_at=now(), error=str(exc),
                                          connection=runner.connection)
            raise cutover.StepFailed("the way back could not be proven: %s" % exc, exc.detail) from None
        self.return_path_proof = dict(detail, status="ok", proven_at=now(), error=None)
        return dict(detail, message="the way back proven: the source server streams from the target as %s" % (
            runner.describe()))

    def step_freeze(self, machine):
        """Journal what the freeze does and what undoes it on the old side, then freeze (runners/freeze.py)."""
        return self.freezer.freeze(machine, lambda database, timeout: self.pgb().pause(database, timeout))

    def undo_freeze(self, machine):
        if self.p["freeze_method"] == "pgbouncer" and self.console is not None:
            self.console.close()  # a PAUSE may still wait on it: RESUME goes through a console of its own
            self.console = None
        return self.freezer.undo(machine)

    def before_freeze(self, machine):
        """The preflight, then what need not be inside the freeze: foreign keys validated and materialized views
        refreshed on the new side (runners/freeze.py)."""
        detail = self.step_preflight(machine)
        problems = self.freezer.problems()
        if problems:
            raise cutover.StepFailed("preflight no-go: " + "; ".join(problems), detail)
        detail.update(self.freezer.before_freeze(self.conn(self.old), self.conn(self.new)))
        return detail

    def switch_then_close_freeze(self, machine):
        detail = self.step_switch(machine)
        try:
            self.freezer.switched(machine)
        except Exception as exc:  # the switch is done; a later run closes the entry (its switch is logged)
            self.warnings.append("could not mark the freeze journal entry finished: %s" % exc)
        return detail

    def hold_run_lock(self):
        """One step machine at a time per migration (a cutover, rehearsal, rollback, recover, resume_reverse or
        cleanup): a session advisory lock on the source, held on a connection of its own until this run ends
        (a run whose process died holds nothing). A second run is refused, saying which session holds it."""
        self.run_lock = connect(dict((k, self.p[k]) for k in postgres_argument_spec()))
        # a session whose process was just killed may take a moment to end on the server: a few seconds' grace
        deadline = time.monotonic() + 5.0
        holder = db.try_run_lock(self.run_lock, self.migration)
        while holder is not None and time.monotonic() < deadline:
            time.sleep(0.2)
            holder = db.try_run_lock(self.run_lock, self.migration)
        if holder is not None:
            self.module.fail_json(msg=scrub(
                "another run of migration %s (a cutover, rehearsal, rollback, recover or cleanup) is in progress: its "
                "session on the source is pid %s. It goes on in the background even when its ansible-playbook was "
                "interrupted (its progress: <report_dir>/<phase>-progress.json); wait for it to end, then run again"
                % (self.migration, holder or "unknown"), self.secrets), status="refused", serving=self.old,
                queries=self.queries)

    def recover_first(self):
        """Undo the unfinished freezes left by runs that died (check mode: only say so)."""
        try:
            found, warnings = self.freezer.recover(self.module.check_mode)
        except cutover.StepFailed as exc:
            self.module.fail_json(msg=scrub("an unfinished freeze is in effect: %s" % exc, self.secrets),
                                  status="refused", serving=self.old, queries=self.queries)
        for item in found:
            warnings.append("%s the %s freeze of run %s on the %s (started %s): %s" % (
                "would undo" if self.module.check_mode else "undid", item["method"], item["run_id"], item["side"],
                item["started_at"], item["note"]))
        if self.module.check_mode:
            for w in warnings:
                self.module.warn(scrub(w, self.secrets))
        self.warnings.extend(warnings)
        self.recovered = found
        return found

    def recover(self):
        """mode=recover: only the unfinished freezes."""
        found = self.recover_first()
        for w in [] if self.module.check_mode else self.warnings:
            self.module.warn(scrub(w, self.secrets))
        self.module.exit_json(changed=bool(found) and not self.module.check_mode, status="recovered" if found else
                              "nothing_to_recover", recovered=found, serving=self.serving()[0], queries=self.queries)

    def step_barrier(self, machine):
        old, new = self.conn(self.old), self.conn(self.new)
        db.log_event(old, self.migration, self.run_id, self.p["direction"], "marker")
        lsn = db.current_lsn(old)
        self.positions["barrier_lsn"] = lsn
        target = native.lsn_to_int(lsn)
        limit = min(self.p["barrier_timeout"], max(machine.remaining(), 0.0))
        deadline = time.monotonic() + limit
        polls = 0
        while True:
            polls += 1
            if self.p["engine"] == "dms" and self.p["direction"] == "forward":
                done = cutover.barrier_done([], target, engine="dms",
                                            marker_seen=db.marker_seen(new, self.migration, self.run_id))
                streams = []
            else:
                streams = [s for s in self.streams() if s["name"] in self.stream_names]
                done = len(streams) == len(self.stream_names) and cutover.barrier_done(streams, target)
            if done:
                return dict(barrier_lsn=lsn, polls=polls)
            if self.p["engine"] == "native" or self.p["direction"] == "reverse":
                # Hurry the subscribers' confirmation: a synchronous commit on the new side flushes the
                # transactions applied so far; a commit on the old side wakes its WAL senders, whose
                # keepalive makes each apply worker report that flushed position at once (instead of
                # on its next 1 s cycle).
                db.nudge(new)
                db.nudge(old)
            if time.monotonic() > deadline:
                behind = ", ".join("%s at %s" % (s["name"], s["confirmed"]) for s in streams
                                   if (s["confirmed_int"] or 0) < target) or "the marker row"
                raise cutover.StepFailed("barrier %s not reached within %.1f s (barrier_timeout %s, pause budget "
                                         "left): %s behind" % (lsn, limit, self.p["barrier_timeout"], behind),
                                         dict(barrier_lsn=lsn))
            time.sleep(0.01 if polls < 50 else 0.05)

    def step_sequences(self, machine):
        try:
            from ansible_collections.pgshift.aurora.plugins.module_utils._pg import sequences
        except ImportError:
            raise cutover.StepFailed("module_utils/_pg/sequences.py (from the validation work) is missing: "
                                     "sequences cannot be moved") from None
        plan = self.sequence_plan(sequences, self.p["sequence_gap"])
        new = self.conn(self.new)
        changes = cutover.sequence_changes(plan)
        for change in changes:
            self.q(db.setval(new, change["schema"], change["name"], change["set_to"]))
        missing = [e["sequence"] for e in plan if e.get("status") == "missing_on_target"]
        if missing:
            self.warnings.append("sequences missing on the %s: %s" % (self.new, ", ".join(missing)))
        self.sequences_moved = changes
        return dict(sequences=len(plan), moved=len(changes), missing=len(missing))

    def sequence_plan(self, sequences, gap):
        """sequence_plan(old, new, gap) without the cutover's own log (pgshift schema)."""
        old, new = self.conn(self.old), self.conn(self.new)
        plan = sequences.sequence_plan(sequences.gather_sequences(old), sequences.gather_sequences(new), gap)
        return [e for e in plan if e["schema"] != db.LOG_SCHEMA]

    def step_finishing(self, machine):
        old, new = self.conn(self.old), self.conn(self.new)
        refreshed = unchanged = 0
        if self.p["refresh_matviews"]:
            refreshed, unchanged = self.freezer.refresh_changed(new)
        trig, validate, missing = db.finishing_diff(db.triggers(old), db.triggers(new), db.foreign_keys(old),
                                                    db.foreign_keys(new))
        for schema, table, trigger, state in trig:
            self.q(db.set_trigger(new, schema, table, trigger, state))
        for schema, table, constraint in validate:
            self.q(db.validate_fk(new, schema, table, constraint))
        if missing:
            raise cutover.StepFailed("foreign key(s) %s exist on the %s but not on the %s: run copy_schema's post "
                                     "stage first" % (", ".join("%s on %s" % (db.ident_of(c), db.name_of(s, t))
                                                                for s, t, c in missing),
                                                      self.old, self.new))
        return dict(matviews_refreshed=refreshed, matviews_unchanged=unchanged, triggers_changed=len(trig),
                    foreign_keys_validated=len(validate))

    def replicated_tables(self):
        if self.p["direction"] == "reverse":
            return db.publication_tables(self.conn("target"), [self.reverse_name])
        if self.p["engine"] == "dms":
            # DMS has no publication: every table both sides have (outside the system and pgshift schemas)
            both = set(db.user_tables(self.conn("source"))) & set(db.user_tables(self.conn("target")))
            return sorted(both)
        return db.publication_tables(self.conn("source"), db.publications(self.conn("source"), self.forward_prefix))

    def step_verify(self, machine):
        old, new = self.conn(self.old), self.conn(self.new)
        tables, skipped = db.busiest_tables(old, self.replicated_tables(), self.p["verify_tables"],
                                            self.p["verify_max_rows"])
        found = dict(old={}, new={})

        def count(side, conn):
            try:
                for schema, name in tables:
                    found[side][(schema, name)] = db.count_rows(conn, schema, name)
            except Exception as exc:  # reported below, from the main thread
                found["error"] = exc
        # both sides counted at the same time (each on its own connection): half the pause
        worker = threading.Thread(target=count, args=("new", new), daemon=True)
        worker.start()
        count("old", old)
        worker.join()
        if "error" in found:
            raise found["error"]
        counts = [dict(table=db.name_of(s_, n_), old=found["old"][(s_, n_)], new=found["new"][(s_, n_)])
                  for s_, n_ in tables]
        marker = None
        if self.p["engine"] == "dms" and self.p["direction"] == "forward":
            marker = db.marker_seen(new, self.migration, self.run_id)
        behind = []
        if self.sequences_moved is not None:
            try:
                from ansible_collections.pgshift.aurora.plugins.module_utils._pg import sequences
                plan = self.sequence_plan(sequences, 0)
                behind = [e["sequence"] for e in plan if e.get("status") == "behind"]
            except ImportError:
                behind = []
        go, why = cutover.verify_gate(counts, marker, behind)
        detail = dict(tables_counted=len(counts), rows=sum(c["new"] for c in counts),
                      tables_too_big_to_count=len(skipped))
        if not go:
            raise cutover.StepFailed("verify no-go: " + "; ".join(why), detail)
        return detail

    def step_return_path(self, machine):
        if self.p["direction"] == "forward":
            src, tgt = self.conn("source"), self.conn("target")
            self.remove_reverse(src, tgt)
            tables = self.return_publication(src, tgt)
            lsn = self.return_slot(tgt)
            self.positions["return_slot_lsn"] = lsn
            return dict(stream=self.reverse_name, tables=len(tables), slot_lsn=lsn)
        src = self.conn("source")
        if self.p["engine"] == "dms":
            lsn = db.current_lsn(src)
            self.positions["dms_cdc_start_lsn"] = lsn
            self.warnings.append("migration_engine dms: after this rollback restart the DMS tasks with CDC from the "
                                 "source's LSN %s (CdcStartPosition) before a second cutover" % lsn)
            return dict(dms_cdc_start_lsn=lsn)
        names = db.publications(src, self.forward_prefix)
        names = naming.stream_names(names, self.migration)
        if not names:
            raise cutover.StepFailed("the source has no forward publication %s<N> left: a second cutover would have "
                                     "nothing to stream" % self.forward_prefix)
        existing = db.slots(src, names)
        for name in names:
            if name in existing:
                db.drop_slot(src, name)
                self.q("SELECT pg_drop_replication_slot('%s')" % name)
            lsn = db.create_slot(src, name)
            self.created["slots"].append(("source", name))
            self.q("SELECT pg_create_logical_replication_slot('%s', 'pgoutput')" % name)
            self.positions["forward_slot_lsn_" + name] = lsn
        return dict(streams=names)

    def return_publication(self, src, tgt):
        """The return publication on the target: the forward streams' tables (ONLY), REPLICA IDENTITY FULL
        mirrored (tables without a key need it there too, or their updates and deletes could not be published
        back). Returns the tables."""
        tables = self.replicated_tables()
        if not tables:
            raise cutover.StepFailed("the forward publications list no table: nothing to replicate back")
        src_ident, tgt_ident = db.replica_identities(src, tables), db.replica_identities(tgt, tables)
        for (schema, name), ident in sorted(src_ident.items()):
            if ident == "f" and tgt_ident.get((schema, name)) != "f":
                self.q(db.set_replica_identity_full(tgt, schema, name))
        self.q(db.create_publication(tgt, self.reverse_name, tables))
        self.created["publications"].append(("target", self.reverse_name))
        return tables

    def return_slot(self, tgt):
        lsn = db.create_slot(tgt, self.reverse_name)
        self.created["slots"].append(("target", self.reverse_name))
        self.q("SELECT pg_create_logical_replication_slot('%s', 'pgoutput')" % self.reverse_name)
        return lsn

    def undo_return_path(self, machine):
        dropped = []
        for side, name in self.created.get("subscriptions", []):  # the rehearsal's proof
            if name in db.subscriptions(self.conn(side)):
                for stmt in db.drop_subscription(self.conn(side), name):
                    self.q(stmt)
                dropped.append("subscription %s on the %s" % (name, side))
        for side, name in reversed(self.created["slots"]):
            if db.drop_slot(self.conn(side), name):
                dropped.append("slot %s on the %s" % (name, side))
        for side, name in reversed(self.created["publications"]):
            self.q(db.drop_publication(self.conn(side), name))
            dropped.append("publication %s on the %s" % (name, side))
        return dict(dropped=dropped)

    def remove_reverse(self, src, tgt):
        """The return stream pgshift_<m>_r1: subscription on the source, slot and publication on the target."""
        removed = []
        if self.reverse_name in db.subscriptions(src):
            for stmt in db.drop_subscription(src, self.reverse_name):
                self.q(stmt)
            removed.append("subscription")
        if db.drop_slot(tgt, self.reverse_name):
            self.q("SELECT pg_drop_replication_slot('%s')" % self.reverse_name)
            removed.append("slot")
        if self.reverse_name in db.publications(tgt, self.reverse_name):
            self.q(db.drop_publication(tgt, self.reverse_name))
            removed.append("publication")
        return removed

    def step_switch(self, machine):
        """Make the new side's application roles writable, log the switch on both sides, move the traffic.

        When moving the traffic fails, the log rows and the roles are put back before the error goes up
        (the machine then undoes the return path and the freeze): the old side serves, as before.
        """
        p = self.p
        new = self.conn(self.new)
        detail = {}
        fenced = []
        if p["app_roles"]:
            settings = db.role_read_only_settings(new, db.existing_roles(new, p["app_roles"]))
            fenced = [r for r, v in settings.items() if v == "on"]
            for stmt in db.set_read_only(new, fenced, False):
                self.q(stmt)
            detail["roles_made_writable"] = fenced
        for side in ("source", "target"):
            db.log_event(self.conn(side), self.migration, self.run_id, p["direction"], "switched",
                         self.positions.get("barrier_lsn"))
        try:
            if p["switch_method"] == "pgbouncer":
                detail.update(self.switch_pgbouncer())
            elif p["switch_method"] == "route53":
                detail.update(self.switch_route53())
            elif p["switch_method"] == "command":
                detail.update(self.shell(p["switch_command"], "switch_command"))
        except Exception:
            for side in ("source", "target"):
                try:
                    db.unlog_event(self.conn(side), self.migration, self.run_id, "switched")
                except Exception:  # the error that matters is the switch's
                    pass
            try:
                db.set_read_only(new, fenced, True)
            except Exception:
                pass
            raise
        return detail

    def switch_pgbouncer(self):
        """Point the database's entry in PgBouncer's [databases] at the new side (only its host, port and
        dbname: every other line and option stays as it is; a rollback puts back the bytes the cutover
        changed, from the record the cutover kept in the log), RELOAD, check, RESUME."""
        pgb = self.p["pgbouncer"]
        host, port, dbname = self.side_address(self.new)
        if not pgb["databases_file"]:
            raise cutover.StepFailed("switch_method=pgbouncer needs pgbouncer.databases_file")
        kept = None
        if self.p["direction"] == "reverse":
            found = [k for k in (bouncer.kept_switch(self.conn(side), self.migration, pgb["database"])
                                 for side in ("source", "target")) if k]
            kept = max(found, key=lambda k: k[0])[1] if found else None
        try:
            plan = pgbouncer_conf.plan_switch(bouncer.read_file, os.path.abspath(pgb["databases_file"]),
                                              pgb["database"], host, port, dbname, undo=kept)
        except pgbouncer_conf.ConfError as exc:
            raise cutover.StepFailed(str(exc)) from None
        if self.p["direction"] == "reverse" and not plan["restored"]:
            self.warnings.append("PgBouncer's entry for %s at %s:%d: host/port/dbname set to the %s's, the line not "
                                 "restored byte for byte (%s)" % (pgb["database"], plan["path"], plan["line"],
                                                                  self.new, plan["note"] or "no record of the "
                                                                  "cutover's change in the cutover log"))
        if plan["record"] is not None and self.p["direction"] == "forward":
            for side in ("source", "target"):
                bouncer.keep_switch(self.conn(side), self.migration, self.run_id, "forward", plan["record"])
        try:
            bouncer.rewrite_file(plan["path"], plan["after"])
            console = self.pgb()
            console.reload()
            console.wait_database(pgb["database"], host, port)
        except Exception:
            bouncer.rewrite_file(plan["path"], plan["before"])
            try:
                self.pgb().reload()
            except Exception:  # the undo of the freeze reports the console's state
                pass
            for side in ("source", "target"):
                try:
                    bouncer.forget_switch(self.conn(side), self.migration, self.run_id)
                except Exception:  # the error that matters is the switch's
                    pass
            raise
        how = "restored" if plan["restored"] else "changed" if plan["after"] != plan["before"] else "unchanged"
        self.q("RELOAD (%s -> %s:%s/%s; %s:%d %s)" % (pgb["database"], host, port, dbname, plan["path"],
                                                      plan["line"], how))
        if self.p["freeze_method"] == "pgbouncer":
            self.pgb().resume(pgb["database"])
            self.q("RESUME %s" % pgb["database"])
        return dict(pgbouncer=pgb["database"], now_at="%s:%s/%s" % (host, port, dbname),
                    entry="%s:%d" % (plan["path"], plan["line"]), entry_change=how)

    def route53_client(self):
        if rds_api.BOTO3_IMPORT_ERROR:
            raise cutover.StepFailed(missing_required_lib("boto3"))
        r = self.p["route53"]
        return rds_api.client("route53", dict(aws_region=r["region"], aws_endpoint_url=r["endpoint_url"],
                                              aws_access_key=r["access_key"], aws_secret_key=r["secret_key"]))

    def current_record(self, client):
        r = self.p["route53"]
        name = r["record_name"].rstrip(".") + "."
        found = client.list_resource_record_sets(HostedZoneId=r["zone_id"], StartRecordName=name,
                                                 StartRecordType=r["record_type"], MaxItems="1")
        for rrset in found.get("ResourceRecordSets", []):
            if rrset["Name"].rstrip(".") == name.rstrip(".") and rrset["Type"] == r["record_type"]:
                return rrset
        return None

    def switch_route53(self):
        r = self.p["route53"]
        client = self.route53_client()
        before = self.current_record(client)
        old_ttl = int(before["TTL"]) if before and "TTL" in before else 0
        value = r["target_value"] if self.new == "target" else r["source_value"]
        ttl = r["ttl"] if r["ttl"] is not None else (old_ttl or 60)
        change = client.change_resource_record_sets(HostedZoneId=r["zone_id"], ChangeBatch=cutover.route53_change(
            r["record_name"], r["record_type"], value, ttl))
        change_id = change["ChangeInfo"]["Id"]
        status = change["ChangeInfo"].get("Status")
        deadline = time.monotonic() + 60
        while status != "INSYNC" and time.monotonic() < deadline:
            time.sleep(1)
            status = client.get_change(Id=change_id)["ChangeInfo"]["Status"]
        self.q("route53 UPSERT %s %s -> %s (TTL %d)" % (r["record_name"], r["record_type"], value, ttl))
        self.route53_previous = dict(old_ttl=old_ttl, value=(before or {}).get("ResourceRecords"))
        return dict(record=r["record_name"], value=value, change_status=status, old_ttl=old_ttl)

    def step_replication(self, machine):
        src, tgt = self.conn("source"), self.conn("target")
        if self.p["direction"] == "forward":
            for name in self.stream_names:
                for stmt in db.drop_subscription(tgt, name):
                    self.q(stmt)
                db.drop_slot(src, name)
                self.q("SELECT pg_drop_replication_slot('%s')" % name)
            if self.p["engine"] == "dms":
                self.warnings.append("migration_engine dms: stop the migration's DMS tasks now (the target takes the "
                                     "writes; the source receives them back through %s)" % self.reverse_name)
            runner = None
            try:
                runner = self.return_path()
                detail = runner.establish()
            except (cutover.StepFailed, replication_conn.ReplicationConnError) as exc:
                raise self.no_way_back(runner, exc) from None
            return dict(detail, stopped=self.stream_names, subscribed=self.reverse_name)
        removed = self.remove_reverse(src, tgt)
        user = self.p["source_replication_user"] or self.p["login_user"]
        password = self.p["source_replication_password"]
        if password is None and not self.p["source_replication_user"]:
            password = self.p["login_password"]
        peer = replication_conn.peer_connection(dict(
            db_host=self.p["login_host"], db_port=self.p["login_port"], db_sslmode=self.p["ssl_mode"],
            db_replication_host=self.p["source_host_for_target"], db_replication_port=self.p["source_port_for_target"],
            db_replication_sslmode=self.p["source_ssl_mode_for_target"],
            db_replication_sslrootcert=self.p["source_ssl_root_cert_for_target"]), "the source")
        conninfo = replication_conn.subscription_conninfo(
            peer["host"], peer["port"], self.p["login_db"], user, password, peer["sslmode"], peer["sslrootcert"])
        names = [name for side, name in self.created["slots"] if side == "source"]
        for name in names:
            stmt = db.create_subscription(tgt, name, conninfo, name, origin_none=True)
            tgt.execute(stmt)
            self.q(scrub(stmt.as_string(tgt), [password]))
        return dict(stopped=self.reverse_name, removed=removed, subscribed=names)

    def no_way_back(self, runner, exc):
        """After the switch the return stream could not be made: remove what is left of it (a slot nobody reads
        holds the target's WAL), warn loudly, and give the machine the error that says so."""
        try:
            removed = runner.remove() if runner is not None else []
            left = ""
        except Exception as err:  # still say what happened first
            removed, left = [], " COULD NOT DROP the return slot %s on the target (%s): drop it by hand " \
                                "(SELECT pg_drop_replication_slot('%s')) before it fills the disk." % (
                                    self.reverse_name, return_path_runner.first_line(err), self.reverse_name)
        msg = ("the target serves, but THERE IS NO WAY BACK: %s. %s%s Fix the cause, then run cutover.yml -e "
               "cutover_mode=resume_reverse (aurora_cutover mode=resume_reverse): it makes the return stream again; "
               "what the target takes until then will not reach the source" % (
                   str(exc).rstrip("."), "Removed so that nothing holds the target's WAL: %s." % ", ".join(removed)
                   if removed else "", left))
        self.warnings.append("NO WAY BACK: " + msg)
        return cutover.ReturnPathFailed(msg, dict(getattr(exc, "detail", None) or {}, removed=removed))

    def step_postcheck(self, machine):
        p = self.p
        wait = 5.0
        if p["switch_method"] == "route53" and p["route53"]["wait_ttl"] and self.route53_previous:
            wait = max(wait, float(self.route53_previous["old_ttl"]))
        left = []
        if p["app_roles"]:
            deadline = time.monotonic() + wait
            while True:
                left = db.app_sessions(self.conn(self.old), p["app_roles"])
                if not left or time.monotonic() > deadline:
                    break
                time.sleep(0.2)
            if left:
                self.warnings.append("%d application session(s) still connected to the %s after the switch: %s" % (
                    len(left), self.old, ", ".join("%s pid %s" % (s["user"], s["pid"]) for s in left)))
        return dict(app_sessions_on_old_side=len(left))

    # --- modes ---------------------------------------------------------------------------------

    def serving(self):
        last = []
        for side in ("source", "target"):
            event = db.last_switch(self.conn(side), self.migration)
            if event:
                last.append(event)
        if not last:
            # No cutover log (never switched, or cleanup dropped it after a cutover): PgBouncer's entry says
            # where the application goes, when the switch is PgBouncer's.
            return self.pgbouncer_serving() or "source", None
        latest = max(last, key=lambda e: e["at"])
        return ("target" if latest["direction"] == "forward" else "source"), latest

    def pgbouncer_serving(self):
        """The side PgBouncer's [databases] entry points at (switch_method pgbouncer), or None."""
        pgb = self.p.get("pgbouncer") or {}
        if self.p["switch_method"] != "pgbouncer" or not pgb.get("databases_file"):
            return None
        try:
            found = pgbouncer_conf.find_entry(bouncer.read_file, os.path.abspath(pgb["databases_file"]),
                                              pgb["database"])
            return pgbouncer_conf.serving_side(found, self.side_address("source")[:2],
                                               self.side_address("target")[:2])
        except pgbouncer_conf.ConfError:
            return None

    def status(self):
        side, event = self.serving()
        self.module.exit_json(changed=False, serving=side, last_switch=dict(
            direction=event["direction"], run_id=event["run_id"], at=event["at"].isoformat()) if event else None,
            queries=self.queries)

    def cleanup(self):
        side, event = self.serving()
        src, tgt = self.conn("source"), self.conn("target")
        if self.module.check_mode:
            self.module.exit_json(changed=False, serving=side, queries=[])
        self.recover_first()
        removed = self.remove_reverse(src, tgt)
        for s in ("source", "target"):
            if db.log_exists(self.conn(s)):
                db.drop_log(self.conn(s))
                self.q("DROP TABLE IF EXISTS pgshift.cutover_log (%s)" % s)
                removed.append("cutover_log on the %s" % s)
            if db.journal_exists(self.conn(s)):
                db.drop_journal(self.conn(s))
                self.q("DROP TABLE IF EXISTS pgshift.freeze_journal (%s)" % s)
                removed.append("freeze_journal on the %s" % s)
        self.module.exit_json(changed=bool(removed), serving=side, removed=removed, queries=self.queries)

    def resume_reverse(self):
        """mode=resume_reverse: after a cutover left without its return stream (switched_without_return_path),
        make it again as cutover.resume_reverse_plan says, check that it streams, write resume_reverse.md/.json."""
        p = self.p
        side, event = self.serving()
        try:
            runner = self.return_path()
        except replication_conn.ReplicationConnError as exc:
            self.module.fail_json(msg=str(exc), status="refused", serving=side, queries=self.queries)
        state = runner.state()
        streaming = bool(state["subscription"]) and runner.check()[0]
        plan = cutover.resume_reverse_plan(side, state["publication"], state["slot"], state["subscription"], streaming)
        if plan["refuse"]:
            self.module.fail_json(msg="resume_reverse: %s; nothing was changed" % plan["refuse"], status="refused",
                                  serving=side, queries=self.queries)
        info = dict(actions=plan["actions"], gap=plan["gap"], found=state, connection=runner.connection,
                    switched_at=event["at"].isoformat() if event else None)
        if self.module.check_mode:
            self.module.exit_json(changed=False, status="checked", serving=side, return_path=info, queries=self.queries)
        src, tgt = self.conn("source"), self.conn("target")
        status, error, timeline, t0 = "resumed", None, [], time.monotonic()
        if not plan["actions"]:
            info.update(runner.detail(runner.check(), 0.0))
        try:
            for action in plan["actions"]:
                a0 = time.monotonic()
                entry = dict(step=action, number=None, kind="resume", status="failed", at=round(a0 - t0, 3),
                             time=utcnow().strftime("%Y-%m-%dT%H:%M:%S.%fZ"), seconds=0.0, message="", detail={})
                timeline.append(entry)
                if action == "drop_subscription":
                    runner.drop_subscription()
                elif action == "drop_slot":
                    runner.drop_slot()
                elif action == "create_publication":
                    entry["detail"] = dict(tables=len(self.return_publication(src, tgt)))
                elif action == "create_slot":
                    info["gap_to_lsn"] = self.return_slot(tgt)
                    entry["detail"] = dict(slot_lsn=info["gap_to_lsn"])
                else:
                    info.update(runner.establish(action))
                    entry["message"] = "streams from the target as %s" % runner.describe()
                entry.update(status="ok", seconds=round(time.monotonic() - a0, 3))
        except Exception as exc:  # a server's error creating the publication or slot too: nothing left behind
            status, error = "switched_without_return_path", self.no_way_back(runner, exc)
            timeline[-1].update(message=str(error), seconds=round(time.monotonic() - timeline[-1]["at"] - t0, 3))
        if plan["gap"]:
            info["gap_from_lsn"] = self.return_slot_lsn_of_cutover()
            if error is None:
                self.warnings.append(
                    "the return stream %s starts at the target's LSN %s: what the target took from the switch (%s, WAL "
                    "from %s) until then is NOT on the source - a rollback would lose it; bring the source up to date "
                    "(or do not roll back) before rollback.yml" % (
                        self.reverse_name, info.get("gap_to_lsn"), info["switched_at"] or "time unknown",
                        info["gap_from_lsn"] or "unknown"))
        report = json.loads(scrub(json.dumps(dict(
            status=status, migration=self.migration, serving=side, at=utcnow().strftime("%Y-%m-%dT%H:%M:%SZ"),
            return_path=info, timeline=timeline, error=str(error) if error else None, warnings=list(self.warnings),
            queries=self.queries), default=str), self.secrets))
        if p["report_dir"]:
            os.makedirs(p["report_dir"], exist_ok=True)
            with open(os.path.join(p["report_dir"], "resume_reverse.json"), "w") as f:
                json.dump(report, f, indent=2, default=str)
            with open(os.path.join(p["report_dir"], "resume_reverse.md"), "w") as f:
                f.write(cutover.render_resume_markdown(report))
        for w in self.warnings:
            self.module.warn(scrub(w, self.secrets))
        report["report_warnings"] = report.pop("warnings")
        if error is not None:
            self.module.fail_json(msg=scrub("resume_reverse: %s" % error, self.secrets), changed=True, **report)
        self.module.exit_json(changed=bool(plan["actions"]), **report)

    def return_slot_lsn_of_cutover(self):
        """The return slot's LSN the cutover recorded (cutover.json), where the target's changes not on the
        source begin; None when unknown."""
        path = os.path.join(self.p["report_dir"], "cutover.json") if self.p["report_dir"] else None
        try:
            with open(path) as f:
                return (json.load(f).get("positions") or {}).get("return_slot_lsn")
        except (OSError, TypeError, ValueError):
            return None

    def prepare(self):
        missing = [s for s in ("source", "target") if not db.log_exists(self.conn(s))]
        for side in missing:
            self.q("CREATE TABLE IF NOT EXISTS pgshift.cutover_log (%s)" % side)
            if not self.module.check_mode:
                db.ensure_log(self.conn(side))
        self.module.exit_json(changed=bool(missing), created=missing, queries=self.queries)

    def run(self):
        p = self.p
        if p["mode"] == "status":
            return self.status()
        if p["mode"] == "prepare":
            return self.prepare()
        if not self.module.check_mode:
            self.hold_run_lock()
        if p["mode"] == "cleanup":
            return self.cleanup()
        if p["mode"] == "recover":
            return self.recover()
        if p["mode"] == "resume_reverse":
            return self.resume_reverse()
        opts = dict(p, pgbouncer_database=(p.get("pgbouncer") or {}).get("database"),
                    route53_record=(p.get("route53") or {}).get("record_name"))
        problems = cutover.check_options(opts)
        if problems:
            self.module.fail_json(msg="invalid options: " + "; ".join(problems))
        self.recover_first()
        started_at = utcnow()
        if self.module.check_mode:
            machine = cutover.Machine(["preflight"], dict(preflight=self.step_preflight), clock=time.monotonic,
                                      wallclock=utcnow, freeze_timeout=p["freeze_timeout"])
            result = machine.run()
            if result["status"] == "aborted":
                self.module.fail_json(msg=scrub("check mode: %s" % result["reason"], self.secrets), status="aborted",
                                      failed_step="preflight", preflight=result, serving=self.old,
                                      queries=self.queries)
            self.module.exit_json(changed=False, status="checked", preflight=result, serving=self.old,
                                  would_run=cutover.plan_steps(p["rehearsal"]), queries=self.queries)
        hooks = {}
        for hook_name, command in (p["hooks"] or {}).items():
            hooks[hook_name] = (lambda m, c=command, n=hook_name: self.shell(
                c, "hook " + n, dict(PGSHIFT_STEP=n.split("_", 1)[1]), timeout=m.wait_limit(self.p["hook_timeout"])))
        actions = dict((step, getattr(self, "step_" + step)) for step in cutover.STEPS)
        actions.update(preflight=self.before_freeze, switch=self.switch_then_close_freeze)
        undo = dict(freeze=self.undo_freeze, return_path=self.undo_return_path)
        steps = cutover.plan_steps(p["rehearsal"])
        if p["progress_file"]:
            self.tracking = dict(file=progress.ProgressFile(p["progress_file"]), steps=steps, done=0,
                                 start=time.monotonic())
            actions = self.tracked(steps, actions)
        machine = cutover.Machine(steps, actions, undo=undo, hooks=hooks,
                                  freeze_timeout=p["freeze_timeout"], clock=time.monotonic, wallclock=utcnow,
                                  rehearsal=p["rehearsal"], rehearsal_check=self.prove_return_path
                                  if p["rehearsal"] and p["direction"] == "forward" else None)
        self.machine = machine
        result = machine.run()
        self.show_progress("%s%s" % (result["status"], ": %s" % result["reason"] if result.get("reason") else ""),
                           done=len(result.get("steps_done") or []))
        serving = self.new if result["status"] in ("switched", "failed_after_switch",
                                                   "switched_without_return_path") else self.old
        report = dict(result, direction=p["direction"], rehearsal=p["rehearsal"], migration=self.migration,
                      old_side=self.old, new_side=self.new, freeze_method=p["freeze_method"],
                      switch_method=p["switch_method"], engine=p["engine"], freeze_timeout=p["freeze_timeout"],
                      started_at=started_at.strftime("%Y-%m-%dT%H:%M:%SZ"), positions=self.positions,
                      sequences_moved=self.sequences_moved, serving=serving, run_id=self.run_id,
                      rollback_plan=cutover.rollback_plan(p["direction"], p["freeze_method"], p["switch_method"],
                                                          self.migration, self.reverse_name),
                      warnings=list(self.warnings), queries=self.queries)
        if self.return_path_proof is not None:
            report["return_path_proof"] = self.return_path_proof
        report["recovered"] = self.recovered
        report = json.loads(scrub(json.dumps(report, default=str), self.secrets))
        if p["report_dir"]:
            base = "rehearsal" if p["rehearsal"] else ("cutover" if p["direction"] == "forward" else "rollback")
            os.makedirs(p["report_dir"], exist_ok=True)
            with open(os.path.join(p["report_dir"], base + ".json"), "w") as f:
                json.dump(report, f, indent=2, default=str)
            with open(os.path.join(p["report_dir"], base + ".md"), "w") as f:
                f.write(cutover.render_markdown(report))
        for w in self.warnings:
            self.module.warn(scrub(w, self.secrets))
        # in the report file; exit_json's own `warnings` key is reserved (module.warn above)
        report["report_warnings"] = report.pop("warnings")
        changed = result["status"] != "aborted" or bool(result["undone"])
        if result["status"] in ("aborted", "failed_after_switch", "switched_without_return_path"):
            if result["status"] == "switched_without_return_path":
                what = "Status switched_without_return_path: the %s serves with no return stream" % self.new
            elif result["status"] == "aborted":
                what = ("nothing switched; what was done is undone (%s) and the %s serves as before: fix the cause "
                        "and run again" % (", ".join("%s %s" % (u["step"], u["status"]) for u in result["undone"])
                                           or "nothing to undo", self.old))
            else:
                what = ("traffic is on the %s; the steps after the switch did not finish: fix the cause; the return "
                        "path may be incomplete" % self.new)
            self.module.fail_json(msg=scrub("%s stopped at step %s: %s. %s" % (
                "rehearsal" if p["rehearsal"] else "cutover" if p["direction"] == "forward" else "rollback",
                result["failed_step"], result["reason"], what), self.secrets), changed=changed, **report)
        self.module.exit_json(changed=changed, **report)


def main():
    module = AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True)
    if PSYCOPG_IMPORT_ERROR:
        module.fail_json(msg=missing_required_lib("psycopg"), exception=PSYCOPG_IMPORT_ERROR)
    runner = Cutover(module)
    try:
        runner.run()
    except (PgConnectError, bouncer.PgBouncerError) as exc:
        module.fail_json(msg=scrub(str(exc), runner.secrets), queries=runner.queries)
    except Exception as exc:  # an unexpected error outside the step machine: say it without any secret
        module.fail_json(msg=scrub("aurora_cutover failed: %s" % exc, runner.secrets),
                         exception=scrub(traceback.format_exc(), runner.secrets), queries=runner.queries)
    finally:
        runner.close()


if __name__ == "__main__":
    main()
