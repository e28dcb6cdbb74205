# -*- coding: utf-8 -*-
# Copyright: pgshift.aurora contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Connection options to the SOURCE, for modules whose main connection is the target (prefix source_)."""

from __future__ import annotations


class ModuleDocFragment:
    DOCUMENTATION = r"""
options:
  source_login_host:
    description:
      - Host name or IP address of the source PostgreSQL server (the source host's C(db_host)).
      - Without it, nothing is read from the source.
    type: str
  source_login_port:
    description: TCP port of the source server.
    type: int
    default: 5432
  source_login_db:
    description: The source database.
    type: str
    default: postgres
  source_login_user:
    description: User on the source.
    type: str
    default: postgres
  source_login_password:
    description: Password of O(source_login_user). Never logged nor returned.
    type: str
  source_ssl_mode:
    description: libpq C(sslmode) towards the source.
    type: str
    default: prefer
    choices: [disable, allow, prefer, require, verify-ca, verify-full]
  source_ca_cert:
    description: CA certificate file to verify the source with.
    type: path
  source_connect_timeout:
    description: Seconds to wait for a connection to the source.
    type: int
    default: 10
"""
