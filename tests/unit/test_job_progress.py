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
