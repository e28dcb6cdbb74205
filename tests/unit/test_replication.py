"""Replication objects (module_utils/_pg/replication.py): the DDL as it is built and shown, and dropping a slot
(wait, then terminate) on a fake catalog."""

from __future__ import annotations

import pytest

from ansible_collections.pgshift.aurora.plugins.module_utils import journal, native, replication_conn
from ansible_collections.pgshift.aurora.plugins.module_utils._pg import replication


def sql_text(stmt):
    return stmt.as_string(None)


def test_create_subscription_options_follow_the_server_version():
    stmt = sql_text(replication.subscription_sql("pgshift_m_s1", "host=h", 180000, enabled=False,
                                                 disable_on_error=False))
    assert stmt == (
        "CREATE SUBSCRIPTION \"pgshift_m_s1\" CONNECTION 'host=h' PUBLICATION \"pgshift_m_s1\" WITH ("
        "create_slot = false, slot_name = 'pgshift_m_s1', copy_data = false, enabled = false, "
        "disable_on_error = false)")
    old = sql_text(replication.subscription_sql("s", "host=h", 140000, enabled=True, disable_on_error=False))
    assert "disable_on_error" not in old and "enabled = true" in old
    assert sql_text(replication.refresh_subscription_sql("s", True)) == (
        'ALTER SUBSCRIPTION "s" REFRESH PUBLICATION WITH (copy_data = true)')
    assert sql_text(replication.alter_subscription_sql("s", "SET (slot_name = NONE)")) == (
        'ALTER SUBSCRIPTION "s" SET (slot_name = NONE)')


def test_the_return_subscription_takes_no_origin_before_16():
    new = sql_text(replication.subscription_sql("pgshift_m_r1", "host=h", 160000, origin_none=True))
    assert new.endswith("copy_data = false, enabled = true, origin = 'none')")
    assert "origin" not in sql_text(replication.subscription_sql("pgshift_m_r1", "host=h", 150000, origin_none=True))
    assert "PUBLICATION \"p\"" in sql_text(replication.subscription_sql("s", "host=h", 160000, publication="p"))


def test_publication_ddl():
    tables = [dict(schema="public", name="events", only=True), dict(schema="Shipping Ops", name="order")]
    assert sql_text(replication.publication_sql("pgshift_m_r1", tables)) == (
        'CREATE PUBLICATION "pgshift_m_r1" FOR TABLE ONLY "public"."events", "Shipping Ops"."order"')
    assert sql_text(replication.publication_sql("p", [])) == 'CREATE PUBLICATION "p"'
    s = native.validate_stream(dict(name="pgshift_m_s1", tables=[
        dict(name="events", schema="public", key=["id"], only=True), dict(name="events_scan", schema="public", key=["id"]),
        dict(name="Rates", schema="billing", key=["id"])]))
    assert sql_text(replication.publication_sql("pgshift_m_s1", s["tables"])) == (
        'CREATE PUBLICATION "pgshift_m_s1" FOR TABLE ONLY "public"."events", "public"."events_scan", '
        '"billing"."Rates"')
    assert sql_text(replication.alter_publication_sql("p", "ADD", tables)) == (
        'ALTER PUBLICATION "p" ADD TABLE ONLY "public"."events", "Shipping Ops"."order"')
    assert sql_text(replication.alter_publication_sql("p", "DROP", tables[1:])) == (
        'ALTER PUBLICATION "p" DROP TABLE ONLY "Shipping Ops"."order"')
    assert sql_text(replication.drop_publication_sql("p")) == 'DROP PUBLICATION IF EXISTS "p"'
    assert sql_text(replication.drop_subscription_sql("s")) == 'DROP SUBSCRIPTION IF EXISTS "s"'


class Info:
    server_version = 160000


class FakeConn:
    """Records what runs; pg_replication_slots answers from `slot` ({active, active_pid}) or None."""

    info = Info()
    connection = None  # what psycopg.sql reads to render a statement for a "connection": the defaults

    def __getattr__(self, name):  # psycopg.sql's rendering asks for the adapters: the defaults'
        if name == "adapters":
            import psycopg
            return psycopg.adapters
        raise AttributeError(name)

    def __init__(self, slot=None, sender_leaves_after=None, new_sender_pids=()):
        self.slot = slot
        self.executed = []
        self.terminations = 0
        self.looks = 0
        self.sender_leaves_after = sender_leaves_after
        self.new_sender_pids = list(new_sender_pids)

    def execute(self, stmt, params=None):
        text = stmt.as_string(None) if hasattr(stmt, "as_string") else stmt
        self.executed.append(text)
        if "pg_terminate_backend" in text:
            self.terminations += 1
            if self.new_sender_pids:
                self.slot = dict(self.slot, active_pid=self.new_sender_pids.pop(0))
            elif self.sender_leaves_after is not None and self.terminations >= self.sender_leaves_after:
                self.slot = dict(self.slot, active=False, active_pid=None)
        elif "pg_drop_replication_slot" in text:
            self.slot = None
        return Cursor(self)


class Cursor:
    def __init__(self, conn):
        self.conn = conn
        self.description = None
        if "FROM pg_replication_slots" in conn.executed[-1]:
            conn.looks += 1
            self.description = [type("D", (), dict(name=n))() for n in (
                "slot_name", "plugin", "database", "slot_type", "active", "active_pid", "confirmed_flush_lsn",
                "wal_status", "retained_bytes")]
            s = conn.slot
            self.rows = [("s1", "pgoutput", "app", "logical", s["active"], s["active_pid"], "0/10", "reserved", 42)
                         ] if s else []

    def fetchall(self):
        return self.rows


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now

    def sleep(self, seconds):
        self.now += seconds


def test_drop_slot_without_a_slot_does_nothing():
    conn = FakeConn()
    jr = journal.Journal()
    assert replication.drop_slot(conn, "s1", journal=jr) is False
    assert not any("pg_drop" in q for q in conn.executed) and jr.queries == []


def test_drop_slot_waits_for_the_sender_then_terminates_it_and_drops():
    conn, clock, seen = FakeConn(dict(active=True, active_pid=77), sender_leaves_after=1), Clock(), []
    jr = journal.Journal()
    assert replication.drop_slot(conn, "s1", wait=1.0, journal=jr, clock=clock, sleep=clock.sleep,
                                 on_wait=lambda pid, retained, left, terminated: seen.append((pid, terminated)))
    assert jr.queries == ["SELECT pg_terminate_backend(77)", "SELECT pg_drop_replication_slot('s1')"]
    assert clock.now > 1.0 and seen[0] == (77, False)


def test_drop_slot_terminates_each_new_sender_and_gives_up_on_one_that_stays():
    conn, clock = FakeConn(dict(active=True, active_pid=77), new_sender_pids=[78]), Clock()
    with pytest.raises(replication.SlotBusy) as err:
        replication.drop_slot(conn, "s1", wait=0.5, journal=journal.Journal(), clock=clock, sleep=clock.sleep)
    assert conn.terminations == 2 and "still used by process 78" in str(err.value)
    assert "drop it by hand (SELECT pg_drop_replication_slot('s1'))" in str(err.value)
    assert not any("pg_drop" in q for q in conn.executed)


def test_drop_slot_in_check_mode_only_records():
    conn = FakeConn(dict(active=False, active_pid=None))
    jr = journal.Journal(check_mode=True)
    assert replication.drop_slot(conn, "s1", journal=jr)
    assert jr.queries == ["SELECT pg_drop_replication_slot('s1')"] and conn.slot is not None


def test_a_subscription_is_shown_with_its_password_masked_whatever_its_quoting():
    password = "s3cret 'pw' \\x"
    conn = FakeConn()
    jr = journal.Journal(secrets=[password])
    conninfo = replication_conn.subscription_conninfo("h", 5432, "app", "pgshift", password, "require")
    replication.create_subscription(conn, "pgshift_m_r1", conninfo, origin_none=True, journal=jr)
    (shown,) = jr.queries
    assert "s3cret" not in shown and "pw" not in shown and "password=********" in shown.replace("'", "")
    assert "s3cret" in conn.executed[0]


def test_a_subscription_is_dropped_detached_from_its_slot_unless_told_not_to():
    conn, jr = FakeConn(), journal.Journal()
    replication.drop_subscription(conn, "s", journal=jr)
    replication.drop_subscription(conn, "t", detach=False, journal=jr)
    assert jr.queries == ['ALTER SUBSCRIPTION "s" DISABLE', 'ALTER SUBSCRIPTION "s" SET (slot_name = NONE)',
                          'DROP SUBSCRIPTION IF EXISTS "s"', 'DROP SUBSCRIPTION IF EXISTS "t"']


def test_check_mode_records_the_publication_and_subscription_changes_and_runs_none():
    conn, jr = FakeConn(), journal.Journal(check_mode=True)
    replication.alter_publication(conn, "p", "DROP", [dict(schema="public", name="a")], journal=jr)
    replication.refresh_subscription(conn, "s", False, journal=jr)
    replication.alter_subscription(conn, "s", "ENABLE", journal=jr)
    assert jr.queries == ['ALTER PUBLICATION "p" DROP TABLE ONLY "public"."a"',
                          'ALTER SUBSCRIPTION "s" REFRESH PUBLICATION WITH (copy_data = false)',
                          'ALTER SUBSCRIPTION "s" ENABLE'] and conn.executed == []
