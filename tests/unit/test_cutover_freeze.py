"""The crash-safe, bounded freeze without a database: the budget inside a step (fake clock), the journal's
decisions (cutover.py), the bounded connection (_pg/freeze.py) and the recovery runner with a fake world."""

from __future__ import annotations

import datetime

import psycopg
import pytest

from ansible_collections.pgshift.aurora.plugins.module_utils import cutover, journal
from ansible_collections.pgshift.aurora.plugins.module_utils._pg import freeze as db
from ansible_collections.pgshift.aurora.plugins.module_utils.runners import freeze as runner


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now

    def advance(self, seconds):
        self.now += seconds


def machine(clock, actions=None, freeze_timeout=5.0, rehearsal=False, hooks=None, undo=None):
    calls = []

    def step(name):
        def run(m):
            calls.append(name)
            clock.advance(0.01)
            return {}
        return run
    acts = dict((s, step(s)) for s in cutover.STEPS)
    acts.update(actions or {})
    undos = dict((s, step("undo_" + s)) for s in cutover.UNDOABLE)
    undos.update(undo or {})
    m = cutover.Machine(cutover.plan_steps(rehearsal), acts, undo=undos, hooks=hooks, freeze_timeout=freeze_timeout,
                        clock=clock, rehearsal=rehearsal)
    m.calls = calls
    return m


# --------------------------------------------------------------------------------------------
# The budget within a step
# --------------------------------------------------------------------------------------------

def test_statements_get_the_budget_left_only_inside_the_freeze_before_the_switch():
    clock = Clock()
    seen = {}

    def record(step):
        def run(m):
            clock.advance(1.0)
            seen[step] = m.statement_budget_ms("SELECT 1")
            seen[step + "_wait"] = m.wait_limit(30)
            return {}
        return run
    m = machine(clock, dict((s, record(s)) for s in ("preflight", "freeze", "barrier", "switch", "replication")),
                freeze_timeout=10.0)
    result = m.run()
    assert result["status"] == "switched"
    assert seen["preflight"] is None and seen["preflight_wait"] == 30
    assert seen["freeze"] == 9000 and seen["freeze_wait"] == pytest.approx(9.0)  # the freeze started at its action
    assert seen["barrier"] == 8000 and seen["barrier_wait"] == pytest.approx(8.0)
    # the switch is never cut short half way, nor what comes after it
    assert seen["switch"] is None and seen["replication"] is None and seen["replication_wait"] == 30
    assert cutover.BOUNDED == ("freeze", "barrier", "sequences", "finishing", "verify", "return_path")


def test_a_spent_budget_stops_the_step_at_its_next_statement_and_undoes_the_freeze():
    clock = Clock()
    ran = []

    def finishing(m):
        for n in range(10):
            what = "REFRESH MATERIALIZED VIEW public.mv%d" % n
            m.statement_budget_ms(what)  # raises once the budget is spent: the statement never starts
            ran.append(what)
            clock.advance(1.5)
        return {}
    m = machine(clock, dict(finishing=finishing), freeze_timeout=5.0)
    result = m.run()
    assert result["status"] == "aborted" and result["failed_step"] == "finishing"
    assert len(ran) == 4  # 0.01 (freeze) + 3 x 0.01 + 4 x 1.5 > 5
    assert "ran out in step finishing before REFRESH MATERIALIZED VIEW public.mv4" in result["reason"]
    assert "freeze_timeout 5" in result["reason"]
    failed = [e for e in result["timeline"] if e["status"] == "failed"][0]
    assert failed["detail"] == dict(statement="REFRESH MATERIALIZED VIEW public.mv4")
    assert [u["step"] for u in result["undone"]] == ["freeze"]
    assert "verify" not in m.calls


def test_undo_runs_unbounded_even_with_the_budget_spent():
    clock = Clock()
    seen = []

    def barrier(m):
        clock.advance(6.0)
        raise cutover.StepFailed("barrier not reached")

    def undo_freeze(m):
        seen.append(m.statement_budget_ms("ALTER ROLE app IN DATABASE app RESET default_transaction_read_only"))
        seen.append(m.wait_limit(10))
        return {}
    result = machine(clock, dict(barrier=barrier), undo=dict(freeze=undo_freeze)).run()
    assert result["status"] == "aborted" and seen == [None, 10]


def test_hooks_inside_the_freeze_wait_at_most_the_budget_left():
    clock = Clock()
    limits = []

    def hook(m):
        limits.append(m.wait_limit(60))
    m = machine(clock, hooks=dict(before_freeze=hook, before_barrier=hook, after_switch=hook), freeze_timeout=4.0)
    m.run()
    assert limits[0] == 60  # before the freeze
    assert limits[1] == pytest.approx(4.0 - 0.01)
    assert limits[2] == 60  # after the switch


def test_statement_timeout_ms():
    assert cutover.statement_timeout_ms(2.5, "SELECT 1", "verify", 5) == 2500
    assert cutover.statement_timeout_ms(0.0001, "SELECT 1", "verify", 5) == 1
    with pytest.raises(cutover.OverBudget, match="ran out in step verify before SELECT 1"):
        cutover.statement_timeout_ms(0, "SELECT 1", "verify", 5)


# --------------------------------------------------------------------------------------------
# The bounded connection
# --------------------------------------------------------------------------------------------

class FakeConn:
    def __init__(self, fail=None):
        self.executed = []
        self.fail = fail or {}
        self.closed = False
        self.info = "info"

    def execute(self, query, params=None, **kwargs):
        self.executed.append((str(query), params))
        if str(query) in self.fail:
            raise self.fail[str(query)]
        return "cursor"


def test_bounded_sets_the_timeouts_again_only_when_the_budget_moved_and_resets_them_after():
    budget = dict(ms=3000)
    conn = FakeConn()
    b = db.Bounded(conn, lambda what: budget["ms"], "target", slack_ms=50)
    assert b.execute("SELECT 1") == "cursor" and b.info == "info"
    budget["ms"] = 2980
    b.execute("SELECT 2")
    budget["ms"] = 2900
    b.execute("SELECT 3")
    budget["ms"] = None
    b.execute("SELECT 4")
    b.execute("SELECT 5")
    sent = [e[0] for e in conn.executed]
    assert sent == ["SELECT set_config('statement_timeout', %s, false), set_config('lock_timeout', %s, false)",
                    "SELECT 1", "SELECT 2",
                    "SELECT set_config('statement_timeout', %s, false), set_config('lock_timeout', %s, false)",
                    "SELECT 3", "RESET statement_timeout; RESET lock_timeout", "SELECT 4", "SELECT 5"]
    assert conn.executed[0][1] == ("3000", "3000") and conn.executed[3][1] == ("2900", "2900")


@pytest.mark.parametrize("error,kind", [(psycopg.errors.QueryCanceled, "statement_timeout"),
                                        (psycopg.errors.LockNotAvailable, "lock_timeout")])
def test_a_statement_cut_short_names_itself(error, kind):
    query = "SELECT count(*) FROM ONLY public.quiet"
    conn = FakeConn(fail={query: error("canceling statement due to %s\nCONTEXT: x" % kind.replace("_", " "))})
    b = db.Bounded(conn, lambda what: 1234, "target")
    with pytest.raises(db.StatementTimeout) as caught:
        b.execute(query)
    assert str(caught.value).startswith("on the target, %s cut short SELECT count(*) FROM ONLY public.quiet after "
                                        "1234 ms" % kind)
    assert caught.value.detail == dict(statement=query, side="target", timeout=kind, timeout_ms=1234)


def test_without_a_budget_errors_are_the_servers():
    conn = FakeConn(fail={"SELECT 1": psycopg.errors.QueryCanceled("canceling statement due to user request")})
    with pytest.raises(psycopg.errors.QueryCanceled):
        db.Bounded(conn, lambda what: None, "source").execute("SELECT 1")


def test_a_spent_budget_raises_before_the_statement():
    conn = FakeConn()

    def spent(what):
        raise cutover.OverBudget("ran out before %s" % what)
    with pytest.raises(cutover.OverBudget, match="before SELECT 1"):
        db.Bounded(conn, spent, "source").execute("SELECT 1")
    assert conn.executed == []


# --------------------------------------------------------------------------------------------
# The journal's decisions
# --------------------------------------------------------------------------------------------

T0 = datetime.datetime(2026, 1, 2, 3, 4, 5, tzinfo=datetime.timezone.utc)


def entry(method="read_only", run_id="r1", started_at=T0, **restore):
    done, rest = cutover.freeze_journal_entry(method, "app", dict(database="app", host="127.0.0.1", port=6432,
                                                                  admin_user="pgb", admin_password="never"),
                                              restore.get("roles"))
    return dict(id="e-" + run_id, run_id=run_id, method=method, side="source", direction="forward", done=done,
                restore=rest, started_at=started_at, finished_at=None, undone_at=None)


def test_the_journal_entry_holds_what_undoes_the_freeze_and_no_password():
    e = entry("pgbouncer")
    assert e["done"] == dict(pause="app")
    assert e["restore"] == dict(pgbouncer=dict(database="app", host="127.0.0.1", port=6432, admin_user="pgb"))
    assert "never" not in repr(e)
    e = entry("read_only", roles=dict(app="off", batch=None))
    assert e["done"] == dict(read_only_roles=["app", "batch"], database="app")
    assert e["restore"] == dict(roles=dict(app="off", batch=None), database="app")
    assert cutover.freeze_journal_entry("command", "app") == (dict(command="freeze_command"),
                                                              dict(command="unfreeze_command"))


def test_undo_steps_put_back_exactly_what_was_there():
    assert cutover.freeze_undo_steps(entry("pgbouncer")) == [dict(do="resume", database="app", host="127.0.0.1",
                                                                  port=6432, admin_user="pgb")]
    steps = cutover.freeze_undo_steps(entry("read_only", roles=dict(app="off", batch=None)))
    assert steps == [dict(do="role_setting", role="app", database="app", value="off"),
                     dict(do="role_setting", role="batch", database="app", value=None),
                     dict(do="end_sessions", roles=["app", "batch"], database="app", since=T0)]
    assert cutover.freeze_undo_steps(entry("command")) == [dict(do="command")]


def test_open_freezes_newest_first():
    later = T0 + datetime.timedelta(seconds=5)
    entries = [entry(run_id="a"), dict(entry(run_id="b", started_at=later)),
               dict(entry(run_id="c"), undone_at=later), dict(entry(run_id="d"), finished_at=later)]
    assert [e["run_id"] for e in cutover.open_freezes(entries)] == ["b", "a"]


def test_what_an_unfinished_entry_means():
    ro = entry("read_only", roles=dict(app=None))
    # its run still connected: not ours to touch
    d = cutover.freeze_recovery(ro, False, True)
    assert d["action"] == "wait" and d["steps"] == [] and "still connected" in d["note"]
    # died inside the freeze: undone
    d = cutover.freeze_recovery(ro, False, False)
    assert d["action"] == "undo" and d["outcome"] == "undone" and d["steps"] == cutover.freeze_undo_steps(ro)
    # died in the switch after logging it: a read-only fence stays, PgBouncer is resumed where it points
    d = cutover.freeze_recovery(ro, True, False)
    assert d["outcome"] == "switched" and d["steps"] == [] and "read-only" in d["note"]
    pgb = entry("pgbouncer")
    d = cutover.freeze_recovery(pgb, True, False)
    assert d["outcome"] == "switched" and d["steps"][0]["do"] == "resume"
    d = cutover.freeze_recovery(entry("command"), True, False)
    assert d["steps"] == [] and "unfreeze_command not run" in d["note"]


# --------------------------------------------------------------------------------------------
# Materialized views: refreshed before the freeze, inside it only when changed
# --------------------------------------------------------------------------------------------

A, B, C, D = ("s", "a"), ("s", "b"), ("s", "c"), ("s", "d")


def test_matview_order_puts_what_is_read_first():
    reads = {A: [B], B: [C], D: []}
    assert cutover.matview_order([A, B, C, D], reads) == [C, B, A, D]
    assert cutover.matview_order([A, B], {A: [B], B: [A]}) == [B, A]  # a cycle cannot hang it


def test_only_changed_matviews_and_those_reading_them_are_refreshed_again():
    before = {A: "1:5", B: "2:7", C: "3:1", D: "4:0"}
    now = dict(before)
    reads = {A: [B], B: [], C: [], D: []}
    assert cutover.matviews_to_refresh(before, now, reads) == []
    now = dict(before)
    now[B] = "2:8"
    assert cutover.matviews_to_refresh(before, now, reads) == [B, A]
    # unknown fingerprint (a function, a foreign table) or a view made since the preflight: refreshed
    now = dict(before)
    now[D] = None
    assert cutover.matviews_to_refresh(before, now, reads) == [D]
    assert cutover.matviews_to_refresh({}, before, reads) == [B, A, C, D]


def test_report_says_what_was_recovered():
    report = dict(direction="forward", migration="m", status="switched", old_side="source", new_side="target",
                  freeze_method="pgbouncer", switch_method="pgbouncer", engine="native", timeline=[],
                  recovered=[dict(run_id="r0", method="read_only", side="source", started_at="2026-01-02T03:04:05",
                                  note="undone: run r0 died inside its read_only freeze")])
    text = cutover.render_markdown(report)
    assert "## Unfinished freezes undone before this run (1)" in text
    assert "- run `r0` (read_only freeze of the source, started 2026-01-02T03:04:05): undone" in text
    assert "Unfinished freezes" not in cutover.render_markdown(dict(report, recovered=[]))


# --------------------------------------------------------------------------------------------
# The recovery runner with a fake world
# --------------------------------------------------------------------------------------------

class World:
    def __init__(self, monkeypatch, entries, switch_logged=False):
        self.entries = entries  # side -> [entry]
        self.switch_logged = switch_logged
        self.closed, self.statements, self.resumed, self.ended = [], [], [], []
        monkeypatch.setattr(db, "open_freezes", self.open_freezes)
        monkeypatch.setattr(db, "other_open_freezes", lambda conn, m: [])
        monkeypatch.setattr(db, "switch_logged", lambda conn, m, run: self.switch_logged)
        monkeypatch.setattr(db, "close_freeze", self.close)
        monkeypatch.setattr(db, "set_role_setting", self.set_role)
        monkeypatch.setattr(db, "terminate_sessions", self.terminate)

    def open_freezes(self, conn, migration):
        return [e for e in self.entries.get(conn, []) if not e.get("closed")]

    def close(self, conn, entry_id, outcome, journal, note=""):
        self.closed.append((conn, entry_id, outcome))

    def set_role(self, conn, role, database, value, journal):
        self.statements.append((conn, role, database, value))

    def terminate(self, conn, roles, journal, database, since=None):
        self.ended.append((conn, tuple(roles), database, since))
        return [11], []

    def at(self, coords):
        world = self

        class Console:
            def resume(self, database):
                world.resumed.append((coords["host"], coords["port"], database))

            def close(self):
                pass
        return Console()


def freezer(world, clock=None, **params):
    p = dict(migration="m", freeze_method="read_only", freeze_timeout=5.0, app_roles=["app"], direction="forward",
             unfreeze_command=None)
    p.update(params)
    clock = clock or Clock()
    return runner.freeze_for(p["freeze_method"], lambda side: side, journal.Journal(),
                             lambda cmd, what: dict(command=cmd), world, p, "new-run", "source", clock=clock,
                             sleep=clock.advance)


def test_recover_undoes_a_dead_runs_freezes_on_both_sides(monkeypatch):
    ro = dict(entry("read_only", run_id="r1", roles=dict(app="off")), owner_alive=False, owner_pid=1)
    pgb = dict(entry("pgbouncer", run_id="r2"), side="target", owner_alive=False, owner_pid=2)
    world = World(monkeypatch, dict(source=[ro], target=[pgb]))
    found, warnings = freezer(world).recover()
    assert [(f["side"], f["run_id"], f["outcome"]) for f in found] == [("source", "r1", "undone"),
                                                                       ("target", "r2", "undone")]
    assert world.statements == [("source", "app", "app", "off")]
    assert world.ended == [("source", ("app",), "app", T0)]
    assert world.resumed == [("127.0.0.1", 6432, "app")]
    assert world.closed == [("source", "e-r1", "undone"), ("target", "e-r2", "undone")]
    assert found[0]["steps"][0] == "role app in database app: default_transaction_read_only = off"


def test_check_mode_only_says_what_it_would_undo(monkeypatch):
    ro = dict(entry("read_only", run_id="r1", roles=dict(app=None)), owner_alive=False, owner_pid=1)
    world = World(monkeypatch, dict(source=[ro]))
    found = freezer(world).recover(check_mode=True)[0]
    assert found[0]["steps"][0] == "role app in database app: default_transaction_read_only RESET"
    assert world.statements == [] and world.closed == []


def test_a_run_still_in_its_freeze_is_waited_for_then_refused(monkeypatch):
    alive = dict(entry("pgbouncer", run_id="r1"), owner_alive=True, owner_pid=4242)
    world = World(monkeypatch, dict(source=[alive]))
    clock = Clock()
    with pytest.raises(cutover.StepFailed, match="run r1 is still connected.*pid 4242"):
        freezer(world, clock).recover(wait=3.0)
    assert clock.now >= 103.0 and world.resumed == []


def test_a_run_that_ends_its_own_freeze_meanwhile_is_left_alone(monkeypatch):
    alive = dict(entry("pgbouncer", run_id="r1"), owner_alive=True, owner_pid=4242)
    world = World(monkeypatch, dict(source=[alive]))
    clock = Clock()

    def sleep(seconds):
        clock.advance(seconds)
        alive["closed"] = True  # that run undid its freeze
    f = freezer(world, clock)
    f.sleep = sleep
    assert f.recover(wait=3.0) == ([], [])
    assert world.resumed == [] and world.closed == []


def test_a_command_freeze_needs_unfreeze_command_to_recover(monkeypatch):
    cmd = dict(entry("command", run_id="r1"), owner_alive=False, owner_pid=1)
    world = World(monkeypatch, dict(source=[cmd]))
    with pytest.raises(cutover.StepFailed, match="give unfreeze_command"):
        freezer(world).recover()
    found = freezer(world, unfreeze_command="resume-writes").recover()[0]
    assert found[0]["done"]["commands"] == 1


def test_sessions_not_gone_after_the_wait_are_reported_not_ended(monkeypatch):
    class Cur:
        def __init__(self, value):
            self.value = value

        def fetchone(self):
            return (self.value,)

    class Journal:
        def __init__(self):
            self.queries = []

        def run(self, conn, stmt, params=None):
            self.queries.append(journal.render(stmt))
            return Cur(True)

    class Conn:
        pass

    looks = []

    def fake_rows(conn, query, params=None):
        if "usename = ANY" in query:
            return [dict(pid=101, role="app"), dict(pid=202, role="app")]
        looks.append(sorted(params[0]))
        # 101 exits after the first look, 202 never does
        return [dict(pid=p) for p in params[0] if p == 202 or (p == 101 and len(looks) == 1)]

    monkeypatch.setattr(db, "rows", fake_rows)
    jr = Journal()
    ended, failed = db.terminate_sessions(Conn(), ["app"], jr, "shop", wait_ms=50)
    assert jr.queries == ["SELECT pg_terminate_backend(101)", "SELECT pg_terminate_backend(202)"]  # all signalled first
    assert looks[0] == [101, 202] and len(looks) >= 2 and looks[-1] == [202]  # then waited for together
    assert ended == [101]
    assert failed == [(202, "app", "the session was still there 50 ms after pg_terminate_backend")]
