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
from ansible.module_utils.common.dict_transformations import camel_dict_to_snake_dict

from ansible_collections.pgshift.aurora.plugins.module_utils import dms
from ansible_collections.pgshift.aurora.plugins.module_utils._aws import dms as dms_api

SECRET_KEYS = ("password", "Password")


def result_of(ep, tags):
    ep = dict((k, v) for k, v in ep.items() if k not in SECRET_KEYS and v is not None)
    pg = ep.pop("PostgreSQLSettings", None) or {}
    out = camel_dict_to_snake_dict(ep)
    out["postgresql_settings"] = camel_dict_to_snake_dict(dict((k, v) for k, v in pg.items() if k not in SECRET_KEYS))
    out["tags"] = tags
    return out


def wanted(p, ssl_mode, certificate_arn):
    """create_endpoint arguments (no identifier, tags nor password); TLS from dms.endpoint_tls."""
    pg = dms.postgres_settings(p["postgresql_settings"], p["session_replication_role"])
    if p["secrets_manager_secret_id"]:
        pg["SecretsManagerSecretId"] = p["secrets_manager_secret_id"]
        if p["secrets_manager_access_role_arn"]:
            pg["SecretsManagerAccessRoleArn"] = p["secrets_manager_access_role_arn"]
    return dict(EndpointType=p["endpoint_type"], EngineName=p["engine_name"], ServerName=p["server_name"], Port=p["port"],
                DatabaseName=p["database_name"], Username=p["username"], SslMode=ssl_mode,
                CertificateArn=certificate_arn, PostgreSQLSettings=pg or None)


def run(module, api):
    p = module.params
    ident = p["identifier"]
    ep = dms_api.find_endpoint(api, ident)
    tags = dms_api.list_tags(api, ep["EndpointArn"]) if ep else {}
    result = dict(changed=False)

    if p["state"] == "absent":
        if ep is None:
            return result
        result.update(changed=True, diff=dict(before=dict(identifier=ident, state="present"), after=dict(identifier=ident, state="absent")))
        if not module.check_mode:
            api.call("delete_endpoint", doing="deleting endpoint %s (delete the tasks using it first)" % ident,
                     EndpointArn=ep["EndpointArn"])
        return result

    try:
        ssl_mode, certificate_arn, warnings = dms.endpoint_tls(ident, p["ssl_mode"], p["libpq_sslmode"], p["certificate_arn"])
    except dms.TlsError as exc:
        module.fail_json(msg=str(exc))
    for warning in warnings:
        module.warn(warning)
    want = wanted(p, ssl_mode, certificate_arn)
    if ep is None:
        if not p["endpoint_type"]:
            module.fail_json(msg="endpoint %s does not exist: set endpoint_type (source or target) to create it" % ident)
        if not p["secrets_manager_secret_id"] and not (p["server_name"] and p["port"] and p["username"] and p["password"]):
            module.fail_json(msg="endpoint %s: set server_name, port, username and password, or secrets_manager_secret_id "
                                 "and secrets_manager_access_role_arn" % ident)
        shown = dict((k, v) for k, v in want.items() if v is not None)
        result.update(changed=True, diff=dict(before={}, after=dict(shown, EndpointIdentifier=ident, Tags=p["tags"] or {})))
        if module.check_mode:
            return result
        args = dict((k, v) for k, v in want.items() if v is not None)
        args["EndpointIdentifier"] = ident
        if p["password"]:
            args["Password"] = p["password"]
        if p["kms_key_id"]:
            args["KmsKeyId"] = p["kms_key_id"]
        if p["tags"]:
            args["Tags"] = [dict(Key=str(k), Value=str(v)) for k, v in sorted(p["tags"].items())]
        ep = api.call("create_endpoint", doing="creating endpoint %s" % ident, **args)["Endpoint"]
        tags = dms_api.list_tags(api, ep["EndpointArn"])
        result.update(endpoint=result_of(ep, tags), arn=ep["EndpointArn"])
        return result

    arn = ep["EndpointArn"]
    if p["endpoint_type"] and p["endpoint_type"] != str(ep.get("EndpointType")).lower():  # the service says SOURCE / TARGET
        module.fail_json(msg="endpoint %s is a %s endpoint, not a %s one: delete it first (state=absent) or use another "
                             "identifier" % (ident, str(ep.get("EndpointType")).lower(), p["endpoint_type"]))
    modify = dms.endpoint_changes(dict((k, v) for k, v in want.items() if k != "EndpointType"), ep)
    send_password = p["update_password"] == "always" and p["password"]
    add, remove = dms.tag_changes(p["tags"], tags, p["purge_tags"])
    if modify or send_password or add or remove:
        before = dict((k, ep.get(k)) for k in modify)
        after = dict(modify)
        if send_password:
            before["Password"] = "(not returned by the service)"
            after["Password"] = "(sent: update_password=always)"
        if add or remove:
            before["Tags"] = tags
            after["Tags"] = dict(p["tags"] if p["purge_tags"] else dict(tags, **add))
        result.update(changed=True, diff=dict(before=before, after=after))
        if not module.check_mode:
            if modify or send_password:
                args = dict(modify)
                if send_password:
                    args["Password"] = p["password"]
                api.call("modify_endpoint", doing="modifying endpoint %s" % ident, EndpointArn=arn, **args)
            dms_api.apply_tags(api, arn, add, remove)
            ep = dms_api.find_endpoint(api, arn)
            tags = dms_api.list_tags(api, arn)
    result.update(endpoint=result_of(ep, tags), arn=arn)
    return result


def main():
    spec = dict(
        identifier=dict(type="str", required=True),
        endpoint_type=dict(type="str", choices=["source", "target"]),
        engine_name=dict(type="str", default="postgres", choices=["postgres", "aurora-postgresql"]),
        server_name=dict(type="str"),
        port=dict(type="int"),
        database_name=dict(type="str"),
        username=dict(type="str"),
        password=dict(type="str", no_log=True),
        update_password=dict(type="str", default="on_create", choices=["always", "on_create"], no_log=False),
        secrets_manager_secret_id=dict(type="str", no_log=False),
        secrets_manager_access_role_arn=dict(type="str", no_log=False),
        ssl_mode=dict(type="str", choices=list(dms.DMS_SSL_MODES)),
        libpq_sslmode=dict(type="str", choices=list(dms.LIBPQ_SSL_MODES)),
        certificate_arn=dict(type="str"),
        kms_key_id=dict(type="str", no_log=False),
        postgresql_settings=dict(type="dict"),
        session_replication_role=dict(type="str", choices=["origin", "replica"]),
        tags=dict(type="dict"),
        purge_tags=dict(type="bool", default=True),
        state=dict(type="str", default="present", choices=["present", "absent"]),
    )
    spec.update(dms_api.aws_argument_spec())
    module = AnsibleModule(argument_spec=spec, supports_check_mode=True,
                           mutually_exclusive=[("secrets_manager_secret_id", "password")])
    if dms_api.BOTO3_IMPORT_ERROR:
        module.fail_json(msg=missing_required_lib("boto3"), exception=dms_api.BOTO3_IMPORT_ERROR)
    try:
        api = dms_api.Api(dms_api.make_client("dms", module.params))
        result = run(module, api)
    except dms_api.DmsError as exc:
        module.fail_json(msg=str(exc), error_code=exc.code)
    except Exception as exc:  # botocore configuration errors (profile, region) end here
        module.fail_json(msg=dms_api.explain(exc, "endpoint %s" % module.params["identifier"]))
    module.exit_json(**result)


if __name__ == "__main__":
    main()
