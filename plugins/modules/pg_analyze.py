#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: pgshift.aurora contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: pg_analyze
short_description: Planner statistics for every migrated table on the target (parallel ANALYZE, or the source's imported)
version_added: 0.3.0
description:
  - Logical replication and COPY write rows, not statistics, and autovacuum never analyses a partitioned parent
    (nor a table with fewer than 50 changed rows) - after the switch the application would meet tables the
    planner has never measured. This module makes sure it does not.
  - Connects to the TARGET (the O(login_host) options) and reads every table in scope - ordinary tables,
    partition leaves, partitioned parents (sub-partitioned ones included), inheritance parents and children; not
    foreign tables nor materialized views, nor the C(pgshift) schema - with what the planner has for it -
    C(pg_stats) rows (the inherited ones for a parent), C(pg_class.reltuples), C(last_analyze) and
    C(last_autoanalyze).
  - A table needs statistics when it has none (C(missing) - never analysed nor imported) or when it was analysed
    while empty and rows were written since (C(stale)); with O(force) every table in scope does.
  - C(analyze) - C(ANALYZE) over O(parallel) connections, the biggest table first; a parent after its
    partitions or children. On PostgreSQL 18 and later a parent is analysed with C(ANALYZE ONLY) (its inherited
    statistics, sampled from its tree, without analysing every partition again); before 18, ANALYZE of a
    partitioned table also analyses its partitions, so those are not analysed on their own (RV(tables)
    C(covered)).
  - C(import) - where the target runs PostgreSQL 18 or later and a pg_dump of 18 or later is found, the
    statistics of the tables that need them are dumped from the SOURCE (C(pg_dump --statistics-only), the
    O(source_login_host) options) and restored into the target (C(pg_restore)); what is still missing afterwards
    (a table the source never analysed, an empty one) is analysed. C(auto) imports when it can, else analyses.
  - A non-superuser may gather statistics of the tables owned by a role it is a member of, of every table of a
    database it owns, and on PostgreSQL 17 and later of the tables it has C(MAINTAIN) on (C(pg_maintain)). The
    others are listed in RV(not_analyzed) with why and what to grant, and a warning names those that hold rows.
  - Writes a progress file (tables done and total, tables per second, ETA, the tables being analysed) for
    M(pgshift.aurora.job_progress) while it runs in the background.
author:
  - pgshift.aurora developers (@pgshift)
extends_documentation_fragment:
  - pgshift.aurora.postgres
  - pgshift.aurora.postgres_source
  - pgshift.aurora.filters
  - pgshift.aurora.in_process
options:
  method:
    description:
      - C(analyze) runs ANALYZE; C(import) restores the source's statistics (then analyses what is still
        missing) and fails when it cannot run; C(auto) imports where possible (a PostgreSQL 18+ target, pg_dump
        18+, O(source_login_host) given), else analyses.
      - A failed dump falls back to ANALYZE with a warning.
    type: str
    default: auto
    choices: [auto, analyze, import]
  parallel:
    description: Connections running ANALYZE at the same time.
    type: int
    default: 2
  force:
    description: Gather statistics for every table in scope, also those that have them.
    type: bool
    default: false
  pg_bin_dir:
    description:
      - Directory of the pg_dump and pg_restore for O(method=import). By default those of the target's major
        version (at least 18) are searched in the usual places.
    type: path
  progress_file:
    description:
      - A JSON file rewritten about every second with C(unit=tables), C(rows) (tables done), C(rows_expected),
        C(rows_per_second), C(eta_seconds), C(percent) and C(phase) (the tables being analysed), for
        M(pgshift.aurora.job_progress).
    type: path
  wait_for_jobs:
    description:
      - Job files of background tasks (the C(results_file) of tasks run with C(async) and C(poll=0)) to wait for
        before reading anything - the initial loads and the post stage of the schema copy, so that the module
        can be started with them and gather statistics as soon as the tables are loaded and their indexes built.
      - Checked five times a second; a job that failed stops the module with that job's message, before it reads
        or changes anything.
      - The files are read on the host the module runs on, where the jobs run.
    type: list
    elements: path
    default: []
  wait_timeout:
    description: Seconds to wait at most for O(wait_for_jobs).
    type: int
    default: 86400
notes:
  - Check mode reads only and lists what would be imported or analysed (and the statements, in RV(queries)).
  - A table whose pages hold only dead rows counts as not empty until vacuumed.
  - ANALYZE takes a C(SHARE UPDATE EXCLUSIVE) lock - it waits for a running VACUUM, index build or ALTER TABLE of
    the same table; it never blocks reads, writes or the replication's apply.
requirements:
  - psycopg >= 3.1
  - pg_dump and pg_restore 18 or later for O(method=import)
seealso:
  - module: pgshift.aurora.job_progress
  - module: pgshift.aurora.aurora_cutover
"""

EXAMPLES = r"""
- name: Analyse every migrated table that has no statistics, 4 at a time, in the background
  pgshift.aurora.pg_analyze:
    login_host: aurora.cluster-abc.eu-west-1.rds.amazonaws.com
    login_db: app
    login_user: dbadmin
    login_password: "{{ target_admin_password }}"
    ssl_mode: verify-full
    ca_cert: /etc/ssl/rds-global-bundle.pem
    parallel: 4
    method: analyze
    progress_file: reports/analyze-progress.json
  async: 86400
  poll: 0
  register: analyze_job

- name: Wait for it, printing tables done, rate and ETA
  pgshift.aurora.job_progress:
    job: "{{ analyze_job }}"
    progress_file: reports/analyze-progress.json
    label: statistics

- name: Import the source's statistics (PostgreSQL 18 target), analyse what is still missing
  pgshift.aurora.pg_analyze:
    login_host: aurora.internal
    login_db: app
    login_user: dbadmin
    login_password: "{{ target_admin_password }}"
    source_login_host: rds.internal
    source_login_db: app
    source_login_user: dbadmin
    source_login_password: "{{ source_admin_password }}"
    source_ssl_mode: verify-full
    source_ca_cert: /etc/ssl/rds-global-bundle.pem
    method: import
    include_schemas: [public, "Shipping Ops"]
"""

RETURN = r"""
method:
  description: How statistics got there - C(analyze) or C(import) (followed by ANALYZE of what was still missing).
  returned: success
  type: str
  sample: import
method_note:
  description: Why that method (for C(auto), why not import).
  returned: success
  type: str
  sample: "analyze (import not possible: the target runs PostgreSQL 16 (import needs 18 or later))"
tables:
  description:
    - One entry per table that needed statistics, in the order analysed - C(table) (display form), C(schema),
      C(name), C(kind), C(action) (C(analyzed), C(imported), C(covered) - analysed by its partitioned parent's
      ANALYZE, C(failed), in check mode C(would_analyze) or C(would_import)), C(reason) (why it needed them),
      C(seconds), C(bytes) (its rows' size; a parent's whole tree), C(statement), C(only), C(covers), C(error).
  returned: success
  type: list
  elements: dict
  sample:
    - {table: public.parcels, schema: public, name: parcels, kind: table, action: analyzed,
       reason: never analysed, seconds: 0.412, bytes: 73728000, statement: ANALYZE public.parcels}
    - {table: public.shipments, schema: public, name: shipments, kind: partitioned, action: analyzed,
       reason: never analysed, seconds: 0.087, only: true, statement: ANALYZE ONLY public.shipments}
not_analyzed:
  description: Tables that need statistics this login may not gather - C(table), C(schema), C(name), C(owner),
    C(reason) and C(why) (what to grant).
  returned: success
  type: list
  elements: dict
summary:
  description:
    - C(in_scope), C(had_statistics), C(needed), C(analyzed), C(imported), C(covered), C(failed), C(not_allowed),
      C(would_analyze), C(would_import), C(method), C(parallel), C(seconds) (the whole run),
      C(import_seconds), C(analyze_seconds_total) (summed over the tables) and C(tables_per_second).
  returned: success
  type: dict
queries:
  description: The ANALYZE statements run (in check mode, those that would run).
  returned: success
  type: list
  elements: str
commands:
  description: The pg_dump and pg_restore commands run (no password - it is passed in a temporary pgpass file).
  returned: success
  type: list
  elements: str
tools:
  description: With an import, the C(bin_dir) and C(pg_dump_version) used.
  returned: success
  type: dict
versions:
  description: The target's C(server_version_num) (C(target)).
  returned: success
  type: dict
waited_for_jobs_seconds:
  description: How long it waited for O(wait_for_jobs) (C(null) without them); RV(summary) C(seconds) counts from
    the end of that wait.
  returned: success
  type: float
login:
  description: The login the statistics were gathered as.
  returned: success
  type: str
"""


from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible_collections.pgshift.aurora.plugins.module_utils._pg.connection import PSYCOPG_IMPORT_ERROR
from ansible_collections.pgshift.aurora.plugins.module_utils.runners import analyze as runner


def main():
    module = AnsibleModule(supports_check_mode=True, **runner.module_spec())
    if PSYCOPG_IMPORT_ERROR:
        module.fail_json(msg=missing_required_lib("psycopg"), exception=PSYCOPG_IMPORT_ERROR)
    runner.run_module(module)


if __name__ == "__main__":
    main()
