# -*- coding: utf-8 -*-
# Copyright: pgshift.aurora contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""pg_schema_copy's orchestration: read both catalogs and the source's schema-only dump -> decide -> journal ->
act -> the result.

Reads: _pg/schema.py (catalogs), _pg/catalog.py (server, relations), _pg/tools.py (pg_dump, pg_restore).
Decides: schema/toc.py (what each archive entry is), schema/conflicts.py, schema/predata.py, schema/roles.py,
schema/postdata.py (the post stage's statements), schema/schedule.py (when each runs against the loads).
Every statement that changes the target goes through journal.Journal (in check mode only recorded).
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import tempfile
import threading
import time
import traceback

from ansible_collections.pgshift.aurora.plugins.module_utils import native, scope
from ansible_collections.pgshift.aurora.plugins.module_utils.journal import Journal
from ansible_collections.pgshift.aurora.plugins.module_utils.schema import (
    conflicts, postdata, predata, roles, schedule, toc)
from ansible_collections.pgshift.aurora.plugins.module_utils._pg import catalog, tools
from ansible_collections.pgshift.aurora.plugins.module_utils._pg import schema as schema_io
from ansible_collections.pgshift.aurora.plugins.module_utils.runners import end_with
from ansible_collections.pgshift.aurora.plugins.module_utils._pg.connection import (
    PgConnectError, connect, postgres_argument_spec)

SSL_MODES = ["disable", "allow", "prefer", "require", "verify-ca", "verify-full"]
TARGET = "target_"
MIN_SOURCE_VERSION = 130000


class CopyError(Exception):
    """A failure whose message says what to do; the module fails with it and what was done."""


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


def option_problems(p):
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


class SchemaCopy:
    """One run of pg_schema_copy (stage pre or post). `params` are the module's (defaults applied)."""

    def __init__(self, params, check_mode=False):
        self.p = params
        if not self.p["target_login_db"]:
            self.p["target_login_db"] = self.p["login_db"]
        self.check_mode = check_mode
        spec = postgres_argument_spec()
        self.source = native.unprefixed(self.p, spec, "")
        self.target = native.unprefixed(self.p, spec, TARGET)
        self.target_maint = dict(self.target, login_db=self.p["target_maintenance_db"])
        self.secrets = [self.p.get("login_password"), self.p.get("target_login_password")]
        self.journal = Journal(check_mode, self.secrets)
        self.commands, self.notes, self.warnings = [], [], []
        self.timings = {}
        # What each session of the post stage builds now: {backend pid: "index public.t_idx"}, for its progress.
        self.running, self.running_lock = {}, threading.Lock()
        self.tmpdir = None
        self.bin_dir = None
        self.pgpass = None
        self.result = dict(stage=self.p["stage"], changed=False, database={}, created=[], held_back=[], excluded=[],
                           summary={}, validated=[], states=[], existing=[], not_replicated={}, conflicts=[],
                           not_handled=[], tools={})

    # --- helpers ---------------------------------------------------------------------------

    @contextlib.contextmanager
    def timed(self, name):
        start = time.monotonic()
        try:
            yield
        finally:
            self.timings[name] = round(self.timings.get(name, 0) + time.monotonic() - start, 3)

    def scrub(self, text):
        return self.journal.scrub(text)

    def command(self, argv):
        self.commands.append(self.scrub(tools.shown(argv)))

    def run_tool(self, argv, params, doing):
        return tools.run(argv, tools.tool_env(params, self.pgpass.path), doing, self.scrub)

    def inventory(self, conn):
        return conflicts.inventory_map(schema_io.inventory(conn))

    # --- the run ---------------------------------------------------------------------------

    def run(self):
        """(result, failure): the module's result, and the message it fails with (None: it succeeded)."""
        start = time.monotonic()
        failure = None
        try:
            self.stages()
        except (PgConnectError, CopyError, tools.ToolError, schedule.PostStopped) as exc:
            failure = str(exc)
        except Exception as exc:  # an unexpected database or OS error: say it without any secret
            self.result["exception"] = self.scrub(traceback.format_exc())
            failure = "pg_schema_copy failed: %s" % exc
        self.timings["total"] = round(time.monotonic() - start, 3)
        self.result.update(queries=self.journal.queries, commands=self.commands, notes=self.notes,
                           timings=self.timings, warning_messages=[self.scrub(w) for w in self.warnings])
        return self.result, (self.scrub(failure) if failure else None)

    def stages(self):
        self.tmpdir = tempfile.mkdtemp(prefix="pgshift-schema-")
        src = maint = None
        try:
            src = schema_io.open_session(self.source)
            maint = connect(self.target_maint)
            with self.timed("source_catalog"):
                facts = self.read_source(src)
            target_version = schema_io.server_version(maint)
            self.result["tools"]["target_version"] = target_version
            self.bin_dir, major, warnings = tools.find_bin_dir(self.p["pg_bin_dir"], target_version // 10000,
                                                               facts["server"]["version_num"] // 10000)
            self.warnings.extend(warnings)
            self.result["tools"].update(bin_dir=self.bin_dir, pg_dump_version=major)
            s, t = self.source, self.target
            with tools.PgPass([(s["login_host"], s["login_port"], s["login_db"], s["login_user"], s["login_password"]),
                               (t["login_host"], t["login_port"], t["login_db"], t["login_user"],
                                t["login_password"])]) as pgpass:
                self.pgpass = pgpass
                if self.p["stage"] == "pre":
                    self.run_pre(src, maint, facts)
                else:
                    self.run_post(src, maint, facts)
        finally:
            for conn in (src, maint):
                if conn is not None:
                    conn.close()
            shutil.rmtree(self.tmpdir, ignore_errors=True)

    # --- reading ---------------------------------------------------------------------------

    def read_source(self, src):
        server = catalog.server_facts(src)
        version = server["version_num"]
        if version < MIN_SOURCE_VERSION:
            raise CopyError("the source runs PostgreSQL %s; pg_schema_copy needs 13 or later" % server["version_short"])
        db = schema_io.database(src, version, self.p["login_db"])
        schemas = toc.migrated_schemas(schema_io.schema_names(src), self.p["include_schemas"],
                                       self.p["exclude_schemas"])
        relations = catalog.relations(src)
        selected = scope.select(relations, self.p["include_schemas"], self.p["exclude_schemas"],
                                self.p["include_tables"], self.p["exclude_tables"])
        kept = set(r["oid"] for r in selected)
        sc = dict(schemas=schemas, relations_in=kept, relations_out=set(r["oid"] for r in relations) - kept)
        sequences = schema_io.sequences(src, schemas)
        large_objects = schema_io.large_objects(src)
        unreadable = schema_io.unreadable_tables(src)
        if unreadable:
            raise CopyError(roles.unreadable_message(unreadable, schema_io.login(src)["name"], version))
        self.result["not_replicated"] = predata.not_replicated(selected, sequences, large_objects)
        self.result["tools"]["source_version"] = version
        return dict(server=server, db=db, scope=sc, selected=selected)

    def dump_and_classify(self, src, sc):
        dump = os.path.join(self.tmpdir, "schema.dump")
        argv = tools.schema_dump_argv(self.bin_dir, self.source, dump, self.p["lock_wait_timeout"])
        self.command(argv)
        with self.timed("pg_dump"):
            self.run_tool(argv, self.source, "pg_dump of the source")
        argv = tools.list_argv(self.bin_dir, dump)
        self.command(argv)
        with self.timed("pg_restore_list"):
            listing = self.run_tool(argv, self.source, "pg_restore --list")
        with self.timed("classify"):
            entries = toc.parse_toc(listing)
            toc.annotate(entries, schema_io.source_objects(src, toc.catalog_keys(entries)))
            toc.classify(entries, sc)
        self.result["held_back"] = toc.report_entries(entries, "held")
        self.result["excluded"] = toc.report_entries(entries, "excluded")
        self.result["summary"]["entries"] = toc.summarize(entries)
        return dump, entries

    def plan_roles(self, src, maint, facts, owners):
        extra = sorted(set(owners) | set(roles.acl_grantees(facts["db"])))
        needed_rows = schema_io.needed_roles(src, facts["scope"]["schemas"], extra, roles.ANY_SCHEMA)
        needed = [r["name"] for r in needed_rows]
        existing = schema_io.existing_roles(maint, needed)
        if not self.p["create_roles"]:
            missing = sorted(set(needed) - set(existing) - set(n for n in needed if n.startswith("pg_")))
            if missing:
                self.warnings.append("create_roles is false and the target lacks role(s) %s: the restore will fail "
                                     "where they own or are granted something" % ", ".join(missing))
            return [], needed
        return roles.plan_roles(needed_rows, existing, schema_io.login(maint)["superuser"]), needed

    def check_privileges(self, maint, tgt, needs, roles_plan, database, source_owner, restored=()):
        """What a target login that is not a superuser must be granted first (roles.plan_privileges); stops with
        the SQL to run when it cannot grant that to itself, before anything is changed."""
        version = self.result["tools"]["target_version"]
        login = schema_io.login(maint)
        created = set(r["name"] for r in roles_plan)
        db = dict(name=self.p["target_login_db"], exists=database["existed"], owner=database.get("owner"),
                  source_owner=source_owner, create=set(),
                  restored_schemas=dict((e["schema"], e["owner"]) for e in restored
                                        if e["classid"] == toc.PG_NAMESPACE and e.get("owner")))
        facts_of, schemas = {}, {}
        if not login["superuser"]:
            names = sorted(set(needs["roles"]) | set(needs.get("grantable") or ()) | set([source_owner]) - set([None]))
            facts_of = schema_io.role_facts(maint, version, names)
            creators = sorted(set(role for role, dummy in needs["creates"]))
            if database["existed"]:
                db["create"] = schema_io.database_creators(maint, db["name"], creators)
            wanted = sorted(set(s for dummy, s in needs["creates"] if s) - set(db["restored_schemas"]))
            if tgt is not None and wanted:
                schemas = schema_io.schema_facts(tgt, creators, wanted)
        plan = roles.plan_privileges(needs, login, facts_of, created, db, schemas, version)
        if plan["problems"]:
            raise CopyError(roles.privilege_message(plan["problems"], login["name"]))
        return plan

    # --- stage pre -------------------------------------------------------------------------

    def run_pre(self, src, maint, facts):
        dbname = self.p["target_login_db"]
        target_version = self.result["tools"]["target_version"]
        dump, entries = self.dump_and_classify(src, facts["scope"])
        with self.timed("source_catalog"):
            source_inv = self.inventory(src)
        exists = schema_io.database_exists(maint, dbname)
        database = predata.database_facts(dbname, facts["db"], exists)
        self.result["database"] = database
        problems, target_inv, tgt = [], {}, None
        try:
            if exists:
                tgt = schema_io.open_session(self.target)
                with self.timed("target_catalog"):
                    target_inv = self.inventory(tgt)
                    tdb = schema_io.database(tgt, target_version, dbname)
                db_conflicts, db_warnings = conflicts.database_differences(facts["db"], tdb)
                problems.extend(db_conflicts)
                self.warnings.extend(db_warnings)
                database.update(owner=tdb["owner"])
            compared = set(e["key"] for e in entries if e["cls"] in ("pre", "held") and e["key"])
            problems.extend(conflicts.find_conflicts(source_inv, target_inv, facts["scope"]["schemas"], compared))
            self.result["conflicts"] = problems
            if problems:
                raise CopyError(conflicts.conflict_message(problems, dbname))
            wanted = predata.extensions(entries)
            missing = sorted(set(wanted) - schema_io.available_extensions(maint, wanted)) if wanted else []
            if missing:
                raise CopyError(predata.missing_extensions_message(missing))
            present = dict(target_inv)
            if tgt is not None:
                for e in predata.probe_candidates(entries, present, toc.INVENTORY_CLASSES):
                    if schema_io.object_exists(tgt, e["info"]):
                        present[e["key"]] = dict(schema=e["info"].get("schema"))
            attached = set(k for k, r in target_inv.items() if r.get("attached"))
            selected = predata.plan_restore(entries, present, attached)
            restored = [e for e in selected if e["cls"] == "pre"]
            self.result["created"] = [dict(kind=e["desc"].lower(), object=toc.entry_label(e)) for e in restored]
            self.result["extensions"] = wanted
            owners = sorted(set(e["owner"] for e in entries if e["cls"] in ("pre", "held") and e["owner"]))
            roles_plan, needed = self.plan_roles(src, maint, facts, owners)
            self.result["summary"].update(restore=len(restored), pre=len(toc.by_class(entries, "pre")),
                                          held=len(toc.by_class(entries, "held")),
                                          excluded=len(toc.by_class(entries, "excluded")))
            create, after, settings = [], [], []
            if not exists:
                create, after, settings, warnings = predata.new_database(dbname, facts["db"], target_version)
                self.warnings.extend(warnings)
            privileges = self.check_privileges(maint, tgt, dict(roles.owner_requirements(restored), grantable=set(
                g["role"] for r in roles_plan for g in r["member_of"])), roles_plan, database, facts["db"]["owner"],
                restored)
            member_grants = [roles.grant_to_login(name, target_version) for name in privileges["grants"]]
            if privileges["database_owner"]:
                after.append(predata.owner_statement(dbname, privileges["database_owner"]))
                database.update(owner=privileges["database_owner"], owner_was=database["owner"])
            list_file = os.path.join(self.tmpdir, "restore.list")
            restore_argv = None
            if restored:
                restore_argv = tools.restore_list_argv(self.bin_dir, self.target, list_file, dump)
                self.command(restore_argv)
            self.result["roles"] = dict(
                created=[r["name"] for r in roles_plan],
                existing=sorted(n for n in set(needed) - set(r["name"] for r in roles_plan) if not n.startswith("pg_")),
                attributes_dropped=dict((r["name"], r["dropped_attributes"]) for r in roles_plan
                                        if r["dropped_attributes"]),
                memberships=["%s TO %s" % (g["role"], r["name"]) for r in roles_plan for g in r["member_of"]])
            if roles_plan:
                self.notes.append("roles created without passwords: %s; set their passwords on the target before the "
                                  "application connects there" % ", ".join(r["name"] for r in roles_plan))
            self.result["changed"] = bool(create or roles_plan or restored or member_grants or after)
            self.apply_database(maint, create, roles_plan, member_grants + after, settings)
            database["created"] = bool(create) and not self.check_mode
            if self.check_mode or not restored:
                return
            with open(list_file, "w") as f:
                f.write(predata.restore_list(selected))
            with self.timed("pg_restore"):
                try:
                    self.run_tool(restore_argv, self.target, "pg_restore of the pre-data schema into the target "
                                  "(rolled back as a whole: --single-transaction)")
                except tools.ToolError as exc:
                    if "permission denied" in str(exc) or "must be" in str(exc):
                        raise CopyError("%s\n%s" % (exc, roles.RESTORE_PRIVILEGE_HINT))
                    raise
            with self.timed("verify"):
                if tgt is None:
                    tgt = schema_io.open_session(self.target)
                after_inv = self.inventory(tgt)
                missing = [toc.entry_label(e) for e in restored if e["key"] and e["key"] not in after_inv
                           and e["classid"] in toc.INVENTORY_CLASSES]
                if missing:
                    self.warnings.append("after the restore the target still lacks: %s" % ", ".join(missing[:20]))
        finally:
            if tgt is not None:
                tgt.close()

    def apply_database(self, maint, create, roles_plan, statements, settings):
        """The database, the roles (one transaction), the grants, owner and privileges, the settings (a setting
        the target refuses is a warning), through the journal: in check mode only recorded."""
        if not (create or roles_plan or statements or settings):
            return
        with self.timed("database"):
            for stmt in create:
                self.journal.run(maint, stmt)
        with self.timed("roles"):
            with (maint.transaction() if roles_plan and not self.check_mode else contextlib.nullcontext()):
                for role in roles_plan:
                    for stmt in roles.role_statements(role):
                        self.journal.run(maint, stmt)
                for role in roles_plan:
                    for grant in role["member_of"]:
                        self.journal.run(maint, roles.membership_statement(role["name"], grant))
            for stmt in statements:
                self.journal.run(maint, stmt)
            for stmt in settings:
                error = schema_io.try_run(self.journal, maint, stmt)
                if error:
                    self.warnings.append("database setting not copied: %s (%s)" % (self.journal.text(stmt, maint),
                                                                                   error))

    # --- stage post ------------------------------------------------------------------------

    def run_post(self, src, maint, facts):
        if not schema_io.database_exists(maint, self.p["target_login_db"]):
            raise CopyError("the target database %s does not exist: run stage pre first" % self.p["target_login_db"])
        dummy, entries = self.dump_and_classify(src, facts["scope"])
        held = toc.by_class(entries, "held")
        with self.timed("source_catalog"):
            details = schema_io.post_details(src, postdata.post_oids(held))
        # Building an index, a foreign key or a trigger on a table needs the privileges of its owner.
        privileges = self.check_privileges(maint, None, roles.post_requirements(held), [],
                                           dict(existed=True, owner=None), None)
        grants = [roles.grant_to_login(name, self.result["tools"]["target_version"]) for name in privileges["grants"]]
        for stmt in grants:
            self.journal.run(maint, stmt)
        tgt = schema_io.open_session(self.target, self.p["maintenance_work_mem"])
        gate = monitor = None
        try:
            if not self.check_mode:
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
            self.result["summary"].update(held=len(held), steps=len(plan["steps"]), existing=len(plan["existing"]))
            self.result["changed"] = bool(plan["steps"] or grants)
            if self.check_mode:
                for phase in schedule.PHASES:
                    for step in schedule.phase_steps(plan, phase):
                        self.journal.run(tgt, step["sql"])
                return
            if not plan["steps"]:
                return
            progress = schedule.Progress(self.p["progress_file"], len(plan["steps"]))
            watch = None
            if self.p["progress_file"]:
                # How far each index build is, read over a session of its own while the others build.
                monitor = schema_io.open_monitor(self.target)
                watch = schedule.BuildWatch(lambda: self.observe_builds(monitor), progress)
            loads = None
            if self.p["wait_for_streams"]:
                gate = schema_io.open_session(self.target)
                loads = schedule.Loads(self.p["wait_for_streams"], lambda names: schema_io.observe_loads(gate, names),
                                       schema_io.clock(gate), self.p["wait_timeout"])
                loads.refresh()
                self.result["waited_for"] = dict(streams=loads.streams, done_at_start=loads.state["done"])
            stage = schedule.PostStage(plan, self.execute_step, self.worker_session, tgt, parallel=self.p["parallel"],
                                       loads=loads, progress=progress,
                                       record=lambda done: postdata.record(self.result, done),
                                       database=self.p["target_login_db"], watch=watch)
            try:
                stage.run()
            finally:
                if watch is not None and watch.error:
                    self.warnings.append("the progress file stopped showing the index builds: reading "
                                         "pg_stat_progress_create_index failed (%s); the post stage went on" %
                                         watch.error)
                self.timings.update(stage.timings)
                if loads is not None:
                    self.timings["wait_loads"] = round(loads.waited, 3)
                    self.result["waited_for"]["seconds_waiting_for_all"] = round(loads.waited, 3)
        finally:
            tgt.close()
            for conn in (gate, monitor):
                if conn is not None:
                    conn.close()

    def post_lock(self, tgt):
        """One post stage at a time per target database: a session advisory lock, waited for up to wait_timeout."""
        deadline = time.monotonic() + self.p["wait_timeout"]
        while not schema_io.try_post_lock(tgt):
            if time.monotonic() > deadline:
                raise CopyError("another post stage still runs on the target database %s (it holds the advisory lock "
                                "hashtext('%s')): wait for it to end, or stop it, then run again" % (
                                    self.p["target_login_db"], schema_io.POST_LOCK))
            time.sleep(0.5)

    def worker_session(self):
        return schema_io.post_connect(self.target, self.p["maintenance_work_mem"])

    def execute_step(self, conn, step):
        retry = schedule.retry_validation if self.p["wait_for_streams"] else None
        pid = conn.info.backend_pid
        with self.running_lock:
            self.running[pid] = "%s %s" % (step["kind"], step["object"])
        try:
            self.notes.extend(schema_io.run_step(self.journal, conn, step, retry))
        finally:
            with self.running_lock:
                self.running.pop(pid, None)

    def observe_builds(self, monitor):
        """The index builds of the sessions running a step now, each named by its step (pg_stat_progress_create_index
        names no index while a plain CREATE INDEX builds it)."""
        with self.running_lock:
            running = dict(self.running)
        builds = schema_io.index_builds(monitor, sorted(running)) if running else []
        for b in builds:
            b["name"] = running.get(b["pid"])
        return builds


def execute(params, check_mode=False):
    """One whole run as the module's result, secrets masked: the report (changed, stage, commands, ...) with
    warnings, and failed/msg when the stage failed or the options are wrong. The module
    (plugins/modules/pg_schema_copy.py) and, with the local connection and no async, the action plugin of the same
    name (run in the controller's process) both call it."""
    problems = option_problems(params)
    if problems:
        return dict(failed=True, changed=False, msg="invalid options: " + "; ".join(problems))
    result, failure = SchemaCopy(params, check_mode=check_mode).run()
    result = dict(result, warnings=list(result["warning_messages"]))
    if failure:
        result.update(failed=True, msg=failure)
    return result


def module_spec():
    return dict(argument_spec=argument_spec())


def run_module(module):
    end_with(module, execute(module.params, check_mode=module.check_mode))
