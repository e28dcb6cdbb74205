# -*- coding: utf-8 -*-
# Copyright: pgshift.aurora contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""pg_analyze's orchestration: read what the planner has on the target -> decide (analyze.py) -> import the
source's statistics and/or ANALYZE in parallel, writing a progress file -> the result.

Reads: _pg/stats.py. Decides: module_utils/analyze.py. Runs: pg_dump/pg_restore (_pg/tools.py) and ANALYZE
over `parallel` connections, biggest first, each parent after its descendants.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import tempfile
import threading
import time
import traceback

from ansible_collections.pgshift.aurora.plugins.module_utils import analyze, progress, scope
from ansible_collections.pgshift.aurora.plugins.module_utils.journal import Journal
from ansible_collections.pgshift.aurora.plugins.module_utils.progress import ProgressFile
from ansible_collections.pgshift.aurora.plugins.module_utils._pg import stats, tools
from ansible_collections.pgshift.aurora.plugins.module_utils._pg.connection import (
    PgConnectError, connect, postgres_argument_spec, scrub)

SOURCE = "source_"
JOB_CHECK_SECONDS = 0.2  # how often the job files of wait_for_jobs are read (a small local file each)


class AnalyzeError(Exception):
    """A failure whose message says what to do."""


def argument_spec():
    """pg_analyze's options: the target's connection (login_*), the source's (source_login_*, import only),
    the filters, and what to do."""
    spec = postgres_argument_spec()
    source = dict((SOURCE + name, dict(value)) for name, value in postgres_argument_spec().items())
    source[SOURCE + "login_host"]["default"] = None  # no source: no import
    spec.update(source)
    spec.update(scope.filter_argument_spec())
    spec.update(
        method=dict(type="str", default="auto", choices=list(analyze.METHODS)),
        parallel=dict(type="int", default=2),
        force=dict(type="bool", default=False),
        pg_bin_dir=dict(type="path"),
        progress_file=dict(type="path"),
        wait_for_jobs=dict(type="list", elements="path", default=[]),
        wait_timeout=dict(type="int", default=86400),
    )
    return spec


def option_problems(p):
    problems = []
    if p["parallel"] < 1:
        problems.append("parallel must be at least 1 (got %d)" % p["parallel"])
    if p["wait_timeout"] < 1:
        problems.append("wait_timeout must be at least 1 second (got %d)" % p["wait_timeout"])
    if p["method"] == "import" and not p[SOURCE + "login_host"]:
        problems.append("method=import needs the source's connection (source_login_host and the other source_* "
                        "options)")
    problems.extend(scope.filter_problems(scope.filters_from(p)))
    return problems


class Analyze:
    """One run of pg_analyze."""

    def __init__(self, params, check_mode=False):
        self.p = params
        self.check_mode = check_mode
        self.target = dict((k, params[k]) for k in postgres_argument_spec())
        self.source = None
        if params.get(SOURCE + "login_host"):
            self.source = dict((k, params[SOURCE + k]) for k in postgres_argument_spec())
        self.secrets = [params.get("login_password"), params.get(SOURCE + "login_password")]
        self.filters = scope.filters_from(params)
        self.journal = Journal(check_mode, [s for s in self.secrets if s])
        self.commands, self.warnings = [], []
        self.progress = ProgressFile(params.get("progress_file"))
        self.started = time.monotonic()
        self.tools = {}

    @property
    def queries(self):
        return self.journal.queries

    def scrub(self, text):
        return scrub(text, self.secrets)

    # --- reading ---------------------------------------------------------------------------

    def read(self):
        conn = connect(self.target)
        try:
            return conn.info.server_version, stats.login_facts(conn), stats.read_tables(conn, self.filters)
        finally:
            conn.close()

    # --- the run ---------------------------------------------------------------------------

    def wait_for_jobs(self):
        """Sleeps until every job of wait_for_jobs has ended (the loads and the post stage started with it, so
        that nothing is read before the tables are loaded and indexed); AnalyzeError when one failed or
        wait_timeout passed. Returns the seconds waited."""
        paths = self.p["wait_for_jobs"]
        start = time.monotonic()
        while True:
            verdict, why = analyze.jobs_verdict([(path, progress.async_job_status(path)) for path in paths])
            if verdict == "go":
                return round(time.monotonic() - start, 3)
            if verdict == "stop":
                raise AnalyzeError(why)
            if time.monotonic() - start > self.p["wait_timeout"]:
                raise AnalyzeError("not started: the jobs it waits for did not end within %d s (wait_timeout); %s"
                                   % (self.p["wait_timeout"], why))
            self.progress.write(dict(analyze.progress(0, 0, 0, [], why), percent=0.0))  # not 0 of 0 tables done
            time.sleep(JOB_CHECK_SECONDS)

    def run(self):
        p = self.p
        waited = None
        if p["wait_for_jobs"]:
            waited = self.wait_for_jobs()
            self.started = time.monotonic()  # the run's seconds count from here
        self.progress.write(analyze.progress(0, 0, 0, [], "reading the target's statistics"), force=True)
        version, login, tables = self.read()
        todo, cannot, present = analyze.selection(tables, p["force"], login["login"], version)
        dump_major = None
        if p["method"] != "analyze":
            dump_major = self.find_tools(version)
        chosen, note, problem = analyze.choose_method(p["method"], version, dump_major, self.source is not None)
        if problem and todo:
            raise AnalyzeError(problem)
        if not todo:
            chosen = chosen or p["method"]
            note = "nothing to do: every table in scope has statistics%s" % (
                "" if not cannot else " or may not be analysed by %s" % login["login"])
        results = {}
        import_seconds = None
        to_analyse = todo
        if chosen == "import" and todo:
            if self.check_mode:
                for t in todo:
                    results[t["oid"]] = self.entry(t, "would_import")
                to_analyse = []
            else:
                t0 = time.monotonic()
                imported, failure = self.import_statistics(todo, version)
                import_seconds = round(time.monotonic() - t0, 3)
                if failure:
                    self.warnings.append("the import of the source's statistics failed, every table is analysed "
                                         "instead: %s" % failure)
                    note = "analyze (the import failed: %s)" % failure
                    chosen = "analyze"
                else:
                    after = self.read()[2]
                    still = dict((t["oid"], t) for t in after if analyze.statistics_need(t)[0] != analyze.PRESENT)
                    to_analyse = []
                    for t in todo:
                        if t["oid"] in still and t["oid"] not in imported["left_out"]:
                            to_analyse.append(dict(still[t["oid"]], reason="%s; not in the source's statistics" % (
                                t["reason"])))
                        elif t["oid"] in still:
                            to_analyse.append(dict(still[t["oid"]], reason=t["reason"]))
                        else:
                            results[t["oid"]] = self.entry(t, "imported", seconds=None)
        items = analyze.sequential_order(analyze.work_items(to_analyse, version))
        if self.check_mode:
            for item in items:
                stats.run_analyze(None, item["schema"], item["name"], item["only"], self.journal)
                results[item["oid"]] = dict(self.entry(item, "would_analyze"), only=item["only"], covers=item["covers"])
        elif items:
            results.update(self.analyse(items, done_before=len(results), total=len(results) + len(items)))
        by_oid = dict((t["oid"], t) for t in todo)
        order = [item["oid"] for item in items]
        ordered = [results[o] for o in order if o in results] + sorted(
            (r for o, r in results.items() if o not in order), key=lambda r: r["table"])
        for o in list(by_oid):
            if o not in results:  # covered by its partitioned parent's ANALYZE (before PostgreSQL 18)
                root = next((i for i in items if by_oid[o]["table"] in i["covers"]), None)
                ordered.append(self.entry(by_oid[o], "covered", reason="analysed with %s" % (
                    root["table"] if root else "its parent")))
        elapsed = time.monotonic() - self.started
        not_analyzed = [dict(table=c["table"], schema=c["schema"], name=c["name"], owner=c["owner"],
                             reason=c["reason"], why=c["why"]) for c in cannot]
        for c in cannot:
            if not analyze.empty(c):
                self.warnings.append("%s has no planner statistics and %s may not gather them: %s" % (
                    c["table"], login["login"], c["why"]))
        done = sum(1 for r in ordered if r["action"] in ("analyzed", "imported", "covered"))
        self.progress.write(analyze.progress(done, len(ordered), elapsed, [], "done"), force=True)
        summary = analyze.summary(ordered, cannot, present, len(tables), chosen, p["parallel"], elapsed,
                                  import_seconds)
        failed = [r for r in ordered if r["action"] == "failed"]
        changes = ("analyzed", "imported", "covered", "would_analyze", "would_import")
        return dict(changed=any(r["action"] in changes for r in ordered), waited_for_jobs_seconds=waited,
                    method=chosen, method_note=note, tables=ordered, not_analyzed=not_analyzed, summary=summary,
                    queries=self.queries, commands=self.commands, tools=self.tools,
                    versions=dict(target=version), login=login["login"]), failed

    @staticmethod
    def entry(t, action, seconds=None, reason=None, error=None):
        if "weight" in t:
            size = t["weight"]
        else:
            size = t["tree_bytes"] if t.get("is_parent") else t.get("heap_bytes")
        return dict(table=t["table"], schema=t["schema"], name=t["name"], kind=t.get("kind"), action=action,
                    reason=reason or t.get("reason"), seconds=seconds, error=error, bytes=size)

    # --- ANALYZE in parallel -----------------------------------------------------------------

    def analyse(self, items, done_before, total):
        """Run the items over min(parallel, len(items)) connections; {oid: result entry}."""
        queue = analyze.Queue(items)
        cond = threading.Condition()
        state = dict(done=done_before, current=[], results={})
        workers = min(self.p["parallel"], len(items))
        conns = [connect(self.target) for dummy in range(workers)]  # fail here, before anything runs
        start = time.monotonic()

        def report(force=False):
            with cond:
                data = analyze.progress(state["done"], total, time.monotonic() - start, list(state["current"]))
            self.progress.write(data, force=force)

        def work(index):
            conn = conns[index]
            while True:
                with cond:
                    item = None
                    while item is None:
                        if queue.done():
                            return
                        item = queue.take()
                        if item is None:
                            cond.wait(0.5)
                    state["current"].append(item["table"])
                report(force=True)
                t0 = time.monotonic()
                try:
                    text = stats.run_analyze(conn, item["schema"], item["name"], item["only"], self.journal)
                    entry = dict(self.entry(item, "analyzed", seconds=round(time.monotonic() - t0, 3)),
                                 statement=text, covers=item["covers"], only=item["only"])
                except Exception as exc:  # this table failed; the others go on
                    entry = dict(self.entry(item, "failed", seconds=round(time.monotonic() - t0, 3),
                                            error=self.scrub(str(exc).strip())), covers=item["covers"])
                    if conn.closed or conn.broken:
                        try:
                            conn = conns[index] = connect(self.target)
                        except Exception:  # the worker stops; the others finish the queue
                            conn = None
                with cond:
                    queue.finish(item["oid"])
                    state["current"].remove(item["table"])
                    state["results"][item["oid"]] = entry
                    state["done"] += 1
                    cond.notify_all()
                report()
                if conn is None:
                    return

        threads = [threading.Thread(target=work, args=(i,), daemon=True) for i in range(workers)]
        try:
            for t in threads:
                t.start()
            for t in threads:
                t.join()
        finally:
            for c in conns:
                try:
                    c.close()
                except Exception:  # best effort
                    pass
        for item in items:  # every worker lost its connection: say so for what never ran
            if item["oid"] not in state["results"]:
                state["results"][item["oid"]] = self.entry(item, "failed", error="not analysed: the connections to "
                                                                                 "the target were lost")
        return state["results"]

    # --- the import --------------------------------------------------------------------------

    def find_tools(self, target_version):
        """pg_dump and pg_restore of 18 or later (pg_bin_dir, else the target's major version's tools): their
        major version, or None when there are none."""
        explicit = self.p.get("pg_bin_dir")
        dirs = [explicit] if explicit else tools.candidate_bin_dirs(max(target_version // 10000,
                                                                        analyze.IMPORT_MIN_MAJOR))
        for d in dirs:
            major = tools.tool_major(os.path.join(d, "pg_dump"))
            if major and os.access(os.path.join(d, "pg_restore"), os.X_OK):
                if major >= analyze.IMPORT_MIN_MAJOR or explicit:
                    self.tools = dict(bin_dir=d, pg_dump_version=major)
                    return major
        return None

    def import_statistics(self, todo, version):
        """pg_dump --statistics-only of these relations on the source, restored into the target.

        Returns ({left_out: oids not in the dump}, None) or (None, why it failed)."""
        text, left_out = analyze.dump_filter(todo)
        bin_dir = self.tools["bin_dir"]
        src, tgt = self.source, self.target
        self.progress.write(analyze.progress(0, len(todo), time.monotonic() - self.started, [],
                                             "importing the source's statistics (pg_dump --statistics-only)"),
                            force=True)
        with tempfile.TemporaryDirectory(prefix="pgshift-analyze-") as tmp, tools.PgPass([
                (src["login_host"], src["login_port"], src["login_db"], src["login_user"], src["login_password"]),
                (tgt["login_host"], tgt["login_port"], tgt["login_db"], tgt["login_user"],
                 tgt["login_password"])]) as pgpass:
            filter_path = os.path.join(tmp, "tables.filter")
            archive = os.path.join(tmp, "statistics.dump")
            with open(filter_path, "w", encoding="utf-8") as handle:
                handle.write(text)
            dump = [os.path.join(bin_dir, "pg_dump"), "--statistics-only", "--format=custom", "--no-sync",
                    "--filter", filter_path, "--file", archive] + tools.connection_args(src)
            proc = self.tool(dump, src, pgpass.path)
            if proc.returncode != 0:
                return None, "pg_dump exited with %d: %s" % (proc.returncode, self.last_lines(proc.stderr))
            restore = [os.path.join(bin_dir, "pg_restore"), "--statistics-only"] + tools.connection_args(tgt) + [
                archive]
            proc = self.tool(restore, tgt, pgpass.path)
            if proc.returncode != 0:
                # Some statistics could not be restored (a column or an index not on the target): what is still
                # missing is analysed; say what pg_restore said.
                self.warnings.append("pg_restore reported errors while importing statistics (what is still missing "
                                     "is analysed): %s" % self.last_lines(proc.stderr))
        return dict(left_out=set(t["oid"] for t in left_out)), None

    def tool(self, argv, params, pgpass_path):
        self.commands.append(self.scrub(shlex.join(argv)))
        try:
            return subprocess.run(argv, capture_output=True, text=True, env=tools.tool_env(params, pgpass_path),
                                  check=False)
        except OSError as exc:
            return subprocess.CompletedProcess(argv, 127, "", str(exc))

    def last_lines(self, text, count=10):
        lines = [line for line in self.scrub(text or "").strip().splitlines() if line.strip()]
        return " / ".join(lines[-count:]) or "no message"


def module_spec():
    return dict(argument_spec=argument_spec())


def run_module(module):
    problems = option_problems(module.params)
    if problems:
        module.fail_json(msg="invalid options: " + "; ".join(problems))
    runner = Analyze(module.params, check_mode=module.check_mode)
    try:
        result, failed = runner.run()
    except (PgConnectError, AnalyzeError) as exc:
        module.fail_json(msg=scrub(str(exc), runner.secrets))
    except Exception as exc:  # pylint: disable=broad-except  # an unexpected database error: said without any secret
        module.fail_json(msg=scrub("pg_analyze failed: %s" % exc, runner.secrets),
                         exception=scrub(traceback.format_exc(), runner.secrets))
    for warning in runner.warnings:
        module.warn(scrub(warning, runner.secrets))
    if failed:
        module.fail_json(msg="ANALYZE failed on %d table(s): %s" % (len(failed), "; ".join(
            "%s: %s" % (r["table"], r["error"]) for r in failed[:10])), **result)
    module.exit_json(**result)
