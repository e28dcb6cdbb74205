# -*- coding: utf-8 -*-
"""The inventory contract checked in one pass (module_utils/inventory_check.py, the filter inventory_check)."""

from __future__ import annotations

import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.pgshift.aurora.plugins.filter.inventory import inventory_check as check_filter
from ansible_collections.pgshift.aurora.plugins.module_utils.inventory_check import inventory_check

SECRET = "s3cr3t-Pa55"


def host(**over):
    values = dict(db_host="127.0.0.1", db_port=5432, db_name="app", db_user="pgshift", db_password=SECRET)
    values.update(over)
    return dict((k, v) for k, v in values.items() if v is not Ellipsis)


def inventory(source=None, target=None, migration_name="shipping", groups=None):
    hostvars = {"src": dict(source or host(), migration_name=migration_name),
                "tgt": dict(target or host(db_port=5433), migration_name=migration_name)}
    if migration_name is Ellipsis:
        for h in hostvars.values():
            del h["migration_name"]
    return groups or {"source": ["src"], "target": ["tgt"]}, hostvars


def test_a_good_inventory_has_no_problem_and_resolves_hosts_and_endpoints():
    out = inventory_check(*inventory())
    assert out == dict(problems=[], source_host="src", target_host="tgt", source_endpoint="127.0.0.1:5432/app",
                       target_endpoint="127.0.0.1:5433/app", vcpus=None)


@pytest.mark.parametrize("source, target, vcpus", [(8, 4, 4), ("16", None, 16), (None, 2, 2), ("", " ", None)])
def test_the_fewer_vcpus_of_the_two_hosts(source, target, vcpus):
    out = inventory_check(*inventory(source=host(db_vcpus=source), target=host(db_port=5433, db_vcpus=target)))
    assert out["problems"] == [] and out["vcpus"] == vcpus


@pytest.mark.parametrize("value", [0, "two", "1.5", -4])
def test_vcpus_that_are_not_a_count_are_a_problem(value):
    out = inventory_check(*inventory(target=host(db_port=5433, db_vcpus=value)))
    assert out["problems"] == ["inventory: host 'tgt' has db_vcpus %s, not a count of vCPUs from 1: set the "
                               "instance's vCPUs, or leave it unset when unknown." % value]
    assert out["vcpus"] is None


def test_the_port_defaults_to_5432():
    out = inventory_check(*inventory(source=host(db_port=Ellipsis)))
    assert out["problems"] == []
    assert out["source_endpoint"] == "127.0.0.1:5432/app"


@pytest.mark.parametrize("groups, message", [
    ({"source": ["src", "src2"], "target": ["tgt"]},
     "inventory: group 'source' must hold exactly one host (the source database, the RDS writer endpoint), it holds "
     "src, src2. Fix the inventory (docs/inventory.md)."),
    ({"source": ["src"]},
     "inventory: group 'target' must hold exactly one host (the target database, the Aurora writer endpoint), it "
     "holds none. Fix the inventory (docs/inventory.md)."),
])
def test_groups_must_hold_one_host_each_and_nothing_else_is_resolved(groups, message):
    out = inventory_check(*inventory(groups=groups))
    assert out["problems"] == [message]
    assert out["source_host"] is None and out["target_endpoint"] is None


def test_missing_null_and_blank_variables_are_named_never_a_value():
    out = inventory_check(*inventory(target=host(db_name=None, db_user="  ", db_password=Ellipsis, db_port=5433)))
    assert out["problems"] == [
        "inventory: host 'tgt' (group target) is missing the required variable(s) db_name, db_user, db_password (set "
        "them in its host_vars; docs/inventory.md lists them)."]


def test_every_problem_is_said_at_once():
    out = inventory_check(*inventory(source=host(db_port="54x2"), target=host(db_port=70000),
                                     migration_name="Bad Name!"))
    assert out["problems"] == [
        "inventory: host 'src' has db_port 54x2, not a TCP port number.",
        "inventory: host 'tgt' has db_port 70000, not a TCP port number.",
        "inventory: migration_name 'Bad Name!' is not valid: set it in group_vars/all, lower case letters, digits "
        "and underscores, at most 40 characters (it names slots, publications, subscriptions and DMS tasks)."]
    assert not any(SECRET in p for p in out["problems"])


@pytest.mark.parametrize("name, ok", [("shipping_2", True), ("a" * 40, True), ("a" * 41, False), ("Ship", False),
                                      ("", False), (Ellipsis, False)])
def test_migration_name(name, ok):
    problems = inventory_check(*inventory(migration_name=name))["problems"]
    assert (problems == []) is ok
    if name is Ellipsis:
        assert "migration_name is missing" in problems[0]


def test_port_zero_is_not_a_port():
    assert inventory_check(*inventory(source=host(db_port=0)))["problems"] == [
        "inventory: host 'src' has db_port 0, not a TCP port number."]


def test_the_same_database_twice_is_refused():
    out = inventory_check(*inventory(target=host()))
    assert out["problems"] == [
        "inventory: the source (src) and the target (tgt) are the same database, 127.0.0.1:5432/app: point the "
        "target at the Aurora writer endpoint."]


def test_the_required_variables_can_be_chosen():
    out = inventory_check(*inventory(source=host(db_password=Ellipsis)), required=("db_host",))
    assert out["problems"] == []


def test_the_filter_refuses_what_is_not_groups_and_hostvars():
    with pytest.raises(AnsibleFilterError, match="give it Ansible's groups and hostvars"):
        check_filter("source", None)
    assert check_filter(*inventory())["problems"] == []
