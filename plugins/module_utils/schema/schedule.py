# -*- coding: utf-8 -*-
# Copyright: pgshift.aurora contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Scheduling the post stage (pg_schema_copy stage post) against the initial loads, in one place.

- the phases in order, which run over `parallel` connections, in which order their steps start;
- with loads running (wait_for_streams): an index starts as soon as its table is loaded (``Loads``: the
  loads' state from native.load_readiness, a load that died, the deadline), foreign keys and everything
  after wait until every load is done;
- a foreign key validation that meets a row still being replicated is tried again (``retry_validation``);
- the progress file's content (``Progress``), with the index builds its sessions run (``BuildWatch``).

No I/O of its own: the world is given - ``execute(conn, step)`` runs a step, ``connect()`` opens a worker's
session, ``observe(names)`` reads the loads, ``clock``/``sleep`` tell and pass the time - so that
tests/unit/test_schema_schedule.py runs it with a fake clock and a pretend target.
"""

from __future__ import annotations

import threading
import time

from ansible_collections.pgshift.aurora.plugins.module_utils import native, progress as progress_text
from ansible_collections.pgshift.aurora.plugins.module_utils.progress import ProgressFile

PHASES = ["indexes_parent", "indexes", "attach", "constraints", "validate", "objects"]
PARALLEL_PHASES = frozenset(["indexes", "validate"])
# Phases that run while the loads go on: partitioned indexes ON ONLY (instant) and each table's indexes once the
# table is loaded; every later phase waits for every load.
DURING_LOADS = frozenset(["indexes_parent", "indexes"])
PHASE_NAMES = dict(indexes_parent="partitioned indexes", indexes="indexes", attach="index attachments",
                   constraints="foreign keys (NOT VALID)", validate="foreign key validation",
                   objects="triggers and other objects")
WAIT_INTERVAL = 0.2  # seconds between two looks at the loads' progress
LOAD_GRACE_SECONDS = 60  # a load not done with no session for this long has died
FK_RETRY_SECONDS = 120  # how long a foreign key validation waits for a referenced row still being replicated
BUILD_INTERVAL = 1.0  # seconds between two looks at the index builds of the post stage's sessions
STOP_SECONDS = 10.0  # how long the end of the post stage waits for a look in flight


class StepFailed(Exception):
    """A step (or a worker's connection) that failed; the message is what to report (secrets masked)."""


class PostStopped(Exception):
    """The post stage stopped; the message says why and what to do."""


def phase_steps(plan, phase):
    """The steps of one phase in the order they start."""
    steps = [s for s in plan["steps"] if s["phase"] == phase]
    if phase in PARALLEL_PHASES:
        # Largest tables first: the long builds start early and the pool ends evenly.
        steps.sort(key=lambda s: -(s.get("weight") or 0))
    elif phase == "indexes_parent":
        steps.sort(key=lambda s: s.get("depth") or 0, reverse=True)
    return steps


def phase_mode(phase, parallel, count, during_loads):
    """How a phase runs: 'as_loaded' (parallel, each step once its table is loaded), 'parallel' or 'serial'."""
    if phase == "indexes" and during_loads:
        return "as_loaded"
    if phase in PARALLEL_PHASES and parallel > 1 and count > 1:
        return "parallel"
    return "serial"


def stopped_message(phase, errors):
    """The error of a phase whose steps failed: [(step, error)]."""
    hint = ""
    if any("violates foreign key constraint" in err for dummy, err in errors):
        hint = (" A foreign key found rows whose referenced rows are not on the target: if the streams are still "
                "catching up, run the post stage again once they are; if it stays, the target lacks rows of the "
                "source (validate.yml lists them).")
    return ("the post stage stopped in phase %s: %s. What was built stays; run the post stage again to build the "
            "rest.%s" % (phase, "; ".join("%s %s: %s" % (s["kind"], s["object"], err) for s, err in errors[:10]),
                         hint))


def retry_validation(attempt, retryable, clock=time.monotonic, sleep=time.sleep, seconds=FK_RETRY_SECONDS):
    """Run attempt() until it succeeds; an error retryable(exc) says may pass later (a referenced row that another
    stream has not applied yet: the streams load from snapshots taken one after the other and catch up each on
    its own) is tried again with a growing pause (0.5 s, 1 s, 2 s, 4 s, then 5 s) for `seconds` at most.
    Returns how many retries it took."""
    deadline = clock() + seconds
    tries = 0
    while True:
        try:
            attempt()
            return tries
        except Exception as exc:
            if not retryable(exc) or clock() > deadline:
                raise
            tries += 1
            sleep(min(5.0, 0.25 * 2 ** tries))


def objects_progress(total, done, elapsed, doing, waiting, detail=""):
    """What the post stage's progress file holds: the same keys as pg_validate's (job_progress prints them);
    detail: what its index builds are doing (BuildWatch), after what it does."""
    rate = done / elapsed if elapsed > 0 else 0.0
    left = max(0, total - done)
    eta = None if waiting or rate <= 0 else round(left / rate, 1)
    return dict(unit="objects", rows=done, rows_expected=total, rows_per_second=round(rate, 2), eta_seconds=eta,
                percent=round(100.0 * done / total, 1) if total else None,
                phase="%s; %s" % (doing, detail) if detail else doing)


class Progress:
    """The post stage's progress (progress_file): objects built of how many, their rate, an ETA, and what it does
    or waits for; rewritten at most once a second, and at once when what it does changes. Thread-safe."""

    def __init__(self, path, total, clock=time.monotonic):
        self.file = ProgressFile(path)
        self.total = total
        self.clock = clock
        self.done = 0
        self.doing = "starting"
        self.waiting = False
        self.detail = ""
        self.started = clock()
        self.lock = threading.Lock()
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

    def new_phase(self, text):
        """A phase starts: what the builds of the last one did is dropped (the next look says what runs now)."""
        with self.lock:
            self.detail = ""
        self.now_doing(text)

    def set_detail(self, text):
        """What the index builds are doing now ('' when none runs): written at once when it changed."""
        with self.lock:
            changed = text != self.detail
            self.detail = text
        self.write(force=changed)

    def snapshot(self):
        with self.lock:
            return objects_progress(self.total, self.done, self.clock() - self.started, self.doing, self.waiting,
                                    self.detail)

    def write(self, force=False):
        if self.file.path:
            self.file.write(self.snapshot(), force=force)


class BuildWatch:
    """The index builds the post stage's own sessions run, in its progress file: a build of a large table is one
    object for an hour, so the file also says how far each build is, its rate and its ETA.

    observe() -> [{'pid', 'name' (what it builds), and pg_stat_progress_create_index's phase and counters}] of
    the stage's sessions; looked at every `interval` seconds in a thread of its own between start() and stop(). A
    look that fails ends the watch, not the stage: `error` keeps what it said, for a warning."""

    def __init__(self, observe, progress, clock=time.monotonic, interval=BUILD_INTERVAL):
        self.observe = observe
        self.progress = progress
        self.clock = clock
        self.interval = interval
        self.previous, self.previous_at = {}, None
        self.error = None
        self.stopping = threading.Event()
        self.thread = None

    def look(self):
        """One look: the builds, each one's rate since the last look (same index, same phase), into the file."""
        builds = self.observe()
        now = self.clock()
        current = {}
        for b in builds:
            current[b["pid"]] = (b.get("name") or b.get("index"), b.get("phase"), progress_text.index_build_units(b)[0])
        rates = {} if self.previous_at is None else progress_text.index_rates(self.previous, current,
                                                                              now - self.previous_at)
        self.previous, self.previous_at = current, now
        self.progress.set_detail(progress_text.index_builds_text(builds, rates))

    def _run(self):
        while not self.stopping.wait(self.interval):
            try:
                self.look()
            except Exception as exc:  # the stage goes on without it; the runner warns
                self.error = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                return

    def start(self):
        self.thread = threading.Thread(target=self._run, name="post-stage-build-watch", daemon=True)
        self.thread.start()

    def stop(self, timeout=STOP_SECONDS):
        """Ends the looks; a look still waiting for the server after `timeout` s is left behind (a daemon thread)."""
        self.stopping.set()
        if self.thread is not None:
            self.thread.join(timeout)
        self.progress.set_detail("")


class Loads:
    """The initial loads of some streams, seen from the post stage: which tables are loaded (native.load_readiness
    over pgshift.load_progress and pgshift.deferred_keys). Thread-safe: however many workers ask, the loads are
    read at most once per half WAIT_INTERVAL.

    observe(application names) -> (load_progress rows, deferred keys, the names that have a session on the target);
    since: the target's clock when the post stage started (a failure recorded before belongs to an earlier run).
    refresh() raises PostStopped when a load failed, died (no session for LOAD_GRACE_SECONDS) or the timeout passed.
    """

    def __init__(self, streams, observe, since, timeout, clock=time.monotonic, sleep=time.sleep,
                 grace=LOAD_GRACE_SECONDS, interval=WAIT_INTERVAL):
        self.streams = list(streams)
        self.observe = observe
        self.since = since
        self.timeout = timeout
        self.clock = clock
        self.sleep = sleep
        self.grace = grace
        self.interval = interval
        self.deadline = clock() + timeout
        self.lock = threading.Lock()
        self.state = None
        self.waited = 0.0
        self.last_alive = {}
        self.names = dict((native.load_application_name(s), s) for s in self.streams)
        self.refreshed_at = None

    def refresh(self):
        """Reads the loads' state again (at most once per half interval)."""
        with self.lock:
            if self.refreshed_at is not None and self.clock() - self.refreshed_at < self.interval / 2:
                return
            self.refreshed_at = self.clock()
            rows, keys, sessions = self.observe(sorted(self.names))
            self.state = native.load_readiness(rows, keys, self.streams, self.since)
            alive = set(self.names[n] for n in sessions if n in self.names)
            stalled = native.stalled_loads(self.state["pending"], alive, self.last_alive, self.clock(), self.grace)
            if stalled:
                raise PostStopped("the initial load of %s is not loaded and has not been running for %d s (no "
                                  "session named '%s' on the target): the post stage stops; what it built stays, "
                                  "run it again with the loads" % (", ".join(stalled), self.grace,
                                                                   native.load_application_name(stalled[0])))
            if self.state["failed"]:
                stream, table, error = self.state["failed"][0]
                raise PostStopped("the initial load of stream %s failed on %s (%s): the post stage stops; what it "
                                  "built stays, run it again with the loads" % (stream, table, error))
            if self.clock() > self.deadline:
                raise PostStopped("the initial loads of %s did not end within %d s (wait_timeout); still loading: "
                                  "%s" % (", ".join(self.streams), self.timeout,
                                          ", ".join(sorted(self.state["loading"])[:10]) or
                                          "streams not started: " + ", ".join(
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

    def wait_all(self, progress):
        """Returns once every load is done."""
        start = self.clock()
        self.refresh()
        while not self.state["done"]:
            progress.now_doing("waiting for the loads (%s)" % self.waiting_for(), waiting=True)
            self.sleep(self.interval)
            self.refresh()
        self.waited += self.clock() - start


class PostStage:
    """Runs the post stage's plan phase by phase.

    execute(conn, step): runs one step, raises StepFailed; connect(): a worker's session (raises StepFailed);
    conn: the session the serial phases run on; loads: a Loads when the post stage runs during the loads;
    record(steps): called with the steps each phase did; timings: {name: seconds}, post_<phase> added;
    watch: a BuildWatch, running while the stage runs.
    run() raises PostStopped at the first phase with a failed step, after what was started has ended.
    """

    def __init__(self, plan, execute, connect, conn, parallel=1, loads=None, progress=None, record=None,
                 database=None, clock=time.monotonic, sleep=time.sleep, watch=None):
        self.plan = plan
        self.execute = execute
        self.connect = connect
        self.conn = conn
        self.parallel = parallel
        self.loads = loads
        self.progress = progress or Progress(None, len(plan["steps"]), clock)
        self.record = record or (lambda steps: None)
        self.database = database
        self.clock = clock
        self.sleep = sleep
        self.watch = watch
        self.timings = {}

    def run(self):
        finished = False
        if self.watch is not None:
            self.watch.start()
        try:
            for phase in PHASES:
                steps = phase_steps(self.plan, phase)
                if not steps:
                    continue
                if self.loads is not None and phase not in DURING_LOADS:
                    self.loads.wait_all(self.progress)
                self.progress.new_phase(PHASE_NAMES.get(phase, phase))
                start = self.clock()
                mode = phase_mode(phase, self.parallel, len(steps), self.loads is not None)
                if mode == "serial":
                    done, errors = self.run_serial(steps)
                else:
                    done, errors = self.run_parallel(steps, self.loads if mode == "as_loaded" else None)
                name = "post_" + phase
                self.timings[name] = round(self.timings.get(name, 0) + self.clock() - start, 3)
                self.record(done)
                if errors:
                    raise PostStopped(stopped_message(phase, errors))
            finished = True
        finally:
            if self.watch is not None:
                self.watch.stop()
            self.progress.now_doing("done" if finished else "stopped")

    def step(self, conn, step):
        start = self.clock()
        self.execute(conn, step)
        step["seconds"] = round(self.clock() - start, 3)
        self.progress.step_done()

    def run_serial(self, steps):
        done, errors = [], []
        for step in steps:
            try:
                self.step(self.conn, step)
                done.append(step)
            except StepFailed as exc:
                errors.append((step, str(exc)))
                break
        return done, errors

    def run_parallel(self, steps, loads=None):
        """The steps over `parallel` sessions, in their order; the first error stops new starts. With loads, a
        step starts only once its table is loaded, the others going first."""
        lock = threading.Lock()
        pending = list(steps)
        done, errors = [], []

        def take():
            for i, step in enumerate(pending):
                if loads is None or loads.ready(step):
                    return pending.pop(i)
            return None

        def worker():
            try:
                conn = self.connect()
            except StepFailed as exc:
                with lock:
                    errors.append((dict(kind="connection", object=self.database), str(exc)))
                return
            try:
                while True:
                    with lock:
                        if errors or not pending:
                            return
                        step = take()
                    if step is None:  # every step left waits for its table's load
                        self.progress.now_doing("indexes of the loaded tables; waiting for %s" % loads.waiting_for(),
                                                waiting=True)
                        self.sleep(WAIT_INTERVAL)
                        try:
                            loads.refresh()
                        except PostStopped as exc:
                            with lock:
                                errors.append((dict(kind="wait for", object="the initial loads"), str(exc)))
                        continue
                    if loads is not None:
                        self.progress.now_doing(PHASE_NAMES["indexes"])
                    try:
                        self.step(conn, step)
                        with lock:
                            done.append(step)
                    except StepFailed as exc:
                        with lock:
                            errors.append((step, str(exc)))
            finally:
                conn.close()

        threads = [threading.Thread(target=worker) for dummy in range(max(1, min(self.parallel, len(steps))))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        return done, errors
