# -*- coding: utf-8 -*-
# Copyright: pgshift.aurora contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""dms_replication_instance's orchestration: read the instance -> decide (dms_instances: what changes in place,
what cannot; drift: tags) -> create / modify / delete, waiting until it is available or gone -> the instance.

Calls: _aws/dms.py. Decides: dms_instances.py, drift.py."""

from __future__ import annotations

from ansible.module_utils.common.dict_transformations import camel_dict_to_snake_dict

from ansible_collections.pgshift.aurora.plugins.module_utils import dms_instances, drift
from ansible_collections.pgshift.aurora.plugins.module_utils._aws import common
from ansible_collections.pgshift.aurora.plugins.module_utils._aws import dms as dms_api


def argument_spec():
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
    spec.update(common.aws_argument_spec())
    return spec


def describe(api, ident):
    inst = dms_api.find_instance(api, ident)
    if inst is None:
        return None, None
    return inst, dms_api.list_tags(api, inst["ReplicationInstanceArn"])


def wait_for(module, api, ident, condition):
    p = module.params

    def fetch():
        return dms_api.find_instance(api, ident)

    verdict, inst = common.poll(fetch, lambda i: dms_instances.wait_verdict(condition, i), p["wait_timeout"],
                                p["poll_interval"])
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
    inst, tags = describe(api, ident)
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
        dms_api.delete_instance(api, ident, inst["ReplicationInstanceArn"])
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
        args = dict(ReplicationInstanceClass=p["instance_class"])
        optional = dict(AllocatedStorage=p["allocated_storage"], EngineVersion=p["engine_version"],
                        ReplicationSubnetGroupIdentifier=p["subnet_group"], VpcSecurityGroupIds=p["vpc_security_group_ids"],
                        AvailabilityZone=p["availability_zone"], PreferredMaintenanceWindow=p["preferred_maintenance_window"],
                        MultiAZ=p["multi_az"], PubliclyAccessible=p["publicly_accessible"], KmsKeyId=p["kms_key_id"])
        args.update((k, v) for k, v in optional.items() if v is not None)
        if p["tags"]:
            args["Tags"] = dms_api.tag_list(p["tags"])
        inst = dms_api.create_instance(api, ident, args)
        if p["wait"]:
            inst = wait_for(module, api, ident, "available")
        tags = dms_api.list_tags(api, inst["ReplicationInstanceArn"])
        result.update(instance=result_of(inst, tags), arn=inst["ReplicationInstanceArn"])
        return result

    arn = inst["ReplicationInstanceArn"]
    modify, fixed = dms_instances.instance_changes(want, inst)
    if fixed:
        module.fail_json(msg="replication instance %s: %s cannot change on an existing instance: delete it (state=absent) "
                             "and create it again, or set the current value" % (ident, ", ".join(fixed)),
                         instance=result_of(inst, tags), arn=arn)
    add, remove = drift.tag_changes(p["tags"], tags, p["purge_tags"])
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
                dms_api.modify_instance(api, ident, arn, modify)
            dms_api.apply_tags(api, arn, add, remove)
            if modify and p["wait"]:
                inst = wait_for(module, api, ident, "available")
            inst, tags = describe(api, arn)
    elif p["wait"] and inst.get("ReplicationInstanceStatus") != "available" and not module.check_mode:
        inst = wait_for(module, api, ident, "available")
        tags = dms_api.list_tags(api, arn)
    result.update(instance=result_of(inst, tags), arn=arn)
    return result


def module_spec():
    return dict(argument_spec=argument_spec())


def run_module(module):
    common.end_run(module, lambda: run(module, dms_api.api(module.params)),
                   "replication instance %s" % module.params["identifier"])
