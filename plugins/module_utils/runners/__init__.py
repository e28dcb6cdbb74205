# -*- coding: utf-8 -*-
# Copyright: pgshift.aurora contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The modules' runs. Each runner module gives module_spec() (AnsibleModule's keyword arguments but
supports_check_mode) and run_module(module), which does the work and ends with module.exit_json or
module.fail_json. The module's main() calls it with its AnsibleModule; with the local connection the action
plugin of the module's name calls it in the controller's process (plugins/plugin_utils/in_process.py)."""

from __future__ import annotations


def end_with(module, result):
    """Ends a run with `result` (a dict a runner built, secrets already scrubbed): its `warnings` through
    module.warn, fail_json when it has failed=True (with its msg), exit_json otherwise."""
    result = dict(result)
    for warning in result.pop("warnings", None) or []:
        module.warn(warning)
    if result.pop("failed", False):
        module.fail_json(**result)
    module.exit_json(**result)
