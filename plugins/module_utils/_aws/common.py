# -*- coding: utf-8 -*-
# Copyright: pgshift.aurora contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The one AWS session and error layer: the shared options, a boto3 client honouring endpoint_url, calls
retried on throttling only (full-jitter backoff), and every botocore error turned into one AwsError whose
message says what failed, the AWS code and message, and what to do. One module per service sits on it
(_aws/dms.py, _aws/rds.py, _aws/route53.py); decisions live in module_utils, never here."""

from __future__ import annotations

import random
import time
import traceback

try:
    import boto3
    import botocore
    from botocore.config import Config
except ImportError:  # pragma: no cover - reported through missing_required_lib
    boto3 = botocore = Config = None
    BOTO3_IMPORT_ERROR = traceback.format_exc()
else:
    BOTO3_IMPORT_ERROR = None

THROTTLING_CODES = frozenset((
    "Throttling", "ThrottlingException", "ThrottledException", "RequestThrottledException", "RequestThrottled",
    "TooManyRequestsException", "RequestLimitExceeded", "ProvisionedThroughputExceededException", "SlowDown",
    "PriorRequestNotComplete",
))
# Hints every service shares; a service module adds its own (its permissions, its not-found codes).
HINTS = {
    "UnrecognizedClientException": "check the AWS credentials",
    "InvalidClientTokenId": "check the AWS credentials",
}
# amazon.aws's names for the same options, accepted as aliases (a playbook written for amazon.aws works unchanged).
ALIASES = dict(aws_region="region", aws_endpoint_url="endpoint_url", aws_access_key="access_key",
               aws_secret_key="secret_key", aws_session_token="session_token", aws_profile="profile")


def aws_argument_spec(aliases=True):
    """The AWS options (doc fragment pgshift.aurora.aws), with amazon.aws's names as aliases unless aliases=False
    (a module documenting the options itself, without them)."""
    spec = dict(
        aws_region=dict(type="str"),
        aws_endpoint_url=dict(type="str"),
        aws_access_key=dict(type="str", no_log=False),
        aws_secret_key=dict(type="str", no_log=True),
        aws_session_token=dict(type="str", no_log=True),
        aws_profile=dict(type="str"),
    )
    if aliases:
        for name, alias in ALIASES.items():
            spec[name]["aliases"] = [alias]
    return spec


class AwsError(Exception):
    """An AWS call failed; the message says what to do and holds no secret. code: the AWS error code, if any."""

    def __init__(self, msg, code=None):
        super().__init__(msg)
        self.code = code


def client(service, params):
    """A boto3 client honouring aws_endpoint_url (moto in the lab and the tests).

    params: aws_region, aws_endpoint_url, aws_access_key, aws_secret_key, aws_session_token, aws_profile.
    botocore's own retries are off: Api.call retries throttling only; any other error is reported at once.
    """
    session = boto3.session.Session(
        profile_name=params.get("aws_profile") or None,
        aws_access_key_id=params.get("aws_access_key") or None,
        aws_secret_access_key=params.get("aws_secret_key") or None,
        aws_session_token=params.get("aws_session_token") or None,
        region_name=params.get("aws_region") or None,
    )
    config = Config(retries=dict(total_max_attempts=1, mode="standard"), user_agent_extra="pgshift.aurora")
    return session.client(service, endpoint_url=params.get("aws_endpoint_url") or None, config=config)


def error_code(exc):
    if botocore is not None and isinstance(exc, botocore.exceptions.ClientError):
        return exc.response.get("Error", {}).get("Code", "")
    return ""


def backoff_delay(attempt, rand, base=0.5, cap=20.0):
    """Full jitter: a random delay between 0 and min(cap, base * 2**attempt) (pure apart from rand)."""
    return rand() * min(cap, base * (2 ** attempt))


def explain(exc, doing, hints=None):
    """'<doing>: <code>: <message> (<what to do>)' for a botocore failure (pure apart from reading the exception).

    hints: {AWS error code: what to do} of the service, over the shared HINTS.
    """
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
            if len(message) > 300 or message.lstrip().startswith("<"):  # an HTML error page, not a message
                message = "HTTP %s" % status
            hint = (hints or {}).get(code) or HINTS.get(code)
            if hint is None:
                hint = "throttled too long: run again later" if code in THROTTLING_CODES else "see the AWS error"
            return "%s: %s: %s (%s)" % (doing, code, message, hint)
    return "%s: %s" % (doing, exc)


def end_run(module, run, doing):
    """Ends a module's run with run()'s result (exit_json): an AWS error fails with its code, any other error
    (botocore's configuration errors: profile, region) with what to do about it (explain)."""
    try:
        result = run()
    except AwsError as exc:
        module.fail_json(msg=str(exc), error_code=exc.code)
    except Exception as exc:  # pylint: disable=broad-except  # botocore configuration errors (profile, region) end here
        module.fail_json(msg=explain(exc, doing))
    module.exit_json(**result)


def is_aws_error(exc):
    return botocore is not None and isinstance(exc, (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError))


class Api:
    """Calls on one boto3 client: throttling retried with full-jitter backoff, any other botocore error raised
    as AwsError (explain() with the service's hints)."""

    def __init__(self, client_, hints=None, sleep=time.sleep, rand=random.random, attempts=8):
        self.client = client_
        self.hints = hints or {}
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
                if is_aws_error(exc):
                    raise AwsError(explain(exc, doing or operation, self.hints), code) from None
                raise

    def pages(self, operation, key, doing=None, **kwargs):
        """Items of a Marker-paginated describe call (DMS, RDS)."""
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
