"""The cutover's strategies (runners/freeze.py, switch.py, streams.py): chosen once from the options, each
answering for its own method - without a database."""

from __future__ import annotations

import pytest

from ansible_collections.pgshift.aurora.plugins.module_utils import cutover, journal
from ansible_collections.pgshift.aurora.plugins.module_utils.runners import freeze, streams, switch


class Run:
    """What a strategy reads of the run (runners/cutover.py's Cutover)."""

    def __init__(self, **params):
        self.p = dict(direction="forward", engine="native", migration="m", route53=dict(wait_ttl=True),
                      switch_command="true", dms_tasks=[], max_lag_bytes=100, max_lag_seconds=5.0)
        self.p.update(params)
        self.old, self.new = cutover.sides(self.p["direction"])
        self.warnings = []
        self.journal = journal.Journal()
        self.shell_calls = []

    def shell(self, command, what):
        self.shell_calls.append((command, what))
        return dict(command=command, output="")


@pytest.mark.parametrize("direction,engine,kind", [
    ("forward", "native", streams.NativeForward), ("forward", "dms", streams.DmsForward),
    ("reverse", "native", streams.Reverse), ("reverse", "dms", streams.ReverseAfterDms)])
def test_the_streams_follow_direction_and_engine(direction, engine, kind):
    chosen = streams.streams_for(direction, engine, Run(direction=direction, engine=engine))
    assert chosen.__class__.__name__ == kind.__name__
    # only the DMS tasks prove the barrier with the marker row (and are not nudged)
    assert chosen.marker is (kind is streams.DmsForward)


def test_every_method_has_its_strategy():
    assert set(freeze.FREEZES) == set(cutover.FREEZE_METHODS)
    assert set(switch.SWITCHES) == set(cutover.SWITCH_METHODS)
    assert [cls.pauses_pgbouncer for cls in (freeze.PgBouncerFreeze, freeze.ReadOnlyFreeze, freeze.CommandFreeze)] == [
        True, False, False]


def test_switches_say_what_they_do():
    run = Run(switch_method="command", switch_command="move-it")
    assert switch.switch_for("command", run).move() == dict(command="move-it", output="")
    assert run.shell_calls == [("move-it", "switch_command")]
    none = switch.switch_for("none", run)
    assert none.move() == {} and none.serving() is None and none.settle_seconds() == switch.SESSIONS_GRACE
    r53 = switch.switch_for("route53", run)
    assert r53.settle_seconds() == switch.SESSIONS_GRACE  # nothing changed yet
    r53.previous = dict(old_ttl=60)
    assert r53.settle_seconds() == 60.0
    run.p["route53"]["wait_ttl"] = False
    assert r53.settle_seconds() == switch.SESSIONS_GRACE


def test_dms_tasks_are_the_streams_of_a_dms_cutover():
    run = Run(engine="dms", dms_tasks=[dict(task=dict(replication_task_identifier="t1", status="running"),
                                            cdc_latency=dict(source_seconds=1.0, target_seconds=2.0))])
    why, detail = streams.streams_for("forward", "dms", run).gate()
    assert why == [] and detail == dict(streams=1)
    run.p["dms_tasks"][0]["task"]["status"] = "stopped"
    why, detail = streams.streams_for("forward", "dms", run).gate()
    assert why == ["DMS task t1 is stopped, not running"]


def test_a_command_freeze_runs_the_command():
    run = Run(freeze_command="stop-writes")
    f = freeze.freeze_for("command", None, run.journal, run.shell, None, run.p, "r1", "source")
    assert f.take(None, None, "app") == dict(method="command", command="stop-writes", output="")
    assert f.problems() == [] and f.before(None, "app") is None
