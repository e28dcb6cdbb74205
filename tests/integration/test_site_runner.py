"""site.yml (phases 0-5 as gates, the cutover only when confirmed) on a lab of its own, then the validation and
the rehearsal run the way AWX runs a job: through the ansible_runner library, with a private data directory whose
inventory reads every password from an environment variable that an AWX credential type injects
(inventories/awx_example shows the contract; docs/operations.md lists the variables).

- site.yml --check on the fresh lab: exit 0, the plan shown, nothing changed in either database;
- site.yml with the lab's load running through PgBouncer: exit 0, validation GO, every table equal row by row
  once the writes stopped and the streams caught up; a second run changes nothing;
- ansible_runner: validate and rehearsal successful (rc 0, artifacts complete, rehearsal.json succeeded), a wrong
  target password fails the validation; no secret in any job event, stdout or artifact.
"""

from __future__ import annotations

import glob
import json
import os
import shutil

import pytest
import yaml

from modrunner import (assert_same_rows, lab_operator, lab_playbook, lab_secrets, physical_tables, run_playbook,
                       running_lab, wait_streams_caught_up)
from test_report_browser import assert_renders

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PORTS = {}  # free loopback ports, chosen when the lab starts (modrunner.running_lab)
LAB_ROOT = os.path.join(REPO, ".build", "site-lab")
SECRETS = lab_secrets()
AWX_EXAMPLE = os.path.join(REPO, "inventories", "awx_example")
# The example's hosts and files -> the lab inventory's (lab_inventory's layout).
AWX_EXAMPLE_FILES = {
    os.path.join("host_vars", "orders-rds.yml"): os.path.join("host_vars", "lab-source.yml"),
    os.path.join("host_vars", "orders-aurora.yml"): os.path.join("host_vars", "lab-target.yml"),
    os.path.join("group_vars", "all", "migration.yml"): os.path.join("group_vars", "all", "migration.yml"),
}
# The contract with the AWX credential types (docs/operations.md).
ENV_CONTRACT = ("PGSHIFT_SOURCE_DB_PASSWORD", "PGSHIFT_SOURCE_DB_ADMIN_PASSWORD", "PGSHIFT_TARGET_DB_PASSWORD",
                "PGSHIFT_TARGET_DB_ADMIN_PASSWORD", "PGSHIFT_PGBOUNCER_ADMIN_PASSWORD", "PGSHIFT_AWS_ACCESS_KEY_ID",
                "PGSHIFT_AWS_SECRET_ACCESS_KEY")

pytestmark = pytest.mark.lab


def playbook(inventory, name, *extra, check=True):
    return lab_playbook(inventory, name, *extra, secrets=SECRETS, check=check)


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """The lab's inventory, moved to ports and a lab_root of its own; lab up, then down."""
    with running_lab(tmp_path_factory.mktemp("site-inventory"), PORTS, LAB_ROOT, SECRETS, lab_pgbench_scale=1) as lab:
        yield lab


def env_lookups(tree, path=()):
    """(key path, value) of every value in a YAML tree that reads an environment variable."""
    if isinstance(tree, dict):
        for key, value in tree.items():
            yield from env_lookups(value, path + (key,))
    elif isinstance(tree, str) and "lookup('ansible.builtin.env'" in tree:
        yield path, tree


def awx_inventory(lab_inventory_dir, dest):
    """A copy of a lab inventory (lab_inventory's layout) in dest in which every variable that
    inventories/awx_example reads from the environment is that same lookup instead of a plain value, and the
    lab's own passwords (operator, application), which no phase uses, are left out. Returns the environment
    that holds the values the copy no longer has: {PGSHIFT_...: value}, as AWX's credential types inject it."""
    shutil.copytree(lab_inventory_dir, dest, ignore=shutil.ignore_patterns("reports"))
    env = {}
    for example, target in AWX_EXAMPLE_FILES.items():
        with open(os.path.join(AWX_EXAMPLE, example)) as f:
            lookups = list(env_lookups(yaml.safe_load(f)))
        with open(os.path.join(dest, target)) as f:
            data = yaml.safe_load(f)
        for path, lookup in lookups:
            node = data
            for key in path[:-1]:
                node = node[key]
            name = lookup.split("'")[3]
            env[name] = str(node[path[-1]])
            node[path[-1]] = lookup
        with open(os.path.join(dest, target), "w") as f:
            yaml.safe_dump(data, f)
    lab_file = os.path.join(dest, "group_vars", "all", "lab.yml")
    with open(lab_file) as f:
        labvars = yaml.safe_load(f)
    for key in ("lab_operator_password", "lab_app_password"):
        labvars.pop(key)
    with open(lab_file, "w") as f:
        yaml.safe_dump(labvars, f)
    assert sorted(env) == sorted(ENV_CONTRACT), sorted(env)
    return env


def replication_objects():
    with lab_operator(PORTS["source"]) as src, lab_operator(PORTS["target"]) as tgt:
        return dict(
            publications=src.execute("SELECT count(*) FROM pg_publication").fetchone()[0],
            slots=src.execute("SELECT count(*) FROM pg_replication_slots").fetchone()[0],
            subscriptions=tgt.execute("SELECT count(*) FROM pg_subscription").fetchone()[0],
            target_tables=len(physical_tables(tgt)),
            # What prepare_source would change: the migration user's grants, the replica identity.
            migration_usage=src.execute("SELECT has_schema_privilege('pgshift', 'billing', 'USAGE')").fetchone()[0],
            replica_identity=src.execute("SELECT relreplident FROM pg_class WHERE oid = 'public.carrier_rates'::regclass"
                                         ).fetchone()[0])


def test_site_check_then_run_to_validated_then_nothing_to_do(lab, driver):
    inventory, reports = lab["inventory"], lab["reports"]
    before = replication_objects()
    assert before == dict(publications=0, slots=0, subscriptions=0, target_tables=0, migration_usage=False,
                          replica_identity="d"), before

    # A no-go stops the run: wrong admin passwords make both sides unassessable (a blocker no phase fixes), so
    # phase 0 fails and phase 1 never starts.
    wrong = "not the admin's password"
    rc, out, recap = run_playbook("playbooks/site.yml", inventory, "-e", json.dumps(dict(db_admin_password=wrong)),
                                  secrets=SECRETS + (wrong,))
    assert rc != 0 and recap["failed"] == 1, out[-4000:]
    out = " ".join(out.split())
    assert "assess_fail_on=blocker stops the migration here" in out and "connection" in out
    assert "PLAY [Prepare the source" not in out and "CUTOVER SKIPPED" not in out
    assert replication_objects() == before

    rc, out, recap = playbook(inventory, "playbooks/site.yml", "--check")
    # The output's long lines are folded: compare the words.
    out = " ".join(out.split())
    assert "CHECK MODE, every phase shows what it would do and changes nothing" in out
    # Every phase's plan: the deferred blockers, the preparation's statements, the schema it would restore.
    assert "deferred to prepare_source" in out
    assert "CHECK MODE, nothing was changed: a real run would make" in out and "GRANT USAGE ON SCHEMA" in out
    assert "nothing to provision" in out
    assert "CHECK MODE, nothing was changed: stage pre would run" in out
    assert "Phase 4 replicate: skipped in check mode" in out and "Phase 5 validate: skipped in check mode" in out
    assert "CUTOVER SKIPPED" in out and "-e cutover_confirm=true" in out
    assert replication_objects() == before
    assert not (reports / "validation.json").exists() and not (reports / "replication.json").exists()

    playbook(inventory, "playbooks/lab_load.yml", "-e", "lab_load_state=started", "-e", "lab_load_rate=20")
    try:
        rc, out, recap = playbook(inventory, "playbooks/site.yml")
    finally:
        playbook(inventory, "playbooks/lab_load.yml", "-e", "lab_load_state=stopped")
    assert recap["failed"] == 0 and recap["changed"] > 0
    out = " ".join(out.split())
    assert "CAUGHT UP" in out and "CUTOVER SKIPPED" in out
    assert not (reports / "cutover.json").exists()
    validation = json.loads((reports / "validation.json").read_text())
    assert validation["verdict"] == "GO", validation.get("reasons")
    assessment = json.loads((reports / "assessment.json").read_text())
    assert assessment["decision"] == "GO" and not assessment["gate_failed"]
    assert {b["id"] for b in assessment["blockers"]} <= set(assessment["deferred_blockers"])
    preparation = json.loads((reports / "preparation.json").read_text())
    assert preparation["fail_on"] == "blocker" and preparation["changes"] > 0 and preparation["gate_lines"] == []
    with lab_operator(PORTS["source"]) as src, lab_operator(PORTS["target"]) as tgt:
        wait_streams_caught_up(src)
        assert assert_same_rows(src, tgt, min_tables=35) == len(physical_tables(src))
        # The traffic stays on the source: PgBouncer still points there, nothing froze.
        assert src.execute("SELECT count(*) FROM public.ledger").fetchone()[0] > 0

    rc, again, recap = playbook(inventory, "playbooks/site.yml")
    assert recap["changed"] == 0 and recap["failed"] == 0, again[-4000:]
    assert json.loads((reports / "validation.json").read_text())["verdict"] == "GO"
    for report in (path for path in reports.rglob("*") if path.is_file()):
        assert not any(secret in report.read_text(errors="replace") for secret in SECRETS), report.name

    # The migration report the phases rebuilt, from this real run, in the browser: phases 0-5 with their figures.
    text = assert_renders(driver, reports / "index.html", ["assessment", "plan", "load", "lag", "validation"],
                          ["fig-plan", "fig-load", "fig-lag"], "site-report.png")
    assert "GO" in text
    assert (reports / "runbook.md").read_text().count("ansible-playbook pgshift.aurora.") >= 3


def run_like_awx(tmp_path, lab, ident, playbook_name, envvars):
    """One job as AWX runs it: a private data directory (inventory/, env/extravars, env/envvars, project/) and
    ansible_runner.run. Returns (runner, private data dir)."""
    import ansible_runner

    private = tmp_path / ident
    inventory_dir = os.path.dirname(lab["inventory"])
    env = awx_inventory(inventory_dir, str(private / "inventory"))
    os.makedirs(private / "env")
    # The credentials as AWX's custom credential types inject them, and the job's settings.
    env.update(envvars)
    # Where the execution environment has ansible-playbook and the collection.
    env.update(ANSIBLE_CONFIG=os.path.join(REPO, "ansible.cfg"),
               ANSIBLE_COLLECTIONS_PATH=os.path.join(REPO, ".build", "collections"),
               PATH=os.path.join(REPO, ".venv", "bin") + os.pathsep + os.environ.get("PATH", ""))
    (private / "env" / "envvars").write_text(yaml.safe_dump(env))
    (private / "env" / "extravars").write_text(yaml.safe_dump(dict(report_dir=str(tmp_path / "awx-reports"))))
    # The project: the collection's playbooks, as a project checkout holds them.
    os.symlink(os.path.join(REPO, "playbooks"), private / "project")
    runner = ansible_runner.run(private_data_dir=str(private), playbook=playbook_name, ident=ident, quiet=True,
                                timeout=900)
    return runner, private


def assert_no_secret_in_artifacts(private, ident, secrets):
    """Every job event, stdout and every artifact: no secret. The only exceptions are runner's records of the
    process environment, which hold the injected variables by design as AWX's private data dir does: env/ and the
    `env` of artifacts/<ident>/command (its command line and cwd must not hold any)."""
    artifacts = private / "artifacts" / ident
    for name in ("job_events", "stdout", "status", "rc", "command"):
        assert (artifacts / name).exists(), "artifacts/%s/%s is missing" % (ident, name)
    events = sorted(glob.glob(str(artifacts / "job_events" / "*.json")))
    assert events, "no job event"
    checked = 0
    for path in glob.glob(str(artifacts / "**"), recursive=True):
        if os.path.isdir(path) or os.path.relpath(path, artifacts).split(os.sep)[0] == "env":
            continue
        with open(path, errors="replace") as f:
            text = f.read()
        if os.path.basename(path) == "command":
            record = json.loads(text)
            text = json.dumps(dict(command=record["command"], cwd=record["cwd"]))
        leaked = [s for s in secrets if s in text]
        assert not leaked, "a secret is in %s" % os.path.relpath(path, private)
        checked += 1
    assert checked >= len(events) + 2
    return events


def test_validate_and_rehearsal_through_ansible_runner(lab, tmp_path):
    runner, private = run_like_awx(tmp_path, lab, "validate", "validate.yml", {})
    assert (runner.status, runner.rc) == ("successful", 0), runner.stdout.read()[-4000:]
    events = assert_no_secret_in_artifacts(private, "validate", SECRETS)
    kinds = set()
    for event in events:
        with open(event, encoding="utf-8") as f:
            kinds.add(json.load(f).get("event"))
    assert {"playbook_on_start", "runner_on_ok", "playbook_on_stats"} <= kinds, sorted(kinds)
    assert (private / "artifacts" / "validate" / "status").read_text().strip() == "successful"
    assert (private / "artifacts" / "validate" / "rc").read_text().strip() == "0"
    assert json.loads((tmp_path / "awx-reports" / "validation.json").read_text())["verdict"] == "GO"

    runner, private = run_like_awx(tmp_path, lab, "rehearsal", "rehearsal.yml", {})
    assert (runner.status, runner.rc) == ("successful", 0), runner.stdout.read()[-4000:]
    assert_no_secret_in_artifacts(private, "rehearsal", SECRETS)
    rehearsal = json.loads((tmp_path / "awx-reports" / "rehearsal.json").read_text())
    assert rehearsal["status"] == "rehearsed" and rehearsal["failed_step"] is None, rehearsal.get("reason")
    for report in (path for path in (tmp_path / "awx-reports").rglob("*") if path.is_file()):
        assert not any(secret in report.read_text(errors="replace") for secret in SECRETS), report.name

    # A wrong target password (a credential AWX would inject): the job fails, and says nothing secret.
    wrong = "wrong target p@ss 'w0rd'"
    runner, private = run_like_awx(tmp_path, lab, "validate-wrong", "validate.yml",
                                   dict(PGSHIFT_TARGET_DB_PASSWORD=wrong, PGSHIFT_TARGET_DB_ADMIN_PASSWORD=wrong))
    assert runner.status == "failed" and runner.rc != 0
    assert "authentication failed for user 'dbadmin' on 127.0.0.1:%d" % PORTS["target"] in runner.stdout.read()
    assert_no_secret_in_artifacts(private, "validate-wrong", SECRETS + (wrong,))
