"""DMS decisions (module_utils/dms.py) and the pure parts of the AWS layer (_aws/dms.py)."""

from __future__ import annotations

import json

import pytest

from ansible_collections.pgshift.aurora.plugins.module_utils import dms
from ansible_collections.pgshift.aurora.plugins.module_utils._aws import dms as dms_api


# -- settings ----------------------------------------------------------------------------------

def test_lob_mode_from_the_assessment():
    assert dms.lob_settings(None) == {"FullLobMode": True, "LimitedSizeLobMode": False, "LobChunkSize": 64}
    assert dms.lob_settings(100.2) == {"FullLobMode": False, "LimitedSizeLobMode": True, "LobMaxSize": 101}
    assert dms.lob_settings(0) == {"FullLobMode": False, "LimitedSizeLobMode": True, "LobMaxSize": 1}
    assert dms.lob_settings(32) == {"FullLobMode": False, "LimitedSizeLobMode": True, "LobMaxSize": 32}


def test_settings_merge_over_recommended_defaults():
    merged = dms.task_settings({"FullLoadSettings": {"MaxFullLoadSubTasks": 16}, "Logging": {"EnableLogging": False},
                                "ChangeProcessingTuning": {"BatchApplyMemoryLimit": 500}}, 2048)
    assert merged["FullLoadSettings"] == {"TargetTablePrepMode": "DO_NOTHING", "MaxFullLoadSubTasks": 16}
    assert merged["Logging"] == {"EnableLogging": False}
    assert merged["ChangeProcessingTuning"] == {"BatchApplyMemoryLimit": 500}
    assert merged["TargetMetadata"] == {"SupportLobs": True, "FullLobMode": False, "LimitedSizeLobMode": True, "LobMaxSize": 2048}
    assert merged["ValidationSettings"]["EnableValidation"] is True
    # The user can still choose full LOB mode over the assessment.
    assert dms.task_settings({"TargetMetadata": {"FullLobMode": True, "LimitedSizeLobMode": False}}, 10)["TargetMetadata"]["FullLobMode"]
    # The defaults themselves are never changed by a merge.
    assert dms.RECOMMENDED_TASK_SETTINGS["FullLoadSettings"] == {"TargetTablePrepMode": "DO_NOTHING", "MaxFullLoadSubTasks": 8}


def test_user_set_settings_and_what_a_modification_sends():
    assert dms.user_task_settings(None) == {}
    assert dms.user_task_settings({"Logging": {"EnableLogging": False}}, 64) == {
        "TargetMetadata": {"FullLobMode": False, "LimitedSizeLobMode": True, "LobMaxSize": 64}, "Logging": {"EnableLogging": False}}
    have = {"Logging": {"EnableLogging": True, "CloudWatchLogGroup": "dms-tasks-ri", "CloudWatchLogStream": "dms-task-X",
                        "LogComponents": [{"Id": "SOURCE_UNLOAD", "Severity": "LOGGER_SEVERITY_DEFAULT"}]},
            "FullLoadSettings": {"TargetTablePrepMode": "DROP_AND_CREATE"}}
    sent = dms.modify_settings(have, {"Logging": {"EnableLogging": False}})
    assert sent == {"Logging": {"EnableLogging": False, "LogComponents": [{"Id": "SOURCE_UNLOAD", "Severity": "LOGGER_SEVERITY_DEFAULT"}]},
                    "FullLoadSettings": {"TargetTablePrepMode": "DROP_AND_CREATE"}}
    assert have["Logging"]["CloudWatchLogGroup"] == "dms-tasks-ri"  # the described settings are not changed


def test_drift_ignores_what_the_service_adds():
    want = dms.task_settings(None, 512)
    have = dms.deep_merge({"TargetMetadata": {"TargetSchema": "", "ParallelLoadThreads": 0},
                           "ChangeProcessingTuning": {"CommitTimeout": 1}}, want)
    assert dms.drift(want, have) == []
    have["Logging"]["EnableLogging"] = False
    have["TargetMetadata"]["LobMaxSize"] = 256
    assert dms.drift(want, have) == ["Logging.EnableLogging", "TargetMetadata.LobMaxSize"]
    del have["ValidationSettings"]
    assert "ValidationSettings" in dms.drift(want, have)


def test_drift_compares_values_not_spellings():
    assert dms.drift({"a": True, "b": 5, "c": "x"}, {"a": "true", "b": "5", "c": "x"}) == []
    assert dms.drift({"a": 5}, {"a": 5.0}) == []
    assert dms.drift({"a": 5}, {"a": "five"}) == ["a"]
    assert dms.drift({"a": False}, {"a": True}) == ["a"]
    assert dms.drift({"a": None}, {}) == []
    assert dms.drift({"l": [{"Id": "X", "Severity": "S"}]}, {"l": [{"Id": "X", "Severity": "S", "Extra": 1}]}) == []
    assert dms.drift({"l": [1, 2]}, {"l": [1]}) == ["l"]
    assert dms.drift({"d": {"x": 1}}, {"d": "flat"}) == ["d"]


def test_parse_json():
    assert dms.parse_json('{"a": 1}', "x") == {"a": 1}
    assert dms.parse_json({"a": 1}, "x") == {"a": 1}
    assert dms.parse_json("", "x") is None
    with pytest.raises(ValueError, match="x is not valid JSON"):
        dms.parse_json("{", "x")
    with pytest.raises(ValueError, match="x must be a JSON object, not list"):
        dms.parse_json("[1]", "x")


# -- table mappings ----------------------------------------------------------------------------

RULES = [dms.selection_rule(2, "public", "items"), dms.selection_rule(1, "public", "orders"),
         {"rule-type": "transformation", "rule-id": 10, "rule-action": "rename", "rule-target": "schema",
          "object-locator": {"schema-name": "public"}, "value": "app"}]


def test_normalise_table_mappings():
    norm = dms.normalise_table_mappings(json.dumps({"rules": RULES}))
    assert [r["rule-id"] for r in norm["rules"]] == ["1", "2", "10"]
    assert norm["rules"][2]["rule-name"] == "10"
    assert RULES[2]["rule-id"] == 10  # the input is not changed
    with pytest.raises(ValueError, match="non-empty 'rules'"):
        dms.normalise_table_mappings({"rules": []})
    with pytest.raises(ValueError, match="rule 1 has no rule-action"):
        dms.normalise_table_mappings({"rules": [{"rule-type": "selection"}]})
    with pytest.raises(ValueError, match="two rules named a"):
        dms.normalise_table_mappings({"rules": [dict(RULES[0], **{"rule-name": "a"}), dict(RULES[1], **{"rule-name": "a"})]})


def test_mappings_drift_rule_by_rule():
    want = dms.normalise_table_mappings({"rules": RULES})
    # The service returns its own order, string ids and an added "filters": [].
    have = {"rules": [dict(r, **{"filters": []}) for r in reversed(dms.normalise_table_mappings({"rules": RULES})["rules"])]}
    assert dms.mappings_drift(want, json.dumps(have)) == []
    have["rules"][0]["value"] = "other"
    assert dms.mappings_drift(want, have) == ["rules[10].value"]
    assert dms.mappings_drift(want, {"rules": have["rules"][1:]}) == ["rules", "rules[10]"]
    assert dms.mappings_drift(want, "not json") == ["rules"]


# -- endpoints, instances, tags -----------------------------------------------------------------

def test_postgres_settings_names():
    got = dms.postgres_settings(dict(slot_name="s1", heartbeat_enable=True, heartbeat_frequency=5, ddl_artifacts_schema="pgshift",
                                     map_boolean_as_boolean=True, some_new_thing=1, plugin_name=None))
    assert got == {"SlotName": "s1", "HeartbeatEnable": True, "HeartbeatFrequency": 5, "DdlArtifactsSchema": "pgshift",
                   "MapBooleanAsBoolean": True, "SomeNewThing": 1}


def test_session_replication_role_in_the_after_connect_script():
    assert dms.postgres_settings(None, "replica") == {"AfterConnectScript": "SET session_replication_role = replica"}
    assert dms.postgres_settings({"after_connect_script": "SET work_mem = '64MB';"}, "replica") == {
        "AfterConnectScript": "SET work_mem = '64MB'; SET session_replication_role = replica"}
    already = {"after_connect_script": "SET session_replication_role = replica"}
    assert dms.postgres_settings(already, "replica") == {"AfterConnectScript": "SET session_replication_role = replica"}


def test_endpoint_changes_only_what_is_set():
    have = {"EndpointType": "SOURCE", "EngineName": "postgres", "ServerName": "db", "Port": 5432, "DatabaseName": "orders",
            "Username": "u", "SslMode": "require", "Status": "active",
            "PostgreSQLSettings": {"SlotName": "s1", "HeartbeatEnable": True, "HeartbeatFrequency": 5, "DatabaseName": "orders",
                                   "Port": 5432, "ServerName": "db", "Username": "u", "MaxFileSize": 32768}}
    want = dict(EngineName="postgres", ServerName="db", Port=5432, DatabaseName="orders", Username="u", SslMode=None,
                CertificateArn=None, PostgreSQLSettings={"SlotName": "s1", "HeartbeatEnable": True})
    assert dms.endpoint_changes(want, have) == {}
    want["PostgreSQLSettings"] = {"SlotName": "s2", "HeartbeatEnable": True}
    want["Port"] = 5433
    assert dms.endpoint_changes(want, have) == {"Port": 5433, "PostgreSQLSettings": {"SlotName": "s2", "HeartbeatEnable": True}}


def test_instance_changes():
    have = {"ReplicationInstanceClass": "dms.t3.medium", "AllocatedStorage": 50, "EngineVersion": "3.5.3", "MultiAZ": False,
            "VpcSecurityGroups": [{"VpcSecurityGroupId": "sg-2", "Status": "active"}, {"VpcSecurityGroupId": "sg-1", "Status": "active"}],
            "PubliclyAccessible": False, "KmsKeyId": "arn:aws:kms:eu-west-1:1:key/abc",
            "ReplicationSubnetGroup": {"ReplicationSubnetGroupIdentifier": "sg"}}
    same = dict(instance_class="dms.t3.medium", allocated_storage=50, engine_version="3.5.3", multi_az=False,
                vpc_security_group_ids=["sg-1", "sg-2"], publicly_accessible=False, kms_key_id="key/abc", subnet_group="sg")
    assert dms.instance_changes(same, have) == ({}, [])
    modify, fixed = dms.instance_changes(dict(same, instance_class="dms.r6i.large", engine_version="3.6.1",
                                              vpc_security_group_ids=["sg-1"], publicly_accessible=True, subnet_group="other"), have)
    assert modify == {"ReplicationInstanceClass": "dms.r6i.large", "EngineVersion": "3.6.1", "AllowMajorVersionUpgrade": False,
                      "VpcSecurityGroupIds": ["sg-1"]}
    assert fixed == ["subnet_group", "publicly_accessible"]
    assert dms.instance_changes(dict(engine_version="4.0.0"), have)[0]["AllowMajorVersionUpgrade"] is True
    assert dms.instance_changes({}, have) == ({}, [])


def test_tag_changes():
    assert dms.tag_changes(None, {"a": "1"}) == ({}, [])
    assert dms.tag_changes({"a": 1, "b": "2"}, {"a": "1", "c": "3", "aws:x": "y"}) == ({"b": "2"}, ["c"])
    assert dms.tag_changes({"a": "2"}, {"a": "1", "c": "3"}, purge=False) == ({"a": "2"}, [])


# -- task states --------------------------------------------------------------------------------

@pytest.mark.parametrize("status,state,modify,steps", [
    (None, "present", False, ["create"]),
    (None, "running", False, ["create", "start"]),
    (None, "stopped", False, ["create"]),
    (None, "absent", False, []),
    ("ready", "present", False, []),
    ("ready", "running", False, ["start"]),
    ("ready", "running", True, ["modify", "start"]),
    ("running", "running", False, []),
    ("starting", "running", False, []),
    ("running", "running", True, ["stop", "modify", "start"]),
    ("running", "present", True, ["stop", "modify", "start"]),
    ("running", "present", False, []),
    ("running", "stopped", False, ["stop"]),
    ("running", "stopped", True, ["stop", "modify"]),
    ("stopped", "present", True, ["modify"]),
    ("stopped", "running", False, ["start"]),
    ("failed", "running", False, ["start"]),
    ("stopped", "stopped", False, []),
    ("running", "absent", False, ["stop", "delete"]),
    ("stopped", "absent", True, ["delete"]),
])
def test_task_steps(status, state, modify, steps):
    current = None if status is None else {"Status": status}
    assert dms.task_steps(current, state, modify) == steps


def test_start_type():
    assert dms.start_type({"Status": "ready"}, None) == "start-replication"
    assert dms.start_type({"Status": "stopped"}, None) == "resume-processing"
    assert dms.start_type({"Status": "ready", "ReplicationTaskStartDate": "2026-01-01"}, None) == "resume-processing"
    assert dms.start_type({"Status": "stopped"}, "reload-target") == "reload-target"
    assert dms.start_type({}, None) == "start-replication"


def test_task_failure():
    assert dms.task_failure({"Status": "running"}) is None
    assert dms.task_failure({"Status": "stopped", "StopReason": "Stop Reason NORMAL", "LastFailureMessage": "old"}) is None
    assert dms.task_failure({"Status": "stopped", "StopReason": "Stop Reason FULL_LOAD_ONLY_FINISHED"}) is None
    assert dms.task_failure({"ReplicationTaskIdentifier": "t", "Status": "failed"}) == "replication task t is failed: (no LastFailureMessage)"
    assert dms.task_failure({"ReplicationTaskIdentifier": "t", "Status": "stopped", "StopReason": "Stop Reason STOPPED_DUE_TO_LOW_DISK",
                             "LastFailureMessage": "disk"}) == "replication task t is stopped: disk [Stop Reason STOPPED_DUE_TO_LOW_DISK]"
    assert "dms-tasks-ri" in dms.failure_advice({}, "ri")


def full(status, percent, loading=0, queued=0, errored=0, kind="full-load-and-cdc", **extra):
    t = {"Status": status, "MigrationType": kind, "ReplicationTaskStats": {
        "FullLoadProgressPercent": percent, "TablesLoading": loading, "TablesQueued": queued, "TablesErrored": errored, "TablesLoaded": 1}}
    t.update(extra)
    return t


def test_wait_verdicts():
    assert dms.wait_verdict("ready", {"Status": "creating"}) is None
    assert dms.wait_verdict("ready", {"Status": "ready"}) == "ok"
    assert dms.wait_verdict("ready", {"Status": "stopped"}) == "ok"
    assert dms.wait_verdict("ready", {"Status": "modifying"}) is None
    assert dms.wait_verdict("running", {"Status": "starting"}) is None
    assert dms.wait_verdict("running", {"Status": "running"}) == "ok"
    assert dms.wait_verdict("running", {"Status": "failed"}) == "failed"
    assert dms.wait_verdict("stopped", {"Status": "stopping"}) is None
    assert dms.wait_verdict("stopped", {"Status": "stopped", "StopReason": "Stop Reason NORMAL"}) == "ok"
    assert dms.wait_verdict("stopped", {"Status": "stopped", "StopReason": "Stop Reason FATAL_ERROR"}) == "failed"
    assert dms.wait_verdict("stopped", {"Status": "ready"}) == "ok"  # never started: not running either
    assert dms.wait_verdict("stopped", None) == "gone"
    # settled: the module's own waits between calls; an earlier failure does not stop a fix-and-restart.
    assert dms.wait_verdict("settled", {"Status": "modifying"}) is None
    assert dms.wait_verdict("settled", {"Status": "failed", "LastFailureMessage": "x"}) == "ok"
    assert dms.wait_verdict("settled", {"Status": "stopped", "StopReason": "Stop Reason FATAL_ERROR"}) == "ok"
    assert dms.wait_verdict("absent", None) == "ok"
    assert dms.wait_verdict("absent", {"Status": "deleting"}) is None
    with pytest.raises(ValueError):
        dms.wait_verdict("soon", {"Status": "running"})


def test_full_load_complete():
    wait = "full_load_complete"
    assert dms.wait_verdict(wait, full("running", 40, loading=2)) is None
    assert dms.wait_verdict(wait, full("running", 100, queued=1)) is None
    assert dms.wait_verdict(wait, full("running", 100)) == "ok"
    assert dms.wait_verdict(wait, full("starting", 100)) is None
    assert dms.wait_verdict(wait, full("running", 60, errored=1)) == "failed"
    assert dms.wait_verdict(wait, full("Load complete, replication ongoing", 100)) == "ok"
    # A full-load task is done when it stops after its load, not while running.
    assert dms.wait_verdict(wait, full("running", 100, kind="full-load")) is None
    assert dms.wait_verdict(wait, full("stopped", 100, kind="full-load", StopReason="Stop Reason FULL_LOAD_ONLY_FINISHED")) == "ok"
    # A CDC-only task has no full load.
    assert dms.wait_verdict(wait, full("running", 0, kind="cdc")) == "ok"


def test_progress_from_table_statistics_and_from_task_stats():
    rows = [dms.table_row(s) for s in (
        {"SchemaName": "p", "TableName": "a", "TableState": "Table completed", "FullLoadRows": 10},
        {"SchemaName": "p", "TableName": "b", "TableState": "Full load", "FullLoadRows": 5},
        {"SchemaName": "p", "TableName": "c", "TableState": "Before load"},
        {"SchemaName": "p", "TableName": "d", "TableState": "Table error", "FullLoadRows": 1})]
    assert rows[2]["full_load_rows"] == 0 and rows[0]["validation_state"] is None
    assert dms.progress(rows, {"ReplicationTaskStats": {"FullLoadProgressPercent": 40}}) == dict(
        tables_total=4, tables_loaded=1, tables_loading=2, tables_errored=1, full_load_rows=16, percent=40)
    assert dms.progress(rows, {})["percent"] == 25
    assert dms.progress([], full("running", 70, loading=1, queued=2, errored=1)) == dict(
        tables_total=5, tables_loaded=1, tables_loading=3, tables_errored=1, full_load_rows=None, percent=70)
    assert dms.progress([], None)["tables_total"] == 0
    line = dms.progress_line("t", "running", dms.progress(rows, {}), {"source_seconds": 1.0, "target_seconds": 2.0})
    assert line == "t: running, 25% (1/4 tables loaded, 2 loading, 1 errored), CDC latency source 1.0s target 2.0s"


def test_max_latency():
    assert dms.max_latency([{"source_seconds": 1.0, "target_seconds": 4.0}, {"source_seconds": None, "target_seconds": 9.5}]) == 9.5
    assert dms.max_latency([{"source_seconds": None, "target_seconds": None}]) is None
    assert dms.max_latency([]) is None


# -- AWS layer, pure parts ----------------------------------------------------------------------

def test_backoff_is_jittered_and_capped():
    assert dms_api.backoff_delay(0, lambda: 1.0) == 0.5
    assert dms_api.backoff_delay(3, lambda: 1.0) == 4.0
    assert dms_api.backoff_delay(10, lambda: 1.0) == 20.0
    assert dms_api.backoff_delay(10, lambda: 0.0) == 0.0


def test_poll_until_verdict_or_timeout():
    now = [0.0]
    slept = []

    def sleep(seconds):
        slept.append(seconds)
        now[0] += seconds

    values = iter([1, 2, 3])
    assert dms_api.poll(lambda: next(values), lambda v: "ok" if v == 3 else None, 100, 8, sleep=sleep, clock=lambda: now[0]) == ("ok", 3)
    assert slept == [1.0, 2.0]
    slept.clear()
    assert dms_api.poll(lambda: 0, lambda v: None, 10, 8, sleep=sleep, clock=lambda: now[0]) == (None, 0)
    assert sum(slept) == 10 and max(slept) <= 8


def test_task_result_parses_mappings_and_settings():
    out = dms_api.task_result({"ReplicationTaskIdentifier": "t", "TableMappings": '{"rules": []}',
                               "ReplicationTaskSettings": '{"Logging": {"EnableLogging": true}}', "ReplicationTaskStats": {"TablesLoaded": 1}})
    assert out == {"replication_task_identifier": "t", "table_mappings": {"rules": []},
                   "task_settings": {"Logging": {"EnableLogging": True}}, "replication_task_stats": {"tables_loaded": 1}}


def test_plan_mappings_and_table_settings_rules_are_accepted():
    from ansible_collections.pgshift.aurora.plugins.module_utils import plan

    tables = [dict(schema="public", name="orders", qualified="public.orders"),
              dict(schema="sales", name="shipments_2025_01", qualified="sales.shipments_2025_01")]
    mapping = plan.table_mapping(tables, [dict(schema="sales", name="legacy", qualified="sales.legacy")])
    parallel = {"rule-type": "table-settings", "rule-id": "100", "rule-name": "split-orders",
                "object-locator": {"schema-name": "public", "table-name": "orders"},
                "parallel-load": {"type": "ranges", "columns": ["id"], "boundaries": [["1000000"]]}}
    norm = dms.normalise_table_mappings({"rules": mapping["rules"] + [parallel]})
    assert [(r["rule-name"], r.get("rule-action")) for r in norm["rules"]] == [
        ("1", "explicit"), ("2", "explicit"), ("3", "exclude"), ("split-orders", None)]
    assert dms.mappings_drift(norm, json.dumps(norm)) == []


# -- endpoint TLS and certificates ---------------------------------------------------------------

CERT = "arn:aws:dms:eu-west-1:123456789012:cert:RDSGLOBALBUNDLE"


@pytest.mark.parametrize("libpq, dms_mode", [
    ("allow", "require"), ("prefer", "require"), ("require", "require"),
])
def test_endpoint_tls_is_never_weaker_than_libpq(libpq, dms_mode):
    assert dms.endpoint_tls("src", libpq_sslmode=libpq) == (dms_mode, None, [])


@pytest.mark.parametrize("libpq", ["verify-ca", "verify-full"])
def test_endpoint_tls_verification_keeps_its_mode_and_needs_a_certificate(libpq):
    assert dms.endpoint_tls("src", libpq_sslmode=libpq, certificate_arn=CERT) == (libpq, CERT, [])
    with pytest.raises(dms.TlsError) as err:
        dms.endpoint_tls("pgshift-orders-source", libpq_sslmode=libpq)
    msg = str(err.value)
    assert "pgshift-orders-source" in msg and "%s needs certificate_arn" % libpq in msg
    assert "dms_certificate_arn" in msg and "db_sslrootcert" in msg and "dms_ssl_mode: require" in msg


def test_endpoint_tls_disable_is_an_error_unless_none_is_asked_for():
    with pytest.raises(dms.TlsError) as err:
        dms.endpoint_tls("pgshift-orders-target", libpq_sslmode="disable")
    msg = str(err.value)
    assert "pgshift-orders-target" in msg and "never drops TLS silently" in msg and "dms_ssl_mode: none" in msg
    # Explicitly asked for: none, without a warning since the controller does not use TLS either.
    assert dms.endpoint_tls("t", ssl_mode="none", libpq_sslmode="disable") == ("none", None, [])


def test_endpoint_tls_explicit_mode_wins_and_none_over_tls_is_warned_about():
    assert dms.endpoint_tls("t", ssl_mode="require", libpq_sslmode="verify-full") == ("require", None, [])
    assert dms.endpoint_tls("t", ssl_mode="verify-full", libpq_sslmode="prefer", certificate_arn=CERT) == (
        "verify-full", CERT, [])
    mode, cert, warnings = dms.endpoint_tls("t", ssl_mode="none", libpq_sslmode="verify-full")
    assert (mode, cert) == ("none", None)
    assert len(warnings) == 1 and "without TLS" in warnings[0] and "verify-full" in warnings[0]
    with pytest.raises(dms.TlsError, match="verify-ca needs certificate_arn"):
        dms.endpoint_tls("t", ssl_mode="verify-ca", libpq_sslmode="verify-full")


def test_endpoint_tls_without_any_setting_requires_tls():
    assert dms.endpoint_tls("t") == ("require", None, [])
    # A certificate given with require is sent as given.
    assert dms.endpoint_tls("t", certificate_arn=CERT) == ("require", CERT, [])


def test_endpoint_tls_refuses_unknown_modes():
    with pytest.raises(dms.TlsError, match="sslmode verify is not one of disable, allow"):
        dms.endpoint_tls("t", libpq_sslmode="verify")
    with pytest.raises(dms.TlsError, match="ssl_mode prefer is not one of none, require"):
        dms.endpoint_tls("t", ssl_mode="prefer")


PEM = ("-----BEGIN CERTIFICATE-----\nMIIBszCCAVmgAwIBAgIUY29tbW9uLWNhLWZvci10ZXN0czAKBggqhkjOPQQDAjAP\n"
       "-----END CERTIFICATE-----\n")
OTHER_PEM = PEM.replace("Y29tbW9u", "b3RoZXJz")


def test_certificate_identifier_follows_the_pem_not_its_line_endings():
    ident = dms.certificate_identifier("pgshift-orders-ca-", PEM)
    assert ident.startswith("pgshift-orders-ca-") and len(ident) == len("pgshift-orders-ca-") + 16
    assert dms.certificate_identifier_problem(ident) is None
    assert dms.certificate_identifier("pgshift-orders-ca-", "\n" + PEM.replace("\n", "\r\n") + "\n\n") == ident
    assert dms.certificate_identifier("pgshift-orders-ca-", OTHER_PEM) != ident
    with pytest.raises(ValueError, match="starts with a letter"):
        dms.certificate_identifier("1-orders-", PEM)
    with pytest.raises(ValueError, match="no two hyphens"):
        dms.certificate_identifier("pgshift--ca-", PEM)


def test_certificate_identifier_problems():
    assert dms.certificate_identifier_problem("rds-global-bundle") is None
    assert dms.certificate_identifier_problem("rds-global-bundle-") is not None
    assert dms.certificate_identifier_problem("rds_global") is not None
    assert dms.certificate_identifier_problem("") is not None
    assert dms.certificate_identifier_problem("a" * 256) is not None


def test_pem_problem():
    assert dms.pem_problem(PEM + OTHER_PEM) is None
    assert "no -----BEGIN CERTIFICATE-----" in dms.pem_problem("hello")
    assert "not closed" in dms.pem_problem(PEM.replace("-----END CERTIFICATE-----\n", ""))
    key = "-----BEGIN PRIVATE KEY-----\nabc\n-----END PRIVATE KEY-----\n"
    assert "private key" in dms.pem_problem(PEM + key)


def test_certificates_of_prefix_only_the_fingerprinted_names():
    ident = dms.certificate_identifier("pgshift-orders-ca-", PEM)
    listed = [{"CertificateIdentifier": ident}, {"CertificateIdentifier": "pgshift-orders-ca-manual"},
              {"CertificateIdentifier": dms.certificate_identifier("pgshift-orders-staging-ca-", PEM)},
              {"CertificateIdentifier": "rds-global-bundle"}]
    assert dms.certificates_of_prefix(listed, "pgshift-orders-ca-") == [{"CertificateIdentifier": ident}]
