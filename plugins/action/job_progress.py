# -*- coding: utf-8 -*-
# Copyright: pgshift.aurora contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Wait for a background (async) module job, printing the progress it writes to a JSON file.

A module cannot print while it runs; a long one (pg_validate over billions of rows) writes
{rows, rows_expected, rows_per_second, eta_seconds, percent} to a progress file instead. This
action runs in the controller, reads the job's status and that file at each interval, prints a
line, and returns the job's own result once it ends, so `register` gets what the module returned.
"""

from __future__ import annotations

import json
import os
import time

from ansible.errors import AnsibleActionFail
from ansible.plugins.action import ActionBase
from ansible.utils.display import Display

from ansible_collections.pgshift.aurora.plugins.module_utils import progress
from ansible_collections.pgshift.aurora.plugins.plugin_utils.async_jobs import JobReader

display = Display()

ARGS = dict(job=None, progress_file=None, label="job", interval=5.0, timeout=86400)
WATCH_SECONDS = 0.2


def progress_line(label, data, elapsed):
    """One printed line from a progress file's content (pure)."""
    if not data:
        return "[%s] %s: starting" % (progress.human_seconds(elapsed), label)
    unit = data.get("unit") or "rows"  # rows are estimated from the catalog; other units are counted exactly
    rows = "{:,}".format(data.get("rows") or 0)
    expected = data.get("rows_expected")
    parts = ["%s%s %s" % (rows, ("/~{:,}" if unit == "rows" else "/{:,}").format(expected) if expected else "", unit)]
    if data.get("percent") is not None:
        parts.append("%5.1f%%" % data["percent"])
    rate = data.get("rows_per_second") or 0
    parts.append("%s %s/s" % ("{:,.0f}".format(rate) if unit == "rows" else "{:,.2f}".format(rate), unit))
    parts.append("ETA %s" % progress.human_seconds(data.get("eta_seconds")))
    if data.get("phase"):
        parts.append(str(data["phase"]))
    return "[%s] %s: %s" % (progress.human_seconds(elapsed), label, " ".join(parts))


class ActionModule(ActionBase):
    TRANSFERS_FILES = False

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        unknown = [k for k in self._task.args if k not in ARGS]
        if unknown:
            raise AnsibleActionFail("unknown option(s): %s" % ", ".join(sorted(unknown)))
        args = dict(ARGS)
        args.update(self._task.args)
        job = args["job"]
        if not isinstance(job, dict) or "ansible_job_id" not in job:
            raise AnsibleActionFail("job must be the registered result of a task run with async and poll: 0")
        try:
            interval, timeout = float(args["interval"]), float(args["timeout"])
        except (TypeError, ValueError) as exc:
            raise AnsibleActionFail("interval and timeout must be numbers: %s" % exc) from None
        if interval <= 0 or timeout <= 0:
            raise AnsibleActionFail("interval and timeout must be above 0")
        start = time.monotonic()
        next_print = start + min(interval, 1.0)
        jobs = JobReader(self, task_vars)
        while True:
            status = jobs.status(job["ansible_job_id"])
            now = time.monotonic()
            if status.get("finished"):
                data = self._read(args["progress_file"])
                if data:
                    display.display(progress_line(args["label"], data, now - start))
                final = dict((k, v) for k, v in status.items()
                             if k not in ("finished", "started", "ansible_job_id", "results_file", "stdout", "stderr"))
                result.update(final)
                return result
            if now - start > timeout:
                raise AnsibleActionFail("%s did not end within %d s (job %s still runs)" % (
                    args["label"], timeout, job["ansible_job_id"]))
            if now >= next_print:
                display.display(progress_line(args["label"], self._read(args["progress_file"]), now - start))
                next_print = now + interval
            time.sleep(WATCH_SECONDS)

    @staticmethod
    def _read(path):
        if not path:
            return None
        try:
            with open(os.path.expanduser(path), encoding="utf-8") as handle:
                return json.load(handle)
        except (OSError, ValueError):
            return None
