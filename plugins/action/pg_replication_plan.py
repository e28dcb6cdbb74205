# -*- coding: utf-8 -*-
# Copyright: pgshift.aurora contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""pg_replication_plan, run in the controller's process when the connection is local (plugin_utils/in_process.py):
the plan is read before the loads start, so the second a module process costs is a second on the migration's
critical path. Any other connection runs the module."""

from __future__ import annotations

from ansible_collections.pgshift.aurora.plugins.module_utils.runners import plan as runner
from ansible_collections.pgshift.aurora.plugins.plugin_utils.in_process import action_module

ActionModule = action_module(runner)
