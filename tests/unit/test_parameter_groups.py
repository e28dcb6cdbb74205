"""RDS parameter group decisions (module_utils/parameter_groups.py): one comparison for pg_logical_prereqs'
fix mode and for rds_parameter_group."""

from __future__ import annotations

from ansible_collections.pgshift.aurora.plugins.module_utils import parameter_groups


def test_only_differing_values_change_and_static_ones_wait_for_a_reboot():
    described = {
        "rds.logical_replication": dict(value=None, apply_type="static", modifiable=True),  # engine default
        "max_wal_senders": dict(value="20", apply_type="static", modifiable=True),
        "work_mem": dict(value="4096", apply_type="dynamic", modifiable=True),
    }
    changes, refused = parameter_groups.compare_parameters(described, {"rds.logical_replication": 1,
                                                                       "max_wal_senders": 20, "work_mem": 8192})
    assert refused == []
    assert changes == [
        dict(ParameterName="rds.logical_replication", ParameterValue="1", ApplyMethod="pending-reboot"),
        dict(ParameterName="work_mem", ParameterValue="8192", ApplyMethod="immediate"),
    ]
    assert parameter_groups.reboot_pending(changes)
    assert not parameter_groups.reboot_pending(changes[1:])


def test_a_group_that_lists_only_what_is_set_uses_the_static_list():
    # moto (and a freshly created group described by a stand-in) lists nothing: every value is a change.
    changes, refused = parameter_groups.compare_parameters({}, {"max_replication_slots": 20,
                                                                "log_min_duration_statement": 500})
    assert refused == []
    assert changes == [
        dict(ParameterName="log_min_duration_statement", ParameterValue="500", ApplyMethod="immediate"),
        dict(ParameterName="max_replication_slots", ParameterValue="20", ApplyMethod="pending-reboot"),
    ]


def test_second_run_changes_nothing_and_booleans_are_1_or_0():
    described = {"rds.logical_replication": dict(value="1", apply_type=None, modifiable=True),
                 "rds.force_ssl": dict(value="0", apply_type="dynamic", modifiable=True)}
    assert parameter_groups.compare_parameters(described, {"rds.logical_replication": True,
                                                           "rds.force_ssl": False}) == ([], [])


def test_not_modifiable_is_refused_not_a_change():
    described = {"port": dict(value="5432", apply_type="static", modifiable=False)}
    changes, refused = parameter_groups.compare_parameters(described, {"port": 6543})
    assert changes == []
    assert refused == ["parameter port cannot be modified (it is '5432', '6543' wanted)"]
    # Not modifiable but already right: nothing to say.
    assert parameter_groups.compare_parameters(described, {"port": 5432}) == ([], [])


def test_logical_replication_settings_as_parameters():
    desired = parameter_groups.desired_parameters({"wal_level": "logical", "max_replication_slots": "6"})
    assert desired == {"rds.logical_replication": "1", "max_replication_slots": "6"}
    changes, refused = parameter_groups.compare_parameters({"rds.logical_replication": dict(value="0")}, desired)
    assert refused == []
    assert changes == [
        dict(ParameterName="max_replication_slots", ParameterValue="6", ApplyMethod="pending-reboot"),
        dict(ParameterName="rds.logical_replication", ParameterValue="1", ApplyMethod="pending-reboot"),
    ]
    right = {"rds.logical_replication": dict(value="1"), "max_replication_slots": dict(value="6")}
    assert parameter_groups.compare_parameters(right, desired) == ([], [])
    changes, refused = parameter_groups.compare_parameters({}, {"wal_sender_timeout": "60000"})
    assert changes[0]["ApplyMethod"] == "immediate"


def test_default_group():
    assert parameter_groups.is_default_group("default.postgres15")
    assert not parameter_groups.is_default_group("pgshift-source-pg15")
    assert not parameter_groups.is_default_group(None)


def test_reboot_done_only_when_available_and_in_sync():
    assert parameter_groups.reboot_done(dict(status="available", apply_status="in-sync"))
    assert not parameter_groups.reboot_done(dict(status="available", apply_status="pending-reboot"))
    assert not parameter_groups.reboot_done(dict(status="rebooting", apply_status="applying"))
