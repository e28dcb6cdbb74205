# -*- coding: utf-8 -*-
# Copyright: pgshift.aurora contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""pg_native_stream's orchestration: observe both sides (_pg/stream.py) -> decide (native.decide,
native.absent_steps) -> run each step through the journal (the copy through _pg/loader.py) -> the result.
"""

from __future__ import annotations

import time
import traceback

try:
    from psycopg import errors as pg_errors
except ImportError:  # pragma: no cover - the module reports the missing library
    pg_errors = None

from ansible_collections.pgshift.aurora.plugins.module_utils import native, progress, replication_conn
from ansible_collections.pgshift.aurora.plugins.module_utils.journal import Journal
from ansible_collections.pgshift.aurora.plugins.module_utils._pg import loader, replication, stream as pgstream
from ansible_collections.pgshift.aurora.plugins.module_utils._pg.connection import (
    PgConnectError, connect, postgres_argument_spec, scrub)

TARGET = "target_"
# copy_relay=auto: units estimated at least this big go through psql (two process starts and connections
# cost about 0.1 s: worth it from a few MB on, when the relay's CPU saving outweighs them).
PSQL_RELAY_MIN_BYTES = 16 * 1024 * 1024
SSL_MODES = ["disable", "allow", "prefer", "require", "verify-ca", "verify-full"]


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
        source_ssl_mode=dict(type="str", choices=SSL_MODES),
        source_ssl_root_cert=dict(type="str"),
    )
    return spec


class StreamFailure(Exception):
    """The run stops; the message says why and what to do, `extra` goes into the module's result."""

    def __init__(self, msg, **extra):
        super().__init__(msg)
        self.extra = extra


class Stream:
    """One run of pg_native_stream: observe both sides, decide (native.decide), act, report."""

    def __init__(self, params, check_mode=False, diff=False):
        self.p = params
        self.check = bool(check_mode)
        self.diff = bool(diff)
        self.secrets = [s for s in (params.get("login_password"), params.get("target_login_password"),
                                    params.get("source_replication_password")) if s]
        self.journal = Journal(check_mode, self.secrets)
        self.warnings = []
        self.src = self.tgt = None
        self.stream = None
        self.name = None
        self.load = {}
        self.slot_info = {}
        self.progress = None  # the removal's progress file (state=absent with progress_file)
        self.removal_steps, self.removal_started = [], time.monotonic()

    @property
    def queries(self):
        return self.journal.queries

    def fail(self, msg, **extra):
        raise StreamFailure(self.journal.scrub(msg), **extra)

    def source_params(self):
        return dict((k, self.p[k]) for k in postgres_argument_spec())

    def target_params(self):
        return native.unprefixed(self.p, postgres_argument_spec(), TARGET)

    def note(self, stmt, conn, prefix=""):
        """Record a statement that another part runs (the loader, the replication connection)."""
        self.journal.note(prefix + self.journal.text(stmt, conn))

    # --- entry -------------------------------------------------------------------------------

    def run(self):
        """The module's result; raises StreamFailure (or PgConnectError)."""
        try:
            if self.p["state"] == "absent":
                self.stream = native.validate_stream(dict(name=(self.p["stream"] or {}).get("name"), tables=[]))
            else:
                self.stream = native.validate_stream(self.p["stream"])
        except native.StreamError as exc:
            raise StreamFailure(str(exc)) from None
        if self.p["parallel"] < 1:
            raise StreamFailure("invalid options: parallel must be 1 or more (got %d)" % self.p["parallel"])
        self.name = self.stream["name"]
        self.src = connect(self.source_params())
        try:
            self.tgt = connect(self.target_params())
            try:
                return self.absent() if self.p["state"] == "absent" else self.present()
            finally:
                self.tgt.close()
        finally:
            self.src.close()

    # --- observation -------------------------------------------------------------------------

    def observe(self):
        obs = pgstream.observe(self.src, self.tgt, self.name)
        if obs["publication"] is not None and obs["publication"]["all_tables"]:
            self.fail("publication %s exists on the source FOR ALL TABLES: it was not made by pgshift; drop it "
                      "or pick another migration name" % self.name)
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
            getattr(self, "step_" + step)(decision, desired, src_cols, plan)
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
        if self.diff and changed:
            result["diff"] = dict(before=before, after=after)
        return result

    @staticmethod
    def summary(obs):
        sub = obs.get("subscription")
        return dict(publication=[native.qualified(t["schema"], t["name"]) for t in (obs["publication"] or {}).get(
            "tables", [])] if obs.get("publication") else None,
            slot=obs.get("slot") is not None, subscription=sub is not None,
            subscription_enabled=bool(sub and sub.get("enabled")))

    @staticmethod
    def predicted(before, decision, desired):
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

    def step_publication_create(self, decision, desired, src_cols, plan):
        replication.create_publication(self.src, self.name, desired["tables"], journal=self.journal)

    def step_publication_drop_tables(self, decision, desired, src_cols, plan):
        replication.alter_publication(self.src, self.name, "DROP", decision["drops"], journal=self.journal)

    def step_publication_add_tables(self, decision, desired, src_cols, plan):
        replication.alter_publication(self.src, self.name, "ADD", decision["adds"], journal=self.journal)

    def step_slot_drop(self, decision, desired, src_cols, plan):
        self.drop_slot()

    def step_slot_create(self, decision, desired, src_cols, plan):
        self.journal.note(native.create_slot_command(self.name, self.src.info.server_version, export=False))
        if not self.check:
            dummy, lsn, snapshot = loader.create_slot(self.source_params(), self.name, self.src.info.server_version,
                                                      False, native.load_application_name(self.name))
            self.slot_info = dict(consistent_lsn=lsn)

    def step_slot_create_export(self, decision, desired, src_cols, plan):
        # the slot is created with the copy (step_copy): its snapshot lives as long as its session
        self.journal.note(native.create_slot_command(self.name, self.src.info.server_version, export=True))

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
            self.journal.note("%s -> %s%s" % (
                self.journal.text(native.copy_out(unit, cols, fmt), self.src),
                self.journal.text(native.copy_in(unit, cols, fmt, freeze=ranges == 1), self.tgt),
                " (in %d ranges of %s)" % (ranges, t["split_key"]) if ranges > 1 else ""))

    def step_copy(self, decision, desired, src_cols, plan):
        tables = desired["tables"]
        for stmt in loader.PROGRESS_DDL:  # run by loader.Progress.ensure()
            self.note(stmt, self.tgt)
        if self.check:
            self.copy_queries(tables, plan)
            self.drop_keys(tables)
            return
        app = native.load_application_name(self.name)
        progress_conn = loader.connect_as(self.target_params(), app)
        load_progress = loader.Progress(progress_conn, self.name)
        exporter = None
        try:
            load_progress.ensure()
            exporter, lsn, snapshot = loader.create_slot(self.source_params(), self.name,
                                                         self.src.info.server_version, True, app)
            self.slot_info = dict(consistent_lsn=lsn)
            units = self.plan_units(tables, src_cols, snapshot)
            split = native.split_tables(units)
            if split:
                self.journal.run(self.tgt, native.truncate(split))
            self.drop_keys(tables)
            load_progress.reset(units, lsn)
            self.copy_queries(tables, plan, units)
            started = time.time()
            psql = self.relay_psql()
            engine = loader.Loader(self.source_params(), self.target_params(), snapshot, units, plan,
                                   self.p["parallel"], load_progress, app, secrets=self.secrets, psql=psql,
                                   psql_min_bytes=PSQL_RELAY_MIN_BYTES if self.p["copy_relay"] == "auto" else 0)
            results, warnings = engine.run()
            self.warnings.extend(warnings)
            copied = time.time()
            keys = self.build_keys()
            self.load = load_result(units, results, copied - started, engine.workers)
            self.load.update(keys=keys, keys_seconds=round(time.time() - copied, 3),
                             relay=sorted(set(r["relay"] for r in results)))
        except loader.LoadError as exc:
            self.abandon_slot(exporter)
            exporter = None
            self.fail("initial load of stream %s failed: %s. Its slot was dropped; fix the cause and run again (the "
                      "copy starts over)" % (self.name, exc), slot=dict(name=self.name, created=False))
        except StreamFailure:  # said what to do (a key to build on the next run keeps the slot)
            raise
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
        for key in keys:  # run by loader.drop_keys (each recorded in pgshift.deferred_keys) and loader.build_keys
            self.note(native.drop_key(key), self.tgt)
            for stmt in native.key_statements(key):
                self.note(stmt, self.tgt, prefix="(after the copy) ")
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
        except StreamFailure:
            raise
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

    def step_subscription_create(self, decision, desired, src_cols, plan):
        try:
            replication.create_subscription(self.tgt, self.name, subscription_conninfo(self.p),
                                            enabled=desired["create_enabled"], disable_on_error=False,
                                            journal=self.journal)
        except pg_errors.InsufficientPrivilege as exc:
            self.fail("the target user %s may not create subscription %s (%s): use a superuser (rds_superuser on "
                      "Aurora) or, from PostgreSQL 16, grant it pg_create_subscription and CREATE on the database. "
                      "The slot and the copied data are kept: run again with a user allowed to" % (
                          self.p["target_login_user"], self.name, str(exc).strip()))

    def step_truncate_added(self, decision, desired, src_cols, plan):
        self.journal.run(self.tgt, native.truncate(decision["adds"]))

    def step_subscription_refresh(self, decision, desired, src_cols, plan):
        replication.refresh_subscription(self.tgt, self.name, desired["copy"] and bool(decision["adds"]),
                                         journal=self.journal)

    def step_subscription_enable(self, decision, desired, src_cols, plan):
        replication.alter_subscription(self.tgt, self.name, "ENABLE", journal=self.journal)

    def step_subscription_disable(self, decision, desired, src_cols, plan):
        replication.alter_subscription(self.tgt, self.name, "DISABLE", journal=self.journal)

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
                replication.alter_subscription(self.tgt, self.name, "DISABLE", journal=self.journal)
            elif step == "subscription_detach":
                replication.alter_subscription(self.tgt, self.name, "SET (slot_name = NONE)", journal=self.journal)
            elif step == "subscription_drop":
                replication.drop_subscription(self.tgt, self.name, detach=False, journal=self.journal)
            elif step == "load_stop":
                for conn in (self.src, self.tgt):
                    pgstream.stop_load(conn, self.name, self.journal)
            elif step == "slot_drop":
                self.drop_slot()
            elif step == "publication_drop":
                replication.drop_publication(self.src, self.name, journal=self.journal)
            elif step == "progress_clear":
                pgstream.clear_progress(self.tgt, self.name, self.journal)
        self.removal(len(steps), "%s removed" % self.name if steps else "%s: nothing to remove" % self.name)
        result = dict(changed=bool(steps), stream=self.name, steps=steps, restarted=False, restart_reason="",
                      publication=dict(tables_added=[], tables_removed=before["publication"] or []),
                      slot=dict(name=self.name, created=False), load={},
                      subscription=dict(name=self.name, exists=False, enabled=False), queries=self.queries)
        if self.diff and steps:
            result["diff"] = dict(before=before, after=dict(publication=None, slot=False, subscription=False,
                                                            subscription_enabled=False))
        return result

    def drop_slot(self):
        """The stream's slot, after its WAL sender stopped (terminated after slot_release_timeout)."""
        done = self.removal_steps.index("slot_drop") if "slot_drop" in self.removal_steps else 0

        def waiting(pid, retained, left, terminated):
            self.removal(done, "waiting for the WAL sender (pid %d) of slot %s to stop%s" % (
                pid, self.name, ", terminated" if terminated else " (terminated after slot_release_timeout)"),
                retained, left, force=False)

        try:
            replication.drop_slot(self.src, self.name, self.p["slot_release_timeout"], journal=self.journal,
                                  on_wait=waiting)
        except replication.SlotBusy as exc:
            self.fail(str(exc))


def load_result(units, results, seconds, workers):
    """RV(load): the copy's totals and rates, and per table its units, rows, bytes, seconds and format."""
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


def subscription_conninfo(p):
    """The connection string the target's subscription opens to the source, from pg_native_stream's options
    (source_* as the target server reaches the source, else the controller's login_*)."""
    user = p["source_replication_user"] or p["login_user"]
    password = p["source_replication_password"]
    if password is None and not p["source_replication_user"]:
        password = p["login_password"]
    return replication_conn.subscription_conninfo(
        p["source_host"] or p["login_host"], p["source_port"] or p["login_port"], p["source_db"] or p["login_db"],
        user, password, p["source_ssl_mode"] or p["ssl_mode"], p["source_ssl_root_cert"])


def module_spec():
    return dict(argument_spec=argument_spec())


def run_module(module):
    runner = Stream(module.params, check_mode=module.check_mode, diff=module._diff)  # pylint: disable=protected-access
    try:
        result = runner.run()
    except StreamFailure as exc:
        module.fail_json(msg=str(exc), queries=runner.queries, **exc.extra)
    except PgConnectError as exc:
        module.fail_json(msg=str(exc), queries=runner.queries)
    except Exception as exc:  # pylint: disable=broad-except  # an unexpected database error: said without any secret
        module.fail_json(msg=scrub("pg_native_stream failed: %s" % exc, runner.secrets),
                         exception=scrub(traceback.format_exc(), runner.secrets), queries=runner.queries)
    for warning in runner.warnings:
        module.warn(scrub(warning, runner.secrets))
    module.exit_json(**result)
