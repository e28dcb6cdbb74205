"""What only pg_native_stream adds to the replication objects (module_utils/_pg/stream.py); their statements
and the slot's drop are tested with _pg/replication.py (test_replication.py)."""

from __future__ import annotations

from ansible_collections.pgshift.aurora.plugins.module_utils._pg import stream as pgstream


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
