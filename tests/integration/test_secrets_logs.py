"""Passwords appear nowhere: not in module output (-vvv, check mode `queries`, failures), not in what
the servers log with ``log_statement = all``.

Two clusters shaped like RDS (source 16) and Aurora (target 18) log every statement, every
replication command and the statement of every error. The migration password holds ``\\ ' " $``,
spaces and ``%`` around a token that any escaping of it would keep (``TOKEN``): the test looks for
the token, so a quoted, doubled or backslashed copy is found too.

Each phase is a function ``phase(ctx)`` in ``PHASES`` that runs modules (``ctx.module``,
``ctx.prereqs``) or playbooks (``ctx.playbook``, on an inventory of the two clusters) through
``ctx`` -- which keeps every output; the reports are read too -- and may assert on the databases. One test per phase, in
order, on the same clusters; each ends with ``ctx.assert_clean()`` over every output and both
server logs so far. To cover another phase (a native stream, a cutover), write its function and
add it to ``PHASES``.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile

import psycopg
import pytest
import yaml
from psycopg import sql

from modrunner import COLLECTIONS, run_module, run_playbook
from pgcluster import ADMIN_PASSWORD, MASTER_PASSWORD, MASTER_USER, Cluster, ca_cert, pg16_bin_dir, wheel_bin_dir

sys.path.insert(0, COLLECTIONS)
from ansible_collections.pgshift.aurora.plugins.module_utils import scram  # noqa: E402

TOKEN = "Zq9xK7tok"
MIGRATION_PASSWORD = "mig \\ ' \" $ %% %s %% end" % TOKEN
MIGRATION_USER = "Mig User ü"
DATABASE = "secrets app"
# The playbook phases work on a database and a migration user of their own.
PLAYBOOK_USER = "pb user é"
PLAYBOOK_DATABASE = "secrets playbooks"

LOG_EVERYTHING = dict(
    log_statement="all",
    log_min_error_statement="info",
    log_replication_commands="on",
    log_connections="on",
    log_error_verbosity="verbose",
)


class LoggingCluster(Cluster):
    """A cluster (RDS-shaped) that logs every statement to its log file."""

    def __init__(self, bin_dir, name):
        super().__init__(bin_dir, settings=LOG_EVERYTHING, name=name)

    @property
    def log_path(self):
        return os.path.join(self.root, "log")

    def log_text(self):
        with open(self.log_path, encoding="utf-8", errors="replace") as f:
            return f.read()


class Context:
    """What the phases share: the clusters, and every output any phase produced."""

    def __init__(self, source, target):
        self.source = source
        self.target = target
        self.outputs = []  # (label, text)
        self.tmp = tempfile.mkdtemp(prefix="pgshift-it-secrets-")
        self.reports = os.path.join(self.tmp, "reports")
        # The exact secrets (the module output must hold none) and the token (found in any escaping).
        self.secrets = (MIGRATION_PASSWORD, MASTER_PASSWORD, ADMIN_PASSWORD)

    def module(self, label, name, params, check_mode=False, verbosity=4):
        result, raw = run_module(name, params, check_mode=check_mode, verbosity=verbosity)
        self.outputs.append((label, raw))
        return result

    def playbook(self, label, playbook, *args):
        """ansible-playbook pgshift.aurora.<playbook> on the inventory of the two clusters (PLAYBOOK_DATABASE)."""
        rc, out, recap = run_playbook("pgshift.aurora.%s" % playbook, self.inventory(), *args, cwd=self.tmp,
                                      timeout=600)
        self.outputs.append((label, out))
        return rc, out, recap

    def inventory(self):
        path = os.path.join(self.tmp, "hosts.yml")
        if os.path.exists(path):
            return path
        os.makedirs(os.path.join(self.tmp, "host_vars"))
        os.makedirs(os.path.join(self.tmp, "group_vars", "all"))
        hosts = dict(all=dict(
            vars=dict(ansible_connection="local", ansible_python_interpreter="{{ ansible_playbook_python }}"),
            children=dict(source=dict(hosts={"secrets-source": None}), target=dict(hosts={"secrets-target": None}))))
        with open(path, "w") as f:
            yaml.safe_dump(hosts, f)
        for host, cluster in (("secrets-source", self.source), ("secrets-target", self.target)):
            with open(os.path.join(self.tmp, "host_vars", host + ".yml"), "w") as f:
                yaml.safe_dump(dict(db_host="127.0.0.1", db_port=cluster.port, db_name=PLAYBOOK_DATABASE,
                                    db_user=PLAYBOOK_USER, db_password=MIGRATION_PASSWORD,
                                    db_admin_user=MASTER_USER, db_admin_password=MASTER_PASSWORD,
                                    db_sslmode="verify-full", db_sslrootcert=ca_cert()), f)
        with open(os.path.join(self.tmp, "group_vars", "all", "migration.yml"), "w") as f:
            yaml.safe_dump(dict(migration_name="it_secrets", migration_engine="native", migration_streams=1,
                                migration_replica_identity_full=["app.nokey"], traffic_switch="none",
                                report_dir=self.reports), f)
        return path

    def prereqs(self, label, cluster, role, check_mode=False, **options):
        params = cluster.module_params(DATABASE, role=role, migration_user=MIGRATION_USER,
                                       migration_password=MIGRATION_PASSWORD, fail_on="never",
                                       write_rate_sample_seconds=0.1, **options)
        return self.module(label, "pg_logical_prereqs", params, check_mode=check_mode)

    def texts(self):
        yield from self.outputs
        yield "source server log", self.source.log_text()
        yield "target server log", self.target.log_text()
        if os.path.isdir(self.reports):
            for name in sorted(os.listdir(self.reports)):
                with open(os.path.join(self.reports, name), encoding="utf-8") as f:
                    yield "report %s" % name, f.read()

    def assert_clean(self):
        for label, text in self.texts():
            assert TOKEN not in text, "the migration password (or an escaped copy) is in: %s" % label
            for secret in self.secrets:
                assert secret not in text, "a password is in: %s" % label

    def login(self, cluster, **extra):
        """The migration user over TLS verify-full with its password."""
        return psycopg.connect(host="127.0.0.1", port=cluster.port, dbname=DATABASE, user=MIGRATION_USER,
                               password=MIGRATION_PASSWORD, sslmode="verify-full", sslrootcert=ca_cert(), **extra)


@pytest.fixture(scope="module")
def ctx(request):
    source = LoggingCluster(pg16_bin_dir(), "secrets-source")
    target = LoggingCluster(wheel_bin_dir(), "secrets-target")
    for cluster in (source, target):
        cluster.start()
        request.addfinalizer(cluster.stop)
        with cluster.connect(operator=True) as conn:
            for db in (DATABASE, PLAYBOOK_DATABASE):
                conn.execute(sql.SQL("CREATE DATABASE {} OWNER app_owner").format(sql.Identifier(db)))
    for db in (DATABASE, PLAYBOOK_DATABASE):
        source.execute(db, ["CREATE SCHEMA app", "CREATE TABLE app.items (id int PRIMARY KEY, label text)",
                            "CREATE TABLE app.nokey (a int)", "INSERT INTO app.items VALUES (1, 'one')"])
    context = Context(source, target)
    request.addfinalizer(lambda: shutil.rmtree(context.tmp, ignore_errors=True))
    return context


# --------------------------------------------------------------------------------------------
# Phases
# --------------------------------------------------------------------------------------------

def phase_logging_works(ctx):
    """The logs do catch statements and failing statements: a canary in both shows the test can fail."""
    for cluster in (ctx.source, ctx.target):
        with cluster.connect(DATABASE) as conn:
            conn.execute("SELECT 'canary-ok'")
            with pytest.raises(psycopg.errors.DivisionByZero):
                conn.execute("SELECT 1 / 0 AS \"canary-error\"")
        text = cluster.log_text()
        assert "canary-ok" in text and "canary-error" in text


def phase_assess(ctx):
    for cluster, role in ((ctx.source, "source"), (ctx.target, "target")):
        result = ctx.prereqs("assess %s" % role, cluster, role)
        assert not result.get("failed"), result.get("msg")
        assert "migration_user_missing" in [f["id"] for f in result["findings"] if f["severity"] == "blocker"]


def phase_prepare_check_mode(ctx):
    for cluster, role in ((ctx.source, "source"), (ctx.target, "target")):
        result = ctx.prereqs("prepare %s --check" % role, cluster, role, state="present", check_mode=True)
        assert not result.get("failed"), result.get("msg")
        assert result["queries"][0] == "CREATE ROLE \"%s\" LOGIN REPLICATION PASSWORD '********'" % MIGRATION_USER
    assert ctx.source.query("postgres", "SELECT 1 FROM pg_roles WHERE rolname = %s", (MIGRATION_USER,)) == []


def phase_prepare_fails_after_creating_the_user(ctx):
    """The source's preparation creates the user, then waits for a table lock it does not get: everything is
    rolled back, and the failure says so without the password (the statements ran: the log has them)."""
    with ctx.source.connect(DATABASE, autocommit=False) as locker:
        locker.execute("INSERT INTO app.nokey VALUES (1)")  # ROW EXCLUSIVE: reads pass, ALTER TABLE waits
        result = ctx.prereqs("prepare source (lock timeout)", ctx.source, "source", state="present",
                             replica_identity_full=["app.nokey"], lock_timeout=200)
        locker.rollback()
    assert result.get("failed") and "a table was busy" in result["msg"]
    assert ctx.source.query("postgres", "SELECT 1 FROM pg_roles WHERE rolname = %s", (MIGRATION_USER,)) == []
    assert 'CREATE ROLE "%s"' % MIGRATION_USER in ctx.source.log_text()


def phase_prepare(ctx):
    for cluster, role in ((ctx.source, "source"), (ctx.target, "target")):
        extra = dict(replica_identity_full=["app.nokey"]) if role == "source" else {}
        result = ctx.prereqs("prepare %s" % role, cluster, role, state="present", **extra)
        assert not result.get("failed"), result.get("msg")
        assert result["changed"] is True
        (stored,), = cluster.query("postgres", "SELECT rolpassword FROM pg_authid WHERE rolname = %s",
                                   (MIGRATION_USER,), operator=True)
        assert stored.startswith("SCRAM-SHA-256$4096:")
        for check_id in ("migration_user_missing", "replication_privilege"):
            assert result["checks"][check_id] == "pass", check_id


def phase_the_password_works(ctx):
    with ctx.login(ctx.source) as conn:
        assert conn.execute("SELECT label FROM app.items").fetchall() == [("one",)]
    with ctx.login(ctx.source, replication="database", autocommit=True) as conn:
        assert conn.execute("IDENTIFY_SYSTEM").fetchone()[3] == DATABASE
    with ctx.login(ctx.target) as conn:
        assert conn.execute("SELECT current_user").fetchone()[0] == MIGRATION_USER


def phase_playbooks_assess_and_prepare(ctx):
    """The same through the playbooks, at -vvv: assess (fails: blockers), prepare --check, prepare, assess."""
    rc, out, recap = ctx.playbook("assess.yml -vvv (unprepared)", "assess", "-vvv")
    assert rc != 0 and "migration_user_missing" in out
    rc, out, recap = ctx.playbook("prepare_source.yml --check -vvv", "prepare_source", "--check", "--diff", "-vvv")
    assert rc == 0, out
    assert "CREATE ROLE \"%s\" LOGIN REPLICATION PASSWORD '********'" % PLAYBOOK_USER in out
    rc, out, recap = ctx.playbook("prepare_source.yml -vvv", "prepare_source", "-vvv")
    assert rc == 0 and recap["failed"] == 0, out
    rc, out, recap = ctx.playbook("assess.yml -vvv (prepared)", "assess", "-vvv")
    assert rc == 0, out
    with psycopg.connect(host="127.0.0.1", port=ctx.source.port, dbname=PLAYBOOK_DATABASE, user=PLAYBOOK_USER,
                         password=MIGRATION_PASSWORD, sslmode="verify-full", sslrootcert=ca_cert()) as conn:
        assert conn.execute("SELECT count(*) FROM app.items").fetchone() == (1,)


def phase_playbooks_schema_and_plan(ctx):
    """The tasks that run in the controller's own process with the local connection (plugin_utils/in_process.py),
    at -vvv: pg_schema_copy's stage pre (check mode, then for real) and pg_replication_plan (replicate.yml in
    check mode), into and from a database whose name needs quoting."""
    rc, out, recap = ctx.playbook("copy_schema.yml --check -vvv", "copy_schema", "--check", "--diff", "-vvv")
    assert rc == 0, out
    rc, out, recap = ctx.playbook("copy_schema.yml -vvv", "copy_schema", "-vvv")
    assert rc == 0 and recap["failed"] == 0, out
    assert ctx.target.query(PLAYBOOK_DATABASE, "SELECT to_regclass('app.items') IS NOT NULL", operator=True) == [(True,)]
    rc, out, recap = ctx.playbook("replicate.yml --check -vvv", "replicate", "--check", "-vvv")
    assert rc == 0, out
    assert "app.items" in out, out


PHASES = [
    phase_logging_works,
    phase_assess,
    phase_prepare_check_mode,
    phase_prepare_fails_after_creating_the_user,
    phase_prepare,
    phase_the_password_works,
    phase_playbooks_assess_and_prepare,
    phase_playbooks_schema_and_plan,
]


@pytest.mark.parametrize("phase", PHASES, ids=[p.__name__[len("phase_"):] for p in PHASES])
def test_no_password_in_any_output_or_server_log(ctx, phase):
    phase(ctx)
    ctx.assert_clean()


# --------------------------------------------------------------------------------------------
# SCRAM verifiers computed on the controller are what PostgreSQL accepts
# --------------------------------------------------------------------------------------------

SCRAM_CASES = [
    # (password the verifier is made of, password typed at login)
    ("it \\ ' \" $ % secret", "it \\ ' \" $ % secret"),
    ("bell\x07 and tab\t", "bell\x07 and tab\t"),             # ASCII: used unchanged, control characters too
    ("caf\u00e9 Zöll", "cafe\u0301 Zo\u0308ll"),               # NFKC: composed and decomposed log in alike
    ("I\u00adX\u00a0y", "IX y"),                               # soft hyphen removed, no-break space a space
    ("\ufb01le\u2168", "fileIX"),                              # compatibility characters (NFKC)
    ("\u0627\u0031", "\u0627\u0031"),                          # fails SASLprep (bidi): the raw bytes are used
    ("é\ue000", "é\ue000"),                                    # private use: prohibited, raw bytes
]


@pytest.mark.parametrize("made_of, typed", SCRAM_CASES, ids=range(len(SCRAM_CASES)))
def test_scram_verifier_set_by_alter_role_logs_in_over_tls(source_cluster, target_cluster, new_role, made_of, typed):
    for cluster in (source_cluster, target_cluster):
        name = new_role("Scram ")
        verifier = scram.scram_sha256_verifier(made_of)
        cluster.execute("postgres", sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(
            sql.Identifier(name), sql.Literal(verifier)), operator=True)
        try:
            (stored,), = cluster.query("postgres", "SELECT rolpassword FROM pg_authid WHERE rolname = %s", (name,),
                                       operator=True)
            assert stored == verifier  # stored as it is: the server never saw the password
            kwargs = dict(host="127.0.0.1", port=cluster.port, dbname="postgres", user=name,
                          sslmode="verify-full", sslrootcert=ca_cert())
            with psycopg.connect(password=typed, **kwargs) as conn:
                assert conn.execute("SELECT current_user").fetchone()[0] == name
            with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
                psycopg.connect(password=typed + "x", **kwargs).close()
        finally:
            cluster.execute("postgres", sql.SQL("DROP ROLE {}").format(sql.Identifier(name)), operator=True)
