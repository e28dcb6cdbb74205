"""The psql relay's pure parts: command line, environment, row count, estimates."""

from __future__ import annotations

import os

import pytest

from ansible_collections.pgshift.aurora.plugins.module_utils._pg import loader

PARAMS = dict(login_host="db.example", login_port=5433, login_db="app", login_user="mig", login_password="s3cret!",
              ssl_mode="verify-full", ca_cert="/etc/ca.pem", connect_timeout=7)


def test_relay_env_carries_the_connection_and_the_command_line_never_the_password(monkeypatch):
    monkeypatch.setenv("PGSERVICE", "other")  # an operator's libpq settings must not redirect the relay
    env = loader.relay_env(PARAMS, "pgshift load pgshift_m_s1")
    assert env["PGHOST"] == "db.example" and env["PGPORT"] == "5433" and env["PGDATABASE"] == "app"
    assert env["PGUSER"] == "mig" and env["PGPASSWORD"] == "s3cret!" and env["PGSSLMODE"] == "verify-full"
    assert env["PGSSLROOTCERT"] == "/etc/ca.pem" and env["PGCONNECT_TIMEOUT"] == "7"
    assert env["PGAPPNAME"] == "pgshift load pgshift_m_s1" and "PGSERVICE" not in env
    argv = loader.relay_command("/usr/bin/psql", ["BEGIN", "COPY t FROM STDIN", "COMMIT"])
    assert "s3cret!" not in " ".join(argv)
    assert argv[:6] == ["/usr/bin/psql", "--no-psqlrc", "--quiet", "--set", "ON_ERROR_STOP=1", "--no-align"]
    assert argv[-6:] == ["--command", "BEGIN", "--command", "COPY t FROM STDIN", "--command", "COMMIT"]


def test_row_count_comes_from_the_copy_tag_and_its_absence_is_an_error():
    assert loader._copied_rows(b"SET\nBEGIN\nTRUNCATE TABLE\nCOPY 5000000\nCOMMIT\n") == 5000000
    with pytest.raises(loader.RelayError):
        loader._copied_rows(b"SET\nBEGIN\n")


def test_progress_rows_are_estimated_from_bytes_until_the_end():
    unit = dict(est_rows=1000, est_bytes=10000)
    assert loader._rows_estimate(unit, 5000) == 500
    assert loader._rows_estimate(unit, 50000) == 1000
    assert loader._rows_estimate(dict(est_rows=0, est_bytes=0), 5000) == 0


def test_find_psql_takes_the_given_one_or_none(tmp_path):
    fake = tmp_path / "psql"
    fake.write_text("#!/bin/sh\n")
    assert loader.find_psql(str(tmp_path / "missing")) is None
    os.chmod(fake, 0o755)
    assert loader.find_psql(str(fake)) == str(fake)
