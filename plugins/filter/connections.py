# -*- coding: utf-8 -*-
# Copyright: pgshift.aurora contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filters that turn the inventory's database variables into module options.

- ``replication_connection``: how the *other* database server reaches this one (its subscriptions).
- ``login_options``: how the controller logs in to this database: the connection options of every
  PostgreSQL module of the collection (the action group ``pgshift.aurora.postgres``), so that a role
  sets them once with ``module_defaults`` (docs: login_options.yml and replication_connection.yml next to this file).
"""

from __future__ import annotations

from ansible.errors import AnsibleFilterError

from ansible_collections.pgshift.aurora.plugins.module_utils.replication_conn import (
    ReplicationConnError, peer_connection)

# The prefixes of a module's connections: none for its main one, target_ (pgshift.aurora.postgres_target) or
# source_ (pg_analyze) for its second one.
PREFIXES = ("", "target_", "source_")


def replication_connection(db_vars, name="this database"):
    try:
        return peer_connection(dict(db_vars), name)
    except ReplicationConnError as exc:
        raise AnsibleFilterError(str(exc)) from None


def _first(db_vars, names, what):
    """The value of the first of `names` the host defines (Jinja's `a | default(b)`: defined, even if empty)."""
    for name in names:
        if name in db_vars:
            return db_vars[name]
    raise AnsibleFilterError("login_options: the database host has no %s (docs/inventory.md)" % what)


def login_options(db_vars, admin=True, prefix="", connect_timeout=None):
    """The connection options of a PostgreSQL module of the collection for one database host.

    db_vars: the host's variables (db_host, db_port, db_name, db_user, db_password, db_admin_user,
    db_admin_password, db_sslmode, db_sslrootcert). admin: log in as db_admin_user/db_admin_password
    (each defaulting to db_user/db_password, as docs/inventory.md says), else as the migration user
    (db_user/db_password). prefix: '' for the module's main connection, 'target_' or 'source_' for its
    second one. connect_timeout: seconds, when given. ca_cert is left out when db_sslrootcert is empty
    (the module's own default applies), as is connect_timeout when None.
    """
    if prefix not in PREFIXES:
        raise AnsibleFilterError("login_options: prefix must be one of %s, got %r" % (
            ", ".join(repr(p) for p in PREFIXES), prefix))
    users = ("db_admin_user", "db_user") if admin else ("db_user",)
    passwords = ("db_admin_password", "db_password") if admin else ("db_password",)
    options = dict(
        login_host=_first(db_vars, ("db_host",), "db_host"),
        login_port=db_vars["db_port"] if "db_port" in db_vars else 5432,
        login_db=_first(db_vars, ("db_name",), "db_name"),
        login_user=_first(db_vars, users, " or ".join(users)),
        login_password=_first(db_vars, passwords, " or ".join(passwords)),
        ssl_mode=db_vars["db_sslmode"] if "db_sslmode" in db_vars else "prefer",
    )
    ca_cert = db_vars["db_sslrootcert"] if "db_sslrootcert" in db_vars else ""
    if ca_cert:
        options["ca_cert"] = ca_cert
    if connect_timeout is not None:
        options["connect_timeout"] = connect_timeout
    return dict((prefix + key, value) for key, value in options.items())


class FilterModule:
    def filters(self):
        return dict(replication_connection=replication_connection, login_options=login_options)
