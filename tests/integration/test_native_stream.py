"""pg_native_stream and pg_replication_status on real clusters: PG16 source -> PG18 target, shaped like RDS and
Aurora (the modules run as the master user over TLS verify-full; the subscriptions connect as the migration user,
a member of rds_replication, over TLS too).

The clusters are this module's own (slots, subscriptions and a target restart are
cluster-wide). A writer thread inserts, updates and deletes on the source during and
after the load; every table is then compared row by row on both sides.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time

import pytest

from modrunner import COLLECTIONS, REPO, run_module
from pgcluster import (ADMIN_PASSWORD, MASTER_PASSWORD, Cluster, _as_postgres, ca_cert, pg16_bin_dir, wait_for,
                       wheel_bin_dir)

DB = "shipping"
MIG_USER = "pgshift_mig"
MIG_PASSWORD = "mig-secret-9f3"  # asserted never to appear in any module output
SECRETS = (ADMIN_PASSWORD, MASTER_PASSWORD, MIG_PASSWORD)

TYPES = [
    "CREATE TYPE parcel_status AS ENUM ('new', 'sorted', 'shipped', 'delivered')",
    "CREATE DOMAIN positive_weight AS numeric(10,3) CHECK (VALUE > 0)",
    "CREATE TYPE dims AS (l int, w int, h int)",
]
# Primary keys only: the target gets exactly this (no secondary index, FK or trigger).
TABLES = [
    "CREATE TABLE shipments (id bigint NOT NULL, shipped_on date NOT NULL, carrier text, "
    "PRIMARY KEY (id, shipped_on)) PARTITION BY RANGE (shipped_on)",
    "CREATE TABLE shipments_2025_01 PARTITION OF shipments FOR VALUES FROM ('2025-01-01') TO ('2025-02-01')",
    "CREATE TABLE shipments_2025_02 PARTITION OF shipments FOR VALUES FROM ('2025-02-01') TO ('2025-03-01')",
    "CREATE TABLE events (id bigint PRIMARY KEY, kind text NOT NULL, note text)",
    "CREATE TABLE events_scan (CHECK (kind = 'scan'), PRIMARY KEY (id)) INHERITS (events)",
    "CREATE TABLE events_alert (level int, CHECK (kind = 'alert'), PRIMARY KEY (id)) INHERITS (events)",
    "CREATE TABLE parcels (id bigint PRIMARY KEY, status parcel_status NOT NULL, weight positive_weight, "
    "attrs jsonb, volume numeric GENERATED ALWAYS AS (weight * 2) STORED)",
    "CREATE TABLE crates (id int PRIMARY KEY, size dims, tags parcel_status[])",
    "CREATE TABLE documents (id int PRIMARY KEY, title text, body text)",
    "CREATE TABLE pings (id bigint PRIMARY KEY, v int, note text)",
    'CREATE TABLE "CarrierRates" ("Id" int PRIMARY KEY, "Rate" numeric)',
]
DATA = [
    "INSERT INTO shipments SELECT g, date '2025-01-01' + (g % 59), 'carrier' || (g % 7) FROM generate_series(1, 3000) g",
    "INSERT INTO events SELECT g, 'base', 'own row ' || g FROM generate_series(1, 300) g",
    "INSERT INTO events_scan SELECT g, 'scan', 'scan ' || g FROM generate_series(1001, 1600) g",
    "INSERT INTO events_alert SELECT g, 'alert', 'alert ' || g, g % 5 FROM generate_series(2001, 2400) g",
    "INSERT INTO parcels (id, status, weight, attrs) SELECT g, (enum_range(NULL::parcel_status))[1 + g % 4], "
    "1 + g / 10.0, jsonb_build_object('g', g, 'tags', jsonb_build_array('a', g)) FROM generate_series(1, 2000) g",
    "INSERT INTO crates SELECT g, ROW(g, g + 1, g + 2)::dims, ARRAY['new', 'shipped']::parcel_status[] "
    "FROM generate_series(1, 500) g",
    "INSERT INTO documents SELECT g, 'doc ' || g, repeat(md5(g::text), 32768) FROM generate_series(1, 4) g",
    "INSERT INTO documents SELECT g, 'small ' || g, md5(g::text) FROM generate_series(5, 200) g",
    "INSERT INTO pings SELECT g, g % 1000, md5(g::text) FROM generate_series(1, 200000) g",
    'INSERT INTO "CarrierRates" SELECT g, g * 1.5 FROM generate_series(1, 50) g',
]
# Every physical table, with its ORDER BY for the comparison.
COMPARED = {
    "shipments_2025_01": "id", "shipments_2025_02": "id", "ONLY events": "id", "events_scan": "id",
    "events_alert": "id", "parcels": "id", "crates": "id", "documents": "id", "pings": "id",
    '"CarrierRates"': '"Id"',
}


def stream(migration, number, tables):
    return dict(name="pgshift_%s_s%d" % (migration, number), tables=tables)


def t(name, **extra):
    entry = dict(schema="public", name=name, key=["id"], split=1, only=False, bytes=1000, rows=100)
    entry.update(extra)
    return entry


def streams(migration):
    return [
        stream(migration, 1, [t("shipments_2025_01", key=["id", "shipped_on"], kind="partition"),
                              t("shipments_2025_02", key=["id", "shipped_on"], kind="partition"),
                              t("pings", split=4, bytes=20000000, rows=200000),
                              t("CarrierRates", key=["Id"])]),
        stream(migration, 2, [t("events", only=True), t("events_scan"), t("events_alert"), t("parcels"),
                              t("crates"), t("documents", bytes=4000000)]),
    ]


# --------------------------------------------------------------------------------------------
# Clusters and helpers
# --------------------------------------------------------------------------------------------

def restart(cluster):
    subprocess.run(_as_postgres([os.path.join(cluster.bin_dir, "pg_ctl"), "-D", cluster.data, "-w", "-t", "60",
                                 "-m", "fast", "-l", os.path.join(cluster.root, "log"), "restart"]),
                   check=True, stdout=subprocess.DEVNULL)


@pytest.fixture(scope="module")
def clusters(request):
    source = Cluster(pg16_bin_dir(), name="nsource")
    target = Cluster(wheel_bin_dir(), name="ntarget")
    request.addfinalizer(source.stop)
    request.addfinalizer(target.stop)
    source.start()
    target.start()
    return source, target


@pytest.fixture
def dbs(clusters):
    """A fresh `shipping` database on both sides: the dataset on the source, the same tables (keys only) on the target."""
    source, target = clusters
    for cluster in (source, target):
        with cluster.connect() as conn:
            for (name,) in conn.execute("SELECT subname FROM pg_subscription").fetchall():
                conn.execute('ALTER SUBSCRIPTION "%s" DISABLE' % name)
                conn.execute('ALTER SUBSCRIPTION "%s" SET (slot_name = NONE)' % name)
                conn.execute('DROP SUBSCRIPTION "%s"' % name)
            for (name,) in conn.execute("SELECT slot_name FROM pg_replication_slots").fetchall():
                conn.execute("SELECT pg_drop_replication_slot(%s)", (name,))
        cluster.create_database(DB)
    # Different type OIDs on the two sides, as between any two real clusters (a binary composite would carry them).
    target.execute(DB, ["CREATE TYPE pad%d AS (a int)" % i for i in range(3)])
    for cluster in (source, target):
        cluster.execute(DB, TYPES + TABLES)
    # The migration user as on RDS: a member of rds_replication (plain PostgreSQL: the REPLICATION attribute too).
    source.execute("postgres", [
        "DO $$BEGIN IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '%s') THEN "
        "CREATE ROLE %s LOGIN REPLICATION PASSWORD '%s'; END IF; END$$" % (MIG_USER, MIG_USER, MIG_PASSWORD),
        "GRANT rds_replication TO %s" % MIG_USER])
    source.execute(DB, DATA + ["GRANT SELECT ON ALL TABLES IN SCHEMA public TO %s" % MIG_USER, "ANALYZE"])
    return source, target


def params(source, target, **extra):
    p = source.module_params(DB)
    p.update(("target_" + k, v) for k, v in target.module_params(DB).items())
    p.update(source_replication_user=MIG_USER, source_replication_password=MIG_PASSWORD,
             source_ssl_mode="verify-full", source_ssl_root_cert=ca_cert())
    p.update(extra)
    return p


def run(name, args, check_mode=False, diff=False):
    result, raw = run_module(name, args, check_mode=check_mode, diff=diff)
    for secret in SECRETS:
        assert secret not in raw, "a secret leaked into the output of %s" % name
    return result


def ok(result):
    assert not result.get("failed"), result.get("msg")
    return result


def stream_run(source, target, s, check_mode=False, diff=False, **extra):
    return run("pg_native_stream", params(source, target, stream=s, **extra), check_mode=check_mode, diff=diff)


def status(source, target, migration, **extra):
    args = params(source, target, migration=migration, **extra)
    for k in ("source_replication_user", "source_replication_password", "source_ssl_mode", "source_ssl_root_cert"):
        args.pop(k)
    return ok(run("pg_replication_status", args))


def wait_barrier(source, target, migration, timeout=60):
    """Wait until every stream applied everything committed on the source so far."""
    (lsn,), = source.query(DB, "SELECT pg_current_wal_lsn()::text")
    deadline = time.time() + timeout
    last = None
    while time.time() < deadline:
        last = status(source, target, migration, barrier_lsn=lsn)
        if last["barrier_reached"]:
            return last
        time.sleep(0.3)
    raise AssertionError("barrier %s not reached in %ss: %s" % (lsn, timeout, json.dumps(last, default=str)[:3000]))


def snapshot(cluster):
    rows = {}
    with cluster.connect(DB) as conn:
        for table, order in COMPARED.items():
            rows[table] = conn.execute("SELECT * FROM %s ORDER BY %s" % (table, order)).fetchall()
    return rows


def assert_identical(source, target):
    src, tgt = snapshot(source), snapshot(target)
    for table in COMPARED:
        assert len(src[table]) == len(tgt[table]), "%s: %d rows on the source, %d on the target" % (
            table, len(src[table]), len(tgt[table]))
        for a, b in zip(src[table], tgt[table]):
            assert a == b, "%s differs: source %r, target %r" % (table, a, b)
    return dict((table, len(rows)) for table, rows in src.items())


class Writer(threading.Thread):
    """Random inserts, updates (partition moves included) and deletes on the source, one transaction each."""

    def __init__(self, source, seed):
        super().__init__(daemon=True)
        self.source = source
        self.random = random.Random(seed)
        self.stop_event = threading.Event()
        self.next_id = 10000000 + seed * 1000000
        self.ops = 0
        self.error = None

    def stop(self):
        self.stop_event.set()
        self.join(30)
        assert self.error is None, self.error
        return self.ops

    def run(self):
        try:
            with self.source.connect(DB) as conn:
                while not self.stop_event.is_set():
                    self.step(conn)
                    self.ops += 1
                    time.sleep(0.002)
        except Exception as exc:  # reported by stop()
            self.error = repr(exc)

    def step(self, conn):
        r = self.random
        self.next_id += 1
        new = self.next_id
        choice = r.randrange(12)
        if choice == 0:
            conn.execute("INSERT INTO shipments VALUES (%s, date '2025-01-01' + %s, 'new')", (new, r.randrange(59)))
        elif choice == 1:
            conn.execute("UPDATE shipments SET shipped_on = date '2025-01-01' + %s, carrier = 'moved' WHERE id = %s",
                         (r.randrange(59), r.randrange(1, 3000)))
        elif choice == 2:
            conn.execute("DELETE FROM shipments WHERE id = %s", (r.randrange(1, 3000),))
        elif choice == 3:
            conn.execute("INSERT INTO events VALUES (%s, 'base', 'w')", (new,))
            conn.execute("UPDATE ONLY events SET note = 'updated' WHERE id = %s", (r.randrange(1, 300),))
        elif choice == 4:
            conn.execute("INSERT INTO events_scan VALUES (%s, 'scan', 'w')", (new,))
            conn.execute("DELETE FROM events_alert WHERE id = %s", (r.randrange(2001, 2400),))
        elif choice == 5:
            conn.execute("INSERT INTO parcels (id, status, weight, attrs) VALUES (%s, 'new', %s, %s)",
                         (new, r.randrange(1, 100), json.dumps({"w": new, "nested": {"x": [1, 2]}})))
        elif choice == 6:
            conn.execute("UPDATE parcels SET status = 'delivered', weight = weight + 1, attrs = attrs || '{\"u\": 1}' "
                         "WHERE id = %s", (r.randrange(1, 2000),))
        elif choice == 7:
            conn.execute("DELETE FROM parcels WHERE id = %s", (r.randrange(1, 2000),))
            conn.execute("UPDATE crates SET size = ROW(1, 2, 3), tags = ARRAY['delivered']::parcel_status[] "
                         "WHERE id = %s", (r.randrange(1, 500),))
        elif choice == 8:
            conn.execute("INSERT INTO pings VALUES (%s, 1, 'new')", (new,))
            conn.execute("UPDATE pings SET v = v + 1 WHERE id = %s", (r.randrange(1, 200000),))
        elif choice == 9:
            conn.execute("DELETE FROM pings WHERE id = %s", (r.randrange(1, 200000),))
        elif choice == 10:
            with conn.transaction():
                conn.execute('UPDATE "CarrierRates" SET "Rate" = "Rate" + 1 WHERE "Id" = %s', (r.randrange(1, 50),))
                conn.execute("UPDATE documents SET title = 'edited ' || %s WHERE id = %s", (new, r.randrange(1, 200)))
        else:
            conn.execute("UPDATE documents SET body = repeat('x', 1048576) WHERE id = %s", (r.randrange(1, 5),))


def catalog_state(source, target, migration):
    prefix = "pgshift_%s_" % migration
    pubs = source.query(DB, "SELECT pubname FROM pg_publication WHERE starts_with(pubname, %s)", (prefix,))
    slots = source.query(DB, "SELECT slot_name FROM pg_replication_slots WHERE starts_with(slot_name, %s)", (prefix,))
    subs = target.query(DB, "SELECT subname, subenabled FROM pg_subscription WHERE starts_with(subname, %s)", (prefix,))
    return sorted(p for p, in pubs), sorted(s for s, in slots), sorted(subs)


def in_parallel(calls):
    results = [None] * len(calls)

    def call(i, fn):
        results[i] = fn()

    threads = [threading.Thread(target=call, args=(i, fn)) for i, fn in enumerate(calls)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


# --------------------------------------------------------------------------------------------
# The whole life of two streams
# --------------------------------------------------------------------------------------------

def test_streams_load_stream_survive_faults_and_leave_nothing(dbs):
    source, target = dbs
    s1, s2 = streams("it")

    # Check mode: what would run, the password masked, nothing made.
    result = ok(stream_run(source, target, s1, check_mode=True))
    assert result["changed"] is True
    assert result["steps"] == ["publication_create", "slot_create_export", "copy", "subscription_create"]
    created = [q for q in result["queries"] if q.startswith("CREATE SUBSCRIPTION")]
    assert len(created) == 1 and "password=******** " in created[0]
    assert any('FROM ONLY' not in q and '"pings"' in q and "4 ranges" in q for q in result["queries"])
    assert catalog_state(source, target, "it") == ([], [], [])

    writer = Writer(source, seed=1)
    writer.start()
    try:
        time.sleep(0.3)
        # one stream relays through psycopg in the module, the other through two psql per unit
        results = in_parallel([lambda: stream_run(source, target, s1, parallel=2, copy_relay="python"),
                               lambda: stream_run(source, target, s2, parallel=2, copy_relay="psql")])
        for result in results:
            ok(result)
            assert result["changed"] is True
            assert result["steps"] == ["publication_create", "slot_create_export", "copy", "subscription_create"]
            assert result["restarted"] is False
            assert result["slot"]["consistent_lsn"]
        load1, load2 = results[0]["load"], results[1]["load"]
        assert (load1["relay"], load2["relay"]) == (["python"], ["psql"])
        by_table = dict((x["table"], x) for x in load1["tables"] + load2["tables"])
        assert by_table["public.pings"]["units"] == 4
        # enum, domain, jsonb, composite, enum[]: binary is portable (the type OIDs differ on the two sides)
        assert by_table["public.crates"]["format"] == "binary"
        assert by_table["public.parcels"]["format"] == "binary"
        assert by_table["public.pings"]["rows"] >= 199000
        print("\nload: s1 %s rows in %s s (%s rows/s), s2 %s rows in %s s (%s rows/s)" % (
            load1["rows"], load1["seconds"], load1["rows_per_second"], load2["rows"], load2["seconds"],
            load2["rows_per_second"]))
        time.sleep(1.0)
    finally:
        ops = writer.stop()
    assert ops > 50
    final = wait_barrier(source, target, "it")
    counts = assert_identical(source, target)
    assert counts["pings"] > 190000 and counts["ONLY events"] >= 300
    assert [s["state"] for s in final["streams"]] == ["streaming", "streaming"]
    s1_status = final["streams"][0]
    assert s1_status["load"]["done"] and s1_status["load"]["units"] == 7
    assert set(x["state"] for x in s1_status["tables"]) == {"streaming"}
    assert final["totals"]["errors"] == 0 and final["errors"] == []

    # Nothing was copied on the target by triggers or twice: re-running changes nothing.
    for s in (s1, s2):
        again = ok(stream_run(source, target, s, diff=True))
        assert again["changed"] is False and again["steps"] == [], again["steps"]
        assert again["load"] == {}
    assert catalog_state(source, target, "it") == (
        ["pgshift_it_s1", "pgshift_it_s2"], ["pgshift_it_s1", "pgshift_it_s2"],
        [("pgshift_it_s1", True), ("pgshift_it_s2", True)])

    # A killed apply worker: the launcher starts another one, nothing lost or doubled.
    pid = final["streams"][0]["subscription"]["worker_pid"]
    assert pid
    target.execute(DB, "SELECT pg_terminate_backend(%d)" % pid, operator=True)
    writer = Writer(source, seed=2)
    writer.start()
    time.sleep(1.0)
    writer.stop()
    after_kill = wait_barrier(source, target, "it")
    assert after_kill["streams"][0]["subscription"]["worker_pid"] not in (None, pid)
    assert_identical(source, target)

    # A restarted target, with writes going on during the restart.
    writer = Writer(source, seed=3)
    writer.start()
    time.sleep(0.3)
    restart(target)
    time.sleep(0.5)
    writer.stop()
    wait_barrier(source, target, "it", timeout=90)
    assert_identical(source, target)
    caught = status(source, target, "it", max_lag_seconds=30)
    assert caught["caught_up"] is True, caught["streams"]

    # A dropped replication connection: the walsenders of both streams killed on the source while
    # writes go on; the subscribers reconnect and resume from their slots.
    writer = Writer(source, seed=4)
    writer.start()
    time.sleep(0.3)
    killed = source.query(DB, "SELECT pg_terminate_backend(pid) FROM pg_stat_replication "
                              "WHERE application_name LIKE 'pgshift_it_%'", operator=True)
    assert killed == [(True,), (True,)]
    time.sleep(0.5)
    writer.stop()
    wait_barrier(source, target, "it", timeout=90)
    assert_identical(source, target)

    # A restarted source: writes before, the restart, writes after.
    writer = Writer(source, seed=5)
    writer.start()
    time.sleep(0.3)
    writer.stop()
    restart(source)
    writer = Writer(source, seed=6)
    writer.start()
    time.sleep(0.5)
    writer.stop()
    wait_barrier(source, target, "it", timeout=90)
    assert_identical(source, target)

    # Removal: nothing left behind, then nothing to do.
    for s in (s1, s2):
        gone = ok(stream_run(source, target, dict(name=s["name"]), state="absent"))
        assert gone["changed"] is True
        assert gone["steps"][:3] == ["subscription_disable", "subscription_detach", "subscription_drop"]
        assert "slot_drop" in gone["steps"] and "publication_drop" in gone["steps"]
    assert catalog_state(source, target, "it") == ([], [], [])
    assert target.query(DB, "SELECT to_regnamespace('pgshift') IS NULL") == [(True,)]
    again = ok(stream_run(source, target, dict(name=s1["name"]), state="absent"))
    assert again["changed"] is False and again["steps"] == []
    empty = status(source, target, "it")
    assert empty["streams"] == [] and empty["caught_up"] is False


# --------------------------------------------------------------------------------------------
# A load stopped half-way is started again; enable: false then enabled
# --------------------------------------------------------------------------------------------

def module_process(name, args):
    """Start a module as its own process (to kill it half-way); returns (Popen, argfile)."""
    payload = dict(args, _ansible_check_mode=False, _ansible_diff=False, _ansible_verbosity=0)
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(dict(ANSIBLE_MODULE_ARGS=payload), f)
    env = dict(os.environ, PYTHONPATH=COLLECTIONS + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.Popen([sys.executable, os.path.join(REPO, "plugins", "modules", name + ".py"), f.name],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    return proc, f.name


def test_killed_load_restarts_and_disabled_subscription_waits(dbs):
    source, target = dbs
    s = stream("crash", 1, [t("pings", split=3, bytes=20000000, rows=200000), t("documents"), t("parcels")])
    # Hold the target's documents table so the load stops there, half done, then kill the module.
    blocker = target.connect(DB, autocommit=False)
    blocker.execute("LOCK TABLE documents IN ACCESS EXCLUSIVE MODE")
    # psql relay: the psql processes must die with the killed module (PR_SET_PDEATHSIG), committing nothing
    proc, argfile = module_process("pg_native_stream", params(source, target, stream=s, parallel=1, copy_relay="psql"))
    try:
        def stuck():
            rows = target.query(DB, "SELECT table_name, state FROM pgshift.load_progress WHERE stream = %s "
                                    "AND state = 'copying'", (s["name"],), operator=True) \
                if target.query(DB, "SELECT to_regclass('pgshift.load_progress') IS NOT NULL",
                                operator=True)[0][0] else []
            return [r for r in rows if r[0] == "public.documents"]
        assert wait_for(stuck, timeout=30), "the load never reached documents"
        during = status(source, target, "crash")
        assert during["streams"][0]["state"] == "copying"
        assert 0 < during["streams"][0]["load"]["copied"] < during["streams"][0]["load"]["units"]
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        blocker.rollback()
        blocker.close()
        os.unlink(argfile)
    assert wait_for(lambda: not source.query(DB, "SELECT 1 FROM pg_stat_activity WHERE starts_with(application_name, "
                                                 "'pgshift load ')"), timeout=30)
    assert wait_for(lambda: not target.query(DB, "SELECT 1 FROM pg_stat_activity WHERE starts_with(application_name, "
                                                 "'pgshift load ')"), timeout=30)
    assert target.query(DB, "SELECT count(*) FROM documents") == [(0,)], "a unit of the killed load was committed"
    stopped = status(source, target, "crash")
    assert stopped["streams"][0]["state"] == "error" and "stopped before it ended" in stopped["errors"][0]
    # A stray row on the target: the restart truncates before copying again.
    target.execute(DB, "INSERT INTO documents VALUES (999999, 'stray', 'stray')")

    result = ok(stream_run(source, target, s, enable=False))
    assert result["restarted"] is True
    assert "did not finish" in result["restart_reason"]
    assert result["steps"] == ["slot_drop", "slot_create_export", "copy", "subscription_create"]
    disabled = status(source, target, "crash")
    assert disabled["streams"][0]["state"] == "disabled" and disabled["caught_up"] is False
    assert catalog_state(source, target, "crash")[2] == [("pgshift_crash_s1", False)]
    # enable: false never disables, and leaves a disabled subscription alone
    assert ok(stream_run(source, target, s, enable=False))["changed"] is False

    source.execute(DB, ["UPDATE pings SET v = -1 WHERE id < 100", "DELETE FROM documents WHERE id = 7"])
    enabled = ok(stream_run(source, target, dict(name=s["name"], tables=s["tables"]), state="enabled"))
    assert enabled["steps"] == ["subscription_enable"]
    wait_barrier(source, target, "crash")
    for table, order in (("pings", "id"), ("documents", "id"), ("parcels", "id")):
        q = "SELECT * FROM %s ORDER BY %s" % (table, order)
        assert source.query(DB, q) == target.query(DB, q), table

    # A table added to the running stream is copied by PostgreSQL's table sync, the others are not touched.
    grown = dict(s, tables=s["tables"] + [t("CarrierRates", key=["Id"])])
    added = ok(stream_run(source, target, grown))
    assert added["steps"] == ["publication_add_tables", "truncate_added", "subscription_refresh"]
    assert added["publication"]["tables_added"] == ['public."CarrierRates"']
    assert wait_for(lambda: status(source, target, "crash")["streams"][0]["state"] == "streaming", timeout=30)
    wait_barrier(source, target, "crash")
    q = 'SELECT * FROM "CarrierRates" ORDER BY "Id"'
    assert source.query(DB, q) == target.query(DB, q)

    # An apply error that disables the subscription is reported with the LSN it stopped at, then resumed.
    target.execute(DB, ['ALTER SUBSCRIPTION "pgshift_crash_s1" SET (disable_on_error = true)',
                        "INSERT INTO documents VALUES (5000, 'conflict', 'target')"], operator=True)
    source.execute(DB, "INSERT INTO documents VALUES (5000, 'source', 'source')")

    def reported():
        found = status(source, target, "crash")
        return found if found["streams"][0]["state"] == "error" else None
    assert wait_for(reported, timeout=30)
    broken = reported()
    (confirmed,), = source.query(DB, "SELECT confirmed_flush_lsn::text FROM pg_replication_slots "
                                     "WHERE slot_name = 'pgshift_crash_s1'")
    assert "disabled after 1 apply/sync error(s); it stopped at LSN %s" % confirmed in broken["errors"][0]
    assert broken["streams"][0]["subscription"]["apply_error_count"] == 1 and broken["caught_up"] is False
    target.execute(DB, "DELETE FROM documents WHERE id = 5000")
    assert ok(stream_run(source, target, grown, state="enabled"))["steps"] == ["subscription_enable"]
    wait_barrier(source, target, "crash")
    q = "SELECT * FROM documents ORDER BY id"
    assert source.query(DB, q) == target.query(DB, q)
    ok(stream_run(source, target, dict(name=s["name"]), state="absent"))
    assert catalog_state(source, target, "crash") == ([], [], [])


def test_bad_stream_fails_clearly_and_changes_nothing(dbs):
    source, target = dbs
    target.execute(DB, "DROP TABLE crates")
    s = stream("bad", 1, [t("crates"), t("nosuch"), t("events")])
    result = stream_run(source, target, s)
    assert result["failed"]
    assert "missing on the source: public.nosuch" in result["msg"]
    assert "missing on the target: public.crates" in result["msg"]
    assert "inheritance children" in result["msg"] and "public.events" in result["msg"]
    assert catalog_state(source, target, "bad") == ([], [], [])
    bad_name = stream_run(source, target, dict(name="Bad-Name", tables=[]))
    assert bad_name["failed"] and "stream.name" in bad_name["msg"]
    wrong = stream_run(source, target, stream("bad", 1, [t("pings")]), login_password="wrong")
    assert wrong["failed"] and "authentication failed" in wrong["msg"]
    assert catalog_state(source, target, "bad") == ([], [], [])


def test_failed_load_drops_its_slot_and_the_next_run_starts_over(dbs):
    source, target = dbs
    s = stream("fail", 1, [t("pings", split=2, bytes=20000000, rows=200000), t("documents")])
    target.execute(DB, "ALTER TABLE documents ADD CONSTRAINT only_small CHECK (id < 100)")
    failed = stream_run(source, target, s)
    assert failed["failed"]
    assert "copying public.documents" in failed["msg"] and "only_small" in failed["msg"]
    assert "slot was dropped" in failed["msg"]
    assert catalog_state(source, target, "fail") == (["pgshift_fail_s1"], [], [])
    assert target.query(DB, "SELECT count(*) FROM pgshift.load_progress WHERE stream = %s AND state = 'failed' "
                            "AND error LIKE %s", (s["name"], "%only_small%"), operator=True) == [(1,)]
    broken = status(source, target, "fail")
    assert broken["streams"][0]["state"] == "error" and "failed" in broken["errors"][0]

    target.execute(DB, "ALTER TABLE documents DROP CONSTRAINT only_small")
    result = ok(stream_run(source, target, s))
    assert result["restarted"] is True and "left progress rows but no slot" in result["restart_reason"]
    assert result["steps"] == ["slot_create_export", "copy", "subscription_create"]
    wait_barrier(source, target, "fail")
    for table in ("pings", "documents"):
        q = "SELECT * FROM %s ORDER BY id" % table
        assert source.query(DB, q) == target.query(DB, q), table
    ok(stream_run(source, target, dict(name=s["name"]), state="absent"))
    assert catalog_state(source, target, "fail") == ([], [], [])


@pytest.mark.parametrize("relay", ["python", "psql"])
def test_loader_falls_back_to_text_when_binary_fails(dbs, relay):
    """The engine itself: a domain over aclitem (which has no binary output) is copied in text after binary failed."""
    from ansible_collections.pgshift.aurora.plugins.module_utils import native
    from ansible_collections.pgshift.aurora.plugins.module_utils._pg import loader

    psql = loader.find_psql() if relay == "psql" else None
    assert relay == "python" or psql, "no psql found for the psql relay"

    source, target = dbs
    for cluster in (source, target):
        cluster.execute(DB, ["CREATE DOMAIN grant_item AS aclitem",
                             "CREATE TABLE grants (id int PRIMARY KEY, item grant_item, note text)"])
    source.execute(DB, "INSERT INTO grants SELECT g, 'postgres=r/postgres', 'g' || g FROM generate_series(1, 300) g")
    src = dict(source.module_params(DB), connect_timeout=10)
    tgt = dict(target.module_params(DB), connect_timeout=10)
    tables = native.validate_stream(stream("engine", 1, [t("grants"), t("crates"), t("parcels")]))["tables"]
    with source.connect(DB) as conn:
        meta = loader.columns(conn, tables)
    plan = {}
    for table, cols in meta.items():
        copied = [c for c in cols if not c["generated"]]
        plan[table] = dict(columns=[c["name"] for c in copied], format=native.copy_format(copied), meta=copied)
    assert set(p["format"] for p in plan.values()) == {"binary"}
    units = native.work_units(tables, {})
    with target.master_connect(DB) as pconn:  # the progress table as the module keeps it
        progress = loader.Progress(pconn, "pgshift_engine_s1")
        progress.ensure()
        exporter, lsn, snap = loader.create_slot(src, "pgshift_engine_s1", 150000, True, "pgshift load test")
        try:
            progress.reset(units, lsn)
            engine = loader.Loader(src, tgt, snap, units, plan, 2, progress, "pgshift load test",
                                   secrets=list(SECRETS), psql=psql)
            results, warnings = engine.run()
        finally:
            exporter.close()
            source.execute(DB, "SELECT pg_drop_replication_slot('pgshift_engine_s1')", operator=True)
        rows = loader.read_progress(pconn, "pgshift_engine_s1")
        loader.clear_progress(pconn, "pgshift_engine_s1")
    formats = dict((r["table"], r["format"]) for r in results)
    assert formats == {"public.grants": "text", "public.crates": "binary", "public.parcels": "binary"}
    assert len(warnings) == 1 and "public.grants: the binary copy failed" in warnings[0], warnings
    assert [(r["table_name"], r["state"], r["format"], r["lsn"]) for r in rows] == [
        ("public.crates", "copied", "binary", lsn), ("public.grants", "copied", "text", lsn),
        ("public.parcels", "copied", "binary", lsn)]
    for table in ("grants", "crates", "parcels"):
        q = "SELECT * FROM %s ORDER BY id" % table
        assert source.query(DB, q) == target.query(DB, q), table
    assert target.query(DB, "SELECT to_regnamespace('pgshift') IS NULL") == [(True,)]


# --------------------------------------------------------------------------------------------
# Keys built after the copy (keys_after_copy)
# --------------------------------------------------------------------------------------------

KEYS_SQL = ("SELECT conrelid::regclass::text, conname, contype::text, condeferrable, condeferred, "
            "pg_get_indexdef(conindid), (SELECT indisreplident FROM pg_index WHERE indexrelid = conindid) "
            "FROM pg_constraint WHERE contype IN ('p', 'u') AND connamespace = 'public'::regnamespace ORDER BY 1, 2")


def test_keys_are_dropped_for_the_copy_and_built_again_also_after_an_interruption(dbs):
    from ansible_collections.pgshift.aurora.plugins.module_utils._pg import loader

    source, target = dbs
    shapes = ["ALTER TABLE parcels ADD CONSTRAINT parcels_id_status_key UNIQUE (id, status) DEFERRABLE INITIALLY DEFERRED",
              "ALTER TABLE crates REPLICA IDENTITY USING INDEX crates_pkey"]
    for cluster in (source, target):
        cluster.execute(DB, shapes)
    keys_before = target.query(DB, KEYS_SQL)
    s = stream("keys", 1, [t("pings", split=3, bytes=20000000, rows=200000), t("parcels"), t("crates"),
                           t("events", only=True), t("shipments_2025_01", key=["id", "shipped_on"], kind="partition")])

    checked = ok(stream_run(source, target, s, check_mode=True, enable=False, keys_after_copy_min_bytes=0))
    assert 'ALTER TABLE "public"."pings" DROP CONSTRAINT "pings_pkey"' in checked["queries"]
    assert target.query(DB, KEYS_SQL) == keys_before

    loaded = ok(stream_run(source, target, s, enable=False, keys_after_copy_min_bytes=0))
    built = sorted((k["table"], k["name"]) for k in loaded["load"]["keys"])
    assert built == [("public.crates", "crates_pkey"), ("public.events", "events_pkey"),
                     ("public.parcels", "parcels_id_status_key"), ("public.parcels", "parcels_pkey"),
                     ("public.pings", "pings_pkey")]
    assert any("shipments_2025_01: key shipments_2025_01_pkey is kept" in w
               for w in [w if isinstance(w, str) else str(w) for w in loaded.get("warnings", [])])
    # The same keys, deferrability, index definitions and replica identity as before the copy.
    assert target.query(DB, KEYS_SQL) == keys_before
    assert target.query(DB, "SELECT count(*) FROM pgshift.deferred_keys", operator=True) == [(0,)]
    for table in ("pings", "parcels", "crates", "ONLY events", "shipments_2025_01"):
        q = "SELECT * FROM %s ORDER BY id" % table
        assert source.query(DB, q) == target.query(DB, q), table

    # A run stopped after the copy, before the keys: the next run builds them before the subscription starts.
    with target.master_connect(DB) as conn:  # as the module does
        pending = [k for k in loader.target_keys(conn, [dict(schema="public", name="pings")]) if k["contype"] == "p"]
        loader.drop_keys(conn, s["name"], pending)
    assert target.query(DB, "SELECT count(*) FROM pg_constraint WHERE conname = 'pings_pkey'") == [(0,)]
    # What the status says meanwhile (replicate.yml prints it): the key still to build, none being built now.
    seen = [t for st in status(source, target, "keys")["streams"] if st["name"] == s["name"] for t in st["tables"]]
    pings = [t for t in seen if t["table"] == "public.pings"][0]
    assert pings["keys_pending"] == 1 and pings["index_build"] is None, pings
    resumed = ok(stream_run(source, target, s, state="enabled", keys_after_copy_min_bytes=0))
    assert resumed["changed"] is True and resumed["steps"] == ["subscription_enable"]
    assert [(k["table"], k["name"], k["rebuilt"]) for k in resumed["load"]["keys"]] == [
        ("public.pings", "pings_pkey", True)]
    assert target.query(DB, KEYS_SQL) == keys_before

    source.execute(DB, ["UPDATE pings SET v = -7 WHERE id BETWEEN 10 AND 20", "DELETE FROM crates WHERE id = 3",
                        "UPDATE parcels SET status = 'sorted' WHERE id = 5"])
    wait_barrier(source, target, "keys")
    for table in ("pings", "parcels", "crates"):
        q = "SELECT * FROM %s ORDER BY id" % table
        assert source.query(DB, q) == target.query(DB, q), table
    assert ok(stream_run(source, target, s, state="enabled", keys_after_copy_min_bytes=0))["changed"] is False
    ok(stream_run(source, target, dict(name=s["name"]), state="absent"))
    assert catalog_state(source, target, "keys") == ([], [], [])
    assert target.query(DB, "SELECT to_regclass('pgshift.deferred_keys') IS NULL", operator=True) == [(True,)]
