#!/usr/bin/env python
"""Benchmark: the cutover's write pause and what the application sees, against the offline path.

On a production-shaped lab of its own (bench/benchlab.py: ports 25472 source, 25473 target, 26472
PgBouncer, 25532 moto; lab_root .build/bench-cutover; PostgreSQL 16 -> 18, the master user dbadmin
(not a superuser) and TLS verify-full as the inventory says; pgbench scale --scale, default
BENCH_SCALE else 10), after prepare_source, copy_schema and replicate (untimed; replicate gives the
target planner statistics, which the cutover's preflight requires) and one rehearsal (untimed: it
proves the way back, which every cutover's preflight requires; the benchmark stops when its
rehearsal.json does not say so), --runs rounds (default 5), each:

1. ``pgbouncer`` freeze: the lab's transaction (roles/lab/files/load.pgbench: TPC-B-like plus one
   gap-free ledger row per transaction) with the source's pgbench (PostgreSQL 16) through
   PgBouncer as app_user, --rate R (500) for --seconds T (30), --clients (8), --jobs (2),
   per-transaction logs (-l); after --at seconds (8) ``playbooks/cutover.yml`` moves the traffic.
   Then (load ended) rollback.yml.
2. ``read_only`` freeze: the same with ``-e cutover_freeze_method=read_only`` (application roles
   read-only, their sessions ended): for sources without a pooler. Then rollback.yml.
3. ``offline`` (--offline-runs, default: every round): the application stopped, ``pg_dump -Fd -j2``
   of the source, ``pg_restore -j2 --no-owner --no-acl`` into a new database on the target and
   ``vacuumdb --analyze-only -j2`` (the statistics the cutover's preflight requires of the online
   path): PostgreSQL 18's tools as the master user over TLS (PGSSLMODE=verify-full, PGSSLROOTCERT,
   the lab's password file). The downtime of a dump-and-restore migration of the same data.

Per online run: pgbench's exit status, transactions done, failed transactions (``failed`` in the
log, plus the transactions aborted clients did not run: R x T minus done, when clients aborted),
aborted clients and the errors pgbench printed; the write pause (aurora_cutover's
write_pause_seconds and its timeline); latency p50/p99/max of the transactions that ended
before the freeze (baseline) and of those that ended during the pause and the second after it,
the added latency (p99 and max, minus the baseline's); ledger check on the target (per client
count = distinct = max: no gap, no duplicate). Per freeze method and metric (write pause, failed
client transactions, aborted clients, added p99/max latency, ledger exact, rollback pause): the
median, min and max over the runs and every run's value. Ratio: median offline downtime / median
pgbouncer write pause.

--methods limits the freeze methods run. --baseline <another checkout of the collection> runs every freeze method of
every round with both checkouts, in alternating order, on the same lab (before/after interleaved on a noisy machine);
each run then says its variant and the summary has one entry per method and variant, with the median of each step
of the write pause (freeze .. switch) and the barrier step's detail per run.

The benchmark's own checks connect as the lab's operator (its password read from the inventory
written for this lab). Prints JSON, also written to bench/results/cutover/<UTC start>-<commit>.json
(tracked). Nothing asserts on time.
The lab is left down (--keep leaves it up).
"""

from __future__ import annotations

import argparse
import datetime
import glob
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import benchlab  # noqa: E402  (bench/benchlab.py)
import psycopg  # noqa: E402

REPO = benchlab.REPO
PORTS = dict(source=25472, target=25473, pgbouncer=26472, moto=25532)
METHODS = ("pgbouncer", "read_only")
# the steps from the freeze to the switch: the write pause
STEPS_IN_PAUSE = ("freeze", "barrier", "sequences", "finishing", "verify", "return_path", "switch")


def log(msg):
    benchlab.log("cutover", msg)


def pct(values, p):
    if not values:
        return None
    values = sorted(values)
    k = min(len(values) - 1, max(0, int(round(p / 100.0 * (len(values) - 1)))))
    return values[k]


def run_pgbench(lab, opts, log_dir, offset):
    """The application's load: the source's pgbench through PgBouncer as app_user (the lab's password file)."""
    sw = lab.migration["traffic_switch_pgbouncer"]
    bin_dir = lab.lab.get("lab_source_bin_dir") or benchlab.PG_BIN[16]
    cmd = [os.path.join(bin_dir, "pgbench"), "--no-vacuum", "--client=%d" % opts.clients, "--jobs=%d" % opts.jobs,
           "--time=%d" % opts.seconds, "--rate=%d" % opts.rate, "--log", "--log-prefix=%s/tx" % log_dir,
           "--file=%s" % os.path.join(REPO, "roles", "lab", "files", "load.pgbench"),
           "--define=client_offset=%d" % offset, "--define=scale=%d" % opts.scale,
           "--host=%s" % sw["host"], "--port=%d" % sw["port"], "--username=%s" % lab.lab["lab_app_user"],
           sw["database"]]
    return subprocess.Popen(cmd, env=lab.app_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,  # pylint: disable=consider-using-with
                            text=True, cwd=log_dir)


def read_log(log_dir):
    """[(end_epoch_seconds, latency_ms or None when failed, status)] of every logged transaction."""
    txs = []
    for path in glob.glob(os.path.join(log_dir, "tx*")):
        with open(path, encoding="utf-8") as f:
            for line in f:
                parts = line.split()
                if len(parts) < 6:
                    continue
                end = int(parts[4]) + int(parts[5]) / 1e6
                if parts[2] in ("failed", "skipped"):
                    txs.append((end, None, parts[2]))
                else:
                    txs.append((end, int(parts[2]) / 1000.0, "ok"))
    return txs


def epoch(text):
    return datetime.datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(
        tzinfo=datetime.timezone.utc).timestamp()


def read_report(lab, name):
    try:
        with open(os.path.join(lab.report_dir, name), encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def collection(path):
    """Make the playbooks that follow run the collection under `path` (a directory holding
    ansible_collections/pgshift/aurora; None: this tree's). Returns the one in use before."""
    before = benchlab.COLLECTIONS
    benchlab.COLLECTIONS = path or os.path.join(REPO, ".build", "collections")
    return before


def online_run(lab, method, opts, number, variant="this tree"):
    """One cutover with the load running, then its rollback (when it switched)."""
    extra = [] if method == "pgbouncer" else ["-e", "cutover_freeze_method=%s" % method]
    with lab.operator("source") as c:
        offset = c.execute("SELECT coalesce(max(client_id) + 1, 0) FROM public.ledger").fetchone()[0]
    log_dir = tempfile.mkdtemp(prefix="pgshift-bench-cutover-")
    try:
        proc = run_pgbench(lab, opts, log_dir, offset)
        output = []
        reader = threading.Thread(target=lambda: output.append(proc.stdout.read()), daemon=True)
        reader.start()
        time.sleep(opts.at)
        rc, playbook_seconds, out = lab.playbook("pgshift.aurora.cutover", *extra, check=False)
        still_running = proc.poll() is None
        proc.wait()
        reader.join(10)
        text = "".join(output)
        txs = read_log(log_dir)
    finally:
        shutil.rmtree(log_dir, ignore_errors=True)
    report = read_report(lab, "cutover.json") or {}
    steps = dict((e["step"], e) for e in report.get("timeline") or [] if e.get("kind") == "step" and e.get("time"))
    expected = opts.rate * opts.seconds
    failed = sum(1 for t, lat, s in txs if s == "failed")
    aborted = len(re.findall(r"client \d+ .*aborted", text))
    errors = [line for line in text.splitlines() if "error" in line.lower() or "aborted" in line]
    not_run = max(0, expected - len(txs)) if aborted else 0
    result = dict(run=number, freeze_method=method, variant=variant, cutover_status=report.get("status"),
                  cutover_playbook_rc=rc,
                  cutover_playbook_seconds=round(playbook_seconds, 3),
                  load_still_running_after_cutover=still_running,
                  write_pause_seconds=report.get("write_pause_seconds"),
                  steps=dict((k, v.get("seconds")) for k, v in steps.items()),
                  barrier=(steps.get("barrier") or {}).get("detail"),
                  pgbench=dict(rc=proc.returncode, transactions=len(txs), expected=expected, failed_logged=failed,
                               aborted_clients=aborted, errors=errors[:10]),
                  failed_client_transactions=failed + not_run)
    if "freeze" in steps:
        freeze_at = epoch(steps["freeze"]["time"])
        end = steps.get("switch") or steps["freeze"]
        pause_end = epoch(end["time"]) + (end.get("seconds") or 0)
        baseline = [lat for t, lat, s in txs if lat is not None and t < freeze_at]
        during = [lat for t, lat, s in txs if lat is not None and freeze_at <= t <= pause_end + 1.0]
        lat = dict(baseline_p50=pct(baseline, 50), baseline_p99=pct(baseline, 99), baseline_max=max(baseline or [0]),
                   during_count=len(during), during_p99=pct(during, 99), during_max=max(during or [0]))
        if aborted:  # the survivors' latency says nothing of what the aborted clients saw: no added latency
            lat.update(added_p99=None, added_max=None, note="clients aborted: no added latency")
        else:
            lat["added_p99"] = round((lat["during_p99"] or 0) - (lat["baseline_p99"] or 0), 3)
            lat["added_max"] = round((lat["during_max"] or 0) - (lat["baseline_max"] or 0), 3)
        result["latency_ms"] = lat
    serving = "target" if report.get("status") == "switched" else "source"
    with lab.operator(serving) as db:
        ledger = db.execute("SELECT client_id, count(*), count(DISTINCT seq), max(seq), min(seq) FROM public.ledger "
                            "WHERE client_id >= %s GROUP BY 1", (offset,)).fetchall()
    gaps = sum(1 for c, n, d, m, lo in ledger if n != m or lo != 1)
    duplicates = sum(1 for c, n, d, m, lo in ledger if n != d)
    result["ledger"] = dict(checked_on=serving, clients=len(ledger), rows=sum(n for c, n, d, m, lo in ledger),
                            gaps=gaps, duplicates=duplicates, exact=bool(ledger) and not gaps and not duplicates)
    if report.get("status") != "switched":
        result["cutover_error"] = report.get("error") or benchlab.tail(out, 1500)
        return result
    rc, seconds, out = lab.playbook("pgshift.aurora.rollback", check=False)
    back = read_report(lab, "rollback.json") or {}
    result.update(rollback_rc=rc, rollback_seconds=round(seconds, 3), rollback_status=back.get("status"),
                  rollback_write_pause_seconds=back.get("write_pause_seconds"))
    if rc != 0:
        raise RuntimeError("rollback.yml failed after the %s cutover of run %d (the lab stays on the target): %s" % (
            method, number, back.get("error") or benchlab.tail(out, 3000)))
    return result


def offline_run(lab):
    """Dump, restore and analyse with the application stopped: the downtime of the offline path. PostgreSQL 18's
    tools as the master user over TLS; the migration's own objects (schema pgshift, publications, subscriptions)
    are not the application's and are left out."""
    bin_dir = benchlab.PG_BIN[18]
    env = lab.tool_env()
    src, tgt = lab.source, lab.target
    work = tempfile.mkdtemp(prefix="pgshift-bench-offline-")
    with lab.operator("target", "postgres") as c:
        c.execute("DROP DATABASE IF EXISTS app_offline WITH (FORCE)")
    try:
        t0 = time.monotonic()
        dump = subprocess.run([os.path.join(bin_dir, "pg_dump"), "-h", src["db_host"], "-p", str(src["db_port"]),
                               "-U", src["db_admin_user"], "-Fd", "-j2", "--exclude-schema=pgshift", "--no-publications",
                               "--no-subscriptions", "-f", os.path.join(work, "dump"), src["db_name"]],
                              env=env, capture_output=True, text=True, check=False)
        t1 = time.monotonic()
        with lab.admin("target", "postgres") as c:  # created by the master user, as the target's app is
            c.execute("CREATE DATABASE app_offline")
        t2 = time.monotonic()
        restore = subprocess.run([os.path.join(bin_dir, "pg_restore"), "-h", tgt["db_host"], "-p", str(tgt["db_port"]),
                                  "-U", tgt["db_admin_user"], "-j2", "--no-owner", "--no-acl", "-d", "app_offline",
                                  os.path.join(work, "dump")], env=env, capture_output=True, text=True, check=False)
        t3 = time.monotonic()
        analyze = subprocess.run([os.path.join(bin_dir, "vacuumdb"), "-h", tgt["db_host"], "-p", str(tgt["db_port"]),
                                  "-U", tgt["db_admin_user"], "--analyze-only", "-j2", "-d", "app_offline"],
                                 env=env, capture_output=True, text=True, check=False)
        t4 = time.monotonic()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    with lab.operator("source") as s, lab.operator("target", "app_offline") as t:
        q = "SELECT (SELECT count(*) FROM public.pgbench_accounts), (SELECT count(*) FROM public.ledger)"
        same = s.execute(q).fetchone() == t.execute(q).fetchone()
    with lab.operator("target", "postgres") as c:
        c.execute("DROP DATABASE IF EXISTS app_offline WITH (FORCE)")
    return dict(dump_seconds=round(t1 - t0, 3), restore_seconds=round(t3 - t2, 3), analyze_seconds=round(t4 - t3, 3),
                downtime_seconds=round(t4 - t0, 3), downtime_without_analyze_seconds=round(t3 - t0, 3),
                dump_rc=dump.returncode, restore_rc=restore.returncode, analyze_rc=analyze.returncode,
                errors=benchlab.tail(dump.stderr + restore.stderr + analyze.stderr, 500)
                if dump.returncode or restore.returncode or analyze.returncode else "",
                pgbench_accounts_and_ledger_equal=same, tools=os.path.relpath(bin_dir, REPO))


def spread(values):
    """median, min, max and every value (None values left out of the statistics, kept in runs)."""
    nums = [v for v in values if isinstance(v, (int, float)) and not isinstance(v, bool)]
    out = dict(runs=list(values))
    if nums:
        out.update(median=round(statistics.median(nums), 3), min=min(nums), max=max(nums))
    return out


def summarize(runs):
    """Per metric over the runs of one freeze method."""
    lat = [r.get("latency_ms") or {} for r in runs]
    return dict(
        runs=len(runs),
        switched="%d of %d" % (sum(1 for r in runs if r.get("cutover_status") == "switched"), len(runs)),
        write_pause_seconds=spread([r.get("write_pause_seconds") for r in runs]),
        step_seconds=dict((step, spread([(r.get("steps") or {}).get(step) for r in runs])) for step in STEPS_IN_PAUSE),
        failed_client_transactions=spread([r["failed_client_transactions"] for r in runs]),
        aborted_clients=spread([r["pgbench"]["aborted_clients"] for r in runs]),
        added_p99_latency_ms=spread([x.get("added_p99") for x in lat]),
        added_max_latency_ms=spread([x.get("added_max") for x in lat]),
        ledger_exact=dict(runs=[r["ledger"]["exact"] for r in runs],
                          exact="%d of %d" % (sum(1 for r in runs if r["ledger"]["exact"]), len(runs))),
        rollback_write_pause_seconds=spread([r.get("rollback_write_pause_seconds") for r in runs]))


def rehearse(lab):
    """rehearsal.yml (untimed) before the first cutover: its rehearsal.json must hold a proven way back."""
    rc, seconds, out = lab.playbook("pgshift.aurora.rehearsal", check=False)
    report = read_report(lab, "rehearsal.json") or {}
    proof = report.get("return_path_proof") or {}
    info = dict(rc=rc, seconds=round(seconds, 3), status=report.get("status"), return_path=proof.get("status"),
                proven_at=proof.get("proven_at"), write_pause_seconds=report.get("write_pause_seconds"))
    if rc != 0 or report.get("status") != "rehearsed" or proof.get("status") != "ok":
        raise RuntimeError("the rehearsal did not prove the way back (%s): %s" % (
            info, report.get("error") or proof.get("error") or benchlab.tail(out, 3000)))
    return info


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scale", type=int, default=int(os.environ.get("BENCH_SCALE") or 10),
                    help="pgbench scale of its lab (default BENCH_SCALE, else 10)")
    ap.add_argument("--runs", type=int, default=5,
                    help="rounds of (pgbouncer cutover + rollback, read_only cutover + rollback) on the same lab")
    ap.add_argument("--offline-runs", type=int, default=None,
                    help="offline dump/restore runs, one after each of the first N rounds (default: every round)")
    ap.add_argument("--rate", type=int, default=500)
    ap.add_argument("--seconds", type=int, default=30)
    ap.add_argument("--at", type=float, default=8.0, help="seconds into the load when the cutover starts")
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--methods", default=",".join(METHODS),
                    help="freeze methods to run, comma-separated (default: %s)" % ",".join(METHODS))
    ap.add_argument("--baseline", default=None,
                    help="another checkout of the collection (its root): every round then runs each freeze method "
                         "with both, in alternating order, on the same lab (before/after interleaved)")
    ap.add_argument("--keep", action="store_true", help="leave the lab up")
    opts = ap.parse_args()
    methods = [m for m in METHODS if m in opts.methods.split(",")]
    benchlab.on_sigterm("cutover")
    offline_runs = opts.runs if opts.offline_runs is None else opts.offline_runs
    variants = [("this tree", None)]
    if opts.baseline:
        variants.append(("baseline", benchlab.baseline_collections(opts.baseline,
                                                                   "pgshift-bench-cutover-baseline-")))
    lab = benchlab.Lab("cutover", PORTS, opts.scale)
    result = dict(benchmark="cutover", collection_commit=benchlab.collection_commit(), scale=opts.scale,
                  rate=opts.rate, seconds=opts.seconds, at=opts.at, clients=opts.clients, jobs=opts.jobs,
                  runs=opts.runs, offline_runs=offline_runs,
                  variants=dict((n, os.path.realpath(os.path.join(p, "ansible_collections", "pgshift", "aurora"))
                                 if p else REPO) for n, p in variants),
                  lab=dict(ports=PORTS, lab_root=os.path.relpath(lab.lab_root, REPO), connections=lab.connections()),
                  started_at=datetime.datetime.now(datetime.timezone.utc).isoformat())
    online, offline = [], []
    failure = None
    try:
        lab.up()
        for name in ("pgshift.aurora.prepare_source", "pgshift.aurora.copy_schema", "pgshift.aurora.replicate"):
            log(name)
            lab.playbook(name)
        with lab.operator("source") as c:
            result["source_version"] = benchlab.server_version(c)
        with lab.operator("target") as c:
            result["target_version"] = benchlab.server_version(c)
        log("rehearsal (the way back, required by every cutover's preflight)")
        result["rehearsal"] = rehearse(lab)
        for number in range(1, opts.runs + 1):
            for method in methods:
                for name, path in (variants if number % 2 else variants[::-1]):
                    log("run %d/%d: %s freeze cutover + rollback (%s)" % (number, opts.runs, method, name))
                    collection(path)
                    try:
                        online.append(online_run(lab, method, opts, number, name))
                    finally:
                        collection(None)
            if number <= offline_runs:
                log("run %d/%d: offline dump + restore + analyze" % (number, opts.runs))
                offline.append(offline_run(lab))
    except (RuntimeError, OSError, ValueError, KeyError, psycopg.Error) as exc:  # the JSON still says what was measured
        failure = result["error"] = str(exc)
        log("stopped: %s" % benchlab.tail(str(exc), 3000))
    finally:
        result["online"] = online
        result["offline"] = offline
        lab.close(keep=opts.keep)
    result["summary"] = dict((m if n == "this tree" else "%s (%s)" % (m, n), summarize(
        [r for r in online if r["freeze_method"] == m and r["variant"] == n])) for m in methods for n, p in variants)
    result["summary"]["offline"] = dict(
        downtime_seconds=spread([r["downtime_seconds"] for r in offline]),
        dump_seconds=spread([r["dump_seconds"] for r in offline]),
        restore_seconds=spread([r["restore_seconds"] for r in offline]),
        analyze_seconds=spread([r["analyze_seconds"] for r in offline]),
        all_ok="%d of %d" % (sum(1 for r in offline if not (r["dump_rc"] or r["restore_rc"] or r["analyze_rc"])
                                 and r["pgbench_accounts_and_ledger_equal"]), len(offline)))
    pause = result["summary"].get("pgbouncer", {}).get("write_pause_seconds", {}).get("median")
    down = result["summary"]["offline"]["downtime_seconds"].get("median")
    if pause and down:
        result["offline_downtime_over_write_pause"] = round(down / pause, 1)
    print(json.dumps(result, indent=2, default=str))
    started = datetime.datetime.fromisoformat(result["started_at"])
    path = benchlab.write_result("cutover", dict(result, commit=result["collection_commit"]), started)
    benchlab.log("cutover", "result: %s" % os.path.relpath(path, REPO))
    return 1 if failure else 0


if __name__ == "__main__":
    sys.exit(main())
