"""roles/lab/files/lab_shape.py `cluster`: what it does to a cluster on a first, a second and a changed run.

pg_ctl and initdb are small scripts here that act on the data directory as the real ones do for this purpose
(PG_VERSION, postgresql.conf, a running flag) and log their calls; the lab's integration test (test_lab.py)
runs the real ones.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys

import pytest

LAB_SHAPE = os.path.join(os.path.dirname(__file__), "..", "..", "roles", "lab", "files", "lab_shape.py")

PG_CTL = """#!/bin/sh
echo "pg_ctl $1" >> "{log}"
data=$3
case $1 in
  status) [ -f "$data/PG_VERSION" ] || exit 4; [ -f "$data/running" ] && exit 0; exit 3 ;;
  start|restart) touch "$data/running" ;;
esac
"""
INITDB = """#!/bin/sh
echo "initdb $*" >> "{log}"
for a in "$@"; do
  case $a in
    --pgdata=*) data=${{a#--pgdata=}} ;;
    --pwfile=*) pw=${{a#--pwfile=}} ;;
  esac
done
[ "$(cat "$pw")" = "operator secret" ] || {{ echo "wrong password file"; exit 1; }}
echo 18 > "$data/PG_VERSION"
printf '# the default settings\\n' > "$data/postgresql.conf"
"""


@pytest.fixture
def lab(tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    log = tmp_path / "calls.log"
    for name, text in (("pg_ctl", PG_CTL), ("initdb", INITDB)):
        path = bin_dir / name
        path.write_text(text.format(log=log))
        path.chmod(path.stat().st_mode | stat.S_IEXEC)
    spec = dict(name="source", bin_dir=str(bin_dir), data_dir=str(tmp_path / "source"),
                log_file=str(tmp_path / "source.log"), run_as=[], os_user=None, operator_user="postgres",
                operator_password="operator secret", locale="C.UTF-8", settings="port = 5432\n",
                hba="local all all peer\n", include_line="include 'pgshift_lab.conf'", wait_timeout=5,
                check_mode=False)

    def run(**changes):
        if log.exists():
            log.unlink()
        proc = subprocess.run([sys.executable, LAB_SHAPE, "cluster"], input=json.dumps(dict(spec, **changes)),
                              capture_output=True, text=True, check=False)
        calls = log.read_text().splitlines() if log.exists() else []
        return proc.returncode, json.loads(proc.stdout), [c.split()[0] + " " + c.split()[1] for c in calls]

    return dict(run=run, data=tmp_path / "source", root=tmp_path)


def test_first_run_makes_and_starts_the_cluster_and_leaves_no_password_file(lab):
    rc, out, calls = lab["run"]()
    assert rc == 0, out
    assert out == dict(changed=True, actions=["initdb", "write settings", "include the settings from postgresql.conf",
                                              "write pg_hba.conf", "start"])
    assert calls[0] == "pg_ctl status" and calls[1].startswith("initdb --pgdata=") and calls[2] == "pg_ctl start"
    data = lab["data"]
    assert (data / "pgshift_lab.conf").read_text() == "port = 5432\n"
    assert (data / "postgresql.conf").read_text() == "# the default settings\ninclude 'pgshift_lab.conf'\n"
    assert (data / "pg_hba.conf").read_text() == "local all all peer\n"
    assert stat.S_IMODE(os.stat(data).st_mode) == 0o700
    assert [p.name for p in lab["root"].iterdir() if "initdb-pw" in p.name] == []
    assert "operator secret" not in json.dumps(out)


def test_second_run_changes_nothing(lab):
    lab["run"]()
    rc, out, calls = lab["run"]()
    assert (rc, out, calls) == (0, dict(changed=False, actions=[]), ["pg_ctl status"])


def test_changed_settings_restart_a_running_cluster_and_start_a_stopped_one(lab):
    lab["run"]()
    rc, out, calls = lab["run"](settings="port = 5433\n")
    assert out == dict(changed=True, actions=["write settings", "restart"])
    assert calls == ["pg_ctl status", "pg_ctl restart"]
    assert (lab["data"] / "pgshift_lab.conf").read_text() == "port = 5433\n"
    os.unlink(lab["data"] / "running")
    rc, out, calls = lab["run"](settings="port = 5433\n", hba="local all all trust\n")
    assert out == dict(changed=True, actions=["write pg_hba.conf", "start"])
    assert calls == ["pg_ctl status", "pg_ctl start"]


def test_check_mode_says_what_it_would_do_and_does_nothing(lab):
    rc, out, calls = lab["run"](check_mode=True)
    assert out["changed"] and out["actions"][0] == "initdb" and out["actions"][-1] == "start"
    assert calls == ["pg_ctl status"] and not lab["data"].exists()
    lab["run"]()
    rc, out, calls = lab["run"](check_mode=True, settings="port = 5433\n")
    assert out == dict(changed=True, actions=["write settings", "restart"])
    assert calls == ["pg_ctl status"]
    assert (lab["data"] / "pgshift_lab.conf").read_text() == "port = 5432\n"


def test_a_failed_step_is_said_without_the_password(lab):
    rc, out, calls = lab["run"](operator_password="something else")
    assert rc == 1 and out["failed"]
    assert out["msg"].startswith("initdb failed (exit 1): wrong password file")
    assert "something else" not in json.dumps(out)
    assert [p.name for p in lab["root"].iterdir() if "initdb-pw" in p.name] == []


# ------------------------------------------------------------------------------------------------
# stop
# ------------------------------------------------------------------------------------------------

def stop(processes, **spec):
    proc = subprocess.run([sys.executable, LAB_SHAPE, "stop"], input=json.dumps(dict(spec, processes=processes)),
                          capture_output=True, text=True, check=False)
    return proc.returncode, json.loads(proc.stdout)


@pytest.fixture
def sleeper(tmp_path):
    """A running `sleep` with its pid file, killed after the test if still there."""
    proc = subprocess.Popen(["sleep", "300"])
    pidfile = tmp_path / "sleep.pid"
    pidfile.write_text("%d\n" % proc.pid)
    yield proc, pidfile
    proc.kill()
    proc.wait()


def test_stop_signals_waits_and_removes_the_pid_file(sleeper, tmp_path):
    proc, pidfile = sleeper
    stale = tmp_path / "stale.pid"
    stale.write_text("999999999\n")
    rc, out = stop([dict(label="sleeper", pidfile=str(pidfile), match="^sleep 300$", signal="TERM"),
                    dict(label="gone", pidfile=str(stale), match="x", signal="TERM"),
                    dict(label="never started", pidfile=str(tmp_path / "none.pid"), match="x", signal="TERM")],
                   timeout=10)
    assert (rc, out) == (0, dict(changed=True, stopped=["sleeper", "gone (pid file)"]))
    assert proc.poll() is not None or open("/proc/%d/stat" % proc.pid).read().split(")")[1].split()[0] == "Z"
    assert not pidfile.exists() and not stale.exists()
    assert stop([dict(label="sleeper", pidfile=str(pidfile), match="sleep", signal="TERM")]) == (
        0, dict(changed=False, stopped=[]))


def test_stop_leaves_a_process_whose_command_line_does_not_match(sleeper):
    proc, pidfile = sleeper
    rc, out = stop([dict(label="pgbouncer", pidfile=str(pidfile), match="pgbouncer", signal="TERM")], timeout=5)
    assert out == dict(changed=True, stopped=["pgbouncer (pid file)"])
    assert proc.poll() is None  # a reused pid is never signalled


def test_stop_in_check_mode_says_what_it_would_stop(sleeper):
    proc, pidfile = sleeper
    rc, out = stop([dict(label="sleeper", pidfile=str(pidfile), match="sleep", signal="TERM")], check_mode=True)
    assert out == dict(changed=True, stopped=["sleeper"])
    assert proc.poll() is None and pidfile.exists()


def test_stop_fails_loudly_when_the_process_outlives_the_timeout(sleeper):
    proc, pidfile = sleeper
    rc, out = stop([dict(label="sleeper", pidfile=str(pidfile), match="sleep", signal="CONT")], timeout=0.3)
    expected = "sleeper (pid %d) still runs 0.3 s after SIGCONT" % proc.pid
    assert rc == 1 and out["failed"] and out["msg"].startswith(expected)
