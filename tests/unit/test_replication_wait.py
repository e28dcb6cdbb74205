"""The pg_replication_wait action's pure parts: a finished job's own result, and when it reads the status itself."""

from __future__ import annotations

from ansible_collections.pgshift.aurora.plugins.action.pg_replication_wait import (
    CHECK_SECONDS, LocalStatus, job_result, poll_delay, print_due)


def test_job_result_is_the_modules_own_result_with_its_item():
    item = {"name": "pgshift_m_s1", "tables": []}
    status = {"finished": 1, "started": 1, "ansible_job_id": "j1.2", "results_file": "/x/j1.2", "stdout": "",
              "stderr": "", "invocation": {"module_args": {"login_password": "secret"}}, "changed": True,
              "load": {"rows": 10}, "stream": "pgshift_m_s1"}
    out = job_result(status, item)
    assert out == {"changed": True, "load": {"rows": 10}, "stream": "pgshift_m_s1", "item": item}


def test_job_result_is_none_while_the_job_runs():
    assert job_result({"finished": 0, "started": 1}, {"name": "s1"}) is None


def test_failed_job_keeps_its_message():
    out = job_result({"finished": 1, "failed": True, "msg": "the slot exists"}, None)
    assert out == {"failed": True, "msg": "the slot exists", "item": None}


def test_local_status_only_for_options_the_module_accepts():
    good = dict(migration="m", login_host="127.0.0.1", target_login_host="127.0.0.1")
    reader = LocalStatus.for_args(good)
    assert reader is not None
    assert reader.reader.p["max_lag_bytes"] == 1048576  # the module's defaults applied
    assert reader.reader.source_params()["login_host"] == "127.0.0.1"
    # What the module would refuse is left to the module, which says what is wrong.
    assert LocalStatus.for_args(dict(good, barrier_lsn="not-an-lsn")) is None
    assert LocalStatus.for_args(dict(good, bogus_option=1)) is None
    assert LocalStatus.for_args(dict(login_host="127.0.0.1")) is None  # migration missing


def test_local_status_says_a_connection_failure_without_the_password():
    reader = LocalStatus.for_args(dict(migration="m", login_host="127.0.0.1", login_port=1, connect_timeout=1,
                                       login_password="s3cret-pw", target_login_host="127.0.0.1"))
    out = reader.poll()
    assert out["failed"] is True and out["msg"]
    assert "s3cret-pw" not in out["msg"]
    assert reader.conns is None


def test_read_in_process_without_jobs_every_half_second_whatever_the_interval():
    assert CHECK_SECONDS == 0.5
    assert [poll_delay(n, 5, quick=True) for n in (1, 2, 5, 100)] == [0.5, 0.5, 0.5, 0.5]
    assert poll_delay(3, 0.2, quick=True) == 0.2  # a shorter interval wins


def test_module_runs_or_watched_jobs_ramp_up_to_the_interval():
    assert [poll_delay(n, 5, quick=False) for n in (1, 2, 3, 4, 5, 6)] == [0.5, 1, 2, 4, 5, 5]
    assert poll_delay(0, 5, quick=False) == 0.5


def test_lines_every_interval_and_at_the_end():
    # quick reads: printed once the interval passed, and the read that ends the wait
    assert print_due(10.0, 10.0, done=False, quick=True)
    assert not print_due(12.0, 15.0, done=False, quick=True)
    assert print_due(12.0, 15.0, done=True, quick=True)
    # reads at the interval's pace: every one printed
    assert print_due(12.0, 15.0, done=False, quick=False)
