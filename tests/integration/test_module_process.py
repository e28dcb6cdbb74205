"""A module gives the same result both ways it runs: as its own process (its main() with AnsibleModule: what any
connection but the local one, become or a task environment runs) and as its action plugin runs it with the local
connection (plugins/plugin_utils/in_process.py; tests/integration/modrunner.py's run_module by default)."""

from __future__ import annotations

import os

import pytest

from modrunner import REPO, run_module_in_process, run_module_process
from pgcluster import MASTER_PASSWORD

ACTION_DIR = os.path.join(REPO, "plugins", "action")
MODULES = sorted(
    name[:-3] for name in os.listdir(ACTION_DIR)
    if name.endswith(".py") and "action_module(" in open(os.path.join(ACTION_DIR, name), encoding="utf-8").read())


def both(name, args, check_mode=False):
    in_process, raw_in = run_module_in_process(name, args, check_mode=check_mode)
    process, raw_process = run_module_process(name, args, check_mode=check_mode)
    for raw in (raw_in, raw_process):
        assert MASTER_PASSWORD not in raw and "s3cret-pw" not in raw, "a secret in the output of %s" % name
    return in_process, process


def without_write_rates(value):
    if isinstance(value, dict):
        return {k: without_write_rates(v) for k, v in value.items() if not k.startswith("write")}
    if isinstance(value, list):
        return [without_write_rates(v) for v in value]
    return value


def test_every_runner_module_is_compared():
    assert len(MODULES) == 14 and "aurora_cutover" in MODULES and "dms_task" in MODULES, MODULES


@pytest.mark.parametrize("name", MODULES)
def test_bad_options_fail_both_ways_with_the_modules_words(name):
    """AnsibleModule says the first problem with the options; the action plugin says every one, the first the same."""
    in_process, process = both(name, dict(nope_not_an_option=1))
    assert in_process["failed"] is True and process["failed"] is True, (in_process, process)
    first = process["msg"].replace("(basic.py)", "(pgshift.aurora.%s)" % name)
    assert in_process["msg"].split("; ")[0] == first.split("; ")[0], (in_process["msg"], process["msg"])
    assert "Unsupported parameters for (pgshift.aurora.%s) module: nope_not_an_option" % name in in_process["msg"]


def test_the_plan_is_the_same_both_ways(source_cluster, new_db):
    db = new_db(source_cluster)
    source_cluster.execute(db, [
        'CREATE TABLE public."Orders" (id bigint PRIMARY KEY, note text)',
        "CREATE TABLE public.items (id bigint PRIMARY KEY, order_id bigint, sku text)",
        'INSERT INTO public."Orders" SELECT g, repeat(\'x\', 50) FROM generate_series(1, 3000) g',
        "INSERT INTO public.items SELECT g, g % 3000, 'sku' FROM generate_series(1, 5000) g",
        "ANALYZE"])
    args = source_cluster.module_params(db, migration_name="parity", streams=2, write_rate_sample_seconds=-1)
    in_process, process = both("pg_replication_plan", args)
    assert not in_process.get("failed") and not process.get("failed"), (in_process.get("msg"), process.get("msg"))
    # The write rates are averages since the statistics were reset: they move between the two runs.
    assert without_write_rates(in_process["plan"]) == without_write_rates(process["plan"])
    assert in_process["invocation"] == process["invocation"]
    assert in_process["invocation"]["module_args"]["login_password"] == "VALUE_SPECIFIED_IN_NO_LOG_PARAMETER"


def test_the_prerequisite_checks_are_the_same_both_ways(source_cluster, new_db):
    db = new_db(source_cluster)
    source_cluster.execute(db, ["CREATE TABLE public.orders (id bigint PRIMARY KEY)",
                                "CREATE TABLE public.nokey (v text)", "ANALYZE"])
    args = source_cluster.module_params(db, role="source", write_rate_sample_seconds=-1)
    in_process, process = both("pg_logical_prereqs", args, check_mode=True)
    assert bool(in_process.get("failed")) == bool(process.get("failed"))
    assert in_process.get("msg") == process.get("msg")
    assert in_process["checks"] == process["checks"]
    assert in_process["findings"] == process["findings"]
    assert in_process.get("warnings") == process.get("warnings")


def test_a_dms_lookup_is_the_same_both_ways(moto_server):
    args = dict(identifier_prefix="pgshift-parity-none", aws_endpoint_url=moto_server, aws_region="us-east-1",
                aws_access_key="testing", aws_secret_key="s3cret-pw")
    in_process, process = both("dms_task_info", args)
    assert not in_process.get("failed") and not process.get("failed"), (in_process.get("msg"), process.get("msg"))
    del in_process["invocation"], process["invocation"]
    assert in_process == process
    # The constraints between options (required_one_of, mutually_exclusive) are the module's both ways.
    in_process, process = both("dms_task_info", dict(args, identifiers=["a"]))
    assert in_process["failed"] and process["failed"]
    assert "mutually exclusive" in in_process["msg"] and "mutually exclusive" in process["msg"]
