"""The DMS modules against a moto server (loopback only, dummy credentials).

moto 5.2.5 models DMS replication instances (creating -> available), endpoints (create, describe,
delete; no modify), tasks (create, start -> running, stop, delete; no modify, tasks stay "creating"
until started, no table statistics), tags given at creation, and CloudWatch metrics. What it does not
model (modify_*, add/remove tags, describe_table_statistics, the real state sequence, failures,
throttling) is covered by the Stubber contract tests (tests/unit/test_dms_contract.py).
"""

from __future__ import annotations

import datetime
import json
import uuid

import boto3
import pytest

from modrunner import run_module

PASSWORD = "Sekr3t-dms-%s" % uuid.uuid4().hex[:8]


@pytest.fixture
def aws(moto_server):
    return dict(aws_endpoint_url=moto_server, aws_region="us-east-1", aws_access_key="testing", aws_secret_key="testing")


@pytest.fixture
def dms_client(moto_server):
    return boto3.client("dms", endpoint_url=moto_server, region_name="us-east-1",
                        aws_access_key_id="testing", aws_secret_access_key="testing")


def name(prefix):
    return "%s-%s" % (prefix, uuid.uuid4().hex[:8])


def ok(result, raw):
    assert not result.get("failed"), raw
    assert PASSWORD not in raw
    return result


MAPPINGS = {"rules": [{"rule-type": "selection", "rule-id": "1", "rule-name": "orders",
                       "object-locator": {"schema-name": "public", "table-name": "orders"}, "rule-action": "include"},
                      {"rule-type": "selection", "rule-id": "2", "rule-name": "items",
                       "object-locator": {"schema-name": "public", "table-name": "items"}, "rule-action": "include"}]}


def make_instance(aws, ident):
    args = dict(aws, identifier=ident, instance_class="dms.t3.medium", allocated_storage=60, tags={"migration": "it"}, poll_interval=0.2)
    return ok(*run_module("dms_replication_instance", args))


def make_endpoint(aws, ident, kind, **extra):
    args = dict(aws, identifier=ident, endpoint_type=kind, engine_name="postgres" if kind == "source" else "aurora-postgresql",
                server_name="db.example.internal", port=5432, database_name="orders", username="pgshift", password=PASSWORD)
    args.update(extra)
    return ok(*run_module("dms_endpoint", args))


def test_replication_instance_lifecycle(aws, dms_client):
    ident = name("ri")
    res, raw = run_module("dms_replication_instance", dict(aws, identifier=ident, instance_class="dms.t3.medium"), check_mode=True,
                          diff=True)
    ok(res, raw)
    assert res["changed"] and res["diff"]["after"]["instance_class"] == "dms.t3.medium"
    assert dms_client.describe_replication_instances(
        Filters=[dict(Name="replication-instance-id", Values=[ident])])["ReplicationInstances"] == []

    res = make_instance(aws, ident)
    assert res["changed"]
    assert res["instance"]["replication_instance_status"] == "available"
    assert res["instance"]["allocated_storage"] == 60
    assert res["instance"]["tags"] == {"migration": "it"}
    assert res["arn"].startswith("arn:aws:dms:us-east-1:")

    again = make_instance(aws, ident)
    assert not again["changed"], again.get("diff")

    # A modification moto models: storage and class, in place.
    args = dict(aws, identifier=ident, instance_class="dms.r6i.large", allocated_storage=100, tags={"migration": "it"}, poll_interval=0.2)
    res = ok(*run_module("dms_replication_instance", args))
    assert res["changed"]
    described = dms_client.describe_replication_instances(
        Filters=[dict(Name="replication-instance-id", Values=[ident])])["ReplicationInstances"][0]
    assert described["ReplicationInstanceClass"] == "dms.r6i.large" and described["AllocatedStorage"] == 100

    # What cannot change in place is refused with what to do.
    res, raw = run_module("dms_replication_instance", dict(aws, identifier=ident, publicly_accessible=True))
    assert res.get("failed") and "publicly_accessible cannot change" in res["msg"] and "state=absent" in res["msg"]

    res = ok(*run_module("dms_replication_instance", dict(aws, identifier=ident, state="absent", poll_interval=0.2)))
    assert res["changed"]
    assert dms_client.describe_replication_instances(
        Filters=[dict(Name="replication-instance-id", Values=[ident])])["ReplicationInstances"] == []
    assert not ok(*run_module("dms_replication_instance", dict(aws, identifier=ident, state="absent")))["changed"]


def test_endpoint_postgresql_settings_idempotent_and_no_password(aws, dms_client):
    ident = name("src")
    settings = dict(slot_name="pgshift_it_s1", heartbeat_enable=True, heartbeat_frequency=5, plugin_name="pglogical",
                    fail_tasks_on_lob_truncation=True)
    res, raw = run_module("dms_endpoint", dict(aws, identifier=ident, endpoint_type="source", server_name="db.example.internal",
                                               port=5432, database_name="orders", username="pgshift", password=PASSWORD,
                                               postgresql_settings=settings), check_mode=True, diff=True)
    ok(res, raw)
    assert res["changed"] and res["diff"]["after"]["PostgreSQLSettings"]["SlotName"] == "pgshift_it_s1"
    assert PASSWORD not in json.dumps(res)

    res = make_endpoint(aws, ident, "source", postgresql_settings=settings)
    assert res["changed"]
    assert res["endpoint"]["postgresql_settings"]["slot_name"] == "pgshift_it_s1"
    assert res["endpoint"]["postgresql_settings"]["heartbeat_enable"] is True
    assert "password" not in res["endpoint"]
    described = dms_client.describe_endpoints(Filters=[dict(Name="endpoint-id", Values=[ident])])["Endpoints"][0]
    assert described["PostgreSQLSettings"]["PluginName"] == "pglogical"
    assert described["PostgreSQLSettings"]["FailTasksOnLobTruncation"] is True

    again = make_endpoint(aws, ident, "source", postgresql_settings=settings)
    assert not again["changed"], again.get("diff")

    # A changed setting is detected (moto has no modify_endpoint: check mode shows it).
    res, raw = run_module("dms_endpoint", dict(aws, identifier=ident, endpoint_type="source", server_name="db.example.internal",
                                               port=5432, database_name="orders", username="pgshift", password=PASSWORD,
                                               postgresql_settings=dict(settings, slot_name="other_slot")), check_mode=True, diff=True)
    ok(res, raw)
    assert res["changed"] and res["diff"]["after"] == {"PostgreSQLSettings": dms_settings(settings, slot_name="other_slot")}

    # update_password=always reports a change without ever showing the password.
    res, raw = run_module("dms_endpoint", dict(aws, identifier=ident, endpoint_type="source", password=PASSWORD,
                                               update_password="always"), check_mode=True, diff=True)
    ok(res, raw)
    assert res["changed"] and PASSWORD not in raw
    # For real, moto answers modify_endpoint with an HTTP 500: the failure names the call, is not retried,
    # carries no HTML page and no password.
    res, raw = run_module("dms_endpoint", dict(aws, identifier=ident, endpoint_type="source", password=PASSWORD,
                                               update_password="always"))
    assert res.get("failed") and PASSWORD not in raw
    assert res["msg"].startswith("modifying endpoint %s: 500: HTTP 500" % ident) and "<" not in res["msg"]

    # The wrong type is refused.
    res, raw = run_module("dms_endpoint", dict(aws, identifier=ident, endpoint_type="target"))
    assert res.get("failed") and "is a source endpoint" in res["msg"]

    assert ok(*run_module("dms_endpoint", dict(aws, identifier=ident, state="absent")))["changed"]
    assert dms_client.describe_endpoints(Filters=[dict(Name="endpoint-id", Values=[ident])])["Endpoints"] == []
    assert not ok(*run_module("dms_endpoint", dict(aws, identifier=ident, state="absent")))["changed"]


def dms_settings(settings, **over):
    names = dict(slot_name="SlotName", heartbeat_enable="HeartbeatEnable", heartbeat_frequency="HeartbeatFrequency",
                 plugin_name="PluginName", fail_tasks_on_lob_truncation="FailTasksOnLobTruncation")
    return dict((names[k], v) for k, v in dict(settings, **over).items())


def test_target_endpoint_session_replication_role(aws, dms_client):
    ident = name("tgt")
    res = make_endpoint(aws, ident, "target", session_replication_role="replica",
                        postgresql_settings=dict(after_connect_script="SET statement_timeout = 0"))
    assert res["endpoint"]["postgresql_settings"]["after_connect_script"] == (
        "SET statement_timeout = 0; SET session_replication_role = replica")
    assert not make_endpoint(aws, ident, "target", session_replication_role="replica",
                             postgresql_settings=dict(after_connect_script="SET statement_timeout = 0"))["changed"]
    ok(*run_module("dms_endpoint", dict(aws, identifier=ident, state="absent")))


def test_endpoint_secrets_manager(aws, dms_client):
    ident = name("tgt")
    res = ok(*run_module("dms_endpoint", dict(aws, identifier=ident, endpoint_type="target", engine_name="aurora-postgresql",
                                              database_name="orders", ssl_mode="verify-full",
                                              certificate_arn="arn:aws:dms:us-east-1:123456789012:cert:RDSGLOBALBUNDLE",
                                              secrets_manager_secret_id="arn:aws:secretsmanager:us-east-1:123456789012:secret:t",
                                              secrets_manager_access_role_arn="arn:aws:iam::123456789012:role/dms")))
    assert res["endpoint"]["postgresql_settings"]["secrets_manager_secret_id"].endswith(":secret:t")
    assert res["endpoint"]["ssl_mode"] == "verify-full" and res["endpoint"]["certificate_arn"].endswith(":cert:RDSGLOBALBUNDLE")
    res, raw = run_module("dms_endpoint", dict(aws, identifier=name("bad"), endpoint_type="target", database_name="orders"))
    assert res.get("failed") and "secrets_manager_secret_id" in res["msg"]
    ok(*run_module("dms_endpoint", dict(aws, identifier=ident, state="absent")))


def described_endpoint(dms_client, ident):
    found = dms_client.describe_endpoints(Filters=[dict(Name="endpoint-id", Values=[ident])])["Endpoints"]
    return found[0] if found else None


def test_endpoint_tls_never_dropped_silently(aws, dms_client):
    cert = "arn:aws:dms:us-east-1:123456789012:cert:RDSGLOBALBUNDLE"
    # The database reached with sslmode prefer: DMS requires TLS (not its default, none); a second run is unchanged.
    prefer = name("prefer")
    res = make_endpoint(aws, prefer, "source", libpq_sslmode="prefer")
    assert res["endpoint"]["ssl_mode"] == "require" and described_endpoint(dms_client, prefer)["SslMode"] == "require"
    assert not make_endpoint(aws, prefer, "source", libpq_sslmode="prefer")["changed"]
    # verify-full as the controller verifies it, with the imported CA bundle.
    verify = name("verify")
    make_endpoint(aws, verify, "target", libpq_sslmode="verify-full", certificate_arn=cert, username="pgshift_migrator")
    described = described_endpoint(dms_client, verify)
    assert (described["SslMode"], described["CertificateArn"], described["Username"]) == (
        "verify-full", cert, "pgshift_migrator")
    # disable: refused, nothing created; the same without a certificate for verify-full.
    for bad, extra, says in ((name("off"), dict(libpq_sslmode="disable"), "set ssl_mode none"),
                             (name("nocert"), dict(libpq_sslmode="verify-full"), "needs certificate_arn")):
        res, raw = run_module("dms_endpoint", dict(aws, identifier=bad, endpoint_type="source", server_name="db.example.internal",
                                                   port=5432, database_name="orders", username="pgshift", password=PASSWORD,
                                                   **extra))
        assert res.get("failed") and says in res["msg"] and PASSWORD not in raw
        assert described_endpoint(dms_client, bad) is None
    # TLS off asked for explicitly: kept, with a warning when the controller itself uses TLS.
    off = name("off")
    res = make_endpoint(aws, off, "source", ssl_mode="none", libpq_sslmode="verify-full")
    assert described_endpoint(dms_client, off)["SslMode"] == "none"
    # ansible-core 2.19+ returns warnings as WarningSummary dicts.
    warnings = [w if isinstance(w, str) else (w.get("event") or {}).get("msg", "") for w in res.get("warnings") or []]
    assert any("without TLS (ssl_mode none)" in w for w in warnings), res.get("warnings")
    for ident in (prefer, verify, off):
        ok(*run_module("dms_endpoint", dict(aws, identifier=ident, state="absent")))


def test_task_lifecycle(aws, dms_client, moto_server):
    ri, src, tgt, task = name("ri"), name("src"), name("tgt"), name("task")
    make_instance(aws, ri)
    make_endpoint(aws, src, "source")
    make_endpoint(aws, tgt, "target")
    args = dict(aws, identifier=task, replication_instance=ri, source_endpoint=src, target_endpoint=tgt,
                migration_type="full-load-and-cdc", table_mappings=MAPPINGS, lob_max_size_kb=100.5,
                task_settings={"Logging": {"EnableLogging": False}}, tags={"stream": "1"}, poll_interval=0.2)

    res, raw = run_module("dms_task", dict(args, state="running"), check_mode=True, diff=True)
    ok(res, raw)
    assert res["changed"] and res["actions"] == ["create", "start start-replication"]
    assert res["diff"]["after"]["table_mappings"]["rules"][0]["rule-name"] == "orders"
    assert res["diff"]["after"]["task_settings"]["FullLoadSettings"]["TargetTablePrepMode"] == "DO_NOTHING"
    assert dms_client.describe_replication_tasks(Filters=[dict(Name="replication-task-id", Values=[task])])["ReplicationTasks"] == []

    res = ok(*run_module("dms_task", dict(args, state="present")))
    assert res["changed"] and res["actions"] == ["create"]
    sent = dms_client.describe_replication_tasks(Filters=[dict(Name="replication-task-id", Values=[task])])["ReplicationTasks"][0]
    settings = json.loads(sent["ReplicationTaskSettings"])
    assert settings["TargetMetadata"] == {"SupportLobs": True, "FullLobMode": False, "LimitedSizeLobMode": True, "LobMaxSize": 101}
    assert settings["Logging"] == {"EnableLogging": False}
    assert settings["FullLoadSettings"]["TargetTablePrepMode"] == "DO_NOTHING"
    assert json.loads(sent["TableMappings"]) == MAPPINGS
    assert res["task"]["tags"] == {"stream": "1"}
    assert res["task"]["table_mappings"] == MAPPINGS

    # Same arguments, mappings as a JSON string with the rules in another order: nothing to do.
    shuffled = dict(rules=list(reversed(MAPPINGS["rules"])))
    again = ok(*run_module("dms_task", dict(args, table_mappings=json.dumps(shuffled), state="present")))
    assert not again["changed"] and again["actions"] == [], again.get("diff")

    # A changed mapping is shown in check mode with the rule that changed.
    changed = json.loads(json.dumps(MAPPINGS))
    changed["rules"][1]["object-locator"]["table-name"] = "items_v2"
    res, raw = run_module("dms_task", dict(args, table_mappings=changed, state="present"), check_mode=True, diff=True)
    ok(res, raw)
    assert res["changed"] and res["actions"] == ["modify"]
    assert res["diff"]["after"]["changes"] == ["table_mappings.rules[items].object-locator.table-name"]

    res = ok(*run_module("dms_task", dict(args, state="running", wait="running")))
    assert res["changed"] and res["actions"] == ["start start-replication"]
    assert res["task"]["status"] == "running"
    assert res["progress"]["tables_loaded"] == 1  # moto's fixed ReplicationTaskStats
    assert not ok(*run_module("dms_task", dict(args, state="running")))["changed"]

    # CDC latency from CloudWatch, by instance and task identifier.
    cw = boto3.client("cloudwatch", endpoint_url=moto_server, region_name="us-east-1",
                      aws_access_key_id="testing", aws_secret_access_key="testing")
    dims = [dict(Name="ReplicationInstanceIdentifier", Value=ri), dict(Name="ReplicationTaskIdentifier", Value=task)]
    now = datetime.datetime.now(datetime.timezone.utc)
    cw.put_metric_data(Namespace="AWS/DMS", MetricData=[dict(MetricName="CDCLatencySource", Dimensions=dims, Value=2.0, Timestamp=now),
                                                        dict(MetricName="CDCLatencyTarget", Dimensions=dims, Value=7.0, Timestamp=now)])
    info = ok(*run_module("dms_task_info", dict(aws, identifier_prefix=task)))
    assert [t["task"]["replication_task_identifier"] for t in info["tasks"]] == [task]
    assert info["tasks"][0]["cdc_latency"] == {"source_seconds": 2.0, "target_seconds": 7.0}
    assert info["max_cdc_latency_seconds"] == 7.0
    assert info["all_full_load_complete"] is True  # running, 100 %, nothing loading or queued
    # amazon.aws's option names work too (aliases).
    amazon_style = dict(endpoint_url=moto_server, region="us-east-1", access_key="testing", secret_key="testing")
    assert ok(*run_module("dms_task_info", dict(amazon_style, identifier_prefix=task)))["max_cdc_latency_seconds"] == 7.0
    info = ok(*run_module("dms_task_info", dict(aws, identifiers=[task, "no-such-task"])))
    assert info["missing"] == ["no-such-task"] and info["all_full_load_complete"] is False

    res = ok(*run_module("dms_task", dict(args, state="stopped", wait="stopped")))
    assert res["changed"] and res["actions"] == ["stop"] and res["task"]["status"] == "stopped"
    assert not ok(*run_module("dms_task", dict(args, state="stopped")))["changed"]

    # Restart: resume-processing since it ran before.
    res, raw = run_module("dms_task", dict(args, state="running"), check_mode=True)
    assert ok(res, raw)["actions"] == ["start resume-processing"]

    # Endpoints cannot be deleted under a task; the task goes first, then the rest.
    res = ok(*run_module("dms_task", dict(aws, identifier=task, state="absent", poll_interval=0.2)))
    assert res["changed"] and res["actions"] == ["delete"]
    assert dms_client.describe_replication_tasks(Filters=[dict(Name="replication-task-id", Values=[task])])["ReplicationTasks"] == []
    assert not ok(*run_module("dms_task", dict(aws, identifier=task, state="absent")))["changed"]
    for ep in (src, tgt):
        ok(*run_module("dms_endpoint", dict(aws, identifier=ep, state="absent")))
    ok(*run_module("dms_replication_instance", dict(aws, identifier=ri, state="absent")))


def test_task_refusals(aws):
    ri, src, tgt, task = name("ri"), name("src"), name("tgt"), name("task")
    res, raw = run_module("dms_task", dict(aws, identifier=task, replication_instance=ri, source_endpoint=src,
                                           target_endpoint=tgt, migration_type="cdc", table_mappings=MAPPINGS))
    assert res.get("failed") and "does not exist: create it first (pgshift.aurora.dms_replication_instance)" in res["msg"]
    # In check mode the missing instance and endpoints (created earlier in the same check run) are named instead.
    res, raw = run_module("dms_task", dict(aws, identifier=task, replication_instance=ri, source_endpoint=src,
                                           target_endpoint=tgt, migration_type="cdc", table_mappings=MAPPINGS),
                          check_mode=True, diff=True)
    assert ok(res, raw)["changed"] and res["diff"]["after"]["replication_instance"] == "(instance %s, not created yet)" % ri
    res, raw = run_module("dms_task", dict(aws, identifier=task, table_mappings="{not json"))
    assert res.get("failed") and "table_mappings is not valid JSON" in res["msg"]
    res, raw = run_module("dms_task", dict(aws, identifier=task, migration_type="cdc"))
    assert res.get("failed") and "set replication_instance, source_endpoint, target_endpoint, table_mappings" in res["msg"]
