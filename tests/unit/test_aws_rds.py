"""RDS calls (module_utils/_aws/rds.py) on a fake client, and their error messages."""

from __future__ import annotations

import botocore.exceptions
import pytest

from ansible_collections.pgshift.aurora.plugins.module_utils._aws import common, rds


class FakeRds:
    """describe_db_instances answers from a script of (status, apply status); describe_db_parameters in pages."""

    def __init__(self, script=(), pages=()):
        self.script = list(script)
        self.pages = list(pages)
        self.rebooted = []
        self.modified = []

    def reboot_db_instance(self, DBInstanceIdentifier):
        self.rebooted.append(DBInstanceIdentifier)

    def describe_db_instances(self, DBInstanceIdentifier):
        status, apply_status = self.script.pop(0) if len(self.script) > 1 else self.script[0]
        return {"DBInstances": [dict(DBInstanceIdentifier=DBInstanceIdentifier, DBInstanceStatus=status,
                                     Engine="postgres", DBParameterGroups=[dict(DBParameterGroupName="g",
                                                                                ParameterApplyStatus=apply_status)])]}

    def describe_db_parameters(self, DBParameterGroupName, Marker=None):
        return self.pages.pop(0)

    def modify_db_parameter_group(self, DBParameterGroupName, Parameters):
        self.modified.append([p["ParameterName"] for p in Parameters])


def test_reboot_waits_past_a_stale_available_until_in_sync():
    fake = FakeRds([("available", "pending-reboot"), ("rebooting", "applying"), ("available", "in-sync")])
    sleeps = []
    inst = rds.reboot_and_wait(common.Api(fake, rds.HINTS), "orders", 600, delay=15, sleep=sleeps.append,
                               clock=lambda: 0)
    assert fake.rebooted == ["orders"]
    assert (inst["status"], inst["apply_status"]) == ("available", "in-sync")
    assert sleeps == [15, 15]


def test_reboot_timeout_says_what_to_do():
    fake = FakeRds([("rebooting", "applying")])
    ticks = iter(range(0, 1000, 100))
    with pytest.raises(rds.RebootTimeout) as exc:
        rds.reboot_and_wait(common.Api(fake, rds.HINTS), "orders", 250, sleep=lambda s: None, clock=lambda: next(ticks))
    assert str(exc.value) == ("RDS instance orders is still rebooting (parameter group applying) 250 s after the "
                              "reboot: look at it in the RDS console, then run again")


def test_parameters_read_over_pages_and_changed_twenty_at_a_time():
    fake = FakeRds(pages=[
        {"Parameters": [dict(ParameterName="max_wal_senders", ParameterValue="10", ApplyType="static",
                             IsModifiable=True, Source="user")], "Marker": "m1"},
        {"Parameters": [dict(ParameterName="work_mem", ApplyType="dynamic", IsModifiable=True, Source="engine-default")]},
    ])
    api = common.Api(fake, rds.HINTS)
    assert rds.describe_parameters(api, "g", names={"work_mem"}) == {
        "work_mem": dict(value=None, apply_type="dynamic", modifiable=True, source="engine-default")}
    changes = [dict(ParameterName="p%02d" % i, ParameterValue="1", ApplyMethod="immediate") for i in range(45)]
    rds.modify_parameters(api, "g", "instance", changes)
    assert [len(names) for names in fake.modified] == [20, 20, 5]


def test_errors_say_what_failed_and_what_to_do():
    err = botocore.exceptions.ClientError(
        {"Error": {"Code": "DBInstanceNotFound", "Message": "DBInstance nope not found."}}, "DescribeDBInstances")
    msg = common.explain(err, "reading RDS instance nope", rds.HINTS)
    assert msg == "reading RDS instance nope: DBInstanceNotFound: DBInstance nope not found. (check rds_instance_id and aws_region)"
    assert "aws_region" in common.explain(botocore.exceptions.NoRegionError(), "x")
    assert "credentials" in common.explain(botocore.exceptions.NoCredentialsError(), "x")

    class Failing:
        def describe_db_instances(self, **kwargs):
            raise err

    with pytest.raises(common.AwsError) as raised:
        rds.describe_instance(common.Api(Failing(), rds.HINTS), "nope")
    assert raised.value.code == "DBInstanceNotFound" and str(raised.value) == msg
