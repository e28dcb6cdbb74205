# -*- coding: utf-8 -*-
# Copyright: pgshift.aurora contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""rds_parameter_group's orchestration: does the group exist (create it with family) -> read its values ->
decide (parameter_groups.compare_parameters) -> modify -> the result.

Reads and changes: _aws/rds.py. Decides: module_utils/parameter_groups.py.
"""

from __future__ import annotations

from ansible_collections.pgshift.aurora.plugins.module_utils import parameter_groups
from ansible_collections.pgshift.aurora.plugins.module_utils._aws import common
from ansible_collections.pgshift.aurora.plugins.module_utils._aws import rds as rds_api


class ParameterGroupError(Exception):
    """The group cannot be brought to the values; the message says what to do."""


def argument_spec():
    """rds_parameter_group's options; it documents the AWS ones itself, without amazon.aws's aliases."""
    spec = dict(
        name=dict(type="str", required=True),
        kind=dict(type="str", default="instance", choices=["cluster", "instance"]),
        parameters=dict(type="dict", default={}),
        family=dict(type="str"),
        description=dict(type="str", default="managed by pgshift.aurora"),
        tags=dict(type="dict", default={}),
    )
    spec.update(common.aws_argument_spec(aliases=False))
    return spec


def run(rds, p, check_mode, with_diff):
    """{changed, created, changes, reboot_pending[, diff]}; ParameterGroupError or common.AwsError on failure."""
    group, kind = p["name"], p["kind"]
    what = rds_api.group_title(group, kind)
    created = False
    if not rds_api.group_exists(rds, group, kind):
        if not p["family"]:
            raise ParameterGroupError("%s does not exist: create it, or give family so that this module creates it"
                                      % what)
        created = True
        if not check_mode:
            rds_api.create_group(rds, group, kind, p["family"], p["description"], p["tags"])
    described = {} if created and check_mode else rds_api.describe_parameters(rds, group, kind)
    changes, refused = parameter_groups.compare_parameters(described, p["parameters"])
    if refused:
        raise ParameterGroupError("%s: %s; remove them from parameters" % (what, "; ".join(refused)))
    if changes and not check_mode:
        rds_api.modify_parameters(rds, group, kind, changes)
    result = dict(changed=bool(changes) or created, created=created, changes=changes,
                  reboot_pending=parameter_groups.reboot_pending(changes))
    if with_diff and changes:
        result["diff"] = dict(
            before=dict((c["ParameterName"], (described.get(c["ParameterName"]) or {}).get("value")) for c in changes),
            after=dict((c["ParameterName"], c["ParameterValue"]) for c in changes))
    return result


def module_spec():
    return dict(argument_spec=argument_spec())


def run_module(module):
    p = module.params
    try:
        result = run(rds_api.api(p), p, module.check_mode, module._diff)  # pylint: disable=protected-access
    except (ParameterGroupError, common.AwsError) as exc:
        module.fail_json(msg=str(exc), changed=False)
    except Exception as exc:  # pylint: disable=broad-except  # botocore configuration errors (profile, region) end here
        if not common.is_aws_error(exc):
            raise
        module.fail_json(msg=common.explain(exc, "reading %s" % rds_api.group_title(p["name"], p["kind"])), changed=False)
    module.exit_json(**result)
