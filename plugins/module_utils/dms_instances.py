# -*- coding: utf-8 -*-
# Copyright: pgshift.aurora contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""DMS replication instances, pure: what changes in place, what cannot, and when a wait is over."""

from __future__ import annotations


def instance_changes(want, have):
    """(modify_replication_instance arguments, names of settings that cannot change in place).

    want: the module's options (None = not set); have: the described ReplicationInstance.
    """
    modify = {}
    fixed = []
    if want.get("instance_class") and want["instance_class"] != have.get("ReplicationInstanceClass"):
        modify["ReplicationInstanceClass"] = want["instance_class"]
    if want.get("allocated_storage") is not None and int(want["allocated_storage"]) != int(have.get("AllocatedStorage") or 0):
        modify["AllocatedStorage"] = int(want["allocated_storage"])
    if want.get("engine_version") and want["engine_version"] != have.get("EngineVersion"):
        modify["EngineVersion"] = want["engine_version"]
        modify["AllowMajorVersionUpgrade"] = (want["engine_version"].split(".", maxsplit=1)[0]
                                              != str(have.get("EngineVersion") or "").split(".", maxsplit=1)[0])
    if want.get("multi_az") is not None and bool(want["multi_az"]) != bool(have.get("MultiAZ")):
        modify["MultiAZ"] = bool(want["multi_az"])
    if want.get("vpc_security_group_ids") is not None:
        current = sorted(g.get("VpcSecurityGroupId") for g in have.get("VpcSecurityGroups") or [])
        if sorted(want["vpc_security_group_ids"]) != current:
            modify["VpcSecurityGroupIds"] = list(want["vpc_security_group_ids"])
    if want.get("preferred_maintenance_window") and want["preferred_maintenance_window"] != have.get("PreferredMaintenanceWindow"):
        modify["PreferredMaintenanceWindow"] = want["preferred_maintenance_window"]
    subnet = (have.get("ReplicationSubnetGroup") or {}).get("ReplicationSubnetGroupIdentifier")
    if want.get("subnet_group") and want["subnet_group"] != subnet:
        fixed.append("subnet_group")
    if want.get("publicly_accessible") is not None and bool(want["publicly_accessible"]) != bool(have.get("PubliclyAccessible")):
        fixed.append("publicly_accessible")
    if want.get("kms_key_id") and not str(have.get("KmsKeyId") or "").endswith(want["kms_key_id"]):
        fixed.append("kms_key_id")
    if want.get("availability_zone") and want["availability_zone"] != have.get("AvailabilityZone"):
        fixed.append("availability_zone")
    return modify, fixed


FAILED_STATES = ("failed", "storage-full", "incompatible-network", "inaccessible-encryption-credentials")


def wait_verdict(condition, inst):
    """For common.poll(): 'ok' when the instance is available (condition available) or gone (condition absent),
    'failed' in a state it does not leave by itself, 'gone' when it vanished while awaited, None to keep waiting."""
    if condition == "absent":
        return "ok" if inst is None else None
    if inst is None:
        return "gone"
    status = inst.get("ReplicationInstanceStatus")
    if status == "available":
        return "ok"
    if status in FAILED_STATES:
        return "failed"
    return None
