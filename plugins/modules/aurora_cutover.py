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
  - pgshift.aurora.in_process
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


from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible_collections.pgshift.aurora.plugins.module_utils._pg.connection import PSYCOPG_IMPORT_ERROR
from ansible_collections.pgshift.aurora.plugins.module_utils.runners import cutover as runner


def main():
    module = AnsibleModule(supports_check_mode=True, **runner.module_spec())
    if PSYCOPG_IMPORT_ERROR:
        module.fail_json(msg=missing_required_lib("psycopg"), exception=PSYCOPG_IMPORT_ERROR)
    runner.run_module(module)


if __name__ == "__main__":
    main()
