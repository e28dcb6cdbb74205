"""A native stream's statements (module_utils/_pg/stream.py), rendered without a database."""

from __future__ import annotations

import pytest

from ansible_collections.pgshift.aurora.plugins.module_utils import journal, native
from ansible_collections.pgshift.aurora.plugins.module_utils._pg import stream as pgstream


def sql_text(stmt):
    return stmt.as_string(None)


def stream(*tables, name="pgshift_m_s1"):
    return native.validate_stream(dict(name=name, tables=list(tables)))


def table(name, schema="public", **extra):
    return dict(name=name, schema=schema, key=["id"], **extra)


def test_publication_uses_only_for_inheritance_parents():
    s = stream(table("events", only=True), table("events_scan"), table("Rates", schema="billing"))
    assert sql_text(pgstream.create_publication("pgshift_m_s1", s["tables"])) == (
        'CREATE PUBLICATION "pgshift_m_s1" FOR TABLE ONLY "public"."events", "public"."events_scan", '
        '"billing"."Rates"')
    assert sql_text(pgstream.create_publication("p", [])) == 'CREATE PUBLICATION "p"'


def test_create_subscription_options_follow_the_target_version():
    stmt = sql_text(pgstream.create_subscription("pgshift_m_s1", "host=h", False, 180000))
    assert stmt == (
        "CREATE SUBSCRIPTION \"pgshift_m_s1\" CONNECTION 'host=h' PUBLICATION \"pgshift_m_s1\" WITH ("
        "create_slot = false, slot_name = 'pgshift_m_s1', copy_data = false, enabled = false, "
        "disable_on_error = false)")
    old = sql_text(pgstream.create_subscription("s", "host=h", True, 140000))
    assert "disable_on_error" not in old and "enabled = true" in old
    assert sql_text(pgstream.refresh_subscription("s", True)) == (
        'ALTER SUBSCRIPTION "s" REFRESH PUBLICATION WITH (copy_data = true)')


def test_subscription_conninfo_from_the_options():
    p = dict(login_host="127.0.0.1", login_port=5432, login_db="app", login_user="postgres", login_password="adm",
             ssl_mode="prefer", source_replication_user=None, source_replication_password=None, source_host=None,
             source_port=None, source_db=None, source_ssl_mode=None, source_ssl_root_cert=None)
    assert pgstream.subscription_conninfo(p) == (
        "host=127.0.0.1 port=5432 dbname=app user=postgres password=adm sslmode=prefer")
    p.update(source_replication_user="mig", source_host="src.internal", source_port=6432, source_db="db",
             source_ssl_mode="verify-full", source_ssl_root_cert="/ca.pem")
    assert pgstream.subscription_conninfo(p) == (
        "host=src.internal port=6432 dbname=db user=mig sslmode=verify-full sslrootcert=/ca.pem")
    p.update(source_replication_password="pw")
    assert "user=mig password=pw " in pgstream.subscription_conninfo(p)


class Column:
    def __init__(self, name):
        self.name = name


class Cursor:
    def __init__(self, rows, names):
        self.description = [Column(n) for n in names] if names else None
        self._rows = rows

    def fetchall(self):
        return list(self._rows)

    def fetchone(self):
        return self._rows[0] if self._rows else None


class SlotConn:
    """The source as drop_slot sees it: the slot's WAL sender (pid) is active for `busy` reads, then stops."""

    connection = None  # enough of an adaptation context to render a statement

    def __init__(self, busy):
        import psycopg
        self.adapters = psycopg.adapters
        self.busy = busy
        self.dropped = False
        self.executed = []

    def execute(self, stmt, params=None):
        text = stmt if isinstance(stmt, str) else stmt.as_string(None)
        self.executed.append((text, params))
        if text.startswith("SELECT active_pid"):
            if self.dropped:
                return Cursor([], ["active_pid", "retained"])
            pid = 4242 if self.busy > 0 else None
            self.busy -= 1
            return Cursor([(pid, 8192)], ["active_pid", "retained"])
        if "pg_drop_replication_slot" in text:
            self.dropped = True
        return Cursor([], None)


def test_drop_slot_check_mode_only_records():
    conn = SlotConn(busy=0)
    j = journal.Journal(check_mode=True)
    pgstream.drop_slot(conn, "pgshift_m_s1", 30, j)
    assert j.queries == ["SELECT pg_drop_replication_slot('pgshift_m_s1')"] and conn.executed == []


def test_drop_slot_terminates_a_sender_that_does_not_stop():
    conn = SlotConn(busy=2)
    j = journal.Journal()
    waits = []
    pgstream.drop_slot(conn, "pgshift_m_s1", 0, j, on_wait=lambda *a: waits.append(a[0:2] + a[3:]))
    assert j.queries == ["SELECT pg_drop_replication_slot('pgshift_m_s1')", "SELECT pg_terminate_backend(4242)"]
    assert waits[0] == (4242, 8192, False) and conn.dropped


def test_drop_slot_fails_when_the_sender_outlives_its_termination(monkeypatch):
    monkeypatch.setattr(pgstream.time, "sleep", lambda s: None)
    clock = iter(range(0, 10000, 5))
    monkeypatch.setattr(pgstream.time, "time", lambda: next(clock))
    conn = SlotConn(busy=10 ** 6)
    with pytest.raises(pgstream.SlotBusy, match=r"still used by process 4242 .* drop it by hand \(SELECT "
                                                r"pg_drop_replication_slot\('pgshift_m_s1'\)\)"):
        pgstream.drop_slot(conn, "pgshift_m_s1", 1, journal.Journal())
    assert not conn.dropped


def test_absent_slot_is_no_error():
    conn = SlotConn(busy=0)
    conn.dropped = True
    pgstream.drop_slot(conn, "s", 5, journal.Journal())
    assert len(conn.executed) == 1 and conn.executed[0][0].startswith("SELECT active_pid")  # read, nothing dropped
