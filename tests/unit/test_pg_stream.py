"""A native stream's statements (module_utils/_pg/stream.py), rendered without a database."""

from __future__ import annotations

from ansible_collections.pgshift.aurora.plugins.module_utils import native
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
