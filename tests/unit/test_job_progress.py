"""The progress line of the job_progress action plugin."""

from __future__ import annotations

from ansible_collections.pgshift.aurora.plugins.action.job_progress import progress_line


def test_progress_line_shows_rows_rate_percent_and_eta():
    line = progress_line("validation", dict(rows=1500000, rows_expected=5000000, rows_per_second=750000.0,
                                            eta_seconds=4.7, percent=30.0), 2.0)
    assert line.startswith("[0:00:02] validation: 1,500,000/~5,000,000 rows")
    assert "30.0%" in line and "750,000 rows/s" in line and "ETA 0:00:05" in line


def test_progress_line_before_the_first_write():
    assert progress_line("validation", None, 1.0) == "[0:00:01] validation: starting"


def test_async_job_status_reads_a_job_file_as_async_status_does(tmp_path):
    from ansible_collections.pgshift.aurora.plugins.module_utils import progress

    job = tmp_path / "123.456"
    assert progress.async_job_status(str(job))["failed"] is True
    job.write_text('{"started": 1, "finished": 0, "ansible_job_id": "123.456"}')
    assert not progress.async_job_status(str(job))["finished"]
    job.write_text('{"started": 1')  # being written
    assert progress.async_job_status(str(job)) == {"finished": False}
    job.write_text('{"changed": false, "verdict": "GO"}')
    assert progress.async_job_status(str(job)) == {"changed": False, "verdict": "GO", "finished": True}


def test_progress_line_with_another_unit_counts_exactly():
    line = progress_line("schema copy (stage post)", {"unit": "objects", "rows": 12, "rows_expected": 34,
                                                      "percent": 35.3, "rows_per_second": 2.4, "eta_seconds": 9.2,
                                                      "phase": "indexes"}, 5.0)
    assert line == "[0:00:05] schema copy (stage post): 12/34 objects  35.3% 2.40 objects/s ETA 0:00:09 indexes"


class _Connection:
    def __init__(self, transport):
        self.transport = transport


class _Action:
    """What JobReader uses of an ActionBase: resolving "~" through the connection is counted (for the local
    connection it starts a shell each time)."""

    def __init__(self, transport, home):
        self._connection = _Connection(transport)
        self.home = home
        self.expands = 0
        self.modules = []

    def get_shell_option(self, name, default=None):
        assert name == "async_dir"
        return default

    def _remote_expand_user(self, path):
        self.expands += 1
        return path.replace("~", self.home, 1)

    def _execute_module(self, module_name, module_args, task_vars):
        self.modules.append((module_name, module_args, task_vars))
        return dict(finished=0, started=1)


def test_job_reader_resolves_the_async_dir_once_and_reads_local_job_files(tmp_path):
    from ansible_collections.pgshift.aurora.plugins.plugin_utils.async_jobs import JobReader

    (tmp_path / ".ansible_async").mkdir()
    job = tmp_path / ".ansible_async" / "1.2"
    job.write_text('{"started": 1, "finished": 0, "ansible_job_id": "1.2"}')
    action = _Action("ansible.builtin.local", str(tmp_path))
    reader = JobReader(action, {})
    assert reader.local
    for check in range(5):
        assert not reader.status("1.2")["finished"], check
    job.write_text('{"changed": true, "rows": 3}')
    assert reader.status("1.2") == {"changed": True, "rows": 3, "finished": True}
    assert reader.status("9.9")["failed"] is True  # no such job
    assert action.expands == 1 and action.modules == []


def test_job_reader_runs_async_status_over_another_connection():
    from ansible_collections.pgshift.aurora.plugins.plugin_utils.async_jobs import JobReader

    action = _Action("ssh", "/home/dba")
    reader = JobReader(action, {"x": 1})
    assert not reader.local
    reader.status("1.2")
    reader.status("1.2")
    assert action.expands == 1
    assert action.modules == [("ansible.legacy.async_status", {"jid": "1.2", "_async_dir": "/home/dba/.ansible_async"},
                               {"x": 1})] * 2
