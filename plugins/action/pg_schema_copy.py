# -*- coding: utf-8 -*-
# Copyright: pgshift.aurora contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""pg_schema_copy, run in the controller's process when the connection is local and the task is not async
(plugin_utils/in_process.py): the stage pre comes before the loads, so the second a module process costs is a
second on the migration's critical path. The stage post, started in the background (async), and any other
connection run the module."""

from __future__ import annotations

from ansible_collections.pgshift.aurora.plugins.module_utils.runners import schema_copy as runner
from ansible_collections.pgshift.aurora.plugins.plugin_utils.in_process import action_module

ActionModule = action_module(runner)
