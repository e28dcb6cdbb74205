# -*- coding: utf-8 -*-
# Copyright: pgshift.aurora contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""dms_endpoint's orchestration: read the endpoint -> decide (dms_endpoints: settings, TLS, changes; drift:
tags) -> create / modify / delete -> the endpoint as described, without its password.

Calls: _aws/dms.py. Decides: dms_endpoints.py, drift.py."""

from __future__ import annotations

from ansible.module_utils.common.dict_transformations import camel_dict_to_snake_dict

from ansible_collections.pgshift.aurora.plugins.module_utils import dms_endpoints, drift
from ansible_collections.pgshift.aurora.plugins.module_utils._aws import common
from ansible_collections.pgshift.aurora.plugins.module_utils._aws import dms as dms_api


def argument_spec():
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
        ssl_mode=dict(type="str", choices=list(dms_endpoints.DMS_SSL_MODES)),
        libpq_sslmode=dict(type="str", choices=list(dms_endpoints.LIBPQ_SSL_MODES)),
        certificate_arn=dict(type="str"),
        kms_key_id=dict(type="str", no_log=False),
        postgresql_settings=dict(type="dict"),
        session_replication_role=dict(type="str", choices=["origin", "replica"]),
        tags=dict(type="dict"),
        purge_tags=dict(type="bool", default=True),
        state=dict(type="str", default="present", choices=["present", "absent"]),
    )
    spec.update(common.aws_argument_spec())
    return spec


SECRET_KEYS = ("password", "Password")


def result_of(ep, tags):
    ep = dict((k, v) for k, v in ep.items() if k not in SECRET_KEYS and v is not None)
    pg = ep.pop("PostgreSQLSettings", None) or {}
    out = camel_dict_to_snake_dict(ep)
    out["postgresql_settings"] = camel_dict_to_snake_dict(dict((k, v) for k, v in pg.items() if k not in SECRET_KEYS))
    out["tags"] = tags
    return out


def wanted(p, ssl_mode, certificate_arn):
    """create_endpoint arguments (no identifier, tags nor password); TLS from dms_endpoints.endpoint_tls."""
    pg = dms_endpoints.postgres_settings(p["postgresql_settings"], p["session_replication_role"])
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
            dms_api.delete_endpoint(api, ident, ep["EndpointArn"])
        return result

    try:
        ssl_mode, certificate_arn, warnings = dms_endpoints.endpoint_tls(ident, p["ssl_mode"], p["libpq_sslmode"], p["certificate_arn"])
    except dms_endpoints.TlsError as exc:
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
        if p["password"]:
            args["Password"] = p["password"]
        if p["kms_key_id"]:
            args["KmsKeyId"] = p["kms_key_id"]
        if p["tags"]:
            args["Tags"] = dms_api.tag_list(p["tags"])
        ep = dms_api.create_endpoint(api, ident, args)
        tags = dms_api.list_tags(api, ep["EndpointArn"])
        result.update(endpoint=result_of(ep, tags), arn=ep["EndpointArn"])
        return result

    arn = ep["EndpointArn"]
    if p["endpoint_type"] and p["endpoint_type"] != str(ep.get("EndpointType")).lower():  # the service says SOURCE / TARGET
        module.fail_json(msg="endpoint %s is a %s endpoint, not a %s one: delete it first (state=absent) or use another "
                             "identifier" % (ident, str(ep.get("EndpointType")).lower(), p["endpoint_type"]))
    modify = dms_endpoints.endpoint_changes(dict((k, v) for k, v in want.items() if k != "EndpointType"), ep)
    send_password = p["update_password"] == "always" and p["password"]
    add, remove = drift.tag_changes(p["tags"], tags, p["purge_tags"])
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
                dms_api.modify_endpoint(api, ident, arn, args)
            dms_api.apply_tags(api, arn, add, remove)
            ep = dms_api.find_endpoint(api, arn)
            tags = dms_api.list_tags(api, arn)
    result.update(endpoint=result_of(ep, tags), arn=arn)
    return result


def module_spec():
    return dict(argument_spec=argument_spec(),
                mutually_exclusive=[("secrets_manager_secret_id", "password")])


def run_module(module):
    common.end_run(module, lambda: run(module, dms_api.api(module.params)), "endpoint %s" % module.params["identifier"])
