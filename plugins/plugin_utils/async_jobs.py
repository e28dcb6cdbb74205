# -*- coding: utf-8 -*-
# Copyright: pgshift.aurora contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The status of background (async) jobs, as the action plugins that wait for them read it.

Controller side, shared by pg_replication_wait and job_progress, which check their jobs several times a
second. With the local connection (the inventory contract) a job's status is its file in the async
directory, read in the waiting process; otherwise the async_status module runs for each read.

The async directory is resolved once per wait: resolving "~" goes through the connection, which for the
local one starts a shell (``echo ~``) each time; at five reads a second per job, that was a process start
every 0.1 s with two streams, for as long as a load ran, on the same cores as the copies.
"""

from __future__ import annotations

import os

from ansible_collections.pgshift.aurora.plugins.module_utils import progress
from ansible_collections.pgshift.aurora.plugins.plugin_utils import in_process


class JobReader:
    """Reads async jobs' status for one action run (`action`: the ActionBase, `task_vars`: its task vars)."""

    def __init__(self, action, task_vars):
        self.action = action
        self.task_vars = task_vars
        self.local = in_process.is_local(action)
        self._async_dir = None

    def async_dir(self):
        """The async directory, as async_status would use it; resolved on the first call only."""
        if self._async_dir is None:
            self._async_dir = in_process.async_dir(self.action, local=self.local)
        return self._async_dir

    def status(self, jid):
        """What async_status returns for job `jid`: running (finished false) until the module's result is there."""
        if self.local:
            return progress.async_job_status(os.path.join(self.async_dir(), jid))
        return self.action._execute_module(  # pylint: disable=protected-access
            module_name="ansible.legacy.async_status", module_args=dict(jid=jid, _async_dir=self.async_dir()),
            task_vars=self.task_vars)
