"""The AWS playbooks against a moto server, with inventories shaped like inventories/aws-example.

- provision_target.yml: Aurora cluster, writer, reader, cluster/instance parameter groups, subnet group,
  security group, KMS key, tags, in moto; --check creates nothing; a second run changes nothing; a target
  without aurora_cluster_id (the lab) is left alone.
- replicate.yml with migration_engine dms: the plan comes from a real PostgreSQL 15 source; the DMS API is
  moto's. moto moves no data (a started task is "running" at once with 100 % full-load statistics and no
  table statistics), so what is checked is the resources made, their settings, the table mapping of each
  task, the CDC latency read from CloudWatch (datapoints put into moto's CloudWatch) and the second run.
- cleanup (tasks/dms.yml): every DMS resource gone, and the slot DMS would have left on the source
  (a test_decoding slot named the way DMS names them) dropped, a pgshift_ slot and another plugin's kept.
- Secrets Manager: the inventory's admin password comes from the amazon.aws.secretsmanager_secret lookup
  pointed at moto with endpoint_url; Route 53: amazon.aws.route53 against moto, a record switched.
No password may appear in any output.
"""

from __future__ import annotations

import datetime
import itertools
import json
import os
import uuid

import boto3
import pytest
import yaml

from modrunner import run_playbook
from pgcluster import ADMIN_PASSWORD

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
_COUNTER = itertools.count(1)
MASTER_PASSWORD = "aurora-Master-%s" % uuid.uuid4().hex[:10]
MIGRATOR_PASSWORD = "dms-Migrator-%s" % uuid.uuid4().hex[:10]
SECRETS = (MASTER_PASSWORD, MIGRATOR_PASSWORD, ADMIN_PASSWORD)


def clients(moto_server):
    kw = dict(endpoint_url=moto_server, region_name="us-east-1", aws_access_key_id="testing",
              aws_secret_access_key="testing")
    names = ("ec2", "rds", "kms", "dms", "secretsmanager", "cloudwatch", "route53")
    return {name: boto3.client(name, **kw) for name in names}


@pytest.fixture
def aws(moto_server):
    """A VPC with two subnets, a security group, a DB subnet group, a KMS key and the master password secret."""
    c = clients(moto_server)
    n = next(_COUNTER)
    vpc = c["ec2"].create_vpc(CidrBlock="10.%d.0.0/16" % (40 + n))["Vpc"]["VpcId"]
    subnets = [c["ec2"].create_subnet(VpcId=vpc, CidrBlock="10.%d.%d.0/24" % (40 + n, i),
                                      AvailabilityZone="us-east-1%s" % az)["Subnet"]["SubnetId"]
               for i, az in ((1, "a"), (2, "b"))]
    sg = c["ec2"].create_security_group(GroupName="orders-db-%d" % n, Description="pgshift it",
                                        VpcId=vpc)["GroupId"]
    subnet_group = "orders-db-%d" % n
    c["rds"].create_db_subnet_group(DBSubnetGroupName=subnet_group, DBSubnetGroupDescription="pgshift it",
                                    SubnetIds=subnets)
    key = c["kms"].create_key(Description="pgshift it")["KeyMetadata"]["Arn"]
    secret = "orders-%d/aurora-master" % n
    c["secretsmanager"].create_secret(Name=secret, SecretString=MASTER_PASSWORD)
    return dict(c=c, n=n, subnets=subnets, sg=sg, subnet_group=subnet_group, key=key, secret=secret,
                url=moto_server)


def write_inventory(path, aws, source, target, migration, **extra_target):
    """An inventory like inventories/aws-example: the admin password from Secrets Manager (lookup)."""
    lookup = ("{{ lookup('amazon.aws.secretsmanager_secret', '%s', region=aws_region, endpoint_url=aws_endpoint_url, "
              "access_key=aws_access_key, secret_key=aws_secret_key) }}" % aws["secret"])
    (path / "group_vars" / "all").mkdir(parents=True)
    (path / "host_vars").mkdir()
    (path / "hosts.yml").write_text(yaml.safe_dump({"all": {
        "vars": {"ansible_connection": "local", "ansible_python_interpreter": "{{ ansible_playbook_python }}"},
        "children": {"source": {"hosts": {"orders-rds": None}}, "target": {"hosts": {"orders-aurora": None}}}}}))
    (path / "group_vars" / "all" / "migration.yml").write_text(yaml.safe_dump(dict(
        migration_name=migration, migration_engine="dms", migration_streams=2,
        traffic_switch="route53", aws_region="us-east-1", aws_endpoint_url=aws["url"],
        aws_access_key="testing", aws_secret_key="testing", aws_tags={"team": "dba"},
        report_dir=str(path / "reports"))))
    (path / "group_vars" / "all" / "dms.yml").write_text(yaml.safe_dump(dict(
        dms_replication_instance_class="dms.t3.medium", dms_allocated_storage=50,
        dms_subnet_ids=aws["subnets"], dms_vpc_security_group_ids=[aws["sg"]],
        dms_source_settings={"heartbeat_enable": True, "heartbeat_frequency": 5, "plugin_name": "test_decoding"},
        dms_lob_max_size_kb=64)))
    cluster_id = "%s-aurora-%d" % (migration.replace("_", "-"), aws["n"])
    (path / "host_vars" / "orders-rds.yml").write_text(yaml.safe_dump(dict(
        db_host="127.0.0.1", db_port=source[0].port, db_name=source[1], db_user=source[2],
        db_password=MIGRATOR_PASSWORD, db_admin_user="postgres", db_admin_password=ADMIN_PASSWORD,
        db_sslmode="disable")))
    tgt = dict(db_host="127.0.0.1", db_port=target[0].port, db_name=target[1], db_user=source[2],
               db_password=MIGRATOR_PASSWORD, db_admin_user="postgres", db_admin_password=lookup,
               db_sslmode="disable", aurora_cluster_id=cluster_id, aurora_engine_version="16.6",
               aurora_instance_class="db.r6g.large", aurora_reader_count=1, aurora_subnet_group=aws["subnet_group"],
               aurora_vpc_security_group_ids=[aws["sg"]], aurora_kms_key_id=aws["key"],
               aurora_deletion_protection=False)
    tgt.update(extra_target)
    (path / "host_vars" / "orders-aurora.yml").write_text(yaml.safe_dump(tgt))
    return str(path / "hosts.yml"), cluster_id


def flat(out):
    """The output with the callback's line folding undone."""
    return " ".join(out.split())


def play(name, inventory, *args):
    rc, out, recap = run_playbook(os.path.join(REPO, "playbooks", name), inventory, *args, secrets=SECRETS)
    return rc, out, recap


# --------------------------------------------------------------------------------------------
# provision_target.yml
# --------------------------------------------------------------------------------------------

def test_provision_target_check_create_idempotent(tmp_path, aws, source_cluster, target_cluster, new_db, new_role):
    rds = aws["c"]["rds"]
    inv, cluster_id = write_inventory(tmp_path, aws, (source_cluster, new_db(source_cluster), new_role()),
                                      (target_cluster, new_db(target_cluster)), "orders")

    rc, out, recap = play("provision_target.yml", inv, "--check", "--diff")
    assert rc == 0, out
    assert recap["changed"] > 0
    assert [c for c in rds.describe_db_clusters()["DBClusters"] if c["DBClusterIdentifier"] == cluster_id] == []

    rc, out, recap = play("provision_target.yml", inv)
    assert rc == 0, out
    assert recap["changed"] >= 6  # 2 parameter groups, their values, cluster, writer, reader
    cluster = rds.describe_db_clusters(DBClusterIdentifier=cluster_id)["DBClusters"][0]
    assert cluster["Engine"] == "aurora-postgresql" and cluster["EngineVersion"] == "16.6"
    assert cluster["DBClusterParameterGroup"] == cluster_id + "-cluster"
    assert cluster["DBSubnetGroup"] == aws["subnet_group"]
    assert [g["VpcSecurityGroupId"] for g in cluster["VpcSecurityGroups"]] == [aws["sg"]]
    assert cluster["StorageEncrypted"] is True and cluster["KmsKeyId"] == aws["key"]
    assert cluster["MasterUsername"] == "postgres"
    members = sorted((m["DBInstanceIdentifier"], m["IsClusterWriter"]) for m in cluster["DBClusterMembers"])
    assert members == [(cluster_id + "-reader-1", False), (cluster_id + "-writer", True)]
    tags = {t["Key"]: t["Value"] for t in rds.list_tags_for_resource(ResourceName=cluster["DBClusterArn"])["TagList"]}
    assert tags == {"team": "dba", "pgshift:migration": "orders", "pgshift:role": "target"}
    writer = rds.describe_db_instances(DBInstanceIdentifier=cluster_id + "-writer")["DBInstances"][0]
    assert writer["DBInstanceStatus"] == "available" and writer["DBInstanceClass"] == "db.r6g.large"
    assert writer["DBParameterGroups"][0]["DBParameterGroupName"] == cluster_id + "-instance"
    params = {p["ParameterName"]: (p["ParameterValue"], p["ApplyMethod"]) for p in rds.describe_db_cluster_parameters(
        DBClusterParameterGroupName=cluster_id + "-cluster")["Parameters"]}
    assert params == {"rds.logical_replication": ("1", "pending-reboot"),
                      "max_replication_slots": ("20", "pending-reboot"), "max_wal_senders": ("20", "pending-reboot"),
                      "max_logical_replication_workers": ("16", "pending-reboot"),
                      "max_worker_processes": ("32", "pending-reboot")}
    report = json.loads((tmp_path / "reports" / "provision.json").read_text())
    assert report["endpoint"] == cluster["Endpoint"] and report["status"] == "available"
    assert "not the cluster endpoint %s" % cluster["Endpoint"] in flat(out)

    rc, out, recap = play("provision_target.yml", inv)
    assert rc == 0, out
    assert recap["changed"] == 0, out


def test_provision_target_does_nothing_on_the_lab(tmp_path, aws, source_cluster, target_cluster, new_db, new_role):
    inv, cluster_id = write_inventory(tmp_path, aws, (source_cluster, new_db(source_cluster), new_role()),
                                      (target_cluster, new_db(target_cluster)), "labonly", aurora_cluster_id="")
    rc, out, recap = play("provision_target.yml", inv)
    assert rc == 0, out
    assert recap["changed"] == 0
    assert "has no aurora_cluster_id (the lab or a self-managed PostgreSQL): nothing to provision" in flat(out)
    assert [c for c in aws["c"]["rds"].describe_db_clusters()["DBClusters"] if c["DBClusterIdentifier"] == cluster_id] == []


# --------------------------------------------------------------------------------------------
# replicate.yml (migration_engine dms) and the DMS cleanup
# --------------------------------------------------------------------------------------------

SOURCE_SCHEMA = [
    "CREATE TABLE public.orders (id bigint PRIMARY KEY, placed date NOT NULL, note text)",
    "CREATE TABLE public.items (id bigint PRIMARY KEY, order_id bigint NOT NULL, sku text)",
    "CREATE TABLE public.parcels (id bigint PRIMARY KEY, weight numeric)",
    "INSERT INTO public.orders SELECT g, date '2025-01-01' + g % 90, repeat('x', g % 50) FROM generate_series(1, 3000) g",
    "INSERT INTO public.items SELECT g, 1 + g % 3000, 'sku' || g FROM generate_series(1, 6000) g",
    "INSERT INTO public.parcels SELECT g, g / 10.0 FROM generate_series(1, 500) g",
    # Held back by copy_schema pre, built by replicate.yml once DMS's full load is complete.
    "CREATE INDEX items_order_id_idx ON public.items (order_id)",
    "ALTER TABLE public.items ADD CONSTRAINT items_order_id_fkey FOREIGN KEY (order_id) REFERENCES public.orders (id)",
    "ANALYZE",
]


def put_latency(cloudwatch, instance_id, task_ids, seconds):
    now = datetime.datetime.now(datetime.timezone.utc)
    for task_id in task_ids:
        dims = [dict(Name="ReplicationInstanceIdentifier", Value=instance_id),
                dict(Name="ReplicationTaskIdentifier", Value=task_id)]
        cloudwatch.put_metric_data(Namespace="AWS/DMS", MetricData=[
            dict(MetricName=m, Dimensions=dims, Timestamp=now, Value=seconds, Unit="Seconds")
            for m in ("CDCLatencySource", "CDCLatencyTarget")])


def dms_names(dms, prefix):
    def ids(items, key):
        return sorted(i[key] for i in items if i[key].startswith(prefix))
    return dict(
        tasks=ids(dms.describe_replication_tasks()["ReplicationTasks"], "ReplicationTaskIdentifier"),
        endpoints=ids(dms.describe_endpoints()["Endpoints"], "EndpointIdentifier"),
        instances=ids(dms.describe_replication_instances()["ReplicationInstances"], "ReplicationInstanceIdentifier"),
        subnet_groups=ids(dms.describe_replication_subnet_groups()["ReplicationSubnetGroups"],
                          "ReplicationSubnetGroupIdentifier"))


def test_dms_replicate_then_cleanup(tmp_path, aws, source_cluster, target_cluster, new_db, new_role):
    dms, cloudwatch = aws["c"]["dms"], aws["c"]["cloudwatch"]
    migration = "orders_%d" % aws["n"]
    prefix = "pgshift-orders-%d" % aws["n"]
    src_db, user = new_db(source_cluster), new_role()
    source_cluster.execute(src_db, SOURCE_SCHEMA + ["CREATE ROLE %s LOGIN REPLICATION PASSWORD '%s'" % (
        user, MIGRATOR_PASSWORD)])
    tgt_db = new_db(target_cluster)
    # The target is a real test cluster here (the cutover log is created on it), so its real admin password;
    # the Secrets Manager lookup is tested with Route 53 below and in the provisioning test.
    inv, cluster_id = write_inventory(tmp_path, aws, (source_cluster, src_db, user), (target_cluster, tgt_db),
                                      migration, db_admin_password=ADMIN_PASSWORD)
    task_ids = [prefix + "-s1", prefix + "-s2"]
    # CloudWatch has CDC latency for the tasks (DMS publishes it; moto does not run tasks).
    put_latency(cloudwatch, prefix, task_ids, 2.0)

    # Phase 3 first, as a DBA runs it: the schema without its secondary index and foreign key.
    rc, out, recap = play("copy_schema.yml", inv)
    assert rc == 0, out
    held_back = "SELECT count(*) FROM pg_indexes WHERE indexname = 'items_order_id_idx' UNION ALL " \
                "SELECT count(*) FROM pg_constraint WHERE conname = 'items_order_id_fkey' AND convalidated"
    assert target_cluster.query(tgt_db, held_back) == [(0,), (0,)]

    # --check --diff: the tasks with their table mappings are shown, nothing is created.
    rc, out, recap = play("replicate.yml", inv, "--check", "--diff")
    assert rc == 0, out
    assert '"table-name": "orders"' in out or "table-name: orders" in out, out
    assert dms_names(dms, prefix) == dict(tasks=[], endpoints=[], instances=[], subnet_groups=[])

    fast = ("-e", "replicate_poll_interval=1", "-e", "replicate_dms_progress_interval=2", "-e",
            "replicate_load_timeout=20", "-e", "replicate_catchup_timeout=20")
    rc, out, recap = play("replicate.yml", inv, *fast)
    assert rc == 0, out
    assert dms_names(dms, prefix) == dict(tasks=task_ids, endpoints=[prefix + "-source", prefix + "-target"],
                                          instances=[prefix], subnet_groups=[prefix])
    tasks = {t["ReplicationTaskIdentifier"]: t for t in dms.describe_replication_tasks()["ReplicationTasks"]
             if t["ReplicationTaskIdentifier"] in task_ids}
    assert {t["Status"] for t in tasks.values()} == {"running"}
    assert {t["MigrationType"] for t in tasks.values()} == {"full-load-and-cdc"}
    # Every table in exactly one task's mapping, as the plan placed them.
    plan = json.loads((tmp_path / "reports" / "plan.json").read_text())
    mapped = {}
    for task_id, task in tasks.items():
        for rule in json.loads(task["TableMappings"])["rules"]:
            if rule["rule-type"] == "selection" and rule["rule-action"] in ("include", "explicit"):
                mapped[rule["object-locator"]["table-name"]] = task_id
    # ... and the cutover log (its marker row is the DMS barrier) in the first task, created on both sides.
    assert mapped.pop("cutover_log") == plan["streams"][0]["dms_task_identifier"]
    assert sorted(mapped) == ["items", "orders", "parcels"]
    assert mapped == {t["name"]: s["dms_task_identifier"] for s in plan["streams"] for t in s["tables"]}
    for cluster, db in ((source_cluster, src_db), (target_cluster, tgt_db)):
        assert cluster.query(db, "SELECT to_regclass('pgshift.cutover_log') IS NOT NULL") == [(True,)]
    settings = json.loads(tasks[task_ids[0]]["ReplicationTaskSettings"])
    assert settings["TargetMetadata"]["LimitedSizeLobMode"] is True and settings["TargetMetadata"]["LobMaxSize"] >= 64
    endpoints = {e["EndpointIdentifier"]: e for e in dms.describe_endpoints()["Endpoints"]}
    source = endpoints[prefix + "-source"]
    assert (source["EngineName"], source["ServerName"], source["Port"], source["DatabaseName"], source["Username"]) == (
        "postgres", "127.0.0.1", source_cluster.port, src_db, user)
    assert source["PostgreSQLSettings"]["HeartbeatEnable"] is True
    assert "session_replication_role" in endpoints[prefix + "-target"]["PostgreSQLSettings"]["AfterConnectScript"]
    # The progress printed while waiting (moto's tasks report their full load done at once).
    assert "round 1: full load complete" in flat(out), out
    for task_id in task_ids:
        assert "%s (running): " % task_id in flat(out), out
    assert "CAUGHT UP: 2 DMS task(s), full load complete, CDC latency 2.0 s (threshold 5 s)" in flat(out), out
    report = json.loads((tmp_path / "reports" / "dms-replication.json").read_text())
    assert report["all_full_load_complete"] is True and report["max_cdc_latency_seconds"] == 2.0
    # The full load complete, what stage pre held back is built (and reported), the foreign key validated.
    assert target_cluster.query(tgt_db, held_back) == [(1,), (1,)]
    post = json.loads((tmp_path / "reports" / "schema-post.json").read_text())
    assert {(c["kind"], c["object"]) for c in post["created"]} >= {
        ("index", "public.items_order_id_idx"), ("foreign key", "items_order_id_fkey on public.items")}

    rc, out, recap = play("replicate.yml", inv, *fast)
    assert rc == 0, out
    assert recap["changed"] == 0, out

    # The slots: one named the way DMS names its slots, one of the native engine, one of another plugin.
    dms_slot = "abcdefgh12345678_%08d_%s" % (16384, str(uuid.uuid4()).replace("-", "_"))
    native_slot = "pgshift_%s_s9" % migration
    other_slot = "other_tool_%d" % aws["n"]
    source_cluster.execute(src_db, [
        "SELECT pg_create_logical_replication_slot('%s', 'test_decoding')" % dms_slot,
        "SELECT pg_create_logical_replication_slot('%s', 'test_decoding')" % native_slot,
        "SELECT pg_create_logical_replication_slot('%s', 'pgoutput')" % other_slot])
    before = [r[0] for r in source_cluster.query(src_db, "SELECT slot_name FROM pg_replication_slots "
                                                         "WHERE database = current_database() ORDER BY 1")]
    assert before == sorted([dms_slot, native_slot, other_slot])
    try:
        # cleanup.yml itself: with migration_engine dms it removes the DMS resources first, then the cutover log
        cleanup = os.path.join(REPO, "playbooks", "cleanup.yml")
        confirm = ("-e", "cleanup_confirm=true")
        rc, out, recap = run_playbook(cleanup, inv, "--check", *confirm, secrets=SECRETS)
        assert rc == 0, out
        assert len(dms_names(dms, prefix)["tasks"]) == 2
        rc, out, recap = run_playbook(cleanup, inv, *confirm, secrets=SECRETS)
        assert rc == 0, out
        assert dms_names(dms, prefix) == dict(tasks=[], endpoints=[], instances=[], subnet_groups=[])
        for cluster, db in ((source_cluster, src_db), (target_cluster, tgt_db)):
            assert cluster.query(db, "SELECT to_regclass('pgshift.cutover_log') IS NULL") == [(True,)]
        left = [r[0] for r in source_cluster.query(src_db, "SELECT slot_name FROM pg_replication_slots "
                                                           "WHERE database = current_database() ORDER BY 1")]
        # DMS's slot by the DMS part; the migration's own native slot by the native part; another tool's stays
        assert left == [other_slot], out
        report = json.loads((tmp_path / "reports" / "cleanup-dms.json").read_text())
        assert report["slots_dropped"] == [dms_slot] and sorted(report["tasks"]) == task_ids
        rc, out, recap = run_playbook(cleanup, inv, *confirm, secrets=SECRETS)
        assert rc == 0, out
        assert recap["changed"] == 0, out
    finally:
        source_cluster.execute(src_db, ["SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots "
                                        "WHERE database = current_database()"])


# --------------------------------------------------------------------------------------------
# Route 53 (the traffic switch's API) and Secrets Manager, through amazon.aws against moto
# --------------------------------------------------------------------------------------------

def test_route53_record_switch_and_secret_lookup(tmp_path, aws):
    route53 = aws["c"]["route53"]
    zone = "db%d.example.internal." % aws["n"]
    route53.create_hosted_zone(Name=zone, CallerReference=str(uuid.uuid4()))
    record = "orders." + zone
    playbook = tmp_path / "route53.yml"

    def switch(value):
        playbook.write_text(yaml.safe_dump([{
            "name": "Switch", "hosts": "localhost", "connection": "local", "gather_facts": False,
            # No region in these defaults: for amazon.aws.route53, region is the record's (latency routing);
            # the client's region (needed to sign, even with endpoint_url) comes from the environment.
            "environment": {"AWS_DEFAULT_REGION": "us-east-1"},
            "module_defaults": {"group/amazon.aws.aws": {"endpoint_url": aws["url"], "access_key": "testing",
                                                         "secret_key": "testing"}},
            "tasks": [
                {"name": "Point the record", "amazon.aws.route53": {
                    "zone": zone, "record": record, "type": "CNAME", "ttl": 30, "value": [value],
                    "overwrite": True, "state": "present"}},
                {"name": "Read the master password", "ansible.builtin.assert": {"that": [
                    "lookup('amazon.aws.secretsmanager_secret', '%s', endpoint_url='%s', region='us-east-1', "
                    "access_key='testing', secret_key='testing') | length == %d" % (
                        aws["secret"], aws["url"], len(MASTER_PASSWORD))], "quiet": True}}]}]))
        inventory = tmp_path / "localhost.yml"
        inventory.write_text("all:\n  hosts:\n    localhost:\n      ansible_connection: local\n"
                             "      ansible_python_interpreter: '{{ ansible_playbook_python }}'\n")
        return run_playbook(str(playbook), str(inventory), secrets=SECRETS)

    def current():
        zone_id = [z["Id"] for z in route53.list_hosted_zones()["HostedZones"] if z["Name"] == zone][0]
        sets = route53.list_resource_record_sets(HostedZoneId=zone_id)["ResourceRecordSets"]
        return [r["ResourceRecords"][0]["Value"] for r in sets if r["Name"] == record and r["Type"] == "CNAME"]

    blue, green = "orders.abc.us-east-1.rds.amazonaws.com", "orders-aurora.cluster-abc.us-east-1.rds.amazonaws.com"
    for value, changed in ((blue, 1), (blue, 0), (green, 1), (green, 0)):
        rc, out, recap = switch(value)
        assert rc == 0, out
        assert recap["changed"] == changed, out
        assert current() == [value]
