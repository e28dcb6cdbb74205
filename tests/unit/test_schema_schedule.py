"""The post stage's scheduling against the initial loads (module_utils/schema/schedule.py), without a database:
a fake clock and a pretend target whose tables finish loading at given times."""

from __future__ import annotations

import json
import threading

import pytest

from ansible_collections.pgshift.aurora.plugins.module_utils import native
from ansible_collections.pgshift.aurora.plugins.module_utils.schema import schedule


class Clock:
    """A fake monotonic clock; sleeping advances it."""

    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now

    def sleep(self, seconds):
        self.now += seconds


class Conn:
    def __init__(self, name):
        self.name = name
        self.closed = False

    def close(self):
        self.closed = True


class Target:
    """A pretend target: each table of stream s1 is copied at a given time (None: never), steps take `costs`
    seconds, `fail` steps raise, and the load's session is there while `alive` says so."""

    def __init__(self, clock, loaded_at=None, costs=None, fail=None, failed_load=None, alive=True):
        self.clock = clock
        self.loaded_at = loaded_at or {}
        self.costs = costs or {}
        self.fail = fail or {}
        self.failed_load = failed_load
        self.alive = alive
        self.calls = []
        self.sessions = []

    def loaded(self, table):
        at = self.loaded_at.get(table)
        return at is not None and self.clock() >= at

    def observe(self, names):
        rows = []
        for table in self.loaded_at:
            state = "copied" if self.loaded(table) else "copying"
            if table == self.failed_load:
                state = "failed"
            rows.append(dict(stream="s1", table_name=table, state=state, finished_at=self.clock(),
                             error="disk full" if state == "failed" else None))
        return rows, [], set(names) if self.alive else set()

    def execute(self, conn, step):
        self.calls.append((self.clock(), conn.name, step["object"]))
        if step.get("table") in self.loaded_at and step["phase"] == "indexes":
            assert self.loaded(step["table"]), "%s built before its table was loaded" % step["object"]
        self.clock.sleep(self.costs.get(step["object"], 1.0))
        if step["object"] in self.fail:
            raise schedule.StepFailed(self.fail[step["object"]])

    def connect(self):
        conn = Conn("worker%d" % len(self.sessions))
        self.sessions.append(conn)
        return conn

    def order(self):
        return [obj for dummy, dummy2, obj in self.calls]

    def started(self, obj):
        return [t for t, dummy, o in self.calls if o == obj][0]


def step(phase, obj, table=None, weight=0, depth=0):
    return dict(phase=phase, kind="index" if phase.startswith("index") else phase, object=obj, sql=None,
                table=table, weight=weight, depth=depth)


PLAN = dict(steps=[
    step("objects", "trigger t1"),
    step("validate", "fk small", weight=10),
    step("indexes", "idx small", table="public.small", weight=10),
    step("constraints", "fk big"),
    step("indexes", "idx big", table="public.big", weight=1000),
    step("indexes_parent", "idx parent depth0", depth=0),
    step("indexes_parent", "idx parent depth1", depth=1),
    step("validate", "fk big", weight=1000),
    step("attach", "attach idx"),
])


def stage(target, clock, plan=None, parallel=1, loads=None, progress=None):
    plan = plan or PLAN
    recorded = []
    runner = schedule.PostStage(dict(steps=[dict(s) for s in plan["steps"]]), target.execute, target.connect,
                                Conn("main"), parallel=parallel, loads=loads, progress=progress,
                                record=recorded.append, database="app", clock=clock, sleep=clock.sleep)
    return runner, recorded


def loads_of(target, clock, timeout=3600, grace=60, refresh=True):
    """The loads as the runner hands them to the post stage: read once."""
    loads = schedule.Loads(["s1"], target.observe, since=0, timeout=timeout, clock=clock, sleep=clock.sleep,
                           grace=grace)
    if refresh:
        loads.refresh()
    return loads


def test_phases_run_in_order_largest_table_first_deepest_parent_first():
    clock = Clock()
    target = Target(clock)
    runner, recorded = stage(target, clock)
    runner.run()
    assert target.order() == ["idx parent depth1", "idx parent depth0", "idx big", "idx small", "attach idx",
                              "fk big", "fk big", "fk small", "trigger t1"]
    assert [[s["object"] for s in done] for done in recorded] == [
        ["idx parent depth1", "idx parent depth0"], ["idx big", "idx small"], ["attach idx"], ["fk big"],
        ["fk big", "fk small"], ["trigger t1"]]
    assert all(s["seconds"] == 1.0 for done in recorded for s in done)
    assert runner.timings == dict(post_indexes_parent=2.0, post_indexes=2.0, post_attach=1.0, post_constraints=1.0,
                                  post_validate=2.0, post_objects=1.0)


def test_serial_phases_use_the_main_session_and_parallel_ones_their_own():
    clock = Clock()
    target = Target(clock)
    runner, dummy = stage(target, clock, parallel=3)
    runner.run()
    sessions = dict((obj, conn) for dummy2, conn, obj in target.calls)
    assert sessions["attach idx"] == "main" and sessions["trigger t1"] == "main"
    assert sessions["idx big"].startswith("worker") and sessions["fk small"].startswith("worker")
    # two steps in a phase: two workers, not three; every worker's session is closed
    assert len(target.sessions) == 4 and all(c.closed for c in target.sessions)
    assert schedule.phase_mode("indexes", 3, 2, False) == "parallel"
    assert schedule.phase_mode("indexes", 1, 2, False) == "serial"
    assert schedule.phase_mode("validate", 3, 1, False) == "serial"
    assert schedule.phase_mode("indexes", 3, 2, True) == "as_loaded"
    assert schedule.phase_mode("constraints", 3, 2, True) == "serial"


def test_during_the_loads_an_index_waits_for_its_table_and_foreign_keys_for_every_load():
    clock = Clock()
    target = Target(clock, loaded_at={"public.small": 1005.0, "public.big": 1030.0})
    loads = loads_of(target, clock)
    assert not loads.state["done"]
    runner, dummy = stage(target, clock, loads=loads)
    runner.run()
    # the small table is loaded first: its index goes before the big one's, though the big one comes first
    assert target.order().index("idx small") < target.order().index("idx big")
    assert target.started("idx small") >= 1005.0 and target.started("idx big") >= 1030.0
    # partitioned indexes ON ONLY need no load; foreign keys start once every load is done
    assert target.started("idx parent depth1") == 1000.0
    assert target.started("attach idx") >= 1030.0 and target.started("fk big") >= 1030.0
    assert loads.state["done"]


def test_with_every_load_done_nothing_waits():
    clock = Clock()
    target = Target(clock, loaded_at={"public.small": 0.0, "public.big": 0.0})
    loads = loads_of(target, clock)
    runner, dummy = stage(target, clock, loads=loads)
    runner.run()
    assert loads.waited == 0.0 and clock() == 1000.0 + 9.0


def test_a_failed_step_stops_after_its_phase_and_says_what_to_do():
    clock = Clock()
    target = Target(clock, fail={"fk big": 'insert or update on table "parcels" violates foreign key constraint'})
    progress = schedule.Progress(None, len(PLAN["steps"]), clock)
    runner, recorded = stage(target, clock, progress=progress)
    with pytest.raises(schedule.PostStopped) as stopped:
        runner.run()
    message = str(stopped.value)
    assert message.startswith("the post stage stopped in phase constraints: constraints fk big: insert or update")
    assert "run the post stage again" in message and "if the streams are still catching up" in message
    assert "trigger t1" not in target.order()
    assert [s["object"] for s in recorded[-1]] == []  # the failed phase did nothing
    assert progress.doing == "stopped"


def test_a_failed_load_stops_the_post_stage():
    clock = Clock()
    target = Target(clock, loaded_at={"public.small": 1000.0, "public.big": None}, failed_load="public.big")
    with pytest.raises(schedule.PostStopped) as stopped:
        loads_of(target, clock)
    assert "the initial load of stream s1 failed on public.big (disk full)" in str(stopped.value)


def test_a_load_without_a_session_has_died():
    clock = Clock()
    target = Target(clock, loaded_at={"public.small": 1000.0, "public.big": None}, alive=False)
    loads = loads_of(target, clock, grace=60)
    runner, dummy = stage(target, clock, loads=loads)
    with pytest.raises(schedule.PostStopped) as stopped:
        runner.run()
    assert "stopped in phase indexes: wait for the initial loads: the initial load of s1 is not loaded" in \
        str(stopped.value)
    assert "no session named '%s'" % native.load_application_name("s1") in str(stopped.value)
    assert clock() - 1000.0 > 60


def test_loads_that_do_not_end_within_the_timeout():
    clock = Clock()
    target = Target(clock, loaded_at={"public.big": None})
    loads = loads_of(target, clock, timeout=30)
    plan = dict(steps=[step("constraints", "fk")])
    runner, dummy = stage(target, clock, plan=plan, loads=loads)
    with pytest.raises(schedule.PostStopped) as stopped:
        runner.run()
    assert "did not end within 30 s (wait_timeout); still loading: public.big" in str(stopped.value)
    assert target.calls == []


def test_the_loads_are_read_at_most_once_per_half_interval():
    clock = Clock()
    target = Target(clock, loaded_at={"public.big": 0.0})
    reads = []

    def observe(names):
        reads.append(clock())
        return target.observe(names)

    loads = schedule.Loads(["s1"], observe, 0, 60, clock=clock, sleep=clock.sleep)
    loads.refresh()
    loads.refresh()
    clock.sleep(schedule.WAIT_INTERVAL)
    loads.refresh()
    assert reads == [1000.0, 1000.0 + schedule.WAIT_INTERVAL]
    assert loads.waiting_for() == "the loads"


def test_a_validation_is_tried_again_while_its_referenced_rows_arrive():
    clock = Clock()
    attempts = []

    class Missing(Exception):
        pass

    def attempt():
        attempts.append(clock())
        if len(attempts) < 4:
            raise Missing()

    tries = schedule.retry_validation(attempt, lambda e: isinstance(e, Missing), clock, clock.sleep, seconds=120)
    assert tries == 3 and [round(t - 1000.0, 2) for t in attempts] == [0.0, 0.5, 1.5, 3.5]

    def broken():
        raise ValueError()

    with pytest.raises(ValueError):
        schedule.retry_validation(broken, lambda e: False, clock, clock.sleep)

    def never():
        raise Missing()

    start = clock()
    with pytest.raises(Missing):
        schedule.retry_validation(never, lambda e: isinstance(e, Missing), clock, clock.sleep, seconds=20)
    assert 20 < clock() - start <= 26


def test_progress_counts_objects_and_has_no_eta_while_waiting(tmp_path):
    assert schedule.objects_progress(10, 4, 2.0, "indexes", False) == dict(
        unit="objects", rows=4, rows_expected=10, rows_per_second=2.0, eta_seconds=3.0, percent=40.0,
        phase="indexes")
    assert schedule.objects_progress(10, 4, 2.0, "waiting for the loads", True)["eta_seconds"] is None
    assert schedule.objects_progress(0, 0, 0.0, "starting", False)["percent"] is None
    clock = Clock()
    path = tmp_path / "sub" / "post.json"
    progress = schedule.Progress(str(path), 3, clock)
    assert json.loads(path.read_text())["phase"] == "starting"
    clock.sleep(2.0)
    progress.now_doing("indexes")
    progress.step_done()
    data = json.loads(path.read_text())
    assert data["phase"] == "indexes" and data["rows_expected"] == 3


SCAN = "building index: scanning table"


def build(pid, index, table, phase=SCAN, **counters):
    row = dict(pid=pid, index=index, table=table, phase=phase)
    row.update(counters)
    return row


def test_the_progress_file_says_how_far_each_index_build_is(tmp_path):
    """A build of a large table is one object for a long time: each look says its phase, how far, its rate
    (between two looks of the same index and phase) and the phase's ETA, the least advanced first."""
    clock = Clock()
    path = tmp_path / "post.json"
    progress = schedule.Progress(str(path), 4, clock)
    progress.now_doing("indexes")
    seen = [[build(11, "public.big_pkey", "public.big", blocks_total=1000, blocks_done=100),
             build(12, None, "public.small", phase="building index: loading tuples in tree", name="index small_idx",
                   tuples_total=400, tuples_done=300)],
            [build(11, "public.big_pkey", "public.big", blocks_total=1000, blocks_done=600),
             build(12, None, "public.small", phase="building index: sorting live tuples", name="index small_idx")],
            []]
    watch = schedule.BuildWatch(lambda: seen.pop(0), progress, clock)
    watch.look()
    phase = json.loads(path.read_text())["phase"]
    # the first look has no rate yet: said, not made up
    assert phase == ("indexes; public.big_pkey on public.big: building index: scanning table  10.0% 800.0 kB/7.8 MB "
                     "- ETA -; index small_idx: building index: loading tuples in tree  75.0% "
                     "300/400 tuples - ETA -"), phase
    clock.sleep(5.0)
    watch.look()
    phase = json.loads(path.read_text())["phase"]
    # 500 blocks in 5 s: 100 blocks (800 kB) a second, 400 blocks left; the sort counts nothing
    assert phase == ("indexes; index small_idx: building index: sorting live tuples, rate - ETA -; "
                     "public.big_pkey on public.big: building index: scanning table  60.0% 4.7 MB/7.8 MB 800.0 kB/s "
                     "ETA 0:00:04"), phase
    watch.look()
    assert json.loads(path.read_text())["phase"] == "indexes"
    # a new phase drops what the last one's builds did, until the next look
    seen.append([build(11, "public.big_pkey", "public.big", blocks_total=1000, blocks_done=600,
                       name="index public.big_pkey")])
    watch.look()
    progress.now_doing("indexes; waiting for the loads")  # within a phase the builds stay
    assert json.loads(path.read_text())["phase"].startswith("indexes; waiting for the loads; index public.big_pkey")
    progress.new_phase("foreign key validation")
    assert json.loads(path.read_text())["phase"] == "foreign key validation"


def test_the_builds_shown_are_capped_with_how_many_more():
    builds = [build(i, "public.i%d" % i, "public.t", blocks_total=10, blocks_done=i) for i in range(1, 6)]
    text = schedule.progress_text.index_builds_text(builds, {}, limit=2)
    assert text.startswith("public.i1 on public.t: ") and "; public.i2 on public.t: " in text
    assert text.endswith("; and 3 more build(s)") and "public.i3" not in text
    assert schedule.progress_text.index_builds_text([], {}) == ""
    # before the index exists (its first phase) the build is named by its table
    assert schedule.progress_text.index_builds_text([build(1, None, "public.t", phase="initializing")], {}) == \
        "an index on public.t: initializing, rate - ETA -"


class Watched:
    """What a BuildWatch running in its thread did: the looks it took, the stage's steps it saw."""

    def __init__(self, fail_at=None):
        self.looks = 0
        self.fail_at = fail_at
        self.looked = threading.Event()

    def observe(self):
        self.looks += 1
        self.looked.set()
        if self.fail_at is not None and self.looks >= self.fail_at:
            raise RuntimeError("terminating connection due to administrator command\nDETAIL: more")
        return [build(7, "public.big_pkey", "public.big", blocks_total=10, blocks_done=5)]


def run_watched(tmp_path, watched):
    """The stage of PLAN with a BuildWatch over watched.observe, its first step lasting until the watch has looked:
    (the watch, the progress file's last content)."""
    clock = Clock()
    path = tmp_path / "post.json"
    progress = schedule.Progress(str(path), len(PLAN["steps"]), clock)
    watch = schedule.BuildWatch(watched.observe, progress, clock, interval=0.001)
    target = Target(clock)
    real_execute = target.execute

    def execute(conn, step):
        assert watched.looked.wait(30), "the watch never looked while the stage ran"
        real_execute(conn, step)
    runner = schedule.PostStage(dict(steps=[dict(s) for s in PLAN["steps"]]), execute, target.connect,
                                Conn("main"), progress=progress, clock=clock, sleep=clock.sleep, watch=watch)
    runner.run()
    assert not watch.thread.is_alive()
    return watch, json.loads(path.read_text())


def test_a_stage_with_a_watch_looks_while_it_runs_and_clears_the_builds_at_its_end(tmp_path):
    watched = Watched()
    watch, final = run_watched(tmp_path, watched)
    assert watched.looks >= 1 and watch.error is None
    assert final["phase"] == "done" and final["rows"] == len(PLAN["steps"])


def test_a_watch_that_cannot_look_stops_and_the_stage_goes_on(tmp_path):
    watched = Watched(fail_at=1)
    watch, final = run_watched(tmp_path, watched)
    assert watched.looks == 1 and watch.error == "terminating connection due to administrator command"
    assert final["phase"] == "done" and final["rows"] == len(PLAN["steps"])


def test_a_look_that_hangs_does_not_hold_the_end_of_the_stage(tmp_path):
    clock = Clock()
    progress = schedule.Progress(str(tmp_path / "post.json"), 1, clock)
    entered, release = threading.Event(), threading.Event()

    def observe():
        entered.set()
        release.wait(30)  # a server that does not answer
        return []
    watch = schedule.BuildWatch(observe, progress, clock, interval=0.001)
    watch.start()
    assert entered.wait(30)
    watch.stop(timeout=0.05)
    assert watch.thread.is_alive() and watch.thread.daemon  # left behind, the process may end
    assert json.loads((tmp_path / "post.json").read_text())["phase"] == "starting"
    release.set()
    watch.thread.join(30)
    assert not watch.thread.is_alive()
