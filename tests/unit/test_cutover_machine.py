"""The cutover step machine (module_utils/cutover.py), without a database."""

from __future__ import annotations

import datetime

import pytest

from ansible_collections.pgshift.aurora.plugins.module_utils import cutover


class Clock:
    """A fake monotonic clock each action advances by hand."""

    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now

    def advance(self, seconds):
        self.now += seconds


def wall():
    return datetime.datetime(2026, 1, 2, 3, 4, 5, tzinfo=datetime.timezone.utc)


class World:
    """A pretend pair of databases: what is frozen, where traffic goes, what exists."""

    def __init__(self, clock, costs=None, fail=None):
        self.clock = clock
        self.costs = costs or {}
        self.fail = fail or {}
        self.frozen = False
        self.serving = "old"
        self.return_slot = False
        self.calls = []

    def action(self, step):
        def run(machine):
            self.calls.append(step)
            self.clock.advance(self.costs.get(step, 0.01))
            if step in self.fail:
                raise self.fail[step]
            if step == "freeze":
                self.frozen = True
            elif step == "return_path":
                self.return_slot = True
            elif step == "switch":
                self.serving = "new"
                self.frozen = False
            return dict(step=step)
        return run

    def undo(self, step):
        def run(machine):
            self.calls.append("undo_" + step)
            if step == "freeze":
                self.frozen = False
            elif step == "return_path":
                self.return_slot = False
            return {}
        return run

    def machine(self, rehearsal=False, freeze_timeout=5.0, hooks=None):
        steps = cutover.plan_steps(rehearsal)
        return cutover.Machine(steps, dict((s, self.action(s)) for s in cutover.STEPS),
                               undo=dict((s, self.undo(s)) for s in cutover.UNDOABLE), hooks=hooks,
                               freeze_timeout=freeze_timeout, clock=self.clock, wallclock=wall, rehearsal=rehearsal)


def test_steps_in_order_and_rehearsal_stops_before_the_switch():
    assert cutover.plan_steps(False) == list(cutover.STEPS)
    assert cutover.plan_steps(True) == ["preflight", "freeze", "barrier", "sequences", "finishing", "verify",
                                        "return_path"]
    assert cutover.step_number("preflight") == 1 and cutover.step_number("switch") == 8
    assert cutover.sides("forward") == ("source", "target") and cutover.sides("reverse") == ("target", "source")
    with pytest.raises(ValueError):
        cutover.sides("sideways")


def test_a_full_run_switches_and_records_every_step():
    clock = Clock()
    world = World(clock, costs=dict(barrier=0.2, switch=0.05))
    result = world.machine().run()
    assert result["status"] == "switched" and result["failed_step"] is None
    assert world.serving == "new" and not world.frozen and world.return_slot
    assert [e["step"] for e in result["timeline"]] == list(cutover.STEPS)
    assert all(e["status"] == "ok" and e["kind"] == "step" for e in result["timeline"])
    # freeze starts before its action; the pause ends when the switch is done
    expected = 0.01 + 0.2 + 0.01 * 4 + 0.05
    assert result["write_pause_seconds"] == pytest.approx(expected, abs=1e-6)
    assert result["timeline"][0]["time"].startswith("2026-01-02T03:04:0")
    # the time a step started: the fake wall clock stands still, so it is that minus the step's duration
    assert result["timeline"][2]["time"] == "2026-01-02T03:04:04.800000Z"
    assert result["undone"] == []


@pytest.mark.parametrize("step", cutover.BEFORE_SWITCH)
def test_failure_before_the_switch_undoes_the_freeze_and_the_return_path(step):
    clock = Clock()
    world = World(clock, fail={step: cutover.StepFailed("broken at %s" % step)})
    result = world.machine().run()
    assert result["status"] == "aborted" and result["failed_step"] == step
    assert "broken at %s" % step in result["reason"]
    assert world.serving == "old" and not world.frozen and not world.return_slot
    done = cutover.STEPS.index(step)
    undone = [u["step"] for u in result["undone"]]
    expected = [s for s in reversed(cutover.STEPS[:done]) if s in cutover.UNDOABLE]
    if step == "freeze":
        expected = ["freeze"]  # a freeze that failed half way is undone too
    assert undone == expected
    # nothing after the failed step ran
    assert "switch" not in world.calls
    failed = [e for e in result["timeline"] if e["status"] == "failed"]
    assert len(failed) == 1 and failed[0]["step"] == step


def test_failure_of_the_switch_undoes_the_freeze():
    clock = Clock()
    world = World(clock, fail=dict(switch=RuntimeError("RELOAD refused")))
    result = world.machine().run()
    assert result["status"] == "aborted" and result["failed_step"] == "switch"
    assert [u["step"] for u in result["undone"]] == ["return_path", "freeze"]
    assert not world.frozen


def test_failure_after_the_switch_is_not_undone():
    clock = Clock()
    world = World(clock, fail=dict(replication=cutover.StepFailed("cannot subscribe")))
    result = world.machine().run()
    assert result["status"] == "failed_after_switch" and result["failed_step"] == "replication"
    assert result["undone"] == [] and world.serving == "new"
    assert "postcheck" not in world.calls


def test_over_budget_stops_and_undoes():
    clock = Clock()
    world = World(clock, costs=dict(barrier=3.0, sequences=2.5))
    result = world.machine(freeze_timeout=5.0).run()
    assert result["status"] == "aborted" and result["failed_step"] == "sequences"
    assert "freeze_timeout" in result["reason"]
    assert not world.frozen and world.serving == "old"
    assert "finishing" not in world.calls
    # the remaining budget the barrier saw is what an action can use for its own deadline
    m = World(Clock()).machine(freeze_timeout=5.0)
    assert m.remaining() == 5.0


def test_remaining_budget_shrinks_while_frozen():
    clock = Clock()
    seen = {}
    world = World(clock, costs=dict(freeze=1.0))

    def barrier(machine):
        seen["remaining"] = machine.remaining()
        return {}
    m = world.machine(freeze_timeout=4.0)
    m.actions["barrier"] = barrier
    m.run()
    assert seen["remaining"] == pytest.approx(3.0)


def test_rehearsal_undoes_everything_and_never_switches():
    clock = Clock()
    world = World(clock)
    result = world.machine(rehearsal=True).run()
    assert result["status"] == "rehearsed"
    assert "switch" not in world.calls and world.serving == "old"
    assert not world.frozen and not world.return_slot
    assert [u["step"] for u in result["undone"]] == ["return_path", "freeze"]
    assert result["write_pause_seconds"] > 0


def test_a_failing_hook_fails_its_step():
    clock = Clock()
    world = World(clock)

    def bad(machine):
        raise RuntimeError("exit status 3")
    result = world.machine(hooks=dict(after_barrier=bad)).run()
    assert result["status"] == "aborted" and result["failed_step"] == "barrier"
    assert "after_barrier" in result["reason"]
    assert not world.frozen
    hooks = [e for e in result["timeline"] if e["kind"] == "hook"]
    assert hooks and hooks[0]["status"] == "failed"


def test_a_hook_before_the_freeze_fails_without_freezing():
    clock = Clock()
    world = World(clock)

    def bad(machine):
        raise RuntimeError("nope")
    result = world.machine(hooks=dict(before_freeze=bad)).run()
    assert result["status"] == "aborted" and result["failed_step"] == "freeze"
    assert "freeze" not in world.calls and result["undone"] == []
    assert result["write_pause_seconds"] is None


def test_undo_that_fails_is_reported_and_the_rest_still_undone():
    clock = Clock()
    world = World(clock, fail=dict(switch=cutover.StepFailed("RELOAD failed")))
    m = world.machine()

    def broken(machine):
        raise RuntimeError("slot busy")
    m.undo_actions["return_path"] = broken
    result = m.run()
    assert result["undone"][0] == dict(step="return_path", status="failed",
                                       message="could not undo return_path: slot busy")
    assert result["undone"][1]["step"] == "freeze" and result["undone"][1]["status"] == "ok"
    assert not world.frozen


# --------------------------------------------------------------------------------------------
# Gates
# --------------------------------------------------------------------------------------------

def test_stream_gate():
    ok = dict(name="s1", state="streaming", lag_bytes=100, lag_seconds=0.5)
    assert cutover.stream_gate([ok], 1000, 1) == (True, [])
    go, why = cutover.stream_gate([], 1000, 1)
    assert not go and "no replication stream" in why[0]
    go, why = cutover.stream_gate([ok, dict(ok, name="s2", lag_bytes=5000)], 1000, 1)
    assert not go and why == ["stream s2 lags 5000 bytes (max_lag_bytes 1000)"]
    go, why = cutover.stream_gate([dict(ok, state="disabled", message="disabled at 0/1")], 1000, 1)
    assert not go and "disabled" in why[0]
    go, why = cutover.stream_gate([dict(ok, lag_seconds=None)], 1000, 1)
    assert not go
    assert cutover.stream_gate([dict(name="t", status="running", cdc_latency_seconds=1)], 0, 2, engine="dms")[0]
    assert not cutover.stream_gate([dict(name="t", status="stopped", cdc_latency_seconds=1)], 0, 2, engine="dms")[0]
    assert not cutover.stream_gate([dict(name="t", status="running", cdc_latency_seconds=9)], 0, 2, engine="dms")[0]


NOW = datetime.datetime(2026, 1, 2, 12, 0, 0, tzinfo=datetime.timezone.utc)


def test_validation_gate():
    go = dict(verdict="GO", finished_at="2026-01-02T11:30:00Z", override=False)
    assert cutover.validation_gate(go, "required", 3600, NOW)[0]
    assert not cutover.validation_gate(go, "required", 600, NOW)[0]
    assert not cutover.validation_gate(None, "required", 0, NOW)[0]
    assert cutover.validation_gate(None, "if_present", 0, NOW)[0]
    assert cutover.validation_gate(None, "ignore", 0, NOW)[0]
    nogo = dict(verdict="NO-GO", finished_at="2026-01-02T11:59:00Z", override=False)
    go_, why = cutover.validation_gate(nogo, "if_present", 0, NOW)
    assert not go_ and "NO-GO" in why
    assert cutover.validation_gate(dict(nogo, override=True, override_reason="known diff"), "required", 0, NOW)[0]
    assert not cutover.validation_gate(dict(verdict="GO"), "required", 0, NOW)[0]


def test_long_transaction_gate():
    assert cutover.long_transaction_gate([dict(pid=1, seconds=0.2)], 5) == (True, [])
    go, why = cutover.long_transaction_gate([dict(pid=7, user="app", application="batch", seconds=40,
                                                  state="idle in transaction")], 5)
    assert not go and "session 7" in why[0] and "40 s" in why[0]


def test_barrier_behind_needs_a_position_past_the_barrier():
    names = ["pgshift_m_s1", "pgshift_m_s2"]
    assert cutover.barrier_behind(dict(pgshift_m_s1=101, pgshift_m_s2=150), names, 100) == []
    # equal is not past: the message at the barrier may be its last commit, still being applied
    assert cutover.barrier_behind(dict(pgshift_m_s1=100, pgshift_m_s2=150), names, 100) == ["pgshift_m_s1"]
    # no apply worker (None) or a stream missing from what was read: behind
    assert cutover.barrier_behind(dict(pgshift_m_s2=None), names, 100) == names
    assert cutover.barrier_behind(dict(pgshift_m_s1=99, pgshift_m_s2=99, other=500), names, 100) == names


def test_barrier_done():
    names = ["a", "b"]
    assert cutover.barrier_done(dict(a=101, b=150), names, 100)
    assert not cutover.barrier_done(dict(a=101, b=100), names, 100)
    assert not cutover.barrier_done(dict(a=101), names, 100)
    assert not cutover.barrier_done(dict(a=None, b=None), names, 1)
    assert not cutover.barrier_done({}, [], 1)
    assert cutover.barrier_done({}, [], 1, engine="dms", marker_seen=True)
    assert not cutover.barrier_done(dict(a=101, b=150), names, 1, engine="dms", marker_seen=False)


def test_verify_gate():
    assert cutover.verify_gate([dict(table="t", old=3, new=3)], True, []) == (True, [])
    go, why = cutover.verify_gate([dict(table="t", old=3, new=2)], False, ["public.s"])
    assert not go and len(why) == 3


def test_sequence_changes_keep_only_what_moves():
    plan = [dict(sequence="public.a", schema="public", name="a", set_to=None, status="ok", target_next=5,
                 required_next=5),
            dict(sequence='"Shipping Ops"."Order No."', schema="Shipping Ops", name="Order No.", set_to=1099,
                 status="behind", target_next=1, required_next=1100),
            dict(sequence="public.c", schema="public", name="c", set_to=None, status="missing_on_target")]
    assert cutover.sequence_changes(plan) == [dict(sequence='"Shipping Ops"."Order No."', schema="Shipping Ops",
                                                   name="Order No.", set_to=1099, before=1, required_next=1100)]


def test_check_options():
    base = dict(direction="forward", freeze_method="pgbouncer", switch_method="pgbouncer", engine="native",
                freeze_timeout=10, pgbouncer_database="app")
    assert cutover.check_options(base) == []
    assert any("freeze_timeout" in p for p in cutover.check_options(dict(base, freeze_timeout=0)))
    assert any("only switch_method=pgbouncer" in p for p in cutover.check_options(dict(base, switch_method="none")))
    problems = cutover.check_options(dict(base, freeze_method="command", freeze_command="x"))
    assert any("unfreeze_command" in p for p in problems)
    assert any("app_roles" in p for p in cutover.check_options(dict(base, freeze_method="read_only")))
    assert any("unknown hooks" in p for p in cutover.check_options(dict(base, hooks=dict(after_lunch="x"))))
    assert cutover.check_options(dict(base, hooks=dict(after_barrier="x"))) == []


def test_route53_change():
    change = cutover.route53_change("db.example.internal.", "CNAME", "green.example", 30)
    rrset = change["Changes"][0]["ResourceRecordSet"]
    assert change["Changes"][0]["Action"] == "UPSERT" and rrset["TTL"] == 30
    assert rrset["ResourceRecords"] == [dict(Value="green.example")]


def test_report_markdown():
    clock = Clock()
    world = World(clock)
    result = world.machine().run()
    report = dict(result, direction="forward", rehearsal=False, migration="shipping", old_side="source",
                  new_side="target", freeze_method="pgbouncer", switch_method="pgbouncer", engine="native",
                  freeze_timeout=5.0, started_at="2026-01-02T03:04:05Z", positions=dict(barrier_lsn="0/1"),
                  sequences_moved=[dict(sequence="public.s", before=3, required_next=1003)],
                  rollback_plan=cutover.rollback_plan("forward", "pgbouncer", "pgbouncer", "shipping",
                                                      "pgshift_shipping_r1"))
    text = cutover.render_markdown(report)
    assert text.startswith("# Cutover of migration `shipping`")
    assert "| 2 | freeze | step | ok |" in text
    assert "`public.s`: next 3 -> 1003" in text
    assert "pgshift_shipping_r1" in text
    assert len([line for line in text.splitlines() if line.startswith("| ") and "| step | ok |" in line]) == 10
    rehearsal = cutover.render_markdown(dict(report, rehearsal=True))
    assert rehearsal.startswith("# Rehearsal of the cutover")


def test_dms_streams_from_dms_task_info():
    tasks = [dict(task=dict(replication_task_identifier="pgshift-shipping-s1", status="running"),
                  cdc_latency=dict(source_seconds=1.0, target_seconds=3.0)),
             dict(task=dict(replication_task_identifier="pgshift-shipping-s2", status="stopped"),
                  cdc_latency=dict(source_seconds=None, target_seconds=None))]
    streams = cutover.dms_streams(tasks)
    assert streams == [dict(name="pgshift-shipping-s1", status="running", cdc_latency_seconds=3.0),
                       dict(name="pgshift-shipping-s2", status="stopped", cdc_latency_seconds=None)]
    go, why = cutover.stream_gate(streams, 0, 5, engine="dms")
    assert not go and why == ["DMS task pgshift-shipping-s2 is stopped, not running"]
    assert cutover.stream_gate(streams[:1], 0, 5, engine="dms")[0]
    assert not cutover.stream_gate(streams[:1], 0, 2, engine="dms")[0]


def test_finishing_diff_and_names():
    from ansible_collections.pgshift.aurora.plugins.module_utils._pg import freeze, pgbouncer
    old_t = {("public", "t", "audit"): "O", ("public", "t", "off"): "D"}
    new_t = {("public", "t", "audit"): "D", ("public", "t", "off"): "D"}
    old_fk = {("public", "t", "t_fk"): True, ("public", "u", "u_fk"): True}
    new_fk = {("public", "t", "t_fk"): False}
    trig, validate, missing = freeze.finishing_diff(old_t, new_t, old_fk, new_fk)
    assert trig == [("public", "t", "audit", "O")]
    assert validate == [("public", "t", "t_fk")] and missing == [("public", "u", "u_fk")]
    assert pgbouncer.check_name("app") == "app"
    for bad in ("app; SHUTDOWN", "", "a b", None):
        with pytest.raises(pgbouncer.PgBouncerError):
            pgbouncer.check_name(bad)


def test_rewrite_file_keeps_mode_and_returns_the_old_text(tmp_path):
    from ansible_collections.pgshift.aurora.plugins.module_utils._pg import pgbouncer
    path = tmp_path / "databases.ini"
    path.write_text("[databases]\napp = host=a port=1 dbname=app\n")
    path.chmod(0o640)
    old = pgbouncer.rewrite_file(str(path), "new\n")
    assert old.startswith("[databases]") and path.read_text() == "new\n"
    assert (path.stat().st_mode & 0o777) == 0o640
    assert [p.name for p in tmp_path.iterdir()] == ["databases.ini"]
