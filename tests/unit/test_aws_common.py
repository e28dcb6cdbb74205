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
