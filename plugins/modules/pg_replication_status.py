#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: pgshift.aurora contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: pg_replication_status
short_description: Read the state, lag and load progress of every native replication stream of a migration
version_added: 0.2.0
description:
  - Reads, and never changes, the streams of one migration made by M(pgshift.aurora.pg_native_stream),
    the publications C(pgshift_<migration>_s<N>) and their slots on the source, the subscriptions of the
    same names on the target.
  - Per stream it returns a state (C(copying), C(streaming), C(starting), C(disabled), C(error) or
    C(missing)) with a sentence saying what to do, the subscription (enabled, apply worker, error
    counters), the slot (confirmed LSN, WAL retained), the lag in bytes (source WAL not yet confirmed by
    the subscriber) and in seconds, the initial load's progress (units, rows, bytes, rates, ETA) from
    C(pgshift.load_progress) and each table's state.
  - RV(caught_up) tells whether every stream streams within O(max_lag_bytes) and O(max_lag_seconds);
    with O(barrier_lsn), RV(barrier_reached) tells whether every stream confirmed that source LSN
    (the cutover's barrier).
author:
  - pgshift.aurora developers (@pgshift)
extends_documentation_fragment:
  - pgshift.aurora.postgres
  - pgshift.aurora.postgres_target
  - pgshift.aurora.in_process
options:
  migration:
    description:
      - The migration name (the inventory's C(migration_name)); its streams are named C(pgshift_<migration>_s<N>).
    type: str
    required: true
  max_lag_bytes:
    description: A stream is caught up when its lag in bytes is at most this.
    type: int
    default: 1048576
  max_lag_seconds:
    description: A stream is caught up when its lag in seconds is at most this.
    type: float
    default: 5
  barrier_lsn:
    description:
      - A source LSN (C(X/Y), from C(pg_current_wal_lsn()) on the source after the writes stopped). Every
        stream's C(barrier_reached) in RV(streams) and the overall RV(barrier_reached) say whether the subscriber
        confirmed it, i.e. applied every transaction committed before it.
    type: str
notes:
  - Supports check mode (it only reads).
  - Lag in seconds is the WAL sender's C(replay_lag) when it measures one; 0 when everything sent was
    confirmed; without a WAL sender, the time since the subscriber last heard from the source
    (C(last_msg_receipt_time), target clock).
  - Error counters (C(apply_error_count), C(sync_error_count)) need a PostgreSQL 15 or later target. The error
    texts are in the target's server log only.
requirements:
  - psycopg >= 3.1
seealso:
  - module: pgshift.aurora.pg_native_stream
"""

EXAMPLES = r"""
- name: Wait until every stream is caught up, printing the lag
  pgshift.aurora.pg_replication_status:
    login_host: "{{ hostvars[groups['source'][0]].db_host }}"
    login_db: app
    login_password: "{{ source_admin_password }}"
    target_login_host: "{{ hostvars[groups['target'][0]].db_host }}"
    target_login_db: app
    target_login_password: "{{ target_admin_password }}"
    migration: "{{ migration_name }}"
    max_lag_seconds: 2
  register: replication
  until: replication.caught_up
  retries: 360
  delay: 10

- name: Cutover barrier - every stream applied everything up to the frozen source's LSN
  pgshift.aurora.pg_replication_status:
    login_host: source.example.internal
    login_db: app
    target_login_host: target.example.internal
    target_login_db: app
    migration: shipping
    barrier_lsn: "{{ frozen_lsn }}"
  register: barrier
  until: barrier.barrier_reached
  retries: 60
  delay: 1
"""

RETURN = r"""
streams:
  description:
    - One entry per stream found on either side, in stream order, with C(name), C(state), C(message),
      C(lag_bytes), C(lag_seconds), C(retained_bytes), C(caught_up), C(barrier_reached) and the details
      C(publication), C(slot), C(walsender), C(subscription), C(load) and C(tables).
    - Each table's C(state) is C(pending), C(copying), C(indexing) (copied; its keys dropped for the copy are
      being built), C(copied), C(failed), C(syncing), C(streaming) or C(stopped).
  returned: always
  type: list
  elements: dict
  sample:
    - name: pgshift_shipping_s1
      state: streaming
      message: pgshift_shipping_s1 streams from LSN 0/3A1B2C8
      lag_bytes: 0
      lag_seconds: 0.0
      retained_bytes: 5408
      caught_up: true
      barrier_reached: false
      subscription: {"exists": true, "enabled": true, "worker_pid": 4121, "apply_error_count": 0}
      slot: {"exists": true, "active": true, "confirmed_flush_lsn": "0/3A1B2C8", "wal_status": "reserved"}
      load: {"units": 6, "copied": 6, "rows": 120000, "rows_per_second": 91000.0, "eta_seconds": 0.0}
      tables: [{"table": "public.orders", "state": "streaming", "sync_state": "ready", "rows": 1000}]
totals:
  description: Streams per state, summed and maximum lags, WAL retained, rows and bytes copied.
  returned: always
  type: dict
caught_up:
  description: Whether there is at least one stream and every stream is caught up.
  returned: always
  type: bool
barrier_reached:
  description: With O(barrier_lsn), whether every stream confirmed it (false without streams).
  returned: always
  type: bool
errors:
  description: The message of every stream in state C(error).
  returned: always
  type: list
  elements: str
source_lsn:
  description: The source's pg_current_wal_lsn() when it was read.
  returned: always
  type: str
"""

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible_collections.pgshift.aurora.plugins.module_utils._pg.connection import PSYCOPG_IMPORT_ERROR
from ansible_collections.pgshift.aurora.plugins.module_utils.runners import status as runner


def main():
    module = AnsibleModule(supports_check_mode=True, **runner.module_spec())
    if PSYCOPG_IMPORT_ERROR:
        module.fail_json(msg=missing_required_lib("psycopg"), exception=PSYCOPG_IMPORT_ERROR)
    runner.run_module(module)


if __name__ == "__main__":
    main()
