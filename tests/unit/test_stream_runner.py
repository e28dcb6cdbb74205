"""pg_native_stream's runner (module_utils/runners/stream.py): what it derives from the module's options.
(The stream's statements and its slot's drop are tested with _pg/replication.py in test_replication.py.)"""

from __future__ import annotations

from ansible_collections.pgshift.aurora.plugins.module_utils.runners import stream as runner


def test_subscription_conninfo_from_the_options():
    p = dict(login_host="127.0.0.1", login_port=5432, login_db="app", login_user="postgres", login_password="adm",
             ssl_mode="prefer", source_replication_user=None, source_replication_password=None, source_host=None,
             source_port=None, source_db=None, source_ssl_mode=None, source_ssl_root_cert=None)
    assert runner.subscription_conninfo(p) == (
        "host=127.0.0.1 port=5432 dbname=app user=postgres password=adm sslmode=prefer")
    p.update(source_replication_user="mig", source_host="src.internal", source_port=6432, source_db="db",
             source_ssl_mode="verify-full", source_ssl_root_cert="/ca.pem")
    assert runner.subscription_conninfo(p) == (
        "host=src.internal port=6432 dbname=db user=mig sslmode=verify-full sslrootcert=/ca.pem")
    p.update(source_replication_password="pw")
    assert "user=mig password=pw " in runner.subscription_conninfo(p)
