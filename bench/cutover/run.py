#!/usr/bin/env python
"""Benchmark: the cutover's write pause and what the application sees, against the offline path.

On a lab of its own (ports 25472 source, 25473 target, 26472 PgBouncer, 25532 moto; lab_root
.build/cutover-bench; pgbench scale --scale, default 10), after prepare_source, copy_schema and
replicate (untimed):

1. ``pgbouncer`` freeze: the lab's transaction (roles/lab/files/load.pgbench: TPC-B-like plus one
   gap-free ledger row per transaction) with the source's pgbench through PgBouncer as app_user,
   --rate R (500) for --seconds T (30), 8 clients, 2 threads, per-transaction logs (-l); after
   --at seconds (8) ``playbooks/cutover.yml`` moves the traffic. Then (load stopped) rollback.yml.
2. ``read_only`` freeze: the same with ``-e cutover_freeze_method=read_only`` (application roles
   read-only, their sessions ended): for sources without a pooler. Then rollback.yml.
3. ``offline``: the application stopped, ``pg_dump -Fd -j2`` of the source and ``pg_restore -j2``
   into a new database on the target: the downtime of a dump-and-restore migration of the same data.

Per online run: pgbench's exit status, transactions done, failed transactions (``failed`` in the
log, plus the transactions aborted clients did not run: R x T minus done, when clients aborted),
aborted clients and the errors pgbench printed; the write pause (aurora_cutover's
write_pause_seconds and its timeline); latency p50/p99/max of the transactions that ended
before the freeze (baseline) and of those that ended during the pause and the second after it,
the added latency (p99 and max, minus the baseline's); ledger check on the target (per client
count = distinct = max: no gap, no duplicate). Ratio: offline downtime / write pause.

Prints JSON (also bench/results/cutover.json). Nothing asserts on time. The lab is left down.
"""

from __future__ import annotations

import argparse
import datetime
import glob
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
VENV_BIN = os.path.join(REPO, ".venv", "bin")
PORTS = dict(source=25472, target=25473, pgbouncer=26472, moto=25532)
LAB_ROOT = os.path.join(REPO, ".build", "cutover-bench")
ADMIN = "lab-admin-secret"
PG15 = "/usr/lib/postgresql/15/bin"

import psycopg  # noqa: E402
import yaml  # noqa: E402


def write_inventory(root, scale):
    inv = os.path.join(root, "inventory")
    os.makedirs(os.path.join(inv, "host_vars"))
    os.makedirs(os.path.join(inv, "group_vars", "all"))
    shutil.copy(os.path.join(REPO, "inventories", "lab", "hosts.yml"), os.path.join(inv, "hosts.yml"))
    for host, side in (("lab-source", "source"), ("lab-target", "target")):
        with open(os.path.join(REPO, "inventories", "lab", "host_vars", host + ".yml")) as f:
            hv = yaml.safe_load(f)
        hv["db_port"] = PORTS[side]
        with open(os.path.join(inv, "host_vars", host + ".yml"), "w") as f:
            yaml.safe_dump(hv, f)
    with open(os.path.join(REPO, "inventories", "lab", "group_vars", "all", "migration.yml")) as f:
        mig = yaml.safe_load(f)
    mig["traffic_switch_pgbouncer"]["port"] = PORTS["pgbouncer"]
    mig["aws_endpoint_url"] = "http://127.0.0.1:%d" % PORTS["moto"]
    mig["report_dir"] = os.path.join(root, "reports")
    with open(os.path.join(inv, "group_vars", "all", "migration.yml"), "w") as f:
        yaml.safe_dump(mig, f)
    with open(os.path.join(REPO, "inventories", "lab", "group_vars", "all", "lab.yml")) as f:
        labvars = yaml.safe_load(f) or {}
    labvars.update(lab_root=LAB_ROOT, lab_pgbench_scale=scale)
    with open(os.path.join(inv, "group_vars", "all", "lab.yml"), "w") as f:
        yaml.safe_dump(labvars, f)
    return os.path.join(inv, "hosts.yml"), mig, labvars


def playbook(inventory, name, *extra, check=True):
    env = dict(os.environ, ANSIBLE_CONFIG=os.path.join(REPO, "ansible.cfg"),
               ANSIBLE_COLLECTIONS_PATH=os.path.join(REPO, ".build", "collections"), ANSIBLE_NOCOLOR="1")
    t0 = time.monotonic()
    proc = subprocess.run([os.path.join(VENV_BIN, "ansible-playbook"), "-i", inventory, name] + list(extra),
                          cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, check=False)
    if check and proc.returncode != 0:
        raise RuntimeError("%s failed:\n%s" % (name, proc.stdout[-4000:]))
    return proc.returncode, proc.stdout, time.monotonic() - t0


def connect(port, dbname="app"):
    return psycopg.connect(host="127.0.0.1", port=port, dbname=dbname, user="postgres", password=ADMIN,
                           autocommit=True)


def pct(values, p):
    if not values:
        return None
    values = sorted(values)
    k = min(len(values) - 1, max(0, int(round(p / 100.0 * (len(values) - 1)))))
    return values[k]


def run_pgbench(mig, labvars, rate, seconds, clients, jobs, log_dir, offset, scale):
    sw = mig["traffic_switch_pgbouncer"]
    env = dict(os.environ, PGPASSWORD=labvars["lab_app_password"], PGSSLMODE="disable")
    cmd = [os.path.join(PG15, "pgbench"), "--no-vacuum", "--client=%d" % clients, "--jobs=%d" % jobs,
           "--time=%d" % seconds, "--rate=%d" % rate, "--log", "--log-prefix=%s/tx" % log_dir,
           "--file=%s" % os.path.join(REPO, "roles", "lab", "files", "load.pgbench"),
           "--define=client_offset=%d" % offset, "--define=scale=%d" % scale,
           "--host=127.0.0.1", "--port=%d" % sw["port"], "--username=%s" % labvars["lab_app_user"], sw["database"]]
    return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=log_dir)


def read_log(log_dir):
    """[(end_epoch_seconds, latency_ms or None when failed)] of every logged transaction."""
    txs = []
    for path in glob.glob(os.path.join(log_dir, "tx*")):
        with open(path) as f:
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


def online_run(name, inventory, mig, labvars, opts, extra):
    scale = opts.scale
    with connect(PORTS["source"]) as c:
        offset = c.execute("SELECT coalesce(max(client_id) + 1, 0) FROM public.ledger").fetchone()[0]
    log_dir = tempfile.mkdtemp(prefix="pgshift-bench-cutover-")
    proc = run_pgbench(mig, labvars, opts.rate, opts.seconds, opts.clients, opts.jobs, log_dir, offset, scale)
    output = []
    reader = threading.Thread(target=lambda: output.append(proc.stdout.read()), daemon=True)
    reader.start()
    time.sleep(opts.at)
    rc, out, playbook_seconds = playbook(inventory, "pgshift.aurora.cutover", *extra, check=False)
    still_running = proc.poll() is None
    proc.wait()
    reader.join(10)
    text = "".join(output)
    report_path = os.path.join(mig["report_dir"], "cutover.json")
    with open(report_path) as f:
        report = json.load(f)
    txs = read_log(log_dir)
    shutil.rmtree(log_dir, ignore_errors=True)
    steps = dict((e["step"], e) for e in report["timeline"] if e["kind"] == "step")
    freeze_at = epoch(steps["freeze"]["time"])
    end = steps.get("switch") or steps.get("freeze")
    pause_end = epoch(end["time"]) + end["seconds"]
    baseline = [lat for t, lat, s in txs if lat is not None and t < freeze_at]
    during = [lat for t, lat, s in txs if lat is not None and freeze_at <= t <= pause_end + 1.0]
    failed = sum(1 for t, lat, s in txs if s == "failed")
    aborted = len(re.findall(r"client \d+ .*aborted", text))
    errors = [line for line in text.splitlines() if "error" in line.lower() or "aborted" in line]
    expected = opts.rate * opts.seconds
    not_run = max(0, expected - len(txs)) if aborted else 0
    with connect(PORTS["target"]) as tgt:
        ledger = tgt.execute("SELECT client_id, count(*), count(DISTINCT seq), max(seq) FROM public.ledger "
                             "WHERE client_id >= %s GROUP BY 1", (offset,)).fetchall()
    gaps = sum(1 for c, n, d, m in ledger if n != m)
    duplicates = sum(1 for c, n, d, m in ledger if n != d)
    result = dict(
        freeze_method=name, cutover_status=report["status"], cutover_playbook_rc=rc,
        cutover_playbook_seconds=round(playbook_seconds, 3), load_still_running_after_cutover=still_running,
        write_pause_seconds=report["write_pause_seconds"],
        steps=dict((k, v["seconds"]) for k, v in steps.items()),
        pgbench=dict(rc=proc.returncode, transactions=len(txs), expected=expected, failed_logged=failed,
                     aborted_clients=aborted, errors=errors[:10]),
        failed_client_transactions=failed + not_run,
        latency_ms=dict(
            baseline_p50=pct(baseline, 50), baseline_p99=pct(baseline, 99), baseline_max=max(baseline or [0]),
            during_count=len(during), during_p99=pct(during, 99), during_max=max(during or [0])),
        ledger=dict(clients=len(ledger), rows=sum(n for c, n, d, m in ledger), gaps=gaps, duplicates=duplicates))
    lat = result["latency_ms"]
    lat["added_p99"] = round((lat["during_p99"] or 0) - (lat["baseline_p99"] or 0), 3)
    lat["added_max"] = round((lat["during_max"] or 0) - (lat["baseline_max"] or 0), 3)
    if report["status"] != "switched":
        result["cutover_error"] = out[-1500:]
    return result


def offline_run(labvars):
    """Dump and restore with the application stopped: the downtime of the offline path."""
    wheel = os.path.join(sys.prefix, "pgshift-pg", "18", "bin")
    bin_dir = wheel if os.path.isdir(wheel) else PG15
    work = tempfile.mkdtemp(prefix="pgshift-bench-offline-")
    env = dict(os.environ, PGPASSWORD=ADMIN)
    with connect(PORTS["target"], "postgres") as c:
        c.execute("DROP DATABASE IF EXISTS app_offline WITH (FORCE)")
    t0 = time.monotonic()
    dump = subprocess.run([os.path.join(bin_dir, "pg_dump"), "-h", "127.0.0.1", "-p", str(PORTS["source"]), "-U",
                           "postgres", "-Fd", "-j2", "-f", os.path.join(work, "dump"), "app"],
                          env=env, capture_output=True, text=True, check=False)
    t1 = time.monotonic()
    with connect(PORTS["target"], "postgres") as c:
        c.execute("CREATE DATABASE app_offline")
    restore = subprocess.run([os.path.join(bin_dir, "pg_restore"), "-h", "127.0.0.1", "-p", str(PORTS["target"]),
                              "-U", "postgres", "-j2", "--no-owner", "--no-acl", "-d", "app_offline",
                              os.path.join(work, "dump")], env=env, capture_output=True, text=True, check=False)
    t2 = time.monotonic()
    shutil.rmtree(work, ignore_errors=True)
    with connect(PORTS["source"]) as src, connect(PORTS["target"], "app_offline") as tgt:
        q = "SELECT count(*) FROM public.pgbench_accounts"
        same = src.execute(q).fetchone()[0] == tgt.execute(q).fetchone()[0]
    with connect(PORTS["target"], "postgres") as c:
        c.execute("DROP DATABASE IF EXISTS app_offline WITH (FORCE)")
    return dict(dump_seconds=round(t1 - t0, 3), restore_seconds=round(t2 - t1, 3),
                downtime_seconds=round(t2 - t0, 3), dump_rc=dump.returncode, restore_rc=restore.returncode,
                restore_errors=restore.stderr.strip()[-500:] if restore.returncode else "",
                pgbench_accounts_equal=same, tools=bin_dir)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scale", type=int, default=int(os.environ.get("BENCH_SCALE") or 10),
                    help="pgbench scale of its lab (default BENCH_SCALE, else 10)")
    ap.add_argument("--rate", type=int, default=500)
    ap.add_argument("--seconds", type=int, default=30)
    ap.add_argument("--at", type=float, default=8.0, help="seconds into the load when the cutover starts")
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--keep", action="store_true", help="leave the lab up")
    opts = ap.parse_args()
    root = tempfile.mkdtemp(prefix="pgshift-bench-cutover-inv-")
    inventory, mig, labvars = write_inventory(root, opts.scale)
    result = dict(benchmark="cutover", scale=opts.scale, rate=opts.rate, seconds=opts.seconds, clients=opts.clients,
                  ports=PORTS, started_at=datetime.datetime.now(datetime.timezone.utc).isoformat())
    playbook(inventory, "playbooks/lab_down.yml")
    try:
        playbook(inventory, "playbooks/lab_up.yml")
        # the rehearsal also proves the way back, which every cutover's preflight requires
        for name in ("pgshift.aurora.prepare_source", "pgshift.aurora.copy_schema", "pgshift.aurora.replicate",
                     "pgshift.aurora.rehearsal"):
            playbook(inventory, name)
        runs = []
        runs.append(online_run("pgbouncer", inventory, mig, labvars, opts, []))
        rc, out, seconds = playbook(inventory, "pgshift.aurora.rollback")
        runs[-1]["rollback_seconds"] = round(seconds, 3)
        with open(os.path.join(mig["report_dir"], "rollback.json")) as f:
            runs[-1]["rollback_write_pause_seconds"] = json.load(f)["write_pause_seconds"]
        runs.append(online_run("read_only", inventory, mig, labvars, opts,
                               ["-e", "cutover_freeze_method=read_only"]))
        playbook(inventory, "pgshift.aurora.rollback")
        result["online"] = runs
        result["offline"] = offline_run(labvars)
        pause = runs[0]["write_pause_seconds"]
        if pause:
            result["offline_downtime_over_write_pause"] = round(result["offline"]["downtime_seconds"] / pause, 1)
    finally:
        if not opts.keep:
            playbook(inventory, "playbooks/lab_down.yml", check=False)
        shutil.rmtree(root, ignore_errors=True)
    text = json.dumps(result, indent=2, default=str)
    os.makedirs(os.path.join(REPO, "bench", "results"), exist_ok=True)
    with open(os.path.join(REPO, "bench", "results", "cutover.json"), "w") as f:
        f.write(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
