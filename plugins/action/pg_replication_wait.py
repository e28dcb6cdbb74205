# -*- coding: utf-8 -*-
# Copyright: pgshift.aurora contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Wait for the replication streams, printing their progress as it happens.

An action plugin: it runs in the controller, reads the status of pg_replication_status
(and of the load jobs) at each interval, and prints per-stream and per-table lines
with rates and ETAs straight into the playbook output, which a module cannot do while
it runs. With the local connection (the inventory contract) it reads the status in
this process over two connections kept open between polls, instead of starting the
module at every poll (a process that competes for the CPU with the loads it watches);
otherwise it runs the module.
"""

from __future__ import annotations

import csv
import json
import os
import time

from ansible.errors import AnsibleActionFail
from ansible.plugins.action import ActionBase
from ansible.utils.display import Display

from ansible_collections.pgshift.aurora.plugins.module_utils import progress
from ansible_collections.pgshift.aurora.plugins.module_utils._pg import connection as pgconn
from ansible_collections.pgshift.aurora.plugins.module_utils._pg import status as pgstatus
from ansible_collections.pgshift.aurora.plugins.plugin_utils.async_jobs import JobReader

display = Display()

JOB_WATCH_SECONDS = 0.2  # how often local load jobs' files are read between two polls
CHECK_SECONDS = 0.5  # how often the status is read in this process (a few catalog reads over open connections)


def poll_delay(polls, interval, quick):
    """Seconds until the next read of the status, after `polls` reads. Pure.

    quick: the status is read in this process (a few catalog reads over connections kept open) and no job is
    watched: read every CHECK_SECONDS (or `interval` when shorter), so the wait ends within half a second of the
    streams reaching the state waited for, whatever the interval between two printed lines. Otherwise (a module run
    per read, or load jobs whose end is watched in their files meanwhile) the first reads come sooner (0.5, 1, 2 s
    ...) so a short wait ends without a whole interval of delay, then one every `interval`.
    """
    if quick:
        return min(interval, CHECK_SECONDS)
    return min(interval, 0.5 * 2 ** (max(polls, 1) - 1))


def print_due(now, next_print, done, quick):
    """Whether this read's lines are printed: the read that ends the wait, every read when reads come at the
    interval (not quick), else the first read once `interval` has passed since the last lines. Pure."""
    return done or not quick or now >= next_print


OWN_ARGS = dict(
    until=dict(type="str", default="caught_up", choices=list(progress.UNTIL_CHOICES)),
    interval=dict(type="float", default=5),
    timeout=dict(type="int", default=3600),
    jobs=dict(type="list", elements="dict", default=[]),
    plan=dict(type="dict"),
    lag_csv=dict(type="path"),
)


# What async_status adds to a job's result, and what the module's own result says about its call.
JOB_KEYS = frozenset(["finished", "started", "ansible_job_id", "results_file", "stdout", "stderr", "stdout_lines",
                      "stderr_lines", "invocation", "_ansible_suppress_tmpdir_delete", "_ansible_parsed"])


def job_result(status, item):
    """A finished job's own result as the module returned it (what async_status would register), with the loop
    item it ran for; None while it runs. Pure."""
    if not status.get("finished"):
        return None
    out = dict((k, v) for k, v in status.items() if k not in JOB_KEYS)
    out["item"] = item
    return out


class LocalStatus:
    """pg_replication_status read in this process, over connections kept open between polls."""

    def __init__(self, reader):
        self.reader = reader
        self.conns = None

    @classmethod
    def for_args(cls, args):
        """A reader for the module's options, or None when the module must run instead (psycopg missing here, or
        options the module would refuse: it then says what is wrong)."""
        params = None if pgconn.PSYCOPG_IMPORT_ERROR else pgstatus.validated_params(args)
        return None if params is None else cls(pgstatus.Status(params))

    def poll(self):
        """What the module would return: the status, or failed with a message without any secret."""
        try:
            if self.conns is None:
                src = pgconn.connect(self.reader.source_params())
                try:
                    self.conns = (src, pgconn.connect(self.reader.target_params()))
                except Exception:
                    src.close()
                    raise
            status = self.reader.read(*self.conns)
        except pgconn.PgConnectError as exc:
            self.close()
            return dict(failed=True, msg=pgconn.scrub(str(exc), self.reader.secrets))
        except Exception as exc:  # pylint: disable=broad-except  # a database error: said without any secret
            self.close()
            return dict(failed=True, msg=pgconn.scrub("pg_replication_status failed: %s" % exc, self.reader.secrets))
        # As the module's JSON output would carry it (no database types left in the task's result).
        return json.loads(json.dumps(dict(status, changed=False), default=str))

    def close(self):
        for conn in self.conns or ():
            try:
                conn.close()
            except Exception:  # pylint: disable=broad-except  # closing a broken connection
                pass
        self.conns = None


class ActionModule(ActionBase):
    TRANSFERS_FILES = False

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        args = dict(self._task.args)
        own = dict((k, args.pop(k)) for k in list(args) if k in OWN_ARGS)
        validated = self._validate(own)
        status_args = args
        estimates = progress.estimates(validated["plan"])
        start = time.monotonic()
        previous, previous_at, previous_builds = {}, start, {}
        csv_file = self._open_csv(validated["lag_csv"])
        polls = 0
        max_lag = 0
        job_reader = JobReader(self, task_vars)
        reader = LocalStatus.for_args(status_args) if job_reader.local else None
        # Jobs are watched in their files between reads; without them, the state waited for is read every
        # CHECK_SECONDS in this process.
        quick = reader is not None and not validated["jobs"]
        next_print = start
        try:
            while True:
                if reader is not None:
                    status = reader.poll()
                else:
                    status = self._execute_module(module_name="pgshift.aurora.pg_replication_status",
                                                  module_args=status_args, task_vars=task_vars)
                if status.get("failed"):
                    raise AnsibleActionFail(status.get("msg", "pg_replication_status failed"))
                now = time.monotonic()
                polls += 1
                jobs = [self._job(j, job_reader) for j in validated["jobs"]]
                max_lag = max([max_lag] + [s.get("lag_bytes") or 0 for s in status.get("streams", [])])
                problem = progress.failure(status, jobs)
                done, reason = progress.reached(validated["until"], status, all(j.get("finished") for j in jobs))
                if problem or print_due(now, next_print, done, quick):
                    # Lines every `interval` (rates over the time since the last lines), and the last state.
                    current = progress.observed_tables(status)
                    rates = progress.table_rates(previous, current, now - previous_at)
                    builds = progress.observed_index_builds(status)
                    index_speeds = progress.index_rates(previous_builds, builds, now - previous_at)
                    previous, previous_at, previous_builds = current, now, builds
                    for line in progress.lines(status, now - start, rates, estimates, index_speeds=index_speeds):
                        display.display(line)
                    if csv_file is not None:
                        csv.writer(csv_file[1]).writerows(progress.csv_rows(status, now - start))
                        csv_file[1].flush()
                    next_print = now + validated["interval"]
                if problem:
                    results = [j.pop("result") for j in jobs]
                    raise AnsibleActionFail("replication failed: %s" % problem,
                                            result=dict(status=status, jobs=jobs, job_results=results))
                if done:
                    results = [j.pop("result") for j in jobs]
                    result.update(status=status, jobs=jobs, job_results=results, reason=reason, polls=polls,
                                  elapsed_seconds=round(now - start, 1), max_lag_bytes=max_lag,
                                  changed=any(r.get("changed") for r in results))
                    return result
                if now - start > validated["timeout"]:
                    raise AnsibleActionFail(
                        "timed out after %ds waiting until %s; last state: %s" % (
                            validated["timeout"], validated["until"],
                            ", ".join("%s %s" % (s["name"], s.get("message") or s.get("state"))
                                      for s in status.get("streams", [])) or "no stream"),
                        result=dict(status=status, jobs=[dict((k, v) for k, v in j.items() if k != "result")
                                                         for j in jobs]))
                # Load jobs whose files are local are watched meanwhile, so the wait ends (with one last read) as
                # soon as they do.
                self._sleep(poll_delay(polls, validated["interval"], quick), validated["jobs"], job_reader)
        finally:
            if reader is not None:
                reader.close()
            if csv_file is not None:
                csv_file[1].close()

    def _validate(self, own):
        missing = [k for k in own if k not in OWN_ARGS]
        if missing:
            raise AnsibleActionFail("unknown option(s): %s" % ", ".join(missing))
        values = dict((k, v.get("default")) for k, v in OWN_ARGS.items())
        values.update(own)
        if values["until"] not in progress.UNTIL_CHOICES:
            raise AnsibleActionFail("until must be one of %s, not %r" % (
                ", ".join(progress.UNTIL_CHOICES), values["until"]))
        try:
            values["interval"] = float(values["interval"])
            values["timeout"] = int(values["timeout"])
        except (TypeError, ValueError) as exc:
            raise AnsibleActionFail("interval and timeout must be numbers: %s" % exc) from None
        if values["interval"] <= 0 or values["timeout"] <= 0:
            raise AnsibleActionFail("interval and timeout must be above 0")
        for job in values["jobs"] or []:
            if not isinstance(job, dict) or "ansible_job_id" not in job:
                raise AnsibleActionFail("jobs must be the registered results of tasks run with async and poll: 0 "
                                        "(each has ansible_job_id)")
        return values

    @staticmethod
    def _job(job, job_reader):
        st = job_reader.status(job["ansible_job_id"])
        item = job.get("item")
        label = item.get("name") if isinstance(item, dict) and item.get("name") else job["ansible_job_id"]
        return dict(jid=job["ansible_job_id"], stream=label, finished=bool(st.get("finished")),
                    failed=bool(st.get("failed")), msg=st.get("msg"), result=job_result(st, item))

    def _sleep(self, seconds, jobs, job_reader):
        deadline = time.monotonic() + seconds
        if not jobs or not job_reader.local:
            time.sleep(seconds)
            return
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return
            time.sleep(min(JOB_WATCH_SECONDS, left))
            states = [self._job(j, job_reader) for j in jobs]
            if all(st["finished"] for st in states) or any(st["failed"] for st in states):
                return

    @staticmethod
    def _open_csv(path):
        if not path:
            return None
        directory = os.path.dirname(path)
        if directory:
            os.makedirs(directory, exist_ok=True)
        new = not os.path.exists(path)
        handle = open(path, "a", newline="", encoding="utf-8")  # pylint: disable=consider-using-with
        if new:
            csv.writer(handle).writerow(progress.CSV_HEADER)
        return path, handle
