# -*- coding: utf-8 -*-
# Copyright: pgshift.aurora contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""How a module with an action plugin of its name runs (plugins/plugin_utils/in_process.py)."""

from __future__ import annotations


class ModuleDocFragment:
    DOCUMENTATION = r"""
attributes:
  action:
    description: Indicates this has a corresponding action plugin so some parts of the options can be executed on
      the controller.
    support: full
    details:
      - With the local connection the whole module runs in the controller's process (see the notes).
notes:
  - With the local connection (the inventory contract), the action plugin of the same name runs the module's code in
    the controller's own process, with the same option checks and the same result (secrets masked), instead of
    starting a module process (about a second a task on a 2-core controller). An C(async) task runs so in a process
    forked from the controller's, detached and followed through its job file as Ansible's async wrapper does
    (M(ansible.builtin.async_status) reads it; the job is killed after C(async) seconds). C(become), a task with an
    C(environment), any other connection, and a controller Python without the module's library run the module.
"""
