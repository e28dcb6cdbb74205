#!/usr/bin/env python
"""Benchmark: the CDC ceiling, the highest write rate 1, 2 and 4 streams sustain.

On the production-shaped lab of bench/cdc/run.py (bench/benchlab.py: ports 25478 source, 25479 target,
26478 PgBouncer, 25538 moto; lab_root .build/bench-cdc; PostgreSQL 16 -> 18; pgbench scale --scale,
default 1: the pgbench tables are not what is measured), the source gets a partitioned, index-heavy table
before the schema copy: public.ceiling_events, hash-partitioned on its key into --partitions leaves (16),
five secondary indexes (one on a random uuid), preloaded with --preload rows so the plan spreads the
leaves over the streams by size. It is in the migration's scope (the lab migrates every schema).

For each stream count (--streams 1,2,4):
1. reset the target (the helpers of bench/initial_load/run.py), truncate and preload ceiling_events on the
   source again (the same start for every stream count);
2. `ansible-playbook playbooks/copy_schema.yml` then `playbooks/replicate.yml -e replicate_streams=N`
   (as bench/cdc/run.py does): load, indexes, CDC, caught up;
3. for each rate R of the schedule (--rates), pgbench (the source's, PostgreSQL 16) runs a script of one
   INSERT of --rows rows into ceiling_events with --clients clients at --rate R for --step seconds,
   straight against the source as the master user over TLS verify-full (a DBA's client: the lab's CA and
   password file); a thread samples every 0.5 s each stream's lag in bytes (pg_current_wal_lsn() minus
   the slot's confirmed_flush_lsn) and the CPU time of every process (/proc/<pid>/stat);
4. after the step, the time until every slot confirmed the source's LSN at the step's end (drain);
5. the step is sustained when pgbench achieved at least (1 - --rate-tolerance) x R, the worst stream's
   lag did not grow over the step's second half (least-squares slope of the lag in bytes at most
   max(--slope-floor, --slope-share x the WAL rate of the step)), and it drained within --drain-limit
   seconds. The sweep of a stream count stops at its first step that is not sustained; its ceiling is
   the highest sustained R.

CPU seconds per step and process class: the source's WAL senders (logical decoding), the source's
backends serving pgbench, the source's other processes, the target's apply workers (leader and parallel),
the target's other processes, pgbench itself (its rusage), and the whole machine (/proc/stat), with the
capacity (cores x seconds). Nothing asserts on time: the JSON says what was measured.

Prints JSON and writes it to bench/results/cdc-ceiling/<UTC date>-<commit>.json (tracked in git: small, no
full time series). `--table FILE` prints the README's markdown tables from such a file.
"""

from __future__ import annotations

import argparse
import datetime
import importlib.util
import json
import os
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _cdc():
    """bench/cdc/run.py (its lab ports, pgbench binary, drain; through it bench/initial_load and benchlab)."""
    spec = importlib.util.spec_from_file_location("pgshift_bench_cdc", os.path.join(REPO, "bench", "cdc", "run.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


CDC = _cdc()
IL = CDC.IL
benchlab = CDC.benchlab
psycopg = CDC.psycopg
NAME = "cdc"  # the lab of bench/cdc/run.py: its ports and lab_root
OUT_DIR = os.path.join(benchlab.RESULTS, "cdc-ceiling")
TABLE = "ceiling_events"
CLK_TCK = os.sysconf("SC_CLK_TCK")
CLASSES = ("source_walsender_decode", "source_backends_pgbench", "source_other", "target_apply_workers",
           "target_other", "pgbench_client")

DDL = """
CREATE SEQUENCE public.{t}_id_seq;
CREATE TABLE public.{t} (
    id bigint NOT NULL DEFAULT nextval('public.{t}_id_seq'),
    account integer NOT NULL,
    kind smallint NOT NULL,
    amount numeric(12, 2) NOT NULL,
    ref uuid NOT NULL,
    note text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (id)
) PARTITION BY HASH (id);
ALTER SEQUENCE public.{t}_id_seq OWNED BY public.{t}.id;
CREATE INDEX {t}_account_idx ON public.{t} (account, created_at);
CREATE INDEX {t}_kind_amount_idx ON public.{t} (kind, amount);
CREATE INDEX {t}_ref_idx ON public.{t} (ref);
CREATE INDEX {t}_created_idx ON public.{t} (created_at);
CREATE INDEX {t}_note_idx ON public.{t} (lower(note));
"""
# --target-indexes: more secondary indexes on the target only (after the copy), so that applying a row costs more
# than writing it on the source (an apply-bound target, as a target on slower storage or with reporting indexes)
TARGET_INDEXES = ("(note, account)", "(amount, created_at)", "(ref, account)", "(account, kind, amount)",
                  "(created_at, ref)", "(lower(note), kind)", "(kind, account)", "(amount, ref)")
INSERT = ("INSERT INTO public.{t} (account, kind, amount, ref, note) SELECT {acct} + g, g % 7, "
          "round((random() * 1000)::numeric, 2), gen_random_uuid(), md5(random()::text) FROM generate_series(1, {n}) g")


# ------------------------------------------------------------------ table ----

def create_table(env, partitions):
    """The partitioned table on the source (as the master user, the application's owner), granted to the
    application's user; dropped first if an earlier run left it."""
    with env["lab"].admin("source") as conn:
        conn.execute("DROP TABLE IF EXISTS public.%s" % TABLE)
        conn.execute("DROP SEQUENCE IF EXISTS public.%s_id_seq" % TABLE)
        for stmt in DDL.format(t=TABLE).split(";"):
            if stmt.strip():
                conn.execute(stmt)
        for i in range(partitions):
            conn.execute("CREATE TABLE public.%s_p%02d PARTITION OF public.%s FOR VALUES WITH (MODULUS %d, REMAINDER %d)"
                         % (TABLE, i, TABLE, partitions, i))


def preload(env, rows):
    """The same start for every stream count: the table emptied and filled with `rows` rows, analysed."""
    with env["lab"].admin("source") as conn:
        conn.execute("TRUNCATE public.%s" % TABLE)
        conn.execute(INSERT.format(t=TABLE, acct="0", n=int(rows)))
        conn.execute("ANALYZE public.%s" % TABLE)


# ---------------------------------------------------------------- process ----

def data_dir_pid(env, side):
    """The postmaster's pid of one side (first line of postmaster.pid in its data directory)."""
    with IL.connect(env, side, dbname="postgres") as conn:
        path = conn.execute("SELECT current_setting('data_directory')").fetchone()[0]
    with open(os.path.join(path, "postmaster.pid"), encoding="ascii") as f:
        return int(f.readline())


def proc_snapshot(postmasters, admin_user):
    """{pid: (class, cpu ticks)} of every child of the two postmasters (utime + stime)."""
    out = {}
    prefix = "postgres: %s " % admin_user
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % entry, encoding="ascii", errors="replace") as f:
                stat = f.read()
            fields = stat[stat.rindex(")") + 2:].split()
            ppid = int(fields[1])
            side = postmasters.get(ppid)
            if side is None:
                continue
            with open("/proc/%s/cmdline" % entry, "rb") as f:
                cmd = f.read().replace(b"\0", b" ").decode("ascii", "replace")
        except (OSError, ValueError):
            continue
        ticks = int(fields[11]) + int(fields[12])
        if side == "source":
            cls = ("source_walsender_decode" if "walsender" in cmd else
                   "source_backends_pgbench" if cmd.startswith(prefix) else "source_other")
        else:
            cls = "target_apply_workers" if "apply worker" in cmd else "target_other"
        out[int(entry)] = (cls, ticks)
    return out


def machine_ticks():
    with open("/proc/stat", encoding="ascii") as f:
        vals = [int(v) for v in f.readline().split()[1:]]
    return sum(vals) - vals[3] - vals[4]  # busy: all but idle and iowait


SLOTS_SQL = """
SELECT pg_current_wal_lsn()::text, s.slot_name, pg_wal_lsn_diff(pg_current_wal_lsn(), s.confirmed_flush_lsn)::bigint
FROM pg_replication_slots s WHERE starts_with(s.slot_name, %s) ORDER BY s.slot_name
"""


class Sampler(threading.Thread):
    """Every `interval` s: each stream's lag in bytes (the lab's operator on the source) and every postgres
    process's CPU ticks (kept per step: first and last seen)."""

    def __init__(self, env, interval, postmasters):
        super().__init__(daemon=True)
        self.env = env
        self.interval = interval
        self.postmasters = postmasters
        self.admin_user = env["source"]["db_admin_user"]
        self.prefix = "pgshift_%s_s" % env["name"]
        self.t0 = time.monotonic()
        self.samples = []
        self.errors = []
        self.first = {}
        self.last = {}
        self.halt = threading.Event()
        self.lock = threading.Lock()

    def run(self):
        try:
            with IL.connect(self.env, "source") as src:
                while not self.halt.is_set():
                    started = time.monotonic()
                    try:
                        rows = src.execute(SLOTS_SQL, (self.prefix,)).fetchall()
                        lsn = CDC.native.lsn_to_int(rows[0][0]) if rows else None
                        self.samples.append((started - self.t0, lsn, dict((r[1], r[2]) for r in rows)))
                    except psycopg.Error as exc:
                        self.errors.append(str(exc).strip()[:200])
                    snap = proc_snapshot(self.postmasters, self.admin_user)
                    with self.lock:
                        self._merge(snap)
                    self.halt.wait(max(0.0, self.interval - (time.monotonic() - started)))
        except psycopg.Error as exc:
            self.errors.append("sampler stopped: %s" % exc)

    def _merge(self, snap):
        """A process keeps the class it was first seen with: an exiting backend (a zombie until its postmaster
        reaps it) has an empty command line and would otherwise count as the side's other processes."""
        for pid, (cls, ticks) in snap.items():
            known = self.last.get(pid)
            self.last[pid] = (known[0] if known and cls.endswith("_other") else cls, ticks)

    def now(self):
        return time.monotonic() - self.t0

    def begin_step(self):
        snap = proc_snapshot(self.postmasters, self.admin_user)
        with self.lock:
            self.first = dict(snap)
            self.last = dict(snap)

    def end_step(self):
        """CPU seconds per class since begin_step (a process started during the step counts from 0)."""
        snap = proc_snapshot(self.postmasters, self.admin_user)
        with self.lock:
            self._merge(snap)
            out = dict((c, 0.0) for c in CLASSES)
            for pid, (cls, ticks) in self.last.items():
                out[cls] += (ticks - self.first.get(pid, (cls, 0))[1]) / float(CLK_TCK)
        return out

    def window(self, start, end):
        return [s for s in self.samples if start <= s[0] < end]


# ------------------------------------------------------------------ steps ----

def slope(points):
    """Least-squares slope of [(t, y)] (None under 3 points)."""
    if len(points) < 3:
        return None
    n = float(len(points))
    mt = sum(p[0] for p in points) / n
    my = sum(p[1] for p in points) / n
    den = sum((p[0] - mt) ** 2 for p in points)
    return sum((p[0] - mt) * (p[1] - my) for p in points) / den if den else None


def run_pgbench(env, script, seconds, rate, clients, jobs):
    """pgbench against the source (master user, TLS verify-full, the lab's password file); its figures and its
    own CPU seconds (rusage of the child)."""
    src = env["source"]
    cmd = [CDC.pgbench_bin(env), "--no-vacuum", "--client=%d" % clients, "--jobs=%d" % jobs, "--time=%d" % seconds,
           "--rate=%d" % rate, "--file=%s" % script, "--host=%s" % src["db_host"], "--port=%s" % src["db_port"],
           "--username=%s" % src["db_admin_user"], src["db_name"]]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env["lab"].tool_env(), check=False)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    out = proc.stdout + proc.stderr
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    res = dict(rc=proc.returncode, cpu_seconds=round(cpu, 2))
    for key, pattern in (("tps", r"tps = ([\d.]+) \(without"), ("transactions", r"actually processed: (\d+)"),
                         ("latency_ms", r"latency average = ([\d.]+) ms"),
                         ("schedule_lag_avg_ms", r"rate limit schedule lag: avg ([\d.]+)")):
        m = re.search(pattern, out)
        if m:
            res[key] = float(m.group(1))
    if proc.returncode != 0:
        res["error"] = IL.tail(out, 600)
    return res


def one_step(env, sampler, script, rate, opts):
    with IL.connect(env, "source") as src:
        lsn0 = CDC.native.lsn_to_int(src.execute("SELECT pg_current_wal_lsn()::text").fetchone()[0])
    sampler.begin_step()
    busy0 = machine_ticks()
    start = sampler.now()
    pb = run_pgbench(env, script, opts.step, rate, opts.clients, opts.jobs)
    end = sampler.now()
    cpu = sampler.end_step()
    busy = (machine_ticks() - busy0) / float(CLK_TCK)
    with IL.connect(env, "source") as src:
        end_lsn = src.execute("SELECT pg_current_wal_lsn()::text").fetchone()[0]
    drained = CDC.drain(env, end_lsn, opts.drain_timeout)
    seconds = end - start
    wal_rate = (CDC.native.lsn_to_int(end_lsn) - lsn0) / seconds
    sel = sampler.window(start, end)
    worst = [(t, max(lags.values()) if lags else 0) for t, dummy, lags in sel]
    half = [p for p in worst if p[0] >= start + seconds / 2.0]
    per_stream = {}
    for name in sorted(set(n for s in sel for n in s[2])):
        pts = [(t, lags[name]) for t, dummy, lags in sel if name in lags and t >= start + seconds / 2.0]
        per_stream[name] = dict(slope_bytes_per_s=round(slope(pts) or 0), max_bytes=max([p[1] for p in pts] or [0]))
    lag_slope = slope(half)
    limit = max(opts.slope_floor, opts.slope_share * wal_rate)
    achieved = pb.get("tps") or 0.0
    checks = dict(rate_achieved=achieved >= (1 - opts.rate_tolerance) * rate,
                  lag_not_growing=lag_slope is not None and lag_slope <= limit,
                  drained=drained is not None and drained <= opts.drain_limit)
    cpu = dict((k, round(v, 2)) for k, v in cpu.items())
    cpu["pgbench_client"] = pb["cpu_seconds"]
    cpu["machine_busy"] = round(busy, 2)
    cpu["machine_capacity"] = round(seconds * (os.cpu_count() or 1), 2)
    return dict(target_rate=rate, achieved_tps=round(achieved, 1), rows_per_second=round(achieved * opts.rows),
                pgbench_rc=pb["rc"], latency_ms=pb.get("latency_ms"), schedule_lag_avg_ms=pb.get("schedule_lag_avg_ms"),
                seconds=round(seconds, 1), wal_bytes_per_s=round(wal_rate),
                lag_slope_bytes_per_s=round(lag_slope) if lag_slope is not None else None,
                lag_slope_limit_bytes_per_s=round(limit), lag_max_bytes=max([p[1] for p in worst] or [0]),
                lag_end_bytes=worst[-1][1] if worst else None, drain_seconds=drained, per_stream=per_stream,
                lag_2s_max_bytes=[max([p[1] for p in worst if b <= p[0] - start < b + 2] or [0])
                                  for b in range(0, int(seconds), 2)],
                cpu_seconds=cpu, checks=checks, sustained=all(checks.values()) and pb["rc"] == 0,
                error=pb.get("error"))


def partitions_by_stream(plan):
    out = {}
    for s in (plan or {}).get("streams") or []:
        parts = [t["name"] for t in s.get("tables") or [] if t["name"].startswith(TABLE + "_p")]
        out[s["name"]] = len(parts)
    return out


def sweep(env, streams, opts, keep_roles, postmasters, script):
    IL.reset_target(env, keep_roles)
    preload(env, opts.preload)
    workdir = tempfile.mkdtemp(prefix="pgshift-bench-ceiling-")
    res = dict(streams=streams, steps=[])
    try:
        extra = ("-e", "report_dir=%s" % workdir, "-e", "replicate_poll_interval=1")
        start = time.monotonic()
        rc, dummy, out = IL.ansible_playbook(env, "copy_schema.yml", *extra)
        if rc == 0:
            rc, dummy, out = IL.ansible_playbook(env, "replicate.yml", *(extra + ("-e", "replicate_streams=%d" % streams)))
        res["setup_seconds"] = round(time.monotonic() - start, 1)
        if rc != 0:
            res.update(error="setup failed: %s" % IL.tail(out))
            return res
        with open(os.path.join(workdir, "plan.json"), encoding="utf-8") as f:
            plan = json.load(f)
        res["partitions_by_stream"] = partitions_by_stream(plan)
        if opts.target_indexes:
            with env["lab"].admin("target") as conn:
                for i, cols in enumerate(TARGET_INDEXES[:opts.target_indexes]):
                    conn.execute("CREATE INDEX %s_target_%d_idx ON public.%s %s" % (TABLE, i, TABLE, cols))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    # the target's postmaster may be the same process across rounds, but look it up each time
    postmasters[data_dir_pid(env, "target")] = "target"
    sampler = Sampler(env, opts.interval, postmasters)
    sampler.start()
    try:
        for rate in opts.rates:
            benchlab.log(NAME, "%d stream(s): --rate %d for %d s" % (streams, rate, opts.step))
            step = one_step(env, sampler, script, rate, opts)
            benchlab.log(NAME, "  achieved %.0f TPS, lag slope %s B/s (limit %s), max lag %d B, drain %s s: %s" % (
                step["achieved_tps"], step["lag_slope_bytes_per_s"], step["lag_slope_limit_bytes_per_s"],
                step["lag_max_bytes"], step["drain_seconds"], "sustained" if step["sustained"] else "NOT sustained"))
            res["steps"].append(step)
            if not step["sustained"]:
                break  # a backlog left is removed with the streams by the next round's reset_target
    finally:
        sampler.halt.set()
        sampler.join()
    res["sampler_errors"] = sampler.errors[:5]
    ok = [s["target_rate"] for s in res["steps"] if s["sustained"]]
    res["ceiling_tps"] = max(ok) if ok else None
    res["ceiling_rows_per_second"] = res["ceiling_tps"] * opts.rows if ok else None
    failed = next((s for s in res["steps"] if not s["sustained"]), None)
    res["stopped_at"] = failed["target_rate"] if failed else None
    # rate_achieved alone: the load could not be written (source and machine saturated), the streams kept up;
    # lag_not_growing / drained: replication fell behind
    res["stopped_by"] = sorted(k for k, v in failed["checks"].items() if not v) if failed else []
    res["highest_achieved_tps_with_bounded_lag"] = max(
        [s["achieved_tps"] for s in res["steps"] if s["checks"]["lag_not_growing"] and s["checks"]["drained"]] or [0])
    return res


# ------------------------------------------------------------------ table ----

def markdown(data):
    """The README's tables from a result file."""
    base = next((r["ceiling_tps"] for r in data["results"] if r["streams"] == 1), None)
    lines = ["| streams | partitions per stream | ceiling (TPS) | rows/s | ratio to 1 stream | first rate not sustained "
             "| failed check | highest achieved TPS with bounded lag |",
             "|---|---|---|---|---|---|---|---|"]
    for r in data["results"]:
        ratio = round(r["ceiling_tps"] / float(base), 2) if base and r.get("ceiling_tps") else None
        failed = next((s for s in r["steps"] if not s["sustained"]), None)
        r = dict(r, stopped_by=sorted(k for k, v in failed["checks"].items() if not v) if failed else [],
                 highest_achieved_tps_with_bounded_lag=max([s["achieved_tps"] for s in r["steps"] if
                                                            s["checks"]["lag_not_growing"] and s["checks"]["drained"]]
                                                           or [0]))
        lines.append("| %d | %s | %s | %s | %s | %s | %s | %s |" % (
            r["streams"], " / ".join(str(v) for v in (r.get("partitions_by_stream") or {}).values()), r.get("ceiling_tps"),
            r.get("ceiling_rows_per_second"), ratio, r.get("stopped_at"), ", ".join(r.get("stopped_by") or []) or "-",
            r.get("highest_achieved_tps_with_bounded_lag")))
    lines += ["", "CPU seconds per second of each step (2.0 = both cores busy), by process class:", "",
              "| streams | rate | achieved TPS | sustained | lag slope (kB/s) | max lag (MB) | decode (walsenders) | apply workers "
              "| source backends | pgbench | other (src+tgt) | machine busy |",
              "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in data["results"]:
        for s in r["steps"]:
            c = s["cpu_seconds"]
            sec = s["seconds"]
            lines.append("| %d | %d | %.0f | %s | %.0f | %.1f | %.2f | %.2f | %.2f | %.2f | %.2f | %.2f |" % (
                r["streams"], s["target_rate"], s["achieved_tps"], "yes" if s["sustained"] else "**no**",
                (s["lag_slope_bytes_per_s"] or 0) / 1000.0, s["lag_max_bytes"] / 1e6,
                c["source_walsender_decode"] / sec, c["target_apply_workers"] / sec, c["source_backends_pgbench"] / sec,
                c["pgbench_client"] / sec, (c["source_other"] + c["target_other"]) / sec, c["machine_busy"] / sec))
    return "\n".join(lines)


def machine():
    mem = None
    with open("/proc/meminfo", encoding="ascii") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                mem = int(line.split()[1]) * 1024
    model = None
    with open("/proc/cpuinfo", encoding="ascii", errors="replace") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return dict(cores=os.cpu_count(), cpu_model=model, memory_bytes=mem, kernel=os.uname().release,
                note="both PostgreSQL servers, pgbench and the sampler share these cores")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--streams", default="1,2,4")
    parser.add_argument("--rates", default="500,1000,1500,2000,2500,3000,4000,5000,6000",
                        help="the step schedule, transactions per second")
    parser.add_argument("--step", type=int, default=20, help="seconds per step")
    parser.add_argument("--rows", type=int, default=5, help="rows inserted per transaction")
    parser.add_argument("--partitions", type=int, default=16)
    parser.add_argument("--preload", type=int, default=160000)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--interval", type=float, default=0.5)
    parser.add_argument("--rate-tolerance", type=float, default=0.03)
    parser.add_argument("--slope-floor", type=float, default=65536, help="bytes/s of lag growth always tolerated")
    parser.add_argument("--slope-share", type=float, default=0.02, help="share of the WAL rate tolerated as lag growth")
    parser.add_argument("--drain-limit", type=float, default=5.0)
    parser.add_argument("--drain-timeout", type=float, default=90.0)
    parser.add_argument("--target-indexes", type=int, default=0, choices=range(len(TARGET_INDEXES) + 1),
                        help="more secondary indexes on the target only, made after replicate.yml (apply-bound target)")
    parser.add_argument("--scale", type=int, default=1)
    parser.add_argument("--keep", action="store_true", help="leave the lab up")
    parser.add_argument("--table", metavar="FILE", help="print the README tables of a result file and exit")
    opts = parser.parse_args()
    if opts.table:
        with open(opts.table, encoding="utf-8") as f:
            print(markdown(json.load(f)))
        return
    opts.rates = [int(x) for x in opts.rates.split(",") if x.strip()]
    benchlab.on_sigterm(NAME)
    commit = IL.collection_commit()
    short = subprocess.run(["git", "-C", REPO, "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                           check=False).stdout.strip() or "unknown"
    lab = benchlab.Lab(NAME, CDC.PORTS, opts.scale)
    env = IL.lab_env(lab)
    sweeps = []
    started = datetime.datetime.now(datetime.timezone.utc)
    script_dir = tempfile.mkdtemp(prefix="pgshift-bench-ceiling-script-")
    script = os.path.join(script_dir, "insert.pgbench")
    with open(script, "w", encoding="utf-8") as f:
        f.write("\\set acct random(1, 1000000)\n" + INSERT.format(t=TABLE, acct=":acct", n=opts.rows) + ";\n")
    try:
        lab.up()
        create_table(env, opts.partitions)
        IL.prepare_source(env)
        keep_roles = IL.target_roles(env)
        with IL.connect(env, "source") as conn:
            versions = dict(source=benchlab.server_version(conn))
        with IL.connect(env, "target") as conn:
            versions["target"] = benchlab.server_version(conn)
        versions["pgbench"] = subprocess.run([CDC.pgbench_bin(env), "--version"], capture_output=True, text=True,
                                             check=False).stdout.strip()
        postmasters = {data_dir_pid(env, "source"): "source"}
        try:
            for n in [int(x) for x in opts.streams.split(",") if x.strip()]:
                benchlab.log(NAME, "%d stream(s)" % n)
                sweeps.append(sweep(env, n, opts, keep_roles, postmasters, script))
        finally:
            IL.reset_target(env, keep_roles)
    finally:
        shutil.rmtree(script_dir, ignore_errors=True)
        lab.close(keep=opts.keep)
    base = next((r.get("ceiling_tps") for r in sweeps if r["streams"] == 1), None)
    for r in sweeps:
        r["ratio_to_1_stream"] = round(r["ceiling_tps"] / float(base), 2) if base and r.get("ceiling_tps") else None
    out = dict(
        benchmark="cdc-ceiling",
        what="highest write rate (pgbench TPS, --rows rows each) whose lag stays bounded, per stream count",
        started_utc=started.strftime("%Y-%m-%dT%H:%M:%SZ"),
        duration_seconds=round((datetime.datetime.now(datetime.timezone.utc) - started).total_seconds()),
        collection_commit=commit, machine=machine(), versions=versions,
        command="bench/cdc/ceiling.py " + " ".join(sys.argv[1:]),
        lab=dict(ports=CDC.PORTS, pgbench_scale=opts.scale, lab_root=os.path.relpath(lab.lab_root, REPO),
                 connections=dict(lab.connections(peers=False, application=False),
                                  load="pgbench straight to the source as %s over TLS sslmode=%s" % (
                                      env["source"]["db_admin_user"], env["source"]["db_sslmode"]))),
        table=dict(name="public.%s" % TABLE, partitions=opts.partitions, partitioning="hash (id)",
                   secondary_indexes=5, preload_rows=opts.preload,
                   target_only_indexes=list(TARGET_INDEXES[:opts.target_indexes]),
                   transaction=INSERT.format(t=TABLE, acct=":acct", n=opts.rows)),
        schedule=dict(rates=opts.rates, step_seconds=opts.step, clients=opts.clients, jobs=opts.jobs,
                      sample_interval_seconds=opts.interval),
        sustained=("achieved TPS >= %.0f %% of the rate; least-squares slope of the worst stream's lag (bytes) over the "
                   "step's second half <= max(%d B/s, %.0f %% of the step's WAL rate); every slot confirmed the step's "
                   "end LSN within %.0f s after it" % (100 * (1 - opts.rate_tolerance), opts.slope_floor,
                                                       100 * opts.slope_share, opts.drain_limit)),
        cpu_classes=dict(source_walsender_decode="the source's WAL senders (logical decoding, one per stream)",
                         source_backends_pgbench="the source's backends of the master user (pgbench's sessions)",
                         source_other="the source's other processes (WAL writer, checkpointer, autovacuum, sampler)",
                         target_apply_workers="the target's logical replication apply workers (leader and parallel)",
                         target_other="the target's other processes",
                         pgbench_client="pgbench itself (rusage)",
                         machine_busy="/proc/stat: every process of the machine",
                         machine_capacity="cores x step seconds"),
        results=sweeps,
    )
    text = json.dumps(out, indent=1)
    print(text)
    os.makedirs(OUT_DIR, exist_ok=True)
    path = os.path.join(OUT_DIR, "%s-%s.json" % (started.strftime("%Y%m%dT%H%M"), short))
    with open(path, "w", encoding="utf-8") as f:
        f.write(text + "\n")
    benchlab.log(NAME, "written %s" % os.path.relpath(path, REPO))


if __name__ == "__main__":
    main()
