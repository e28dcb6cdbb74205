# -*- coding: utf-8 -*-
# Copyright: pgshift.aurora contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Connection options to the TARGET, for modules that talk to both sides (prefix target_)."""

from __future__ import annotations


class ModuleDocFragment:
    DOCUMENTATION = r"""
options:
  target_login_host:
    description: Host name or IP address of the target PostgreSQL server (the target host's C(db_host)).
    type: str
    default: 127.0.0.1
  target_login_port:
    description: TCP port of the target server.
    type: int
    default: 5432
  target_login_db:
    description: The target database.
    type: str
    default: postgres
  target_login_user:
    description: User on the target.
    type: str
    default: postgres
  target_login_password:
    description: Password of O(target_login_user). Never logged nor returned.
    type: str
  target_ssl_mode:
    description: libpq C(sslmode) towards the target.
    type: str
    default: prefer
    choices: [disable, allow, prefer, require, verify-ca, verify-full]
  target_ca_cert:
    description: CA certificate file to verify the target with.
    type: path
  target_connect_timeout:
    description: Seconds to wait for a connection to the target.
    type: int
    default: 10
"""
