#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: pgshift.aurora contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: rds_parameter_group
short_description: An RDS or Aurora (cluster) parameter group with the given parameter values
version_added: 0.1.0
description:
  - Brings the named parameters of a DB parameter group (O(kind=instance)) or DB cluster parameter group
    (O(kind=cluster)) to the given values, changing only those that differ. With O(family), a missing group is
    created first (with O(description) and O(tags)); without it, the group must exist.
  - Static parameters (C(ApplyType) static, or C(rds.logical_replication), slots, senders, workers,
    C(shared_preload_libraries) when the API does not say) are changed with C(pending-reboot), the others
    C(immediate); RV(reboot_pending) says when the instances must reboot.
  - Why not only M(amazon.aws.rds_cluster_param_group) / M(amazon.aws.rds_instance_param_group) - they refuse a
    parameter the group's description does not list, and a stand-in such as moto lists only the parameters
    already set (and answers an unknown DB parameter group with an empty list, which
    M(amazon.aws.rds_instance_param_group) 10.1 fails on), so they cannot be tested against it. Existing groups
    and their tags are left as they are apart from the parameter values.
  - Check mode and diff show what would change.
extends_documentation_fragment:
  - pgshift.aurora.in_process
options:
  name:
    description: Name of the parameter group.
    type: str
    required: true
  kind:
    description: C(cluster) for a DB cluster parameter group (Aurora), C(instance) for a DB parameter group.
    type: str
    choices: [cluster, instance]
    default: instance
  parameters:
    description: Parameter names and the values wanted (booleans become C(1)/C(0)).
    type: dict
    default: {}
  family:
    description: The parameter group family (C(aurora-postgresql16), C(postgres15)), to create a missing group.
    type: str
  description:
    description: Description of a group this module creates.
    type: str
    default: managed by pgshift.aurora
  tags:
    description: Tags of a group this module creates.
    type: dict
    default: {}
  aws_region:
    description: AWS region.
    type: str
  aws_endpoint_url:
    description: AWS API endpoint override (a local stand-in such as moto); empty means the real AWS endpoints.
    type: str
  aws_access_key:
    description: AWS access key; otherwise boto3's usual sources.
    type: str
  aws_secret_key:
    description: AWS secret key.
    type: str
  aws_session_token:
    description: AWS session token.
    type: str
  aws_profile:
    description: AWS profile.
    type: str
requirements:
  - boto3
notes:
  - IAM permissions - rds:DescribeDBClusterParameters and rds:ModifyDBClusterParameterGroup (cluster), or
    rds:DescribeDBParameters and rds:ModifyDBParameterGroup (instance).
author:
  - pgshift.aurora developers (@pgshift)
"""

EXAMPLES = r"""
- name: Logical replication on an Aurora cluster (reverse replication at cutover)
  pgshift.aurora.rds_parameter_group:
    name: orders-aurora-cluster
    kind: cluster
    family: aurora-postgresql16
    tags:
      team: dba
    parameters:
      rds.logical_replication: 1
      max_replication_slots: 20
      max_wal_senders: 20
    aws_region: eu-west-1
  register: params

- name: Say when a reboot is needed
  ansible.builtin.debug:
    msg: "reboot the cluster's instances for {{ params.changes | map(attribute='ParameterName') | join(', ') }}"
  when: params.reboot_pending
"""

RETURN = r"""
created:
  description: Whether the group was created (or would be, in check mode).
  returned: always
  type: bool
changes:
  description: The parameters changed (or that would be, in check mode), as given to the modify call.
  returned: always
  type: list
  elements: dict
  sample: [{"ParameterName": "rds.logical_replication", "ParameterValue": "1", "ApplyMethod": "pending-reboot"}]
reboot_pending:
  description: Whether a change of this run waits for a reboot of the instances (a static parameter).
  returned: always
  type: bool
"""

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible_collections.pgshift.aurora.plugins.module_utils._aws import common
from ansible_collections.pgshift.aurora.plugins.module_utils.runners import parameter_group as runner


def main():
    module = AnsibleModule(supports_check_mode=True, **runner.module_spec())
    if common.BOTO3_IMPORT_ERROR:
        module.fail_json(msg=missing_required_lib("boto3"), exception=common.BOTO3_IMPORT_ERROR)
    runner.run_module(module)


if __name__ == "__main__":
    main()
