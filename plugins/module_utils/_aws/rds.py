# -*- coding: utf-8 -*-
# Copyright: pgshift.aurora contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""RDS parameter groups for logical replication: API calls apart, decisions pure."""

from __future__ import annotations

import time
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


def client(service, params, retries=None):
    """A boto3 client honouring endpoint_url (moto in the lab); botocore's standard retries (jittered, on
    throttling and transient errors) unless `retries` (a botocore retries config) says otherwise.
    params: aws_region, aws_endpoint_url, aws_access_key, aws_secret_key, aws_session_token, aws_profile."""
    session = boto3.session.Session(
        profile_name=params.get("aws_profile") or None,
        aws_access_key_id=params.get("aws_access_key") or None,
        aws_secret_access_key=params.get("aws_secret_key") or None,
        aws_session_token=params.get("aws_session_token") or None,
        region_name=params.get("aws_region") or None,
    )
    config = Config(retries=retries or dict(mode="standard", max_attempts=8), user_agent_extra="pgshift.aurora")
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


def reboot_done(inst):
    """After a reboot (pure): the instance is available and its parameter group no longer waits for a reboot."""
    return inst["status"] == "available" and inst["apply_status"] != "pending-reboot"


class RebootTimeout(Exception):
    """The instance was not back within the timeout."""


def reboot_and_wait(rds, instance_id, timeout, delay=15, sleep=time.sleep, clock=time.monotonic):
    """Reboot, then poll until reboot_done() (not the bare 'available' waiter: right after the call the
    instance may still say available, before it goes to rebooting)."""
    rds.reboot_db_instance(DBInstanceIdentifier=instance_id)
    deadline = clock() + timeout
    while True:
        inst = describe_instance(rds, instance_id)
        if reboot_done(inst):
            return inst
        if clock() >= deadline:
            raise RebootTimeout("RDS instance %s is still %s (parameter group %s) %d s after the reboot: look at it "
                                "in the RDS console, then run again" % (
                                    instance_id, inst["status"], inst["apply_status"], timeout))
        sleep(delay)


# --- Parameter group values (pgshift.aurora.rds_parameter_group) --------------------------------

def describe_group_parameters(rds, group, kind):
    """{name: {value, apply_type, modifiable, source}} of a DB (kind=instance) or DB cluster parameter group.

    Real AWS lists every parameter of the family (engine defaults without a value); a stand-in may list only
    the ones set.
    """
    if kind == "cluster":
        operation, key = "describe_db_cluster_parameters", "DBClusterParameterGroupName"
    else:
        operation, key = "describe_db_parameters", "DBParameterGroupName"
    values = {}
    for page in rds.get_paginator(operation).paginate(**{key: group}):
        for p in page.get("Parameters", []):
            values[p["ParameterName"]] = dict(value=p.get("ParameterValue"), apply_type=p.get("ApplyType"),
                                              modifiable=p.get("IsModifiable", True), source=p.get("Source"))
    return values


def apply_method_for(name, described):
    """pending-reboot for a static parameter (ApplyType from the API, else the known static list), else immediate."""
    apply_type = (described or {}).get("apply_type")
    if apply_type:
        return "pending-reboot" if apply_type == "static" else "immediate"
    return "pending-reboot" if name in STATIC_PARAMETERS else "immediate"


def normalise_value(value):
    """The API's string form of a YAML value: booleans as 1/0, numbers as digits."""
    if isinstance(value, bool):
        return "1" if value else "0"
    return str(value)


def plan_group_changes(described, desired):
    """(changes, errors) to bring a parameter group to desired (pure).

    described: describe_group_parameters(); desired: {name: value}. Only values that differ are changed;
    a parameter listed as not modifiable is an error, not a change.
    """
    changes, errors = [], []
    for name in sorted(desired):
        want = normalise_value(desired[name])
        current = described.get(name)
        if current is not None and current.get("value") is not None and str(current["value"]) == want:
            continue
        if current is not None and current.get("modifiable") is False:
            errors.append("parameter %s cannot be modified (it is %r, %r wanted)" % (name, current.get("value"), want))
            continue
        changes.append(dict(ParameterName=name, ParameterValue=want, ApplyMethod=apply_method_for(name, current)))
    return changes, errors


def modify_group_values(rds, group, kind, changes):
    for i in range(0, len(changes), MAX_PARAMETERS_PER_CALL):
        chunk = changes[i:i + MAX_PARAMETERS_PER_CALL]
        if kind == "cluster":
            rds.modify_db_cluster_parameter_group(DBClusterParameterGroupName=group, Parameters=chunk)
        else:
            rds.modify_db_parameter_group(DBParameterGroupName=group, Parameters=chunk)


def group_exists(rds, group, kind):
    """Whether the (cluster) parameter group exists: NotFound or an empty list (moto) both mean no."""
    try:
        if kind == "cluster":
            found = rds.describe_db_cluster_parameter_groups(DBClusterParameterGroupName=group)
            return bool(found.get("DBClusterParameterGroups"))
        found = rds.describe_db_parameter_groups(DBParameterGroupName=group)
        return bool(found.get("DBParameterGroups"))
    except botocore.exceptions.ClientError as exc:
        if exc.response.get("Error", {}).get("Code") in ("DBParameterGroupNotFound", "DBParameterGroupNotFoundFault"):
            return False
        raise


def create_group(rds, group, kind, family, description, tags):
    tag_list = [dict(Key=k, Value=str(v)) for k, v in sorted((tags or {}).items())]
    if kind == "cluster":
        rds.create_db_cluster_parameter_group(DBClusterParameterGroupName=group, DBParameterGroupFamily=family,
                                              Description=description, Tags=tag_list)
    else:
        rds.create_db_parameter_group(DBParameterGroupName=group, DBParameterGroupFamily=family,
                                      Description=description, Tags=tag_list)
