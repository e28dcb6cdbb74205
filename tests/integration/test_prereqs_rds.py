"""pg_logical_prereqs against the RDS API (a moto server on loopback) with a real PG15 as the database.

What moto models (moto 5.x): parameter groups, instances attached to them, describe/modify
of parameters, reboot. What it does not: engine default parameters (describe_db_parameters
lists only the values set in a custom group), ParameterApplyStatus (always "in-sync"),
reboot time (instant), the 20-parameters-per-call limit. rds.logical_replication exists only on
RDS, so its check is exercised here on real facts with that setting added.
"""

from __future__ import annotations

import sys
import uuid

import pytest

from modrunner import COLLECTIONS

sys.path.insert(0, COLLECTIONS)
from ansible_collections.pgshift.aurora.plugins.module_utils import prereqs as pure  # noqa: E402
from ansible_collections.pgshift.aurora.plugins.module_utils import parameter_groups  # noqa: E402
from ansible_collections.pgshift.aurora.plugins.module_utils._pg import catalog  # noqa: E402

SECRET = "moto-secret-%s" % uuid.uuid4().hex
LOGICAL_PARAMETERS = ["max_replication_slots", "max_wal_senders", "rds.logical_replication"]


def make_instance(rds, name, group=None):
    """An RDS for PostgreSQL 15 instance, on a new custom parameter group unless group is 'default'."""
    kwargs = dict(DBInstanceIdentifier=name, DBInstanceClass="db.t3.micro", Engine="postgres", EngineVersion="15.5",
                  MasterUsername="postgres", MasterUserPassword="not-used-1", AllocatedStorage=20)
    if group != "default":
        group = group or "%s-params" % name
        rds.create_db_parameter_group(DBParameterGroupName=group, DBParameterGroupFamily="postgres15",
                                      Description="pgshift integration test")
        kwargs["DBParameterGroupName"] = group
    rds.create_db_instance(**kwargs)
    return group


def group_values(rds, group):
    values = {}
    for page in rds.get_paginator("describe_db_parameters").paginate(DBParameterGroupName=group):
        for p in page["Parameters"]:
            values[p["ParameterName"]] = (p.get("ParameterValue"), p.get("ApplyMethod"))
    return values


def aws_options(moto_server, instance, **extra):
    opts = dict(rds_instance_id=instance, aws_endpoint_url=moto_server, aws_region="us-east-1",
                aws_access_key="testing", aws_secret_key=SECRET, fail_on="never")
    opts.update(extra)
    return opts


def operations(result):
    return [c["operation"] for c in result["api_calls"]]


def changes_flags(result):
    return [(c["operation"], c["change"]) for c in result["api_calls"]]


def test_rds_fix_check_mode_then_apply_then_idempotent(prereqs, poor_cluster, new_db, new_role, rds, moto_server):
    db = new_db(poor_cluster)
    user = new_role()
    instance = "pgshift-src-%s" % uuid.uuid4().hex[:8]
    group = make_instance(rds, instance)
    poor_cluster.execute(db, ["CREATE TABLE public.items (id int PRIMARY KEY)"])
    with poor_cluster.master_connect() as conn:
        conn.execute("CREATE ROLE %s LOGIN" % user)
    opts = aws_options(moto_server, instance, role="source", state="present", migration_user=user,
                       system_settings=True)  # ignored with rds_instance_id: RDS has no ALTER SYSTEM
    # Roles follow the server: shaped like RDS (rds_replication) but not RDS, so the REPLICATION attribute
    # too (the master has it and created the user); the master creates the publications (no CREATE grant).
    sql = ['GRANT "rds_replication" TO "%s"' % user, 'ALTER ROLE "%s" REPLICATION' % user,
           'GRANT SELECT ON TABLE "public"."items" TO "%s"' % user]
    changes = [dict(ParameterName="max_replication_slots", ParameterValue="3", ApplyMethod="pending-reboot"),
               dict(ParameterName="max_wal_senders", ParameterValue="3", ApplyMethod="pending-reboot"),
               dict(ParameterName="rds.logical_replication", ParameterValue="1", ApplyMethod="pending-reboot")]

    # Check mode: reads the instance and the group, plans the change, changes nothing.
    result = prereqs.ok(prereqs(poor_cluster, db, check_mode=True, diff=True, verbosity=4, secrets=(SECRET,),
                                **opts))
    assert result["changed"] is True and result["reboot_pending"] is True
    assert changes_flags(result) == [("describe_db_instances", False), ("describe_db_parameters", False),
                                     ("modify_db_parameter_group", True)]
    assert result["api_calls"][-1]["parameters"] == dict(DBParameterGroupName=group, Parameters=changes)
    assert result["queries"] == sql
    for c in changes:
        key = "parameter_group.%s.%s" % (group, c["ParameterName"])
        assert (result["diff"]["before"][key], result["diff"]["after"][key]) == (None, c["ParameterValue"])
    assert group_values(rds, group) == {}
    (replication,), = poor_cluster.query(db, "SELECT rolreplication FROM pg_roles WHERE rolname = %s", (user,))
    assert replication is False

    # The real run: the parameter group changes, the grants are made, a reboot is pending.
    result = prereqs.ok(prereqs(poor_cluster, db, verbosity=4, secrets=(SECRET,), **opts))
    assert result["changed"] is True and result["reboot_pending"] is True
    assert changes_flags(result) == [("describe_db_instances", False), ("describe_db_parameters", False),
                                     ("modify_db_parameter_group", True)]
    assert result["api_calls"][-1]["parameters"] == dict(DBParameterGroupName=group, Parameters=changes)
    assert result["queries"] == sql
    assert group_values(rds, group) == dict(
        (c["ParameterName"], (c["ParameterValue"], "pending-reboot")) for c in changes)
    (replication,), = poor_cluster.query(db, "SELECT rolreplication FROM pg_roles WHERE rolname = %s", (user,))
    assert replication is True
    prereqs.passes(result, "replication_privilege")
    assert "ALTER SYSTEM" not in " ".join(result["queries"])
    f = prereqs.one(result, "wal_level")  # the live server waits for the reboot
    # The group read through the API is the one the commands name.
    assert f["remediation"] == (
        'in the DB parameter group: aws rds modify-db-parameter-group --db-parameter-group-name %s --parameters '
        '"ParameterName=rds.logical_replication,ParameterValue=1,ApplyMethod=pending-reboot" --region us-east-1, '
        'then reboot: aws rds reboot-db-instance --db-instance-identifier %s --region us-east-1' % (group, instance))

    # A second run changes nothing, and still says the reboot is pending (the live wal_level is replica).
    result = prereqs.ok(prereqs(poor_cluster, db, secrets=(SECRET,), **opts))
    assert result["changed"] is False and result["queries"] == []
    assert operations(result) == ["describe_db_instances", "describe_db_parameters"]
    assert result["reboot_pending"] is True
    assert len(group_values(rds, group)) == 3


def test_rds_group_already_right_needs_no_change(prereqs, source_cluster, source_db, rds, moto_server):
    """A source whose live settings are already right (wal_level logical, 10 slots): nothing to ask of the API."""
    instance = "pgshift-ok-%s" % uuid.uuid4().hex[:8]
    make_instance(rds, instance)
    result = prereqs.ok(prereqs(source_cluster, source_db, secrets=(SECRET,),
                                **aws_options(moto_server, instance, role="source", state="present")))
    assert result["changed"] is False and result["reboot_pending"] is False
    assert operations(result) == ["describe_db_instances"]


def test_rds_reboot_when_asked(prereqs, poor_cluster, new_db, rds, moto_server):
    db = new_db(poor_cluster)
    instance = "pgshift-rb-%s" % uuid.uuid4().hex[:8]
    group = make_instance(rds, instance)
    result = prereqs.ok(prereqs(poor_cluster, db, secrets=(SECRET,),
                                **aws_options(moto_server, instance, role="source", state="present",
                                              rds_reboot=True, rds_reboot_timeout=60)))
    assert result["changed"] is True
    assert changes_flags(result) == [("describe_db_instances", False), ("describe_db_parameters", False),
                                     ("modify_db_parameter_group", True), ("reboot_db_instance", True)]
    assert result["api_calls"][-1]["parameters"] == dict(DBInstanceIdentifier=instance)
    assert rds.describe_db_instances(DBInstanceIdentifier=instance)["DBInstances"][0]["DBInstanceStatus"] == "available"
    assert group_values(rds, group)["rds.logical_replication"][0] == "1"
    # moto reboots nothing real: the local PostgreSQL still runs wal_level=replica, so a reboot is still reported.
    assert result["reboot_pending"] is True


def test_rds_default_parameter_group_is_refused(prereqs, poor_cluster, new_db, rds, moto_server):
    db = new_db(poor_cluster)
    instance = "pgshift-def-%s" % uuid.uuid4().hex[:8]
    make_instance(rds, instance, group="default")
    result = prereqs(poor_cluster, db, verbosity=4, secrets=(SECRET,),
                     **aws_options(moto_server, instance, role="source", state="present"))
    assert result["failed"] and result["changed"] is False
    assert "RDS instance %s uses the default parameter group default.postgres15, which cannot be changed" % instance \
        in result["msg"]
    assert "create a custom DB parameter group" in result["msg"] and "attach it to the instance" in result["msg"]
    assert operations(result) == ["describe_db_instances"]
    assert group_values(rds, "default.postgres15") == {}


def test_rds_unknown_instance_is_a_clear_error(prereqs, poor_cluster, new_db, moto_server):
    db = new_db(poor_cluster)
    result = prereqs(poor_cluster, db, verbosity=4, secrets=(SECRET,),
                     **aws_options(moto_server, "no-such-instance", role="source", state="present"))
    assert result["failed"]
    assert result["msg"].startswith("reading RDS instance no-such-instance: DBInstanceNotFound")
    assert "check rds_instance_id and aws_region" in result["msg"]
    assert operations(result) == ["describe_db_instances"]


def test_rds_assessment_only_makes_no_api_call(prereqs, poor_cluster, new_db, rds, moto_server):
    db = new_db(poor_cluster)
    instance = "pgshift-ro-%s" % uuid.uuid4().hex[:8]
    group = make_instance(rds, instance)
    result = prereqs.ok(prereqs(poor_cluster, db, secrets=(SECRET,),
                                **aws_options(moto_server, instance, role="source")))
    assert result["changed"] is False and result["api_calls"] == []
    assert result["reboot_pending"] is True
    assert "DB parameter group" in prereqs.one(result, "max_replication_slots")["remediation"]
    assert group_values(rds, group) == {}


# --- rds.logical_replication: real facts from a cluster, plus the RDS-only setting ------------------

def rds_facts(cluster, db, setting):
    with cluster.connect(db) as conn:
        facts, tables = catalog.gather(conn, "source", "postgres",
                                       dict(include_schemas=[], exclude_schemas=[], include_tables=[],
                                            exclude_tables=[]))
    facts["server"]["is_rds"] = True
    if setting is not None:
        facts["settings"]["rds.logical_replication"] = dict(name="rds.logical_replication", setting=setting,
                                                            unit=None, context="postmaster", vartype="bool",
                                                            source="configuration file", pending_restart=False,
                                                            boot_val="off")
    return facts, tables


def evaluate(facts, tables, role):
    return pure.evaluate(facts, dict(role=role, engine="native", planned_streams=1, reserved_slots=2,
                                     long_transaction_seconds=300, migration_user="postgres", rds=True, source=None,
                                     tables=tables))


@pytest.mark.parametrize("role, severity", [("source", "blocker"), ("target", "warning")])
def test_rds_logical_replication_off_is_found(poor_cluster, new_db, role, severity):
    facts, tables = rds_facts(poor_cluster, new_db(poor_cluster), "off")
    findings, checks = evaluate(facts, tables, role)
    found = [f for f in findings if f["id"] == "rds_logical_replication"]
    assert len(found) == 1
    f = found[0]
    assert (f["severity"], f["object"]) == (severity, "rds.logical_replication")
    assert "rds.logical_replication is off" in f["detail"]
    assert f["remediation"].startswith(
        'in the DB parameter group: aws rds modify-db-parameter-group --db-parameter-group-name <db-parameter-group> '
        '--parameters "ParameterName=rds.logical_replication,ParameterValue=1,ApplyMethod=pending-reboot", then '
        'reboot: aws rds reboot-db-instance --db-instance-identifier <db-instance-id>')
    assert "a default.* group cannot be changed: create a custom one of family postgres16" in f["remediation"]
    if role == "source":
        assert checks["rds_logical_replication"] == "blocker"
    # On RDS the parameter replaces the wal_level check (wal_level follows it at the reboot).
    assert not [f for f in findings if f["id"] == "wal_level"]


@pytest.mark.parametrize("role", ["source", "target"])
def test_rds_logical_replication_on_passes(source_cluster, source_db, role):
    facts, tables = rds_facts(source_cluster, source_db, "on")
    findings, checks = evaluate(facts, tables, role)
    assert not [f for f in findings if f["id"] in ("rds_logical_replication", "wal_level")]
    if role == "source":
        assert checks["rds_logical_replication"] == "pass"


def test_rds_parameters_wanted_from_the_settings(poor_cluster, new_db):
    """wal_level maps to rds.logical_replication = 1; a group already right needs no change."""
    facts, tables = rds_facts(poor_cluster, new_db(poor_cluster), None)
    opts = dict(role="source", planned_streams=1, reserved_slots=2, rds=True)
    desired = parameter_groups.desired_parameters(pure.desired_settings(facts, opts))
    assert desired == {"rds.logical_replication": "1", "max_replication_slots": "3", "max_wal_senders": "3"}
    assert [c["ParameterName"] for c in parameter_groups.compare_parameters({}, desired)[0]] == LOGICAL_PARAMETERS
    assert parameter_groups.compare_parameters(dict((k, dict(value=v)) for k, v in desired.items()), desired) == ([], [])


def test_rds_reboot_asked_on_a_later_run(prereqs, poor_cluster, new_db, rds, moto_server):
    """The group was changed by an earlier run without a reboot: rds_reboot=true now reboots (and waits)."""
    db = new_db(poor_cluster)
    instance = "pgshift-rb2-%s" % uuid.uuid4().hex[:8]
    make_instance(rds, instance)
    opts = aws_options(moto_server, instance, role="source", state="present")
    first = prereqs.ok(prereqs(poor_cluster, db, secrets=(SECRET,), **opts))
    assert first["changed"] is True and first["reboot_pending"] is True
    assert "reboot_db_instance" not in operations(first)

    # Check mode says it would reboot, and does not.
    checked = prereqs.ok(prereqs(poor_cluster, db, check_mode=True, secrets=(SECRET,),
                                 **dict(opts, rds_reboot=True, rds_reboot_timeout=60)))
    assert checked["changed"] is True
    assert changes_flags(checked) == [("describe_db_instances", False), ("describe_db_parameters", False),
                                      ("reboot_db_instance", True)]

    second = prereqs.ok(prereqs(poor_cluster, db, secrets=(SECRET,),
                                **dict(opts, rds_reboot=True, rds_reboot_timeout=60)))
    assert second["changed"] is True
    assert changes_flags(second) == [("describe_db_instances", False), ("describe_db_parameters", False),
                                     ("reboot_db_instance", True)]
    assert rds.describe_db_instances(DBInstanceIdentifier=instance)["DBInstances"][0]["DBInstanceStatus"] == "available"
    # moto reboots nothing real: the local server still has wal_level=replica, so a reboot is still reported.
    assert second["reboot_pending"] is True
