"""Run a module of this collection for real, as Ansible does with the local connection (the inventory
contract): its action plugin's code path, in a process forked from this one as Ansible forks a worker for each
task. The options are checked against the module's spec (types, choices, defaults, the constraints between
options), the module's runner runs with check mode and diff as given, no_log values are masked, and the result
comes back as the JSON a module prints (plugins/plugin_utils/in_process.py).

PGSHIFT_TEST_MODULE_PROCESS=1 runs every module as its own Python process instead (the module's main(), with
AnsibleModule: what any other connection runs); tests/integration/test_module_process.py compares both on every
module. Playbook-level behaviour is covered by the molecule scenarios and the playbook tests.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import re
import select
import signal
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
COLLECTIONS = os.path.join(REPO, ".build", "collections")


def run_module(name, args, check_mode=False, diff=False, verbosity=0):
    """Returns (result dict, raw output): the module run as its action plugin runs it with the local connection,
    or as its own process with PGSHIFT_TEST_MODULE_PROCESS=1."""
    if os.environ.get("PGSHIFT_TEST_MODULE_PROCESS") == "1":
        return run_module_process(name, args, check_mode=check_mode, diff=diff, verbosity=verbosity)
    return run_module_in_process(name, args, check_mode=check_mode, diff=diff)


def run_module_in_process(name, args, check_mode=False, diff=False, timeout=300):
    """The module's result as its action plugin computes it in Ansible's worker (in_process.module_result), in a
    child forked from this process (nothing a run leaves behind reaches the next test), through a pipe; raw is
    the JSON text, what the task result would carry."""
    from ansible_collections.pgshift.aurora.plugins.plugin_utils import in_process  # pylint: disable=import-outside-toplevel

    action = importlib.import_module("ansible_collections.pgshift.aurora.plugins.action." + name).ActionModule
    if action.library_error:
        raise AssertionError("module %s needs a library this Python lacks: %s" % (name, action.library_error))
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        status = 1
        try:
            os.close(read_fd)
            devnull = os.open(os.devnull, os.O_RDWR)
            os.dup2(devnull, 0)
            os.dup2(devnull, 1)  # never onto this worker's channel (pytest-xdist talks over stdio)
            result = in_process.module_result(action.spec(), args, action.runner, check_mode=check_mode, diff=diff,
                                              name="pgshift.aurora." + name)
            with os.fdopen(write_fd, "wb") as out:
                out.write(json.dumps(result).encode())
            status = 0
        finally:
            os._exit(status)  # pylint: disable=protected-access
    os.close(write_fd)
    chunks, deadline = [], time.monotonic() + timeout
    with os.fdopen(read_fd, "rb") as pipe:
        while True:
            ready = select.select([pipe], [], [], max(0.0, deadline - time.monotonic()))[0]
            if not ready:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
                raise AssertionError("module %s did not end within %d s" % (name, timeout))
            chunk = os.read(pipe.fileno(), 1 << 16)
            if not chunk:
                break
            chunks.append(chunk)
    status = os.waitpid(pid, 0)[1]
    raw = b"".join(chunks).decode()
    if status != 0 or not raw:
        raise AssertionError("module %s ended without a result (exit status %d): %r" % (name, status, raw))
    return json.loads(raw), raw


def run_module_process(name, args, check_mode=False, diff=False, verbosity=0):
    """The module as its own Python process (its main(), AnsibleModule), fed its arguments as JSON; returns
    (result dict, raw stdout+stderr)."""
    payload = dict(args)
    payload["_ansible_check_mode"] = check_mode
    payload["_ansible_diff"] = diff
    payload["_ansible_verbosity"] = verbosity
    path = os.path.join(REPO, "plugins", "modules", name + ".py")
    env = dict(os.environ)
    env["PYTHONPATH"] = COLLECTIONS + os.pathsep + env.get("PYTHONPATH", "")
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(dict(ANSIBLE_MODULE_ARGS=payload), f)
        argfile = f.name
    try:
        proc = subprocess.run([sys.executable, path, argfile], capture_output=True, text=True, env=env, timeout=300,
                              check=False)
    finally:
        os.unlink(argfile)
    raw = proc.stdout + proc.stderr
    start = proc.stdout.find("{")
    if start < 0:
        raise AssertionError("module %s printed no JSON:\n%s" % (name, raw))
    result = json.loads(proc.stdout[start:])
    return result, raw


RECAP = re.compile(r"^localhost\s*:\s*ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)", re.M)


def run_playbook(playbook, inventory, *args, cwd=REPO, secrets=(), timeout=900):
    """ansible-playbook as a DBA runs it; returns (rc, output, recap dict or None).

    playbook: a path or a pgshift.aurora.<name>. Fails the test when any of secrets appears in
    the output.
    """
    env = dict(os.environ, ANSIBLE_CONFIG=os.path.join(REPO, "ansible.cfg"),
               ANSIBLE_COLLECTIONS_PATH=COLLECTIONS, ANSIBLE_NOCOLOR="1", ANSIBLE_FORCE_COLOR="0", PY_COLORS="0")
    cmd = [os.path.join(REPO, ".venv", "bin", "ansible-playbook"), "-i", inventory, playbook] + list(args)
    proc = subprocess.run(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          timeout=timeout, check=False)
    out = proc.stdout
    for secret in secrets:
        assert secret not in out, "a password appears in the output of %s" % " ".join(cmd)
    m = RECAP.search(out)
    recap = dict(zip(("ok", "changed", "unreachable", "failed"), map(int, m.groups()))) if m else None
    return proc.returncode, out, recap


def lab_playbook(inventory, name, *extra, secrets=(), check=True):
    """run_playbook on a lab test's inventory; with check, a non-zero exit fails the test with the output's end."""
    rc, out, recap = run_playbook(name, inventory, *extra, secrets=secrets)
    if check and rc != 0:
        raise AssertionError("%s failed (rc %d):\n%s" % (name, rc, out[-6000:]))
    return rc, out, recap


@contextlib.contextmanager
def running_lab(directory, ports, lab_root, secrets=(), **lab_vars):
    """A lab of a test module's own (lab_inventory's copy in directory, on its ports and lab_root), taken down
    first in case an earlier run left it up, then up; yields dict(inventory, reports). Always taken down after
    (its load stopped first). An empty `ports` dict is filled here with free loopback ports (free_lab_ports),
    so the module's PORTS hold them while the lab runs."""
    if not ports:
        ports.update(free_lab_ports())
    inventory, reports = lab_inventory(directory, ports, lab_root, **lab_vars)
    lab_playbook(inventory, "playbooks/lab_down.yml", secrets=secrets)
    lab_playbook(inventory, "playbooks/lab_up.yml", secrets=secrets)
    try:
        yield dict(inventory=inventory, reports=reports)
    finally:
        lab_playbook(inventory, "playbooks/lab_load.yml", "-e", "lab_load_state=stopped", secrets=secrets, check=False)
        lab_playbook(inventory, "playbooks/lab_down.yml", secrets=secrets, check=False)


def wait_streams_caught_up(src, timeout=60):
    """Until every pgshift_ slot of the source (a connection) confirmed the source's WAL position read now."""
    import time

    lsn = src.execute("SELECT pg_current_wal_lsn()").fetchone()[0]
    deadline = time.time() + timeout
    while time.time() < deadline:
        behind = src.execute("SELECT count(*) FROM pg_replication_slots WHERE slot_name LIKE 'pgshift\\_%%' "
                             "AND (confirmed_flush_lsn IS NULL OR confirmed_flush_lsn < %s)", (lsn,)).fetchone()[0]
        if behind == 0:
            return
        time.sleep(0.2)
    raise AssertionError("the streams did not confirm %s within %ds" % (lsn, timeout))


def free_lab_ports():
    """dict(source, target, pgbouncer, moto): free loopback ports for a lab of a test module's own, so no
    second run, running lab or other suite collides with it."""
    from pgcluster import free_ports

    return dict(zip(("source", "target", "pgbouncer", "moto"), free_ports(4)))


def lab_inventory(directory, ports, lab_root, streams=2, **lab_vars):
    """A copy of inventories/lab in `directory` moved to ports of its own (source, target, pgbouncer, moto),
    a lab_root of its own and reports under directory/reports; lab_vars override the lab's settings.
    Returns (inventory path, reports directory as a pathlib.Path)."""
    import pathlib
    import shutil

    import yaml

    lab = os.path.join(REPO, "inventories", "lab")
    reports = os.path.join(str(directory), "reports")
    shutil.copy(os.path.join(lab, "hosts.yml"), os.path.join(str(directory), "hosts.yml"))
    os.makedirs(os.path.join(str(directory), "host_vars"))
    for host, side in (("lab-source", "source"), ("lab-target", "target")):
        with open(os.path.join(lab, "host_vars", host + ".yml")) as f:
            hv = yaml.safe_load(f)
        hv["db_port"] = ports[side]
        with open(os.path.join(str(directory), "host_vars", host + ".yml"), "w") as f:
            yaml.safe_dump(hv, f)
    group = os.path.join(str(directory), "group_vars", "all")
    os.makedirs(group)
    with open(os.path.join(lab, "group_vars", "all", "migration.yml")) as f:
        mig = yaml.safe_load(f)
    mig["traffic_switch_pgbouncer"]["port"] = ports["pgbouncer"]
    mig["aws_endpoint_url"] = "http://127.0.0.1:%d" % ports["moto"]
    mig["report_dir"] = reports
    mig["migration_streams"] = streams
    with open(os.path.join(group, "migration.yml"), "w") as f:
        yaml.safe_dump(mig, f)
    with open(os.path.join(lab, "group_vars", "all", "lab.yml")) as f:
        labvars = yaml.safe_load(f) or {}
    labvars.update(lab_root=lab_root, **lab_vars)
    with open(os.path.join(group, "lab.yml"), "w") as f:
        yaml.safe_dump(labvars, f)
    return os.path.join(str(directory), "hosts.yml"), pathlib.Path(reports)


def lab_vars():
    """The lab inventory's users and passwords: dict(source=host_vars, target=host_vars, lab=group_vars lab.yml,
    migration=group_vars migration.yml)."""
    import yaml

    lab = os.path.join(REPO, "inventories", "lab")

    def load(*parts):
        with open(os.path.join(lab, *parts)) as f:
            return yaml.safe_load(f) or {}

    return dict(source=load("host_vars", "lab-source.yml"), target=load("host_vars", "lab-target.yml"),
                lab=load("group_vars", "all", "lab.yml"), migration=load("group_vars", "all", "migration.yml"))


def lab_secrets():
    """Every password of the lab inventory: none may appear in any output or report."""
    v = lab_vars()
    return tuple(sorted({v["source"]["db_password"], v["source"]["db_admin_password"], v["target"]["db_password"],
                         v["target"]["db_admin_password"], v["lab"]["lab_operator_password"],
                         v["lab"]["lab_app_password"], v["migration"]["traffic_switch_pgbouncer"]["admin_password"]}))


def lab_operator(port, dbname="app"):
    """The lab's operator (its only superuser, plain TCP on loopback): for a test's own checks, never a phase's."""
    import psycopg

    v = lab_vars()["lab"]
    return psycopg.connect(host="127.0.0.1", port=port, dbname=dbname, user=v["lab_operator_user"],
                           password=v["lab_operator_password"], sslmode="disable", autocommit=True)


def physical_tables(conn):
    """Every table that holds rows of its own in the database's user schemas: (schema, name), sorted.

    Partition leaves and inheritance children count on their own (each read with ONLY), partitioned parents
    hold none; unlogged and temporary tables (never replicated) and the pgshift schema are left out. A test
    that moves data compares all of these, not only the ones a plan chose."""
    return [tuple(r) for r in conn.execute(
        "SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE c.relkind = 'r' AND c.relpersistence = 'p' AND n.nspname NOT IN ('pg_catalog', 'information_schema', "
        "'pgshift') AND n.nspname NOT LIKE 'pg\\_%' ORDER BY 1, 2").fetchall()]


def table_rows(conn, schema, name):
    """The rows of ONLY schema.name as text, sorted (duplicates kept)."""
    from psycopg import sql

    return [r[0] for r in conn.execute(sql.SQL("SELECT t::text FROM ONLY {}.{} t ORDER BY 1").format(
        sql.Identifier(schema), sql.Identifier(name)))]


def assert_same_rows(src, tgt, min_tables=1):
    """Every physical table of the source, row by row, equal on the target; returns how many were compared."""
    tables = physical_tables(src)
    assert len(tables) >= min_tables, tables
    missing = sorted(set(tables) - set(physical_tables(tgt)))
    assert not missing, "tables missing on the target: %r" % missing
    for schema, name in tables:
        assert table_rows(src, schema, name) == table_rows(tgt, schema, name), "%s.%s differs" % (schema, name)
    return len(tables)


def log_leaks(paths, secrets, subscription_secrets=()):
    """Lines of server logs that hold a secret. subscription_secrets may appear in a CREATE/ALTER SUBSCRIPTION
    statement only: PostgreSQL takes a subscription's password in the statement's connection string (logged
    with log_statement=all), the one exception there is."""
    found = []
    for path in paths:
        with open(path, errors="replace") as f:
            for line in f:
                for secret in secrets:
                    if secret and secret in line:
                        allowed = secret in subscription_secrets and ("CREATE SUBSCRIPTION" in line
                                                                      or "ALTER SUBSCRIPTION" in line)
                        if not allowed:
                            found.append("%s: %s" % (os.path.basename(path), line.replace(secret, "<SECRET>")[:300]))
    return found
