# -*- coding: utf-8 -*-
# Copyright: pgshift.aurora contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The connection a database server makes to the other one (its subscriptions), from the inventory.

The controller reaches each database with ``db_host``/``db_port``/``db_sslmode``/``db_sslrootcert``.
A subscription is different: the *server* opens it, so the host, port, TLS mode and root
certificate must be the ones that server can use (on AWS it cannot read the controller's files).
The inventory says so per database with ``db_replication_*`` (how the *other* server reaches this
one); what it leaves out defaults to what works on RDS and Aurora out of the box:

- host and port: the controller's (``db_host``, ``db_port``);
- sslmode: ``require`` whenever the controller itself uses TLS with this database (encrypted,
  no certificate needed on the server), else the controller's own mode; TLS is never weaker
  than what the controller asked for;
- sslrootcert: none (``verify-ca``/``verify-full`` need one, a path on the *other* server).
"""

from __future__ import annotations

import re

TLS_MODES = ("require", "verify-ca", "verify-full")
SSL_MODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")
_STRENGTH = dict((m, i) for i, m in enumerate(SSL_MODES))


class ReplicationConnError(ValueError):
    """The inventory's replication connection cannot work; the message says what to set."""


def peer_connection(db_vars, name="this database"):
    """dict(host, port, sslmode, sslrootcert) of the connection the other server makes to this database.

    db_vars: the host's variables (db_host, db_port, db_sslmode, db_replication_*). name: how
    messages call the database (the inventory host name).
    """
    if not db_vars.get("db_host"):
        raise ReplicationConnError("%s has no db_host" % name)
    host = db_vars.get("db_replication_host") or db_vars["db_host"]
    port = int(db_vars.get("db_replication_port") or db_vars.get("db_port") or 5432)
    own = db_vars.get("db_sslmode") or "prefer"
    if own not in SSL_MODES:
        raise ReplicationConnError("%s: db_sslmode %r is not one of %s" % (name, own, ", ".join(SSL_MODES)))
    mode = db_vars.get("db_replication_sslmode")
    if not mode:
        mode = "require" if own in TLS_MODES else own
    if mode not in SSL_MODES:
        raise ReplicationConnError("%s: db_replication_sslmode %r is not one of %s" % (
            name, mode, ", ".join(SSL_MODES)))
    if own in TLS_MODES and _STRENGTH[mode] < _STRENGTH["require"]:
        raise ReplicationConnError(
            "%s: db_replication_sslmode %s would let the other server connect without TLS while db_sslmode is "
            "%s: use require, verify-ca or verify-full" % (name, mode, own))
    root = db_vars.get("db_replication_sslrootcert") or None
    if mode in ("verify-ca", "verify-full") and not root:
        raise ReplicationConnError(
            "%s: db_replication_sslmode %s needs db_replication_sslrootcert, the CA file as the other database "
            "server reads it (a path on that server, not on the controller; from PostgreSQL 16 also 'system' for "
            "the server's own CA store), or set db_replication_sslmode: require" % (name, mode))
    return dict(host=host, port=port, sslmode=mode, sslrootcert=root)


def _conninfo_value(value):
    text = str(value)
    if text and not re.search(r"[\s'\\]", text):
        return text
    return "'%s'" % text.replace("\\", "\\\\").replace("'", "\\'")


def subscription_conninfo(host, port, dbname, user, password=None, sslmode=None, sslrootcert=None, mask=False):
    """The libpq connection string a subscriber server uses to reach the publisher (its password masked when
    asked); host, port, sslmode and sslrootcert as peer_connection() gives them."""
    parts = [("host", host), ("port", port), ("dbname", dbname), ("user", user)]
    if password:
        parts.append(("password", "********" if mask else password))
    if sslmode:
        parts.append(("sslmode", sslmode))
    if sslrootcert:
        parts.append(("sslrootcert", sslrootcert))
    return " ".join("%s=%s" % (k, _conninfo_value(v)) for k, v in parts if v is not None and v != "")
