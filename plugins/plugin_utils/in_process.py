# -*- coding: utf-8 -*-
# Copyright: pgshift.aurora contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A module's run in the controller's own process, for the local connection (the inventory contract).

Ansible runs a module as a process of its own (AnsiballZ): its payload is built, written out and started,
and every run compiles the module utilities it imports from a zip of their sources. On a controller that
shares its cores with the databases that costs about a second a task (bench/README.md, "The fixed cost of the
playbook path"). When the connection is local that process runs on this machine anyway, with this Python: an
action plugin of the module's name can then run the module's runner here, with the same argument checks and
the same result, secrets masked as a module's are. Any other connection (or a controller Python without
psycopg) runs the module as usual.
"""

from __future__ import annotations

import json

from ansible.module_utils.common.arg_spec import ArgumentSpecValidator
from ansible.module_utils.common.parameters import remove_values
from ansible.plugins.action import ActionBase

from ansible_collections.pgshift.aurora.plugins.module_utils import progress
from ansible_collections.pgshift.aurora.plugins.module_utils._pg.connection import PSYCOPG_IMPORT_ERROR


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


def module_result(spec, args, execute, check_mode=False, name="the module"):
    """What the module would return for `args`: checked against `spec` as AnsibleModule checks them (types,
    choices, defaults, unknown options), then execute(params, check_mode) -> its result; every no_log value masked
    in the result and in the errors, and the result made JSON as the module's output would be. Pure but for
    execute."""
    validation = ArgumentSpecValidator(spec).validate(dict(args))
    masked = no_log_values(spec, validation.validated_parameters)
    if validation.error_messages:
        result = dict(failed=True, changed=False, msg="; ".join(validation.error_messages))
    else:
        try:
            result = execute(validation.validated_parameters, check_mode=check_mode)
        except Exception as exc:  # pylint: disable=broad-except  # said as a failure, never as a traceback
            result = dict(failed=True, changed=False, msg="%s failed: %s: %s" % (name, type(exc).__name__, exc))
    return json.loads(json.dumps(remove_values(result, masked), default=str))


def run_task(action, task_vars, spec, execute):
    """The task's result: module_result() in this process with the local connection, else (another connection,
    an async task, a controller Python without psycopg) the task's module run by Ansible as the builtin normal
    action runs it. The action plugin sets _supports_async."""
    # pylint: disable=protected-access
    if action._task.async_val or not is_local(action) or PSYCOPG_IMPORT_ERROR:
        wrap_async = bool(action._task.async_val) and not action._connection.has_native_async
        result = action._execute_module(task_vars=task_vars, wrap_async=wrap_async)
        if not wrap_async:
            action._remove_tmp_path(action._connection._shell.tmpdir)
        return result
    return module_result(spec, action._task.args, execute, check_mode=bool(action._play_context.check_mode),
                         name=action._task.action)


def action_module(runner):
    """The ActionModule class of the action plugin named like a module whose runner is `runner` (a module of
    module_utils/runners with argument_spec() and execute(params, check_mode=...), which the module calls too)."""

    class ActionModule(ActionBase):
        TRANSFERS_FILES = False
        _supports_async = True  # an async task runs the module (run_task)

        def run(self, tmp=None, task_vars=None):
            result = super().run(tmp, task_vars)
            result.update(run_task(self, task_vars, runner.argument_spec(), runner.execute))
            return result

    return ActionModule
