"""Pure planning of parameter group values (rds.plan_group_changes and helpers)."""

from __future__ import annotations

import pytest

from ansible_collections.pgshift.aurora.plugins.module_utils._aws import rds


def test_only_differing_values_change_and_static_ones_wait_for_a_reboot():
    described = {
        "rds.logical_replication": dict(value=None, apply_type="static", modifiable=True),  # engine default
        "max_wal_senders": dict(value="20", apply_type="static", modifiable=True),
        "work_mem": dict(value="4096", apply_type="dynamic", modifiable=True),
    }
    changes, errors = rds.plan_group_changes(described, {"rds.logical_replication": 1, "max_wal_senders": 20,
                                                         "work_mem": 8192})
    assert errors == []
    assert changes == [
        dict(ParameterName="rds.logical_replication", ParameterValue="1", ApplyMethod="pending-reboot"),
        dict(ParameterName="work_mem", ParameterValue="8192", ApplyMethod="immediate"),
    ]


def test_a_group_that_lists_only_what_is_set_uses_the_static_list():
    # moto (and a freshly created group described by a stand-in) lists nothing: every value is a change.
    changes, errors = rds.plan_group_changes({}, {"max_replication_slots": 20, "log_min_duration_statement": 500})
    assert errors == []
    assert changes == [
        dict(ParameterName="log_min_duration_statement", ParameterValue="500", ApplyMethod="immediate"),
        dict(ParameterName="max_replication_slots", ParameterValue="20", ApplyMethod="pending-reboot"),
    ]


def test_second_run_changes_nothing_and_booleans_are_1_or_0():
    described = {"rds.logical_replication": dict(value="1", apply_type=None, modifiable=True),
                 "rds.force_ssl": dict(value="0", apply_type="dynamic", modifiable=True)}
    assert rds.plan_group_changes(described, {"rds.logical_replication": True, "rds.force_ssl": False}) == ([], [])


def test_not_modifiable_is_an_error_not_a_change():
    described = {"port": dict(value="5432", apply_type="static", modifiable=False)}
    changes, errors = rds.plan_group_changes(described, {"port": 6543})
    assert changes == []
    assert errors == ["parameter port cannot be modified (it is '5432', '6543' wanted)"]


class FakeRds:
    """describe_db_instances answers from a script of (status, apply status)."""

    def __init__(self, script):
        self.script = list(script)
        self.rebooted = []

    def reboot_db_instance(self, DBInstanceIdentifier):
        self.rebooted.append(DBInstanceIdentifier)

    def describe_db_instances(self, DBInstanceIdentifier):
        status, apply_status = self.script.pop(0) if len(self.script) > 1 else self.script[0]
        return {"DBInstances": [dict(DBInstanceIdentifier=DBInstanceIdentifier, DBInstanceStatus=status,
                                     Engine="postgres", DBParameterGroups=[dict(DBParameterGroupName="g",
                                                                                ParameterApplyStatus=apply_status)])]}


def test_reboot_waits_past_a_stale_available_until_in_sync():
    rds_fake = FakeRds([("available", "pending-reboot"), ("rebooting", "applying"), ("available", "in-sync")])
    sleeps = []
    inst = rds.reboot_and_wait(rds_fake, "orders", 600, delay=15, sleep=sleeps.append, clock=lambda: 0)
    assert rds_fake.rebooted == ["orders"]
    assert (inst["status"], inst["apply_status"]) == ("available", "in-sync")
    assert sleeps == [15, 15]


def test_reboot_timeout_says_what_to_do():
    rds_fake = FakeRds([("rebooting", "applying")])
    ticks = iter(range(0, 1000, 100))
    with pytest.raises(rds.RebootTimeout) as exc:
        rds.reboot_and_wait(rds_fake, "orders", 250, sleep=lambda s: None, clock=lambda: next(ticks))
    assert str(exc.value) == ("RDS instance orders is still rebooting (parameter group applying) 250 s after the "
                              "reboot: look at it in the RDS console, then run again")
