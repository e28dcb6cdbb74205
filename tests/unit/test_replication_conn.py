"""The connection a server makes to the other one, from the inventory (module_utils/replication_conn)."""

import pytest

from ansible_collections.pgshift.aurora.plugins.module_utils.replication_conn import (
    ReplicationConnError, peer_connection)


def test_defaults_follow_the_controller_and_keep_tls_without_a_certificate():
    got = peer_connection(dict(db_host="src.example", db_port=5433, db_sslmode="verify-full",
                               db_sslrootcert="/home/me/rds-bundle.pem"))
    # The controller's CA path is never given to the server: require is what works on RDS/Aurora.
    assert got == dict(host="src.example", port=5433, sslmode="require", sslrootcert=None)


@pytest.mark.parametrize("own,expected", [("require", "require"), ("verify-ca", "require"), ("prefer", "prefer"),
                                          ("disable", "disable"), (None, "prefer")])
def test_default_mode_is_never_weaker_than_the_controllers(own, expected):
    got = peer_connection(dict(db_host="h", db_sslmode=own))
    assert got["sslmode"] == expected and got["port"] == 5432


def test_explicit_settings_as_the_other_server_sees_them():
    got = peer_connection(dict(db_host="public.example", db_port=5432, db_sslmode="verify-full",
                               db_replication_host="10.0.0.5", db_replication_port="6432",
                               db_replication_sslmode="verify-full",
                               db_replication_sslrootcert="/var/lib/pg/ca.crt"))
    assert got == dict(host="10.0.0.5", port=6432, sslmode="verify-full", sslrootcert="/var/lib/pg/ca.crt")


def test_verify_without_a_certificate_says_what_to_set():
    with pytest.raises(ReplicationConnError, match="db_replication_sslrootcert.*set db_replication_sslmode: require"):
        peer_connection(dict(db_host="h", db_sslmode="verify-full", db_replication_sslmode="verify-full"), "lab-source")


@pytest.mark.parametrize("weaker", ["disable", "allow", "prefer"])
def test_tls_is_never_dropped_silently(weaker):
    with pytest.raises(ReplicationConnError, match="without TLS"):
        peer_connection(dict(db_host="h", db_sslmode="require", db_replication_sslmode=weaker))


def test_bad_values_are_named():
    with pytest.raises(ReplicationConnError, match="db_replication_sslmode 'strict'"):
        peer_connection(dict(db_host="h", db_replication_sslmode="strict"))
    with pytest.raises(ReplicationConnError, match="no db_host"):
        peer_connection(dict(), "lab-target")


def test_conninfo_quotes_and_masks():
    from ansible_collections.pgshift.aurora.plugins.module_utils.replication_conn import subscription_conninfo

    info = subscription_conninfo("db.example", 5432, "app", "pgshift", "p w'\\x", "require")
    assert info == "host=db.example port=5432 dbname=app user=pgshift password='p w\\'\\\\x' sslmode=require"
    masked = subscription_conninfo("db.example", 5432, "app", "pgshift", "secret", mask=True)
    assert "secret" not in masked and "password=********" in masked
    assert "password" not in subscription_conninfo("h", 1, "d", "u")
    assert subscription_conninfo("h", 1, "d", "u", sslrootcert="/srv/ca.crt").endswith("sslrootcert=/srv/ca.crt")
