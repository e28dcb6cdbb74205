"""A production-shaped lab of a benchmark's own, and the connections a benchmark makes to it.

Each lab-based benchmark (bench/assess, bench/initial_load, bench/cdc, bench/cutover) brings up a
lab of its own with `playbooks/lab_up.yml` on ports of its own and with its own `lab_root`
(`.build/bench-<name>`), from a copy of `inventories/lab` moved there by
`tests/integration/modrunner.lab_inventory` (the helper the integration tests use). So a benchmark
never touches the lab of `inventories/lab` (25432/25433/26432/25500) nor the integration tests' and
molecule scenarios' ports, and it measures the lab's shape: the master user `dbadmin` (not a
superuser), TLS `verify-full` with the lab's CA for every role but the lab's operator, a
PostgreSQL 16 source and a PostgreSQL 18 target.

Who connects how:
- what a benchmark times (playbooks, modules) connects as the inventory says (`Lab.module_login`,
  `Lab.both_args`: the master user, `ssl_mode` / `ca_cert` from the inventory; subscriptions as the
  migration user with `db_replication_*`);
- peers (pgcopydb, pg_dump/pg_restore, vacuumdb) as a DBA would on RDS: the master user over TLS
  (`Lab.uri`, `Lab.tool_env`: PGSSLMODE/PGSSLROOTCERT, the password from the lab's own password file
  `<lab_root>/pgpass`, never on a command line);
- the benchmark's own checks and resets as the lab's operator (`Lab.operator`), whose password is
  read from the inventory written here (never hard-coded);
- the application's path: PgBouncer as `app_user` (`Lab.app_env`), as the lab's load does.

Nothing here prints a password; the inventory copy (which holds the lab's passwords, as
inventories/lab does) lives in a temporary directory removed by `Lab.close()` unless the lab is kept.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.parse

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
COLLECTIONS = os.path.join(REPO, ".build", "collections")
for _path in (COLLECTIONS, os.path.join(REPO, "tests", "integration")):
    if _path not in sys.path:
        sys.path.insert(0, _path)

import jinja2  # noqa: E402  (after the path set-up)
import psycopg  # noqa: E402
import yaml  # noqa: E402

import modrunner  # noqa: E402  (tests/integration/modrunner.py: lab_inventory)

VENV_BIN = os.path.join(REPO, ".venv", "bin")
PG_BIN = dict((major, os.path.join(REPO, ".venv", "pgshift-pg", str(major), "bin")) for major in (16, 18))
RESULTS = os.path.join(REPO, "bench", "results")
# Ports of the shared lab (inventories/lab), the integration tests and the molecule scenarios: never ours.
TAKEN = frozenset((25432, 25433, 26432, 25500,  # inventories/lab
                   25442, 25443, 25444, 25445, 25446, 25447, 26442, 26444, 26446, 25510, 25511, 25512,  # molecule
                   25452, 25453, 26452, 25520))  # tests/integration/test_e2e_native.py


def log(name, msg):
    print("bench/%s: %s" % (name, msg), file=sys.stderr, flush=True)


def on_sigterm(name):
    """SIGTERM ends the benchmark through its finally blocks (streams removed, lab taken down), saying so."""
    def handler(signum, frame):  # pylint: disable=unused-argument
        log(name, "terminated (SIGTERM): cleaning up")
        sys.exit(143)
    signal.signal(signal.SIGTERM, handler)


def tail(text, n=1500):
    text = (text or "").strip()
    return text if len(text) <= n else "..." + text[-n:]


def collection_commit(root=REPO):
    """The commit the figures were measured with (and whether the product code differs from it); root: another
    checkout of the collection (a --baseline)."""
    def git(*args):
        return subprocess.run(["git", "-C", root] + list(args), capture_output=True, text=True,
                              check=False).stdout.strip()
    head = git("rev-parse", "--short", "HEAD") or "unknown"
    dirty = git("status", "--porcelain", "--", "plugins", "roles", "playbooks", "inventories")
    return head + (" (with uncommitted changes in plugins/roles/playbooks/inventories)" if dirty else "")


def ansible_env(profile=False, collections=None):
    """The environment of ansible-playbook; collections: another collections path (e.g. a baseline checkout's)."""
    env = dict(os.environ)
    env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", "")
    env.update(ANSIBLE_CONFIG=os.path.join(REPO, "ansible.cfg"), ANSIBLE_COLLECTIONS_PATH=collections or COLLECTIONS,
               ANSIBLE_NOCOLOR="1", ANSIBLE_FORCE_COLOR="0")
    if profile:
        env["ANSIBLE_CALLBACKS_ENABLED"] = "ansible.posix.profile_tasks"
        env["PROFILE_TASKS_TASK_OUTPUT_LIMIT"] = "all"
        env["PROFILE_TASKS_SORT_ORDER"] = "none"
    return env


def baseline_collections(checkout, prefix):
    """A collections path (a temporary directory) in which pgshift.aurora is `checkout`, another checkout of the
    collection (a before/after comparison on the same lab); SystemExit when it is not one."""
    import tempfile
    root = os.path.abspath(checkout)
    if not os.path.isfile(os.path.join(root, "galaxy.yml")):
        raise SystemExit("--baseline %s: not a checkout of the collection (no galaxy.yml)" % root)
    links = tempfile.mkdtemp(prefix=prefix)
    os.makedirs(os.path.join(links, "ansible_collections", "pgshift"))
    os.symlink(root, os.path.join(links, "ansible_collections", "pgshift", "aurora"))
    return links


class Lab:
    """The lab of one benchmark: name (lab_root .build/bench-<name> unless lab_root is given), ports dict(source,
    target, pgbouncer, moto), pgbench scale, migration_streams; lab_vars override the lab's settings."""

    def __init__(self, name, ports, scale, streams=2, lab_root=None, **lab_vars):
        clash = sorted(set(ports.values()) & TAKEN)
        if clash:
            raise SystemExit("bench/%s: ports %s belong to the shared lab or the tests" % (name, clash))
        self.name = name
        self.ports = dict(ports)
        self.scale = scale
        self.lab_root = os.path.abspath(lab_root) if lab_root else os.path.join(REPO, ".build", "bench-%s" % name)
        self.dir = tempfile.mkdtemp(prefix="pgshift-bench-%s-inv-" % name)
        self.inventory, reports = modrunner.lab_inventory(
            self.dir, self.ports, self.lab_root, streams=streams, lab_pgbench_scale=scale, **lab_vars)
        self.report_dir = str(reports)
        self.kept = False
        inv = os.path.dirname(self.inventory)

        def load(*parts):
            with open(os.path.join(inv, *parts), encoding="utf-8") as f:
                return yaml.safe_load(f) or {}

        self.lab = load("group_vars", "all", "lab.yml")
        self.migration = load("group_vars", "all", "migration.yml")
        context = dict(self.lab, lab_root=self.lab_root, inventory_dir=inv)
        self.source = self._render(load("host_vars", "lab-source.yml"), context)
        self.target = self._render(load("host_vars", "lab-target.yml"), context)
        self.ca = self.source["db_sslrootcert"]
        self.pgpass = os.path.join(self.lab_root, "pgpass")

    @staticmethod
    def _render(hv, context):
        """The host variables with their templates (db_sslrootcert: the lab's CA under lab_root) resolved."""
        out = {}
        for key, value in hv.items():
            if isinstance(value, str) and "{{" in value:
                value = jinja2.Environment().from_string(value).render(**context)
            out[key] = value
        return out

    def side(self, side):
        return self.source if side == "source" else self.target

    # ------------------------------------------------------------ playbooks ----

    def playbook(self, playbook, *extra, check=True, profile=False, log=None, collections=None):
        """ansible-playbook with this lab's inventory; (rc, seconds, output). playbook: a file in playbooks/ or
        pgshift.aurora.<name>. check: raise on a non-zero exit (with the output's tail: no_log keeps passwords
        out of it). collections: run the roles and modules of another checkout (baseline_collections)."""
        path = playbook if playbook.startswith("pgshift.") else os.path.join(REPO, "playbooks", playbook)
        cmd = [os.path.join(os.path.dirname(sys.executable), "ansible-playbook"), "-i", self.inventory, path]
        start = time.monotonic()
        proc = subprocess.run(cmd + list(extra), cwd=REPO, env=ansible_env(profile, collections), stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True, check=False)
        seconds = time.monotonic() - start
        if log:
            with open(log, "w", encoding="utf-8") as f:
                f.write(proc.stdout)
        if check and proc.returncode != 0:
            raise RuntimeError("%s failed (rc %d):\n%s" % (playbook, proc.returncode, tail(proc.stdout, 4000)))
        return proc.returncode, seconds, proc.stdout

    def up(self):
        """A fresh lab: lab_down (whatever an earlier run left) then lab_up at this scale."""
        log(self.name, "lab of its own: ports %s, lab_root %s, pgbench scale %d" % (
            self.ports, os.path.relpath(self.lab_root, REPO), self.scale))
        self.playbook("lab_down.yml")
        self.playbook("lab_up.yml")
        return self

    def close(self, keep=False):
        """lab_down and the inventory copy removed; with keep, both left and where they are printed."""
        if keep:
            self.kept = True
            log(self.name, "lab kept: ansible-playbook -i %s playbooks/lab_down.yml takes it down" % self.inventory)
            return
        self.playbook("lab_down.yml", check=False)
        shutil.rmtree(self.dir, ignore_errors=True)

    # ---------------------------------------------------------- connections ----

    def operator(self, side, dbname=None):
        """The lab's operator (its only superuser, plain TCP on loopback): the benchmark's own checks and
        resets, never what it times. Its password comes from the inventory written for this lab."""
        return psycopg.connect(host="127.0.0.1", port=self.ports[side], dbname=dbname or self.side(side)["db_name"],
                               user=self.lab["lab_operator_user"], password=self.lab["lab_operator_password"],
                               sslmode="disable", autocommit=True, connect_timeout=10)

    def admin(self, side, dbname=None):
        """The master user as the inventory says (verify-full with the lab's CA)."""
        hv = self.side(side)
        return psycopg.connect(host=hv["db_host"], port=hv["db_port"], dbname=dbname or hv["db_name"],
                               user=hv["db_admin_user"], password=hv["db_admin_password"], sslmode=hv["db_sslmode"],
                               sslrootcert=hv["db_sslrootcert"], autocommit=True, connect_timeout=10)

    def module_login(self, side, prefix=""):
        """A module's connection options for one side, as the roles build them from the inventory."""
        hv = self.side(side)
        return {prefix + "login_host": hv["db_host"], prefix + "login_port": hv["db_port"],
                prefix + "login_db": hv["db_name"], prefix + "login_user": hv["db_admin_user"],
                prefix + "login_password": hv["db_admin_password"], prefix + "ssl_mode": hv["db_sslmode"],
                prefix + "ca_cert": hv["db_sslrootcert"], prefix + "connect_timeout": 10}

    def both_args(self):
        """Source (login_*) and target (target_login_*) options of a two-sided module."""
        return dict(self.module_login("source"), **self.module_login("target", "target_"))

    def replication_args(self):
        """How the target server's subscriptions reach the source (pg_native_stream), as replicate.yml passes it:
        the migration user, db_replication_* of the source (module_utils/replication_conn.peer_connection)."""
        from ansible_collections.pgshift.aurora.plugins.module_utils.replication_conn import peer_connection
        peer = peer_connection(self.source, "lab-source")
        args = dict(source_replication_user=self.source["db_user"],
                    source_replication_password=self.source["db_password"], source_host=peer["host"],
                    source_port=peer["port"], source_ssl_mode=peer["sslmode"])
        if peer["sslrootcert"]:
            args["source_ssl_root_cert"] = peer["sslrootcert"]
        return args

    def uri(self, side, dbname=None):
        """A peer's connection URI: the master user over TLS as the inventory says, no password (libpq reads
        the lab's password file, tool_env)."""
        hv = self.side(side)
        query = urllib.parse.urlencode(dict(sslmode=hv["db_sslmode"], sslrootcert=hv["db_sslrootcert"]))
        return "postgres://%s@%s:%s/%s?%s" % (urllib.parse.quote(hv["db_admin_user"], safe=""), hv["db_host"],
                                              hv["db_port"], urllib.parse.quote(dbname or hv["db_name"], safe=""),
                                              query)

    def tool_env(self, **extra):
        """Environment of a peer's client tools: TLS verify-full with the lab's CA and the lab's password file
        (PGPASSFILE), never a password on a command line or in the environment."""
        env = dict(os.environ)
        for key in ("PGPASSWORD", "PGUSER", "PGHOST", "PGPORT", "PGDATABASE", "PGSERVICE"):
            env.pop(key, None)
        env.update(PGPASSFILE=self.pgpass, PGSSLMODE=self.source["db_sslmode"], PGSSLROOTCERT=self.ca)
        env.update(extra)
        return env

    def app_env(self):
        """The application's path (PgBouncer as app_user, no TLS between client and PgBouncer, as the lab's
        load connects): the lab's password file."""
        env = self.tool_env(PGSSLMODE="disable")
        env.pop("PGSSLROOTCERT", None)
        return env

    def app_conninfo(self):
        sw = self.migration["traffic_switch_pgbouncer"]
        return dict(host=sw["host"], port=sw["port"], dbname=sw["database"], user=self.lab["lab_app_user"],
                    password=self.lab["lab_app_password"], sslmode="disable", prepare_threshold=None,
                    connect_timeout=10)

    def connections(self, peers=True, application=True):
        """What the JSON says about who connected how (no password). peers: True (the client tools' way), a text,
        or False (none); application: whether the benchmark runs the application's load."""
        out = dict(
            timed_phases_and_modules="%s (master user, not a superuser) sslmode=%s sslrootcert=<lab_root>/tls/ca.crt; "
                                     "subscriptions as %s" % (self.source["db_admin_user"], self.source["db_sslmode"],
                                                              self.source["db_user"]),
            benchmark_checks="the lab's operator %s (plain TCP on loopback)" % self.lab["lab_operator_user"])
        if peers:
            out["peers"] = peers if isinstance(peers, str) else (
                "%s over TLS (PGSSLMODE=%s, PGSSLROOTCERT=<lab_root>/tls/ca.crt, the lab's password file)" % (
                    self.source["db_admin_user"], self.source["db_sslmode"]))
        if application:
            out["application"] = "PgBouncer as %s" % self.lab["lab_app_user"]
        return out


def parse_ports(text):
    """dict(source, target, pgbouncer, moto) from "S,T,B,M" (a second instance of a benchmark on ports of its
    own); SystemExit on anything else."""
    try:
        values = [int(p) for p in text.split(",")]
    except ValueError:
        values = []
    if len(values) != 4 or len(set(values)) != 4 or not all(1024 < p < 65536 for p in values):
        raise SystemExit("--ports takes four different ports: source,target,pgbouncer,moto (got %r)" % text)
    return dict(zip(("source", "target", "pgbouncer", "moto"), values))


def machine():
    """What a result file says about the machine: cores, memory, CPU model, kernel, load average now."""
    import platform
    info = dict(cores=os.cpu_count(), kernel=platform.release(), load_average=[round(x, 2) for x in os.getloadavg()])
    try:
        with open("/proc/meminfo", encoding="utf-8") as f:
            kb = int([ln for ln in f if ln.startswith("MemTotal:")][0].split()[1])
        info["memory_gb"] = round(kb / 1024.0 / 1024.0, 1)
    except (OSError, IndexError, ValueError):
        info["memory_gb"] = None
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            info["cpu"] = [ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")][0]
    except (OSError, IndexError):
        info["cpu"] = None
    return info


def write_result(name, out, started, out_dir=None):
    """Write a benchmark's result to bench/results/<name>/<UTC start>-<short commit>.json (tracked in git) and
    return its path. The file says what it measured with: commit, machine, command line, start (added when the
    caller has not). Two runs started in the same minute: the second's name keeps its seconds."""
    import datetime
    commit = out.get("commit") or collection_commit()
    out.setdefault("commit", commit)
    out.setdefault("machine", machine())
    script = os.path.relpath(os.path.abspath(sys.argv[0]), REPO)
    out.setdefault("command", ("python %s %s" % (script, " ".join(sys.argv[1:]))).strip())
    out.setdefault("started_utc", started.astimezone(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"))
    directory = out_dir or os.path.join(RESULTS, name)
    os.makedirs(directory, exist_ok=True)
    stamp = started.astimezone(datetime.timezone.utc)
    path = os.path.join(directory, "%s-%s.json" % (stamp.strftime("%Y%m%dT%H%M"), commit.split()[0]))
    if os.path.exists(path):
        path = os.path.join(directory, "%s-%s.json" % (stamp.strftime("%Y%m%dT%H%M%S"), commit.split()[0]))
    with open(path, "w", encoding="utf-8") as f:
        json.dump(out, f, indent=1, sort_keys=True, default=str)  # default: timestamps and the like as text
        f.write("\n")
    return path


def server_version(conn):
    return conn.execute("SELECT current_setting('server_version')").fetchone()[0]
