# -*- coding: utf-8 -*-
# Copyright: pgshift.aurora contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A module's run in the controller's own process, for the local connection (the inventory contract).

Ansible runs a module as a process of its own (AnsiballZ): its payload is built, written out and started,
and every run compiles the module utilities it imports from a zip of their sources. On a controller that
shares its cores with the databases that costs about a second a task (bench/README.md, "The fixed cost of the
playbook path"). When the connection is local that process runs on this machine anyway, with this Python: an
action plugin of the module's name can then run the module's runner here, with the same argument checks and
the same result, secrets masked as a module's are; an async task runs so in a process forked from this one,
detached and followed by its job file as Ansible's async wrapper does for a module. Any other connection, become,
a task with an environment, or a controller Python without the runner's library runs the module as usual.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import time

from ansible.module_utils.common.arg_spec import ArgumentSpecValidator
from ansible.module_utils.common.parameters import remove_values
from ansible.module_utils.errors import UnsupportedError
from ansible.plugins.action import ActionBase

from ansible_collections.pgshift.aurora.plugins.module_utils import progress


def is_local(action):
    """Whether the task's connection runs its modules on the controller itself."""
    return getattr(action._connection, "transport", None) in progress.LOCAL_TRANSPORTS  # pylint: disable=protected-access


class ModuleExit(BaseException):
    """How InProcessModule's exit_json and fail_json end a run. A BaseException, as the SystemExit that ends a module
    process is, so that a runner's `except Exception` never takes the result for an error."""

    def __init__(self, result):
        super().__init__("the module's result")
        self.result = result


class InProcessModule:
    """What a runner uses of AnsibleModule (params, check_mode, _diff, warn, exit_json, fail_json), for a run in this
    process: exit_json and fail_json raise ModuleExit with the result, the warnings in it."""

    def __init__(self, params, check_mode=False, diff=False):
        self.params = params
        self.check_mode = check_mode
        self._diff = diff
        self._warnings = []

    def warn(self, warning):
        self._warnings.append(warning)

    def exit_json(self, **kwargs):
        raise ModuleExit(self._result(kwargs))

    def fail_json(self, msg, **kwargs):
        raise ModuleExit(self._result(dict(kwargs, failed=True, msg=str(msg))))

    def _result(self, result):
        result.setdefault("invocation", dict(module_args=dict(self.params)))  # as AnsibleModule returns it
        warnings = self._warnings + list(result.pop("warnings", None) or [])
        if warnings:
            result["warnings"] = warnings
        if not isinstance(result.get("exception", ""), str):  # only a traceback already formatted (and scrubbed)
            del result["exception"]
        return result


def module_result(module_spec, args, run_module, check_mode=False, diff=False, name="the module"):
    """What the module would return for `args`: checked against module_spec (AnsibleModule's keyword arguments:
    argument_spec, mutually_exclusive, required_one_of, required_if...) as AnsibleModule checks them (types, choices,
    defaults, unknown options, the constraints between options), then run_module(InProcessModule) -> its result;
    every no_log value masked in the result and in the errors, and the result made JSON as the module's output
    would be. Pure but for run_module."""
    validation = ArgumentSpecValidator(**module_spec).validate(dict(args))
    masked = validation._no_log_values  # pylint: disable=protected-access  # as AnsibleModule masks them
    if validation.error_messages:
        # Every problem at once (AnsibleModule says the first), an unknown option worded as AnsibleModule words it.
        result = dict(failed=True, changed=False, msg="; ".join(
            "Unsupported parameters for (%s) module: %s" % (name, error.msg) if isinstance(error, UnsupportedError)
            else error.msg for error in validation.errors.errors))
    else:
        try:
            run_module(InProcessModule(validation.validated_parameters, check_mode=check_mode, diff=diff))
            result = dict(failed=True, changed=False, msg="%s ended without a result" % name)
        except ModuleExit as done:
            result = done.result
        except Exception as exc:  # pylint: disable=broad-except  # said as a failure, never as a traceback
            result = dict(failed=True, changed=False, msg="%s failed: %s: %s" % (name, type(exc).__name__, exc))
    return json.loads(json.dumps(remove_values(result, masked), default=str))


def in_this_process(action, import_error):
    """Whether the task runs here: the local connection, no become (a module process would run as that user), no
    task environment (a module process would get it; this process keeps its own) and the runner's library
    importable by the controller's Python. An async task too: start_job() runs it in a process forked from this
    one, as Ansible's async wrapper runs a module."""
    # pylint: disable=protected-access
    if not is_local(action) or import_error or action._play_context.become:
        return False
    environment = {}
    action._compute_environment_string(environment)
    return not environment


def async_dir(action, local=True):
    """The task's async directory, where async_status looks: the shell option async_dir with "~" expanded as the
    connection expands it (that user's home, which need not be $HOME); a local path when local."""
    path = action._remote_expand_user(action.get_shell_option("async_dir", default="~/.ansible_async"))  # pylint: disable=protected-access
    return os.path.expanduser(path) if local else path


def write_job(path, data):
    """The job file as Ansible's async wrapper writes it: whole, by a rename."""
    with open(path + ".tmp", "w", encoding="utf-8") as handle:
        handle.write(json.dumps(data))
    os.rename(path + ".tmp", path)


def _job_process(job_path, jid, time_limit, run):  # pragma: no cover - runs in the forked processes
    """The job, detached as Ansible's async wrapper detaches a module: a new session, the standard streams on
    /dev/null and no other inherited descriptor; one process runs `run` and writes its result into the job file,
    its parent kills it (its process group) after time_limit seconds (0: no limit) and then writes the timeout."""
    os.setsid()
    if os.fork():
        os._exit(0)  # pylint: disable=protected-access
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(devnull, fd)
    os.closerange(3, os.sysconf("SC_OPEN_MAX") if hasattr(os, "sysconf") else 1024)
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, signal.SIG_DFL)
    child = os.fork()
    if child == 0:
        os.setpgid(0, 0)
        try:
            result = run()
        except BaseException as exc:  # pylint: disable=broad-except  # the job file must say it
            result = dict(failed=True, msg="the job ended unexpectedly: %s: %s" % (type(exc).__name__, exc))
        result["ansible_job_id"] = jid
        write_job(job_path, result)
        os._exit(0)  # pylint: disable=protected-access
    try:
        os.setpgid(child, child)
    except OSError:
        pass  # the child set it first
    deadline = time.monotonic() + time_limit if time_limit > 0 else None
    while os.waitpid(child, os.WNOHANG) == (0, 0):
        if deadline is not None and time.monotonic() >= deadline:
            os.killpg(child, signal.SIGKILL)
            os.waitpid(child, 0)
            write_job(job_path, dict(failed=True, msg="Timeout exceeded", child_pid=child, ansible_job_id=jid))
            break
        time.sleep(1)
    os._exit(0)  # pylint: disable=protected-access


def start_job(action, run):
    """An async task started here: the job file written as running, then `run` (-> the module's result) in a
    detached process forked from this one (_job_process). Returns what Ansible's async wrapper returns, for
    async_status, job_progress and pg_replication_wait to follow the job by its file."""
    # pylint: disable=protected-access
    directory = async_dir(action)
    os.makedirs(directory, exist_ok=True)
    jid = "j%d.%d" % (secrets.randbelow(999999999999), os.getpid())
    job_path = os.path.join(directory, jid)
    write_job(job_path, dict(started=True, finished=False, ansible_job_id=jid))
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the forked process
        try:
            _job_process(job_path, jid, int(action._task.async_val), run)
        finally:
            os._exit(1)  # pylint: disable=protected-access
    os.waitpid(pid, 0)
    return dict(failed=False, started=True, finished=False, ansible_job_id=jid, results_file=job_path, changed=False)


def run_task(action, task_vars, module_spec, run_module, import_error=None):
    """The task's result: module_result() in this process when in_this_process() (started as a job in the
    background when the task is async), else the task's module run by Ansible as the builtin normal action runs
    it. The action plugin sets _supports_async."""
    # pylint: disable=protected-access
    if not in_this_process(action, import_error):
        wrap_async = bool(action._task.async_val) and not action._connection.has_native_async
        result = action._execute_module(task_vars=task_vars, wrap_async=wrap_async)
        if not wrap_async:
            action._remove_tmp_path(action._connection._shell.tmpdir)
        return result

    def run():
        return module_result(module_spec, action._task.args, run_module, check_mode=bool(action._play_context.check_mode),
                             diff=bool(action._play_context.diff), name=action._task.action)

    return start_job(action, run) if action._task.async_val else run()


def action_module(module_spec, run_module, import_error=None):
    """The ActionModule class of the action plugin named like a module: module_spec() gives the module's
    AnsibleModule keyword arguments (without supports_check_mode), run_module(module) does its work and ends with
    module.exit_json or module.fail_json (the module's main() calls both with its AnsibleModule); import_error is
    that of the library the runner needs (psycopg or boto3), None when the controller's Python has it."""

    class ActionModule(ActionBase):
        TRANSFERS_FILES = False
        _supports_async = True  # run_task starts an async task as a job
        # What the plugin runs, for the tests that run a module as this plugin does (tests/integration/modrunner.py).
        spec = staticmethod(module_spec)
        runner = staticmethod(run_module)
        library_error = import_error

        def run(self, tmp=None, task_vars=None):
            result = super().run(tmp, task_vars)
            result.update(run_task(self, task_vars, self.spec(), self.runner, self.library_error))
            return result

    return ActionModule
