# -*- coding: utf-8 -*-
# Copyright: pgshift.aurora contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""DMS PostgreSQL endpoints, pure: PostgreSQLSettings from snake_case options, what to modify, and TLS never
weaker than what the controller's libpq connection asks for."""

from __future__ import annotations

from ansible_collections.pgshift.aurora.plugins.module_utils.drift import drift

POSTGRES_SETTINGS_KEYS = {
    "after_connect_script": "AfterConnectScript",
    "babelfish_database_name": "BabelfishDatabaseName",
    "capture_ddls": "CaptureDdls",
    "database_mode": "DatabaseMode",
    "ddl_artifacts_schema": "DdlArtifactsSchema",
    "disable_unicode_source_filter": "DisableUnicodeSourceFilter",
    "execute_timeout": "ExecuteTimeout",
    "fail_tasks_on_lob_truncation": "FailTasksOnLobTruncation",
    "heartbeat_enable": "HeartbeatEnable",
    "heartbeat_frequency": "HeartbeatFrequency",
    "heartbeat_schema": "HeartbeatSchema",
    "map_boolean_as_boolean": "MapBooleanAsBoolean",
    "map_jsonb_as_clob": "MapJsonbAsClob",
    "map_long_varchar_as": "MapLongVarcharAs",
    "max_file_size": "MaxFileSize",
    "plugin_name": "PluginName",
    "slot_name": "SlotName",
    "trim_space_in_char": "TrimSpaceInChar",
}


def snake_to_camel(key):
    return "".join(part[:1].upper() + part[1:] for part in key.split("_"))


def postgres_settings(options, session_replication_role=None):
    """PostgreSQLSettings from the snake_case option (unknown keys CamelCased), with the after-connect
    script that sets session_replication_role when asked."""
    out = {}
    for key, value in (options or {}).items():
        if value is None:
            continue
        out[POSTGRES_SETTINGS_KEYS.get(key, snake_to_camel(key))] = value
    if session_replication_role:
        stmt = "SET session_replication_role = %s" % session_replication_role
        script = out.get("AfterConnectScript")
        if not script:
            out["AfterConnectScript"] = stmt
        elif stmt.lower() not in script.lower():
            out["AfterConnectScript"] = script.rstrip().rstrip(";") + "; " + stmt
    return out


def endpoint_changes(want, have):
    """modify_endpoint arguments for what differs between want (create_endpoint arguments without
    identifier, tags nor password) and have (the described Endpoint); PostgreSQLSettings compared key by key."""
    modify = {}
    for key, value in want.items():
        if value is None or key in ("EndpointIdentifier", "Tags", "Password"):
            continue
        if key == "PostgreSQLSettings":
            if drift(value, have.get("PostgreSQLSettings") or {}):
                modify[key] = value
        elif drift(value, have.get(key)):
            modify[key] = value
    return modify


DMS_SSL_MODES = ("none", "require", "verify-ca", "verify-full")

LIBPQ_SSL_MODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")

VERIFYING = ("verify-ca", "verify-full")

# libpq sslmode -> DMS SslMode. allow and prefer become require: against a server that requires TLS (RDS with
# rds.force_ssl, Aurora) libpq ends up encrypted, and DMS's none would not be. disable has no mapping: TLS off
# must be asked for explicitly (ssl_mode none).
LIBPQ_TO_DMS = {"allow": "require", "prefer": "require", "require": "require",
                "verify-ca": "verify-ca", "verify-full": "verify-full"}


class TlsError(ValueError):
    """The endpoint's TLS settings cannot be decided; the message says what to set."""


def endpoint_tls(endpoint, ssl_mode=None, libpq_sslmode=None, certificate_arn=None):
    """(SslMode, CertificateArn, warnings) of a DMS endpoint, or TlsError.

    ssl_mode: DMS's mode asked for explicitly (the inventory's dms_ssl_mode), wins when set, none included.
    libpq_sslmode: the mode the controller connects to that database with (db_sslmode); mapped by LIBPQ_TO_DMS.
    Neither: require. verify-ca / verify-full need certificate_arn; the certificate is sent as given.
    """
    warnings = []
    if ssl_mode:
        if ssl_mode not in DMS_SSL_MODES:
            raise TlsError("endpoint %s: ssl_mode %s is not one of %s" % (endpoint, ssl_mode, ", ".join(DMS_SSL_MODES)))
        mode = ssl_mode
        if mode == "none" and libpq_sslmode and libpq_sslmode != "disable":
            warnings.append("endpoint %s: DMS connects without TLS (ssl_mode none) although the database is reached "
                            "with sslmode %s" % (endpoint, libpq_sslmode))
    elif libpq_sslmode:
        if libpq_sslmode not in LIBPQ_SSL_MODES:
            raise TlsError("endpoint %s: sslmode %s is not one of %s" % (endpoint, libpq_sslmode,
                                                                         ", ".join(LIBPQ_SSL_MODES)))
        if libpq_sslmode == "disable":
            raise TlsError("endpoint %s: the database's sslmode is disable, and a DMS endpoint never drops TLS "
                           "silently: set ssl_mode none to connect DMS without TLS (replicate role: dms_ssl_mode: none "
                           "in the inventory), or give the database a TLS sslmode (require, verify-full)" % endpoint)
        mode = LIBPQ_TO_DMS[libpq_sslmode]
    else:
        mode = "require"
    if mode in VERIFYING and not certificate_arn:
        raise TlsError("endpoint %s: ssl_mode %s needs certificate_arn, the DMS certificate of the server's CA (import "
                       "the CA bundle with aws dms import-certificate or pgshift.aurora.dms_certificate; replicate "
                       "role: dms_certificate_arn, or db_sslrootcert, which it imports itself), or use ssl_mode "
                       "require (dms_ssl_mode: require)" % (endpoint, mode))
    return mode, certificate_arn or None, warnings
