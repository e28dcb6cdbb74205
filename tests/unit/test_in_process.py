"""A module's runner run in the controller's process (plugin_utils/in_process.py): the same argument checks and
result as the module, secrets masked; any connection but the local one runs the module."""

from __future__ import annotations

import json
import os
import time

import pytest

from ansible_collections.pgshift.aurora.plugins.module_utils.runners import plan as plan_runner
from ansible_collections.pgshift.aurora.plugins.plugin_utils import in_process

SPEC = dict(
    login_password=dict(type="str", no_log=True),
    login_port=dict(type="int", default=5432),
    mode=dict(type="str", default="a", choices=["a", "b"]),
    extra=dict(type="dict", options=dict(token=dict(type="str", no_log=True), name=dict(type="str"))),
    token_file=dict(type="path"),
)


class _Shell:
    tmpdir = "/tmp/ansible-tmp-x"


class _Connection:
    has_native_async = False
    _shell = _Shell()

    def __init__(self, transport):
        self.transport = transport


class _Task:
    action = "pgshift.aurora.x"

    def __init__(self, args, async_val):
        self.args = args
        self.async_val = async_val


class _PlayContext:
    diff = False
    become = False

    def __init__(self, check_mode):
        self.check_mode = check_mode


class _Action:
    async_dir = "/nonexistent"

    def __init__(self, transport, args, async_val=0, check_mode=False, environment=None):
        self._connection = _Connection(transport)
        self._task = _Task(args, async_val)
        self._play_context = _PlayContext(check_mode)
        self.environment = environment or {}
        self.module_runs = []
        self.removed = []

    def get_shell_option(self, option, default=None):
        assert option == "async_dir"
        return self.async_dir

    def _remote_expand_user(self, path):
        return path

    def _compute_environment_string(self, raw_environment_out):
        raw_environment_out.update(self.environment)
        return ""

    def _execute_module(self, task_vars, wrap_async):
        self.module_runs.append((task_vars, wrap_async))
        return dict(changed=False, ran="module")

    def _remove_tmp_path(self, path):
        self.removed.append(path)


MODULE_SPEC = dict(argument_spec=SPEC, mutually_exclusive=[("login_password", "token_file")])


def runner(function):
    """A run_module that ends as a runner does: with exit_json of what function(params, check_mode) returns."""
    def run_module(module):
        module.exit_json(**function(module.params, module.check_mode))
    return run_module


def test_the_params_are_checked_and_defaulted_as_the_module_does_and_the_secrets_masked():
    seen = []

    def run_module(module):
        seen.append(module.params)
        module.warn("tok-123 expires")
        module.exit_json(changed=False, said="connected with s3cret-pw on port %d" % module.params["login_port"],
                         nested=dict(why="token tok-123"))

    result = in_process.module_result(MODULE_SPEC, dict(login_password="s3cret-pw", login_port="6432",
                                                        extra=dict(token="tok-123", name="n")), run_module)
    assert seen[0]["login_port"] == 6432 and seen[0]["mode"] == "a"
    assert "s3cret-pw" not in str(result) and "tok-123" not in str(result)
    assert result["said"] == "connected with ******** on port 6432"
    assert result["warnings"] == ["******** expires"]


def test_bad_input_fails_before_the_runner_and_never_shows_a_secret():
    def run_module(module):
        raise AssertionError("the runner must not run on bad input")

    for args, said in ((dict(login_password="s3cret-pw", mode="c", nope=1), ("mode", "nope")),
                       (dict(login_password="s3cret-pw", token_file="/t"), ("mutually exclusive",))):
        result = in_process.module_result(MODULE_SPEC, args, run_module)
        assert result["failed"] is True and result["changed"] is False
        assert all(word in result["msg"] for word in said), result["msg"]
        assert "s3cret-pw" not in str(result)


def test_fail_json_ends_the_run_even_inside_a_runners_broad_except():
    """exit_json and fail_json end the run as SystemExit ends a module process: a runner's `except Exception`
    around them never turns the result into an error, and nothing after them runs."""
    after = []

    def run_module(module):
        try:
            module.fail_json(msg="no slot for s3cret-pw", queries=["SELECT 1"], exception="Traceback: s3cret-pw")
        except Exception:  # pylint: disable=broad-except
            after.append("caught")
        after.append("went on")

    result = in_process.module_result(MODULE_SPEC, dict(login_password="s3cret-pw"), run_module)
    assert after == []
    invocation = result.pop("invocation")
    assert result == dict(failed=True, msg="no slot for ********", queries=["SELECT 1"], exception="Traceback: ********")
    # The options, as AnsibleModule returns them: a no_log value replaced whole.
    assert invocation == dict(module_args=dict(login_password="VALUE_SPECIFIED_IN_NO_LOG_PARAMETER", login_port=5432,
                                               mode="a", extra=None, token_file=None))


def test_an_error_the_runner_did_not_expect_fails_the_task_without_the_secret():
    def run_module(module):
        raise RuntimeError("could not use password %s" % module.params["login_password"])

    result = in_process.module_result(MODULE_SPEC, dict(login_password="s3cret-pw"), run_module, name="pgshift.aurora.x")
    assert result["msg"] == "pgshift.aurora.x failed: RuntimeError: could not use password ********"
    assert result["failed"] is True
    assert "s3cret-pw" not in str(result)
    # A runner that returns without exit_json or fail_json fails the task too.
    result = in_process.module_result(MODULE_SPEC, {}, lambda module: None, name="pgshift.aurora.x")
    assert result == dict(failed=True, changed=False, msg="pgshift.aurora.x ended without a result")


def test_the_result_is_json_as_the_module_output_would_be():
    result = in_process.module_result(MODULE_SPEC, {}, runner(lambda params, check_mode: dict(changed=False, at=(1, 2), n=None)))
    del result["invocation"]
    assert result == dict(changed=False, at=[1, 2], n=None)


def test_only_a_local_task_without_become_or_environment_runs_in_this_process():
    run_module = runner(lambda params, check_mode: dict(changed=False, ran="here", check_mode=check_mode))
    for transport in ("local", "ansible.builtin.local"):
        action = _Action(transport, {}, check_mode=True)
        result = in_process.run_task(action, {}, MODULE_SPEC, run_module)
        assert (result["ran"], result["check_mode"], result["changed"]) == ("here", True, False)
        assert action.module_runs == []
    # Another connection: the module, as the builtin normal action runs it (its temporary directory removed).
    action = _Action("ssh", dict(login_port=1))
    assert in_process.run_task(action, {"v": 1}, MODULE_SPEC, run_module)["ran"] == "module"
    assert action.module_runs == [({"v": 1}, False)] and action.removed == ["/tmp/ansible-tmp-x"]
    # An async task on another connection: the module through Ansible's async wrapper, its files kept.
    action = _Action("ssh", {}, async_val=600)
    assert in_process.run_task(action, {}, MODULE_SPEC, run_module)["ran"] == "module"
    assert action.module_runs == [({}, True)] and action.removed == []
    # become (the module would run as that user), a task environment (the module process would get it), or the
    # runner's library missing here: the module.
    action = _Action("local", {})
    action._play_context.become = True
    assert in_process.run_task(action, {}, MODULE_SPEC, run_module)["ran"] == "module"
    action = _Action("local", {}, environment=dict(AWS_PROFILE="ops"))
    assert in_process.run_task(action, {}, MODULE_SPEC, run_module)["ran"] == "module"
    action = _Action("local", {})
    assert in_process.run_task(action, {}, MODULE_SPEC, run_module, import_error="No module named 'boto3'")["ran"] == "module"


def _wait_job(path, timeout=30):
    from ansible_collections.pgshift.aurora.plugins.module_utils import progress

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = progress.async_job_status(path)
        if status.get("finished"):
            return status
        time.sleep(0.05)
    raise AssertionError("the job did not finish: %s" % progress.async_job_status(path))


def test_a_local_async_task_runs_as_a_detached_job_followed_by_its_file(tmp_path):
    """An async task starts at once, as Ansible's async wrapper answers (job id, results_file); its job file says
    running, then holds the module's result (secrets masked), which async_status reads as finished."""
    def run_module(module):
        time.sleep(0.5)
        module.warn("slow with s3cret-pw")
        module.exit_json(changed=True, pid=os.getpid(), session=os.getsid(0), check_mode=module.check_mode)

    action = _Action("local", dict(login_password="s3cret-pw"), async_val=60, check_mode=True)
    action.async_dir = str(tmp_path / "async")
    started = in_process.run_task(action, {}, MODULE_SPEC, run_module)
    assert action.module_runs == []
    assert started["started"] is True and started["finished"] is False and started["failed"] is False
    assert started["results_file"] == os.path.join(action.async_dir, started["ansible_job_id"])
    running = json.loads(open(started["results_file"]).read())
    assert running == dict(started=True, finished=False, ansible_job_id=started["ansible_job_id"])
    done = _wait_job(started["results_file"])
    assert done["changed"] is True and done["check_mode"] is True and done["finished"] is True
    assert done["ansible_job_id"] == started["ansible_job_id"]
    assert done["warnings"] == ["slow with ********"]
    # It ran in another process, detached from this one's session (Ctrl-C on the playbook does not reach it).
    assert done["pid"] != os.getpid() and done["session"] != os.getsid(0)


def test_a_local_async_job_is_killed_after_its_time_limit(tmp_path):
    def run_module(module):
        time.sleep(60)
        module.exit_json(changed=False)

    action = _Action("local", {}, async_val=1)
    action.async_dir = str(tmp_path / "async")
    started = in_process.run_task(action, {}, MODULE_SPEC, run_module)
    done = _wait_job(started["results_file"])
    assert done["failed"] is True and done["msg"] == "Timeout exceeded" and done["finished"] is True
    with pytest.raises(ProcessLookupError):
        os.kill(done["child_pid"], 0)


def test_a_failed_local_async_job_says_why_in_its_file(tmp_path):
    def run_module(module):
        module.fail_json(msg="no slot for %s" % module.params["login_password"])

    action = _Action("local", dict(login_password="s3cret-pw"), async_val=30)
    action.async_dir = str(tmp_path / "async")
    done = _wait_job(in_process.run_task(action, {}, MODULE_SPEC, run_module)["results_file"])
    assert done["failed"] is True and done["msg"] == "no slot for ********"


def test_every_action_plugin_of_a_module_runs_that_modules_runner():
    """Each module with an action plugin of its name: the plugin's spec is the module's (the same options and
    constraints as the module's AnsibleModule), and the module's main() calls the same run_module."""
    import importlib
    import inspect
    import os

    action_dir = os.path.join(os.path.dirname(in_process.__file__), "..", "action")
    checked = []
    for filename in sorted(os.listdir(action_dir)):
        name = filename[:-3]
        plugin = importlib.import_module("ansible_collections.pgshift.aurora.plugins.action." + name)
        action = plugin.ActionModule
        if not hasattr(action, "runner"):
            continue  # an action plugin of its own (job_progress, report_files, pg_replication_wait)
        module = importlib.import_module("ansible_collections.pgshift.aurora.plugins.modules." + name)
        main = inspect.getsource(module.main)
        assert "runner.%s(module)" % action.runner.__name__ in main, name
        assert "runner.%s()" % action.spec.__name__ in main, name
        assert action.runner.__module__ == action.spec.__module__, name
        spec = action.spec()
        assert set(spec) <= {"argument_spec", "mutually_exclusive", "required_one_of", "required_if",
                             "required_together", "required_by"}, name
        checked.append(name)
    assert len(checked) == 14, checked


def test_the_plan_runner_fails_bad_input_as_the_module_did():
    result = in_process.module_result(plan_runner.module_spec(), dict(migration_name="bad name!", streams=-1),
                                      plan_runner.run_module)
    assert result["failed"] is True and result["changed"] is False
    assert result["msg"].startswith("invalid options: ") and "streams must be 0" in result["msg"]


def test_the_schema_copy_runner_fails_bad_input_as_the_module_did():
    from ansible_collections.pgshift.aurora.plugins.module_utils.runners import schema_copy as schema_copy_runner

    result = in_process.module_result(schema_copy_runner.module_spec(), dict(
        stage="pre", wait_for_streams=["s1"], target_login_host="127.0.0.1"), schema_copy_runner.run_module,
        check_mode=True)
    assert result["failed"] is True and result["changed"] is False
    assert result["msg"] == "invalid options: wait_for_streams is for stage post (the stage pre comes before the loads)"
