"""Names that need quoting, end to end: plan, native stream, status, validate, sequences, cleanup.

PG16 source and PG18 target shaped like RDS/Aurora (the master user, not a superuser, over TLS
verify-full). The tables live in schemas named ``Shipping Ops`` and ``eu.west "archive"``, with
columns such as ``Unit "Price"`` and ``select``, a 63-byte table name, a standalone sequence
``Order No.`` shared by two tables, and a partitioned table whose partitions have hard names and
live in both schemas. Writes go on while the load runs and after; the rows are then compared on
both sides, pg_validate must say GO once the sequence is set, and must name a difference made on
the target.
"""

from __future__ import annotations

import json
import threading
import time

import pytest
from psycopg import sql

from modrunner import run_module
from pgcluster import ca_cert

OPS = "Shipping Ops"
ARCHIVE = 'eu.west "archive"'
SEQ = "Order No."
PRICE = 'Unit "Price"'
LONG = "Zöll_Tarife_" + "x" * 48 + "ö"  # 63 bytes, the longest name PostgreSQL keeps
assert len(LONG.encode("utf-8")) == 63
MIGRATION = "hard"

ORDER = (OPS, "order")
ZOLL = (ARCHIVE, "Zöll_Tarife")
LONGT = (OPS, LONG)
LINES = (OPS, "Order Lines")
JAN = (ARCHIVE, "Order Lines 2025-01")
FEB = (OPS, "order lines.2025-02")
DEFAULT = (OPS, 'order lines "default"')
SCRATCH = (OPS, "scratch pad")
LEAVES = [ORDER, ZOLL, LONGT, JAN, FEB, DEFAULT]


def ident(*parts):
    return sql.Identifier(*parts)


def ddl():
    """The same schema on both sides: keys, a check constraint, an index and a trigger with spaces in their names."""
    seq = ident(OPS, SEQ)
    return [
        sql.SQL("CREATE SCHEMA {}").format(ident(OPS)),
        sql.SQL("CREATE SCHEMA {}").format(ident(ARCHIVE)),
        sql.SQL("CREATE SEQUENCE {} START 1000").format(seq),
        sql.SQL("CREATE TABLE {} ({no} bigint DEFAULT nextval({s}) CONSTRAINT {pk} PRIMARY KEY, {price} numeric(12,2) "
                "CONSTRAINT {chk} CHECK ({price} >= 0), {sel} text, {note} text)").format(
            ident(*ORDER), no=ident(SEQ), s=sql.Literal('"%s"."%s"' % (OPS, SEQ)), pk=ident("order pkey"),
            price=ident(PRICE), chk=ident("price is positive"), sel=ident("select"), note=ident("Zöll")),
        sql.SQL("CREATE INDEX {} ON {} ({})").format(ident("by price"), ident(*ORDER), ident(PRICE)),
        sql.SQL("CREATE TABLE {} (id bigint DEFAULT nextval({s}) PRIMARY KEY, {price} numeric(12,2), "
                "{rate} text)").format(ident(*ZOLL), s=sql.Literal('"%s"."%s"' % (OPS, SEQ)), price=ident(PRICE),
                                       rate=ident("Rate %")),
        sql.SQL("CREATE TABLE {} ({k} int PRIMARY KEY, v text)").format(ident(*LONGT), k=ident("Key.Part")),
        sql.SQL("CREATE TABLE {} ({no} bigint NOT NULL, {d} date NOT NULL, qty int, PRIMARY KEY ({no}, {d})) "
                "PARTITION BY RANGE ({d})").format(ident(*LINES), no=ident("Line No"), d=ident("Line Date")),
        sql.SQL("CREATE TABLE {} PARTITION OF {} FOR VALUES FROM ('2025-01-01') TO ('2025-02-01')").format(
            ident(*JAN), ident(*LINES)),
        sql.SQL("CREATE TABLE {} PARTITION OF {} FOR VALUES FROM ('2025-02-01') TO ('2025-03-01')").format(
            ident(*FEB), ident(*LINES)),
        sql.SQL("CREATE TABLE {} PARTITION OF {} DEFAULT").format(ident(*DEFAULT), ident(*LINES)),
        sql.SQL("CREATE TABLE {} (id int PRIMARY KEY)").format(ident(*SCRATCH)),
        # fires on the source only: the apply worker runs with session_replication_role = replica
        sql.SQL("CREATE FUNCTION {}() RETURNS trigger LANGUAGE plpgsql AS $$BEGIN NEW.{} := coalesce(NEW.{}, '') "
                "|| '!'; RETURN NEW; END$$").format(ident(OPS, "stamp it"), ident("Zöll"), ident("Zöll")),
        sql.SQL("CREATE TRIGGER {} BEFORE INSERT OR UPDATE ON {} FOR EACH ROW EXECUTE FUNCTION {}()").format(
            ident("stamp it"), ident(*ORDER), ident(OPS, "stamp it")),
    ]


def data():
    return [
        sql.SQL("INSERT INTO {} ({p}, {s}) SELECT g / 10.0, 'row ' || g FROM generate_series(1, 3000) g").format(
            ident(*ORDER), p=ident(PRICE), s=ident("select")),
        sql.SQL("INSERT INTO {} ({p}, {r}) SELECT g * 1.5, g || ' %' FROM generate_series(1, 500) g").format(
            ident(*ZOLL), p=ident(PRICE), r=ident("Rate %")),
        sql.SQL("INSERT INTO {} SELECT g, md5(g::text) FROM generate_series(1, 200) g").format(ident(*LONGT)),
        sql.SQL("INSERT INTO {} SELECT g, date '2025-01-01' + (g % 75), g % 9 FROM generate_series(1, 2400) g").format(
            ident(*LINES)),
        sql.SQL("INSERT INTO {} SELECT g FROM generate_series(1, 10) g").format(ident(*SCRATCH)),
        "ANALYZE",
    ]


class Writer(threading.Thread):
    """Inserts (through the shared sequence), updates (partition moves included) and deletes on the source."""

    def __init__(self, cluster, db):
        super().__init__(daemon=True)
        self.cluster, self.db = cluster, db
        self.stop_event = threading.Event()
        self.ops = 0
        self.error = None

    def stop(self):
        self.stop_event.set()
        self.join(30)
        assert self.error is None, self.error
        return self.ops

    def run(self):
        try:
            with self.cluster.connect(self.db) as conn:
                n = 0
                while not self.stop_event.is_set():
                    n += 1
                    with conn.transaction():
                        conn.execute(sql.SQL("INSERT INTO {} ({}) VALUES (%s)").format(ident(*ORDER), ident(PRICE)),
                                     (n % 100,))
                        conn.execute(sql.SQL("INSERT INTO {} ({}) VALUES (%s)").format(ident(*ZOLL), ident(PRICE)),
                                     (n,))
                        conn.execute(sql.SQL("UPDATE {} SET {} = {} + 1 WHERE {} = %s").format(
                            ident(*ORDER), ident(PRICE), ident(PRICE), ident(SEQ)), (1000 + n % 3000,))
                        conn.execute(sql.SQL("UPDATE {} SET {} = date '2025-01-01' + %s WHERE {} = %s").format(
                            ident(*LINES), ident("Line Date"), ident("Line No")), (n % 80, n % 2400 + 1))
                        conn.execute(sql.SQL("DELETE FROM {} WHERE {} = %s").format(ident(*LONGT), ident("Key.Part")),
                                     (n % 200 + 1,))
                        conn.execute(sql.SQL("INSERT INTO {} VALUES (%s, 'w') ON CONFLICT DO NOTHING").format(
                            ident(*LONGT)), (n % 200 + 1,))
                    self.ops += 1
                    time.sleep(0.005)
        except Exception as exc:  # reported by stop()
            self.error = repr(exc)


def both(source_cluster, target_cluster):
    def params(src_db, tgt_db, **extra):
        p = source_cluster.module_params(src_db)
        p.update(("target_" + k, v) for k, v in target_cluster.module_params(tgt_db).items())
        p.update(extra)
        return p
    return params


def run(name, args, secrets, check_mode=False):
    result, raw = run_module(name, args, check_mode=check_mode)
    for secret in secrets:
        assert secret not in raw, "a secret leaked into the output of %s" % name
    assert not result.get("failed"), result.get("msg")
    return result


def rows(cluster, db, table):
    with cluster.connect(db, operator=True) as conn:
        return conn.execute(sql.SQL("SELECT * FROM ONLY {} t ORDER BY t").format(ident(*table))).fetchall()


def leftovers(source_cluster, target_cluster, src_db, tgt_db):
    prefix = "pgshift_%s_" % MIGRATION
    pubs = source_cluster.query(src_db, "SELECT pubname FROM pg_publication WHERE starts_with(pubname, %s)", (prefix,))
    slots = source_cluster.query(src_db, "SELECT slot_name FROM pg_replication_slots WHERE starts_with(slot_name, %s)",
                                 (prefix,), operator=True)
    subs = target_cluster.query(tgt_db, "SELECT subname FROM pg_subscription WHERE starts_with(subname, %s)",
                                (prefix,), operator=True)
    return pubs + slots + subs


def test_hard_names_plan_stream_validate_and_cleanup(source_cluster, target_cluster, new_db):
    src_db, tgt_db = new_db(source_cluster), new_db(target_cluster)
    secrets = set(source_cluster.secrets) | set(target_cluster.secrets)
    source_cluster.execute(src_db, ddl() + data())
    target_cluster.execute(tgt_db, ddl())
    params = both(source_cluster, target_cluster)
    filters = dict(include_tables=['"Shipping Ops".*', '"eu.west ""archive""".*'],
                   exclude_tables=['"Shipping Ops"."scratch pad"'])

    # The plan: leaves of the partitioned table (in both schemas) planned one by one, the rest by name.
    plan = run("pg_replication_plan", dict(source_cluster.module_params(src_db), migration_name=MIGRATION, streams=2,
                                           split_bytes=64 * 1024, **filters), secrets)["plan"]
    planned = sorted((t["schema"], t["name"]) for s in plan["streams"] for t in s["tables"])
    assert planned == sorted(LEAVES)
    assert [(e["schema"], e["name"]) for e in plan["excluded"]] == [SCRATCH]
    by_name = dict(((t["schema"], t["name"]), t) for s in plan["streams"] for t in s["tables"])
    assert by_name[JAN]["root"] == '"Shipping Ops"."Order Lines"'
    assert by_name[ORDER]["split"] > 1 and by_name[ORDER]["split_key"] == SEQ
    assert plan["warnings"] == []
    for s in plan["streams"]:
        explicit = [(r["object-locator"]["schema-name"], r["object-locator"]["table-name"])
                    for r in s["table_mapping"]["rules"] if r["rule-action"] == "explicit"]
        assert explicit == sorted((t["schema"], t["name"]) for t in s["tables"])

    stream_args = dict(source_ssl_mode="verify-full", source_ssl_root_cert=ca_cert(), parallel=2)
    writer = Writer(source_cluster, src_db)
    writer.start()
    try:
        time.sleep(0.3)
        for s in plan["streams"]:
            result = run("pg_native_stream", params(src_db, tgt_db, stream=dict(name=s["name"], tables=s["tables"]),
                                                    copy_relay="python", **stream_args), secrets)
            assert result["steps"] == ["publication_create", "slot_create_export", "copy", "subscription_create"]
            assert sorted(result["publication"]["tables_added"]) == sorted(t["qualified"] for t in s["tables"])
        time.sleep(1.0)
    finally:
        assert writer.stop() > 20

    status_args = params(src_db, tgt_db, migration=MIGRATION)
    (lsn,), = source_cluster.query(src_db, "SELECT pg_current_wal_lsn()::text")
    deadline = time.time() + 90
    status = None
    while time.time() < deadline:
        status = run("pg_replication_status", dict(status_args, barrier_lsn=lsn), secrets)
        if status["barrier_reached"]:
            break
        time.sleep(0.3)
    assert status["barrier_reached"], json.dumps(status, default=str)[:3000]
    assert [s["state"] for s in status["streams"]] == ["streaming", "streaming"]
    shown = sorted(t["table"] for s in status["streams"] for t in s["tables"])
    assert shown == sorted(by_name[x]["qualified"] for x in LEAVES)
    assert set(t["state"] for s in status["streams"] for t in s["tables"]) == {"streaming"}

    # The rows, read by the operator on both sides: the same. The trigger "stamp it" appends a ! on every
    # insert and update on the source; had it fired on the target too, the stamps would differ.
    for table in LEAVES:
        assert rows(source_cluster, src_db, table) == rows(target_cluster, tgt_db, table), table
    stamps = sql.SQL("SELECT count(*) FILTER (WHERE {z} LIKE '%!!'), count(*) FILTER (WHERE {z} = '!') FROM {t}").format(
        z=ident("Zöll"), t=ident(*ORDER))
    src_stamps = source_cluster.query(src_db, stamps, operator=True)
    assert src_stamps == target_cluster.query(tgt_db, stamps, operator=True)
    assert src_stamps[0][0] > 0 and src_stamps[0][1] > 0
    assert rows(target_cluster, tgt_db, SCRATCH) == []

    # pg_validate: the tables equal; the shared sequence behind on the target (not replicated): NO-GO.
    validate_args = params(src_db, tgt_db, chunk_rows=500, row_level_rows=50, **filters)
    result = run("pg_validate", validate_args, secrets)
    tables = dict((t["table"], t) for t in result["tables"])
    assert sorted(tables) == sorted(by_name[x]["qualified"] for x in LEAVES)
    assert all(t["result"] == "equal" for t in tables.values()), result["reasons"]
    assert result["schema"] == [], result["schema"]
    (seq,) = [s for s in result["sequences"] if (s["schema"], s["name"]) == (OPS, SEQ)]
    assert seq["sequence"] == '"Shipping Ops"."Order No."' and seq["status"] == "behind"
    assert result["verdict"] == "NO-GO" and result["reasons"] == ['sequence "Shipping Ops"."Order No." is behind']

    # The cutover's setval, on the sequence found by its schema and name, as the master user.
    from ansible_collections.pgshift.aurora.plugins.module_utils._pg import freeze
    with target_cluster.master_connect(tgt_db) as conn:
        shown = freeze.setval_all(conn, [(OPS, SEQ, seq["set_to"])])
        with pytest.raises(LookupError, match='sequence "Shipping Ops"."order no." does not exist'):
            freeze.setval_all(conn, [(OPS, "order no.", 1)])
    assert shown == "SELECT setval('\"Shipping Ops\".\"Order No.\"', %d, true)" % seq["set_to"]
    assert run("pg_validate", validate_args, secrets)["verdict"] == "GO"

    # A row changed on the target only, in the partition of the other schema: found and named.
    with target_cluster.connect(tgt_db, operator=True) as conn:
        conn.execute("SET session_replication_role = replica")
        (line_no,) = conn.execute(sql.SQL("UPDATE {} SET qty = qty + 100 WHERE {} = (SELECT min({}) FROM {}) "
                                          "RETURNING {}").format(ident(*JAN), ident("Line No"), ident("Line No"),
                                                                 ident(*JAN), ident("Line No"))).fetchone()
    result = run("pg_validate", validate_args, secrets)
    assert result["verdict"] == "NO-GO"
    different = [t for t in result["tables"] if t["result"] != "equal"]
    assert [t["table"] for t in different] == ['"eu.west ""archive"""."Order Lines 2025-01"']
    assert [(d["kind"], d["key"][0], d["columns"]) for d in different[0]["differences"]] == [
        ("changed", str(line_no), ["qty"])]

    # Cleanup: each stream removed, nothing left on either side.
    for s in plan["streams"]:
        run("pg_native_stream", params(src_db, tgt_db, stream=dict(name=s["name"]), state="absent", **stream_args),
            secrets)
    assert leftovers(source_cluster, target_cluster, src_db, tgt_db) == []
