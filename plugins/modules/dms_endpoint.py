#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: pgshift.aurora contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: dms_endpoint
short_description: Create, modify or delete an AWS DMS PostgreSQL endpoint (source RDS, target Aurora)
version_added: 0.3.0
description:
  - Makes the DMS endpoint O(identifier) exist as described, or not exist, with its C(PostgreSQLSettings)
    (slot name, heartbeat, after-connect script ...) given in snake_case.
  - Compares only what is set against what the service returns (the service adds defaults); a second
    run changes nothing. The password is never returned by the service, so it is only sent on creation,
    or on every run with O(update_password=always) (which then reports a change every run).
  - Credentials either as O(username)/O(password) or from Secrets Manager (O(secrets_manager_secret_id)
    with O(secrets_manager_access_role_arn)), the way DMS reads them itself.
  - TLS is never dropped silently (O(ssl_mode), O(libpq_sslmode)). Without either the endpoint requires TLS, a
    database reached with sslmode C(prefer) gets C(require), and C(verify-ca) / C(verify-full) without
    O(certificate_arn) or a database reached without TLS (C(disable)) is an error that says what to set.
  - Unlike M(community.aws.dms_endpoint), it sets C(PostgreSQLSettings), compares them key by key, and
    takes the C(aurora-postgresql) engine.
  - An endpoint used by a replication task cannot be deleted; delete the tasks first.
author:
  - pgshift.aurora developers (@pgshift)
extends_documentation_fragment:
  - pgshift.aurora.aws
  - pgshift.aurora.in_process
options:
  identifier:
    description: The endpoint identifier.
    type: str
    required: true
  endpoint_type:
    description: Source (the RDS instance) or target (the Aurora cluster). Needed to create the endpoint.
    type: str
    choices: [source, target]
  engine_name:
    description: The engine.
    type: str
    default: postgres
    choices: [postgres, aurora-postgresql]
  server_name:
    description: Host name (for Aurora, the cluster's writer endpoint). Not with O(secrets_manager_secret_id).
    type: str
  port:
    description: Port.
    type: int
  database_name:
    description: Database name.
    type: str
  username:
    description: User name. Not with O(secrets_manager_secret_id).
    type: str
  password:
    description: Password. Never returned nor shown. See O(update_password).
    type: str
  update_password:
    description:
      - C(on_create) sends O(password) only when creating the endpoint (the service never returns it, so a
        change cannot be detected); C(always) sends it on every run and reports a change every run.
    type: str
    choices: [always, on_create]
    default: on_create
  secrets_manager_secret_id:
    description: A Secrets Manager secret (ARN or name) holding host, port, username and password.
    type: str
  secrets_manager_access_role_arn:
    description: The IAM role DMS assumes to read O(secrets_manager_secret_id).
    type: str
  ssl_mode:
    description:
      - DMS's TLS mode, asked for explicitly; wins over O(libpq_sslmode). C(verify-ca) and C(verify-full) need
        O(certificate_arn). C(none) (no encryption) is only ever used when set here.
      - Neither O(ssl_mode) nor O(libpq_sslmode) set means C(require), also on an existing endpoint.
    type: str
    choices: [none, require, verify-ca, verify-full]
  libpq_sslmode:
    description:
      - The sslmode the controller connects to this database with (the inventory's C(db_sslmode)), mapped to DMS's
        when O(ssl_mode) is not set, never to something weaker, C(require) and C(verify-*) as they are; C(allow) and
        C(prefer) become C(require) (against a server that requires TLS, such as RDS with C(rds.force_ssl) or
        Aurora, libpq encrypts too).
      - C(disable) is an error that says to set O(ssl_mode=none), since TLS is never dropped silently.
    type: str
    choices: [disable, allow, prefer, require, verify-ca, verify-full]
  certificate_arn:
    description:
      - The DMS certificate to verify the server with (the RDS CA bundle imported into DMS, see
        M(pgshift.aurora.dms_certificate)); required with C(verify-ca) and C(verify-full).
    type: str
  kms_key_id:
    description: KMS key encrypting the connection settings (creation only).
    type: str
  postgresql_settings:
    description:
      - C(PostgreSQLSettings) in snake_case, for example C(slot_name), C(heartbeat_enable), C(heartbeat_frequency)
        (minutes), C(heartbeat_schema), C(after_connect_script), C(plugin_name) (C(pglogical) or C(test_decoding)),
        C(capture_ddls), C(ddl_artifacts_schema), C(max_file_size), C(execute_timeout),
        C(fail_tasks_on_lob_truncation), C(map_boolean_as_boolean), C(map_jsonb_as_clob), C(map_long_varchar_as),
        C(database_mode), C(trim_space_in_char); any other key is CamelCased and passed as is.
      - On the source, set C(slot_name) to a slot you own and C(heartbeat_enable=true) so an idle database does not
        hold WAL; C(fail_tasks_on_lob_truncation=true) makes a truncated LOB fail the task instead of passing.
    type: dict
  session_replication_role:
    description:
      - On a target, C(replica) appends C(SET session_replication_role = replica) to the after-connect script, so
        triggers and foreign keys do not fire while DMS loads and applies (the schema is copied first, with them).
        Needs the DMS user to be allowed to set it (C(rds_superuser) on Aurora).
    type: str
    choices: [origin, replica]
  tags:
    description: Tags; when set, the endpoint's tags are made equal (see O(purge_tags)).
    type: dict
  purge_tags:
    description: Remove the tags not in O(tags). Tags starting with C(aws:) are never removed.
    type: bool
    default: true
  state:
    description: Whether the endpoint exists.
    type: str
    choices: [present, absent]
    default: present
"""

EXAMPLES = r"""
- name: Source endpoint (RDS for PostgreSQL), credentials from Secrets Manager, TLS verified
  pgshift.aurora.dms_endpoint:
    identifier: pgshift-orders-source
    endpoint_type: source
    engine_name: postgres
    database_name: orders
    secrets_manager_secret_id: arn:aws:secretsmanager:eu-west-1:123456789012:secret:pgshift/source-AbCdEf
    secrets_manager_access_role_arn: arn:aws:iam::123456789012:role/pgshift-dms-secrets
    ssl_mode: verify-full
    certificate_arn: arn:aws:dms:eu-west-1:123456789012:cert:RDSGLOBALBUNDLE
    postgresql_settings:
      slot_name: pgshift_orders_dms_s1
      plugin_name: pglogical
      heartbeat_enable: true
      heartbeat_frequency: 5
      capture_ddls: false
      fail_tasks_on_lob_truncation: true
    aws_region: eu-west-1

- name: Target endpoint (Aurora PostgreSQL), triggers and foreign keys off during the load
  pgshift.aurora.dms_endpoint:
    identifier: pgshift-orders-target
    endpoint_type: target
    engine_name: aurora-postgresql
    server_name: orders.cluster-abcdefghijkl.eu-west-1.rds.amazonaws.com
    port: 5432
    database_name: orders
    username: pgshift_migrator
    password: "{{ target_password }}"
    # verify-full as the controller connects (db_sslmode), with the RDS CA bundle imported into DMS.
    libpq_sslmode: verify-full
    certificate_arn: arn:aws:dms:eu-west-1:123456789012:cert:RDSGLOBALBUNDLE
    session_replication_role: replica
    aws_region: eu-west-1
"""

RETURN = r"""
arn:
  description: The endpoint ARN.
  returned: when the endpoint exists
  type: str
endpoint:
  description: The endpoint as the service describes it, in snake_case (never a password), with C(postgresql_settings) and C(tags).
  returned: when the endpoint exists
  type: dict
  sample:
    endpoint_identifier: pgshift-orders-source
    endpoint_type: source
    engine_name: postgres
    server_name: orders.abcdefghijkl.eu-west-1.rds.amazonaws.com
    port: 5432
    database_name: orders
    username: pgshift_migrator
    ssl_mode: require
    status: active
    postgresql_settings: {slot_name: pgshift_orders_dms_s1, heartbeat_enable: true}
    tags: {}
"""

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible_collections.pgshift.aurora.plugins.module_utils._aws import common
from ansible_collections.pgshift.aurora.plugins.module_utils.runners import dms_endpoint as runner


def main():
    module = AnsibleModule(supports_check_mode=True, **runner.module_spec())
    if common.BOTO3_IMPORT_ERROR:
        module.fail_json(msg=missing_required_lib("boto3"), exception=common.BOTO3_IMPORT_ERROR)
    runner.run_module(module)


if __name__ == "__main__":
    main()
