# -*- coding: utf-8 -*-
# Copyright: pgshift.aurora contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filters that turn the inventory's database variables into module options."""

from __future__ import annotations

DOCUMENTATION = r"""
name: replication_connection
short_description: How the other database server reaches this one (its subscriptions)
version_added: 0.3.0
description:
  - From a database host's variables (C(db_host), C(db_port), C(db_sslmode), C(db_replication_host),
    C(db_replication_port), C(db_replication_sslmode), C(db_replication_sslrootcert)), the host, port,
    sslmode and root certificate of the connection the other server makes to it (see docs/inventory.md).
  - Fails with a message that says what to set when the settings cannot work (verify-full without a
    certificate, TLS weaker than the controller's).
positional: _input
options:
  _input:
    description: The host's variables (C(hostvars[groups['source'][0]])).
    type: dict
    required: true
  name:
    description: How error messages call the database.
    type: str
"""

EXAMPLES = r"""
- name: The source as the target server reaches it
  ansible.builtin.debug:
    msg: "{{ hostvars[groups['source'][0]] | pgshift.aurora.replication_connection('source') }}"
"""

RETURN = r"""
_value:
  description: C(host), C(port), C(sslmode), C(sslrootcert) (null when none).
  type: dict
"""

from ansible.errors import AnsibleFilterError

from ansible_collections.pgshift.aurora.plugins.module_utils.replication_conn import (
    ReplicationConnError, peer_connection)


def replication_connection(db_vars, name="this database"):
    try:
        return peer_connection(dict(db_vars), name)
    except ReplicationConnError as exc:
        raise AnsibleFilterError(str(exc)) from None


class FilterModule:
    def filters(self):
        return dict(replication_connection=replication_connection)
