# -*- coding: utf-8 -*-
# Copyright: pgshift.aurora contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""RDS calls: instances and (cluster) parameter groups, each call a small function on a common.Api.
Decisions (what to change, when a reboot is done) live in module_utils/parameter_groups.py."""

from __future__ import annotations

import time

from ansible_collections.pgshift.aurora.plugins.module_utils import parameter_groups
from ansible_collections.pgshift.aurora.plugins.module_utils._aws import common

_RDS_PERMISSIONS = ("grant the IAM permissions rds:DescribeDBInstances, rds:DescribeDBParameters, "
                    "rds:ModifyDBParameterGroup and rds:RebootDBInstance")
HINTS = {
    "DBInstanceNotFound": "check rds_instance_id and aws_region",
    "DBInstanceNotFoundFault": "check rds_instance_id and aws_region",
    "DBParameterGroupNotFound": "check the instance's parameter group",
    "AccessDenied": _RDS_PERMISSIONS,
    "AccessDeniedException": _RDS_PERMISSIONS,
    "InvalidDBInstanceState": "wait until the instance is available and run again",
}
NOT_FOUND_CODES = ("DBParameterGroupNotFound", "DBParameterGroupNotFoundFault")


def api(params):
    """An Api on an RDS client from the module's aws_* options."""
    return common.Api(common.client("rds", params), hints=HINTS)


class RebootTimeout(Exception):
    """The instance was not back within the timeout."""


def describe_instance(rds, instance_id):
    """{id, status, engine, parameter_group, apply_status} of an RDS instance."""
    resp = rds.call("describe_db_instances", doing="reading RDS instance %s" % instance_id,
                    DBInstanceIdentifier=instance_id)
    inst = resp["DBInstances"][0]
    groups = inst.get("DBParameterGroups") or []
    return dict(
        id=inst["DBInstanceIdentifier"],
        status=inst.get("DBInstanceStatus"),
        engine=inst.get("Engine"),
        parameter_group=groups[0]["DBParameterGroupName"] if groups else None,
        apply_status=groups[0].get("ParameterApplyStatus") if groups else None,
    )


def reboot_and_wait(rds, instance_id, timeout, delay=15, sleep=time.sleep, clock=time.monotonic):
    """Reboot, then poll until parameter_groups.reboot_done() (not the bare 'available' waiter: right after the
    call the instance may still say available, before it goes to rebooting)."""
    rds.call("reboot_db_instance", doing="rebooting RDS instance %s" % instance_id, DBInstanceIdentifier=instance_id)
    deadline = clock() + timeout
    while True:
        inst = describe_instance(rds, instance_id)
        if parameter_groups.reboot_done(inst):
            return inst
        if clock() >= deadline:
            raise RebootTimeout("RDS instance %s is still %s (parameter group %s) %d s after the reboot: look at it "
                                "in the RDS console, then run again" % (
                                    instance_id, inst["status"], inst["apply_status"], timeout))
        sleep(delay)


def group_title(group, kind):
    return "%s parameter group %s" % ("DB cluster" if kind == "cluster" else "DB", group)


def describe_parameters(rds, group, kind="instance", names=None):
    """{name: {value, apply_type, modifiable, source}} of a DB (kind=instance) or DB cluster parameter group,
    only the parameters in names when given.

    Real AWS lists every parameter of the family (engine defaults without a value); a stand-in may list only
    the ones set.
    """
    if kind == "cluster":
        operation, key = "describe_db_cluster_parameters", "DBClusterParameterGroupName"
    else:
        operation, key = "describe_db_parameters", "DBParameterGroupName"
    values = {}
    for p in rds.pages(operation, "Parameters", doing="reading %s" % group_title(group, kind), **{key: group}):
        if names is None or p["ParameterName"] in names:
            values[p["ParameterName"]] = dict(value=p.get("ParameterValue"), apply_type=p.get("ApplyType"),
                                              modifiable=p.get("IsModifiable", True), source=p.get("Source"))
    return values


def modify_parameters(rds, group, kind, changes):
    """modify_db_(cluster_)parameter_group, at most MAX_PARAMETERS_PER_CALL parameters a call."""
    step = parameter_groups.MAX_PARAMETERS_PER_CALL
    for i in range(0, len(changes), step):
        chunk = changes[i:i + step]
        doing = "changing %s" % group_title(group, kind)
        if kind == "cluster":
            rds.call("modify_db_cluster_parameter_group", doing=doing, DBClusterParameterGroupName=group, Parameters=chunk)
        else:
            rds.call("modify_db_parameter_group", doing=doing, DBParameterGroupName=group, Parameters=chunk)


def group_exists(rds, group, kind):
    """Whether the (cluster) parameter group exists: NotFound or an empty list (moto) both mean no."""
    doing = "reading %s" % group_title(group, kind)
    try:
        if kind == "cluster":
            found = rds.call("describe_db_cluster_parameter_groups", doing=doing, DBClusterParameterGroupName=group)
            return bool(found.get("DBClusterParameterGroups"))
        found = rds.call("describe_db_parameter_groups", doing=doing, DBParameterGroupName=group)
        return bool(found.get("DBParameterGroups"))
    except common.AwsError as exc:
        if exc.code in NOT_FOUND_CODES:
            return False
        raise


def create_group(rds, group, kind, family, description, tags):
    tag_list = [dict(Key=k, Value=str(v)) for k, v in sorted((tags or {}).items())]
    doing = "creating %s" % group_title(group, kind)
    if kind == "cluster":
        rds.call("create_db_cluster_parameter_group", doing=doing, DBClusterParameterGroupName=group,
                 DBParameterGroupFamily=family, Description=description, Tags=tag_list)
    else:
        rds.call("create_db_parameter_group", doing=doing, DBParameterGroupName=group, DBParameterGroupFamily=family,
                 Description=description, Tags=tag_list)
