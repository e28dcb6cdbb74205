"""dms_task against botocore's Stubber, for what moto does not model: the task's real state sequence
(creating -> ready -> starting -> running -> load complete, replication ongoing -> stopped), failures
with their messages, throttling retried, describe_table_statistics, modify_replication_task.

The Stubber checks every request against the DMS API model and every response shape we give it, and
that the calls come in exactly the order listed; responses are shaped like the real service's (the
service adds its defaults to the settings; "not found" is ResourceNotFoundFault, not an empty list).
"""

from __future__ import annotations

import datetime
import json

import boto3
import pytest
from botocore.stub import ANY, Stubber

from ansible_collections.pgshift.aurora.plugins.module_utils import dms_certificates, dms_task_settings, drift
from ansible_collections.pgshift.aurora.plugins.module_utils._aws import common
from ansible_collections.pgshift.aurora.plugins.module_utils._aws import dms as dms_api
from ansible_collections.pgshift.aurora.plugins.module_utils.runners import dms_certificate, dms_endpoint, dms_task

REGION = "eu-west-1"
ACCOUNT = "123456789012"
INSTANCE_ARN = "arn:aws:dms:%s:%s:rep:ABCDEFGHIJKLMNOPQRSTUVWXYZ" % (REGION, ACCOUNT)
SOURCE_ARN = "arn:aws:dms:%s:%s:endpoint:SRCSRCSRCSRCSRCSRCSRCSRCSRC" % (REGION, ACCOUNT)
TARGET_ARN = "arn:aws:dms:%s:%s:endpoint:TGTTGTTGTTGTTGTTGTTGTTGTTGT" % (REGION, ACCOUNT)
TASK_ARN = "arn:aws:dms:%s:%s:task:TASKTASKTASKTASKTASKTASKTAS" % (REGION, ACCOUNT)
T0 = datetime.datetime(2026, 3, 1, 12, 0, tzinfo=datetime.timezone.utc)

MAPPINGS = {"rules": [{"rule-type": "selection", "rule-id": "1", "rule-name": "1",
                       "object-locator": {"schema-name": "public", "table-name": "orders"}, "rule-action": "include"}]}

# What the service returns for settings: ours plus its own defaults, and our booleans and numbers kept.
SERVICE_DEFAULTS = {
    "TargetMetadata": {"TargetSchema": "", "SupportLobs": True, "FullLobMode": True, "LobChunkSize": 64, "LimitedSizeLobMode": False,
                       "LobMaxSize": 0, "InlineLobMaxSize": 0, "LoadMaxFileSize": 0, "ParallelLoadThreads": 0,
                       "BatchApplyEnabled": False},
    "FullLoadSettings": {"TargetTablePrepMode": "DROP_AND_CREATE", "CreatePkAfterFullLoad": False, "StopTaskCachedChangesApplied": False,
                         "StopTaskCachedChangesNotApplied": False, "MaxFullLoadSubTasks": 8, "TransactionConsistencyTimeout": 600,
                         "CommitRate": 10000},
    "Logging": {"EnableLogging": False, "LogComponents": [{"Id": "SOURCE_UNLOAD", "Severity": "LOGGER_SEVERITY_DEFAULT"}],
                "CloudWatchLogGroup": None, "CloudWatchLogStream": None},
    "ValidationSettings": {"EnableValidation": False, "ValidationMode": "ROW_LEVEL", "ThreadCount": 5, "FailureMaxCount": 10000},
    "ErrorBehavior": {"DataErrorPolicy": "LOG_ERROR", "DataTruncationErrorPolicy": "LOG_ERROR", "TableErrorPolicy": "SUSPEND_TABLE",
                      "RecoverableErrorCount": -1, "FailOnNoTablesCaptured": True},
    "ChangeProcessingTuning": {"BatchApplyPreserveTransaction": True, "CommitTimeout": 1, "MemoryLimitTotal": 1024},
}


def service_settings(ours):
    """The settings as DescribeReplicationTasks returns them after we sent ours."""
    return json.dumps(drift.deep_merge(SERVICE_DEFAULTS, ours))


OUR_SETTINGS = dms_task_settings.task_settings(None, 512)


def task(status, stats=None, settings=None, migration_type="full-load-and-cdc", **extra):
    t = {
        "ReplicationTaskIdentifier": "pgshift-orders-s1",
        "SourceEndpointArn": SOURCE_ARN,
        "TargetEndpointArn": TARGET_ARN,
        "ReplicationInstanceArn": INSTANCE_ARN,
        "MigrationType": migration_type,
        "TableMappings": json.dumps({"rules": [dict(MAPPINGS["rules"][0], filters=[])]}),  # the service adds filters: []
        "ReplicationTaskSettings": settings if settings is not None else service_settings(OUR_SETTINGS),
        "Status": status,
        "ReplicationTaskCreationDate": T0,
        "ReplicationTaskArn": TASK_ARN,
    }
    if stats is not None:
        t["ReplicationTaskStats"] = stats
        t["ReplicationTaskStartDate"] = T0
    t.update(extra)
    return t


def stats(percent, loaded, loading, queued=0, errored=0, finished=False):
    s = {"FullLoadProgressPercent": percent, "ElapsedTimeMillis": 60000, "TablesLoaded": loaded, "TablesLoading": loading,
         "TablesQueued": queued, "TablesErrored": errored, "FreshStartDate": T0, "StartDate": T0, "FullLoadStartDate": T0}
    if finished:
        s["FullLoadFinishDate"] = T0 + datetime.timedelta(minutes=30)
    return s


TABLE_STATS = [
    {"SchemaName": "public", "TableName": "orders", "Inserts": 15, "Deletes": 1, "Updates": 3, "Ddls": 0, "FullLoadRows": 120000,
     "FullLoadErrorRows": 0, "TableState": "Table completed", "ValidationState": "Validated", "ValidationPendingRecords": 0,
     "ValidationFailedRecords": 0, "LastUpdateTime": T0},
    {"SchemaName": "public", "TableName": "items", "Inserts": 0, "Deletes": 0, "Updates": 0, "Ddls": 0, "FullLoadRows": 345,
     "FullLoadErrorRows": 0, "TableState": "Table completed", "ValidationState": "Pending records", "ValidationPendingRecords": 12,
     "ValidationFailedRecords": 0, "LastUpdateTime": T0},
]


class Failed(Exception):
    def __init__(self, kwargs):
        super().__init__(kwargs.get("msg"))
        self.kwargs = kwargs


class FakeModule:
    """What dms_task.Runner uses of AnsibleModule."""

    def __init__(self, check_mode=False, **params):
        self.params = dict(identifier="pgshift-orders-s1", replication_instance=None, source_endpoint=None, target_endpoint=None,
                           migration_type=None, table_mappings=None, task_settings=None, lob_max_size_kb=None,
                           cdc_start_position=None, tags=None, purge_tags=True, state="present", start_type=None, wait=None,
                           wait_timeout=3600, poll_interval=15.0)
        self.params.update(params)
        self.check_mode = check_mode
        self.warnings = []

    def warn(self, msg):
        self.warnings.append(msg)

    def fail_json(self, **kwargs):
        raise Failed(kwargs)


class Clock:
    """A clock the fake sleep advances: waits and timeouts without wall-clock time."""

    def __init__(self):
        self.now = 0.0
        self.sleeps = []

    def sleep(self, seconds):
        self.sleeps.append(seconds)
        self.now += seconds

    def __call__(self):
        return self.now


@pytest.fixture
def stubs():
    kw = dict(region_name=REGION, aws_access_key_id="testing", aws_secret_access_key="testing", endpoint_url="http://127.0.0.1:9")
    client, cw_client = boto3.client("dms", **kw), boto3.client("cloudwatch", **kw)
    with Stubber(client) as stub, Stubber(cw_client) as cw_stub:
        yield client, stub, cw_client, cw_stub
        stub.assert_no_pending_responses()
        cw_stub.assert_no_pending_responses()


def runner(stubs, module):
    client, stub, cw_client, cw_stub = stubs
    clock = Clock()
    r = dms_task.Runner(module, common.Api(client, dms_api.HINTS, sleep=clock.sleep, rand=lambda: 0.5),
                        common.Api(cw_client, dms_api.HINTS, sleep=clock.sleep, rand=lambda: 0.5), sleep=clock.sleep, clock=clock)
    return r, clock


def describe_task(stub, *tasks, not_found=False):
    for t in tasks:
        stub.add_response("describe_replication_tasks", {"ReplicationTasks": [t]},
                          {"Filters": [{"Name": "replication-task-id", "Values": ["pgshift-orders-s1"]}]})
    if not_found:
        stub.add_client_error("describe_replication_tasks", "ResourceNotFoundFault", "No Tasks found matching provided filters",
                              http_status_code=400)


def table_stats(stub, rows=None):
    rows = TABLE_STATS if rows is None else rows
    stub.add_response("describe_table_statistics", {"ReplicationTaskArn": TASK_ARN, "TableStatistics": rows},
                      {"ReplicationTaskArn": TASK_ARN})


def latency(cw_stub, source, target):
    for metric, value in (("CDCLatencySource", source), ("CDCLatencyTarget", target)):
        points = []
        if value is not None:  # an older datapoint first: the latest one counts
            points = [{"Timestamp": T0, "Average": value + 5, "Unit": "Seconds"},
                      {"Timestamp": T0 + datetime.timedelta(minutes=1), "Average": value, "Unit": "Seconds"}]
        cw_stub.add_response("get_metric_statistics", {"Label": metric, "Datapoints": points},
                             {"Namespace": "AWS/DMS", "MetricName": metric, "Period": 60, "Statistics": ["Average"],
                              "StartTime": ANY, "EndTime": ANY,
                              "Dimensions": [{"Name": "ReplicationInstanceIdentifier", "Value": "pgshift-orders"},
                                             {"Name": "ReplicationTaskIdentifier", "Value": "pgshift-orders-s1"}]})


def tags(stub, tag_list=()):
    stub.add_response("list_tags_for_resource", {"TagList": list(tag_list)}, {"ResourceArn": TASK_ARN})


def instance(stub):
    stub.add_response("describe_replication_instances", {"ReplicationInstances": [{
        "ReplicationInstanceIdentifier": "pgshift-orders", "ReplicationInstanceArn": INSTANCE_ARN,
        "ReplicationInstanceClass": "dms.r6i.large", "ReplicationInstanceStatus": "available"}]}, None)


def endpoints(stub):
    for ident, arn, kind in (("pgshift-orders-source", SOURCE_ARN, "source"), ("pgshift-orders-target", TARGET_ARN, "target")):
        stub.add_response("describe_endpoints", {"Endpoints": [{"EndpointIdentifier": ident, "EndpointArn": arn, "EndpointType": kind.upper(),
                                                                "EngineName": "postgres", "Status": "active"}]},
                          {"Filters": [{"Name": "endpoint-id", "Values": [ident]}]})


FULL = dict(replication_instance="pgshift-orders", source_endpoint="pgshift-orders-source", target_endpoint="pgshift-orders-target",
            migration_type="full-load-and-cdc", table_mappings=MAPPINGS, lob_max_size_kb=512)


def test_create_start_and_wait_for_the_full_load(stubs):
    client, stub, cw_client, cw_stub = stubs
    describe_task(stub, not_found=True)
    instance(stub)
    endpoints(stub)
    stub.add_response("create_replication_task", {"ReplicationTask": task("creating")}, {
        "ReplicationTaskIdentifier": "pgshift-orders-s1", "ReplicationInstanceArn": INSTANCE_ARN, "SourceEndpointArn": SOURCE_ARN,
        "TargetEndpointArn": TARGET_ARN, "MigrationType": "full-load-and-cdc", "TableMappings": drift.to_json(MAPPINGS),
        "ReplicationTaskSettings": drift.to_json(OUR_SETTINGS)})
    # Starting a task still being created is refused: wait until ready, then start.
    stub.add_client_error("start_replication_task", "InvalidResourceStateFault",
                          "Replication Task cannot be started, invalid state", http_status_code=400)
    describe_task(stub, task("creating"), task("ready"))
    stub.add_response("start_replication_task", {"ReplicationTask": task("starting")},
                      {"ReplicationTaskArn": TASK_ARN, "StartReplicationTaskType": "start-replication"})
    describe_task(stub, task("starting"),
                  task("running", stats(40, 1, 1)),
                  task("running", stats(100, 2, 0, finished=True)))
    table_stats(stub)
    latency(cw_stub, 1.0, 3.0)
    tags(stub)

    r, clock = runner(stubs, FakeModule(state="running", wait="full_load_complete", **FULL))
    result = r.run()
    assert result["changed"] and result["actions"] == ["create", "start start-replication"]
    assert result["task"]["status"] == "running"
    assert result["progress"] == dict(tables_total=2, tables_loaded=2, tables_loading=0, tables_errored=0, full_load_rows=120345,
                                      percent=100)
    assert result["table_statistics"][0] == dict(schema="public", table="orders", state="Table completed", full_load_rows=120000,
                                                 full_load_error_rows=0, inserts=15, updates=3, deletes=1, ddls=0,
                                                 validation_state="Validated", validation_failed_records=0,
                                                 validation_pending_records=0)
    assert result["cdc_latency"] == {"source_seconds": 1.0, "target_seconds": 3.0}  # the latest datapoint
    assert result["task"]["task_settings"]["FullLoadSettings"]["TargetTablePrepMode"] == "DO_NOTHING"
    assert result["diff"]["after"]["table_mappings"] == MAPPINGS
    assert clock.sleeps and max(clock.sleeps) <= 15.0


def test_stop_by_identifier_alone_keeps_the_settings(stubs):
    """A task created with other settings (console, earlier run) is stopped without being modified."""
    client, stub, cw_client, cw_stub = stubs
    custom = service_settings(dms_task_settings.task_settings({"Logging": {"EnableLogging": False}}, None))
    describe_task(stub, task("running", stats(100, 2, 0), settings=custom))
    tags(stub)
    stub.add_response("stop_replication_task", {"ReplicationTask": task("stopping")}, {"ReplicationTaskArn": TASK_ARN})
    describe_task(stub, task("stopped", stats(100, 2, 0), settings=custom, StopReason="Stop Reason NORMAL"))
    describe_task(stub, task("stopped", stats(100, 2, 0), settings=custom, StopReason="Stop Reason NORMAL"))
    table_stats(stub)
    instance(stub)
    latency(cw_stub, None, None)
    tags(stub)
    r, clock = runner(stubs, FakeModule(state="stopped"))
    result = r.run()
    assert result["actions"] == ["stop"] and result["diff"]["after"]["changes"] == []


def test_second_run_on_a_running_task_changes_nothing(stubs):
    """The service's added settings and mapping keys are no drift; a running task is left running."""
    client, stub, cw_client, cw_stub = stubs
    running = task("running", stats(100, 2, 0, finished=True))
    describe_task(stub, running)
    instance(stub)
    endpoints(stub)
    tags(stub)
    describe_task(stub, running)
    table_stats(stub)
    latency(cw_stub, None, None)
    tags(stub)
    r, clock = runner(stubs, FakeModule(state="running", **FULL))
    result = r.run()
    assert not result["changed"] and result["actions"] == [] and "diff" not in result
    assert result["cdc_latency"] == {"source_seconds": None, "target_seconds": None}


def test_change_to_a_running_task_is_stop_modify_resume(stubs):
    client, stub, cw_client, cw_stub = stubs
    user = {"Logging": {"EnableLogging": False}, "ValidationSettings": {"ThreadCount": 8}}
    want = dms_task_settings.task_settings(user, 512)
    running = task("running", stats(100, 2, 0, finished=True))
    describe_task(stub, running)
    instance(stub)
    endpoints(stub)
    tags(stub, [{"Key": "stream", "Value": "1"}])
    stub.add_response("stop_replication_task", {"ReplicationTask": task("stopping")}, {"ReplicationTaskArn": TASK_ARN})
    describe_task(stub, task("stopping", stats(100, 2, 0)), task("stopped", stats(100, 2, 0), StopReason="Stop Reason NORMAL"))
    sent = drift.deep_merge(json.loads(service_settings(OUR_SETTINGS)), user)
    del sent["Logging"]["CloudWatchLogGroup"], sent["Logging"]["CloudWatchLogStream"]  # read-only, never sent back
    stub.add_response("modify_replication_task", {"ReplicationTask": task("modifying")}, {
        "ReplicationTaskArn": TASK_ARN, "MigrationType": "full-load-and-cdc", "TableMappings": drift.to_json(MAPPINGS),
        "ReplicationTaskSettings": drift.to_json(sent)})
    assert sent["TargetMetadata"]["InlineLobMaxSize"] == 0 and sent["Logging"]["EnableLogging"] is False
    after = service_settings(want)
    describe_task(stub, task("modifying", stats(100, 2, 0), settings=after),
                  task("stopped", stats(100, 2, 0), settings=after, StopReason="Stop Reason NORMAL"))
    stub.add_response("start_replication_task", {"ReplicationTask": task("starting", settings=after)},
                      {"ReplicationTaskArn": TASK_ARN, "StartReplicationTaskType": "resume-processing"})
    describe_task(stub, task("starting", stats(100, 2, 0), settings=after))
    describe_task(stub, task("starting", stats(100, 2, 0), settings=after))
    table_stats(stub)
    latency(cw_stub, 0.0, 0.0)
    tags(stub, [{"Key": "stream", "Value": "1"}])
    r, clock = runner(stubs, FakeModule(state="present", task_settings=user, tags={"stream": "1"}, **FULL))
    result = r.run()
    assert result["changed"] and result["actions"] == ["stop", "modify", "start resume-processing"]
    assert result["diff"]["after"]["changes"] == ["task_settings.Logging.EnableLogging", "task_settings.ValidationSettings.ThreadCount"]
    assert result["diff"]["before"]["task_settings"]["ValidationSettings"]["ThreadCount"] == 5


def test_check_mode_calls_nothing_that_changes(stubs):
    client, stub, cw_client, cw_stub = stubs
    running = task("running", stats(100, 2, 0, finished=True))
    describe_task(stub, running)
    tags(stub)
    table_stats(stub)
    instance(stub)
    latency(cw_stub, 2.0, 2.0)
    tags(stub)
    r, clock = runner(stubs, FakeModule(check_mode=True, state="running", task_settings={"Logging": {"EnableLogging": False}},
                                        lob_max_size_kb=512))
    result = r.run()
    assert result["changed"] and result["actions"] == ["stop", "modify", "start resume-processing"]


def test_start_that_fails_reports_last_failure_message_and_where_to_look(stubs):
    client, stub, cw_client, cw_stub = stubs
    stopped = task("stopped", stats(100, 2, 0), StopReason="Stop Reason NORMAL")
    describe_task(stub, stopped)
    tags(stub)
    stub.add_response("start_replication_task", {"ReplicationTask": task("starting")},
                      {"ReplicationTaskArn": TASK_ARN, "StartReplicationTaskType": "resume-processing"})
    message = ("Last Error Replication slot 'pgshift_orders_dms_s1' is already active. Task error notification received from "
               "subtask 0, thread 0 [reptask/replicationtask.c:2883] [1020101] Error executing source loop")
    describe_task(stub, task("starting", stats(100, 2, 0)), task("starting", stats(100, 2, 0)),
                  task("failed", stats(100, 2, 0), LastFailureMessage=message, StopReason="Stop Reason FATAL_ERROR"))
    instance(stub)
    r, clock = runner(stubs, FakeModule(state="running", wait="running", lob_max_size_kb=512))
    with pytest.raises(dms_task.TaskFailed) as err:
        r.run()
    msg = str(err.value)
    assert "is failed: " + message in msg and "[Stop Reason FATAL_ERROR]" in msg
    assert "CloudWatch log group dms-tasks-pgshift-orders" in msg
    assert r.actions == ["start resume-processing"]


def test_task_stopped_by_an_error_fails_at_once(stubs):
    client, stub, cw_client, cw_stub = stubs
    broken = task("stopped", stats(60, 1, 0, errored=1), StopReason="Stop Reason RECOVERABLE_ERROR",
                  LastFailureMessage="Error executing data handler")
    describe_task(stub, broken)
    tags(stub)
    instance(stub)
    r, clock = runner(stubs, FakeModule(state="present", lob_max_size_kb=512))
    with pytest.raises(dms_task.TaskFailed) as err:
        r.run()
    assert "is stopped: Error executing data handler [Stop Reason RECOVERABLE_ERROR]" in str(err.value)


def test_full_load_with_a_table_in_error_fails(stubs):
    client, stub, cw_client, cw_stub = stubs
    describe_task(stub, task("running", stats(50, 1, 0, errored=1)))
    tags(stub)
    describe_task(stub, task("running", stats(50, 1, 0, errored=1)))
    instance(stub)
    r, clock = runner(stubs, FakeModule(state="running", wait="full_load_complete", lob_max_size_kb=512))
    with pytest.raises(dms_task.TaskFailed) as err:
        r.run()
    assert "has 1 table(s) in error" in str(err.value) and "dms-tasks-pgshift-orders" in str(err.value)


def test_full_load_only_task_ends_stopped_after_its_load(stubs):
    client, stub, cw_client, cw_stub = stubs
    full_load = dict(migration_type="full-load")
    describe_task(stub, task("running", stats(30, 0, 2), **full_load))
    tags(stub)
    describe_task(stub, task("running", stats(30, 0, 2), **full_load), task("stopping", stats(100, 2, 0), **full_load),
                  task("stopped", stats(100, 2, 0, finished=True), StopReason="Stop Reason FULL_LOAD_ONLY_FINISHED", **full_load))
    table_stats(stub)
    tags(stub)
    r, clock = runner(stubs, FakeModule(state="running", wait="full_load_complete", lob_max_size_kb=512))
    result = r.run()
    assert not result["changed"] and result["task"]["stop_reason"] == "Stop Reason FULL_LOAD_ONLY_FINISHED"


def test_wait_timeout_fails_with_the_last_state(stubs):
    client, stub, cw_client, cw_stub = stubs
    describe_task(stub, task("running", stats(10, 0, 2)))
    tags(stub)
    for dummy in range(8):  # polls at 0, 1.875, 5.625, 13.125, 28.125, 43.125, 58.125 and 60 s on the fake clock
        describe_task(stub, task("running", stats(10, 0, 2)))
    table_stats(stub)
    instance(stub)
    latency(cw_stub, None, None)
    tags(stub)
    r, clock = runner(stubs, FakeModule(state="running", wait="full_load_complete", wait_timeout=60, lob_max_size_kb=512))
    with pytest.raises(Failed) as err:
        r.run()
    assert "timed out after 60s waiting for it to be full_load_complete (status running)" in err.value.kwargs["msg"]
    assert err.value.kwargs["progress"]["percent"] == 10
    assert clock.now >= 60


def test_stop_and_delete(stubs):
    client, stub, cw_client, cw_stub = stubs
    describe_task(stub, task("running", stats(100, 2, 0)))
    stub.add_response("stop_replication_task", {"ReplicationTask": task("stopping")}, {"ReplicationTaskArn": TASK_ARN})
    describe_task(stub, task("stopped", stats(100, 2, 0), StopReason="Stop Reason NORMAL"))
    stub.add_response("delete_replication_task", {"ReplicationTask": task("deleting")}, {"ReplicationTaskArn": TASK_ARN})
    describe_task(stub, task("deleting", stats(100, 2, 0)), not_found=True)
    r, clock = runner(stubs, FakeModule(state="absent"))
    result = r.run()
    assert result["changed"] and result["actions"] == ["stop", "delete"] and result["task"] == {}


def test_a_task_being_deleted_is_waited_for_not_deleted_again(stubs):
    client, stub, cw_client, cw_stub = stubs
    describe_task(stub, task("deleting"), task("deleting"), not_found=True)
    r, clock = runner(stubs, FakeModule(state="absent"))
    result = r.run()
    assert not result["changed"] and result["actions"] == []


def test_throttling_is_retried_with_jittered_backoff(stubs):
    client, stub, cw_client, cw_stub = stubs
    for dummy in range(3):
        stub.add_client_error("describe_replication_tasks", "ThrottlingException", "Rate exceeded", http_status_code=400)
    describe_task(stub, task("ready"))
    sleeps = []
    api = common.Api(client, dms_api.HINTS, sleep=sleeps.append, rand=lambda: 0.5)
    assert dms_api.find_task(api, "pgshift-orders-s1")["Status"] == "ready"
    assert sleeps == [0.25, 0.5, 1.0] and api.throttled == 3


def test_throttling_for_too_long_and_other_errors_are_not_hidden(stubs):
    client, stub, cw_client, cw_stub = stubs
    for dummy in range(3):
        stub.add_client_error("describe_replication_tasks", "ThrottlingException", "Rate exceeded", http_status_code=400)
    stub.add_client_error("start_replication_task", "AccessDeniedFault", "not authorized", http_status_code=400)
    stub.add_client_error("describe_table_statistics", "InternalFailure", "boom", http_status_code=500)
    api = common.Api(client, dms_api.HINTS, sleep=lambda s: None, rand=lambda: 1.0, attempts=3)
    with pytest.raises(common.AwsError) as err:
        dms_api.find_task(api, "pgshift-orders-s1")
    assert err.value.code == "ThrottlingException" and "throttled too long" in str(err.value)
    with pytest.raises(common.AwsError) as err:
        api.call("start_replication_task", doing="starting x", ReplicationTaskArn=TASK_ARN, StartReplicationTaskType="start-replication")
    assert str(err.value).startswith("starting x: AccessDeniedFault: not authorized (grant the IAM permissions")
    with pytest.raises(common.AwsError) as err:  # a server error is not retried (only one response was queued)
        dms_api.table_statistics(api, TASK_ARN)
    assert err.value.code == "InternalFailure"


def test_table_statistics_are_paginated(stubs):
    client, stub, cw_client, cw_stub = stubs
    stub.add_response("describe_table_statistics", {"ReplicationTaskArn": TASK_ARN, "TableStatistics": TABLE_STATS[:1], "Marker": "m1"},
                      {"ReplicationTaskArn": TASK_ARN})
    stub.add_response("describe_table_statistics", {"ReplicationTaskArn": TASK_ARN, "TableStatistics": TABLE_STATS[1:]},
                      {"ReplicationTaskArn": TASK_ARN, "Marker": "m1"})
    api = common.Api(client, dms_api.HINTS, dms_api.HINTS)
    assert [s["TableName"] for s in dms_api.table_statistics(api, TASK_ARN)] == ["orders", "items"]


def test_failed_task_fixed_by_a_settings_change_is_modified_and_resumed(stubs):
    """The DBA fixes the cause (here a setting) and runs again with state=running: modify, then resume from the
    task's checkpoint (no CdcStartPosition on resume-processing), although the task still says failed."""
    client, stub, cw_client, cw_stub = stubs
    user = {"ErrorBehavior": {"DataTruncationErrorPolicy": "SUSPEND_TABLE"}}
    want = dms_task_settings.task_settings(user, 512)
    failed = dict(LastFailureMessage="Last Error Data truncation", StopReason="Stop Reason FATAL_ERROR")
    describe_task(stub, task("failed", stats(100, 2, 0), **failed))
    tags(stub)
    sent = dms_task_settings.modify_settings(json.loads(service_settings(OUR_SETTINGS)), dms_task_settings.user_task_settings(user, 512))
    stub.add_response("modify_replication_task", {"ReplicationTask": task("modifying", **failed)}, {
        "ReplicationTaskArn": TASK_ARN, "ReplicationTaskSettings": drift.to_json(sent)})
    after = service_settings(want)
    describe_task(stub, task("modifying", stats(100, 2, 0), settings=after, **failed),
                  task("stopped", stats(100, 2, 0), settings=after, **failed))
    stub.add_response("start_replication_task", {"ReplicationTask": task("starting", settings=after)},
                      {"ReplicationTaskArn": TASK_ARN, "StartReplicationTaskType": "resume-processing"})
    describe_task(stub, task("starting", stats(100, 2, 0), settings=after),
                  task("starting", stats(100, 2, 0), settings=after), task("running", stats(100, 2, 0), settings=after))
    table_stats(stub)
    instance(stub)
    latency(cw_stub, 4.0, 6.0)
    tags(stub)
    r, clock = runner(stubs, FakeModule(state="running", wait="running", task_settings=user, lob_max_size_kb=512,
                                        cdc_start_position="0/1A2B3C4D"))
    result = r.run()
    assert result["actions"] == ["modify", "start resume-processing"] and result["task"]["status"] == "running"
    assert result["diff"]["after"]["changes"] == ["task_settings.ErrorBehavior.DataTruncationErrorPolicy"]


def test_first_start_of_a_cdc_task_passes_the_cdc_start_position(stubs):
    client, stub, cw_client, cw_stub = stubs
    describe_task(stub, task("ready", migration_type="cdc"))
    tags(stub)
    stub.add_response("start_replication_task", {"ReplicationTask": task("starting", migration_type="cdc")},
                      {"ReplicationTaskArn": TASK_ARN, "StartReplicationTaskType": "start-replication", "CdcStartPosition": "0/1A2B3C4D"})
    describe_task(stub, task("starting", stats(0, 0, 0), migration_type="cdc"), task("running", stats(0, 0, 0), migration_type="cdc"))
    table_stats(stub, [])
    instance(stub)
    latency(cw_stub, None, None)
    tags(stub)
    r, clock = runner(stubs, FakeModule(state="running", lob_max_size_kb=512, cdc_start_position="0/1A2B3C4D"))
    assert r.run()["actions"] == ["start start-replication"]


ENDPOINT_ARN = SOURCE_ARN
DESCRIBED_SOURCE = {
    # As the real service describes a PostgreSQL source: upper-case type, its own defaults in PostgreSQLSettings.
    "EndpointIdentifier": "pgshift-orders-source", "EndpointType": "SOURCE", "EngineName": "postgres",
    "EngineDisplayName": "PostgreSQL", "Username": "pgshift", "ServerName": "orders.abc.eu-west-1.rds.amazonaws.com", "Port": 5432,
    "DatabaseName": "orders", "Status": "active", "KmsKeyId": "arn:aws:kms:eu-west-1:123456789012:key/k", "EndpointArn": ENDPOINT_ARN,
    "SslMode": "require",
    "PostgreSQLSettings": {"DatabaseName": "orders", "Port": 5432, "ServerName": "orders.abc.eu-west-1.rds.amazonaws.com",
                           "Username": "pgshift", "SlotName": "pgshift_orders_dms_s1", "HeartbeatEnable": True, "HeartbeatFrequency": 5,
                           "PluginName": "pglogical", "MaxFileSize": 32768, "ExecuteTimeout": 60, "FailTasksOnLobTruncation": True,
                           "MapBooleanAsBoolean": False, "DatabaseMode": "default"},
}


def endpoint_module(**params):
    base = dict(identifier="pgshift-orders-source", endpoint_type="source", engine_name="postgres",
                server_name="orders.abc.eu-west-1.rds.amazonaws.com", port=5432, database_name="orders", username="pgshift",
                password="Secret-1", update_password="on_create", secrets_manager_secret_id=None, secrets_manager_access_role_arn=None,
                ssl_mode="require", libpq_sslmode=None, certificate_arn=None, kms_key_id=None, session_replication_role=None, tags=None, purge_tags=True,
                state="present",
                postgresql_settings=dict(slot_name="pgshift_orders_dms_s1", heartbeat_enable=True, heartbeat_frequency=5,
                                         plugin_name="pglogical", fail_tasks_on_lob_truncation=True))
    base.update(params)
    module = FakeModule()
    module.params = base
    return module


def describe_endpoint(stub, ep):
    stub.add_response("describe_endpoints", {"Endpoints": [ep]},
                      {"Filters": [{"Name": "endpoint-id", "Values": ["pgshift-orders-source"]}]})
    stub.add_response("list_tags_for_resource", {"TagList": []}, {"ResourceArn": ENDPOINT_ARN})


def test_endpoint_as_the_service_describes_it_has_no_drift(stubs):

    client, stub, cw_client, cw_stub = stubs
    describe_endpoint(stub, DESCRIBED_SOURCE)
    result = dms_endpoint.run(endpoint_module(), common.Api(client, dms_api.HINTS, dms_api.HINTS))
    assert not result["changed"]
    assert result["endpoint"]["endpoint_type"] == "SOURCE" and result["endpoint"]["postgresql_settings"]["slot_name"] == "pgshift_orders_dms_s1"
    assert "Secret-1" not in json.dumps(result)


def test_endpoint_modified_with_its_postgresql_settings_and_password_on_request(stubs):

    client, stub, cw_client, cw_stub = stubs
    describe_endpoint(stub, DESCRIBED_SOURCE)
    want_pg = {"SlotName": "pgshift_orders_dms_s2", "HeartbeatEnable": True, "HeartbeatFrequency": 5, "PluginName": "pglogical",
               "FailTasksOnLobTruncation": True}
    stub.add_response("modify_endpoint", {"Endpoint": DESCRIBED_SOURCE},
                      {"EndpointArn": ENDPOINT_ARN, "PostgreSQLSettings": want_pg, "Password": "Secret-2"})
    changed = dict(DESCRIBED_SOURCE, PostgreSQLSettings=dict(DESCRIBED_SOURCE["PostgreSQLSettings"], SlotName="pgshift_orders_dms_s2"))
    stub.add_response("describe_endpoints", {"Endpoints": [changed]}, {"Filters": [{"Name": "endpoint-arn", "Values": [ENDPOINT_ARN]}]})
    stub.add_response("list_tags_for_resource", {"TagList": []}, {"ResourceArn": ENDPOINT_ARN})
    module = endpoint_module(password="Secret-2", update_password="always",
                             postgresql_settings=dict(slot_name="pgshift_orders_dms_s2", heartbeat_enable=True, heartbeat_frequency=5,
                                                      plugin_name="pglogical", fail_tasks_on_lob_truncation=True))
    result = dms_endpoint.run(module, common.Api(client, dms_api.HINTS, dms_api.HINTS))
    assert result["changed"] and result["diff"]["after"]["PostgreSQLSettings"]["SlotName"] == "pgshift_orders_dms_s2"
    assert result["diff"]["after"]["Password"] == "(sent: update_password=always)"
    assert "Secret-2" not in json.dumps(result)


def test_endpoint_tags_added_and_purged(stubs):

    client, stub, cw_client, cw_stub = stubs
    stub.add_response("describe_endpoints", {"Endpoints": [DESCRIBED_SOURCE]},
                      {"Filters": [{"Name": "endpoint-id", "Values": ["pgshift-orders-source"]}]})
    stub.add_response("list_tags_for_resource", {"TagList": [{"Key": "old", "Value": "1"}, {"Key": "migration", "Value": "x"}]},
                      {"ResourceArn": ENDPOINT_ARN})
    stub.add_response("remove_tags_from_resource", {}, {"ResourceArn": ENDPOINT_ARN, "TagKeys": ["old"]})
    stub.add_response("add_tags_to_resource", {}, {"ResourceArn": ENDPOINT_ARN, "Tags": [{"Key": "migration", "Value": "orders"}]})
    stub.add_response("describe_endpoints", {"Endpoints": [DESCRIBED_SOURCE]}, {"Filters": [{"Name": "endpoint-arn", "Values": [ENDPOINT_ARN]}]})
    stub.add_response("list_tags_for_resource", {"TagList": [{"Key": "migration", "Value": "orders"}]}, {"ResourceArn": ENDPOINT_ARN})
    result = dms_endpoint.run(endpoint_module(tags={"migration": "orders"}), common.Api(client, dms_api.HINTS, dms_api.HINTS))
    assert result["changed"] and result["endpoint"]["tags"] == {"migration": "orders"}
    assert result["diff"] == {"before": {"Tags": {"old": "1", "migration": "x"}}, "after": {"Tags": {"migration": "orders"}}}


# -- endpoint TLS ----------------------------------------------------------------------------------

CERT_ARN = "arn:aws:dms:%s:%s:cert:CERTCERTCERTCERTCERTCERTCE" % (REGION, ACCOUNT)


def endpoint_not_found(stub):
    stub.add_client_error("describe_endpoints", "ResourceNotFoundFault", "Endpoint not found", http_status_code=400,
                          expected_params={"Filters": [{"Name": "endpoint-id", "Values": ["pgshift-orders-source"]}]})


def test_endpoint_created_verify_full_with_the_certificate_as_the_migration_user(stubs):

    client, stub, cw_client, cw_stub = stubs
    endpoint_not_found(stub)
    created = dict(DESCRIBED_SOURCE, SslMode="verify-full", CertificateArn=CERT_ARN)
    stub.add_response("create_endpoint", {"Endpoint": created}, {
        "EndpointIdentifier": "pgshift-orders-source", "EndpointType": "source", "EngineName": "postgres",
        "ServerName": "orders.abc.eu-west-1.rds.amazonaws.com", "Port": 5432, "DatabaseName": "orders", "Username": "pgshift",
        "Password": "Secret-1", "SslMode": "verify-full", "CertificateArn": CERT_ARN, "PostgreSQLSettings": ANY})
    stub.add_response("list_tags_for_resource", {"TagList": []}, {"ResourceArn": ENDPOINT_ARN})
    module = endpoint_module(ssl_mode=None, libpq_sslmode="verify-full", certificate_arn=CERT_ARN)
    result = dms_endpoint.run(module, common.Api(client, dms_api.HINTS, dms_api.HINTS))
    assert result["changed"] and result["endpoint"]["ssl_mode"] == "verify-full"
    assert result["endpoint"]["certificate_arn"] == CERT_ARN and "Secret-1" not in json.dumps(result)


def test_endpoint_from_libpq_disable_fails_before_any_change(stubs):

    client, stub, cw_client, cw_stub = stubs
    endpoint_not_found(stub)  # then nothing: no create_endpoint
    with pytest.raises(Failed) as failed:
        dms_endpoint.run(endpoint_module(ssl_mode=None, libpq_sslmode="disable"), common.Api(client, dms_api.HINTS, dms_api.HINTS))
    assert "never drops TLS silently" in failed.value.kwargs["msg"] and "ssl_mode none" in failed.value.kwargs["msg"]
    assert "Secret-1" not in json.dumps(failed.value.kwargs)


def test_endpoint_verify_without_certificate_fails_with_what_to_set(stubs):

    client, stub, cw_client, cw_stub = stubs
    endpoint_not_found(stub)
    with pytest.raises(Failed) as failed:
        dms_endpoint.run(endpoint_module(ssl_mode=None, libpq_sslmode="verify-ca"), common.Api(client, dms_api.HINTS, dms_api.HINTS))
    assert "verify-ca needs certificate_arn" in failed.value.kwargs["msg"]


def test_existing_endpoint_without_tls_is_moved_to_require(stubs):
    """An endpoint left at DMS's default (none) by an earlier version, the database reached with prefer: require."""

    client, stub, cw_client, cw_stub = stubs
    describe_endpoint(stub, dict(DESCRIBED_SOURCE, SslMode="none"))
    stub.add_response("modify_endpoint", {"Endpoint": DESCRIBED_SOURCE}, {"EndpointArn": ENDPOINT_ARN, "SslMode": "require"})
    stub.add_response("describe_endpoints", {"Endpoints": [DESCRIBED_SOURCE]}, {"Filters": [{"Name": "endpoint-arn", "Values": [ENDPOINT_ARN]}]})
    stub.add_response("list_tags_for_resource", {"TagList": []}, {"ResourceArn": ENDPOINT_ARN})
    result = dms_endpoint.run(endpoint_module(ssl_mode=None, libpq_sslmode="prefer"), common.Api(client, dms_api.HINTS, dms_api.HINTS))
    assert result["changed"] and result["diff"] == {"before": {"SslMode": "none"}, "after": {"SslMode": "require"}}


def test_endpoint_explicit_none_is_kept_with_a_warning(stubs):

    client, stub, cw_client, cw_stub = stubs
    describe_endpoint(stub, dict(DESCRIBED_SOURCE, SslMode="none"))
    module = endpoint_module(ssl_mode="none", libpq_sslmode="require")
    result = dms_endpoint.run(module, common.Api(client, dms_api.HINTS, dms_api.HINTS))
    assert not result["changed"]
    assert len(module.warnings) == 1 and "without TLS (ssl_mode none)" in module.warnings[0]


# -- dms_certificate -------------------------------------------------------------------------------

PEM = ("-----BEGIN CERTIFICATE-----\nMIIBszCCAVmgAwIBAgIUY29tbW9uLWNhLWZvci10ZXN0czAKBggqhkjOPQQDAjAP\n"
       "-----END CERTIFICATE-----\n")


def certificate_module(**params):
    module = FakeModule(check_mode=params.pop("check_mode", False))
    module.params = dict(dict(identifier=None, identifier_prefix="pgshift-orders-ca-", certificate_file=None,
                              certificate_pem=None, tags={"pgshift:migration": "orders"}, state="present"), **params)
    return module


def described_certificate(ident, pem=PEM, arn=CERT_ARN):
    return {"CertificateIdentifier": ident, "CertificateArn": arn, "CertificatePem": pem, "CertificateOwner": ACCOUNT,
            "CertificateCreationDate": T0, "ValidFromDate": T0, "ValidToDate": T0 + datetime.timedelta(days=3650),
            "SigningAlgorithm": "SHA384withRSA", "KeyLength": 384}


def test_certificate_imported_from_the_file_once(stubs, tmp_path):

    client, stub, cw_client, cw_stub = stubs
    bundle = tmp_path / "global-bundle.pem"
    bundle.write_text(PEM)
    ident = dms_certificates.certificate_identifier("pgshift-orders-ca-", PEM)
    stub.add_client_error("describe_certificates", "ResourceNotFoundFault", "No certificates found", http_status_code=400,
                          expected_params={"Filters": [{"Name": "certificate-id", "Values": [ident]}]})
    stub.add_response("import_certificate", {"Certificate": described_certificate(ident)}, {
        "CertificateIdentifier": ident, "CertificatePem": PEM, "Tags": [{"Key": "pgshift:migration", "Value": "orders"}]})
    result = dms_certificate.present(certificate_module(certificate_file=str(bundle)), common.Api(client, dms_api.HINTS, dms_api.HINTS))
    assert result["changed"] and result["arn"] == CERT_ARN and result["identifier"] == ident
    assert "certificate_pem" not in result["certificate"] and result["certificate"]["signing_algorithm"] == "SHA384withRSA"

    # The second run finds it by the same name and changes nothing.
    stub.add_response("describe_certificates", {"Certificates": [described_certificate(ident)]},
                      {"Filters": [{"Name": "certificate-id", "Values": [ident]}]})
    again = dms_certificate.present(certificate_module(certificate_file=str(bundle)), common.Api(client, dms_api.HINTS, dms_api.HINTS))
    assert not again["changed"] and again["arn"] == CERT_ARN


def test_certificate_check_mode_imports_nothing(stubs):

    client, stub, cw_client, cw_stub = stubs
    ident = dms_certificates.certificate_identifier("pgshift-orders-ca-", PEM)
    stub.add_response("describe_certificates", {"Certificates": []}, {"Filters": [{"Name": "certificate-id", "Values": [ident]}]})
    result = dms_certificate.present(certificate_module(certificate_pem=PEM, check_mode=True), common.Api(client, dms_api.HINTS, dms_api.HINTS))
    assert result["changed"] and result["arn"] == "(certificate %s, not imported yet)" % ident


def test_certificate_refusals(stubs, tmp_path):

    client, stub, cw_client, cw_stub = stubs
    # Not a PEM, an unreadable file: refused before any call.
    with pytest.raises(Failed, match="is not a PEM CA bundle: no -----BEGIN CERTIFICATE-----"):
        dms_certificate.present(certificate_module(certificate_pem="nothing here"), common.Api(client, dms_api.HINTS, dms_api.HINTS))
    with pytest.raises(Failed, match="cannot be read"):
        dms_certificate.present(certificate_module(certificate_file=str(tmp_path / "missing.pem")), common.Api(client, dms_api.HINTS, dms_api.HINTS))
    with pytest.raises(Failed, match="starts with a letter"):
        dms_certificate.present(certificate_module(identifier_prefix=None, identifier="rds_bundle", certificate_pem=PEM),
                                common.Api(client, dms_api.HINTS, dms_api.HINTS))
    # A named certificate holding another PEM: DMS cannot change it.
    other = PEM.replace("Y29tbW9u", "b3RoZXJz")
    stub.add_response("describe_certificates", {"Certificates": [described_certificate("rds-bundle", pem=other)]},
                      {"Filters": [{"Name": "certificate-id", "Values": ["rds-bundle"]}]})
    with pytest.raises(Failed, match="exists with another PEM"):
        dms_certificate.present(certificate_module(identifier_prefix=None, identifier="rds-bundle", certificate_pem=PEM),
                                common.Api(client, dms_api.HINTS, dms_api.HINTS))


def test_certificate_import_error_is_explained(stubs):

    client, stub, cw_client, cw_stub = stubs
    ident = dms_certificates.certificate_identifier("pgshift-orders-ca-", PEM)
    stub.add_response("describe_certificates", {"Certificates": []}, {"Filters": [{"Name": "certificate-id", "Values": [ident]}]})
    stub.add_client_error("import_certificate", "InvalidCertificateFault", "The certificate is not valid", http_status_code=400)
    with pytest.raises(common.AwsError) as err:
        dms_certificate.present(certificate_module(certificate_pem=PEM), common.Api(client, dms_api.HINTS, dms_api.HINTS))
    assert str(err.value).startswith("importing certificate %s: InvalidCertificateFault" % ident)
    assert "CA certificate bundle" in str(err.value)


def test_certificates_of_the_migration_deleted(stubs):

    client, stub, cw_client, cw_stub = stubs
    ours = dms_certificates.certificate_identifier("pgshift-orders-ca-", PEM)
    staging = dms_certificates.certificate_identifier("pgshift-orders-staging-ca-", PEM)
    other_arn = CERT_ARN.replace("CERTCERT", "OTHEROTH")
    stub.add_response("describe_certificates", {"Certificates": [described_certificate(ours)], "Marker": "m1"}, {})
    stub.add_response("describe_certificates", {"Certificates": [described_certificate(staging, arn=other_arn),
                                                                 described_certificate("rds-bundle", arn=other_arn)]},
                      {"Marker": "m1"})
    stub.add_response("delete_certificate", {"Certificate": described_certificate(ours)}, {"CertificateArn": CERT_ARN})
    result = dms_certificate.absent(certificate_module(state="absent"), common.Api(client, dms_api.HINTS, dms_api.HINTS))
    assert result["changed"] and result["deleted"] == [ours]

    stub.add_client_error("describe_certificates", "ResourceNotFoundFault", "No certificates found", http_status_code=400)
    again = dms_certificate.absent(certificate_module(state="absent"), common.Api(client, dms_api.HINTS, dms_api.HINTS))
    assert not again["changed"] and again["deleted"] == []
