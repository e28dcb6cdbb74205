# -*- coding: utf-8 -*-
# Copyright: pgshift.aurora contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The inventory contract (docs/inventory.md), checked in one pass. Pure: the filter
pgshift.aurora.inventory_check passes Ansible's `groups` and `hostvars`; the unit tests pass dicts.

Every problem is said at once, each naming the group, host or variable at fault, and no secret's value
(only whether a variable is set).
"""

from __future__ import annotations

import re

REQUIRED_HOST_VARS = ("db_host", "db_name", "db_user", "db_password")
MIGRATION_NAME = re.compile(r"^[a-z0-9_]{1,40}$")
GROUPS = (
    ("source", "the source database, the RDS writer endpoint"),
    ("target", "the target database, the Aurora writer endpoint"),
)


def _blank(host_vars, name):
    """Whether a host variable is missing, null or only spaces (as the inventory checks always read it)."""
    if name not in host_vars:
        return True
    value = host_vars[name]
    return value is None or str(value).strip() == ""


def _port_ok(value):
    text = str(value)
    return re.match(r"^[0-9]+$", text) is not None and 1 <= int(text) <= 65535


def _vcpus(host_vars):
    """db_vcpus of a database host as a number: None when unset, False when it is not a count from 1."""
    if _blank(host_vars, "db_vcpus"):
        return None
    text = str(host_vars["db_vcpus"]).strip()
    return int(text) if re.match(r"^[0-9]+$", text) and int(text) >= 1 else False


def fewest_vcpus(source_vars, target_vars):
    """The fewer of the two hosts' db_vcpus (the one given when only one is), None when neither is or one is
    not a count: what caps the streams (prereqs.vcpu_stream_cap)."""
    known = [v for v in (_vcpus(source_vars), _vcpus(target_vars)) if v]
    return min(known) if known else None


def endpoint(host_vars):
    """host:port/database of a database host (db_port defaults to 5432)."""
    return "%s:%s/%s" % (host_vars.get("db_host"), host_vars.get("db_port", 5432), host_vars.get("db_name"))


def inventory_check(groups, hostvars, required=REQUIRED_HOST_VARS):
    """The inventory against the contract.

    groups: group name -> host names; hostvars: host name -> its variables (a mapping).
    Returns dict(problems=[message, ...], source_host, target_host, source_endpoint, target_endpoint, vcpus): the
    resolved values are None when the groups are wrong; vcpus is fewest_vcpus() of the two hosts.
    """
    problems = []
    for group, what in GROUPS:
        hosts = list(groups.get(group) or [])
        if len(hosts) != 1:
            problems.append("inventory: group '%s' must hold exactly one host (%s), it holds %s. Fix the inventory "
                            "(docs/inventory.md)." % (group, what, ", ".join(hosts) or "none"))
    out = dict(problems=problems, source_host=None, target_host=None, source_endpoint=None, target_endpoint=None,
               vcpus=None)
    if problems:
        return out
    source, target = groups["source"][0], groups["target"][0]
    for group, host in (("source", source), ("target", target)):
        host_vars = hostvars[host]
        missing = [name for name in required if _blank(host_vars, name)]
        if missing:
            problems.append("inventory: host '%s' (group %s) is missing the required variable(s) %s (set them in its "
                            "host_vars; docs/inventory.md lists them)." % (host, group, ", ".join(missing)))
        if not _port_ok(host_vars.get("db_port", 5432)):
            problems.append("inventory: host '%s' has db_port %s, not a TCP port number." % (
                host, host_vars.get("db_port")))
        if _vcpus(host_vars) is False:
            problems.append("inventory: host '%s' has db_vcpus %s, not a count of vCPUs from 1: set the instance's "
                            "vCPUs, or leave it unset when unknown." % (host, host_vars.get("db_vcpus")))
    source_vars, target_vars = hostvars[source], hostvars[target]
    name = source_vars.get("migration_name")
    if name is None or not MIGRATION_NAME.match(str(name)):
        problems.append("inventory: migration_name %s: set it in group_vars/all, lower case letters, digits and "
                        "underscores, at most 40 characters (it names slots, publications, subscriptions and DMS "
                        "tasks)." % ("is missing" if name is None else "'%s' is not valid" % name))
    out.update(source_host=source, target_host=target, source_endpoint=endpoint(source_vars),
               target_endpoint=endpoint(target_vars), vcpus=fewest_vcpus(source_vars, target_vars))
    if out["source_endpoint"] == out["target_endpoint"]:
        problems.append("inventory: the source (%s) and the target (%s) are the same database, %s: point the target "
                        "at the Aurora writer endpoint." % (source, target, out["source_endpoint"]))
    return out
