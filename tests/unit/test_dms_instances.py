"""DMS replication instance changes and waits (module_utils/dms_instances.py)."""

from __future__ import annotations

import pytest

from ansible_collections.pgshift.aurora.plugins.module_utils import dms_instances


def test_instance_changes():
    have = {"ReplicationInstanceClass": "dms.t3.medium", "AllocatedStorage": 50, "EngineVersion": "3.5.3", "MultiAZ": False,
            "VpcSecurityGroups": [{"VpcSecurityGroupId": "sg-2", "Status": "active"}, {"VpcSecurityGroupId": "sg-1", "Status": "active"}],
            "PubliclyAccessible": False, "KmsKeyId": "arn:aws:kms:eu-west-1:1:key/abc",
            "ReplicationSubnetGroup": {"ReplicationSubnetGroupIdentifier": "sg"}}
    same = dict(instance_class="dms.t3.medium", allocated_storage=50, engine_version="3.5.3", multi_az=False,
                vpc_security_group_ids=["sg-1", "sg-2"], publicly_accessible=False, kms_key_id="key/abc", subnet_group="sg")
    assert dms_instances.instance_changes(same, have) == ({}, [])
    modify, fixed = dms_instances.instance_changes(dict(same, instance_class="dms.r6i.large", engine_version="3.6.1",
                                                   vpc_security_group_ids=["sg-1"], publicly_accessible=True, subnet_group="other"), have)
    assert modify == {"ReplicationInstanceClass": "dms.r6i.large", "EngineVersion": "3.6.1", "AllowMajorVersionUpgrade": False,
                      "VpcSecurityGroupIds": ["sg-1"]}
    assert fixed == ["subnet_group", "publicly_accessible"]
    assert dms_instances.instance_changes(dict(engine_version="4.0.0"), have)[0]["AllowMajorVersionUpgrade"] is True
    assert dms_instances.instance_changes({}, have) == ({}, [])


@pytest.mark.parametrize("condition,status,verdict", [
    ("available", "creating", None),
    ("available", "modifying", None),
    ("available", "available", "ok"),
    ("available", "storage-full", "failed"),
    ("available", "incompatible-network", "failed"),
    ("available", None, "gone"),
    ("absent", "deleting", None),
    ("absent", None, "ok"),
])
def test_instance_wait_verdict(condition, status, verdict):
    inst = None if status is None else {"ReplicationInstanceStatus": status}
    assert dms_instances.wait_verdict(condition, inst) == verdict
