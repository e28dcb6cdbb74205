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
