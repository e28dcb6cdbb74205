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

import time
import traceback

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

try:
    from psycopg import errors as pg_errors
except ImportError:  # reported in main() through PSYCOPG_IMPORT_ERROR
    pg_errors = None

from ansible_collections.pgshift.aurora.plugins.module_utils import native, progress, replication_conn
from ansible_collections.pgshift.aurora.plugins.module_utils._pg import loader, replication
from ansible_collections.pgshift.aurora.plugins.module_utils._pg.connection import (
    PSYCOPG_IMPORT_ERROR, PgConnectError, connect, postgres_argument_spec, scrub)

TARGET = "target_"
# copy_relay=auto: units estimated at least this big go through psql (two process starts and connections
# cost about 0.1 s: worth it from a few MB on, when the relay's CPU saving outweighs them).
PSQL_RELAY_MIN_BYTES = 16 * 1024 * 1024


def argument_spec():
    spec = postgres_argument_spec()
    spec.update(native.prefixed_spec(postgres_argument_spec(), TARGET))
    spec.update(
        stream=dict(type="dict", required=True),
        state=dict(type="str", default="present", choices=["present", "enabled", "disabled", "absent"]),
        enable=dict(type="bool", default=True),
        copy=dict(type="bool", default=True),
        parallel=dict(type="int", default=2),
        slot_release_timeout=dict(type="int", default=30),
        progress_file=dict(type="path"),
        keys_after_copy=dict(type="bool", default=True),
        keys_after_copy_min_bytes=dict(type="int", default=64 * 1024 * 1024, no_log=False),
        maintenance_work_mem=dict(type="str", default="256MB"),
        copy_relay=dict(type="str", default="auto", choices=["auto", "psql", "python"]),
        psql_path=dict(type="path"),
        source_replication_user=dict(type="str"),
        source_replication_password=dict(type="str", no_log=True),
        source_host=dict(type="str"),
        source_port=dict(type="int"),
        source_db=dict(type="str"),
        source_ssl_mode=dict(type="str", choices=["disable", "allow", "prefer", "require", "verify-ca",
                                                  "verify-full"]),
        source_ssl_root_cert=dict(type="str"),
    )
    return spec


def target_params(p):
    return native.unprefixed(p, postgres_argument_spec(), TARGET)


class Stream:
    """Wiring: observe both sides, decide (native.decide), act, report."""

    def __init__(self, module):
        self.module = module
        self.p = module.params
        self.secrets = [self.p.get("login_password"), self.p.get("target_login_password"),
                        self.p.get("source_replication_password")]
        self.queries = []
        self.warnings = []
        self.src = self.tgt = None
        self.stream = None
        self.name = None
        self.load = {}
        self.slot_info = {}
        self.progress = None  # the removal's progress file (state=absent with progress_file)
        self.removal_steps, self.removal_started = [], time.monotonic()

    # --- helpers -----------------------------------------------------------------------------

    def render(self, stmt, conn):
        return stmt if isinstance(stmt, str) else stmt.as_string(conn)

    def run_sql(self, conn, stmt, display=None, params=None):
        self.queries.append(display if display is not None else self.render(stmt, conn))
        if not self.module.check_mode:
            return conn.execute(stmt, params)
        return None

    def fail(self, msg, **extra):
        self.module.fail_json(msg=scrub(msg, self.secrets), queries=self.queries, **extra)

    @property
    def check(self):
        return self.module.check_mode

    # --- observation -------------------------------------------------------------------------

    def observe(self):
        name = self.name
        src, tgt = self.src, self.tgt
        obs = dict(database=src.execute("SELECT current_database()").fetchone()[0])
        pub = src.execute("SELECT puballtables FROM pg_publication WHERE pubname = %s", (name,)).fetchone()
        if pub is not None:
            if pub[0]:
                self.fail("publication %s exists on the source FOR ALL TABLES: it was not made by pgshift; drop it "
                          "or pick another migration name" % name)
            rows = src.execute(
                "SELECT n.nspname, c.relname FROM pg_publication p JOIN pg_publication_rel r ON r.prpubid = p.oid "
                "JOIN pg_class c ON c.oid = r.prrelid JOIN pg_namespace n ON n.oid = c.relnamespace "
                "WHERE p.pubname = %s ORDER BY 1, 2", (name,)).fetchall()
            obs["publication"] = dict(tables=[dict(schema=r[0], name=r[1]) for r in rows])
        else:
            obs["publication"] = None
        slot = src.execute(
            "SELECT plugin, database, confirmed_flush_lsn::text, active_pid, slot_type, "
            "pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn)::bigint FROM pg_replication_slots "
            "WHERE slot_name = %s", (name,)).fetchone()
        obs["slot"] = None if slot is None else dict(plugin=slot[0], database=slot[1], confirmed_flush_lsn=slot[2],
                                                     active_pid=slot[3], slot_type=slot[4], retained_bytes=slot[5])
        app = native.load_application_name(name)
        obs["loading_pids"] = [r[0] for r in src.execute(
            "SELECT pid FROM pg_stat_activity WHERE application_name = %s AND pid <> pg_backend_pid() ORDER BY pid",
            (app,)).fetchall()]
        obs["target_loading_pids"] = [r[0] for r in tgt.execute(
            "SELECT pid FROM pg_stat_activity WHERE application_name = %s AND pid <> pg_backend_pid() ORDER BY pid",
            (app,)).fetchall()]
        sub = tgt.execute(
            "SELECT subenabled, subslotname FROM pg_subscription WHERE subname = %s AND subdbid = "
            "(SELECT oid FROM pg_database WHERE datname = current_database())", (name,)).fetchone()
        obs["subscription"] = None if sub is None else dict(enabled=sub[0], slot_name=sub[1])
        obs["progress"] = loader.read_progress(tgt, name)
        return obs

    def check_tables(self, tables):
        """Every table exists on both sides with the columns to copy; returns (source columns, plan by table)."""
        src_cols = loader.columns(self.src, tables)
        tgt_cols = loader.columns(self.tgt, tables)
        problems = []
        missing_src = [t["qualified"] for t in tables if (t["schema"], t["name"]) not in src_cols]
        missing_tgt = [t["qualified"] for t in tables if (t["schema"], t["name"]) not in tgt_cols]
        if missing_src:
            problems.append("missing on the source: %s" % ", ".join(missing_src))
        if missing_tgt:
            problems.append("missing on the target: %s (copy the schema first: pgshift.aurora.copy_schema)" %
                            ", ".join(missing_tgt))
        inherit = native.inheritance_problems(tables, loader.tables_with_children(self.src, tables))
        if inherit:
            problems.append(inherit)
        plan = {}
        for t in tables:
            ident = (t["schema"], t["name"])
            if ident not in src_cols or ident not in tgt_cols:
                continue
            copied = [c for c in src_cols[ident] if not c["generated"]]
            problems.extend(native.column_problems(t["qualified"], copied, tgt_cols[ident]))
            plan[ident] = dict(columns=[c["name"] for c in copied], format=native.copy_format(copied), meta=copied)
        if problems:
            self.fail("stream %s cannot be replicated, nothing was changed: %s" % (self.name, "; ".join(problems)))
        return src_cols, plan

    # --- present -----------------------------------------------------------------------------

    def desired(self):
        state, enable = self.p["state"], self.p["enable"]
        if state == "enabled":
            create_enabled, enforce = True, True
        elif state == "disabled":
            create_enabled, enforce = False, False
        else:
            create_enabled, enforce = enable, (True if enable else None)
        return dict(name=self.name, tables=self.stream["tables"], copy=self.p["copy"], enabled=enforce,
                    create_enabled=create_enabled)

    def present(self):
        desired = self.desired()
        obs = self.observe()
        src_cols, plan = self.check_tables(desired["tables"])
        try:
            decision = native.decide(obs, desired)
        except native.StreamError as exc:
            self.fail(str(exc))
        before = self.summary(obs)
        pending = [] if self.check or "copy" in decision["steps"] else loader.deferred_keys(self.tgt, self.name)
        if pending and (obs["loading_pids"] or obs["target_loading_pids"]):
            self.fail("stream %s: a load of this stream is still running (sessions %s); wait for it to end" % (
                self.name, ", ".join(str(p) for p in obs["loading_pids"] + obs["target_loading_pids"])))
        if pending:
            # an earlier run copied the rows and stopped before building these keys: build them first, the
            # subscription must not apply changes to a table without its key
            self.load = dict(keys=self.build_keys())
        for step in decision["steps"]:
            getattr(self, "step_" + step)(decision, desired, obs, src_cols, plan)
        after = self.summary(self.observe()) if not self.check else self.predicted(before, decision, desired)
        changed = bool(decision["steps"]) or bool(pending)
        result = dict(
            changed=changed, stream=self.name, steps=decision["steps"],
            restarted=bool(decision["restart"]), restart_reason=decision["restart"] or "",
            publication=dict(tables_added=[t["qualified"] for t in decision["adds"]],
                             tables_removed=[t["qualified"] for t in decision["drops"]]),
            slot=dict(name=self.name, created=bool(self.slot_info), **self.slot_info),
            load=self.load, subscription=dict(name=self.name, exists=after["subscription"],
                                              enabled=after["subscription_enabled"]),
            queries=self.queries)
        if self.module._diff and changed:
            result["diff"] = dict(before=before, after=after)
        return result

    def summary(self, obs):
        sub = obs.get("subscription")
        return dict(publication=[native.qualified(t["schema"], t["name"]) for t in (obs["publication"] or {}).get(
            "tables", [])] if obs.get("publication") else None,
            slot=obs.get("slot") is not None, subscription=sub is not None,
            subscription_enabled=bool(sub and sub.get("enabled")))

    def predicted(self, before, decision, desired):
        steps = decision["steps"]
        enabled = before["subscription_enabled"]
        if "subscription_create" in steps:
            enabled = desired["create_enabled"]
        if "subscription_enable" in steps:
            enabled = True
        if "subscription_disable" in steps:
            enabled = False
        return dict(publication=[t["qualified"] for t in desired["tables"]], slot=True, subscription=True,
                    subscription_enabled=enabled)

    def step_publication_create(self, decision, desired, obs, src_cols, plan):
        self.run_sql(self.src, replication.publication_sql(self.name, desired["tables"]))

    def step_publication_drop_tables(self, decision, desired, obs, src_cols, plan):
        self.run_sql(self.src, native.alter_publication(self.name, "DROP", decision["drops"]))

    def step_publication_add_tables(self, decision, desired, obs, src_cols, plan):
        self.run_sql(self.src, native.alter_publication(self.name, "ADD", decision["adds"]))

    def step_slot_drop(self, decision, desired, obs, src_cols, plan):
        self.drop_slot()

    def step_slot_create(self, decision, desired, obs, src_cols, plan):
        command = native.create_slot_command(self.name, self.src.info.server_version, export=False)
        self.queries.append(command)
        if not self.check:
            conn, lsn, snapshot = loader.create_slot(self.source_params(), self.name, self.src.info.server_version,
                                                     False, native.load_application_name(self.name))
            self.slot_info = dict(consistent_lsn=lsn)

    def step_slot_create_export(self, decision, desired, obs, src_cols, plan):
        # the slot is created with the copy (step_copy): its snapshot lives as long as its session
        self.queries.append(native.create_slot_command(self.name, self.src.info.server_version, export=True))

    def copy_queries(self, tables, plan, units=None):
        """One line per table: its COPY out of the source and into the target (and its key ranges)."""
        counts = {}
        for unit in units or []:
            counts[(unit["schema"], unit["name"])] = unit["count"]
        for t in tables:
            ident = (t["schema"], t["name"])
            unit = native.work_units([t], {})[0]
            cols, fmt = plan[ident]["columns"], plan[ident]["format"]
            ranges = counts.get(ident, t["split"] if units is None else 1)
            self.queries.append("%s -> %s%s" % (
                native.copy_out(unit, cols, fmt).as_string(self.src),
                native.copy_in(unit, cols, fmt, freeze=ranges == 1).as_string(self.tgt),
                " (in %d ranges of %s)" % (ranges, t["split_key"]) if ranges > 1 else ""))

    def step_copy(self, decision, desired, obs, src_cols, plan):
        tables = desired["tables"]
        self.queries.extend(loader.PROGRESS_DDL)
        if self.check:
            self.copy_queries(tables, plan)
            self.drop_keys(tables)
            return
        app = native.load_application_name(self.name)
        progress_conn = loader.connect_as(self.target_params(), app)
        progress = loader.Progress(progress_conn, self.name)
        exporter = None
        try:
            progress.ensure()
            exporter, lsn, snapshot = loader.create_slot(self.source_params(), self.name,
                                                         self.src.info.server_version, True, app)
            self.slot_info = dict(consistent_lsn=lsn)
            units = self.plan_units(tables, src_cols, snapshot)
            split = native.split_tables(units)
            if split:
                self.run_sql(self.tgt, native.truncate(split))
            self.drop_keys(tables)
            progress.reset(units, lsn)
            self.copy_queries(tables, plan, units)
            started = time.time()
            psql = self.relay_psql()
            engine = loader.Loader(self.source_params(), self.target_params(), snapshot, units, plan,
                                   self.p["parallel"], progress, app, secrets=self.secrets, psql=psql,
                                   psql_min_bytes=PSQL_RELAY_MIN_BYTES if self.p["copy_relay"] == "auto" else 0)
            results, warnings = engine.run()
            self.warnings.extend(warnings)
            copied = time.time()
            keys = self.build_keys()
            self.load = self.load_result(units, results, copied - started, engine.workers)
            self.load.update(keys=keys, keys_seconds=round(time.time() - copied, 3),
                             relay=sorted(set(r["relay"] for r in results)))
        except loader.LoadError as exc:
            self.abandon_slot(exporter)
            exporter = None
            self.fail("initial load of stream %s failed: %s. Its slot was dropped; fix the cause and run again (the "
                      "copy starts over)" % (self.name, exc), slot=dict(name=self.name, created=False))
        except Exception:
            self.abandon_slot(exporter)
            exporter = None
            raise
        finally:
            if exporter is not None:
                exporter.close()
            progress_conn.close()

    def relay_psql(self):
        """The psql of the relay, or None for the python relay (copy_relay)."""
        if self.p["copy_relay"] == "python":
            return None
        found = loader.find_psql(self.p["psql_path"])
        if found is None and self.p["copy_relay"] == "psql":
            self.fail("copy_relay is psql but no psql was found (psql_path %s, PATH, /usr/lib/postgresql/*/bin): "
                      "install the PostgreSQL client or use copy_relay: python" % (self.p["psql_path"] or "unset"))
        return found

    def drop_keys(self, tables):
        """Drop (recording them) the keys built after the copy; in check mode, list the statements."""
        if not self.p["keys_after_copy"]:
            return
        big = [t for t in tables if (t["bytes"] or 0) >= self.p["keys_after_copy_min_bytes"]]
        if not big:
            return  # (pg_get_indexdef waits for a lock on its table: read only the tables concerned)
        keys, kept = native.deferrable_keys(big, loader.target_keys(self.tgt, big), self.p["keys_after_copy_min_bytes"])
        for table, name, reason in kept:
            self.warnings.append("%s: key %s is kept during the copy (%s)" % (table, name, reason))
        for key in keys:
            self.queries.append(native.drop_key(key).as_string(self.tgt))
            for stmt in native.key_statements(key):
                self.queries.append("(after the copy) " + stmt.as_string(self.tgt))
        if keys and not self.check:
            loader.drop_keys(self.tgt, self.name, keys)

    def build_keys(self):
        """Build the keys this stream dropped for its copy (also those of an interrupted earlier run)."""
        keys = loader.deferred_keys(self.tgt, self.name)
        if not keys or self.check:
            return []
        try:
            return loader.build_keys(self.target_params(), self.name, keys, self.p["parallel"],
                                     native.load_application_name(self.name), self.p["maintenance_work_mem"],
                                     secrets=self.secrets)
        except loader.LoadError as exc:
            self.fail("stream %s: the copy is complete but a key could not be built: %s. Fix the cause and run "
                      "again: the key is still recorded in pgshift.deferred_keys and is built on the next run"
                      % (self.name, exc))

    def abandon_slot(self, exporter):
        """A failed load leaves no slot behind (it would retain WAL until the next run)."""
        if exporter is not None:
            try:
                exporter.close()
            except Exception:  # the session may be gone already
                pass
        try:
            self.drop_slot()
        except Exception as exc:  # report the load's error, not this one
            self.warnings.append("could not drop slot %s after the failed load: %s" % (self.name, exc))

    def plan_units(self, tables, src_cols, snapshot):
        """Work units under the snapshot: key bounds of the tables copied in ranges."""
        ranges = {}
        splitting = [t for t in tables if t["split"] > 1]
        if not splitting:
            return native.work_units(tables, ranges)
        conn = loader.connect_as(self.source_params(), native.load_application_name(self.name))
        try:
            loader.begin_snapshot(conn, snapshot)
            for t in splitting:
                types = dict((c["name"], c["type_name"]) for c in src_cols.get((t["schema"], t["name"]), []))
                problem = native.split_key_problem(t, types.get(t["split_key"]))
                if problem:
                    self.warnings.append(problem)
                    continue
                lowest, highest = loader.key_bounds(conn, t)
                ranges[(t["schema"], t["name"])] = native.split_ranges(lowest, highest, t["split"])
            conn.execute("COMMIT")
        finally:
            conn.close()
        return native.work_units(tables, ranges)

    @staticmethod
    def load_result(units, results, seconds, workers):
        by_table = {}
        for r in results:
            entry = by_table.setdefault(r["table"], dict(table=r["table"], units=0, rows=0, bytes=0, seconds=0.0,
                                                         format=r["format"]))
            entry["units"] += 1
            entry["rows"] += r["rows"]
            entry["bytes"] += r["bytes"]
            entry["seconds"] = round(entry["seconds"] + r["seconds"], 3)
            if r["format"] != "binary":
                entry["format"] = r["format"]
        rows = sum(r["rows"] for r in results)
        nbytes = sum(r["bytes"] for r in results)
        return dict(units=len(units), rows=rows, bytes=nbytes, seconds=round(seconds, 3), workers=workers,
                    rows_per_second=round(rows / seconds, 1) if seconds > 0 else None,
                    bytes_per_second=round(nbytes / seconds, 1) if seconds > 0 else None,
                    tables=[by_table[k] for k in sorted(by_table)])

    def subscription_conninfo(self, mask):
        p = self.p
        user = p["source_replication_user"] or p["login_user"]
        password = p["source_replication_password"]
        if password is None and not p["source_replication_user"]:
            password = p["login_password"]
        return replication_conn.subscription_conninfo(
            p["source_host"] or p["login_host"], p["source_port"] or p["login_port"], p["source_db"] or p["login_db"],
            user, password, p["source_ssl_mode"] or p["ssl_mode"], p["source_ssl_root_cert"], mask=mask)

    def step_subscription_create(self, decision, desired, obs, src_cols, plan):
        version = self.tgt.info.server_version
        display = replication.subscription_sql(self.name, self.subscription_conninfo(True), version,
                                               enabled=desired["create_enabled"], disable_on_error=False).as_string(self.tgt)
        stmt = replication.subscription_sql(self.name, self.subscription_conninfo(False), version,
                                            enabled=desired["create_enabled"], disable_on_error=False)
        try:
            self.run_sql(self.tgt, stmt, display=display)
        except pg_errors.InsufficientPrivilege as exc:
            self.fail("the target user %s may not create subscription %s (%s): use a superuser (rds_superuser on "
                      "Aurora) or, from PostgreSQL 16, grant it pg_create_subscription and CREATE on the database. "
                      "The slot and the copied data are kept: run again with a user allowed to" % (
                          self.p["target_login_user"], self.name, str(exc).strip()))

    def step_truncate_added(self, decision, desired, obs, src_cols, plan):
        self.run_sql(self.tgt, native.truncate(decision["adds"]))

    def step_subscription_refresh(self, decision, desired, obs, src_cols, plan):
        self.run_sql(self.tgt, native.refresh_subscription(self.name, desired["copy"] and bool(decision["adds"])))

    def step_subscription_enable(self, decision, desired, obs, src_cols, plan):
        self.run_sql(self.tgt, native.alter_subscription(self.name, "ENABLE"))

    def step_subscription_disable(self, decision, desired, obs, src_cols, plan):
        self.run_sql(self.tgt, native.alter_subscription(self.name, "DISABLE"))

    # --- absent ------------------------------------------------------------------------------

    def removal(self, done, doing, retained_bytes=None, wait_left=None, force=True):
        """Rewrite the progress file of the removal (progress.steps_progress)."""
        if self.progress is not None:
            self.progress.write(progress.steps_progress(len(self.removal_steps), done,
                                                        time.monotonic() - self.removal_started, doing,
                                                        retained_bytes, wait_left), force=force)

    def absent(self):
        obs = self.observe()
        steps = native.absent_steps(obs)
        before = self.summary(obs)
        self.removal_steps, self.removal_started = steps, time.monotonic()
        if not self.check and self.p["progress_file"]:
            self.progress = progress.ProgressFile(self.p["progress_file"])
        for done, step in enumerate(steps):
            self.removal(done, "%s of %s" % (step.replace("_", " "), self.name),
                         (obs.get("slot") or {}).get("retained_bytes") if step == "slot_drop" else None)
            if step == "subscription_disable":
                self.run_sql(self.tgt, native.alter_subscription(self.name, "DISABLE"))
            elif step == "subscription_detach":
                self.run_sql(self.tgt, native.alter_subscription(self.name, "SET (slot_name = NONE)"))
            elif step == "subscription_drop":
                self.run_sql(self.tgt, replication.drop_subscription_sql(self.name))
            elif step == "load_stop":
                self.stop_load()
            elif step == "slot_drop":
                self.drop_slot()
            elif step == "publication_drop":
                self.run_sql(self.src, replication.drop_publication_sql(self.name))
            elif step == "progress_clear":
                self.queries.append("DELETE FROM pgshift.load_progress WHERE stream = '%s'" % self.name)
                if not self.check:
                    loader.clear_progress(self.tgt, self.name)
        self.removal(len(steps), "%s removed" % self.name if steps else "%s: nothing to remove" % self.name)
        result = dict(changed=bool(steps), stream=self.name, steps=steps, restarted=False, restart_reason="",
                      publication=dict(tables_added=[], tables_removed=before["publication"] or []),
                      slot=dict(name=self.name, created=False), load={},
                      subscription=dict(name=self.name, exists=False, enabled=False), queries=self.queries)
        if self.module._diff and steps:
            result["diff"] = dict(before=before, after=dict(publication=None, slot=False, subscription=False,
                                                            subscription_enabled=False))
        return result

    def stop_load(self):
        """Terminate the sessions of a load still running for this stream (both sides)."""
        app = native.load_application_name(self.name)
        for conn in (self.src, self.tgt):
            self.run_sql(conn, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = %s "
                               "AND pid <> pg_backend_pid()",
                         display="SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = "
                                 "'%s'" % app, params=(app,))

    def drop_slot(self):
        """pg_drop_replication_slot, after its WAL sender stopped (terminated after slot_release_timeout)."""
        self.queries.append("SELECT pg_drop_replication_slot('%s')" % self.name)
        if self.check:
            return
        deadline = time.time() + max(self.p["slot_release_timeout"], 0)
        terminated = False
        done = self.removal_steps.index("slot_drop") if "slot_drop" in self.removal_steps else 0
        while True:
            row = self.src.execute("SELECT active_pid, pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn)::bigint "
                                   "FROM pg_replication_slots WHERE slot_name = %s", (self.name,)).fetchone()
            if row is None:
                return
            if row[0] is not None:
                self.removal(done, "waiting for the WAL sender (pid %d) of slot %s to stop%s" % (
                    row[0], self.name, ", terminated" if terminated else
                    " (terminated after slot_release_timeout)"), row[1], deadline - time.time(), force=False)
                if time.time() < deadline:
                    time.sleep(0.2)
                    continue
                if not terminated:
                    self.queries.append("SELECT pg_terminate_backend(%d)" % row[0])
                    self.src.execute("SELECT pg_terminate_backend(%s)", (row[0],))
                    terminated = True
                    deadline = time.time() + 10
                    continue
                self.fail("replication slot %s is still used by process %d on the source after it was terminated: "
                          "drop it by hand (SELECT pg_drop_replication_slot('%s'))" % (self.name, row[0], self.name))
            try:
                self.src.execute("SELECT pg_drop_replication_slot(%s)", (self.name,))
                return
            except pg_errors.ObjectInUse:
                time.sleep(0.2)
            except pg_errors.UndefinedObject:
                return

    # --- entry -------------------------------------------------------------------------------

    def source_params(self):
        return dict((k, self.p[k]) for k in postgres_argument_spec())

    def target_params(self):
        return target_params(self.p)

    def run(self):
        try:
            if self.p["state"] == "absent":
                name = (self.p["stream"] or {}).get("name")
                self.stream = native.validate_stream(dict(name=name, tables=[]))
            else:
                self.stream = native.validate_stream(self.p["stream"])
        except native.StreamError as exc:
            self.module.fail_json(msg=str(exc))
        if self.p["parallel"] < 1:
            self.module.fail_json(msg="invalid options: parallel must be 1 or more (got %d)" % self.p["parallel"])
        self.name = self.stream["name"]
        self.src = connect(self.source_params())
        try:
            self.tgt = connect(self.target_params())
            try:
                result = self.absent() if self.p["state"] == "absent" else self.present()
            finally:
                self.tgt.close()
        finally:
            self.src.close()
        for warning in self.warnings:
            self.module.warn(scrub(warning, self.secrets))
        self.module.exit_json(**result)


def main():
    module = AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True)
    if PSYCOPG_IMPORT_ERROR:
        module.fail_json(msg=missing_required_lib("psycopg"), exception=PSYCOPG_IMPORT_ERROR)
    runner = Stream(module)
    try:
        runner.run()
    except PgConnectError as exc:
        module.fail_json(msg=str(exc), queries=runner.queries)
    except Exception as exc:  # an unexpected database error: say it without any secret
        module.fail_json(msg=scrub("pg_native_stream failed: %s" % exc, runner.secrets),
                         exception=scrub(traceback.format_exc(), runner.secrets), queries=runner.queries)


if __name__ == "__main__":
    main()
