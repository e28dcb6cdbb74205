"""The AWS playbooks against a moto server, with inventories shaped like inventories/aws-example.

- provision_target.yml: Aurora cluster, writer, reader, cluster/instance parameter groups, subnet group,
  security group, KMS key, tags, in moto; --check creates nothing; a second run changes nothing; a target
  without aurora_cluster_id (the lab) is left alone.
- replicate.yml with migration_engine dms: the plan comes from a real PostgreSQL 15 source; the DMS API is
  moto's. moto moves no data (a started task is "running" at once with 100 % full-load statistics and no
  table statistics), so what is checked is the resources made, their settings, the table mapping of each
  task, the CDC latency read from CloudWatch (datapoints put into moto's CloudWatch) and the second run; the
  endpoints as the migration user with TLS verify-full and the CA bundle (db_sslrootcert) imported into DMS
  (moto has no DMS certificates: a stand-in in front of moto answers those three calls); TLS never dropped
  silently (disable, verify-full without a certificate: a clear failure before anything is created).
- cleanup (tasks/dms.yml): every DMS resource gone (the imported certificate after the endpoints), and the slot DMS would have left on the source
  (a test_decoding slot named the way DMS names them) dropped, a pgshift_ slot and another plugin's kept.
- Secrets Manager: the inventory's admin password comes from the amazon.aws.secretsmanager_secret lookup
  pointed at moto with endpoint_url; Route 53: amazon.aws.route53 against moto, a record switched.
No password may appear in any output.
"""

from __future__ import annotations

import datetime
import http.client
import http.server
import itertools
import json
import os
import threading
import time
import urllib.parse
import uuid

import boto3
import pytest
import yaml

from modrunner import run_playbook
from pgcluster import ADMIN_PASSWORD, MASTER_USER, ca_cert, free_port
from pgcluster import MASTER_PASSWORD as DB_MASTER_PASSWORD

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
_COUNTER = itertools.count(1)
MASTER_PASSWORD = "aurora-Master-%s" % uuid.uuid4().hex[:10]  # the Aurora master password kept in Secrets Manager
MIGRATOR_PASSWORD = "dms-Migrator-%s" % uuid.uuid4().hex[:10]
SECRETS = (MASTER_PASSWORD, MIGRATOR_PASSWORD, ADMIN_PASSWORD, DB_MASTER_PASSWORD)
DMS_TARGET_PREFIX = "AmazonDMSv20160101."


class DmsCertificates(http.server.ThreadingHTTPServer):
    """moto 5.2.5 has no DMS certificates: this stand-in answers ImportCertificate, DescribeCertificates and
    DeleteCertificate the way the DMS API does (JSON 1.1, ResourceNotFoundFault for an empty filter result,
    ResourceAlreadyExistsFault, InvalidResourceStateFault for a certificate an endpoint uses, checked in moto)
    and passes every other request to moto unchanged."""

    daemon_threads = True

    def __init__(self, moto_url):
        super().__init__(("127.0.0.1", free_port()), _DmsCertificatesHandler)
        self.moto = urllib.parse.urlsplit(moto_url)
        self.moto_url = moto_url
        self.certificates = {}  # identifier -> Certificate
        self.calls = []
        self.url = "http://127.0.0.1:%d" % self.server_address[1]

    def answer(self, operation, body):
        self.calls.append(operation)
        if operation == "ImportCertificate":
            ident = body["CertificateIdentifier"]
            if ident in self.certificates:
                return 400, {"__type": "ResourceAlreadyExistsFault", "message": "Certificate %s already exists" % ident}
            self.certificates[ident] = dict(
                CertificateIdentifier=ident, CertificatePem=body["CertificatePem"], CertificateOwner="123456789012",
                CertificateArn="arn:aws:dms:us-east-1:123456789012:cert:%s" % uuid.uuid4().hex.upper()[:26],
                CertificateCreationDate=time.time(), SigningAlgorithm="SHA256withRSA", KeyLength=2048)
            return 200, {"Certificate": self.certificates[ident]}
        if operation == "DescribeCertificates":
            found = list(self.certificates.values())
            for f in body.get("Filters") or []:
                key = {"certificate-id": "CertificateIdentifier", "certificate-arn": "CertificateArn"}[f["Name"]]
                found = [c for c in found if c[key] in f["Values"]]
            if not found:
                return 400, {"__type": "ResourceNotFoundFault", "message": "No certificates found"}
            return 200, {"Certificates": found}
        if operation == "DeleteCertificate":
            cert = [c for c in self.certificates.values() if c["CertificateArn"] == body["CertificateArn"]]
            if not cert:
                return 400, {"__type": "ResourceNotFoundFault", "message": "Certificate not found"}
            dms = boto3.client("dms", endpoint_url=self.moto_url, region_name="us-east-1", aws_access_key_id="testing",
                               aws_secret_access_key="testing")
            if any(e.get("CertificateArn") == body["CertificateArn"] for e in dms.describe_endpoints()["Endpoints"]):
                return 400, {"__type": "InvalidResourceStateFault", "message": "Certificate is in use by an endpoint"}
            return 200, {"Certificate": self.certificates.pop(cert[0]["CertificateIdentifier"])}
        return None


class _DmsCertificatesHandler(http.server.BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def _relay(self):
        data = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        target = self.headers.get("X-Amz-Target") or ""
        answer = None
        if target.startswith(DMS_TARGET_PREFIX):
            answer = self.server.answer(target[len(DMS_TARGET_PREFIX):], json.loads(data or b"{}"))
        if answer is not None:
            status, payload = answer
            out, headers = json.dumps(payload).encode(), {"Content-Type": "application/x-amz-json-1.1"}
        else:
            conn = http.client.HTTPConnection(self.server.moto.hostname, self.server.moto.port, timeout=120)
            headers = dict((k, v) for k, v in self.headers.items() if k.lower() not in ("host", "connection"))
            conn.request(self.command, self.path, body=data, headers=headers)
            resp = conn.getresponse()
            status, out = resp.status, resp.read()
            headers = dict((k, v) for k, v in resp.getheaders()
                           if k.lower() not in ("content-length", "transfer-encoding", "connection"))
            conn.close()
        self.send_response(status)
        for k, v in headers.items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)

    do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = _relay


@pytest.fixture
def dms_certificates(moto_server):
    server = DmsCertificates(moto_server)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


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


def write_inventory(path, aws, source, target, migration, source_vars=None, **extra_target):
    """An inventory like inventories/aws-example: the admin password from Secrets Manager (lookup).

    Shaped like the test clusters (RDS/Aurora): the master user, not a superuser, over TLS verify-full with the
    session's CA as db_sslrootcert; source_vars and extra_target override any of it."""
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
    (path / "host_vars" / "orders-rds.yml").write_text(yaml.safe_dump(dict(dict(
        db_host="127.0.0.1", db_port=source[0].port, db_name=source[1], db_user=source[2],
        db_password=MIGRATOR_PASSWORD, db_admin_user=MASTER_USER, db_admin_password=DB_MASTER_PASSWORD,
        db_sslmode="verify-full", db_sslrootcert=ca_cert()), **(source_vars or {}))))
    tgt = dict(db_host="127.0.0.1", db_port=target[0].port, db_name=target[1], db_user=source[2],
               db_password=MIGRATOR_PASSWORD, db_admin_user=MASTER_USER, db_admin_password=lookup,
               db_sslmode="verify-full", db_sslrootcert=ca_cert(), aurora_cluster_id=cluster_id, aurora_engine_version="16.6",
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
    assert cluster["MasterUsername"] == MASTER_USER
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


def test_dms_replicate_then_cleanup(tmp_path, aws, dms_certificates, source_cluster, target_cluster, new_db, new_role):
    dms, cloudwatch = aws["c"]["dms"], aws["c"]["cloudwatch"]
    migration = "orders_%d" % aws["n"]
    prefix = "pgshift-orders-%d" % aws["n"]
    src_db, user = new_db(source_cluster), new_role()
    source_cluster.execute(src_db, SOURCE_SCHEMA)
    # The migration user, created by the master user as on RDS (DMS itself never connects: moto runs nothing).
    with source_cluster.master_connect() as conn:
        conn.execute("CREATE ROLE %s LOGIN PASSWORD '%s'" % (user, MIGRATOR_PASSWORD))
    tgt_db = new_db(target_cluster)
    # The target is a real test cluster here (the cutover log is created on it), so its real master password;
    # the Secrets Manager lookup is tested with Route 53 below and in the provisioning test. Both hosts are
    # reached with verify-full and the CA as db_sslrootcert: replicate imports that CA into DMS (moto has no DMS
    # certificates: the DmsCertificates stand-in answers those calls and passes the rest to moto).
    inv, cluster_id = write_inventory(tmp_path, dict(aws, url=dms_certificates.url), (source_cluster, src_db, user),
                                      (target_cluster, tgt_db), migration, db_admin_password=DB_MASTER_PASSWORD)
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
        assert cluster.query(db, "SELECT to_regclass('pgshift.cutover_log') IS NOT NULL", operator=True) == [(True,)]
    settings = json.loads(tasks[task_ids[0]]["ReplicationTaskSettings"])
    assert settings["TargetMetadata"]["LimitedSizeLobMode"] is True and settings["TargetMetadata"]["LobMaxSize"] >= 64
    endpoints = {e["EndpointIdentifier"]: e for e in dms.describe_endpoints()["Endpoints"]}
    source, target = endpoints[prefix + "-source"], endpoints[prefix + "-target"]
    # Both streams' ends connect as the migration user (db_user), never as the master user (db_admin_user).
    assert (source["EngineName"], source["ServerName"], source["Port"], source["DatabaseName"], source["Username"]) == (
        "postgres", "127.0.0.1", source_cluster.port, src_db, user)
    assert (target["EngineName"], target["ServerName"], target["Port"], target["DatabaseName"], target["Username"]) == (
        "aurora-postgresql", "127.0.0.1", target_cluster.port, tgt_db, user)
    # TLS verify-full on both, with the session's CA imported once (the same file is the same certificate).
    assert list(dms_certificates.certificates) == [prefix + "-ca-" + list(dms_certificates.certificates)[0][-16:]]
    cert = list(dms_certificates.certificates.values())[0]
    with open(ca_cert()) as f:
        assert cert["CertificatePem"] == f.read()
    assert dms_certificates.calls.count("ImportCertificate") == 1
    assert (source["SslMode"], source["CertificateArn"]) == ("verify-full", cert["CertificateArn"])
    assert (target["SslMode"], target["CertificateArn"]) == ("verify-full", cert["CertificateArn"])
    assert source["PostgreSQLSettings"]["HeartbeatEnable"] is True
    assert "session_replication_role" in target["PostgreSQLSettings"]["AfterConnectScript"]
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
    assert dms_certificates.calls.count("ImportCertificate") == 1

    # The slots: one named the way DMS names its slots, one of the native engine, one of another plugin.
    dms_slot = "abcdefgh12345678_%08d_%s" % (16384, str(uuid.uuid4()).replace("-", "_"))
    native_slot = "pgshift_%s_s9" % migration
    other_slot = "other_tool_%d" % aws["n"]
    source_cluster.execute(src_db, [
        "SELECT pg_create_logical_replication_slot('%s', 'test_decoding')" % dms_slot,
        "SELECT pg_create_logical_replication_slot('%s', 'test_decoding')" % native_slot,
        "SELECT pg_create_logical_replication_slot('%s', 'pgoutput')" % other_slot], operator=True)
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
        # The imported CA bundle too, once no endpoint used it (the stand-in refuses it before).
        assert dms_certificates.certificates == {}
        for cluster, db in ((source_cluster, src_db), (target_cluster, tgt_db)):
            assert cluster.query(db, "SELECT to_regclass('pgshift.cutover_log') IS NULL", operator=True) == [(True,)]
        left = [r[0] for r in source_cluster.query(src_db, "SELECT slot_name FROM pg_replication_slots "
                                                           "WHERE database = current_database() ORDER BY 1")]
        # DMS's slot by the DMS part; the migration's own native slot by the native part; another tool's stays
        assert left == [other_slot], out
        report = json.loads((tmp_path / "reports" / "cleanup-dms.json").read_text())
        assert report["slots_dropped"] == [dms_slot] and sorted(report["tasks"]) == task_ids
        assert report["certificates"] == [cert["CertificateIdentifier"]]
        rc, out, recap = run_playbook(cleanup, inv, *confirm, secrets=SECRETS)
        assert rc == 0, out
        assert recap["changed"] == 0, out
    finally:
        source_cluster.execute(src_db, ["SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots "
                                        "WHERE database = current_database()"], operator=True)


def test_dms_endpoints_never_drop_tls_silently(tmp_path, aws, legacy_source_cluster, new_db, new_role):
    """db_sslmode disable without dms_ssl_mode none, or verify-full without a certificate: replicate.yml fails with
    what to set, before any DMS resource (endpoint, subnet group, replication instance) is created. The cluster
    here is the plain-TCP one (a self-managed PostgreSQL without TLS), as source and target."""
    dms = aws["c"]["dms"]
    migration = "notls_%d" % aws["n"]
    prefix = "pgshift-notls-%d" % aws["n"]
    cluster = legacy_source_cluster
    src_db, tgt_db, user = new_db(cluster), new_db(cluster), new_role()
    cluster.execute(src_db, ["CREATE TABLE public.orders (id bigint PRIMARY KEY, note text)",
                             "CREATE TABLE public.items (id bigint PRIMARY KEY, sku text)",
                             "INSERT INTO public.orders SELECT g, 'x' FROM generate_series(1, 100) g",
                             "INSERT INTO public.items SELECT g, 'y' FROM generate_series(1, 100) g", "ANALYZE"])
    plain = dict(db_admin_user="postgres", db_admin_password=ADMIN_PASSWORD, db_sslmode="disable", db_sslrootcert="")
    inv, cluster_id = write_inventory(tmp_path, aws, (cluster, src_db, user), (cluster, tgt_db), migration,
                                      source_vars=plain, **plain)
    nothing = dict(tasks=[], endpoints=[], instances=[], subnet_groups=[])

    rc, out, recap = play("replicate.yml", inv)
    assert rc != 0, out
    assert "endpoint %s-source: the database's sslmode is disable, and a DMS endpoint never drops TLS silently" % prefix \
        in flat(out), out
    assert "dms_ssl_mode: none" in flat(out)
    assert dms_names(dms, prefix) == nothing

    # verify-full asked for (dms_ssl_mode, here as the role variable), no certificate ARN and no db_sslrootcert.
    rc, out, recap = play("replicate.yml", inv, "-e", "replicate_dms_source_ssl_mode=verify-full")
    assert rc != 0, out
    assert "endpoint %s-source: ssl_mode verify-full needs certificate_arn" % prefix in flat(out), out
    assert "dms_certificate_arn" in flat(out)
    assert dms_names(dms, prefix) == nothing

    # TLS off asked for explicitly on both: accepted, shown by --check --diff, nothing created.
    rc, out, recap = play("replicate.yml", inv, "--check", "--diff", "-e", "replicate_dms_source_ssl_mode=none",
                          "-e", "replicate_dms_target_ssl_mode=none")
    assert rc == 0, out
    assert out.count("+    SslMode: none") == 2, out  # the source and target endpoints' diffs
    assert dms_names(dms, prefix) == nothing


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
