#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: pgshift.aurora contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: pg_native_stream
short_description: One native replication stream - publication, initial load under an exported snapshot, subscription
version_added: 0.2.0
description:
  - Creates, resumes, enables or removes one stream of a migration with PostgreSQL's own logical
    replication. A stream is one publication on the source, one logical replication slot and one
    subscription on the target, all named after the stream (C(pgshift_<migration>_s<N>)).
  - The publication holds the stream's tables (C(ONLY) for an inheritance parent whose own rows are
    migrated). When it exists, tables are added and dropped to match; tables already streaming are
    never copied again.
  - The initial load does not use PostgreSQL's table synchronisation. The slot is created with an
    exported snapshot over a replication connection that stays open while O(parallel) workers copy
    the tables under that snapshot, each table (or, with C(split) > 1, each range of its integer
    primary key) in one target transaction, streaming C(COPY ... TO STDOUT) into C(COPY ... FROM STDIN)
    in binary format (text for tables whose user-defined types have no portable binary form, or when
    a binary copy of such a table fails). Generated columns are not copied. The target runs with
    C(session_replication_role = replica) when allowed, so no trigger or foreign key fires.
  - Progress is written per unit to C(pgshift.load_progress) on the target (created when missing) while
    the copy runs, for M(pgshift.aurora.pg_replication_status) and the playbook to show rates and an ETA.
    Run the module with C(async) for long loads.
  - Then the subscription is created on the slot with C(copy_data = false), so changes apply from exactly the
    snapshot's LSN, so no row is lost or applied twice.
  - A run that finds a slot without a finished load (the module was stopped or crashed during the copy)
    cannot reuse it, as a snapshot cannot be imported once its exporting session ended; it drops the slot,
    truncates the stream's target tables and copies again, and says so in RV(restarted) and RV(restart_reason).
  - A second run with the same stream changes nothing. In check mode nothing changes and RV(queries) lists
    what would run.
author:
  - pgshift.aurora developers (@pgshift)
extends_documentation_fragment:
  - pgshift.aurora.postgres
  - pgshift.aurora.postgres_target
  - pgshift.aurora.in_process
options:
  stream:
    description:
      - The stream, as one item of the C(streams) list returned by M(pgshift.aurora.pg_replication_plan)
        (other keys are ignored). One stream per task; run the streams in parallel with C(async) and
        C(async_status).
      - C(name) (required) names the publication, slot and subscription.
      - C(tables) is a list of dicts with C(schema) and C(name), and optionally C(only) (an inheritance
        parent, its own rows only), C(key) or C(primary_key) (the primary key columns), C(split) (copy in
        that many ranges of the single integer key), C(split_key), C(bytes) and C(rows) (estimates, for the
        order of the copy and the ETA). A table with inheritance children must have C(only=true).
      - With O(state=absent) only C(name) is used.
    type: dict
    required: true
  state:
    description:
      - C(present) creates or resumes the stream; the subscription is enabled according to O(enable).
      - C(enabled) is C(present) with the subscription enabled.
      - C(disabled) is C(present) with the subscription disabled (created disabled, or disabled when it runs).
      - C(absent) drops the subscription (disabled, detached from its slot, dropped), then the slot on the
        source (waiting for its WAL sender to stop, terminating it after O(slot_release_timeout)), the
        publication and the stream's progress rows. The target tables and their data stay.
    type: str
    default: present
    choices: [present, enabled, disabled, absent]
  enable:
    description:
      - With O(state=present), whether the subscription is created enabled (CDC starts at once) and an
        existing disabled one is enabled.
      - C(false) creates it disabled, so secondary indexes can be built before CDC starts; it never
        disables a running subscription (use O(state=disabled)). Run again with C(true) to start CDC.
    type: bool
    default: true
  copy:
    description:
      - Copy the tables' rows. C(false) creates the slot and the subscription without copying (the target
        already holds the data as of the slot, or will not need it). Tables added to an existing stream are
        then not copied either.
    type: bool
    default: true
  parallel:
    description:
      - Copy workers (each with one source and one target connection).
    type: int
    default: 2
  keys_after_copy:
    description:
      - Drop the primary keys and unique constraints of the stream's big tables on the target before their
        copy and build them again right after it, before the subscription starts (one index build is faster
        than filling an index row by row, and gives a smaller index). Only ordinary tables of at least
        O(keys_after_copy_min_bytes) whose key no foreign key references; partitions keep theirs.
      - Each dropped key is recorded in C(pgshift.deferred_keys) on the target in the same transaction, so a
        load interrupted at any point builds it on the next run; the subscription is never created or
        enabled while a key of its stream is missing.
    type: bool
    default: true
  keys_after_copy_min_bytes:
    description: Estimated size (the table's C(bytes)) from which O(keys_after_copy) applies to a table.
    type: int
    default: 67108864
  maintenance_work_mem:
    description: C(maintenance_work_mem) of the sessions that build the keys after the copy.
    type: str
    default: 256MB
  copy_relay:
    description:
      - How each unit's rows go from the source to the target. C(psql) runs two C(psql) processes per unit
        (COPY TO STDOUT under the exported snapshot, COPY FROM STDIN on the target) and passes the bytes between
        them in 1 MiB blocks; C(python) relays row by row through psycopg in this process, which costs the
        controller about a CPU-second per five million rows. C(auto) uses psql for the units estimated at 16 MiB
        or more when one is found (O(psql_path), then C(PATH), then the newest
        C(/usr/lib/postgresql/<major>/bin)), python for the others (starting two psql costs more than a small
        unit's copy). RV(load) lists the relays used (C(relay)).
      - With psql, the connections (password included) go to psql through its environment, never its command
        line; the target's transaction commits only after the source's psql ended without error, and a psql
        whose module process dies is killed (Linux), so no partial unit is committed.
    type: str
    default: auto
    choices: [auto, psql, python]
  psql_path:
    description: The psql to use for O(copy_relay=psql) or C(auto). Any version from 9.6 on.
    type: path
  slot_release_timeout:
    description:
      - With O(state=absent), seconds to wait for the slot's WAL sender to stop before terminating it.
    type: int
    default: 30
  progress_file:
    description:
      - With O(state=absent), a JSON file rewritten while the stream is removed (steps done, steps per second,
        ETA, what it waits for and how much WAL the slot holds), for M(pgshift.aurora.job_progress) when the
        module runs in the background. Never holds a password.
    type: path
  source_replication_user:
    description:
      - The user the subscription connects to the source as (the migration user, with the REPLICATION
        attribute or rds_replication). Defaults to O(login_user).
    type: str
  source_replication_password:
    description:
      - Password of O(source_replication_user). It is stored in the subscription's connection string on the
        target; it is never logged nor returned (RV(queries) shows it masked). Defaults to O(login_password)
        when O(source_replication_user) is not set.
    type: str
  source_host:
    description:
      - The source's host name as the target server reaches it (it may differ from O(login_host), which is
        how this controller reaches it). Defaults to O(login_host).
    type: str
  source_port:
    description: The source's port as the target server reaches it. Defaults to O(login_port).
    type: int
  source_db:
    description: The source database for the subscription. Defaults to O(login_db).
    type: str
  source_ssl_mode:
    description: libpq C(sslmode) of the subscription's connection. Defaults to O(ssl_mode).
    type: str
    choices: [disable, allow, prefer, require, verify-ca, verify-full]
  source_ssl_root_cert:
    description:
      - C(sslrootcert) of the subscription's connection, a path on the target server (not on the controller).
    type: str
notes:
  - Supports check mode and diff mode.
  - O(login_user) on the source creates the publication (owner of the tables, or a superuser/rds_superuser)
    and the slot (REPLICATION attribute or rds_replication), and reads the tables.
  - The slot is created after the publication, on a source whose long transactions delay it (creating a
    logical slot waits for the transactions running at that moment to end).
  - The target must reach the source at O(source_host):O(source_port).
requirements:
  - psycopg >= 3.1
seealso:
  - module: pgshift.aurora.pg_replication_status
  - module: pgshift.aurora.pg_replication_plan
  - name: Logical replication
    description: Publications, subscriptions and their restrictions.
    link: https://www.postgresql.org/docs/current/logical-replication.html
"""

EXAMPLES = r"""
- name: Load each stream and start CDC, streams in parallel
  pgshift.aurora.pg_native_stream:
    login_host: "{{ hostvars[groups['source'][0]].db_host }}"
    login_db: app
    login_user: postgres
    login_password: "{{ source_admin_password }}"
    target_login_host: "{{ hostvars[groups['target'][0]].db_host }}"
    target_login_db: app
    target_login_password: "{{ target_admin_password }}"
    source_replication_user: pgshift
    source_replication_password: "{{ migration_password }}"
    stream: "{{ item }}"
    parallel: 4
    enable: false
  loop: "{{ plan.streams }}"
  async: 86400
  poll: 0
  register: loads

- name: Start CDC once the indexes are built
  pgshift.aurora.pg_native_stream:
    login_host: source.example.internal
    login_db: app
    target_login_host: target.example.internal
    target_login_db: app
    stream:
      name: pgshift_shipping_s1
    state: enabled

- name: Remove a stream (subscription, slot, publication)
  pgshift.aurora.pg_native_stream:
    login_host: source.example.internal
    login_db: app
    target_login_host: target.example.internal
    target_login_db: app
    stream:
      name: pgshift_shipping_s1
    state: absent
"""

RETURN = r"""
stream:
  description: The stream's name (publication, slot and subscription).
  returned: always
  type: str
  sample: pgshift_shipping_s1
steps:
  description: What the run did (or would do in check mode), in order.
  returned: always
  type: list
  elements: str
  sample: [publication_create, slot_create_export, copy, subscription_create]
restarted:
  description: Whether an earlier, unfinished load was thrown away and the copy started again.
  returned: always
  type: bool
restart_reason:
  description: Why the copy started again (empty when it did not).
  returned: always
  type: str
publication:
  description: The publication's tables added and removed by this run.
  returned: always
  type: dict
  sample: {"tables_added": ["public.orders"], "tables_removed": []}
slot:
  description: The slot, and the consistent LSN of the load when this run created it.
  returned: always
  type: dict
  sample: {"name": "pgshift_shipping_s1", "created": true, "consistent_lsn": "0/1A2B3C8"}
load:
  description:
    - The initial load of this run; C(tables) per table, with its units (key ranges), rows, bytes, seconds
      and the COPY format used. Empty when nothing was copied.
    - C(keys) lists the keys built after the copy (O(keys_after_copy)) with their build time, C(keys_seconds)
      the time of that phase (C(seconds) is the copy's).
  returned: always
  type: dict
  sample: {"units": 6, "rows": 120000, "bytes": 9800000, "seconds": 1.3, "rows_per_second": 92307.7,
           "workers": 2, "tables": [{"table": "public.pings", "units": 4, "rows": 100000, "format": "binary"}]}
subscription:
  description: The subscription after the run.
  returned: always
  type: dict
  sample: {"name": "pgshift_shipping_s1", "exists": true, "enabled": true}
queries:
  description: The SQL and replication commands run (or that would run in check mode); passwords are masked.
  returned: always
  type: list
  elements: str
"""


from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible_collections.pgshift.aurora.plugins.module_utils._pg.connection import PSYCOPG_IMPORT_ERROR
from ansible_collections.pgshift.aurora.plugins.module_utils.runners import stream as runner


def main():
    module = AnsibleModule(supports_check_mode=True, **runner.module_spec())
    if PSYCOPG_IMPORT_ERROR:
        module.fail_json(msg=missing_required_lib("psycopg"), exception=PSYCOPG_IMPORT_ERROR)
    runner.run_module(module)


if __name__ == "__main__":
    main()
