"""The AWS layer's pure parts: jittered backoff, polling (module_utils/_aws/common.py)."""

from __future__ import annotations

from ansible_collections.pgshift.aurora.plugins.module_utils._aws import common


def test_backoff_is_jittered_and_capped():
    assert common.backoff_delay(0, lambda: 1.0) == 0.5
    assert common.backoff_delay(3, lambda: 1.0) == 4.0
    assert common.backoff_delay(10, lambda: 1.0) == 20.0
    assert common.backoff_delay(10, lambda: 0.0) == 0.0


def test_poll_until_verdict_or_timeout():
    now = [0.0]
    slept = []

    def sleep(seconds):
        slept.append(seconds)
        now[0] += seconds

    values = iter([1, 2, 3])
    assert common.poll(lambda: next(values), lambda v: "ok" if v == 3 else None, 100, 8, sleep=sleep, clock=lambda: now[0]) == ("ok", 3)
    assert slept == [1.0, 2.0]
    slept.clear()
    assert common.poll(lambda: 0, lambda v: None, 10, 8, sleep=sleep, clock=lambda: now[0]) == (None, 0)
    assert sum(slept) == 10 and max(slept) <= 8


def test_end_run_ends_with_the_result_or_says_the_aws_error_and_its_code():
    from botocore.exceptions import NoRegionError

    from ansible_collections.pgshift.aurora.plugins.plugin_utils.in_process import InProcessModule, ModuleExit

    def ended(run):
        try:
            common.end_run(InProcessModule({}), run, "endpoint e1")
        except ModuleExit as done:
            return done.result
        raise AssertionError("end_run returned without ending the run")

    assert ended(lambda: dict(changed=True, arn="a"))["arn"] == "a"

    def throttled():
        raise common.AwsError("endpoint e1: Throttling after 8 tries", code="ThrottlingException")

    result = ended(throttled)
    assert (result["failed"], result["msg"], result["error_code"]) == (
        True, "endpoint e1: Throttling after 8 tries", "ThrottlingException")

    def no_region():
        raise NoRegionError()

    result = ended(no_region)
    assert result["failed"] is True and "endpoint e1" in result["msg"] and "region" in result["msg"]
