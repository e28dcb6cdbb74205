# -*- coding: utf-8 -*-
# Copyright: pgshift.aurora contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""RDS parameter groups for logical replication: API calls apart, decisions pure."""

from __future__ import annotations

import traceback

try:
    import boto3
    import botocore
    from botocore.config import Config
except ImportError:  # pragma: no cover - reported through missing_required_lib
    boto3 = botocore = Config = None
    BOTO3_IMPORT_ERROR = traceback.format_exc()
else:
    BOTO3_IMPORT_ERROR = None

# Static parameters: a change waits for the next reboot.
STATIC_PARAMETERS = ("rds.logical_replication", "max_replication_slots", "max_wal_senders",
                     "max_worker_processes", "max_logical_replication_workers", "shared_preload_libraries")
MAX_PARAMETERS_PER_CALL = 20


def aws_argument_spec():
    return dict(
        aws_region=dict(type="str"),
        aws_endpoint_url=dict(type="str"),
        aws_access_key=dict(type="str", no_log=False),
        aws_secret_key=dict(type="str", no_log=True),
        aws_session_token=dict(type="str", no_log=True),
        aws_profile=dict(type="str"),
    )


class AwsError(Exception):
    """An AWS call failed; the message says what to do and holds no secret."""


def client(service, params):
    """A boto3 client honouring endpoint_url (moto in the lab) with jittered retries on throttling."""
    session = boto3.session.Session(
        profile_name=params.get("aws_profile") or None,
        aws_access_key_id=params.get("aws_access_key") or None,
        aws_secret_access_key=params.get("aws_secret_key") or None,
        aws_session_token=params.get("aws_session_token") or None,
        region_name=params.get("aws_region") or None,
    )
    config = Config(retries=dict(mode="standard", max_attempts=8), user_agent_extra="pgshift.aurora")
    return session.client(service, endpoint_url=params.get("aws_endpoint_url") or None, config=config)


def explain(exc, doing):
    """An actionable message for a botocore failure (pure apart from reading the exception)."""
    if isinstance(exc, botocore.exceptions.NoCredentialsError):
        return "%s: no AWS credentials found: set aws_access_key/aws_secret_key, aws_profile or an instance role" % doing
    if isinstance(exc, botocore.exceptions.NoRegionError):
        return "%s: no AWS region: set aws_region" % doing
    if isinstance(exc, botocore.exceptions.EndpointConnectionError):
        return "%s: cannot reach the AWS endpoint (%s): check aws_endpoint_url / aws_region and the network" % (
            doing, exc)
    if isinstance(exc, botocore.exceptions.ClientError):
        err = exc.response.get("Error", {})
        code = err.get("Code", "")
        hint = {
            "DBInstanceNotFound": "check rds_instance_id and aws_region",
            "DBInstanceNotFoundFault": "check rds_instance_id and aws_region",
            "DBParameterGroupNotFound": "check the instance's parameter group",
            "AccessDenied": "grant the IAM permissions rds:DescribeDBInstances, rds:DescribeDBParameters, "
                            "rds:ModifyDBParameterGroup and rds:RebootDBInstance",
            "AccessDeniedException": "grant the IAM permissions rds:DescribeDBInstances, rds:DescribeDBParameters, "
                                     "rds:ModifyDBParameterGroup and rds:RebootDBInstance",
            "InvalidDBInstanceState": "wait until the instance is available and run again",
        }.get(code, "see the AWS error above")
        return "%s: %s: %s (%s)" % (doing, code, err.get("Message", ""), hint)
    return "%s: %s" % (doing, exc)


def describe_instance(rds, instance_id):
    resp = rds.describe_db_instances(DBInstanceIdentifier=instance_id)
    inst = resp["DBInstances"][0]
    groups = inst.get("DBParameterGroups") or []
    return dict(
        id=inst["DBInstanceIdentifier"],
        status=inst.get("DBInstanceStatus"),
        engine=inst.get("Engine"),
        parameter_group=groups[0]["DBParameterGroupName"] if groups else None,
        apply_status=groups[0].get("ParameterApplyStatus") if groups else None,
    )


def group_parameters(rds, group, names):
    values = {}
    paginator = rds.get_paginator("describe_db_parameters")
    for page in paginator.paginate(DBParameterGroupName=group):
        for p in page.get("Parameters", []):
            if p["ParameterName"] in names:
                values[p["ParameterName"]] = p.get("ParameterValue")
    return values


def desired_parameters(role_settings):
    """Parameter-group values for logical replication from the settings fix mode wants.

    role_settings: {setting name: value} as prereqs.desired_settings returns;
    wal_level maps to rds.logical_replication = 1 (RDS has no wal_level parameter).
    """
    desired = {}
    for name, value in role_settings.items():
        if name == "wal_level":
            desired["rds.logical_replication"] = "1"
        else:
            desired[name] = str(value)
    return desired


def plan_parameter_changes(group_values, desired):
    """The modify_db_parameter_group entries needed (pure): only values that differ.

    A parameter absent from the group (engine default) counts as different:
    the desired settings were computed from the live values already.
    """
    changes = []
    for name in sorted(desired):
        if str(group_values.get(name)) != str(desired[name]):
            changes.append(dict(ParameterName=name, ParameterValue=str(desired[name]),
                                ApplyMethod="pending-reboot" if name in STATIC_PARAMETERS else "immediate"))
    return changes


def is_default_group(name):
    return bool(name) and name.startswith("default.")


def modify_group(rds, group, changes):
    for i in range(0, len(changes), MAX_PARAMETERS_PER_CALL):
        rds.modify_db_parameter_group(DBParameterGroupName=group, Parameters=changes[i:i + MAX_PARAMETERS_PER_CALL])


def reboot_and_wait(rds, instance_id, timeout):
    rds.reboot_db_instance(DBInstanceIdentifier=instance_id)
    delay = 15
    waiter = rds.get_waiter("db_instance_available")
    waiter.wait(DBInstanceIdentifier=instance_id,
                WaiterConfig=dict(Delay=delay, MaxAttempts=max(1, int(timeout // delay))))
