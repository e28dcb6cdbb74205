# -*- coding: utf-8 -*-
# Copyright: pgshift.aurora contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Route 53 calls of the cutover's route53 switch, each a small function on a common.Api: the record as it
is, the UPSERT, the wait until the change is INSYNC. The ChangeBatch itself is cutover.route53_change."""

from __future__ import annotations

import time

from ansible_collections.pgshift.aurora.plugins.module_utils._aws import common

_PERMISSIONS = ("grant the IAM permissions route53:ListResourceRecordSets, route53:ChangeResourceRecordSets and "
                "route53:GetChange on the hosted zone")
HINTS = {
    "NoSuchHostedZone": "check route53.zone_id",
    "InvalidChangeBatch": "check route53.record_name, record_type and the values",
    "InvalidInput": "check route53.record_name, record_type and the values",
    "AccessDenied": _PERMISSIONS,
    "AccessDeniedException": _PERMISSIONS,
}


def api(params):
    """An Api on a Route 53 client; params: aws_region, aws_endpoint_url, aws_access_key, aws_secret_key, ..."""
    return common.Api(common.client("route53", params), hints=HINTS)


def current_record(r53, zone_id, record_name, record_type):
    """The record set record_name / record_type of the zone as it is, or None."""
    name = record_name.rstrip(".") + "."
    found = r53.call("list_resource_record_sets", doing="reading the Route 53 record %s %s" % (record_name, record_type),
                     HostedZoneId=zone_id, StartRecordName=name, StartRecordType=record_type, MaxItems="1")
    for rrset in found.get("ResourceRecordSets", []):
        if rrset["Name"].rstrip(".") == name.rstrip(".") and rrset["Type"] == record_type:
            return rrset
    return None


def change_records(r53, zone_id, change_batch):
    """Apply change_batch; the ChangeInfo ({Id, Status, ...})."""
    names = ", ".join(c["ResourceRecordSet"]["Name"] for c in change_batch.get("Changes", []))
    return r53.call("change_resource_record_sets", doing="changing the Route 53 record %s" % names,
                    HostedZoneId=zone_id, ChangeBatch=change_batch)["ChangeInfo"]


def wait_insync(r53, change, timeout=60, delay=1, sleep=time.sleep, clock=time.monotonic):
    """The change's status once INSYNC, or its last status after timeout seconds."""
    status = change.get("Status")
    deadline = clock() + timeout
    while status != "INSYNC" and clock() < deadline:
        sleep(delay)
        status = r53.call("get_change", doing="reading the Route 53 change %s" % change["Id"],
                          Id=change["Id"])["ChangeInfo"]["Status"]
    return status
