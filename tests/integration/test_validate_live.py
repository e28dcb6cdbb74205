"""pg_validate in live mode: real logical replication PG16 -> PG18 with a writer running on the source.

Shaped as on RDS/Aurora: the publication and the subscription are made by the master users, the
subscription connects as a migration user over TLS (verify-full), pg_validate runs as the master users.

Ranges that differ because the target lags are compared again once the subscription's slot confirmed
the source's position: no false difference; a real one (a row removed on the target only) stays.

Rows written hundreds of times a second never line up between the source snapshot, the target snapshot
and a fresh source read: the lock step settles them with the source rows locked (FOR SHARE) while the slot
confirms the position read under the locks. live_lock_rows=0 keeps the behaviour without it.
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
from pgcluster import ADMIN_PASSWORD, MASTER_PASSWORD, MASTER_USER, ca_cert, wait_for

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


def replicate(source_cluster, target_cluster, new_db, schema, data, tables, publish_as_operator=False):
    """Source and target databases with `schema`, `data` on the source, a publication of `tables` made by the
    master user (by the operator when a table is not the master's) and a subscription made by the master user
    that connects as a migration user over verify-full; returns (src_db, tgt_db, subscription) once every table
    is synchronised."""
    mig = "live%d" % next(_N)
    sub = "pgshift_%s_s1" % mig
    src_db, tgt_db = new_db(source_cluster), new_db(target_cluster)
    mig_user = source_cluster.create_migration_user("live_mig_%s" % mig[-6:], MIG_PASSWORD)
    names = psycopg.sql.SQL(", ").join(psycopg.sql.Identifier(t) for t in tables)
    source_cluster.execute(src_db, schema + data)
    source_cluster.execute(src_db, [psycopg.sql.SQL("GRANT SELECT ON {} TO {}").format(
        names, psycopg.sql.Identifier(mig_user))], operator=publish_as_operator)
    target_cluster.execute(tgt_db, schema)
    publication = psycopg.sql.SQL("CREATE PUBLICATION {} FOR TABLE {}").format(psycopg.sql.Identifier(sub), names)
    if publish_as_operator:
        source_cluster.execute(src_db, [publication], operator=True)
    else:
        with source_cluster.master_connect(src_db) as conn:
            conn.execute(publication)
    conninfo = psycopg.conninfo.make_conninfo(
        host="127.0.0.1", port=source_cluster.port, dbname=src_db, user=mig_user, password=MIG_PASSWORD,
        sslmode="verify-full", sslrootcert=ca_cert())
    with target_cluster.master_connect(tgt_db) as conn:
        conn.execute(psycopg.sql.SQL("CREATE SUBSCRIPTION {} CONNECTION {} PUBLICATION {}").format(
            psycopg.sql.Identifier(sub), psycopg.sql.Literal(conninfo), psycopg.sql.Identifier(sub)))
    assert wait_for(lambda: target_cluster.query(
        tgt_db, "SELECT count(*) FILTER (WHERE srsubstate <> 'r') = 0 AND count(*) = %s FROM pg_subscription_rel",
        (len(tables),))[0][0], timeout=90)
    return src_db, tgt_db, sub


def validate_live(source_cluster, src_db, target_cluster, tgt_db, mig_sub, **options):
    """pg_validate in live mode as the master users over verify-full; asserts no secret in its output."""
    params = source_cluster.module_params(src_db)
    params.update(("target_" + k, v) for k, v in target_cluster.module_params(tgt_db).items())
    params.update(mode="live", slot_prefix=mig_sub, chunk_rows=2000, row_level_rows=100, catch_up_timeout=60)
    params.update(options)
    result, raw = run_module("pg_validate", params)
    assert ADMIN_PASSWORD not in raw and MASTER_PASSWORD not in raw and MIG_PASSWORD not in raw
    assert not result.get("failed"), result.get("msg")
    return result


def drop_subscription(target_cluster, tgt_db, sub):
    with target_cluster.master_connect(tgt_db) as conn:
        conn.execute(psycopg.sql.SQL("DROP SUBSCRIPTION {}").format(psycopg.sql.Identifier(sub)))


def test_live_mode_with_writes_running_reports_no_false_difference(source_cluster, target_cluster, new_db):
    src_db, tgt_db, sub = replicate(source_cluster, target_cluster, new_db, SCHEMA, DATA, ["orders", "rates", "quiet"])
    mig = sub[len("pgshift_"):-len("_s1")]
    writer = Writer(source_cluster, src_db)
    try:
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
    drop_subscription(target_cluster, tgt_db, sub)


# A table whose name and key need quoting, and hold the % psycopg reads as a placeholder.
HOT = "hot rows %s"
HOT_KEY = "k %"
HOT_SCHEMA = [
    psycopg.sql.SQL("CREATE TABLE {} ({} int PRIMARY KEY, v bigint NOT NULL, note text, ts timestamptz)").format(
        psycopg.sql.Identifier(HOT), psycopg.sql.Identifier(HOT_KEY)),
    "CREATE TABLE cold (id int PRIMARY KEY, v text)",
]
HOT_DATA = [
    psycopg.sql.SQL("INSERT INTO {} SELECT g, 0, 'row ' || g, now() FROM generate_series(1, 10) g").format(
        psycopg.sql.Identifier(HOT)),
    "INSERT INTO cold SELECT g, md5(g::text) FROM generate_series(1, 3000) g",
]
HOT_ROWS = (1, 2, 3, 4, 5)


class HotWriter(threading.Thread):
    """Updates rows 1 to 5 of the hot table one after the other, each in its own transaction, a millisecond apart
    (several hundred updates a second, each row every few milliseconds), until stopped. The loop runs on the server
    (a DO block that commits): how fast the rows change does not hang on how busy this Python process or the
    machine is, so the rows never line up between the snapshots. An update of a row the lock step holds waits for
    it. `updates` is read from the rows themselves (the sum of v)."""

    def __init__(self, cluster, db):
        super().__init__(daemon=True)
        self.cluster, self.db = cluster, db
        self.stop = threading.Event()
        self.error = None
        self.conn = None

    @property
    def updates(self):
        return int(self.cluster.query(self.db, psycopg.sql.SQL("SELECT coalesce(sum(v), 0) FROM {}").format(
            psycopg.sql.Identifier(HOT)))[0][0])

    def run(self):
        ident = psycopg.sql.Identifier
        loop = psycopg.sql.SQL(
            "DO $$ DECLARE i bigint := 0; BEGIN LOOP "
            "UPDATE {} SET v = v + 1, ts = clock_timestamp() WHERE {} = 1 + i % {}; "
            "COMMIT; i := i + 1; PERFORM pg_sleep(0.001); END LOOP; END $$").format(
                ident(HOT), ident(HOT_KEY), psycopg.sql.Literal(len(HOT_ROWS)))
        try:
            with self.cluster.connect(self.db) as conn:
                self.conn = conn
                if self.stop.is_set():
                    return
                conn.execute(loop)
        except psycopg.errors.QueryCanceled:
            if not self.stop.is_set():
                self.error = "the writer's loop was cancelled"
        except Exception as exc:  # reported by the test
            self.error = exc

    def halt(self):
        """Stop the loop (cancel its statement) and wait for the thread."""
        self.stop.set()
        if self.conn is not None:
            self.conn.cancel_safe() if hasattr(self.conn, "cancel_safe") else self.conn.cancel()
        self.join(timeout=30)


def hot_table(result):
    tables = dict((t["table"], t) for t in result["tables"])
    return tables['public."hot rows %s"']


def test_hot_rows_settle_with_their_source_rows_locked(source_cluster, target_cluster, new_db):
    # "guarded" belongs to another owner: the master user may read it, not lock its rows (no UPDATE)
    owner = "guard_owner_%d" % next(_N)
    source_cluster.execute("postgres", ["CREATE ROLE %s NOLOGIN" % owner], operator=True)
    target_cluster.execute("postgres", ["CREATE ROLE %s NOLOGIN" % owner], operator=True)
    src_db, tgt_db, sub = replicate(
        source_cluster, target_cluster, new_db, HOT_SCHEMA + ["CREATE TABLE guarded (id int PRIMARY KEY, v text)"],
        HOT_DATA + ["INSERT INTO guarded SELECT g, 'g' || g FROM generate_series(1, 50) g"],
        [HOT, "cold", "guarded"], publish_as_operator=True)
    source_cluster.execute(src_db, ["ALTER TABLE guarded OWNER TO %s" % owner,
                                    "GRANT SELECT ON guarded TO %s" % MASTER_USER], operator=True)
    writer = HotWriter(source_cluster, src_db)
    writer.start()
    try:
        assert wait_for(lambda: writer.updates > 500, timeout=60), writer.error
        # No false difference, run after run (at least 3 runs). Whether a run's snapshots catch the hot rows apart
        # depends on timing: on a saturated machine both sides can line up now and then and the snapshots settle
        # them alone; so the runs go on (10 at most) until the lock step has settled some. It must, in one of them.
        settled, seen = 0, []
        for run in range(10):
            if run >= 3 and settled > 0:
                break
            before = writer.updates
            result = validate_live(source_cluster, src_db, target_cluster, tgt_db, sub)
            assert writer.error is None and writer.updates > before  # the rows were written all along
            assert result["verdict"] == "GO", (result["reasons"], result["rounds"])
            assert hot_table(result)["result"] == "equal" and hot_table(result)["differences"] == []
            assert all(r.get("caught_up", True) for r in result["rounds"])
            settled += sum(r.get("settled_by_lock", 0) for r in result["rounds"])
            seen.append([dict((k, r[k]) for k in ("round", "differing", "resolved", "settled_by_lock") if k in r)
                         for r in result["rounds"]])
        assert settled > 0, seen  # the hot rows differed between the snapshots: the lock step settled them

        # real differences on the target only: a row nobody writes changed, a hot row deleted (the source keeps
        # updating it; the subscription skips updates of a row it does not find), a row of "guarded" changed
        ident = psycopg.sql.Identifier
        target_cluster.execute(tgt_db, [
            psycopg.sql.SQL("UPDATE {} SET v = -1 WHERE {} = 8").format(ident(HOT), ident(HOT_KEY)),
            psycopg.sql.SQL("DELETE FROM {} WHERE {} = 2").format(ident(HOT), ident(HOT_KEY)),
            "UPDATE guarded SET v = 'changed' WHERE id = 7",
        ], operator=True)
        result = validate_live(source_cluster, src_db, target_cluster, tgt_db, sub)
        assert result["verdict"] == "NO-GO"
        hot = hot_table(result)
        found = sorted(((d["kind"], d["key"], d.get("columns")) for d in hot["differences"]), key=lambda x: int(x[1][0]))
        assert found == [("missing", ["2"], None), ("changed", ["8"], ["v"])], hot["differences"]
        assert not any(d.get("unsettled") for d in hot["differences"])  # both settled, the hot one by the lock
        tables = dict((t["table"], t) for t in result["tables"])
        assert [(d["kind"], d["key"]) for d in tables["public.guarded"]["differences"]] == [("changed", ["7"])]
        assert tables["public.cold"]["result"] == "equal"
        assert len(result["reasons"]) == 2
        rechecks = [r for r in result["rounds"] if "settled_by_lock" in r]
        assert sum(r["lock_confirmed"] for r in rechecks) >= 2, result["rounds"]  # the hot row's by the lock
        problems = [p for r in rechecks for p in r["lock_problems"]]
        assert any(p.startswith("public.guarded: the login has no UPDATE privilege") for p in problems), problems
        assert writer.error is None and writer.is_alive()
    finally:
        writer.halt()
        drop_subscription(target_cluster, tgt_db, sub)


def test_without_the_lock_step_hot_rows_stay_unsettled_as_before(source_cluster, target_cluster, new_db):
    src_db, tgt_db, sub = replicate(source_cluster, target_cluster, new_db, HOT_SCHEMA, HOT_DATA, [HOT, "cold"])
    ident = psycopg.sql.Identifier
    target_cluster.execute(tgt_db, [
        psycopg.sql.SQL("UPDATE {} SET v = -1 WHERE {} = 8").format(ident(HOT), ident(HOT_KEY)),
        psycopg.sql.SQL("DELETE FROM {} WHERE {} = 2").format(ident(HOT), ident(HOT_KEY)),
    ], operator=True)
    writer = HotWriter(source_cluster, src_db)
    writer.start()
    try:
        assert wait_for(lambda: writer.updates > 500, timeout=60), writer.error
        result = validate_live(source_cluster, src_db, target_cluster, tgt_db, sub, live_lock_rows=0, live_rounds=2)
        assert result["verdict"] == "NO-GO"
        assert not any("settled_by_lock" in r for r in result["rounds"])  # no lock step ran
        differences = dict((d["key"][0], d) for d in hot_table(result)["differences"])
        # the row nobody writes is confirmed by the snapshots; the deleted hot row is reported either way
        assert (differences["8"]["kind"], differences["8"]["columns"]) == ("changed", ["v"])
        assert not differences["8"].get("unsettled")
        assert differences["2"]["kind"] == "missing"
        # any other hot row reported is one the snapshots could not settle, and says so
        assert all(d.get("unsettled") for k, d in differences.items() if k not in ("2", "8")), differences
        assert writer.error is None and writer.is_alive()
    finally:
        writer.halt()
        drop_subscription(target_cluster, tgt_db, sub)


def test_the_lock_step_never_makes_an_application_transaction_a_deadlock_victim(source_cluster, new_db):
    """The order that made the application the victim when the lock step waited for rows: B holds row 3, the lock
    step has rows 1-2 and waits for 3, A (holding row 5) then waits for row 1, B commits, the lock step reaches
    row 5 and waits for A - A, waiting longer, was cancelled after deadlock_timeout. With FOR SHARE NOWAIT the lock
    step never waits while holding rows: A goes on and commits, and a later try of the lock step gets every row."""
    from ansible_collections.pgshift.aurora.plugins.module_utils._pg import compare

    db = new_db(source_cluster)
    # names that need quoting, as the application may have them
    source_cluster.execute(db, ['CREATE TABLE "Hot Rows" ("Row Id" int PRIMARY KEY, v int)',
                                'INSERT INTO "Hot Rows" SELECT g, 0 FROM generate_series(1, 5) g'])  # as the owner
    table = dict(schema="public", name="Hot Rows", key=[dict(name="Row Id", type="integer")])
    columns = [dict(name="Row Id", base_type="int4", category="N"), dict(name="v", base_type="int4", category="N")]
    version = source_cluster.query(db, "SELECT current_setting('server_version_num')::int")[0][0]
    a = source_cluster.connect(db, operator=True)
    b = source_cluster.connect(db, operator=True)
    locker = source_cluster.master_connect(db)
    box = {}
    try:
        b.execute("BEGIN")
        b.execute('UPDATE "Hot Rows" SET v = v + 1 WHERE "Row Id" = 3')
        a.execute("BEGIN")
        a.execute('UPDATE "Hot Rows" SET v = v + 1 WHERE "Row Id" = 5')

        def lock():
            try:
                box["locked"] = compare.lock_rows(locker, table, columns, [(str(i),) for i in range(1, 6)], version,
                                                  budget=10.0, deadline=time.time() + 10.0)
            except Exception as exc:  # pylint: disable=broad-except
                box["error"] = exc
        step = threading.Thread(target=lock)
        step.start()
        time.sleep(0.3)  # the lock step has tried (and, waiting, would hold rows 1-2)

        def a_writes_row_1():
            try:
                a.execute('UPDATE "Hot Rows" SET v = v + 1 WHERE "Row Id" = 1')
                box["a"] = "updated"
            except Exception as exc:  # pylint: disable=broad-except
                box["a"] = exc
        writer = threading.Thread(target=a_writes_row_1)
        writer.start()
        time.sleep(0.2)
        b.execute("COMMIT")
        writer.join(30)
        assert box.get("a") == "updated", box.get("a")  # not a deadlock victim, not waiting for the lock step
        time.sleep(1.5)  # past deadlock_timeout: A is still fine
        a.execute("COMMIT")
        step.join(30)
        assert "error" not in box, box.get("error")
        assert sorted(box["locked"]) == [(str(i),) for i in range(1, 6)]  # a later try locked every row
        locker.execute("ROLLBACK")
        assert source_cluster.query(db, 'SELECT "Row Id", v FROM "Hot Rows" ORDER BY 1') == [
            (1, 1), (2, 0), (3, 1), (4, 0), (5, 1)]
    finally:
        for conn in (a, b, locker):
            conn.close()
