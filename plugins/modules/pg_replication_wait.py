#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: pgshift.aurora contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

# The work is done by the action plugin of the same name (plugins/action/pg_replication_wait.py),
# in the controller, so that progress is printed while it waits; this file documents it.

from __future__ import annotations

DOCUMENTATION = r"""
---
module: pg_replication_wait
short_description: Wait for the native replication streams, printing load progress and lag as it goes
version_added: 0.2.0
description:
  - Polls M(pgshift.aurora.pg_replication_status) every O(interval) seconds and prints, in the playbook
    output, one line per stream (state, load progress with rows, bytes, rate and ETA, lag in bytes and
    seconds, WAL held by the slot) and one line per table being copied (rows, rate, ETA).
  - Waits until every stream's initial load is copied (O(until=loaded), also waiting for the load jobs
    given in O(jobs)), until every stream streams within the lag limits (O(until=caught_up)), or until
    every stream applied O(barrier_lsn) (O(until=barrier)).
  - Fails at once when a stream is in error or a load job failed, saying which and why; fails after
    O(timeout) seconds with the last state of every stream.
  - Appends the lag over time to O(lag_csv) when given.
  - Every other option is passed to M(pgshift.aurora.pg_replication_status).
author:
  - pgshift.aurora developers (@pgshift)
extends_documentation_fragment:
  - pgshift.aurora.postgres
  - pgshift.aurora.postgres_target
options:
  migration:
    description: The migration name; its streams are C(pgshift_<migration>_s<N>).
    type: str
    required: true
  until:
    description: What to wait for.
    type: str
    default: caught_up
    choices: [loaded, caught_up, barrier]
  interval:
    description:
      - Seconds between two polls (and two progress prints). The first polls come sooner (after 0.5, 1, 2 ...
        seconds, doubling up to O(interval)), so a short wait does not last a whole interval longer than needed.
      - With the local connection (the inventory contract) the load jobs' status is read from their job files
        directly; otherwise M(ansible.builtin.async_status) runs for each at every poll.
    type: float
    default: 5
  timeout:
    description: Seconds to wait at most.
    type: int
    default: 3600
  jobs:
    description:
      - Registered results of the load tasks run with C(async) and C(poll=0) (with C(loop), the registered
        C(results) list); a job that fails stops the wait with its message.
    type: list
    elements: dict
    default: []
  plan:
    description: The plan of M(pgshift.aurora.pg_replication_plan), for per-table row estimates and ETAs.
    type: dict
  lag_csv:
    description: A CSV file on the controller to append lag and load figures to, one row per stream and poll.
    type: path
  max_lag_bytes:
    description: A stream is caught up when its lag in bytes is at most this.
    type: int
    default: 1048576
  max_lag_seconds:
    description: A stream is caught up when its lag in seconds is at most this.
    type: float
    default: 5
  barrier_lsn:
    description: With O(until=barrier), the source LSN every stream must have applied.
    type: str
notes:
  - Runs in the controller (an action plugin); the databases are reached from there.
  - Supports check mode, as it only reads.
"""

EXAMPLES = r"""
- name: Start the initial load of every stream, in parallel
  pgshift.aurora.pg_native_stream:
    login_host: "{{ source.db_host }}"
    stream: "{{ item }}"
    enable: false
  loop: "{{ plan.plan.streams }}"
  async: 86400
  poll: 0
  register: loads

- name: Wait for the loads, printing per-table progress
  pgshift.aurora.pg_replication_wait:
    login_host: "{{ source.db_host }}"
    target_login_host: "{{ target.db_host }}"
    migration: shipping
    until: loaded
    jobs: "{{ loads.results }}"
    plan: "{{ plan.plan }}"
"""

RETURN = r"""
status:
  description: The last result of M(pgshift.aurora.pg_replication_status).
  returned: success
  type: dict
jobs:
  description: The load jobs' last state (jid, stream, finished, failed, msg).
  returned: success
  type: list
  elements: dict
job_results:
  description:
    - The result each load job's module returned (what M(ansible.builtin.async_status) would register, with the
      loop C(item) it ran for), in the order of O(jobs); C(null) for a job still running. No separate
      M(ansible.builtin.async_status) task is needed to collect them.
    - The task reports C(changed) when any of these did.
  returned: success or when a load job failed
  type: list
  elements: dict
reason:
  description: What was reached.
  returned: success
  type: str
  sample: every stream is streaming within the lag limits
elapsed_seconds:
  description: How long it waited.
  returned: success
  type: float
polls:
  description: How many times the status was read.
  returned: success
  type: int
max_lag_bytes:
  description: The largest lag in bytes seen by any stream while waiting.
  returned: success
  type: int
"""
