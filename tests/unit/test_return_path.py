"""The way back (issue 12, item 6): the rehearsal's proof, the cutover's gate on it, the check that the return
stream streams, what resume_reverse does, and the machine's handling of both - without a database."""

from __future__ import annotations

import datetime

import pytest

from ansible_collections.pgshift.aurora.plugins.module_utils import cutover, journal
from ansible_collections.pgshift.aurora.plugins.module_utils.runners import return_path

NOW = datetime.datetime(2026, 3, 1, 12, 0, 0, tzinfo=datetime.timezone.utc)
CONN = cutover.return_path_connection("pgshift", "10.0.0.7", "5432", "app", "verify-full", "/etc/pg/ca.crt")


def rehearsal(status="ok", proven_at="2026-03-01T11:00:00Z", connection=None, **extra):
    proof = dict(status=status, proven_at=proven_at, error=None if status == "ok" else "boom",
                 connection=dict(CONN) if connection is None else connection)
    return dict(dict(status="rehearsed", migration="shipping", direction="forward", return_path_proof=proof), **extra)


def gate(report, requirement="required", max_age=0, connection=None):
    return cutover.return_path_gate(report, requirement, max_age, NOW, connection or CONN, "shipping")


# --- the gate --------------------------------------------------------------------------------

def test_connection_never_holds_a_password_and_normalises_the_port():
    assert CONN == dict(user="pgshift", host="10.0.0.7", port=5432, dbname="app", sslmode="verify-full",
                        sslrootcert="/etc/pg/ca.crt")
    assert cutover.return_path_connection("u", "h", None, "d", "", "")["sslrootcert"] is None
    assert set(cutover.RETURN_PATH_KEYS) == set(CONN)


def test_a_proof_with_the_same_settings_is_a_go():
    go, why = gate(rehearsal())
    assert go and "proven by the rehearsal 3600 s ago" in why and "pgshift@10.0.0.7:5432/app" in why


def test_no_rehearsal_blocks_when_required_and_says_to_rehearse():
    go, why = gate(None)
    assert not go and "no rehearsal report" in why and "run rehearsal.yml" in why
    assert gate(None, "if_present") == (True, "no rehearsal report (rehearsal.json) (return_path_requirement="
                                              "if_present)")
    assert gate(None, "ignore")[0] and gate(rehearsal(status="failed"), "ignore")[0]


def test_a_rehearsal_that_stopped_before_the_return_path_proved_nothing():
    report = dict(status="aborted", failed_step="barrier", migration="shipping", direction="forward")
    go, why = gate(report)
    assert not go and "status aborted, stopped at barrier" in why and "rehearsal.yml" in why
    assert gate(report, "if_present")[0]


def test_a_failed_proof_blocks_with_its_error_even_if_present_only():
    for requirement in ("required", "if_present"):
        go, why = gate(rehearsal(status="failed"), requirement)
        assert not go and "could not create the return stream" in why and "boom" in why
        assert "pgshift@10.0.0.7" not in why  # the recorded error says how it connected; described once
        assert "rehearsal.yml" in why and ".." not in why
    report = rehearsal(status="failed")
    report["return_path_proof"]["error"] = None
    go, why = gate(report)
    assert not go and "no reason recorded (the source server connecting to the target as pgshift@10.0.0.7:5432/app " \
                      "sslmode=verify-full sslrootcert=/etc/pg/ca.crt)" in why


def test_a_proof_made_with_other_settings_blocks_and_says_which():
    then = dict(CONN, host="db.public.example", sslrootcert=None, sslmode="require")
    go, why = gate(rehearsal(connection=then))
    assert not go
    assert "host db.public.example then, 10.0.0.7 now" in why and "sslmode require then, verify-full now" in why
    assert "sslrootcert None then, /etc/pg/ca.crt now" in why and "user" not in why.split("(")[1].split(")")[0]
    # a port given as text in the report is the same port
    assert gate(rehearsal(connection=dict(CONN, port="5432")))[0]
    assert not gate(rehearsal(connection=dict(CONN, user="dbadmin")))[0]


def test_age_migration_direction_and_time():
    go, why = gate(rehearsal(), max_age=600)
    assert not go and "return_path_max_age 600" in why
    assert gate(rehearsal(), max_age=7200)[0]
    go, why = gate(rehearsal(migration="other"))
    assert not go and "of migration other, not shipping" in why
    go, why = gate(rehearsal(direction="reverse"))
    assert not go and "of a rollback" in why
    go, why = gate(rehearsal(proven_at=None))
    assert not go and "has no time" in why


# --- the check that the return stream streams ------------------------------------------------

def observed(**changes):
    sub = dict(enabled=True, worker_pid=42, tables=3)
    sender = dict(usename="pgshift", state="streaming", ssl=True)
    sub.update(changes.pop("sub", {}))
    sender.update(changes.pop("sender", {}))
    return dict(subscription=sub, sender=sender, **changes)


def test_return_stream_check():
    assert cutover.return_stream_check(observed(), "pgshift", 3, True) == (True, [])
    assert cutover.return_stream_check(dict(subscription=None, sender=None), "pgshift", 3, True) == (
        False, ["the subscription does not exist on the source"])
    ok, problems = cutover.return_stream_check(observed(sub=dict(tables=0, worker_pid=None)), "pgshift", 3, True)
    assert not ok and "found 0 of the 3 tables" in problems[0] and "no apply worker" in problems[1]
    ok, problems = cutover.return_stream_check(dict(observed(), sender=None), "pgshift", 3, True)
    assert problems == ["no WAL sender on the target uses the return slot: the source server is not connected"]
    ok, problems = cutover.return_stream_check(observed(sender=dict(usename="dbadmin", ssl=False, state="catchup")),
                                               "pgshift", 3, True)
    assert problems == ["the source server is connected to the target as dbadmin, not as pgshift",
                        "the source server is connected to the target without TLS",
                        "the target's WAL sender is catchup, not streaming"]
    # TLS is only demanded when the connection asks for it
    assert cutover.return_stream_check(observed(sender=dict(ssl=False)), "pgshift", 3, False)[0]
    assert not cutover.return_stream_check(observed(sub=dict(enabled=False)), "pgshift", 3, True)[0]


# --- resume_reverse ----------------------------------------------------------------------------

@pytest.mark.parametrize("state,actions,gap", [
    # after a failed step 9: the publication stays, slot and subscription were removed
    (dict(publication=True, slot=False, subscription=False), ["create_slot", "create_subscription"], True),
    (dict(publication=False, slot=False, subscription=False),
     ["create_publication", "create_slot", "create_subscription"], True),
    # the slot kept every change: subscribe to it, or give the subscription its connection again
    (dict(publication=True, slot=True, subscription=False), ["create_subscription"], False),
    (dict(publication=True, slot=True, subscription=True), ["alter_connection"], False),
    (dict(publication=True, slot=False, subscription=True),
     ["drop_subscription", "create_slot", "create_subscription"], True),
    # a slot older than its publication could not decode what came before the publication
    (dict(publication=False, slot=True, subscription=True),
     ["drop_subscription", "drop_slot", "create_publication", "create_slot", "create_subscription"], True),
])
def test_resume_reverse_plan(state, actions, gap):
    plan = cutover.resume_reverse_plan("target", state["publication"], state["slot"], state["subscription"], False)
    assert plan == dict(refuse=None, actions=actions, gap=gap)
    assert set(actions) <= set(cutover.RESUME_ACTIONS)


def test_resume_reverse_does_nothing_when_streaming_and_refuses_when_the_source_serves():
    assert cutover.resume_reverse_plan("target", True, True, True, True) == dict(refuse=None, actions=[], gap=False)
    plan = cutover.resume_reverse_plan("source", False, False, False, False)
    assert plan["actions"] == [] and "the source serves" in plan["refuse"]


# --- the machine ---------------------------------------------------------------------------

class Clock:
    def __init__(self):
        self.now = 10.0

    def __call__(self):
        return self.now


def wall():
    return NOW


def machine(rehearsal, fail=None, check=None, calls=None):
    calls = [] if calls is None else calls
    clock = Clock()

    def act(step):
        def run(m):
            calls.append(step)
            clock.now += 0.01
            if fail and step in fail:
                raise fail[step]
            return {}
        return run

    def undo(step):
        def run(m):
            calls.append("undo_" + step)
            if step == "freeze":
                calls.append("frozen_for=%.2f" % m.elapsed_frozen())
            return {}
        return run
    return cutover.Machine(cutover.plan_steps(rehearsal), dict((s, act(s)) for s in cutover.STEPS),
                           undo=dict((s, undo(s)) for s in cutover.UNDOABLE), freeze_timeout=5, clock=clock,
                           wallclock=wall, rehearsal=rehearsal, rehearsal_check=check), calls, clock


def test_rehearsal_proves_the_way_back_after_unfreezing_and_before_removing_the_return_path():
    seen = []

    def check(m):
        seen.append(("check", m.unfrozen_at is not None))
        return dict(tables=3, message="the way back proven")
    m, calls, clock = machine(True, check=check)
    result = m.run()
    assert result["status"] == "rehearsed"
    assert calls[-3:] == ["undo_freeze", "frozen_for=0.06", "undo_return_path"]
    assert seen == [("check", True)]  # the freeze was undone first: the check is not in the write pause
    (entry,) = [e for e in result["timeline"] if e["kind"] == "check"]
    assert entry["step"] == "return_path" and entry["number"] == 7 and entry["status"] == "ok"
    assert entry["message"] == "the way back proven" and entry["detail"] == dict(tables=3)
    assert [u["step"] for u in result["undone"]] == ["freeze", "return_path"]


def test_a_rehearsal_whose_way_back_fails_is_aborted_and_still_undone():
    def check(m):
        raise cutover.StepFailed("the source server could not subscribe: password authentication failed",
                                 dict(connection=dict(user="pgshift")))
    m, calls, clock = machine(True, check=check)
    result = m.run()
    assert result["status"] == "aborted" and result["failed_step"] == "return_path"
    assert "password authentication failed" in result["reason"]
    assert [u["step"] for u in result["undone"]] == ["freeze", "return_path"]
    (entry,) = [e for e in result["timeline"] if e["kind"] == "check"]
    assert entry["status"] == "failed" and entry["detail"] == dict(connection=dict(user="pgshift"))


def test_no_check_when_the_rehearsal_stops_earlier_and_none_without_a_check():
    m, calls, clock = machine(True, fail=dict(verify=cutover.StepFailed("counts differ")),
                              check=lambda m: pytest.fail("no check after a failed step"))
    assert m.run()["status"] == "aborted"
    m, calls, clock = machine(True)
    assert m.run()["status"] == "rehearsed"
    assert [c for c in calls if c.startswith("undo")] == ["undo_return_path", "undo_freeze"]


def test_a_return_path_failure_after_the_switch_has_its_own_status_and_is_not_undone():
    m, calls, clock = machine(False, fail=dict(replication=cutover.ReturnPathFailed("no way back")))
    result = m.run()
    assert result["status"] == "switched_without_return_path" and result["failed_step"] == "replication"
    assert result["undone"] == [] and "postcheck" not in calls
    assert "switched_without_return_path" in cutover.STATUSES
    m, calls, clock = machine(False, fail=dict(replication=cutover.StepFailed("other")))
    assert m.run()["status"] == "failed_after_switch"


# --- reports -------------------------------------------------------------------------------

def test_reports_say_how_the_way_back_was_proven():
    m, calls, clock = machine(True, check=lambda m: {})
    report = dict(m.run(), direction="forward", rehearsal=True, migration="shipping", old_side="source",
                  new_side="target", freeze_method="read_only", switch_method="none", engine="native",
                  freeze_timeout=5, started_at="x", rollback_plan=[],
                  return_path_proof=dict(status="ok", proven_at="2026-03-01T11:00:00Z", connection=CONN, tables=3,
                                         seen_by_target=dict(user="pgshift", ssl=True, ssl_version="TLSv1.3",
                                                             state="streaming")))
    text = cutover.render_markdown(report)
    assert "## The way back" in text and "status: **ok**, at 2026-03-01T11:00:00Z" in text
    assert "as pgshift@10.0.0.7:5432/app sslmode=verify-full sslrootcert=/etc/pg/ca.crt" in text
    assert "user pgshift, TLS on (TLSv1.3), WAL sender streaming" in text
    resumed = cutover.render_resume_markdown(dict(
        status="resumed", migration="shipping", serving="target", at="t", error=None,
        return_path=dict(actions=["create_slot", "create_subscription"], gap=True, gap_to_lsn="0/5000",
                         gap_from_lsn="0/3000", switched_at="2026-03-01T10:00:00+00:00", connection=CONN),
        report_warnings=["behind"]))
    assert "actions: create_slot, create_subscription" in resumed and "**gap**" in resumed
    assert "LSN 0/5000" in resumed and "from LSN 0/3000" in resumed and "warning: behind" in resumed


# --- the runner, on fakes of the catalog reads ------------------------------------------------

class FakeDb:
    """Stands in for _pg/replication.py: a subscription appears when created, its sender after `start` checks."""

    def __init__(self, start=2, fail_create=None):
        self.start = start
        self.fail_create = fail_create
        self.checks = 0
        self.created = False
        self.executed = []

    def create_subscription(self, conn, name, conninfo, origin_none=False, journal=None):
        journal.run(conn, FakeStmt(conninfo))

    def publication_tables(self, conn, names):
        return [("public", "a"), ("public", "b")]

    def subscription_state(self, conn, name):
        self.checks += 1
        return dict(enabled=True, worker_pid=7, tables=2) if self.created else None

    def slot_sender(self, conn, name):
        if self.created and self.checks >= self.start:
            return dict(usename="pgshift", state="streaming", ssl=True, ssl_version="TLSv1.3",
                        client_addr="127.0.0.1")
        return None


class FakeStmt:
    def __init__(self, conninfo):
        self.conninfo = conninfo

    def as_string(self, conn):
        return "CREATE SUBSCRIPTION x CONNECTION '%s'" % self.conninfo


class FakeConn:
    def __init__(self, db):
        self.db = db

    def execute(self, stmt, params=None):
        if self.db.fail_create:
            raise self.db.fail_create
        self.db.executed.append(stmt.conninfo)
        self.db.created = True


def runner(monkeypatch, db, timeout=5.0):
    monkeypatch.setattr(return_path, "replication", db)
    clock = Clock()
    jr = journal.Journal()
    shown = jr.queries

    def sleep(seconds):
        clock.now += seconds
    conn = cutover.return_path_connection("pgshift", "127.0.0.1", 5433, "app", "verify-full", "/srv/ca.crt")
    return return_path.ReturnPath(FakeConn(db), FakeConn(db), "pgshift_m_r1", conn, "s3cret 'pw'", jr,
                                  timeout=timeout, clock=clock, sleep=sleep), shown


def test_establish_waits_until_the_target_sees_the_migration_user_streaming(monkeypatch):
    db = FakeDb(start=4)
    rp, shown = runner(monkeypatch, db)
    detail = rp.establish()
    assert detail["seen_by_target"] == dict(user="pgshift", ssl=True, ssl_version="TLSv1.3",
                                            client_addr="127.0.0.1", state="streaming")
    assert detail["tables"] == 2 and detail["connection"]["user"] == "pgshift"
    # the server got the password, what is shown did not
    assert "password='s3cret \\'pw\\''" in db.executed[0] and "s3cret" not in shown[0] and "********" in shown[0]
    assert "sslrootcert=/srv/ca.crt" in db.executed[0] and "sslmode=verify-full" in db.executed[0]


def test_establish_says_what_the_source_server_could_not_do(monkeypatch):
    db = FakeDb(fail_create=RuntimeError('could not connect to the publisher: connection to server at "127.0.0.1", '
                                         'port 5433 failed:\nFATAL:  password authentication failed for user '
                                         '"pgshift"'))
    rp, shown = runner(monkeypatch, db)
    with pytest.raises(cutover.StepFailed) as err:
        rp.establish()
    text = str(err.value)
    assert text.startswith("the source server could not subscribe to the target's return slot pgshift_m_r1 as "
                           "pgshift@127.0.0.1:5433/app (sslmode verify-full, sslrootcert /srv/ca.crt): could not")
    assert "failed: FATAL: password authentication failed" in text and "\n" not in text
    # the journal shows the statement tried (as every statement: recorded, then run), its password masked
    assert len(shown) == 1 and "s3cret" not in shown[0] and "password='********'" in shown[0]


def test_establish_gives_up_after_the_timeout_with_the_problems(monkeypatch):
    db = FakeDb(start=10 ** 6)
    rp, shown = runner(monkeypatch, db, timeout=1.0)
    with pytest.raises(cutover.StepFailed) as err:
        rp.establish()
    assert "does not stream after 1 s" in str(err.value) and "no WAL sender on the target" in str(err.value)
    assert err.value.detail["seen_by_target"] is None and err.value.detail["tables"] == 2


def test_the_wait_for_the_return_stream_says_what_it_lacks_and_how_long_it_may_still_take():
    from ansible_collections.pgshift.aurora.plugins.module_utils.runners import return_path

    clock = [0.0]
    seen = []
    runner = return_path.ReturnPath(None, None, "pgshift_m_r1", {}, "pw", journal.Journal(), timeout=1.0,
                                    clock=lambda: clock[0], sleep=lambda s: clock.__setitem__(0, clock[0] + s),
                                    on_wait=lambda problems, left: seen.append((problems, round(left, 3))))
    answers = iter([(False, ["no apply worker"], {}, 2), (False, ["no WAL sender"], {}, 2), (True, [], {}, 2)])
    runner.check = lambda: next(answers)
    assert runner.wait_streaming()[0] is True
    assert seen == [(["no apply worker"], 1.0), (["no WAL sender"], 0.9)]
