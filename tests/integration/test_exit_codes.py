"""A phase that did not do its job ends ansible-playbook non-zero, after writing its report (issue 12).

Every test runs a playbook through ansible-playbook (modrunner.run_playbook) against the RDS/Aurora-shaped
integration clusters (PostgreSQL 16 source, 18 target, the master user over TLS verify-full) with a small
inventory written in tmp_path, and checks the exit code, the report on disk and the message. No PgBouncer:
traffic_switch none, and freeze_method command where the step machine runs.
"""

from __future__ import annotations

import datetime
import json
import re

import psycopg
import pytest
import yaml
from psycopg import sql

from ansible_collections.pgshift.aurora.plugins.module_utils import replication_conn
from modrunner import run_module, run_playbook
from pgcluster import ADMIN_PASSWORD, MASTER_PASSWORD, MASTER_USER, ca_cert, wait_for

MIGRATION_PASSWORD = "it-exit-codes-migrator-9Q"
SECRETS = (ADMIN_PASSWORD, MASTER_PASSWORD, MIGRATION_PASSWORD)

SCHEMA = [
    "CREATE TABLE public.accounts (id bigserial PRIMARY KEY, balance bigint NOT NULL DEFAULT 0)",
    "CREATE TABLE public.notes (id bigint PRIMARY KEY, body text)",
]
# The step machine with a freeze it can undo and nothing to switch (no PgBouncer here).
COMMAND_FREEZE = ["-e", "cutover_freeze_method=command", "-e", "cutover_freeze_command=true",
                  "-e", "cutover_unfreeze_command=true"]


# --------------------------------------------------------------------------------------------
# Databases, streams and the inventory
# --------------------------------------------------------------------------------------------

class Env:
    """One test's database on each cluster, its migration name, inventory and report directory."""

    def __init__(self, tmp_path, source, target, sdb, tdb, migration, user):
        self.tmp, self.source, self.target = tmp_path, source, target
        self.sdb, self.tdb, self.migration, self.user = sdb, tdb, migration, user
        self.reports = tmp_path / "reports"

    def host_vars(self, cluster, db):
        return dict(db_host="127.0.0.1", db_port=cluster.port, db_name=db, db_user=self.user,
                    db_password=MIGRATION_PASSWORD, db_admin_user=MASTER_USER, db_admin_password=MASTER_PASSWORD,
                    db_sslmode="verify-full", db_sslrootcert=ca_cert())

    def inventory(self, **migration):
        root = self.tmp / "inventory"
        (root / "host_vars").mkdir(parents=True, exist_ok=True)
        (root / "group_vars" / "all").mkdir(parents=True, exist_ok=True)
        hosts = dict(all=dict(
            vars=dict(ansible_connection="local", ansible_python_interpreter="{{ ansible_playbook_python }}"),
            children=dict(source=dict(hosts={"it-source": None}), target=dict(hosts={"it-target": None}))))
        (root / "hosts.yml").write_text(yaml.safe_dump(hosts))
        (root / "host_vars" / "it-source.yml").write_text(yaml.safe_dump(self.host_vars(self.source, self.sdb)))
        (root / "host_vars" / "it-target.yml").write_text(yaml.safe_dump(self.host_vars(self.target, self.tdb)))
        mig = dict(migration_name=self.migration, migration_engine="native", migration_streams=1,
                   traffic_switch="none", report_dir=str(self.reports))
        mig.update(migration)
        (root / "group_vars" / "all" / "migration.yml").write_text(yaml.safe_dump(mig))
        return str(root / "hosts.yml")

    def play(self, playbook, *args, inventory=None):
        """ansible-playbook pgshift.aurora.<playbook>: (rc, output); no password in the output."""
        rc, out, dummy = run_playbook("pgshift.aurora.%s" % playbook, inventory or self.inventory(), *args,
                                      cwd=str(self.tmp), timeout=300, secrets=SECRETS)
        return rc, out

    def report(self, name):
        path = self.reports / name
        assert path.exists(), "no report %s; reports: %s" % (
            name, sorted(p.name for p in self.reports.iterdir()) if self.reports.exists() else "no directory")
        text = path.read_text()
        for secret in SECRETS:
            assert secret not in text, "a password appears in %s" % name
        return json.loads(text) if name.endswith(".json") else text

    def subscription_enabled(self):
        return self.target.query(self.tdb, "SELECT subenabled FROM pg_subscription WHERE subname = %s",
                                 ("pgshift_%s_s1" % self.migration,), operator=True)

    def reverse_slots(self):
        return self.target.query("postgres", "SELECT slot_name FROM pg_replication_slots WHERE slot_name = %s",
                                 ("pgshift_%s_r1" % self.migration,), operator=True)


def record_switch(env, direction):
    """A switch in the cutover log of both sides (pgshift.cutover_log made by aurora_cutover mode=prepare), as a
    cutover (forward) or a rollback (reverse) leaves it."""
    params = dict(env.source.module_params(env.sdb), **dict(
        ("target_" + k, v) for k, v in env.target.module_params(env.tdb).items()))
    result, raw = run_module("aurora_cutover", dict(params, migration=env.migration, mode="prepare"))
    assert not result.get("failed"), raw
    for cluster, db in ((env.source, env.sdb), (env.target, env.tdb)):
        with cluster.master_connect(db) as conn:
            conn.execute("INSERT INTO pgshift.cutover_log (migration, run_id, direction, event) "
                         "VALUES (%s, 'it', %s, 'switched')", (env.migration, direction))


def failed(rc, out):
    """ansible-playbook ended non-zero with a failed task (not a syntax or argument error before the play)."""
    assert rc != 0, "ansible-playbook exited 0:\n%s" % out[-4000:]
    assert "failed=1" in out, out[-4000:]


def _drop_streams(env):
    for cluster, db in ((env.target, env.tdb), (env.source, env.sdb)):
        with cluster.connect(db, operator=True) as conn:
            for (sub,) in conn.execute("SELECT subname FROM pg_subscription WHERE subname LIKE %s",
                                       ("pgshift_%s_%%" % env.migration,)).fetchall():
                conn.execute(sql.SQL("ALTER SUBSCRIPTION {} DISABLE").format(sql.Identifier(sub)))
                conn.execute(sql.SQL("ALTER SUBSCRIPTION {} SET (slot_name = NONE)").format(sql.Identifier(sub)))
                conn.execute(sql.SQL("DROP SUBSCRIPTION {}").format(sql.Identifier(sub)))
    for cluster in (env.source, env.target):
        with cluster.connect() as conn:
            for (slot,) in conn.execute("SELECT slot_name FROM pg_replication_slots WHERE slot_name LIKE %s",
                                        ("pgshift_%s_%%" % env.migration,)).fetchall():
                wait_for(lambda: not conn.execute("SELECT active FROM pg_replication_slots WHERE slot_name = %s",
                                                  (slot,)).fetchone()[0], 10)
                conn.execute("SELECT pg_drop_replication_slot(%s)", (slot,))


@pytest.fixture
def dbs(tmp_path, source_cluster, target_cluster, new_db, new_role):
    """A database on each side (empty, owned by app_owner) and a migration user on both; no stream."""
    migration = new_role("ec")
    user = new_role("ecmig")
    for cluster in (source_cluster, target_cluster):
        cluster.create_migration_user(user, MIGRATION_PASSWORD)
    env = Env(tmp_path, source_cluster, target_cluster, new_db(source_cluster), new_db(target_cluster), migration,
              user)
    try:
        yield env
    finally:
        _drop_streams(env)


@pytest.fixture
def replicating(dbs):
    """dbs with the same tables on both sides and a forward stream pgshift_<migration>_s1 that has caught up
    (a publication and a subscription made by the master user, as the native engine names them)."""
    env = dbs
    for cluster, db in ((env.source, env.sdb), (env.target, env.tdb)):
        cluster.execute(db, SCHEMA)
    env.source.execute(env.sdb, ["INSERT INTO public.accounts (balance) SELECT g FROM generate_series(1, 50) g",
                                 "INSERT INTO public.notes SELECT g, 'note ' || g FROM generate_series(1, 30) g"])
    stream = "pgshift_%s_s1" % env.migration
    env.source.execute(env.sdb, "CREATE PUBLICATION %s FOR TABLE public.accounts, public.notes" % stream)
    conninfo = replication_conn.subscription_conninfo("127.0.0.1", env.source.port, env.sdb, MASTER_USER, MASTER_PASSWORD,
                                                      "verify-full", ca_cert())
    with env.target.master_connect(env.tdb) as conn:
        conn.execute(sql.SQL("CREATE SUBSCRIPTION {} CONNECTION {} PUBLICATION {} WITH (copy_data = true)").format(
            sql.Identifier(stream), sql.Literal(conninfo), sql.Identifier(stream)))
    unsynced = "SELECT count(*) FROM pg_subscription_rel WHERE srsubstate <> 'r'"
    assert wait_for(lambda: env.target.query(env.tdb, unsynced)[0][0] == 0, 60)
    assert wait_for(lambda: env.target.query(env.tdb, "SELECT count(*) FROM public.notes")[0][0] == 30, 30)
    env.target.execute(env.tdb, "ANALYZE")  # the preflight wants planner statistics on the new side
    return env


# --------------------------------------------------------------------------------------------
# cutover.yml
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("validation", ["missing", "no-go"])
def test_cutover_preflight_no_go_exits_non_zero_with_its_report(replicating, validation):
    env = replicating
    env.reports.mkdir()
    if validation == "no-go":
        (env.reports / "validation.json").write_text(json.dumps(dict(
            phase="validate", verdict="NO-GO", reasons=["public.notes: 3 rows missing on the target"],
            finished_at=datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"))))

    rc, out = env.play("cutover", *COMMAND_FREEZE, "-e", "cutover_validation_requirement=required")

    failed(rc, out)
    report = env.report("cutover.json")
    assert report["status"] == "aborted" and report["failed_step"] == "preflight", report
    assert report["serving"] == "source"
    assert ("no validation report" if validation == "missing" else "said NO-GO") in report["reason"]
    assert "status: **aborted**" in env.report("cutover.md")
    assert "CUTOVER NOT DONE (status aborted, not switched; the source serves the application)" in out
    assert "cutover.md (and .json)" in out
    # Nothing moved: the forward stream still runs, no return path.
    assert env.subscription_enabled() == [(True,)]
    assert env.reverse_slots() == []


def test_cutover_with_invalid_options_exits_non_zero_with_a_report_the_role_writes(replicating):
    env = replicating

    # freeze_method command without its commands: aurora_cutover refuses before its step machine runs.
    rc, out = env.play("cutover", "-e", "cutover_freeze_method=command")

    failed(rc, out)
    report = env.report("cutover.json")
    assert report["status"] == "failed" and report["done"] is False, report
    assert "invalid options" in report["msg"] and "freeze_command" in report["msg"]
    assert report["serving"] == "source"
    md = env.report("cutover.md")
    assert "NOT DONE" in md and "The step machine did not run" in md
    assert "The step machine did not run: fix the cause and run cutover.yml again" in out
    assert env.subscription_enabled() == [(True,)]
    assert env.reverse_slots() == []


def test_cutover_check_mode_no_go_exits_non_zero_with_a_check_report(replicating):
    env = replicating

    rc, out = env.play("cutover", "--check", *COMMAND_FREEZE, "-e", "cutover_validation_requirement=required")

    failed(rc, out)
    report = env.report("cutover-check.json")
    assert report["status"] == "aborted" and report["check_mode"] is True and report["expected_status"] == "checked"
    assert "no validation report" in report["msg"]
    assert not (env.reports / "cutover.json").exists()


# --------------------------------------------------------------------------------------------
# provision_target.yml
# --------------------------------------------------------------------------------------------

def test_provision_target_that_stops_exits_non_zero_with_its_report(dbs, tmp_path):
    """An Aurora cluster asked for (aurora_cluster_id) without aws_region: stopped before any AWS call."""
    env = dbs
    inventory = env.inventory()
    target_vars = tmp_path / "inventory" / "host_vars" / "it-target.yml"
    target_vars.write_text(target_vars.read_text() + "aurora_cluster_id: it-exit-codes\n")

    rc, out = env.play("provision_target", inventory=inventory)

    failed(rc, out)
    report = env.report("provision.json")
    assert report["status"] == "failed" and report["cluster_id"] == "it-exit-codes", report
    assert "aws_region" in report["error"]
    assert "PROVISION_TARGET NOT DONE" in out


# --------------------------------------------------------------------------------------------
# rehearsal.yml
# --------------------------------------------------------------------------------------------

def test_rehearsal_that_aborts_exits_non_zero_with_its_report(replicating):
    env = replicating

    rc, out = env.play("rehearsal", *COMMAND_FREEZE, "-e", json.dumps(dict(cutover_hooks=dict(after_freeze="exit 3"))))

    failed(rc, out)
    report = env.report("rehearsal.json")
    assert report["status"] == "aborted" and report["failed_step"] == "freeze", report
    assert [u["step"] for u in report["undone"]] == ["freeze"] and report["undone"][0]["status"] == "ok"
    assert "REHEARSAL NOT DONE (status aborted, not rehearsed" in out
    assert env.subscription_enabled() == [(True,)]
    assert env.reverse_slots() == []


def test_rehearsal_that_did_its_job_exits_zero(replicating):
    """The control: the same inventory, nothing failing, ends 0 with status rehearsed."""
    env = replicating

    rc, out = env.play("rehearsal", *COMMAND_FREEZE)

    assert rc == 0, out[-6000:]
    report = env.report("rehearsal.json")
    assert report["status"] == "rehearsed", report
    assert all(u["status"] == "ok" for u in report["undone"])
    assert env.subscription_enabled() == [(True,)]
    assert env.reverse_slots() == []
    # The step machine ran in the background, its progress printed: steps done, steps/s, ETA, how it ended.
    assert re.search(r"\] rehearsal: \d+/\d+ steps +[\d.]+% [\d,.]+ steps/s ETA \d+:\d\d:\d\d rehearsed",
                     " ".join(out.split())), out[-6000:]


# --------------------------------------------------------------------------------------------
# rollback.yml
# --------------------------------------------------------------------------------------------

def test_rollback_with_nothing_to_roll_back_exits_non_zero_with_its_report(replicating):
    env = replicating

    rc, out = env.play("rollback", *COMMAND_FREEZE)

    failed(rc, out)
    report = env.report("rollback.json")
    assert report["status"] == "nothing_to_roll_back" and report["serving"] == "source", report
    assert "no cutover of migration %s is recorded" % env.migration in report["msg"]
    assert "ROLLBACK NOT DONE (status nothing_to_roll_back, not switched; the source serves" in out
    assert env.subscription_enabled() == [(True,)]


def test_rollback_without_a_return_stream_exits_non_zero_with_its_report(replicating):
    """The cutover log says the target serves but the return stream is gone: the step machine's preflight
    says no-go, the module writes rollback.json, the play fails."""
    env = replicating
    record_switch(env, "forward")

    rc, out = env.play("rollback", *COMMAND_FREEZE, "-e", "cutover_connect_timeout=5")

    failed(rc, out)
    report = env.report("rollback.json")
    assert report["status"] == "aborted" and report["failed_step"] == "preflight", report
    assert "no replication stream found" in report["reason"]
    assert "ROLLBACK NOT DONE (status aborted, not switched" in out


# --------------------------------------------------------------------------------------------
# validate.yml
# --------------------------------------------------------------------------------------------

def test_validate_no_go_exits_non_zero_with_its_report(replicating):
    env = replicating
    with env.target.connect(env.tdb) as conn:
        conn.execute("DELETE FROM public.notes WHERE id <= 3")

    rc, out = env.play("validate", "-e", "validate_live_rounds=1", "-e", "validate_catch_up_timeout=30")

    failed(rc, out)
    report = env.report("validation.json")
    assert report["verdict"] == "NO-GO", report
    assert any("notes" in r for r in report["reasons"]), report["reasons"]
    assert "NO-GO" in env.report("validation.md")
    assert "run validate.yml again" in out


# --------------------------------------------------------------------------------------------
# replicate.yml
# --------------------------------------------------------------------------------------------

def test_replicate_with_a_stream_that_cannot_start_exits_non_zero_with_its_report(dbs):
    env = dbs
    env.source.execute(env.sdb, SCHEMA + ["INSERT INTO public.notes SELECT g, 'n' FROM generate_series(1, 20) g"])
    # The target's notes lacks a column the source has: that table's load cannot start.
    env.target.execute(env.tdb, [SCHEMA[0], "CREATE TABLE public.notes (id bigint PRIMARY KEY)"])

    rc, out = env.play("replicate", "-e", "replicate_build_indexes=false", "-e", "replicate_poll_interval=1",
                       "-e", "replicate_write_rate_sample_seconds=0")

    failed(rc, out)
    report = env.report("replication.json")
    assert report["status"] == "failed", report
    assert "lacks column(s) body on the target" in report["error"], report["error"]
    assert "REPLICATE NOT DONE" in out and "run replicate.yml again" in out
    assert "NOT CAUGHT UP" in env.report("replication.md") or report["final"] is None


def test_replicate_whose_held_back_trigger_cannot_be_built_exits_non_zero_with_its_reports(dbs):
    """The schema copy's post stage runs in the background while the streams load (copy_schema collect):
    a trigger it cannot create (its function is missing on the target) fails the play after both reports."""
    env = dbs
    function = ("CREATE FUNCTION public.touch() RETURNS trigger LANGUAGE plpgsql AS "
                "$$BEGIN NEW.body = coalesce(NEW.body, ''); RETURN NEW; END$$")
    trigger = "CREATE TRIGGER notes_touch BEFORE INSERT ON public.notes FOR EACH ROW EXECUTE FUNCTION public.touch()"
    env.source.execute(env.sdb, SCHEMA + [function, trigger,
                                          "INSERT INTO public.notes SELECT g, 'n' FROM generate_series(1, 20) g",
                                          "GRANT SELECT ON ALL TABLES IN SCHEMA public TO %s" % env.user])
    env.target.execute(env.tdb, SCHEMA)  # the tables, not the function

    rc, out = env.play("replicate", "-e", "replicate_poll_interval=1", "-e", "replicate_write_rate_sample_seconds=0")

    failed(rc, out)
    schema = env.report("schema-post.json")
    assert schema["error"] and "touch" in json.dumps(schema), schema["error"]
    report = env.report("replication.json")
    assert report["status"] == "failed", report
    assert "schema copy" in report["error"] and "REPLICATE NOT DONE" in out


# --------------------------------------------------------------------------------------------
# cleanup.yml
# --------------------------------------------------------------------------------------------

def test_cleanup_without_confirmation_exits_non_zero_with_its_report(replicating):
    env = replicating

    rc, out = env.play("cleanup")

    failed(rc, out)
    report = env.report("cleanup.json")
    assert report["status"] == "refused", report
    assert "cleanup_confirm=true" in report["error"]
    assert report["removed"] == [] and report["before"] is None and report["left"] is None
    assert "refused" in env.report("cleanup.md")
    assert "cleanup_confirm=true" in out
    # Nothing removed: the stream is still there.
    assert env.subscription_enabled() == [(True,)]
    with psycopg.connect(**env.source.conninfo(env.sdb)) as conn:
        assert conn.execute("SELECT count(*) FROM pg_publication").fetchone()[0] == 1


def test_cleanup_while_the_source_serves_again_exits_non_zero_with_its_report(replicating):
    env = replicating
    record_switch(env, "reverse")  # a cutover, then its rollback: the source serves again

    rc, out = env.play("cleanup", "-e", "cleanup_confirm=true")

    failed(rc, out)
    report = env.report("cleanup.json")
    assert report["status"] == "refused" and report["serving"] == "source", report
    assert "cleanup_force=true" in report["error"]
    assert report["removed"] == []
    assert "CLEANUP NOT DONE (refused)" in out
    assert env.subscription_enabled() == [(True,)]


def test_cleanup_that_removed_everything_exits_zero(replicating):
    """The control: confirmed, after a cutover, everything goes and the play ends 0."""
    env = replicating
    record_switch(env, "forward")

    rc, out = env.play("cleanup", "-e", "cleanup_confirm=true")

    assert rc == 0, out[-6000:]
    report = env.report("cleanup.json")
    assert report["status"] == "removed" and report["error"] is None, report
    assert report["removed"] == ["pgshift_%s_s1" % env.migration] and report["left"] == []
    assert env.subscription_enabled() == []
    # The removal ran in the background, its progress printed: steps done, steps/s, ETA, what it did.
    stream = "pgshift_%s_s1" % env.migration
    assert re.search(r"\] remove %s: \d+/\d+ steps +100\.0%% [\d,.]+ steps/s ETA 0:00:00 %s removed" % (
        stream, stream), " ".join(out.split())), out[-6000:]
