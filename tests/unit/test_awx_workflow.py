# -*- coding: utf-8 -*-
# Copyright: pgshift.aurora contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What awx/configure.yml would create on an AWX controller, read from its data (awx/vars/*.yml): the workflow
graphs (nodes, edges, approvals), the job templates and their playbooks, the credential types' contract with the
inventory (PGSHIFT_* environment variables), the nightly schedule. No controller here: the playbook is only
syntax-checked and run up to its first controller call (a closed loopback port), which checks its own guards."""

from __future__ import annotations

import os
import re
import subprocess
from datetime import timedelta

import jinja2
import pytest
import yaml
from dateutil.rrule import rrulestr

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
AWX = os.path.join(ROOT, "awx")
ANSIBLE_PLAYBOOK = os.path.join(ROOT, ".venv", "bin", "ansible-playbook")

# The contract with the inventory (inventories/awx_example reads these with lookup('ansible.builtin.env', ...)).
CONTRACT_ENV = {"PGSHIFT_SOURCE_DB_PASSWORD", "PGSHIFT_SOURCE_DB_ADMIN_PASSWORD", "PGSHIFT_TARGET_DB_PASSWORD",
                "PGSHIFT_TARGET_DB_ADMIN_PASSWORD", "PGSHIFT_PGBOUNCER_ADMIN_PASSWORD"}
PHASES = ["assess", "prepare_source", "provision_target", "copy_schema", "replicate", "validate", "rehearsal",
          "cutover", "rollback", "cleanup"]
MIGRATION_PATH = ["assess", "approval", "prepare_source", "provision_target", "copy_schema", "replicate", "validate",
                  "approval", "cutover"]


class Unsafe(str):
    """A `!unsafe` string: AWX's own template (the injectors), never rendered by Ansible."""


class Loader(yaml.SafeLoader):
    pass


Loader.add_constructor("!unsafe", lambda loader, node: Unsafe(loader.construct_scalar(node)))


def load(path):
    with open(path, encoding="utf-8") as f:
        return yaml.load(f, Loader=Loader)  # noqa: S506 - a SafeLoader with one more tag


def render(value, ctx):
    if isinstance(value, Unsafe):
        return value
    if isinstance(value, str):
        return jinja2.Template(value, undefined=jinja2.StrictUndefined).render(**ctx)
    if isinstance(value, list):
        return [render(v, ctx) for v in value]
    if isinstance(value, dict):
        return {k: render(v, ctx) for k, v in value.items()}
    return value


@pytest.fixture(scope="module")
def data():
    raw = load(os.path.join(AWX, "vars", "controller.yml"))
    raw.update(load(os.path.join(AWX, "vars", "workflow.yml")))
    ctx = dict(raw)
    for _round in range(3):  # names built from names
        ctx = {k: render(v, ctx) for k, v in raw.items()}
    return ctx


@pytest.fixture(scope="module")
def playbook():
    return load(os.path.join(AWX, "configure.yml"))


def workflow(data, suffix):
    found = [w for w in data["pgshift_awx_workflows"] if w["name"] == "%s %s" % (data["pgshift_awx_prefix"], suffix)]
    assert len(found) == 1, [w["name"] for w in data["pgshift_awx_workflows"]]
    return found[0]


def nodes_by_id(wf):
    ids = [n["identifier"] for n in wf["nodes"]]
    assert len(ids) == len(set(ids)), "duplicate identifiers in %s" % wf["name"]
    return {n["identifier"]: n for n in wf["nodes"]}


def edges(node):
    return [(kind, t) for kind in ("success", "failure", "always") for t in node.get(kind, [])]


def kind(node):
    return "approval" if "approval" in node else node["job_template"]


def success_path(wf):
    """The nodes from the root along success edges (each node has at most one success edge on this path)."""
    nodes = nodes_by_id(wf)
    targets = {t for n in wf["nodes"] for _k, t in edges(n)}
    roots = [i for i in nodes if i not in targets]
    assert len(roots) == 1, "one root expected in %s: %s" % (wf["name"], roots)
    path, current = [], roots[0]
    while current:
        path.append(current)
        nxt = nodes[current].get("success", [])
        assert len(nxt) <= 1, "%s branches on success" % current
        current = nxt[0] if nxt else None
    return path


def test_job_templates_one_per_phase_playbook(data):
    phases = [jt["phase"] for jt in data["pgshift_awx_job_templates"]]
    assert sorted(phases) == sorted(PHASES)
    for phase in phases:
        assert os.path.isfile(os.path.join(ROOT, "playbooks", phase + ".yml")), phase
    # Every phase playbook of the collection has a template (the lab's own playbooks are not phases).
    shipped = {f[:-4] for f in os.listdir(os.path.join(ROOT, "playbooks"))
               if f.endswith(".yml") and not f.startswith("lab_") and f != "site.yml"}
    assert shipped == set(phases)


def assert_acyclic(nodes):
    state = {}

    def visit(i):
        assert state.get(i) != "open", "cycle through %s" % i
        if state.get(i) == "done":
            return
        state[i] = "open"
        for _kind, t in edges(nodes[i]):
            visit(t)
        state[i] = "done"

    for i in nodes:
        visit(i)


def test_every_graph_is_well_formed(data):
    phases = {jt["phase"] for jt in data["pgshift_awx_job_templates"]}
    for wf in data["pgshift_awx_workflows"]:
        nodes = nodes_by_id(wf)
        for node in wf["nodes"]:
            assert ("approval" in node) != ("job_template" in node), node["identifier"]
            if "job_template" in node:
                assert node["job_template"] in phases, node
            else:
                assert node["approval"]["name"] and node["approval"]["description"]
                assert isinstance(node["approval"]["timeout"], int) and node["approval"]["timeout"] > 0
            assert set(node) <= {"identifier", "job_template", "approval", "extra_data", "success", "failure", "always"}, node
            for _kind, target in edges(node):
                assert target in nodes, "%s -> %s: no such node" % (node["identifier"], target)
        assert_acyclic(nodes)


def test_migration_workflow_runs_the_phases_behind_two_gates(data):
    wf = workflow(data, "migration")
    nodes = nodes_by_id(wf)
    path = success_path(wf)
    assert [kind(nodes[i]) for i in path] == MIGRATION_PATH
    first_gate, go_no_go = [i for i in path if kind(nodes[i]) == "approval"]
    # The source is changed only after a human approved the assessment; the cutover only after go/no-go,
    # which follows validate directly.
    assert path.index(first_gate) == path.index("assess") + 1
    assert path[path.index(go_no_go) - 1] == "validate" and path[path.index(go_no_go) + 1] == "cutover"
    # No way around the gates: the only edges into prepare_source and cutover come from the approvals.
    into = {}
    for node in wf["nodes"]:
        for edge_kind, target in edges(node):
            into.setdefault(target, []).append((node["identifier"], edge_kind))
    assert into[path[path.index(first_gate) + 1]] == [(first_gate, "success")]
    assert into["cutover"] == [(go_no_go, "success")]
    # As site.yml: the assessment lets through only what prepare_source fixes, and prepare_source gates it again.
    assert nodes["assess"]["extra_data"] == dict(assess_defer_preparation_blockers=True)
    assert nodes["prepare_source"]["extra_data"] == dict(prepare_source_fail_on="blocker")
    for role, variable in (("assess", "assess_defer_preparation_blockers"), ("prepare_source", "prepare_source_fail_on")):
        with open(os.path.join(ROOT, "roles", role, "meta", "argument_specs.yml"), encoding="utf-8") as handle:
            assert variable in yaml.safe_load(handle)["argument_specs"]["main"]["options"], (role, variable)


def test_rollback_hangs_off_the_cutovers_failure_edge(data):
    wf = workflow(data, "migration")
    nodes = nodes_by_id(wf)
    rollback = [i for i, n in nodes.items() if n.get("job_template") == "rollback"]
    assert len(rollback) == 1
    cutover = nodes["cutover"]
    assert cutover.get("failure") == rollback
    assert not cutover.get("always")
    into = [(n["identifier"], k) for n in wf["nodes"] for k, t in edges(n) if t == rollback[0]]
    assert into == [("cutover", "failure")]
    # Nothing else in the migration runs on a failure: a failed phase stops the workflow.
    assert [(n["identifier"], k) for n in wf["nodes"] for k, _t in edges(n) if k != "success"] == [
        ("cutover", "failure")]


def test_go_no_go_says_where_the_verdict_is_and_validate_publishes_it(data):
    wf = workflow(data, "migration")
    gate = nodes_by_id(wf)["go_no_go"]["approval"]
    assert "pgshift_validation.verdict" in gate["description"] and "Artifacts" in gate["description"]
    tasks = load(os.path.join(ROOT, "roles", "validate", "tasks", "main.yml"))
    names = [t["name"] for t in tasks]
    stats = [t for t in tasks if "ansible.builtin.set_stats" in t]
    assert len(stats) == 1
    published = stats[0]["ansible.builtin.set_stats"]["data"]["pgshift_validation"]
    assert published["verdict"] == "{{ validate_report.verdict }}"
    assert {"reasons", "summary", "report", "override"} <= set(published)
    # Published before the play fails on NO-GO, so a failed validate job shows its verdict too.
    assert names.index(stats[0]["name"]) < names.index("Fail on NO-GO")


def test_rehearsal_workflow_and_its_nightly_schedule(data):
    wf = workflow(data, "rehearsal")
    nodes = nodes_by_id(wf)
    assert [kind(nodes[i]) for i in success_path(wf)] == ["assess", "validate", "rehearsal"]
    assert not {"cutover", "rollback", "cleanup", "prepare_source"} & {kind(n) for n in wf["nodes"]}
    schedules = data["pgshift_awx_schedules"]
    assert [s["workflow"] for s in schedules] == [wf["name"]]
    rule = rrulestr(schedules[0]["rrule"].replace(" RRULE:", "\nRRULE:"))
    first = list(rule[:3])
    assert first[0].hour == 2 and first[0].tzinfo is not None
    assert [b - a for a, b in zip(first, first[1:])] == [timedelta(days=1)] * 2
    assert schedules[0]["enabled"] is True


def test_credential_types_inject_the_contract_names_from_secret_fields(data):
    seen = set()
    for ct in data["pgshift_awx_credential_types"]:
        fields = {f["id"]: f for f in ct["inputs"]["fields"]}
        assert all(f.get("secret") is True for f in fields.values()), ct["name"]
        assert sorted(ct["inputs"]["required"]) == sorted(fields)
        assert set(ct["injectors"]) == {"env"}, "secrets go to environment variables only"
        for env, template in ct["injectors"]["env"].items():
            assert isinstance(template, Unsafe), "%s must be !unsafe (AWX renders it, not Ansible)" % env
            m = re.fullmatch(r"\{\{\s*(\w+)\s*\}\}", template)
            assert m and m.group(1) in fields, (env, template)
            assert env not in seen
            seen.add(env)
        assert set(ct["secret_vars"]) == set(fields)
        for var in ct["secret_vars"].values():
            assert var.startswith("pgshift_awx_") and var not in data, "%s must come from the operator" % var
    assert seen == CONTRACT_ENV


def test_configure_consumes_the_data_and_hides_the_secrets(playbook):
    play = playbook[0]
    assert play["vars_files"] == ["vars/controller.yml", "vars/workflow.yml"]
    by_module = {}
    for task in play["tasks"]:
        module = [k for k in task if k.startswith(("awx.awx.", "ansible.builtin."))]
        assert len(module) == 1, task["name"]
        by_module.setdefault(module[0], []).append(task)
        text = yaml.safe_dump(task)
        if "secret_vars" in text and module[0] != "ansible.builtin.assert":
            assert task.get("no_log") is True, task["name"]
    assert by_module["awx.awx.job_template"][0]["loop"] == "{{ pgshift_awx_job_templates }}"
    for task in by_module["awx.awx.workflow_job_template_node"]:
        assert "pgshift_awx_workflows" in task["loop"]
    edges_task = [t for t in by_module["awx.awx.workflow_job_template_node"]
                  if "success_nodes" in t["awx.awx.workflow_job_template_node"]]
    assert len(edges_task) == 1
    assert by_module["awx.awx.schedule"][0]["loop"] == "{{ pgshift_awx_schedules }}"
    jt = by_module["awx.awx.job_template"][0]["awx.awx.job_template"]
    assert jt["playbook"] == "playbooks/{{ item.phase }}.yml"
    assert jt["execution_environment"] == "{{ pgshift_awx_ee_name }}"


def run_configure(tmp_path, *extra):
    env = dict(os.environ, ANSIBLE_CONFIG=os.path.join(ROOT, "ansible.cfg"), CONTROLLER_HOST="https://127.0.0.1:9",
               CONTROLLER_USERNAME="admin", CONTROLLER_PASSWORD="not-used", CONTROLLER_VERIFY_SSL="false",
               ANSIBLE_NOCOLOR="1", ANSIBLE_LOCALHOST_WARNING="false", ANSIBLE_INVENTORY_UNPARSED_WARNING="false")
    proc = subprocess.run([ANSIBLE_PLAYBOOK, os.path.join(AWX, "configure.yml")] + list(extra), cwd=str(tmp_path),
                          env=env, capture_output=True, text=True, timeout=180, check=False)
    return proc.returncode, proc.stdout + proc.stderr


def test_syntax_check():
    rc, out = run_configure(ROOT, "--syntax-check")
    assert rc == 0, out


def test_missing_secrets_fail_before_any_controller_call(tmp_path):
    rc, out = run_configure(tmp_path, "-e", "pgshift_awx_scm_url=https://git.example.invalid/pgshift.git",
                            "-e", "pgshift_awx_ee_image=registry.example.invalid/pgshift/aurora-ee:0.1.0",
                            "-e", "pgshift_awx_source_db_password=s3cret-source-pw")
    assert rc != 0
    assert ("Missing secret variable(s): pgshift_awx_source_db_admin_password, pgshift_awx_target_db_password, "
            "pgshift_awx_target_db_admin_password, pgshift_awx_pgbouncer_admin_password.") in " ".join(out.split())
    assert "Execution environment" not in out
    assert "s3cret-source-pw" not in out


def test_with_every_setting_it_reaches_the_controller_and_shows_no_secret(tmp_path):
    secrets = {"pgshift_awx_source_db_password": "s3cret-1", "pgshift_awx_source_db_admin_password": "s3cret-2",
               "pgshift_awx_target_db_password": "s3cret-3", "pgshift_awx_target_db_admin_password": "s3cret-4",
               "pgshift_awx_pgbouncer_admin_password": "s3cret-5"}
    path = tmp_path / "secrets.yml"
    path.write_text(yaml.safe_dump(secrets))
    rc, out = run_configure(tmp_path, "-e", "pgshift_awx_scm_url=https://git.example.invalid/pgshift.git",
                            "-e", "pgshift_awx_ee_image=registry.example.invalid/pgshift/aurora-ee:0.1.0",
                            "-e", "@%s" % path, "-v")
    assert rc != 0
    assert "TASK [Execution environment]" in out and "Connection refused" in out, out
    assert "Missing secret" not in out
    for value in secrets.values():
        assert value not in out


def test_the_synced_inventory_reads_the_injected_variables(data):
    """The inventory source's file is in the repository and its vars read every variable the credential types
    inject (the inventory is inventories/awx_example, written against the same contract)."""
    path = os.path.join(ROOT, data["pgshift_awx_inventory_source_path"])
    assert os.path.isfile(path), path
    read = set()
    for top, _dirs, files in os.walk(os.path.dirname(path)):
        for name in files:
            if name.endswith((".yml", ".yaml")):
                with open(os.path.join(top, name), encoding="utf-8") as f:
                    read.update(re.findall(r"lookup\(\s*'ansible\.builtin\.env'\s*,\s*'(PGSHIFT_\w+)'", f.read()))
    assert CONTRACT_ENV <= read, "not read by the inventory: %s" % sorted(CONTRACT_ENV - read)
