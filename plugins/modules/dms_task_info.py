#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: pgshift.aurora contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: dms_task_info
short_description: Status, per-table statistics, progress and CDC latency of AWS DMS replication tasks
version_added: 0.3.0
description:
  - Describes the DMS replication tasks named in O(identifiers), or every task whose identifier starts with
    O(identifier_prefix), each the way M(pgshift.aurora.dms_task) returns it (task, table statistics, progress,
    CDC latency from CloudWatch), with two summary fields for playbooks that wait on several tasks.
  - Changes nothing; a failed task is reported, not an error (see RV(failed_tasks)).
author:
  - pgshift.aurora developers (@pgshift)
extends_documentation_fragment:
  - pgshift.aurora.aws
  - pgshift.aurora.in_process
options:
  identifiers:
    description: Task identifiers or ARNs. A task that does not exist is listed in RV(missing).
    type: list
    elements: str
  identifier_prefix:
    description: Every task whose identifier starts with this (for example C(pgshift-orders-s)).
    type: str
"""

EXAMPLES = r"""
- name: Every task of the migration
  pgshift.aurora.dms_task_info:
    identifier_prefix: pgshift-orders-s
    aws_region: eu-west-1
  register: dms_tasks

- name: Wait until every full load is done and CDC is under 30 s
  pgshift.aurora.dms_task_info:
    identifier_prefix: pgshift-orders-s
    aws_region: eu-west-1
  register: dms_tasks
  until: >-
    dms_tasks.all_full_load_complete and dms_tasks.max_cdc_latency_seconds is not none
    and dms_tasks.max_cdc_latency_seconds < 30
  retries: 240
  delay: 30
"""

RETURN = r"""
tasks:
  description: One entry per task, each with C(task), C(table_statistics), C(progress) and C(cdc_latency) as M(pgshift.aurora.dms_task) returns them.
  returned: always
  type: list
  elements: dict
missing:
  description: The O(identifiers) that matched no task.
  returned: always
  type: list
  elements: str
failed_tasks:
  description: Identifiers of the tasks that failed (status C(failed), or stopped with an error), with their messages.
  returned: always
  type: list
  elements: dict
  sample: [{identifier: pgshift-orders-s2, msg: "replication task pgshift-orders-s2 is failed: ..."}]
all_full_load_complete:
  description: True when there is at least one task and every task is done with its full load (a C(cdc) task counts when running).
  returned: always
  type: bool
max_cdc_latency_seconds:
  description: The largest CDC latency (source or target) of all tasks; null when CloudWatch has no datapoint.
  returned: always
  type: float
"""

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible_collections.pgshift.aurora.plugins.module_utils._aws import common
from ansible_collections.pgshift.aurora.plugins.module_utils.runners import dms_task as runner


def main():
    module = AnsibleModule(supports_check_mode=True, **runner.info_module_spec())
    if common.BOTO3_IMPORT_ERROR:
        module.fail_json(msg=missing_required_lib("boto3"), exception=common.BOTO3_IMPORT_ERROR)
    runner.run_info_module(module)


if __name__ == "__main__":
    main()
