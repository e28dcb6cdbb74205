# -*- coding: utf-8 -*-
# Copyright: pgshift.aurora contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""pg_replication_plan in the controller's process when the connection is local (plugins/plugin_utils/in_process.py): no
module process to build and start, about a second a task on a 2-core controller; an async task starts as a job
forked from that process. become, a task environment or any other connection runs the module."""

from __future__ import annotations

from ansible_collections.pgshift.aurora.plugins.module_utils._pg.connection import PSYCOPG_IMPORT_ERROR
from ansible_collections.pgshift.aurora.plugins.module_utils.runners import plan as runner
from ansible_collections.pgshift.aurora.plugins.plugin_utils.in_process import action_module

ActionModule = action_module(runner.module_spec, runner.run_module, PSYCOPG_IMPORT_ERROR)
