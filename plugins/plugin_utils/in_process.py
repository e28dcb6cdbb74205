# -*- coding: utf-8 -*-
# Copyright: pgshift.aurora contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A module's run in the controller's own process, for the local connection (the inventory contract).

Ansible runs a module as a process of its own (AnsiballZ): its payload is built, written out and started,
and every run compiles the module utilities it imports from a zip of their sources. On a controller that
shares its cores with the databases that costs about a second a task (bench/README.md, "The fixed cost of the
playbook path"). When the connection is local that process runs on this machine anyway, with this Python: an
action plugin of the module's name can then run the module's runner here, with the same argument checks and
the same result, secrets masked as a module's are. Any other connection, an async task, a task with an
environment, or a controller Python without the runner's library runs the module as usual.
"""

from __future__ import annotations

import json

from ansible.module_utils.common.arg_spec import ArgumentSpecValidator
from ansible.module_utils.common.parameters import remove_values
from ansible.plugins.action import ActionBase

from ansible_collections.pgshift.aurora.plugins.module_utils import progress


def is_local(action):
    """Whether the task's connection runs its modules on the controller itself."""
    return getattr(action._connection, "transport", None) in progress.LOCAL_TRANSPORTS  # pylint: disable=protected-access


def no_log_values(spec, params):
    """The values of the options the spec marks no_log (those of suboptions too), as strings. Pure."""
    values = set()
    for name, option in spec.items():
        value = (params or {}).get(name)
        if value is None:
            continue
        if option.get("no_log"):
            values.add(str(value))
        if option.get("options"):
            for item in value if isinstance(value, list) else [value]:
                if isinstance(item, dict):
                    values.update(no_log_values(option["options"], item))
    return values


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
    spec = module_spec["argument_spec"]
    validation = ArgumentSpecValidator(**module_spec).validate(dict(args))
    masked = no_log_values(spec, validation.validated_parameters)
    if validation.error_messages:
        result = dict(failed=True, changed=False, msg="; ".join(validation.error_messages))
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
    """Whether the task runs here: the local connection, not async, no task environment (a module process would
    get it; this process keeps its own) and the runner's library importable by the controller's Python."""
    # pylint: disable=protected-access
    if action._task.async_val or not is_local(action) or import_error:
        return False
    environment = {}
    action._compute_environment_string(environment)
    return not environment


def run_task(action, task_vars, module_spec, run_module, import_error=None):
    """The task's result: module_result() in this process when in_this_process(), else the task's module run by
    Ansible as the builtin normal action runs it. The action plugin sets _supports_async."""
    # pylint: disable=protected-access
    if not in_this_process(action, import_error):
        wrap_async = bool(action._task.async_val) and not action._connection.has_native_async
        result = action._execute_module(task_vars=task_vars, wrap_async=wrap_async)
        if not wrap_async:
            action._remove_tmp_path(action._connection._shell.tmpdir)
        return result
    return module_result(module_spec, action._task.args, run_module, check_mode=bool(action._play_context.check_mode),
                         diff=bool(action._play_context.diff), name=action._task.action)


def action_module(module_spec, run_module, import_error=None):
    """The ActionModule class of the action plugin named like a module: module_spec() gives the module's
    AnsibleModule keyword arguments (without supports_check_mode), run_module(module) does its work and ends with
    module.exit_json or module.fail_json (the module's main() calls both with its AnsibleModule); import_error is
    that of the library the runner needs (psycopg or boto3), None when the controller's Python has it."""

    class ActionModule(ActionBase):
        TRANSFERS_FILES = False
        _supports_async = True  # an async task runs the module (run_task)

        def run(self, tmp=None, task_vars=None):
            result = super().run(tmp, task_vars)
            result.update(run_task(self, task_vars, module_spec(), run_module, import_error))
            return result

    return ActionModule
