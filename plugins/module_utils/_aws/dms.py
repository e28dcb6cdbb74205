# -*- coding: utf-8 -*-
# Copyright: pgshift.aurora contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""AWS DMS and CloudWatch calls, each a small function on a common.Api: lookups, changes, tags, table
statistics, CDC latency. Decisions live in dms_tasks.py, dms_task_settings.py, table_mappings.py,
dms_endpoints.py, dms_instances.py and dms_certificates.py; orchestration in runners/dms_*.py."""

from __future__ import annotations

import datetime

from ansible_collections.pgshift.aurora.plugins.module_utils._aws import common

_DMS_PERMISSIONS = "grant the IAM permissions dms:* on the migration's resources (and cloudwatch:GetMetricStatistics)"
HINTS = {
    "AccessDeniedException": _DMS_PERMISSIONS,
    "AccessDeniedFault": _DMS_PERMISSIONS,
    "AccessDenied": _DMS_PERMISSIONS,
    "InvalidResourceStateFault": "the resource is busy (creating, modifying, running or deleting): wait and run again",
    "ResourceAlreadyExistsFault": "another resource has this identifier: pick another or adopt it",
    "ResourceNotFoundFault": "check the identifier or ARN and aws_region",
    "ResourceQuotaExceededFault": "raise the DMS quota or delete unused resources",
    "InsufficientResourceCapacityFault": "try another instance_class or availability zone",
    "StorageQuotaExceededFault": "raise the DMS storage quota or lower allocated_storage",
    "InvalidSubnet": "check the subnet group's subnets",
    "ReplicationSubnetGroupDoesNotCoverEnoughAZs": "the subnet group needs subnets in at least two availability zones",
    "KMSKeyNotAccessibleFault": "check kms_key_id and the key policy",
    "InvalidCertificateFault": "DMS does not accept this PEM: give the CA certificate bundle (PEM, certificates only)",
}
NOT_FOUND_CODES = frozenset(("ResourceNotFoundFault", "ResourceNotFoundException"))


def api(params, service="dms"):
    """An Api on a DMS (or, for the CDC latency, CloudWatch) client from the module's aws_* options."""
    return common.Api(common.client(service, params), hints=HINTS)


def tag_list(tags):
    return [dict(Key=str(k), Value=str(v)) for k, v in sorted(tags.items())]


# --- Lookups -------------------------------------------------------------------------------------

def _describe(dms, operation, key, filter_name, value, doing):
    try:
        return dms.pages(operation, key, doing=doing, Filters=[dict(Name=filter_name, Values=[value])])
    except common.AwsError as exc:
        if exc.code in NOT_FOUND_CODES:  # the real service answers "not found" for an empty filter result
            return []
        raise


def is_arn(value):
    return str(value).startswith("arn:")


def find_instance(dms, ident):
    name = "replication-instance-arn" if is_arn(ident) else "replication-instance-id"
    found = _describe(dms, "describe_replication_instances", "ReplicationInstances", name, ident,
                      "describing replication instance %s" % ident)
    return found[0] if found else None


def find_endpoint(dms, ident):
    name = "endpoint-arn" if is_arn(ident) else "endpoint-id"
    found = _describe(dms, "describe_endpoints", "Endpoints", name, ident, "describing endpoint %s" % ident)
    return found[0] if found else None


def find_task(dms, ident):
    name = "replication-task-arn" if is_arn(ident) else "replication-task-id"
    found = _describe(dms, "describe_replication_tasks", "ReplicationTasks", name, ident,
                      "describing replication task %s" % ident)
    return found[0] if found else None


def find_certificate(dms, ident):
    name = "certificate-arn" if is_arn(ident) else "certificate-id"
    found = _describe(dms, "describe_certificates", "Certificates", name, ident, "describing certificate %s" % ident)
    return found[0] if found else None


def _all(dms, operation, key, doing):
    try:
        return dms.pages(operation, key, doing=doing)
    except common.AwsError as exc:
        if exc.code in NOT_FOUND_CODES:
            return []
        raise


def all_certificates(dms):
    return _all(dms, "describe_certificates", "Certificates", "listing certificates")


def all_tasks(dms):
    return _all(dms, "describe_replication_tasks", "ReplicationTasks", "listing replication tasks")


def instance_identifier(dms, instance_arn, cache):
    """The identifier of the instance instance_arn, looked up once per cache."""
    if instance_arn not in cache:
        inst = find_instance(dms, instance_arn)
        cache[instance_arn] = inst.get("ReplicationInstanceIdentifier") if inst else None
    return cache[instance_arn]


# --- Tags ----------------------------------------------------------------------------------------

def list_tags(dms, arn):
    resp = dms.call("list_tags_for_resource", doing="reading the tags of %s" % arn, ResourceArn=arn)
    return dict((t["Key"], t.get("Value", "")) for t in resp.get("TagList") or [])


def apply_tags(dms, arn, add, remove):
    if remove:
        dms.call("remove_tags_from_resource", doing="removing tags from %s" % arn, ResourceArn=arn, TagKeys=sorted(remove))
    if add:
        dms.call("add_tags_to_resource", doing="tagging %s" % arn, ResourceArn=arn, Tags=tag_list(add))


# --- Replication instances -----------------------------------------------------------------------

def create_instance(dms, ident, args):
    return dms.call("create_replication_instance", doing="creating replication instance %s" % ident,
                    ReplicationInstanceIdentifier=ident, **args)["ReplicationInstance"]


def modify_instance(dms, ident, arn, changes):
    dms.call("modify_replication_instance", doing="modifying replication instance %s" % ident,
             ReplicationInstanceArn=arn, ApplyImmediately=True, **changes)


def delete_instance(dms, ident, arn):
    dms.call("delete_replication_instance", doing="deleting replication instance %s" % ident, ReplicationInstanceArn=arn)


# --- Endpoints -----------------------------------------------------------------------------------

def create_endpoint(dms, ident, args):
    return dms.call("create_endpoint", doing="creating endpoint %s" % ident, EndpointIdentifier=ident, **args)["Endpoint"]


def modify_endpoint(dms, ident, arn, changes):
    dms.call("modify_endpoint", doing="modifying endpoint %s" % ident, EndpointArn=arn, **changes)


def delete_endpoint(dms, ident, arn):
    dms.call("delete_endpoint", doing="deleting endpoint %s (delete the tasks using it first)" % ident, EndpointArn=arn)


# --- Certificates --------------------------------------------------------------------------------

def import_certificate(dms, ident, pem, tags):
    args = dict(CertificateIdentifier=ident, CertificatePem=pem)
    if tags:
        args["Tags"] = tag_list(tags)
    return dms.call("import_certificate", doing="importing certificate %s" % ident, **args)["Certificate"]


def delete_certificate(dms, cert):
    dms.call("delete_certificate", doing="deleting certificate %s (delete the endpoints using it first)"
             % cert["CertificateIdentifier"], CertificateArn=cert["CertificateArn"])


# --- Replication tasks ---------------------------------------------------------------------------

def create_task(dms, ident, args):
    return dms.call("create_replication_task", doing="creating replication task %s" % ident,
                    ReplicationTaskIdentifier=ident, **args)["ReplicationTask"]


def modify_task(dms, ident, arn, changes):
    dms.call("modify_replication_task", doing="modifying replication task %s" % ident, ReplicationTaskArn=arn, **changes)


def start_task(dms, ident, arn, start_type, cdc_start_position=None):
    args = dict(ReplicationTaskArn=arn, StartReplicationTaskType=start_type)
    if cdc_start_position:
        args["CdcStartPosition"] = cdc_start_position
    dms.call("start_replication_task", doing="starting replication task %s (%s)" % (ident, start_type), **args)


def stop_task(dms, ident, arn):
    dms.call("stop_replication_task", doing="stopping replication task %s" % ident, ReplicationTaskArn=arn)


def delete_task(dms, ident, arn):
    dms.call("delete_replication_task", doing="deleting replication task %s" % ident, ReplicationTaskArn=arn)


def table_statistics(dms, task_arn):
    return dms.pages("describe_table_statistics", "TableStatistics",
                     doing="reading the table statistics of %s" % task_arn, ReplicationTaskArn=task_arn)


def cdc_latency(cloudwatch, instance_id, task_id, now=None, minutes=10):
    """Latest CDCLatencySource / CDCLatencyTarget averages (seconds) over the last minutes; None without datapoints."""
    now = now or datetime.datetime.now(datetime.timezone.utc)
    dims = [dict(Name="ReplicationInstanceIdentifier", Value=instance_id),
            dict(Name="ReplicationTaskIdentifier", Value=task_id)]
    out = {}
    for key, metric in (("source_seconds", "CDCLatencySource"), ("target_seconds", "CDCLatencyTarget")):
        resp = cloudwatch.call("get_metric_statistics", doing="reading CloudWatch AWS/DMS %s" % metric,
                               Namespace="AWS/DMS", MetricName=metric, Dimensions=dims,
                               StartTime=now - datetime.timedelta(minutes=minutes),
                               EndTime=now + datetime.timedelta(minutes=1), Period=60, Statistics=["Average"])
        points = sorted(resp.get("Datapoints") or [], key=lambda p: p["Timestamp"])
        out[key] = float(points[-1]["Average"]) if points else None
    return out
