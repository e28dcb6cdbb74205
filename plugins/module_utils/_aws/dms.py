# -*- coding: utf-8 -*-
# Copyright: pgshift.aurora contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""AWS DMS and CloudWatch calls: clients, throttling retries, lookups, polling. Decisions live in module_utils/dms.py."""

from __future__ import annotations

import datetime
import json
import random
import time

from ansible.module_utils.common.dict_transformations import camel_dict_to_snake_dict

from ansible_collections.pgshift.aurora.plugins.module_utils import dms as decide
from ansible_collections.pgshift.aurora.plugins.module_utils._aws import rds as rds_api

try:
    import botocore
except ImportError:  # pragma: no cover - reported through missing_required_lib
    botocore = None

THROTTLING_CODES = frozenset((
    "Throttling", "ThrottlingException", "ThrottledException", "RequestThrottledException", "RequestThrottled",
    "TooManyRequestsException", "RequestLimitExceeded", "ProvisionedThroughputExceededException", "SlowDown",
))
BOTO3_IMPORT_ERROR = rds_api.BOTO3_IMPORT_ERROR
# amazon.aws's names for the same options, accepted as aliases (a playbook written for amazon.aws works unchanged).
AWS_ALIASES = dict(aws_region=["region"], aws_endpoint_url=["endpoint_url"], aws_access_key=["access_key"],
                   aws_secret_key=["secret_key"], aws_session_token=["session_token"], aws_profile=["profile"])


def aws_argument_spec():
    """The AWS options of pg_logical_prereqs (module_utils/_aws/rds.py), with amazon.aws's names as aliases."""
    spec = rds_api.aws_argument_spec()
    for name, aliases in AWS_ALIASES.items():
        spec[name] = dict(spec[name], aliases=list(aliases))
    return spec


NOT_FOUND_CODES = frozenset(("ResourceNotFoundFault", "ResourceNotFoundException"))


class DmsError(Exception):
    """An AWS call failed; the message says what to do and holds no secret."""

    def __init__(self, msg, code=None):
        super().__init__(msg)
        self.code = code


def make_client(service, params):
    """A boto3 client honouring aws_endpoint_url (moto in tests). botocore's own retries are off:

    Api.call retries throttling only, with jittered backoff; a server error is reported at once.
    """
    return rds_api.client(service, params, retries=dict(total_max_attempts=1, mode="standard"))


def error_code(exc):
    if botocore is not None and isinstance(exc, botocore.exceptions.ClientError):
        return exc.response.get("Error", {}).get("Code", "")
    return ""


def backoff_delay(attempt, rand, base=0.5, cap=20.0):
    """Full jitter: a random delay between 0 and min(cap, base * 2**attempt) (pure apart from rand)."""
    return rand() * min(cap, base * (2 ** attempt))


HINTS = {
    "AccessDeniedException": "grant the IAM permissions dms:* on the migration's resources (and cloudwatch:GetMetricStatistics)",
    "AccessDeniedFault": "grant the IAM permissions dms:* on the migration's resources (and cloudwatch:GetMetricStatistics)",
    "AccessDenied": "grant the IAM permissions dms:* on the migration's resources (and cloudwatch:GetMetricStatistics)",
    "InvalidResourceStateFault": "the resource is busy (creating, modifying, running or deleting): wait and run again",
    "ResourceAlreadyExistsFault": "another resource has this identifier: pick another or adopt it",
    "ResourceNotFoundFault": "check the identifier or ARN and aws_region",
    "ResourceQuotaExceededFault": "raise the DMS quota or delete unused resources",
    "InsufficientResourceCapacityFault": "try another instance_class or availability zone",
    "StorageQuotaExceededFault": "raise the DMS storage quota or lower allocated_storage",
    "InvalidSubnet": "check the subnet group's subnets",
    "ReplicationSubnetGroupDoesNotCoverEnoughAZs": "the subnet group needs subnets in at least two availability zones",
    "KMSKeyNotAccessibleFault": "check kms_key_id and the key policy",
    "InvalidCertificateFault": "DMS does not accept this PEM: give the CA certificate bundle (PEM, certificates only)",
    "UnrecognizedClientException": "check the AWS credentials",
    "InvalidClientTokenId": "check the AWS credentials",
}


def explain(exc, doing):
    """An actionable message for a failure (pure apart from reading the exception)."""
    if botocore is not None:
        if isinstance(exc, botocore.exceptions.NoCredentialsError):
            return "%s: no AWS credentials found: set aws_access_key/aws_secret_key, aws_profile or an instance role" % doing
        if isinstance(exc, botocore.exceptions.NoRegionError):
            return "%s: no AWS region: set aws_region" % doing
        if isinstance(exc, botocore.exceptions.EndpointConnectionError):
            return "%s: cannot reach the AWS endpoint (%s): check aws_endpoint_url / aws_region and the network" % (doing, exc)
        if isinstance(exc, botocore.exceptions.ClientError):
            err = exc.response.get("Error", {})
            code = err.get("Code", "")
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            message = err.get("Message", "")
            if len(message) > 300 or message.lstrip().startswith("<"):
                message = "HTTP %s" % status
            hint = HINTS.get(code)
            if hint is None:
                hint = "throttled too long: run again later" if code in THROTTLING_CODES else "see the AWS error"
            return "%s: %s: %s (%s)" % (doing, code, message, hint)
        if isinstance(exc, botocore.exceptions.BotoCoreError):
            return "%s: %s" % (doing, exc)
    return "%s: %s" % (doing, exc)


class Api:
    """Calls on one boto3 client: throttling retried with full-jitter backoff, anything else raised as DmsError."""

    def __init__(self, client, sleep=time.sleep, rand=random.random, attempts=8):
        self.client = client
        self.sleep = sleep
        self.rand = rand
        self.attempts = attempts
        self.throttled = 0

    def call(self, operation, doing=None, **kwargs):
        attempt = 0
        while True:
            try:
                return getattr(self.client, operation)(**kwargs)
            except Exception as exc:  # botocore raises many classes; classified below
                code = error_code(exc)
                if code in THROTTLING_CODES and attempt + 1 < self.attempts:
                    self.throttled += 1
                    self.sleep(backoff_delay(attempt, self.rand))
                    attempt += 1
                    continue
                if botocore is not None and isinstance(exc, (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError)):
                    raise DmsError(explain(exc, doing or operation), code) from None
                raise

    def pages(self, operation, key, doing=None, **kwargs):
        """Items of a Marker-paginated DMS describe call."""
        items = []
        marker = None
        while True:
            args = dict(kwargs)
            if marker:
                args["Marker"] = marker
            resp = self.call(operation, doing=doing, **args)
            items.extend(resp.get(key) or [])
            marker = resp.get("Marker")
            if not marker:
                return items


def _describe(api, operation, key, filter_name, value, doing):
    try:
        return api.pages(operation, key, doing=doing, Filters=[dict(Name=filter_name, Values=[value])])
    except DmsError as exc:
        if exc.code in NOT_FOUND_CODES:  # the real service answers "not found" for an empty filter result
            return []
        raise


def is_arn(value):
    return str(value).startswith("arn:")


def find_instance(api, ident):
    name = "replication-instance-arn" if is_arn(ident) else "replication-instance-id"
    found = _describe(api, "describe_replication_instances", "ReplicationInstances", name, ident,
                      "describing replication instance %s" % ident)
    return found[0] if found else None


def find_endpoint(api, ident):
    name = "endpoint-arn" if is_arn(ident) else "endpoint-id"
    found = _describe(api, "describe_endpoints", "Endpoints", name, ident, "describing endpoint %s" % ident)
    return found[0] if found else None


def find_task(api, ident):
    name = "replication-task-arn" if is_arn(ident) else "replication-task-id"
    found = _describe(api, "describe_replication_tasks", "ReplicationTasks", name, ident,
                      "describing replication task %s" % ident)
    return found[0] if found else None


def find_certificate(api, ident):
    name = "certificate-arn" if is_arn(ident) else "certificate-id"
    found = _describe(api, "describe_certificates", "Certificates", name, ident, "describing certificate %s" % ident)
    return found[0] if found else None


def all_certificates(api):
    try:
        return api.pages("describe_certificates", "Certificates", doing="listing certificates")
    except DmsError as exc:
        if exc.code in NOT_FOUND_CODES:
            return []
        raise


def all_tasks(api):
    try:
        return api.pages("describe_replication_tasks", "ReplicationTasks", doing="listing replication tasks")
    except DmsError as exc:
        if exc.code in NOT_FOUND_CODES:
            return []
        raise


def list_tags(api, arn):
    resp = api.call("list_tags_for_resource", doing="reading the tags of %s" % arn, ResourceArn=arn)
    return dict((t["Key"], t.get("Value", "")) for t in resp.get("TagList") or [])


def apply_tags(api, arn, add, remove):
    if remove:
        api.call("remove_tags_from_resource", doing="removing tags from %s" % arn, ResourceArn=arn, TagKeys=sorted(remove))
    if add:
        api.call("add_tags_to_resource", doing="tagging %s" % arn, ResourceArn=arn,
                 Tags=[dict(Key=k, Value=str(v)) for k, v in sorted(add.items())])


def table_statistics(api, task_arn):
    return api.pages("describe_table_statistics", "TableStatistics",
                     doing="reading the table statistics of %s" % task_arn, ReplicationTaskArn=task_arn)


def cdc_latency(cw_api, instance_id, task_id, now=None, minutes=10):
    """Latest CDCLatencySource / CDCLatencyTarget averages (seconds) over the last minutes; None without datapoints."""
    now = now or datetime.datetime.now(datetime.timezone.utc)
    dims = [dict(Name="ReplicationInstanceIdentifier", Value=instance_id),
            dict(Name="ReplicationTaskIdentifier", Value=task_id)]
    out = {}
    for key, metric in (("source_seconds", "CDCLatencySource"), ("target_seconds", "CDCLatencyTarget")):
        resp = cw_api.call("get_metric_statistics", doing="reading CloudWatch AWS/DMS %s" % metric, Namespace="AWS/DMS",
                           MetricName=metric, Dimensions=dims, StartTime=now - datetime.timedelta(minutes=minutes),
                           EndTime=now + datetime.timedelta(minutes=1), Period=60, Statistics=["Average"])
        points = sorted(resp.get("Datapoints") or [], key=lambda p: p["Timestamp"])
        out[key] = float(points[-1]["Average"]) if points else None
    return out


def poll(fetch, evaluate, timeout, interval, sleep=time.sleep, clock=time.monotonic):
    """Calls fetch() until evaluate(value) returns a verdict other than None, or timeout seconds pass.

    Returns (verdict, last value); verdict None means the timeout passed. The first polls come sooner
    (interval / 8, doubling) so a short wait does not last a whole interval longer than needed.
    """
    deadline = clock() + timeout
    delay = max(0.05, interval / 8.0)
    while True:
        value = fetch()
        verdict = evaluate(value)
        if verdict is not None:
            return verdict, value
        if clock() >= deadline:
            return None, value
        sleep(max(0.0, min(delay, deadline - clock())))
        delay = min(interval, delay * 2)


def task_result(raw):
    """The task in snake_case, table mappings and settings parsed (their own keys kept as the service spells them)."""
    task = dict((k, v) for k, v in raw.items() if k not in ("TableMappings", "ReplicationTaskSettings"))
    out = camel_dict_to_snake_dict(task)
    for key, field in (("table_mappings", "TableMappings"), ("task_settings", "ReplicationTaskSettings")):
        try:
            out[key] = json.loads(raw[field]) if raw.get(field) else None
        except ValueError:
            out[key] = raw.get(field)
    return out


def instance_identifier(api, instance_arn, cache):
    if instance_arn not in cache:
        inst = find_instance(api, instance_arn)
        cache[instance_arn] = inst.get("ReplicationInstanceIdentifier") if inst else None
    return cache[instance_arn]


def task_report(api, cw_api, raw, warn, cache):
    """task, table_statistics, progress and cdc_latency for one described task.

    Table statistics exist once the task has started; CDC latency only for a task with CDC. A failure
    to read either is a warning (through warn), not an error: the task's own state is what counts.
    """
    ident = raw.get("ReplicationTaskIdentifier")
    rows = []
    if decide.ever_started(raw) and raw.get("Status") not in ("creating", "deleting"):
        try:
            rows = [decide.table_row(s) for s in table_statistics(api, raw["ReplicationTaskArn"])]
        except DmsError as exc:
            warn("table statistics of %s not available: %s" % (ident, exc))
    latency = dict(source_seconds=None, target_seconds=None)
    if raw.get("MigrationType") in ("cdc", "full-load-and-cdc") and decide.ever_started(raw) and cw_api is not None:
        try:
            instance_id = instance_identifier(api, raw.get("ReplicationInstanceArn"), cache)
            if instance_id:
                latency = cdc_latency(cw_api, instance_id, ident)
        except DmsError as exc:
            warn("CDC latency of %s not available from CloudWatch: %s" % (ident, exc))
    out = task_result(raw)
    return dict(task=out, table_statistics=rows, progress=decide.progress(rows, raw), cdc_latency=latency)
