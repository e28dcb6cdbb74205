"""journal.Journal: the one statement path (record, run or only record, mask)."""

from __future__ import annotations

import pytest

from ansible_collections.pgshift.aurora.plugins.module_utils import journal

psycopg = pytest.importorskip("psycopg")
from psycopg import sql  # noqa: E402


class FakeConn:
    """Enough of a psycopg connection for rendering: quoting needs an adapter context, no server."""

    def __init__(self):
        self.executed = []

    def execute(self, stmt, params=None):
        self.executed.append((stmt, params))
        return "cursor"


def test_mask_covers_literal_and_conninfo_forms():
    secret = "p'a\\ss"
    text = "PASSWORD 'p''a\\ss' conninfo password='p\\'a\\\\ss' raw p'a\\ss"
    masked = journal.mask(text, [secret])
    assert "p''a" not in masked and "p'a" not in masked and "a\\\\ss" not in masked
    assert masked.count(journal.REDACTED) == 3


def test_mask_ignores_empty_secrets():
    assert journal.mask("abc", [None, ""]) == "abc"


def test_run_records_and_executes():
    conn = FakeConn()
    j = journal.Journal(secrets=["s3cret"])
    assert j.run(conn, "ALTER ROLE x PASSWORD 's3cret'") == "cursor"
    assert j.queries == ["ALTER ROLE x PASSWORD '********'"]
    assert conn.executed == [("ALTER ROLE x PASSWORD 's3cret'", None)]


def test_check_mode_records_only_unless_always():
    conn = FakeConn()
    j = journal.Journal(check_mode=True)
    assert j.run(conn, "DROP TABLE t") is None
    assert j.run(conn, "SET LOCAL lock_timeout = 1", always=True) == "cursor"
    assert j.queries == ["DROP TABLE t", "SET LOCAL lock_timeout = 1"]
    assert conn.executed == [("SET LOCAL lock_timeout = 1", None)]


def test_composed_statement_renders_from_the_object_that_runs():
    stmt = sql.SQL("CREATE PUBLICATION {} FOR TABLE {}").format(
        sql.Identifier('pgshift_m "1"'), sql.Identifier("Sales", "Order Lines"))
    j = journal.Journal(check_mode=True)
    j.run(None, stmt)
    assert j.queries == ['CREATE PUBLICATION "pgshift_m ""1""" FOR TABLE "Sales"."Order Lines"']


def test_note_and_scrub_mask():
    j = journal.Journal(secrets=["pw"])
    j.add_secret("other")
    j.note("START_REPLICATION password=pw other")
    assert j.queries == ["START_REPLICATION password=******** ********"]
    assert j.scrub("failed: pw") == "failed: ********"


@pytest.mark.parametrize("secret", ["mig-secret-9f3", "it master \\ ' \" $ % secret", "p w'\\x", "pa\\ss"])
def test_a_password_inside_a_subscription_conninfo_is_masked(secret):
    """A conninfo value inside an SQL literal: psycopg renders E'...' (backslashes doubled) when it holds one."""
    from ansible_collections.pgshift.aurora.plugins.module_utils import replication_conn
    conninfo = replication_conn.subscription_conninfo("h", 5432, "d", "u", secret, "require")
    j = journal.Journal(check_mode=True, secrets=[secret])
    j.run(None, sql.SQL("CREATE SUBSCRIPTION s CONNECTION {} PUBLICATION s").format(sql.Literal(conninfo)))
    shown = j.queries[0]
    assert shown.startswith("CREATE SUBSCRIPTION s CONNECTION ")
    assert "password=********" in shown or "password=''********''" in shown
    assert shown.endswith(" sslmode=require' PUBLICATION s")
