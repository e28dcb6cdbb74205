"""PostgreSQL's client tools (_pg/tools.py): finding pg_dump/pg_restore of the right major version, their command
lines (never a password on them), running them, the pgpass file. Fake tools are small shell scripts."""

from __future__ import annotations

import os
import stat

import pytest

from ansible_collections.pgshift.aurora.plugins.module_utils._pg import tools

PARAMS = dict(login_host="db.example", login_port=5433, login_db="app", login_user="dbadmin",
              login_password="s3cr:et", ssl_mode="verify-full", ca_cert="/etc/ca.pem", connect_timeout=7)


def fake_bin(tmp_path, name, major):
    d = tmp_path / name
    d.mkdir()
    for tool in ("pg_dump", "pg_restore"):
        path = d / tool
        path.write_text("#!/bin/sh\necho '%s (PostgreSQL) %d.2'\n" % (tool, major))
        path.chmod(path.stat().st_mode | stat.S_IEXEC)
    return str(d)


def test_an_explicit_bin_dir_of_another_major_version_is_used_with_a_warning(tmp_path):
    d = fake_bin(tmp_path, "pg17", 17)
    assert tools.find_bin_dir(d, 17, 15) == (d, 17, [])
    found, major, warnings = tools.find_bin_dir(d, 18, 15)
    assert (found, major) == (d, 17) and "the target runs PostgreSQL 18" in warnings[0]
    with pytest.raises(tools.ToolError, match="cannot dump the source's PostgreSQL 18"):
        tools.find_bin_dir(d, 18, 18)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(tools.ToolError, match="has no working pg_dump and pg_restore"):
        tools.find_bin_dir(str(empty), 18, 15)


def test_without_bin_dir_the_first_candidate_of_the_targets_major_version(tmp_path, monkeypatch):
    old, right = fake_bin(tmp_path, "old", 16), fake_bin(tmp_path, "right", 18)
    monkeypatch.setattr(tools, "candidate_bin_dirs", lambda major: [str(tmp_path / "none"), old, right])
    assert tools.find_bin_dir(None, 18, 16) == (right, 18, [])
    with pytest.raises(tools.ToolError) as missing:
        tools.find_bin_dir(None, 17, 16)
    assert "no pg_dump/pg_restore of PostgreSQL 17" in str(missing.value) and "%s (16)" % old in str(missing.value)


def test_command_lines_hold_no_password():
    dump = tools.schema_dump_argv("/pg/bin", PARAMS, "/tmp/x/schema.dump", 60000)
    assert dump[:3] == ["/pg/bin/pg_dump", "--schema-only", "--format=custom"]
    assert "--lock-wait-timeout=60000" in dump and "--no-publications" in dump
    assert dump[-8:] == ["--host", "db.example", "--port", "5433", "--username", "dbadmin", "--dbname", "app"]
    restore = tools.restore_list_argv("/pg/bin", PARAMS, "/tmp/x/restore.list", "/tmp/x/schema.dump")
    assert restore[:5] == ["/pg/bin/pg_restore", "--use-list", "/tmp/x/restore.list", "--single-transaction",
                           "--exit-on-error"]
    assert tools.list_argv("/pg/bin", "/tmp/x/schema.dump") == ["/pg/bin/pg_restore", "--list", "--verbose",
                                                                "/tmp/x/schema.dump"]
    for argv in (dump, restore):
        assert "s3cr:et" not in tools.shown(argv)


def test_a_failing_tool_says_its_last_lines_masked(tmp_path):
    script = tmp_path / "tool"
    script.write_text("#!/bin/sh\necho out\nfor i in $(seq 1 30); do echo \"line $i s3cr:et\" >&2; done\nexit 3\n")
    script.chmod(0o755)
    env = tools.tool_env(PARAMS, "/tmp/pgpass")
    with pytest.raises(tools.ToolError) as failed:
        tools.run([str(script)], env, "pg_dump of the source", lambda text: text.replace("s3cr:et", "********"))
    message = str(failed.value)
    assert message.startswith("pg_dump of the source failed (exit 3): line 6 ********")
    assert message.endswith("line 30 ********") and "s3cr:et" not in message
    ok = tmp_path / "ok"
    ok.write_text("#!/bin/sh\necho listing\n")
    ok.chmod(0o755)
    assert tools.run([str(ok)], env, "pg_restore --list") == "listing\n"
    assert env["PGPASSFILE"] == "/tmp/pgpass" and env["PGSSLMODE"] == "verify-full" and "PGPASSWORD" not in env


def test_the_pgpass_file_is_private_escaped_and_removed():
    with tools.PgPass([("db.example", 5433, "app", "dbadmin", "s3cr:et"), ("/tmp/sock", 5432, "app", "x", None)]) as pp:
        assert stat.S_IMODE(os.stat(pp.path).st_mode) == 0o600
        with open(pp.path) as f:
            assert f.read() == "db.example:5433:*:dbadmin:s3cr\\:et\n"
    assert not os.path.exists(pp.path)
