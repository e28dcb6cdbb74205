#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: pgshift.aurora contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: dms_replication_instance
short_description: Create, modify or delete an AWS DMS replication instance
version_added: 0.3.0
description:
  - Makes the AWS DMS replication instance O(identifier) exist as described, or not exist.
  - Compares only what is set against what the service returns; a second run changes nothing.
  - Instance class, storage, engine version, Multi-AZ, security groups and maintenance window change in
    place (applied immediately). The subnet group, public access, KMS key and availability zone cannot
    change on an existing instance; the module fails and says to delete it first.
  - In check mode nothing changes; with C(--diff) the settings before and after are shown.
author:
  - pgshift.aurora developers (@pgshift)
extends_documentation_fragment:
  - pgshift.aurora.aws
options:
  identifier:
    description: The replication instance identifier.
    type: str
    required: true
  instance_class:
    description: The instance class, for example C(dms.r6i.large). Needed to create the instance.
    type: str
  allocated_storage:
    description: Storage in GiB (the service's default is 50).
    type: int
  engine_version:
    description: The DMS engine version, for example C(3.5.4); the service's default when not set.
    type: str
  subnet_group:
    description: The replication subnet group name (see M(community.aws.dms_replication_subnet_group)).
    type: str
  vpc_security_group_ids:
    description: VPC security groups; they must let the instance reach the source and the target on their ports.
    type: list
    elements: str
  availability_zone:
    description: Availability zone (the service picks one when not set).
    type: str
  preferred_maintenance_window:
    description: Weekly maintenance window, C(ddd:hh24:mi-ddd:hh24:mi) in UTC.
    type: str
  multi_az:
    description: A standby in another availability zone.
    type: bool
  publicly_accessible:
    description: A public IP address. Keep it false when source and target are in the VPC.
    type: bool
  kms_key_id:
    description: KMS key for the storage (the account's default DMS key when not set).
    type: str
  tags:
    description: Tags; when set, the instance's tags are made equal (see O(purge_tags)).
    type: dict
  purge_tags:
    description: Remove the tags not in O(tags). Tags starting with C(aws:) are never removed.
    type: bool
    default: true
  state:
    description: Whether the instance exists.
    type: str
    choices: [present, absent]
    default: present
  wait:
    description: Wait until the instance is available (or gone for O(state=absent)).
    type: bool
    default: true
  wait_timeout:
    description: Seconds to wait at most.
    type: int
    default: 1800
  poll_interval:
    description: Seconds between two polls while waiting.
    type: float
    default: 15
"""

EXAMPLES = r"""
- name: DMS replication instance in the migration's VPC
  pgshift.aurora.dms_replication_instance:
    identifier: pgshift-orders
    instance_class: dms.r6i.large
    allocated_storage: 100
    engine_version: "3.5.4"
    subnet_group: pgshift-orders
    vpc_security_group_ids: [sg-0123456789abcdef0]
    multi_az: false
    publicly_accessible: false
    tags:
      migration: orders
    aws_region: eu-west-1

- name: Delete it after the cutover
  pgshift.aurora.dms_replication_instance:
    identifier: pgshift-orders
    state: absent
    aws_region: eu-west-1
"""

RETURN = r"""
arn:
  description: The replication instance ARN.
  returned: when the instance exists
  type: str
instance:
  description: The instance as the service describes it, in snake_case, with its C(tags).
  returned: when the instance exists
  type: dict
  sample:
    replication_instance_identifier: pgshift-orders
    replication_instance_class: dms.r6i.large
    replication_instance_status: available
    allocated_storage: 100
    engine_version: "3.5.4"
    multi_az: false
    publicly_accessible: false
    tags: {migration: orders}
"""

from ansible.module_utils.basic import AnsibleModule, missing_required_lib
from ansible.module_utils.common.dict_transformations import camel_dict_to_snake_dict

from ansible_collections.pgshift.aurora.plugins.module_utils import dms
from ansible_collections.pgshift.aurora.plugins.module_utils._aws import dms as dms_api


def describe(module, api, ident):
    inst = dms_api.find_instance(api, ident)
    if inst is None:
        return None, None
    return inst, dms_api.list_tags(api, inst["ReplicationInstanceArn"])


def wait_for(module, api, ident, condition):
    p = module.params

    def fetch():
        return dms_api.find_instance(api, ident)

    def evaluate(inst):
        if condition == "absent":
            return "ok" if inst is None else None
        if inst is None:
            return "gone"
        status = inst.get("ReplicationInstanceStatus")
        if status == "available":
            return "ok"
        if status in ("failed", "storage-full", "incompatible-network", "inaccessible-encryption-credentials"):
            return "failed"
        return None

    verdict, inst = dms_api.poll(fetch, evaluate, p["wait_timeout"], p["poll_interval"])
    if verdict != "ok":
        status = inst.get("ReplicationInstanceStatus") if inst else "gone"
        module.fail_json(msg="replication instance %s: %s while waiting for it to be %s (status %s): check the DMS "
                             "console's events for the instance, then run again" % (
                                 ident, "timed out" if verdict is None else verdict,
                                 "deleted" if condition == "absent" else "available", status))
    return inst


def result_of(inst, tags):
    out = camel_dict_to_snake_dict(inst)
    out["tags"] = tags
    return out


def run(module, api):
    p = module.params
    ident = p["identifier"]
    inst, tags = describe(module, api, ident)
    result = dict(changed=False)

    if p["state"] == "absent":
        if inst is None:
            return result
        if inst.get("ReplicationInstanceStatus") == "deleting":  # deleted already (an earlier run that timed out)
            if p["wait"] and not module.check_mode:
                wait_for(module, api, ident, "absent")
            return result
        result.update(changed=True, diff=dict(before=dict(identifier=ident, state="present"), after=dict(identifier=ident, state="absent")))
        if module.check_mode:
            return result
        api.call("delete_replication_instance", doing="deleting replication instance %s" % ident,
                 ReplicationInstanceArn=inst["ReplicationInstanceArn"])
        if p["wait"]:
            wait_for(module, api, ident, "absent")
        return result

    want = dict((k, p[k]) for k in ("instance_class", "allocated_storage", "engine_version", "subnet_group",
                                    "vpc_security_group_ids", "availability_zone", "preferred_maintenance_window",
                                    "multi_az", "publicly_accessible", "kms_key_id"))
    shown = dict((k, v) for k, v in want.items() if v is not None)
    if inst is None:
        if not p["instance_class"]:
            module.fail_json(msg="replication instance %s does not exist: set instance_class to create it" % ident)
        result.update(changed=True, diff=dict(before={}, after=dict(shown, identifier=ident, tags=p["tags"] or {})))
        if module.check_mode:
            return result
        args = dict(ReplicationInstanceIdentifier=ident, ReplicationInstanceClass=p["instance_class"])
        optional = dict(AllocatedStorage=p["allocated_storage"], EngineVersion=p["engine_version"],
                        ReplicationSubnetGroupIdentifier=p["subnet_group"], VpcSecurityGroupIds=p["vpc_security_group_ids"],
                        AvailabilityZone=p["availability_zone"], PreferredMaintenanceWindow=p["preferred_maintenance_window"],
                        MultiAZ=p["multi_az"], PubliclyAccessible=p["publicly_accessible"], KmsKeyId=p["kms_key_id"])
        args.update((k, v) for k, v in optional.items() if v is not None)
        if p["tags"]:
            args["Tags"] = [dict(Key=str(k), Value=str(v)) for k, v in sorted(p["tags"].items())]
        inst = api.call("create_replication_instance", doing="creating replication instance %s" % ident, **args)["ReplicationInstance"]
        if p["wait"]:
            inst = wait_for(module, api, ident, "available")
        tags = dms_api.list_tags(api, inst["ReplicationInstanceArn"])
        result.update(instance=result_of(inst, tags), arn=inst["ReplicationInstanceArn"])
        return result

    arn = inst["ReplicationInstanceArn"]
    modify, fixed = dms.instance_changes(want, inst)
    if fixed:
        module.fail_json(msg="replication instance %s: %s cannot change on an existing instance: delete it (state=absent) "
                             "and create it again, or set the current value" % (ident, ", ".join(fixed)),
                         instance=result_of(inst, tags), arn=arn)
    add, remove = dms.tag_changes(p["tags"], tags, p["purge_tags"])
    if modify or add or remove:
        before = dict((k, inst.get(k)) for k in modify if k != "AllowMajorVersionUpgrade")
        if add or remove:
            before["Tags"] = tags
        after = dict((k, v) for k, v in modify.items() if k != "AllowMajorVersionUpgrade")
        if add or remove:
            after["Tags"] = dict(p["tags"] if p["purge_tags"] else dict(tags, **add))
        result.update(changed=True, diff=dict(before=before, after=after))
        if not module.check_mode:
            if modify:
                if inst.get("ReplicationInstanceStatus") != "available":
                    inst = wait_for(module, api, ident, "available")
                api.call("modify_replication_instance", doing="modifying replication instance %s" % ident,
                         ReplicationInstanceArn=arn, ApplyImmediately=True, **modify)
            dms_api.apply_tags(api, arn, add, remove)
            if modify and p["wait"]:
                inst = wait_for(module, api, ident, "available")
            inst, tags = describe(module, api, arn)
    elif p["wait"] and inst.get("ReplicationInstanceStatus") != "available" and not module.check_mode:
        inst = wait_for(module, api, ident, "available")
        tags = dms_api.list_tags(api, arn)
    result.update(instance=result_of(inst, tags), arn=arn)
    return result


def main():
    spec = dict(
        identifier=dict(type="str", required=True),
        instance_class=dict(type="str"),
        allocated_storage=dict(type="int"),
        engine_version=dict(type="str"),
        subnet_group=dict(type="str"),
        vpc_security_group_ids=dict(type="list", elements="str"),
        availability_zone=dict(type="str"),
        preferred_maintenance_window=dict(type="str"),
        multi_az=dict(type="bool"),
        publicly_accessible=dict(type="bool"),
        kms_key_id=dict(type="str", no_log=False),
        tags=dict(type="dict"),
        purge_tags=dict(type="bool", default=True),
        state=dict(type="str", default="present", choices=["present", "absent"]),
        wait=dict(type="bool", default=True),
        wait_timeout=dict(type="int", default=1800),
        poll_interval=dict(type="float", default=15),
    )
    spec.update(dms_api.aws_argument_spec())
    module = AnsibleModule(argument_spec=spec, supports_check_mode=True)
    if dms_api.BOTO3_IMPORT_ERROR:
        module.fail_json(msg=missing_required_lib("boto3"), exception=dms_api.BOTO3_IMPORT_ERROR)
    try:
        api = dms_api.Api(dms_api.make_client("dms", module.params))
        result = run(module, api)
    except dms_api.DmsError as exc:
        module.fail_json(msg=str(exc), error_code=exc.code)
    except Exception as exc:  # botocore configuration errors (profile, region) end here
        module.fail_json(msg=dms_api.explain(exc, "replication instance %s" % module.params["identifier"]))
    module.exit_json(**result)


if __name__ == "__main__":
    main()
