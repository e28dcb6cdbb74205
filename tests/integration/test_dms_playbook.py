"""The DMS modules from ansible-playbook against a moto server: subnet group (community.aws), instance,
endpoints and a task created and started; --check --diff shows the task with its table mappings first;
a second run changes nothing; the password never shows; then everything is deleted."""

from __future__ import annotations

import os
import uuid

import boto3
import yaml

from modrunner import run_playbook

PASSWORD = "Pw-%s" % uuid.uuid4().hex[:12]


def test_dms_chain_from_a_playbook(moto_server, tmp_path):
    ec2 = boto3.client("ec2", endpoint_url=moto_server, region_name="us-east-1", aws_access_key_id="testing",
                       aws_secret_access_key="testing")
    vpc = ec2.create_vpc(CidrBlock="10.20.0.0/16")["Vpc"]["VpcId"]
    subnets = [ec2.create_subnet(VpcId=vpc, CidrBlock="10.20.%d.0/24" % i, AvailabilityZone="us-east-1" + az)["Subnet"]["SubnetId"]
               for i, az in ((1, "a"), (2, "b"))]
    run = uuid.uuid4().hex[:6]
    aws = dict(aws_endpoint_url=moto_server, aws_region="us-east-1", aws_access_key="testing", aws_secret_key="testing")
    mappings = {"rules": [{"rule-type": "selection", "rule-id": "1", "rule-name": "1",
                           "object-locator": {"schema-name": "public", "table-name": "pgbench_accounts"}, "rule-action": "include"}]}
    present = [
        {"name": "Subnet group", "community.aws.dms_replication_subnet_group": {
            "identifier": "pgshift-%s" % run, "description": "pgshift test", "subnet_ids": subnets, "state": "present",
            "region": "us-east-1", "endpoint_url": moto_server, "access_key": "testing", "secret_key": "testing"}},
        {"name": "Instance", "pgshift.aurora.dms_replication_instance": dict(
            aws, identifier="pgshift-%s" % run, instance_class="dms.t3.medium", subnet_group="pgshift-%s" % run,
            publicly_accessible=False, poll_interval=0.2)},
        {"name": "Source", "pgshift.aurora.dms_endpoint": dict(
            aws, identifier="pgshift-%s-source" % run, endpoint_type="source", server_name="source.internal", port=5432,
            database_name="app", username="pgshift", password=PASSWORD,
            postgresql_settings=dict(slot_name="pgshift_%s_s1" % run, heartbeat_enable=True))},
        {"name": "Target", "pgshift.aurora.dms_endpoint": dict(
            aws, identifier="pgshift-%s-target" % run, endpoint_type="target", engine_name="aurora-postgresql",
            server_name="target.internal", port=5432, database_name="app", username="pgshift", password=PASSWORD,
            session_replication_role="replica")},
        {"name": "Task", "pgshift.aurora.dms_task": dict(
            aws, identifier="pgshift-%s-s1" % run, replication_instance="pgshift-%s" % run,
            source_endpoint="pgshift-%s-source" % run, target_endpoint="pgshift-%s-target" % run,
            migration_type="full-load-and-cdc", table_mappings=mappings, state="running", wait="running", poll_interval=0.2)},
    ]
    absent = [
        {"name": "Task gone", "pgshift.aurora.dms_task": dict(aws, identifier="pgshift-%s-s1" % run, state="absent", poll_interval=0.2)},
        {"name": "Endpoints gone", "pgshift.aurora.dms_endpoint": dict(aws, identifier="{{ item }}", state="absent"),
         "loop": ["pgshift-%s-source" % run, "pgshift-%s-target" % run]},
        {"name": "Instance gone", "pgshift.aurora.dms_replication_instance": dict(
            aws, identifier="pgshift-%s" % run, state="absent", poll_interval=0.2)},
    ]
    for name, tasks in (("present", present), ("absent", absent)):
        with open(os.path.join(tmp_path, name + ".yml"), "w") as f:
            yaml.safe_dump([{"name": "DMS " + name, "hosts": "localhost", "gather_facts": False, "tasks": tasks}], f, sort_keys=False)
    inventory = os.path.join(tmp_path, "hosts.yml")
    with open(inventory, "w") as f:
        yaml.safe_dump({"all": {"hosts": {"localhost": {"ansible_connection": "local", "ansible_python_interpreter": "{{ ansible_playbook_python }}"}}}}, f)
    playbook = os.path.join(tmp_path, "present.yml")

    # --check --diff with nothing there yet: every resource would be created, the task shown with its mappings.
    rc, out, recap = run_playbook(playbook, inventory, "--check", "--diff", secrets=(PASSWORD,))
    assert rc == 0 and recap["failed"] == 0, out
    assert "pgbench_accounts" in out and "TargetTablePrepMode" in out and "(instance pgshift-%s, not created yet)" % run in out
    dms = boto3.client("dms", endpoint_url=moto_server, region_name="us-east-1", aws_access_key_id="testing",
                       aws_secret_access_key="testing")
    assert dms.describe_replication_tasks(Filters=[dict(Name="replication-task-id", Values=["pgshift-%s-s1" % run])])["ReplicationTasks"] == []

    rc, out, recap = run_playbook(playbook, inventory, secrets=(PASSWORD,))
    assert rc == 0 and recap["changed"] == 5, out
    described = dms.describe_replication_tasks(
        Filters=[dict(Name="replication-task-id", Values=["pgshift-%s-s1" % run])])["ReplicationTasks"][0]
    assert described["Status"] == "running"
    instance = dms.describe_replication_instances(
        Filters=[dict(Name="replication-instance-id", Values=["pgshift-%s" % run])])["ReplicationInstances"][0]
    assert instance["ReplicationSubnetGroup"]["ReplicationSubnetGroupIdentifier"] == "pgshift-%s" % run

    rc, out, recap = run_playbook(playbook, inventory, secrets=(PASSWORD,))
    assert rc == 0 and recap["changed"] == 0, out

    rc, out, recap = run_playbook(os.path.join(tmp_path, "absent.yml"), inventory)
    assert rc == 0 and recap["changed"] == 3, out
    assert dms.describe_endpoints(Filters=[dict(Name="endpoint-id", Values=["pgshift-%s-source" % run])])["Endpoints"] == []
    rc, out, recap = run_playbook(os.path.join(tmp_path, "absent.yml"), inventory)
    assert rc == 0 and recap["changed"] == 0, out
