#!/usr/bin/env python
"""Benchmark: CDC lag at a fixed pgbench rate through PgBouncer, 1 stream against N streams.

On a production-shaped lab of its own (bench/benchlab.py: ports 25478 source, 25479 target, 26478
PgBouncer, 25538 moto; lab_root .build/bench-cdc; PostgreSQL 16 -> 18; pgbench scale --scale, default
BENCH_SCALE else 50; left down afterwards, --keep leaves it up). The phases connect as the inventory
says (the master user dbadmin over TLS verify-full, the subscriptions as the migration user), the
sampler as the master user over TLS (what pg_replication_status reads), the checks as the lab's
operator, the load as the application (PgBouncer, app_user).

For each stream count (1, 2 and 4 by default; --streams 1,2,4):
1. reset the target (every stream removed with pg_native_stream state=absent, database app
   dropped and recreated empty; the helpers of bench/initial_load/run.py);
2. `ansible-playbook playbooks/copy_schema.yml` then `playbooks/replicate.yml -e
   replicate_streams=N` with the lab inventory (load, indexes, CDC, caught up);
3. run the lab's transaction (roles/lab/files/load.pgbench: TPC-B-like plus one ledger row)
   with the source's pgbench (PostgreSQL 16) through PgBouncer as app_user, in three
   phases: steady (--rate 500 for 60 s), burst (no --rate, 10 s), after (--rate 500, 20 s);
   then wait until every slot confirmed the source's LSN at the end of the load (drain);
4. sample every 0.5 s, from a thread, every stream's lag, three ways:
   - lag_seconds / lag_bytes: what pg_replication_status reports, with its SQL and its rule
     (native.lag_seconds): bytes = pg_current_wal_lsn() - the slot's confirmed_flush_lsn;
     seconds = the WAL sender's replay_lag, 0 when nothing is left to confirm;
   - confirmed_age_seconds: how long ago the source's WAL was at the slot's
     confirmed_flush_lsn, interpolated in the sampled (time, pg_current_wal_lsn) history;
   - ledger_freshness_seconds: the age of the newest ledger row of this load visible on the
     target (the ledger is in one stream only): the end-to-end delay of the data;
5. check that the target has every change: row counts of pgbench_history and ledger, the
   balance sums of the three pgbench tables, and the ledger invariant (no gap, no duplicate).

Reports per stream count: p50/p95/max of each lag (worst stream at each sample) during the
steady phase (also without its first 5 s), the burst and after it; the time from the end of
the burst until the lag is under 1 s (first sample, and for good); the drain time; pgbench's
achieved TPS per phase; CPU use per phase; which stream carries which pgbench table. The
goal of issue 3: under 2 s at 500 TPS, back under 1 s within 10 s of the burst's end.
Nothing asserts on time: the JSON says what was measured.

The lab runs no background load; prepare_source.yml runs once, untimed. Prints JSON, also
bench/results/cdc/<UTC start>-<commit>.json (tracked), and the full time series in bench/results/cdc-lag.csv (not).
"""

from __future__ import annotations

import argparse
import csv
import datetime
import importlib.util
import json
import math
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(REPO, ".build", "collections"))

import psycopg  # noqa: E402  (after the path set-up)

from ansible_collections.pgshift.aurora.plugins.module_utils import native  # noqa: E402


def _initial_load():
    """The lab helpers of bench/initial_load/run.py (reset, stream removal, playbook runs)."""
    spec = importlib.util.spec_from_file_location("pgshift_bench_initial_load",
                                                  os.path.join(REPO, "bench", "initial_load", "run.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


IL = _initial_load()
benchlab = IL.benchlab
PORTS = dict(source=25478, target=25479, pgbouncer=26478, moto=25538)
HOT_TABLES = ("public.pgbench_accounts", "public.pgbench_tellers", "public.pgbench_branches", "public.pgbench_history",
              "public.ledger")


# ------------------------------------------------------------------- load ----

def pgbench_bin(env):
    """The source's pgbench (lab_source_bin_dir, else PostgreSQL 16 of .venv/pgshift-pg), as the lab's load."""
    bin_dir = env["labvars"].get("lab_source_bin_dir") or benchlab.PG_BIN[16]
    return os.path.join(bin_dir, "pgbench")


def load_probe(env):
    """(first free ledger client id, pgbench scale) read through PgBouncer as the load does."""
    with psycopg.connect(**env["lab"].app_conninfo()) as conn:
        conn.autocommit = True
        row = conn.execute("SELECT (SELECT coalesce(max(client_id) + 1, 0) FROM ledger), "
                           "(SELECT count(*) FROM pgbench_branches)").fetchone()
    return row[0], row[1]


def run_pgbench(env, seconds, rate, clients, jobs, offset, scale):
    sw = env["migration"]["traffic_switch_pgbouncer"]
    cmd = [pgbench_bin(env), "--no-vacuum", "--client=%d" % clients, "--jobs=%d" % jobs, "--time=%d" % seconds,
           "--file=%s" % os.path.join(REPO, "roles", "lab", "files", "load.pgbench"),
           "--define=client_offset=%d" % offset, "--define=scale=%d" % scale,
           "--host=%s" % sw["host"], "--port=%s" % sw["port"], "--username=%s" % env["labvars"]["lab_app_user"]]
    if rate:
        cmd.append("--rate=%d" % rate)
    cmd.append(sw["database"])
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env["lab"].app_env(), check=False)
    out = proc.stdout + proc.stderr
    res = dict(rc=proc.returncode, clients=clients, jobs=jobs, rate_limit=rate, seconds=seconds)
    for key, pattern in (("tps", r"tps = ([\d.]+) \(without"), ("transactions", r"actually processed: (\d+)"),
                         ("failed", r"number of failed transactions: (\d+)"),
                         ("latency_ms", r"latency average = ([\d.]+) ms"),
                         ("schedule_lag_avg_ms", r"rate limit schedule lag: avg ([\d.]+)"),
                         ("schedule_lag_max_ms", r"rate limit schedule lag: avg [\d.]+ \(max ([\d.]+)")):
        m = re.search(pattern, out)
        if m:
            res[key] = float(m.group(1)) if "." in m.group(1) else int(m.group(1))
    if proc.returncode != 0:
        res["error"] = IL.tail(out, 800)
    return res


# ---------------------------------------------------------------- sampler ----

SOURCE_SQL = """
SELECT extract(epoch FROM clock_timestamp())::float8, pg_current_wal_lsn()::text, s.slot_name,
       pg_wal_lsn_diff(pg_current_wal_lsn(), s.confirmed_flush_lsn)::bigint, s.confirmed_flush_lsn::text,
       extract(epoch FROM r.replay_lag)::float8, r.state
FROM pg_replication_slots s LEFT JOIN pg_stat_replication r ON r.pid = s.active_pid
WHERE starts_with(s.slot_name, %s) ORDER BY s.slot_name
"""
TARGET_SQL = """
SELECT subname, extract(epoch FROM now() - last_msg_receipt_time)::float8
FROM pg_stat_subscription w WHERE relid IS NULL AND starts_with(subname, %s)
  AND coalesce(to_jsonb(w) ->> 'worker_type', 'apply') = 'apply'
"""
FRESHNESS_SQL = """
SELECT extract(epoch FROM clock_timestamp() - max(l.written_at))::float8 FROM unnest(%s::int[]) AS c(id)
CROSS JOIN LATERAL (SELECT written_at FROM ledger WHERE client_id = c.id ORDER BY seq DESC LIMIT 1) l
"""


class Sampler(threading.Thread):
    """Samples every stream's lag every `interval` seconds until stopped."""

    def __init__(self, env, interval, t0):
        super().__init__(daemon=True)
        self.env = env
        self.interval = interval
        self.t0 = t0
        self.prefix = "pgshift_%s_s" % env["name"]
        self.samples = []
        self.errors = []
        self.clients = []
        self.halt = threading.Event()
        self.lock = threading.Lock()

    def set_clients(self, ids):
        with self.lock:
            self.clients = list(ids)

    def run(self):
        try:
            # the master user over TLS, as pg_replication_status reads the same views
            with self.env["lab"].admin("source") as src, self.env["lab"].admin("target") as tgt:
                while not self.halt.is_set():
                    started = time.monotonic()
                    try:
                        self.samples.append(self.sample(src, tgt, started))
                    except psycopg.Error as exc:
                        self.errors.append("%.1f s: %s" % (started - self.t0, str(exc).strip()[:300]))
                    self.halt.wait(max(0.0, self.interval - (time.monotonic() - started)))
        except psycopg.Error as exc:
            self.errors.append("sampler stopped: %s" % exc)

    def sample(self, src, tgt, started):
        rows = src.execute(SOURCE_SQL, (self.prefix,)).fetchall()
        receipt = dict(tgt.execute(TARGET_SQL, (self.prefix,)).fetchall())
        with self.lock:
            clients = list(self.clients)
        fresh = None
        if clients:
            # the target's clock: same host as the source, so the same clock
            age = tgt.execute(FRESHNESS_SQL, (clients,)).fetchone()[0]
            fresh = round(age, 3) if age is not None else None
        streams = {}
        current = None
        for dummy, lsn, slot, lag, confirmed, replay_lag, state in rows:
            current = native.lsn_to_int(lsn)
            streams[slot] = dict(bytes=lag, confirmed=native.lsn_to_int(confirmed),
                                 seconds=native.lag_seconds(lag, replay_lag, state == "streaming", receipt.get(slot)))
        return dict(t=round(started - self.t0, 3), lsn=current, streams=streams, ledger_freshness=fresh)


def add_confirmed_age(samples):
    """Each stream's confirmed_age: seconds since the source's WAL was at the slot's confirmed_flush_lsn.

    From the sampled (time, pg_current_wal_lsn) history, interpolated linearly between two
    samples: a lag in time that does not depend on the WAL sender's replay_lag bookkeeping.
    """
    history = [(s["t"], s["lsn"]) for s in samples if s["lsn"] is not None]
    for s in samples:
        for v in s["streams"].values():
            v["confirmed_age"] = confirmed_age(history, s["t"], s["lsn"], v["confirmed"])


def confirmed_age(history, now, current, confirmed):
    if confirmed is None or current is None:
        return None
    if confirmed >= current:
        return 0.0
    prev_t = prev_lsn = None
    for t, lsn in history:
        if t > now:
            break
        if lsn > confirmed:
            if prev_t is None:
                return None  # behind the first sample: unknown
            crossed = prev_t + (t - prev_t) * (confirmed - prev_lsn) / float(lsn - prev_lsn) if lsn != prev_lsn else t
            return round(max(0.0, now - crossed), 3)
        prev_t, prev_lsn = t, lsn
    return 0.0


# ------------------------------------------------------------- statistics ----

def pct(values, p):
    """Nearest-rank percentile (None for no value)."""
    values = sorted(v for v in values if v is not None)
    if not values:
        return None
    return values[max(0, min(len(values), math.ceil(p / 100.0 * len(values))) - 1)]


def worst(sample, key):
    vals = [s[key] for s in sample["streams"].values() if s[key] is not None]
    return max(vals) if vals else None


def window_stats(samples, start, end):
    """p50/p95/max of the worst stream's lag (seconds, bytes) over samples in [start, end)."""
    sel = [s for s in samples if start <= s["t"] < end]
    secs = [worst(s, "seconds") for s in sel]
    nbytes = [worst(s, "bytes") for s in sel]
    ages = [worst(s, "confirmed_age") for s in sel]
    fresh = [s["ledger_freshness"] for s in sel]
    per_stream = {}
    for name in sorted(set(n for s in sel for n in s["streams"])):
        ss = [s["streams"][name]["seconds"] for s in sel if name in s["streams"]]
        bb = [s["streams"][name]["bytes"] for s in sel if name in s["streams"]]
        aa = [s["streams"][name]["confirmed_age"] for s in sel if name in s["streams"]]
        per_stream[name] = dict(seconds_p95=pct(ss, 95), seconds_max=pct(ss, 100), bytes_p95=pct(bb, 95),
                                bytes_max=pct(bb, 100), confirmed_age_p95=pct(aa, 95), confirmed_age_max=pct(aa, 100))
    return dict(samples=len(sel),
                share_of_samples_over_1mib=round(sum(1 for b in nbytes if (b or 0) > 1048576) / float(len(sel)), 3)
                if sel else None,
                lag_seconds=dict(p50=pct(secs, 50), p95=pct(secs, 95), max=pct(secs, 100)),
                lag_bytes=dict(p50=pct(nbytes, 50), p95=pct(nbytes, 95), max=pct(nbytes, 100)),
                confirmed_age_seconds=dict(p50=pct(ages, 50), p95=pct(ages, 95), max=pct(ages, 100)),
                ledger_freshness_seconds=dict(p50=pct(fresh, 50), p95=pct(fresh, 95), max=pct(fresh, 100)),
                per_stream=per_stream)


def value(sample, key):
    """The worst stream's `key` in a sample (ledger_freshness: the sample's own)."""
    return sample.get(key) if key == "ledger_freshness" else worst(sample, key)


def recovery(samples, burst_start, burst_end, key, limit=1.0):
    """Seconds from the burst's end until the lag (`key`) is under `limit`: first sample, and for good.

    0-ish when the lag never reached `limit` (reached_limit_during_burst says so).
    """
    during = [value(s, key) or 0 for s in samples if burst_start <= s["t"] < burst_end]
    after = [s for s in samples if s["t"] >= burst_end]
    first = next((s["t"] - burst_end for s in after if (value(s, key) or 0) < limit), None)
    good = None
    for i, s in enumerate(after):
        if all((value(x, key) or 0) < limit for x in after[i:]):
            good = s["t"] - burst_end
            break
    peak = max([value(s, key) or 0 for s in after] or [0])
    return dict(first_under_1s=round(first, 2) if first is not None else None,
                under_1s_for_good=round(good, 2) if good is not None else None, peak_after_burst_end=peak,
                peak_during_burst=max(during or [0]), reached_limit_during_burst=max(during or [0]) >= limit)


def series(samples, step=5.0):
    """The worst stream's lag over time, the max of each `step`-second window (a compact view)."""
    out = []
    if not samples:
        return out
    t, end = 0.0, samples[-1]["t"]
    while t <= end:
        sel = [s for s in samples if t <= s["t"] < t + step]
        if sel:
            out.append(dict(t=t, seconds=max([value(s, "seconds") or 0 for s in sel]),
                            bytes=max([value(s, "bytes") or 0 for s in sel]),
                            confirmed_age=max([value(s, "confirmed_age") or 0 for s in sel]),
                            ledger_freshness=max([value(s, "ledger_freshness") or 0 for s in sel])))
        t += step
    return out


def cpu_times():
    with open("/proc/stat", encoding="ascii") as f:
        vals = [int(v) for v in f.readline().split()[1:]]
    idle = vals[3] + vals[4]
    return sum(vals), idle


def cpu_busy(before, after):
    total, idle = after[0] - before[0], after[1] - before[1]
    return round(100.0 * (total - idle) / total, 1) if total else None


# -------------------------------------------------------------- one round ----

def verify(env, offset_first, offset_end):
    """The target has every change: counts, balance sums, the ledger invariant of this load's clients."""
    sql = ("SELECT (SELECT count(*) FROM pgbench_history), (SELECT count(*) FROM ledger), "
           "(SELECT sum(abalance) FROM pgbench_accounts), (SELECT sum(tbalance) FROM pgbench_tellers), "
           "(SELECT sum(bbalance) FROM pgbench_branches)")
    with IL.connect(env, "source") as src, IL.connect(env, "target") as tgt:
        a = src.execute(sql).fetchone()
        b = tgt.execute(sql).fetchone()
        broken = tgt.execute("SELECT count(*) FROM (SELECT client_id FROM ledger WHERE client_id >= %s AND client_id < %s "
                             "GROUP BY client_id HAVING count(*) <> max(seq) OR min(seq) <> 1) x",
                             (offset_first, offset_end)).fetchone()[0]
    names = ("pgbench_history_rows", "ledger_rows", "sum_abalance", "sum_tbalance", "sum_bbalance")
    diffs = dict((n, dict(source=int(x), target=int(y))) for n, x, y in zip(names, a, b) if x != y)
    return dict(identical=not diffs and not broken, differences=diffs, ledger_clients_broken_on_target=broken)


def drain(env, lsn, timeout):
    """Seconds until every stream's slot confirmed `lsn` (the source's LSN when the load ended)."""
    prefix = "pgshift_%s_s" % env["name"]
    start = time.monotonic()
    with IL.connect(env, "source") as src:
        while time.monotonic() - start < timeout:
            left = src.execute("SELECT count(*) FROM pg_replication_slots WHERE starts_with(slot_name, %s) "
                               "AND (confirmed_flush_lsn IS NULL OR confirmed_flush_lsn < %s::pg_lsn)",
                               (prefix, lsn)).fetchone()[0]
            if left == 0:
                return round(time.monotonic() - start, 2)
            time.sleep(0.1)
    return None


def hot_tables(plan):
    out = {}
    for s in (plan or {}).get("streams") or []:
        for t in s.get("tables") or []:
            q = "%s.%s" % (t["schema"], t["name"])
            if q in HOT_TABLES:
                out[q] = s["name"]
    return out


def one_round(env, streams, opts, keep_roles, csv_rows):
    IL.reset_target(env, keep_roles)
    workdir = tempfile.mkdtemp(prefix="pgshift-bench-cdc-")
    res = dict(streams=streams)
    try:
        extra = ("-e", "report_dir=%s" % workdir, "-e", "replicate_poll_interval=1")
        start = time.monotonic()
        rc, dummy, out = IL.ansible_playbook(env, "copy_schema.yml", *extra)
        if rc == 0:
            rc, dummy, out = IL.ansible_playbook(env, "replicate.yml",
                                                 *(extra + ("-e", "replicate_streams=%d" % streams)))
        res["setup_seconds"] = round(time.monotonic() - start, 1)
        if rc != 0:
            res.update(success=False, error="setup failed: %s" % IL.tail(out))
            return res
        with open(os.path.join(workdir, "plan.json"), encoding="utf-8") as f:
            plan = json.load(f)
        res["hot_tables_by_stream"] = hot_tables(plan)
        res["streams_planned"] = len(plan.get("streams") or [])
    finally:
        shutil.rmtree(workdir, ignore_errors=True)

    offset, scale = load_probe(env)
    first_offset = offset
    t0 = time.monotonic()
    sampler = Sampler(env, opts.interval, t0)
    sampler.start()
    phases = []
    for name, secs, rate in (("steady", opts.steady, opts.rate), ("burst", opts.burst, 0), ("after", opts.after, opts.rate)):
        sampler.set_clients(range(first_offset, offset + opts.clients))
        cpu0 = cpu_times()
        p_start = time.monotonic() - t0
        pb = run_pgbench(env, secs, rate, opts.clients, opts.jobs, offset, scale)
        p_end = time.monotonic() - t0
        pb.update(phase=name, start=round(p_start, 2), end=round(p_end, 2), cpu_busy_percent=cpu_busy(cpu0, cpu_times()))
        phases.append(pb)
        offset += opts.clients
    with IL.connect(env, "source") as src:
        end_lsn = src.execute("SELECT pg_current_wal_lsn()::text").fetchone()[0]
    load_end = time.monotonic() - t0
    sampler.set_clients([])
    drain_seconds = drain(env, end_lsn, opts.drain_timeout)
    time.sleep(opts.interval * 2)
    sampler.halt.set()
    sampler.join()
    samples = sampler.samples
    add_confirmed_age(samples)
    for s in samples:
        for name, v in s["streams"].items():
            csv_rows.append([streams, s["t"], name, v["bytes"], v["seconds"], v["confirmed_age"], s["ledger_freshness"]])
    steady, burst, after = phases
    res.update(
        success=all(p["rc"] == 0 for p in phases) and not sampler.errors,
        pgbench=phases,
        steady=window_stats(samples, steady["start"], steady["end"]),
        steady_after_warmup=window_stats(samples, steady["start"] + opts.warmup, steady["end"]),
        burst=window_stats(samples, burst["start"], burst["end"]),
        after_burst=window_stats(samples, burst["end"], after["end"]),
        recovery_after_burst_seconds=dict((k, recovery(samples, burst["start"], burst["end"], k))
                                          for k in ("seconds", "confirmed_age", "ledger_freshness")),
        drain_seconds_after_load=drain_seconds,
        lag_over_time_5s_max=series(samples),
        sampler_errors=sampler.errors[:5],
        load_end_t=round(load_end, 2),
    )
    res["verify"] = verify(env, first_offset, offset)
    res["goal"] = {}
    for key, rkey in (("lag_seconds", "seconds"), ("confirmed_age_seconds", "confirmed_age"),
                      ("ledger_freshness_seconds", "ledger_freshness")):
        back = res["recovery_after_burst_seconds"][rkey]["under_1s_for_good"]
        res["goal"][key] = dict(steady_p95_under_2s=(res["steady"][key]["p95"] or 0) < 2,
                                steady_max_under_2s=(res["steady"][key]["max"] or 0) < 2,
                                under_1s_within_10s_after_burst=back is not None and back <= 10)
    return res


def markdown_table(result):
    """The README's table of a result file: one line per stream count, the worst stream at each sample."""
    def trio(stats, fmt=str):
        return " / ".join(fmt(stats[k]) for k in ("p50", "p95", "max"))

    def by_phase(rnd, key):
        return dict((p["phase"], p.get(key)) for p in rnd["pgbench"])

    lines = ["| streams | lag_seconds p50/p95/max | lag_bytes p50/p95/max | confirmed_age p95/max (s) | ledger freshness "
             "p95/max (s) | share of samples over 1 MiB | burst max lag_seconds | back under 1 s after burst (s) | "
             "TPS steady/burst/after | CPU % steady/burst/after | target identical |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for rnd in result["results"]:
        st = rnd["steady"]
        tps, cpu = by_phase(rnd, "tps"), by_phase(rnd, "cpu_busy_percent")
        phases = ("steady", "burst", "after")
        lines.append("| %s | %s | %s | %s / %s | %s / %s | %.1f %% | %s | %s | %s | %s | %s |" % (
            rnd["streams"], trio(st["lag_seconds"]), trio(st["lag_bytes"], "{:,}".format),
            st["confirmed_age_seconds"]["p95"], st["confirmed_age_seconds"]["max"],
            st["ledger_freshness_seconds"]["p95"], st["ledger_freshness_seconds"]["max"],
            100.0 * st["share_of_samples_over_1mib"], rnd["burst"]["lag_seconds"]["max"],
            rnd["recovery_after_burst_seconds"]["seconds"]["under_1s_for_good"],
            " / ".join("%.0f" % (tps.get(p) or 0) for p in phases),
            " / ".join("%.0f" % (cpu.get(p) or 0) for p in phases),
            "yes" if (rnd.get("verify") or {}).get("identical") else "**no**"))
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--table", metavar="FILE", help="print the Markdown table of a result file and exit")
    parser.add_argument("--streams", default="1,2,4")
    parser.add_argument("--rate", type=int, default=500)
    parser.add_argument("--steady", type=int, default=60)
    parser.add_argument("--burst", type=int, default=10)
    parser.add_argument("--after", type=int, default=20)
    parser.add_argument("--warmup", type=float, default=5.0)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--interval", type=float, default=0.5)
    parser.add_argument("--drain-timeout", type=float, default=120)
    parser.add_argument("--scale", type=int, default=int(os.environ.get("BENCH_SCALE") or 50),
                        help="pgbench scale of its lab (default BENCH_SCALE, else 50)")
    parser.add_argument("--keep", action="store_true", help="leave the lab up")
    opts = parser.parse_args()
    if opts.table:
        with open(opts.table, encoding="utf-8") as f:
            print(markdown_table(json.load(f)))
        return
    benchlab.on_sigterm("cdc")
    commit = IL.collection_commit()
    started = datetime.datetime.now(datetime.timezone.utc)
    lab = benchlab.Lab("cdc", PORTS, opts.scale)
    env = IL.lab_env(lab)
    rounds = []
    csv_rows = []
    try:
        lab.up()
        IL.prepare_source(env)
        keep_roles = IL.target_roles(env)
        with IL.connect(env, "source") as conn:
            src_version = benchlab.server_version(conn)
        try:
            for n in [int(x) for x in opts.streams.split(",") if x.strip()]:
                benchlab.log("cdc", "%d stream(s)" % n)
                rounds.append(one_round(env, n, opts, keep_roles, csv_rows))
        finally:
            IL.reset_target(env, keep_roles)  # no stream or slot left; target app empty
    finally:
        lab.close(keep=opts.keep)
    out = dict(
        benchmark="cdc",
        what="replication lag of the native engine (worst stream at each sample) under a pgbench load through PgBouncer",
        machine=dict(cpus=os.cpu_count(), source_version=src_version,
                     note="both PostgreSQL servers, PgBouncer, pgbench and the sampler share these CPUs"),
        collection_commit=commit,
        lab=dict(ports=PORTS, scale=opts.scale, lab_root=os.path.relpath(lab.lab_root, IL.REPO),
                 connections=lab.connections(peers=False)),
        method=dict(
            load="roles/lab/files/load.pgbench (TPC-B-like + ledger row) via PgBouncer 127.0.0.1:%s as %s, %d clients, "
                 "%d jobs: steady --rate %d for %d s, burst unthrottled for %d s, after --rate %d for %d s" % (
                     env["migration"]["traffic_switch_pgbouncer"]["port"], env["labvars"]["lab_app_user"], opts.clients,
                     opts.jobs, opts.rate, opts.steady, opts.burst, opts.rate, opts.after),
            sampling="every %.1f s: bytes = pg_current_wal_lsn() - confirmed_flush_lsn per slot; seconds = "
                     "native.lag_seconds (replay_lag of pg_stat_replication, 0 when nothing is left to confirm)" %
                     opts.interval,
            setup="reset target, copy_schema.yml + replicate.yml -e replicate_streams=N (-e replicate_poll_interval=1), "
                  "caught up before the load starts",
            steady_after_warmup="the steady phase without its first %.0f s" % opts.warmup),
        background_load="none (a lab of its own; its background load is never started)",
        goal="lag under 2 s at %d TPS; back under 1 s within 10 s after the burst" % opts.rate,
        results=rounds,
    )
    print(json.dumps(out, indent=2))
    path = benchlab.write_result("cdc", dict(out, commit=commit), started)
    benchlab.log("cdc", "result: %s (the time series, untracked: bench/results/cdc-lag.csv)" % os.path.relpath(
        path, IL.REPO))
    os.makedirs(benchlab.RESULTS, exist_ok=True)
    with open(os.path.join(benchlab.RESULTS, "cdc-lag.csv"), "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["streams", "t_seconds", "stream", "lag_bytes", "lag_seconds", "confirmed_age_seconds",
                    "ledger_freshness_seconds"])
        w.writerows(csv_rows)


if __name__ == "__main__":
    main()
