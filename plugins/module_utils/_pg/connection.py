# -*- coding: utf-8 -*-
# Copyright: pgshift.aurora contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Connections to PostgreSQL with errors a DBA can act on, and secrets kept out."""

from __future__ import annotations

import traceback

from ansible_collections.pgshift.aurora.plugins.module_utils.journal import mask

try:
    import psycopg
except ImportError:  # pragma: no cover - reported through missing_required_lib
    psycopg = None
    PSYCOPG_IMPORT_ERROR = traceback.format_exc()
else:
    PSYCOPG_IMPORT_ERROR = None

APPLICATION_NAME = "pgshift.aurora"
scrub = mask  # every error path masks secrets with the journal's rule


def postgres_argument_spec():
    """The connection options every PostgreSQL module shares (doc fragment pgshift.aurora.postgres)."""
    return dict(
        login_host=dict(type="str", default="127.0.0.1"),
        login_port=dict(type="int", default=5432),
        login_db=dict(type="str", default="postgres"),
        login_user=dict(type="str", default="postgres"),
        login_password=dict(type="str", no_log=True),
        ssl_mode=dict(
            type="str",
            default="prefer",
            choices=["disable", "allow", "prefer", "require", "verify-ca", "verify-full"],
        ),
        ca_cert=dict(type="path"),
        connect_timeout=dict(type="int", default=10),
    )


class PgConnectError(Exception):
    """A connection failed; the message says what to check and never holds a secret."""


def endpoint(params):
    return "%s:%s/%s" % (params["login_host"], params["login_port"], params["login_db"])


def explain_connect_error(params, message):
    """Turn a libpq error into a sentence that says what to fix (pure; unit tested)."""
    where = endpoint(params)
    user = params["login_user"]
    low = message.lower()
    if "password authentication failed" in low or "authentication failed" in low:
        return (
            "authentication failed for user %r on %s: check the user name and its password "
            "(db_user/db_password or db_admin_user/db_admin_password; the password is not shown)" % (user, where)
        )
    if "no password supplied" in low or "fe_sendauth" in low:
        return "the server at %s asks for a password for user %r and none was given: set db_password" % (where, user)
    if "does not exist" in low and "database" in low:
        return "database %r does not exist on %s:%s: check db_name" % (
            params["login_db"], params["login_host"], params["login_port"])
    if "role" in low and "does not exist" in low:
        return "user %r does not exist on %s: create it or check db_user" % (user, where)
    if "no pg_hba.conf entry" in low or "pg_hba" in low:
        return "the server at %s refuses user %r from this host (pg_hba.conf or security group): allow it" % (where, user)
    if "timeout" in low or "timed out" in low:
        return "timed out after %ss reaching %s: check db_host/db_port, the network path and security groups" % (
            params["connect_timeout"], where)
    if "connection refused" in low or "could not connect" in low or "could not translate host" in low \
            or "name or service not known" in low or "network is unreachable" in low:
        return "cannot reach PostgreSQL at %s:%s: check db_host/db_port and that the server is running (%s)" % (
            params["login_host"], params["login_port"], message.strip().splitlines()[-1] if message.strip() else "")
    if "ssl" in low or "certificate" in low:
        return "TLS failed with %s (ssl_mode=%s): check db_sslmode and db_sslrootcert (%s)" % (
            where, params["ssl_mode"], message.strip())
    return "cannot connect to %s as %r: %s" % (where, user, message.strip())


def conninfo_kwargs(params):
    kwargs = dict(
        host=params["login_host"],
        port=params["login_port"],
        dbname=params["login_db"],
        user=params["login_user"],
        sslmode=params["ssl_mode"],
        connect_timeout=params["connect_timeout"],
        application_name=APPLICATION_NAME,
        # Names and values always arrive as text, SQL_ASCII databases included.
        client_encoding="UTF8",
    )
    if params.get("login_password"):
        kwargs["password"] = params["login_password"]
    if params.get("ca_cert"):
        kwargs["sslrootcert"] = params["ca_cert"]
    return kwargs


def connect(params, autocommit=True):
    """Open a psycopg connection or raise PgConnectError with an actionable, secret-free message."""
    try:
        return psycopg.connect(autocommit=autocommit, **conninfo_kwargs(params))
    except psycopg.Error as exc:
        raise PgConnectError(scrub(explain_connect_error(params, str(exc)), [params.get("login_password")])) from None
