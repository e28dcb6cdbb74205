#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: pgshift.aurora contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: pg_replication_plan
short_description: Plan the parallel replication streams of a migration
version_added: 0.1.0
description:
  - Reads the migrated tables of the SOURCE database (sizes, estimated rows, write rates, primary keys) and
    returns the replication plan, shared by both engines - which physical table each of N streams carries, what
    is not replicated and why, and each stream's AWS DMS table mapping. Read-only - it never changes anything.
  - Units of work are physical tables. A declarative partitioned table is planned leaf by leaf (the parent holds
    no rows and is in no stream), inheritance children one by one, and an inheritance parent for its own rows
    only (RV(plan.streams.tables.only) is true - read it with C(ONLY)), so no row is ever selected twice.
    Unlogged tables, foreign tables and materialized views are listed in RV(plan.not_replicated) with the reason.
  - Streams are named C(pgshift_<migration_name>_s<N>), N from 1; the name is the publication, replication slot
    and subscription of the stream (engine C(native)) and the DMS task's suffix.
  - Balance - tables are placed largest first by weight (their share of the migrated bytes plus their share of
    the writes per second, ties by name), each in the stream where it adds least to the sum of squares of the
    streams' byte and write shares. A stream already heavy in writes does not get the next hot partition even
    when it is light in bytes, so no single stream carries all the hot partitions. The same input always gives
    the same plan.
  - Stability - a table that already has a stream keeps it - from O(existing) and, for O(engine=native), from
    the source's publications named like the streams (read from C(pg_publication_tables); a partitioned table
    published by its root stands for all its leaves). Only new tables are placed. Fewer streams than already
    exist is an error - a table cannot move to another stream while it replicates.
  - Tables without a primary key and without a usable replica identity stop the plan with an error that names
    them, unless the filters exclude them. With O(engine=dms), tables without a primary key stop it too (DMS
    drops their UPDATE and DELETE) unless O(allow_no_pk_dms=true).
  - DMS table mappings (returned for both engines, for review) select each table with its own C(explicit)
    selection rule - the schema and table names exactly as the catalog holds them (case, spaces, dots and quotes
    kept, no SQL quoting), never a wildcard. AWS DMS documents that an C(explicit) rule selects exactly the one
    object it names; with C(include) or C(exclude) the names are patterns (C(%) any characters, C(_) one
    character, C([..]) a set), so C(shipments_2025_01) would also select C(shipmentsX2025X01) and a C(%) in a
    name would select more than that table. Declarative partitioned
    parents are never selected - AWS DMS fills them through their leaves, and selecting the parent too
    duplicates rows. An inheritance parent is never selected either, because DMS reads a table without C(ONLY),
    which for an inheritance parent returns all its children's rows a second time; each mapping that selects one
    of its children (or, for native plans, the parent itself) excludes it with an C(exclude) rule whose names
    have every C(_), C(%) and C([) written as a one-character set (C([_]), DMS's literal underscore, C([%]),
    C([[])), so that it matches that parent only - C(tracking_events) is written C(tracking[_]events).
  - Include and exclude patterns that match no table are reported as warnings (with the quoted spelling when
    only the letter case differs - unquoted parts are folded to lower case).
    With O(engine=dms), an inheritance parent that holds rows of its own is listed in RV(plan.not_replicated)
    and a warning says that those rows need a separate path (native replication for that table, or moving them
    into a child); a parent without rows of its own (all rows routed to children by a trigger) is in
    RV(plan.parents).
author:
  - pgshift.aurora developers (@pgshift)
extends_documentation_fragment:
  - pgshift.aurora.postgres
  - pgshift.aurora.filters
  - pgshift.aurora.in_process
options:
  migration_name:
    description:
      - The migration's name (the inventory's C(migration_name)) - 1 to 40 characters among lower-case letters,
        digits and underscores. It names the streams.
    type: str
    required: true
  engine:
    description:
      - The replication engine. With C(native) the current assignment is also read from the source's
        publications. With C(dms) inheritance parents are left out of the streams and tables without a primary
        key stop the plan.
    type: str
    default: native
    choices: [native, dms]
  streams:
    description:
      - Number of parallel streams. C(0) means automatic - from the migrated bytes and write rates (about 50 GB
        or 2500 row writes/s per stream, at most 8, never more than tables), and never fewer than the streams that
        already exist.
    type: int
    default: 0
  vcpus:
    description:
      - The vCPUs of the smaller of the two instances (source and target), when known. The automatic count is
        then at most one stream per two vCPUs, since each stream takes a WAL decoder on the source and an apply
        worker on the target; a larger O(streams) is planned as asked, with a warning.
      - Unset, the count is not capped by cores.
    type: int
  existing:
    description:
      - A previous assignment to keep - C(schema.table) to stream name (C(pgshift_<migration_name>_s<N>)), for
        example the RV(plan) of an earlier run turned into a dictionary (its C(qualified) names read back as the
        same tables), or what the DMS tasks carry. A partitioned table stands for all its leaves.
      - Table names are read as PostgreSQL reads them - unquoted parts folded to lower case, a part in double
        quotes taken as it is (C(billing."VatRates"), C('"Shipping Ops"."order"')); no wildcards.
    type: dict
    default: {}
  allow_no_pk_dms:
    description:
      - With O(engine=dms), plan tables without a primary key anyway (they still need a replica identity); AWS
        DMS then ignores their UPDATE and DELETE, so they must be copied again at cutover.
    type: bool
    default: false
  split_bytes:
    description:
      - Tables larger than this (bytes, C(pg_total_relation_size)) with a single integer primary key get a
        RV(plan.streams.tables.split) hint above 1 - the number of key ranges a loader can copy in parallel
        (one range per O(split_bytes), 32 at most).
      - V(0) (the default) never splits - every table is copied whole in one transaction with C(COPY FREEZE).
      - Ranges copy in parallel but cannot use C(COPY FREEZE) (only the transaction that truncates a table may), so
        their rows are not frozen, and building the primary key after the copy, later reads and VACUUM write
        every page again (hint bits; with data checksums to the WAL too). They pay only when the target has
        idle cores for more than one C(COPY) per table; on a 2-core lab a 2.3 GB table loads faster whole.
    type: int
    default: 0
  load_rate_bytes_per_second:
    description:
      - Bytes per second one stream is assumed to load, for RV(plan.streams.estimated_load_seconds). This is an
        estimate only - calibrate it with the initial load benchmark (C(bench/initial_load)) on your own
        hardware and network. The default is 50 MB/s.
    type: int
    default: 50000000
  write_rate_sample_seconds:
    description:
      - When above 0, measure each table's write rate over this many seconds.
      - When below 0, use the average since the statistics were reset.
      - C(0) (automatic) uses that average when the statistics cover an hour or more, and a 3-second sample
        otherwise.
    type: float
    default: 0
  write_counters:
    description:
      - An earlier reading of the source's write counters, as M(pgshift.aurora.pg_logical_prereqs) returns it
        (RV(pgshift.aurora.pg_logical_prereqs#module:write_counters), kept in the assessment's C(assessment.json)).
      - When given, each table's write rate is its writes since that reading divided by the time since it (the
        server's clock), without waiting, and over a window as long as the time since the assessment.
      - Not usable when it is of another database, the statistics were reset or the server restarted since, or
        it is less than a second old; then O(write_rate_sample_seconds) decides, and RV(plan.write_rate_method)
        says why.
    type: dict
requirements:
  - psycopg >= 3.1
notes:
  - Supports check mode (the module only reads). It returns no diff and always reports C(changed=false).
  - The connected user needs to read the catalogs; with C(SELECT) on inheritance parents it checks whether they
    hold rows of their own, otherwise it goes by their statistics.
  - Measured write rates vary between runs, so two first runs may place tables differently; once the streams
    exist (native publications) or are passed as O(existing), tables never move.
seealso:
  - name: AWS DMS selection rules and actions
    description: Selection rules, C(explicit), and the wildcards C(include) and C(exclude) patterns use.
    link: https://docs.aws.amazon.com/dms/latest/userguide/CHAP_Tasks.CustomizingTasks.TableMapping.SelectionTransformation.Selections.html
  - name: Using a PostgreSQL database as an AWS DMS source
    description: Partitioned tables (select the children only) and tables without a primary key.
    link: https://docs.aws.amazon.com/dms/latest/userguide/CHAP_Source.PostgreSQL.html
  - module: pgshift.aurora.pg_logical_prereqs
"""

EXAMPLES = r"""
- name: Plan the streams of the migration (native engine, automatic stream count)
  pgshift.aurora.pg_replication_plan:
    login_host: "{{ db_host }}"
    login_port: "{{ db_port }}"
    login_db: "{{ db_name }}"
    login_user: "{{ db_user }}"
    login_password: "{{ db_password }}"
    migration_name: "{{ migration_name }}"
    streams: 0
    exclude_tables:
      - public.session_cache
  register: replication_plan

- name: Plan four DMS tasks, keeping the tables the running tasks already carry
  pgshift.aurora.pg_replication_plan:
    login_host: mydb.abcdefgh.eu-west-1.rds.amazonaws.com
    login_db: app
    login_user: pgshift
    login_password: "{{ vault_pgshift_password }}"
    ssl_mode: verify-full
    ca_cert: /etc/ssl/rds/global-bundle.pem
    migration_name: orders
    engine: dms
    streams: 4
    existing:
      public.shipments: pgshift_orders_s1
      billing."VatRates": pgshift_orders_s2
  register: dms_plan

- name: Show the first task's table mapping
  ansible.builtin.debug:
    msg: "{{ dms_plan.plan.streams[0].table_mapping | to_json }}"
"""

RETURN = r"""
plan:
  description: The replication plan.
  returned: always
  type: dict
  contains:
    migration_name:
      description: The migration's name.
      type: str
      returned: always
      sample: shipping
    engine:
      description: The engine planned for.
      type: str
      returned: always
      sample: native
    stream_count:
      description: Number of streams planned.
      type: int
      returned: always
      sample: 2
    suggested_streams:
      description: The automatic stream count from sizes and write rates, at most RV(plan.stream_cap).
      type: int
      returned: always
      sample: 1
    vcpus:
      description: The O(vcpus) given (null when not).
      type: int
      returned: always
      sample: 4
    stream_cap:
      description: The most streams O(vcpus) carry (one per two vCPUs, at least one); null without O(vcpus).
      type: int
      returned: always
      sample: 2
    existing_streams:
      description: Numbers of the streams that already existed (publications or O(existing)).
      type: list
      elements: int
      returned: always
      sample: [1, 2]
    streams:
      description: One entry per stream, in stream order.
      type: list
      elements: dict
      returned: always
      contains:
        name:
          description: The stream's name - its publication, slot and subscription (native), the DMS task's suffix.
          type: str
          returned: always
          sample: pgshift_shipping_s1
        number:
          description: N in the name.
          type: int
          returned: always
          sample: 1
        dms_task_identifier:
          description: The name with hyphens instead of underscores (DMS task identifiers allow no underscore).
          type: str
          returned: always
          sample: pgshift-shipping-s1
        tables:
          description: The physical tables of the stream, by qualified name.
          type: list
          elements: dict
          returned: always
          contains:
            schema:
              description: Schema name, as in the catalog.
              type: str
              returned: always
            name:
              description: Table name, as in the catalog (case kept, not quoted).
              type: str
              returned: always
            qualified:
              description: C(schema.table), quoted where needed (C(billing."VatRates")).
              type: str
              returned: always
            kind:
              description: C(table), C(partition), C(inheritance_parent) or C(inheritance_child).
              type: str
              returned: always
            root:
              description: The root of its partition or inheritance tree (itself for a plain table).
              type: str
              returned: always
            only:
              description:
                - True for a table with inheritance children - only its own rows belong to this unit, so read it
                  with C(ONLY) (C(COPY (SELECT * FROM ONLY ...)), C(FOR TABLE ONLY ...) in a publication).
              type: bool
              returned: always
            bytes:
              description: C(pg_total_relation_size), indexes and TOAST included.
              type: int
              returned: always
            rows:
              description: Estimated rows (C(reltuples), else the statistics' live rows).
              type: int
              returned: always
            writes_per_second:
              description: Inserts, updates and deletes per second (see RV(plan.write_rate_method)).
              type: float
              returned: always
            primary_key:
              description: Primary key columns in key order; empty without a primary key.
              type: list
              elements: str
              returned: always
            split_key:
              description: The primary key column when it is a single integer column (ranges can split on it), else null.
              type: str
              returned: always
            split:
              description:
                - Number of key ranges a loader can copy in parallel - above 1 only for tables larger than
                  O(split_bytes) with a RV(plan.streams.tables.split_key).
              type: int
              returned: always
            placed:
              description: C(existing) (kept in the stream that already had it) or C(new) (placed by this plan).
              type: str
              returned: always
        table_count:
          description: Number of tables.
          type: int
          returned: always
        bytes:
          description: Bytes of its tables.
          type: int
          returned: always
        rows:
          description: Estimated rows of its tables.
          type: int
          returned: always
        writes_per_second:
          description: Writes per second of its tables.
          type: float
          returned: always
        bytes_share:
          description: Its share of the migrated bytes (0 to 1).
          type: float
          returned: always
        writes_share:
          description: Its share of the writes per second (0 to 1).
          type: float
          returned: always
        estimated_load_seconds:
          description:
            - Initial load time at O(load_rate_bytes_per_second). An estimate - calibrate the rate with the
              benchmark.
          type: float
          returned: always
        table_mapping:
          description:
            - The stream's AWS DMS table mapping document - an C(explicit) selection rule per table, and an
              C(exclude) rule per inheritance parent of its tables.
          type: dict
          returned: always
    not_replicated:
      description: In-scope relations no stream carries, each with C(qualified), C(kind) and C(reason).
      type: list
      elements: dict
      returned: always
    parents:
      description:
        - Relations with no rows of their own here, covered by their partitions or children (C(covered_by)) -
          partitioned tables, and with O(engine=dms) inheritance parents without rows of their own.
      type: list
      elements: dict
      returned: always
    excluded:
      description: Relations the include/exclude filters leave out (C(qualified), C(kind)).
      type: list
      elements: dict
      returned: always
    warnings:
      description: What a DBA should read before going on (also emitted as module warnings).
      type: list
      elements: str
      returned: always
    totals:
      description:
        - C(streams), C(tables), C(bytes), C(rows), C(writes_per_second), C(estimated_load_seconds) (of the
          slowest stream, streams loading in parallel), C(kept), C(placed), C(not_replicated), C(parents),
          C(excluded).
      type: dict
      returned: always
    write_rate_method:
      description: How the write rates were measured.
      type: str
      returned: always
      sample: sampled over 3s
    split_bytes:
      description: The O(split_bytes) used.
      type: int
      returned: always
    load_rate_bytes_per_second:
      description: The O(load_rate_bytes_per_second) used.
      type: int
      returned: always
  sample:
    migration_name: shipping
    engine: native
    stream_count: 2
    streams:
      - name: pgshift_shipping_s1
        number: 1
        dms_task_identifier: pgshift-shipping-s1
        table_count: 1
        bytes: 2981888
        rows: 24000
        writes_per_second: 3.1
        estimated_load_seconds: 0.1
        tables:
          - schema: public
            name: tracking_events_2025_01
            qualified: public.tracking_events_2025_01
            kind: inheritance_child
            root: public.tracking_events
            only: false
            bytes: 2981888
            rows: 24000
            writes_per_second: 3.1
            primary_key: [id]
            split_key: id
            split: 1
            placed: new
        table_mapping:
          rules:
            - rule-type: selection
              rule-id: "1"
              rule-name: "1"
              object-locator: {schema-name: public, table-name: tracking_events_2025_01}
              rule-action: explicit
            - rule-type: selection
              rule-id: "2"
              rule-name: "2"
              object-locator: {schema-name: public, table-name: "tracking[_]events"}
              rule-action: exclude
"""

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible_collections.pgshift.aurora.plugins.module_utils._pg.connection import PSYCOPG_IMPORT_ERROR
from ansible_collections.pgshift.aurora.plugins.module_utils.runners import plan as runner


def main():
    module = AnsibleModule(supports_check_mode=True, **runner.module_spec())
    if PSYCOPG_IMPORT_ERROR:
        module.fail_json(msg=missing_required_lib("psycopg"), exception=PSYCOPG_IMPORT_ERROR)
    runner.run_module(module)


if __name__ == "__main__":
    main()
