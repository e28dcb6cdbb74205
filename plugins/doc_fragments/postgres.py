# -*- coding: utf-8 -*-
# Copyright: pgshift.aurora contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Connection options shared by every PostgreSQL module of pgshift.aurora."""

from __future__ import annotations


class ModuleDocFragment:
    DOCUMENTATION = r"""
options:
  login_host:
    description:
      - Host name or IP address of the PostgreSQL server (the inventory's C(db_host)).
    type: str
    default: 127.0.0.1
  login_port:
    description:
      - TCP port of the PostgreSQL server (the inventory's C(db_port)).
    type: int
    default: 5432
  login_db:
    description:
      - Database to connect to and inspect (the inventory's C(db_name)).
    type: str
    default: postgres
  login_user:
    description:
      - User to connect as (the inventory's C(db_user) or C(db_admin_user)).
    type: str
    default: postgres
  login_password:
    description:
      - Password of O(login_user). Never logged nor returned, also on failure.
      - When omitted, libpq's own sources apply (C(PGPASSWORD), C(~/.pgpass)).
    type: str
  ssl_mode:
    description:
      - libpq C(sslmode) (the inventory's C(db_sslmode)). Use C(verify-full) with
        O(ca_cert) set to the RDS CA bundle on AWS.
    type: str
    default: prefer
    choices: [disable, allow, prefer, require, verify-ca, verify-full]
  ca_cert:
    description:
      - CA certificate file to verify the server with (the inventory's C(db_sslrootcert)).
    type: path
  connect_timeout:
    description:
      - Seconds to wait for the connection before failing with a clear message.
    type: int
    default: 10
requirements:
  - psycopg >= 3.1
"""
