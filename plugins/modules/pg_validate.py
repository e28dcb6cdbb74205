#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: pgshift.aurora contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: pg_validate
short_description: Prove that the target holds the same rows, schema and sequences as the source (go/no-go)
version_added: 0.3.0
description:
  - Compares every migrated physical table (each partition leaf and inheritance child on its own, an inheritance
    parent for its own rows) of the SOURCE with the same table on the TARGET, reading both from consistent
    snapshots (REPEATABLE READ, one snapshot per side shared by every worker). Read-only.
  - Content - the key space of each table is cut into ranges of about O(chunk_rows) rows; each range is hashed on
    both sides at the same time (C(count(*)) and the sum of a 64-bit hash of every row's canonical text); a range
    whose count or hash differs is split again until it holds at most O(row_level_rows) rows, whose keys and
    hashes are then fetched and listed as C(missing) (on the target), C(extra) (on the target) or C(changed) (with
    the columns that differ), at most O(max_differences) per table.
  - Tables without a primary key are hashed whole (order-independent, a duplicated row changes the hash); when
    they differ their rows are grouped and counted on both sides, and each row missing or extra is listed with its
    text and how many copies differ.
  - Values are compared by value, not by their text on one server version - floats by their IEEE bytes, numerics
    without trailing zeros (PostgreSQL 13 or later on both sides), timestamps with time zone in UTC, jsonb in its
    canonical text, bytea and long text by md5 - so the same data on PostgreSQL 15 and 18 compares equal.
  - Sequences (O(check_sequences)) - every sequence of the source must give on the target a next value at least
    the source's and above the largest value of every column that takes values from it.
  - Schema (O(check_schema)) - tables, columns and types, constraints, indexes and triggers (with their enabled
    state) on both sides; every difference is named.
  - Live mode - while replication runs, a range that differs is compared again after every replication slot of
    the migration confirmed the source's WAL position read with the new snapshot, up to O(live_rounds) times; only
    what still differs is reported. Quiesced mode (writes stopped) compares once.
  - Live mode's lock step (O(live_lock_rows)) - in each re-check round, the rows of keyed tables that still differ
    are locked on the source (C(SELECT ... FOR SHARE NOWAIT), at most O(live_lock_rows) rows of one table per short
    transaction, tried again while another transaction holds one of them, never waiting for a row while holding
    others, so that an application transaction is never a deadlock victim of it), their hashes and the WAL
    position read under the locks, the slots waited for, and the same keys read on the target; nobody can change
    a locked row, so the target must then hold exactly its value - equal is resolved, different is a real
    difference. This settles rows written many times a second, which the snapshots alone never settle. Tables
    without a key keep the snapshot settle.
author:
  - pgshift.aurora developers (@pgshift)
extends_documentation_fragment:
  - pgshift.aurora.postgres
  - pgshift.aurora.postgres_target
  - pgshift.aurora.filters
  - pgshift.aurora.in_process
options:
  mode:
    description:
      - C(quiesced) when no writes reach the source (compares once); C(live) while replication runs.
    type: str
    default: quiesced
    choices: [live, quiesced]
  migration:
    description:
      - The migration name; in live mode the slots C(pgshift_<migration>_s<N>) on the source are waited for.
      - Required with O(mode=live) unless O(slot_prefix) is given.
    type: str
  slot_prefix:
    description: Logical slots on the source whose name starts with this are the streams waited for in live mode.
    type: str
  parallel:
    description: Workers comparing ranges at the same time (each holds one connection to each side).
    type: int
    default: 2
  chunk_rows:
    description: About how many rows each first-level range holds.
    type: int
    default: 100000
  row_level_rows:
    description: A differing range with at most this many rows on each side is compared row by row.
    type: int
    default: 1000
  max_differences:
    description: At most this many differing rows are listed per table.
    type: int
    default: 100
  max_rows_per_second:
    description: Bounds the source load - the comparison waits so as not to read faster than this. 0 means no bound.
    type: int
    default: 0
  live_rounds:
    description: In live mode, how many times ranges that differ are compared again after the target caught up.
    type: int
    default: 3
  catch_up_timeout:
    description: In live mode, seconds to wait for the slots to confirm the source's position before a new round.
    type: float
    default: 300
  live_lock_rows:
    description:
      - In live mode, at most this many rows of one table are locked together by the lock step (a table with more
        differing rows takes several lock batches, one after the other). C(0) disables the lock step - differences
        still in flight after the last round are then reported as unsettled, as before.
      - Trade-off - while a batch holds its locks (one wait for the slots, at most O(live_lock_timeout) seconds),
        application updates and deletes of those rows, and C(SELECT ... FOR UPDATE) on them, wait; inserts and
        other rows are not affected. An application transaction that locks several of these rows in another order
        may deadlock with the batch - PostgreSQL cancels one side after C(deadlock_timeout), normally the lock
        step, which gives way.
    type: int
    default: 1000
  live_lock_timeout:
    description:
      - Seconds one lock batch may take - to get its locks (tries of C(FOR SHARE NOWAIT), 10 ms apart doubling up
        to 200 ms, while another transaction holds a row; C(statement_timeout) of its source transaction) and then
        for the slots to confirm the position read under them. When the locks are not
        granted or the slots do not confirm in time, the locks are released and those differences are settled as
        without the lock step (reported as unsettled when still in flight after the last round); the round's
        record says why.
    type: float
    default: 5
  check_schema:
    description: Compare tables, columns, constraints, indexes and triggers.
    type: bool
    default: true
  check_sequences:
    description: Compare sequences (see O(sequences_gate)).
    type: bool
    default: true
  sequences_gate:
    description:
      - Whether a sequence not ahead on the target makes the verdict NO-GO. C(auto) - in quiesced mode only (while
        replication runs sequences are not replicated - the cutover sets them).
    type: str
    default: auto
    choices: [auto, always, never]
  progress_file:
    description:
      - A file rewritten about every second with the rows compared, rows per second and an ETA (JSON), for a
        playbook that runs this module asynchronously and shows the progress.
    type: path
notes:
  - Supports check mode (it only reads).
  - The migration user needs C(SELECT) on every compared table and sequence on both sides.
  - The lock step needs the C(UPDATE) privilege on the tables it locks rows of (PostgreSQL requires it for
    C(SELECT ... FOR SHARE)); the RDS master user has it as a member of the tables' owner role. Without it the
    differences of that table are settled without the lock step, and the round's record says so.
requirements:
  - psycopg >= 3.1
seealso:
  - module: pgshift.aurora.pg_replication_status
"""

EXAMPLES = r"""
- name: Validate while replication runs
  pgshift.aurora.pg_validate:
    login_host: source.example.internal
    login_db: app
    login_user: pgshift
    login_password: "{{ source_password }}"
    target_login_host: target.example.internal
    target_login_db: app
    target_login_user: pgshift
    target_login_password: "{{ target_password }}"
    mode: live
    migration: shipping
    parallel: 4
    max_rows_per_second: 200000
  register: validation

- name: Compare once, writes stopped, only the billing schema
  pgshift.aurora.pg_validate:
    login_host: 127.0.0.1
    login_port: 25432
    login_db: shipping
    target_login_host: 127.0.0.1
    target_login_port: 25433
    target_login_db: shipping
    include_schemas: [billing]
"""

RETURN = r"""
verdict:
  description: C(GO) when every table is equal, the schema matches and (when gated) every sequence is ahead.
  returned: success
  type: str
  sample: NO-GO
reasons:
  description: One sentence per reason of a NO-GO.
  returned: success
  type: list
  elements: str
mode:
  description: The mode compared in.
  returned: success
  type: str
tables:
  description:
    - Per table - C(table), C(rows_source), C(rows_target), C(seconds), C(result) (C(equal), C(different) or
      C(error)), C(differences) (C(kind), C(key), C(columns) for a changed row, C(count) for a table without a
      key, C(range), C(unsettled) in live mode for a row still written when the last round ended - neither
      resolved nor confirmed), C(difference_count), C(truncated), C(key) and C(error).
  returned: success
  type: list
  elements: dict
  sample:
    - table: public.parcels
      rows_source: 10000
      rows_target: 9999
      seconds: 0.41
      result: different
      differences: [{"kind": "missing", "key": ["4711"], "range": "[(4000), (4625))"}]
sequences:
  description: The sequence plan (gap 0) - C(sequence), C(source_next), C(target_next), C(column_max),
    C(required_next), C(set_to), C(status) (C(ok), C(behind), C(missing_on_target)).
  returned: success
  type: list
  elements: dict
sequences_gated:
  description: Whether the sequences counted in the verdict.
  returned: success
  type: bool
schema:
  description: Schema differences - C(kind), C(object), C(difference), C(source), C(target), C(message).
  returned: success
  type: list
  elements: dict
skipped:
  description: In-scope tables not compared and why (unlogged tables).
  returned: success
  type: list
  elements: dict
rounds:
  description:
    - The comparison rounds (live mode re-checks) with the source LSN each waited for, C(confirmed), C(in_flight)
      and C(resolved) differences.
    - When the lock step had rows to check in a round - C(locked_rows) (rows locked on the source),
      C(settled_by_lock) (of the rows checked, how many it settled - C(lock_resolved) plus C(lock_confirmed)),
      C(lock_fallback) (rows it could not settle - settled as without it) and C(lock_problems) (why, per table).
  returned: success
  type: list
  elements: dict
summary:
  description: C(tables), C(rows_compared), C(seconds), C(rows_per_second), C(differences) and counts per result.
  returned: success
  type: dict
finished_at:
  description: When the comparison ended (ISO 8601, UTC).
  returned: success
  type: str
"""


from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible_collections.pgshift.aurora.plugins.module_utils._pg.connection import PSYCOPG_IMPORT_ERROR
from ansible_collections.pgshift.aurora.plugins.module_utils.runners import validate as runner


def main():
    module = AnsibleModule(supports_check_mode=True, **runner.module_spec())
    if PSYCOPG_IMPORT_ERROR:
        module.fail_json(msg=missing_required_lib("psycopg"), exception=PSYCOPG_IMPORT_ERROR)
    runner.run_module(module)


if __name__ == "__main__":
    main()
