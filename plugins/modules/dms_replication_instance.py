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
  - pgshift.aurora.in_process
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

from ansible_collections.pgshift.aurora.plugins.module_utils._aws import common
from ansible_collections.pgshift.aurora.plugins.module_utils.runners import dms_replication_instance as runner


def main():
    module = AnsibleModule(supports_check_mode=True, **runner.module_spec())
    if common.BOTO3_IMPORT_ERROR:
        module.fail_json(msg=missing_required_lib("boto3"), exception=common.BOTO3_IMPORT_ERROR)
    runner.run_module(module)


if __name__ == "__main__":
    main()
