"""DMS endpoint settings, changes and TLS (module_utils/dms_endpoints.py)."""

from __future__ import annotations

import pytest

from ansible_collections.pgshift.aurora.plugins.module_utils import dms_endpoints


def test_postgres_settings_names():
    got = dms_endpoints.postgres_settings(dict(slot_name="s1", heartbeat_enable=True, heartbeat_frequency=5, ddl_artifacts_schema="pgshift",
                                          map_boolean_as_boolean=True, some_new_thing=1, plugin_name=None))
    assert got == {"SlotName": "s1", "HeartbeatEnable": True, "HeartbeatFrequency": 5, "DdlArtifactsSchema": "pgshift",
                   "MapBooleanAsBoolean": True, "SomeNewThing": 1}


def test_session_replication_role_in_the_after_connect_script():
    assert dms_endpoints.postgres_settings(None, "replica") == {"AfterConnectScript": "SET session_replication_role = replica"}
    assert dms_endpoints.postgres_settings({"after_connect_script": "SET work_mem = '64MB';"}, "replica") == {
        "AfterConnectScript": "SET work_mem = '64MB'; SET session_replication_role = replica"}
    already = {"after_connect_script": "SET session_replication_role = replica"}
    assert dms_endpoints.postgres_settings(already, "replica") == {"AfterConnectScript": "SET session_replication_role = replica"}


def test_endpoint_changes_only_what_is_set():
    have = {"EndpointType": "SOURCE", "EngineName": "postgres", "ServerName": "db", "Port": 5432, "DatabaseName": "orders",
            "Username": "u", "SslMode": "require", "Status": "active",
            "PostgreSQLSettings": {"SlotName": "s1", "HeartbeatEnable": True, "HeartbeatFrequency": 5, "DatabaseName": "orders",
                                   "Port": 5432, "ServerName": "db", "Username": "u", "MaxFileSize": 32768}}
    want = dict(EngineName="postgres", ServerName="db", Port=5432, DatabaseName="orders", Username="u", SslMode=None,
                CertificateArn=None, PostgreSQLSettings={"SlotName": "s1", "HeartbeatEnable": True})
    assert dms_endpoints.endpoint_changes(want, have) == {}
    want["PostgreSQLSettings"] = {"SlotName": "s2", "HeartbeatEnable": True}
    want["Port"] = 5433
    assert dms_endpoints.endpoint_changes(want, have) == {"Port": 5433, "PostgreSQLSettings": {"SlotName": "s2", "HeartbeatEnable": True}}


CERT = "arn:aws:dms:eu-west-1:123456789012:cert:RDSGLOBALBUNDLE"


@pytest.mark.parametrize("libpq, dms_mode", [
    ("allow", "require"), ("prefer", "require"), ("require", "require"),
])
def test_endpoint_tls_is_never_weaker_than_libpq(libpq, dms_mode):
    assert dms_endpoints.endpoint_tls("src", libpq_sslmode=libpq) == (dms_mode, None, [])


@pytest.mark.parametrize("libpq", ["verify-ca", "verify-full"])
def test_endpoint_tls_verification_keeps_its_mode_and_needs_a_certificate(libpq):
    assert dms_endpoints.endpoint_tls("src", libpq_sslmode=libpq, certificate_arn=CERT) == (libpq, CERT, [])
    with pytest.raises(dms_endpoints.TlsError) as err:
        dms_endpoints.endpoint_tls("pgshift-orders-source", libpq_sslmode=libpq)
    msg = str(err.value)
    assert "pgshift-orders-source" in msg and "%s needs certificate_arn" % libpq in msg
    assert "dms_certificate_arn" in msg and "db_sslrootcert" in msg and "dms_ssl_mode: require" in msg


def test_endpoint_tls_disable_is_an_error_unless_none_is_asked_for():
    with pytest.raises(dms_endpoints.TlsError) as err:
        dms_endpoints.endpoint_tls("pgshift-orders-target", libpq_sslmode="disable")
    msg = str(err.value)
    assert "pgshift-orders-target" in msg and "never drops TLS silently" in msg and "dms_ssl_mode: none" in msg
    # Explicitly asked for: none, without a warning since the controller does not use TLS either.
    assert dms_endpoints.endpoint_tls("t", ssl_mode="none", libpq_sslmode="disable") == ("none", None, [])


def test_endpoint_tls_explicit_mode_wins_and_none_over_tls_is_warned_about():
    assert dms_endpoints.endpoint_tls("t", ssl_mode="require", libpq_sslmode="verify-full") == ("require", None, [])
    assert dms_endpoints.endpoint_tls("t", ssl_mode="verify-full", libpq_sslmode="prefer", certificate_arn=CERT) == (
        "verify-full", CERT, [])
    mode, cert, warnings = dms_endpoints.endpoint_tls("t", ssl_mode="none", libpq_sslmode="verify-full")
    assert (mode, cert) == ("none", None)
    assert len(warnings) == 1 and "without TLS" in warnings[0] and "verify-full" in warnings[0]
    with pytest.raises(dms_endpoints.TlsError, match="verify-ca needs certificate_arn"):
        dms_endpoints.endpoint_tls("t", ssl_mode="verify-ca", libpq_sslmode="verify-full")


def test_endpoint_tls_without_any_setting_requires_tls():
    assert dms_endpoints.endpoint_tls("t") == ("require", None, [])
    # A certificate given with require is sent as given.
    assert dms_endpoints.endpoint_tls("t", certificate_arn=CERT) == ("require", CERT, [])


def test_endpoint_tls_refuses_unknown_modes():
    with pytest.raises(dms_endpoints.TlsError, match="sslmode verify is not one of disable, allow"):
        dms_endpoints.endpoint_tls("t", libpq_sslmode="verify")
    with pytest.raises(dms_endpoints.TlsError, match="ssl_mode prefer is not one of none, require"):
        dms_endpoints.endpoint_tls("t", ssl_mode="prefer")
