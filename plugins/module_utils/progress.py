# -*- coding: utf-8 -*-
# Copyright: pgshift.aurora contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Progress of the replication streams as a DBA reads it: lines, rates, ETAs, CSV rows (pure)."""

from __future__ import annotations

import json
import os
import threading
import time

from ansible_collections.pgshift.aurora.plugins.module_utils import prereqs

UNTIL_CHOICES = ("loaded", "caught_up", "barrier")
CSV_HEADER = ["elapsed_seconds", "stream", "state", "lag_bytes", "lag_seconds", "retained_bytes", "rows_copied",
              "bytes_copied", "load_percent"]


def human_bytes(n):
    return "-" if n is None else prereqs.human_bytes(n)


def human_seconds(s):
    if s is None:
        return "-"
    s = int(round(s))
    return "%d:%02d:%02d" % (s // 3600, (s % 3600) // 60, s % 60)


def estimates(plan):
    """{table: {'rows': estimated rows, 'bytes': estimated bytes}} from a pg_replication_plan result."""
    result = {}
    for stream in (plan or {}).get("streams", []):
        for t in stream.get("tables", []):
            result[t["qualified"]] = dict(rows=t.get("rows") or 0, bytes=t.get("bytes") or 0)
    return result


def table_rates(previous, current, seconds):
    """Rows/s and bytes/s per table between two observations {table: (rows, bytes)}."""
    rates = {}
    if not seconds or seconds <= 0:
        return rates
    for table, (rows, nbytes) in current.items():
        before = previous.get(table, (0, 0))
        rates[table] = (max(0, rows - before[0]) / seconds, max(0, nbytes - before[1]) / seconds)
    return rates


def observed_tables(status):
    """{table: (rows, bytes)} copied so far, over every stream of a pg_replication_status result."""
    seen = {}
    for stream in status.get("streams", []):
        for t in stream.get("tables", []):
            seen[t["table"]] = (t.get("rows") or 0, t.get("bytes") or 0)
    return seen


def table_eta(rows_done, rows_estimate, rate):
    if not rate or rate <= 0 or not rows_estimate or rows_done >= rows_estimate:
        return None
    return (rows_estimate - rows_done) / rate


BLOCK_SIZE = 8192  # PostgreSQL's page size, what pg_stat_progress_create_index counts blocks in


def index_build_units(build):
    """(done, total, unit) of an index build's current phase as pg_stat_progress_create_index counts it: table
    blocks while it scans, tuples while it loads the tree, else partitions or lockers; (None, None, None) when the
    phase counts nothing (sorting)."""
    for done, total, unit in (("blocks_done", "blocks_total", "blocks"), ("tuples_done", "tuples_total", "tuples"),
                              ("partitions_done", "partitions_total", "partitions"),
                              ("lockers_done", "lockers_total", "lockers")):
        if build.get(total):
            return build.get(done) or 0, build[total], unit
    return None, None, None


def observed_index_builds(status):
    """{table: (index, phase, done)} of the key builds running, over every stream of a pg_replication_status
    result (its tables' index_build)."""
    seen = {}
    for stream in status.get("streams", []):
        for t in stream.get("tables", []):
            build = t.get("index_build")
            if build:
                seen[t["table"]] = (build.get("index"), build.get("phase"), index_build_units(build)[0])
    return seen


def index_rates(previous, current, seconds):
    """Units (blocks, tuples...) per second of each table's key build between two observations of
    observed_index_builds(); only for a build seen in the same index and phase both times."""
    rates = {}
    if not seconds or seconds <= 0:
        return rates
    for table, (index, phase, done) in current.items():
        before = previous.get(table)
        if before and before[:2] == (index, phase) and done is not None and before[2] is not None:
            rates[table] = max(0, done - before[2]) / seconds
    return rates


def index_build_state(build, rate):
    """How far an index build is: its phase, done of total, rate and the phase's ETA, for example
    'building index: scanning table  25.0% 2.0 MB/7.8 MB 400.0 kB/s ETA 0:00:15' (rate: units per second or
    None when not measured yet)."""
    done, total, unit = index_build_units(build)
    phase = build.get("phase") or "starting"
    if total is None:
        return "%s, rate - ETA -" % phase
    if unit == "blocks":
        amount = "%s/%s" % (human_bytes(done * BLOCK_SIZE), human_bytes(total * BLOCK_SIZE))
        speed = "%s/s" % human_bytes(rate * BLOCK_SIZE) if rate is not None else "-"
    else:
        amount = "{:,}/{:,} {}".format(done, total, unit)
        speed = "{:,.0f} {}/s".format(rate, unit) if rate is not None else "-"
    eta = (total - done) / rate if rate and rate > 0 and done < total else (0 if done >= total else None)
    return "%s %5.1f%% %s %s ETA %s" % (phase, 100.0 * done / total, amount, speed, human_seconds(eta))


def index_build_line(table, build, rate, keys_left=None):
    """One printed line of a table's key being built: index, phase, done of total, rate, ETA of the phase."""
    left = "" if not keys_left else " (%d key(s) of the table left)" % keys_left
    return "           %-40s building %s%s: %s" % (table, build.get("index") or "a key", left,
                                                   index_build_state(build, rate))


def index_builds_text(builds, rates, limit=3):
    """What the index builds of some sessions are doing, on one line: builds [{'pid', 'name' (what is built) or
    'index' and 'table', phase and counters of pg_stat_progress_create_index}], rates {pid: units/s}
    (index_rates() keyed by pid). The builds furthest from their end first (by share done), `limit` of them;
    '' when none runs."""
    def share(build):
        done, total, dummy = index_build_units(build)
        return done / float(total) if total else 0.0

    def name(build):
        return build.get("name") or "%s on %s" % (build.get("index") or "an index", build.get("table"))

    ordered = sorted(builds, key=lambda b: (share(b), name(b)))
    parts = ["%s: %s" % (name(b), index_build_state(b, rates.get(b["pid"]))) for b in ordered[:limit]]
    if len(ordered) > limit:
        parts.append("and %d more build(s)" % (len(ordered) - limit))
    return "; ".join(parts)


def lines(status, elapsed, rates, plan_estimates, max_tables=8, index_speeds=None):
    """The lines printed at each poll: one per stream, then the tables being copied, then the keys being built
    (index_speeds: index_rates())."""
    out = []
    for s in status.get("streams", []):
        load = s.get("load") or {}
        parts = ["%-26s %-10s" % (s["name"], s.get("state"))]
        if load.get("units"):
            parts.append("load %d/%d units %5.1f%% %s rows %s %s/s ETA %s" % (
                load.get("copied", 0), load["units"], load.get("percent") or 0.0, "{:,}".format(load.get("rows") or 0),
                human_bytes(load.get("bytes")), human_bytes(load.get("bytes_per_second")),
                human_seconds(load.get("eta_seconds"))))
        if s.get("lag_bytes") is not None:
            parts.append("lag %s %s" % (human_bytes(s["lag_bytes"]),
                                        "%.1fs" % s["lag_seconds"] if s.get("lag_seconds") is not None else "-"))
        if s.get("retained_bytes") is not None:
            parts.append("slot holds %s" % human_bytes(s["retained_bytes"]))
        out.append("[%s] %s" % (human_seconds(elapsed), " | ".join(parts)))
        copying = [t for t in s.get("tables", []) if t.get("state") == "copying"]
        for t in copying[:max_tables]:
            rows_rate, bytes_rate = rates.get(t["table"], (0.0, 0.0))
            est = plan_estimates.get(t["table"], {})
            eta = table_eta(t.get("rows") or 0, est.get("rows"), rows_rate)
            out.append("           %-40s copying %s/%s rows %s %s rows/s %s/s ETA %s" % (
                t["table"], "{:,}".format(t.get("rows") or 0), "{:,}".format(est.get("rows") or 0) if est else "?",
                human_bytes(t.get("bytes")), "{:,.0f}".format(rows_rate), human_bytes(bytes_rate), human_seconds(eta)))
        if len(copying) > max_tables:
            out.append("           ... and %d more table(s) copying" % (len(copying) - max_tables))
        indexing = [t for t in s.get("tables", []) if t.get("state") == "indexing"]
        waiting = [t["table"] for t in indexing if not t.get("index_build")]
        for t in [t for t in indexing if t.get("index_build")][:max_tables]:
            out.append(index_build_line(t["table"], t["index_build"], (index_speeds or {}).get(t["table"]),
                                        t.get("keys_pending")))
        if waiting:
            out.append("           key(s) dropped for the copy, to build: %s" % ", ".join(waiting[:max_tables]))
        if s.get("state") == "error":
            out.append("           ERROR: %s" % s.get("message"))
    if not status.get("streams"):
        out.append("[%s] no stream found yet" % human_seconds(elapsed))
    return out


def csv_rows(status, elapsed):
    rows = []
    for s in status.get("streams", []):
        load = s.get("load") or {}
        rows.append([round(elapsed, 1), s["name"], s.get("state"), s.get("lag_bytes"), s.get("lag_seconds"),
                     s.get("retained_bytes"), load.get("rows"), load.get("bytes"), load.get("percent")])
    return rows


def reached(until, status, jobs_finished):
    """Whether the wait is over: (done, reason)."""
    streams = status.get("streams", [])
    if until == "loaded":
        loaded = bool(streams) and all((s.get("load") or {}).get("done") or s.get("state") in ("streaming", "stopped")
                                       for s in streams)
        return (jobs_finished and loaded), "every stream's initial load is copied"
    if until == "caught_up":
        return bool(status.get("caught_up")), "every stream is streaming within the lag limits"
    return bool(status.get("barrier_reached")), "every stream applied the barrier LSN"


def failure(status, jobs):
    """A message when something failed (a stream in error, a load job failed), else None."""
    problems = list(status.get("errors") or [])
    for job in jobs:
        if job.get("failed"):
            problems.append("load job %s failed: %s" % (job.get("stream") or job.get("jid"), job.get("msg")))
    return "; ".join(problems) if problems else None


def async_job_status(path):
    """What ansible.builtin.async_status returns for a job file on this machine: running until the
    module's result replaces the file, then that result with finished=True."""
    if not os.path.exists(path):
        return dict(failed=True, finished=True, msg="could not find job %s" % path)
    try:
        with open(path, encoding="utf-8") as handle:
            data = json.loads(handle.read())
    except (OSError, ValueError):
        return dict(finished=False)  # being written: still running
    if "started" not in data:
        data["finished"] = True
    elif "finished" not in data:
        data["finished"] = False
    return data


def steps_progress(total, done, elapsed, doing, retained_bytes=None, wait_left=None):
    """The progress file of a run made of steps (a stream removed by pg_native_stream state=absent, the cutover's
    step machine; job_progress prints it): steps done of how many, steps/s, an ETA, and what it does or waits for.
    retained_bytes: the WAL a slot being dropped holds; wait_left: seconds the current wait can last at most (until
    a WAL sender is terminated, a stream given up): the ETA then counts it rather than a rate."""
    rate = done / elapsed if elapsed > 0 else 0.0
    left = max(0, total - done)
    if wait_left is not None:
        eta = max(0.0, wait_left) + (max(0, left - 1) / rate if rate > 0 else 0.0)
    else:
        eta = left / rate if rate > 0 else (0.0 if not left else None)
    phase = doing
    if retained_bytes is not None:
        phase += "; the slot holds %s of WAL on the source" % human_bytes(retained_bytes)
    return dict(unit="steps", rows=done, rows_expected=total, rows_per_second=round(rate, 2),
                eta_seconds=None if eta is None else round(eta, 1),
                percent=round(100.0 * done / total, 1) if total else 100.0, phase=phase)


class ProgressFile:
    """A progress file job_progress reads, rewritten at most once a second and at once when asked (no file
    without a path). Thread-safe."""

    SECONDS = 1.0

    def __init__(self, path):
        self.path = path
        self.written = 0.0
        self.lock = threading.Lock()
        if path:
            os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)

    def write(self, data, force=False):
        if not self.path:
            return
        with self.lock:
            if not force and time.monotonic() - self.written < self.SECONDS:
                return
            self.written = time.monotonic()
            tmp = self.path + ".tmp"
            with open(tmp, "w") as handle:
                json.dump(data, handle)
            os.replace(tmp, self.path)


LOCAL_TRANSPORTS = ("local", "ansible.builtin.local", "ansible.legacy.local")
