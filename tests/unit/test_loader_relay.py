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


def _pipe_through(data, monkeypatch=None, no_splice=False, on_block=None):
    """data written into one pipe, relayed into another by loader.relay, read back (threads feed and drain)."""
    import threading
    if no_splice and monkeypatch is not None:
        monkeypatch.delattr(os, "splice", raising=False)
    src_r, src_w = os.pipe()
    dst_r, dst_w = os.pipe()
    out = bytearray()

    def feed():
        with os.fdopen(src_w, "wb") as f:
            f.write(data)

    def drain():
        with os.fdopen(dst_r, "rb") as f:
            out.extend(f.read())

    threads = [threading.Thread(target=feed), threading.Thread(target=drain)]
    for t in threads:
        t.start()
    seen = []
    try:
        total = loader.relay(src_r, dst_w, on_block or seen.append, block=64 * 1024)
    finally:
        os.close(src_r)
        os.close(dst_w)
        for t in threads:
            t.join()
    return total, bytes(out), seen


@pytest.mark.parametrize("no_splice", [False, True], ids=["splice", "read-write"])
def test_relay_moves_every_byte_in_order_and_reports_the_running_total(monkeypatch, no_splice):
    data = os.urandom(3 * 1024 * 1024 + 17)
    total, out, seen = _pipe_through(data, monkeypatch, no_splice=no_splice)
    assert total == len(data) and out == data
    assert seen and seen == sorted(seen) and seen[-1] == len(data)


def test_relay_stops_when_the_callback_raises(monkeypatch):
    class Stop(Exception):
        pass

    def stop_after_first(total):
        raise Stop()

    src_r, src_w = os.pipe()
    dst_r, dst_w = os.pipe()
    os.write(src_w, b"x" * 1000)  # the source stays open: without the stop, relay would wait for more
    try:
        with pytest.raises(Stop):
            loader.relay(src_r, dst_w, stop_after_first)
        assert os.read(dst_r, 4096) == b"x" * 1000  # the block moved before the callback stopped it
    finally:
        for fd in (src_r, src_w, dst_r, dst_w):
            os.close(fd)


@pytest.mark.parametrize("no_splice", [False, True], ids=["splice", "read-write"])
def test_relay_raises_broken_pipe_when_the_target_side_is_gone(monkeypatch, no_splice):
    if no_splice:
        monkeypatch.delattr(os, "splice", raising=False)
    src_r, src_w = os.pipe()
    dst_r, dst_w = os.pipe()
    os.close(dst_r)  # the target's psql ended
    os.write(src_w, b"y" * 4096)
    os.close(src_w)
    try:
        with pytest.raises(BrokenPipeError):
            loader.relay(src_r, dst_w, lambda total: None)
    finally:
        os.close(src_r)
        os.close(dst_w)
