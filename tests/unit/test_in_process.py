"""A module's runner run in the controller's process (plugin_utils/in_process.py): the same argument checks and
result as the module, secrets masked; any connection but the local one runs the module."""

from __future__ import annotations

from ansible_collections.pgshift.aurora.plugins.module_utils.runners import plan as plan_runner
from ansible_collections.pgshift.aurora.plugins.plugin_utils import in_process

SPEC = dict(
    login_password=dict(type="str", no_log=True),
    login_port=dict(type="int", default=5432),
    mode=dict(type="str", default="a", choices=["a", "b"]),
    extra=dict(type="dict", options=dict(token=dict(type="str", no_log=True), name=dict(type="str"))),
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
    def __init__(self, check_mode):
        self.check_mode = check_mode


class _Action:
    def __init__(self, transport, args, async_val=0, check_mode=False):
        self._connection = _Connection(transport)
        self._task = _Task(args, async_val)
        self._play_context = _PlayContext(check_mode)
        self.module_runs = []
        self.removed = []

    def _execute_module(self, task_vars, wrap_async):
        self.module_runs.append((task_vars, wrap_async))
        return dict(changed=False, ran="module")

    def _remove_tmp_path(self, path):
        self.removed.append(path)


def test_the_params_are_checked_and_defaulted_as_the_module_does_and_the_secrets_masked():
    seen = []

    def execute(params, check_mode):
        seen.append(params)
        return dict(changed=False, said="connected with s3cret-pw on port %d" % params["login_port"],
                    nested=dict(why="token tok-123"), warnings=["tok-123 expires"])

    result = in_process.module_result(SPEC, dict(login_password="s3cret-pw", login_port="6432",
                                                 extra=dict(token="tok-123", name="n")), execute)
    assert seen[0]["login_port"] == 6432 and seen[0]["mode"] == "a"
    assert "s3cret-pw" not in str(result) and "tok-123" not in str(result)
    assert result["said"] == "connected with ******** on port 6432"
    assert result["warnings"] == ["******** expires"]


def test_bad_input_fails_before_the_runner_and_never_shows_a_secret():
    def execute(params, check_mode):
        raise AssertionError("the runner must not run on bad input")

    result = in_process.module_result(SPEC, dict(login_password="s3cret-pw", mode="c", nope=1), execute)
    assert result["failed"] is True and result["changed"] is False
    assert "mode" in result["msg"] and "nope" in result["msg"]
    assert "s3cret-pw" not in str(result)


def test_an_error_the_runner_did_not_expect_fails_the_task_without_the_secret():
    def execute(params, check_mode):
        raise RuntimeError("could not use password %s" % params["login_password"])

    result = in_process.module_result(SPEC, dict(login_password="s3cret-pw"), execute, name="pgshift.aurora.x")
    assert result["msg"] == "pgshift.aurora.x failed: RuntimeError: could not use password ********"
    assert result["failed"] is True
    assert "s3cret-pw" not in str(result)


def test_the_result_is_json_as_the_module_output_would_be():
    result = in_process.module_result(SPEC, {}, lambda params, check_mode: dict(changed=False, at=(1, 2), n=None))
    assert result == dict(changed=False, at=[1, 2], n=None)


def test_only_a_local_task_that_is_not_async_runs_in_this_process():
    def execute(params, check_mode):
        return dict(changed=False, ran="here", check_mode=check_mode)

    for transport in ("local", "ansible.builtin.local"):
        action = _Action(transport, {}, check_mode=True)
        assert in_process.run_task(action, {}, SPEC, execute) == dict(changed=False, ran="here", check_mode=True)
        assert action.module_runs == []
    # Another connection: the module, as the builtin normal action runs it (its temporary directory removed).
    action = _Action("ssh", dict(login_port=1))
    assert in_process.run_task(action, {"v": 1}, SPEC, execute)["ran"] == "module"
    assert action.module_runs == [({"v": 1}, False)] and action.removed == ["/tmp/ansible-tmp-x"]
    # An async task (a job in the background): the module through Ansible's async wrapper, its files kept.
    action = _Action("local", {}, async_val=600)
    assert in_process.run_task(action, {}, SPEC, execute)["ran"] == "module"
    assert action.module_runs == [({}, True)] and action.removed == []


def test_the_plan_runner_fails_bad_input_as_the_module_did():
    params = dict((name, option.get("default")) for name, option in plan_runner.argument_spec().items())
    params.update(migration_name="bad name!", streams=-1)
    result = plan_runner.execute(params)
    assert result["failed"] is True and result["changed"] is False
    assert result["msg"].startswith("invalid options: ") and "streams must be 0" in result["msg"]


def test_the_schema_copy_runner_fails_bad_input_as_the_module_did():
    from ansible_collections.pgshift.aurora.plugins.module_utils.runners import schema_copy as schema_copy_runner

    params = dict((name, option.get("default")) for name, option in schema_copy_runner.argument_spec().items())
    params.update(stage="pre", wait_for_streams=["s1"])
    result = schema_copy_runner.execute(params, check_mode=True)
    assert result["failed"] is True and result["changed"] is False
    assert result["msg"] == "invalid options: wait_for_streams is for stage post (the stage pre comes before the loads)"
