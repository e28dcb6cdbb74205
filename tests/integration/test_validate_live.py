"""pg_validate in live mode: real logical replication PG16 -> PG18 with a writer running on the source.

Shaped as on RDS/Aurora: the publication and the subscription are made by the master users, the
subscription connects as a migration user over TLS (verify-full), pg_validate runs as the master users.

Ranges that differ because the target lags are compared again once the subscription's slot confirmed
the source's position: no false difference; a real one (a row removed on the target only) stays.
"""

from __future__ import annotations

import itertools
import random
import threading
import time

import psycopg
import psycopg.conninfo
import psycopg.sql

from modrunner import run_module
from pgcluster import ADMIN_PASSWORD, MASTER_PASSWORD, ca_cert, wait_for

MIG_PASSWORD = "live mig \\ ' \" $ % pw"

SCHEMA = [
    "CREATE TABLE orders (id bigserial PRIMARY KEY, v int NOT NULL, note text, f float8, ts timestamptz DEFAULT now())",
    "CREATE TABLE rates (zone text NOT NULL, price numeric(10, 2) NOT NULL)",
    "ALTER TABLE rates REPLICA IDENTITY FULL",
    "CREATE TABLE quiet (id int PRIMARY KEY, v text)",
]
DATA = [
    "INSERT INTO orders (v, note, f) SELECT g, md5(g::text), g / 3.0 FROM generate_series(1, 20000) g",
    "INSERT INTO rates SELECT 'Z' || (g % 10), g * 0.25 FROM generate_series(1, 400) g",
    "INSERT INTO quiet SELECT g, 'q' || g FROM generate_series(1, 3000) g",
]
_N = itertools.count(1)


class Writer(threading.Thread):
    """Inserts, updates and deletes on the source until stopped (about 200 transactions/s)."""

    def __init__(self, cluster, db):
        super().__init__(daemon=True)
        self.cluster, self.db = cluster, db
        self.stop = threading.Event()
        self.transactions = 0
        self.error = None

    def run(self):
        rnd = random.Random(7)
        try:
            with self.cluster.connect(self.db) as conn:
                while not self.stop.is_set():
                    with conn.transaction():
                        k = rnd.randint(1, 20000)
                        conn.execute("UPDATE orders SET v = v + 1, f = f * 1.0001 WHERE id = %s", (k,))
                        conn.execute("INSERT INTO orders (v, note, f) VALUES (%s, 'live', 0.5)", (k,))
                        conn.execute("DELETE FROM orders WHERE id = %s", (rnd.randint(1, 20000),))
                        conn.execute("INSERT INTO rates VALUES ('Z99', %s)", (self.transactions,))
                    self.transactions += 1
                    time.sleep(0.01)
        except Exception as exc:  # reported by the test
            self.error = exc


def test_live_mode_with_writes_running_reports_no_false_difference(source_cluster, target_cluster, new_db):
    mig = "live%d" % next(_N)
    sub = "pgshift_%s_s1" % mig
    src_db, tgt_db = new_db(source_cluster), new_db(target_cluster)
    mig_user = source_cluster.create_migration_user("live_mig_%s" % mig[-6:], MIG_PASSWORD)
    source_cluster.execute(src_db, SCHEMA + DATA + ["GRANT SELECT ON orders, rates, quiet TO %s" % mig_user])
    target_cluster.execute(tgt_db, SCHEMA)
    with source_cluster.master_connect(src_db) as conn:
        conn.execute("CREATE PUBLICATION %s FOR TABLE orders, rates, quiet" % sub)
    conninfo = psycopg.conninfo.make_conninfo(
        host="127.0.0.1", port=source_cluster.port, dbname=src_db, user=mig_user, password=MIG_PASSWORD,
        sslmode="verify-full", sslrootcert=ca_cert())
    with target_cluster.master_connect(tgt_db) as conn:
        conn.execute(psycopg.sql.SQL("CREATE SUBSCRIPTION {} CONNECTION {} PUBLICATION {}").format(
            psycopg.sql.Identifier(sub), psycopg.sql.Literal(conninfo), psycopg.sql.Identifier(sub)))
    writer = Writer(source_cluster, src_db)
    try:
        assert wait_for(lambda: target_cluster.query(
            tgt_db, "SELECT count(*) FILTER (WHERE srsubstate <> 'r') = 0 AND count(*) = 3 FROM pg_subscription_rel")[0][0],
            timeout=90)
        writer.start()
        assert wait_for(lambda: writer.transactions > 50, timeout=30)
        # a real difference the replication will never repair
        target_cluster.execute(tgt_db, ["DELETE FROM quiet WHERE id = 1234"])
        # the target lags for real: the subscription pauses while the first round reads, then resumes
        target_cluster.execute(tgt_db, ["ALTER SUBSCRIPTION %s DISABLE" % sub], operator=True)
        resume = threading.Timer(3.0, target_cluster.execute, (tgt_db, ["ALTER SUBSCRIPTION %s ENABLE" % sub]),
                                 dict(operator=True))
        resume.start()
        params = source_cluster.module_params(src_db)
        params.update(("target_" + k, v) for k, v in target_cluster.module_params(tgt_db).items())
        params.update(mode="live", migration=mig, chunk_rows=2000, row_level_rows=100, live_rounds=5,
                      catch_up_timeout=60, check_schema=False)
        result, raw = run_module("pg_validate", params)
        assert ADMIN_PASSWORD not in raw and MASTER_PASSWORD not in raw and MIG_PASSWORD not in raw
        assert not result.get("failed"), result.get("msg")
        resume.join()
        assert writer.error is None and writer.is_alive()
        tables = dict((t["table"], t) for t in result["tables"])
        assert tables["public.orders"]["result"] == "equal", tables["public.orders"]
        assert tables["public.rates"]["result"] == "equal", tables["public.rates"]
        assert [(d["kind"], d["key"]) for d in tables["public.quiet"]["differences"]] == [("missing", ["1234"])]
        assert result["verdict"] == "NO-GO" and len(result["reasons"]) == 1
        assert result["sequences_gated"] is False
        # the re-check rounds waited for the subscription's slot
        assert result["rounds"][0]["differing"] >= 2  # the lag showed in the first round (quiet and more)
        assert all(r.get("caught_up", True) for r in result["rounds"])
        assert all(list(r["slots"]) == [sub] for r in result["rounds"][1:])
    finally:
        writer.stop.set()
        writer.join(timeout=30)
    # once the writes stop and the target caught up, both sides hold the same rows
    lsn = source_cluster.query(src_db, "SELECT pg_current_wal_lsn()::text")[0][0]
    assert wait_for(lambda: source_cluster.query(
        src_db, "SELECT confirmed_flush_lsn >= %s::pg_lsn FROM pg_replication_slots WHERE slot_name = %s", (lsn, sub))[0][0],
        timeout=60)
    for table, order in (("orders", "id"), ("rates", "zone, price")):
        q = "SELECT * FROM %s ORDER BY %s" % (table, order)
        assert source_cluster.query(src_db, q) == target_cluster.query(tgt_db, q)
    with target_cluster.master_connect(tgt_db) as conn:
        conn.execute("DROP SUBSCRIPTION %s" % sub)
